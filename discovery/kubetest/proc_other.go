//go:build !linux

package kubetest

import (
	"os/exec"
	"syscall"
)

// Outside Linux there is no parent-death signal: only the cleanup kills the
// process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func spawn(cmd *exec.Cmd) error { return cmd.Start() }
