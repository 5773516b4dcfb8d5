package kubetest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce     sync.Once
	spawnRequests chan spawnRequest
)

// spawn starts cmd from one OS thread that never exits. Linux sends the
// Pdeathsig when the thread that forked the child exits, not the process
// (prctl(2) PR_SET_PDEATHSIG, golang/go#27505), and the Go runtime ends a
// thread when a goroutine locked to it returns.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnRequests = make(chan spawnRequest)
		go spawnLoop()
	})
	req := spawnRequest{cmd: cmd, err: make(chan error, 1)}
	spawnRequests <- req
	return <-req.err
}

func spawnLoop() {
	runtime.LockOSThread() // never unlocked: this thread is the parent of every child
	for req := range spawnRequests {
		req.err <- req.cmd.Start()
	}
}
