package proxytest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a child of the test: redis-server, nutcracker, or anything a
// test-support package starts. It runs in a process group of its own, and
// on Linux it is killed when the test binary dies.
type Process struct {
	Cmd  *exec.Cmd
	done chan struct{} // closed when Cmd.Wait has returned
}

// StartProcess starts cmd in a process group of its own.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

func (p *Process) wait() {
	p.Cmd.Wait() // the exit status is in Cmd.ProcessState
	close(p.done)
}

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the child's process group.
func (p *Process) Signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.Cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.Cmd.Process.Signal(sig)
	}
}

// WaitUntil polls ready until it reports true, the child exits, or timeout
// passes.
func (p *Process) WaitUntil(timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("exited: %v", p.Cmd.ProcessState)
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Kill sends SIGKILL to the group and waits for the child.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the child to exit with SIGTERM and kills the group if it has
// not exited after grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		p.Signal(syscall.SIGKILL) // grandchildren, if any
		return
	}
	p.Signal(syscall.SIGTERM)
	p.Signal(syscall.SIGCONT) // a stopped child cannot act on SIGTERM
	select {
	case <-p.done:
		p.Signal(syscall.SIGKILL) // grandchildren, if any
	case <-time.After(grace):
		p.Kill()
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
