package proxytest

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// process is one child started by StartRedis or StartNutcracker.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
}

// startProcess starts cmd in a process group of its own.
func startProcess(cmd *exec.Cmd) (*process, error) {
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
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
		p.signal(syscall.SIGKILL)
		return
	}
	p.signal(syscall.SIGTERM)
	p.signal(syscall.SIGCONT) // a paused child cannot act on SIGTERM
	select {
	case <-p.done:
		p.signal(syscall.SIGKILL) // grandchildren, if any
	case <-time.After(grace):
		p.kill()
	}
}

// lookBinary finds name in PATH, then in /usr/bin and /usr/sbin, which are not
// in every user's PATH.
func lookBinary(t testing.TB, name, hint string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("proxytest: %s not found in PATH, /usr/bin or /usr/sbin (%s)", name, hint)
	return ""
}
