package proxytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// Instance is what a redis-server process started by a test has, in
// either of its modes (Redis, Sentinel): where it listens, its directory
// and log, its password, and the running process.
type Instance struct {
	Addr     string // "127.0.0.1:port"
	Port     int
	Dir      string // its directory, under t.TempDir(); the log is there
	Password string // its requirepass; "" for none

	bin     string
	logName string     // the log's file name in Dir
	mu      sync.Mutex // guards proc
	proc    *Process
}

func (in *Instance) logPath() string { return filepath.Join(in.Dir, in.logName) }

// Log returns what the process has logged so far, across restarts.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.logPath())
	return string(b)
}

func (in *Instance) process() *Process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.proc
}

// run starts the binary with args, its output appended to the log, and
// waits until it answers PING at Addr.
func (in *Instance) run(args ...string) error {
	log, err := os.OpenFile(in.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.Command(in.bin, args...)
	cmd.Dir = in.Dir
	cmd.Stdout, cmd.Stderr = log, log
	p, err := StartProcess(cmd)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.proc = p
	in.mu.Unlock()
	return p.WaitUntil(StartTimeout, func() bool { return pingable(in.Addr) })
}

// Client connects to the process within t, authenticating if it has a
// Password, and closes the connection in t's cleanup. It takes t so that it
// can be called from subtests of the test that started the process.
func (in *Instance) Client(t testing.TB) *Conn {
	t.Helper()
	c := Dial(t, in.Addr)
	if in.Password != "" {
		rep, err := c.Do("AUTH", in.Password)
		if err != nil || rep.Type != '+' {
			t.Fatalf("proxytest: AUTH on %s: %v %v", in.Addr, rep, err)
		}
	}
	return c
}

// Kill kills the process with SIGKILL and waits for it to exit.
func (in *Instance) Kill() {
	if p := in.process(); p != nil {
		p.Kill()
	}
}

// Pause stops the process with SIGSTOP: connections stay open and nothing
// is answered until Resume.
func (in *Instance) Pause() {
	if p := in.process(); p != nil {
		p.Signal(syscall.SIGSTOP)
	}
}

// Resume continues a paused process with SIGCONT.
func (in *Instance) Resume() {
	if p := in.process(); p != nil {
		p.Signal(syscall.SIGCONT)
	}
}
