package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is one child: a control plane component, a build step or a
// program in a pod. It runs in a process group of its own. (The same as
// proxy/proxytest's, which does not export it.)
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
}

// startProcess starts cmd in a process group of its own, with its output
// appended to logPath if that is not "".
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	if logPath != "" {
		log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer log.Close() // the child has its own descriptor
		cmd.Stdout, cmd.Stderr = log, log
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

func (p *process) wait() {
	p.cmd.Wait() // the exit status is in cmd.ProcessState
	close(p.done)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the child's process group.
func (p *process) signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL to the group and waits for the child.
func (p *process) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the child to exit with SIGTERM and kills the group if it has not
// exited after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		p.signal(syscall.SIGKILL) // grandchildren, if any
		return
	}
	p.signal(syscall.SIGTERM)
	p.signal(syscall.SIGCONT) // a stopped child cannot act on SIGTERM
	select {
	case <-p.done:
		p.signal(syscall.SIGKILL)
	case <-time.After(grace):
		p.kill()
	}
}
