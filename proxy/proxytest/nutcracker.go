package proxytest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Nutcracker is a twemproxy (nutcracker 0.5.0) process started by
// StartNutcracker, the oracle shardproxy is compared with.
type Nutcracker struct {
	// Listen maps each pool's name to its listen address as a dial address:
	// "host:port" (brackets added for IPv6) or a unix socket path.
	Listen    map[string]string
	StatsAddr string // "127.0.0.1:port" of the stats listener (-a, -s)
	Config    string // path of the nutcracker.yml it runs with
	Dir       string // holds the config and nutcracker.log

	mu   sync.Mutex // guards proc
	proc *Process
}

// A NutcrackerOption configures StartNutcracker.
type NutcrackerOption func(*nutcrackerOptions)

type nutcrackerOptions struct {
	args []string
}

// NutcrackerArgs appends arguments to nutcracker's command line, for example
// NutcrackerArgs("-m", "512") for a smaller mbuf.
func NutcrackerArgs(args ...string) NutcrackerOption {
	return func(o *nutcrackerOptions) { o.args = append(o.args, args...) }
}

// NutcrackerBinary returns the path of the nutcracker binary, failing t if
// there is none.
func NutcrackerBinary(t testing.TB) string {
	t.Helper()
	return lookBinary(t, "nutcracker", "apt-get install nutcracker; .ci/run installs it")
}

// StartNutcracker writes yaml to nutcracker.yml in a temporary directory and
// runs
//
//	nutcracker -c nutcracker.yml -s <free port> -a 127.0.0.1 -i 1000 -o nutcracker.log
//
// then waits until every pool's listen address accepts a connection (each
// wait costs one client connection in the stats: client_eof). Listen ports
// are chosen by the caller, usually with FreePort. nutcracker is killed in t's
// cleanup; on failure the test fails with its log.
func StartNutcracker(t testing.TB, yaml string, opts ...NutcrackerOption) *Nutcracker {
	t.Helper()
	var o nutcrackerOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin := NutcrackerBinary(t)
	n := &Nutcracker{Dir: t.TempDir(), Listen: listenAddrs(yaml)}
	n.Config = filepath.Join(n.Dir, "nutcracker.yml")
	if err := os.WriteFile(n.Config, []byte(yaml), 0o644); err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	t.Cleanup(n.Kill)
	for attempt := 1; ; attempt++ {
		n.StatsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		logStart := len(n.Log())
		err := n.start(bin, o.args)
		if err == nil {
			return n
		}
		// Another process may take the stats port between FreePort and bind.
		if attempt < 3 && strings.Contains(n.Log()[logStart:],
			"stats server addr '"+n.StatsAddr+"' failed: Address already in use") {
			continue
		}
		t.Fatalf("proxytest: nutcracker: %v\nnutcracker.yml:\n%s\nnutcracker.log:\n%s", err, yaml, n.Log())
	}
}

func (n *Nutcracker) start(bin string, extra []string) error {
	_, port, _ := net.SplitHostPort(n.StatsAddr)
	args := []string{"-c", n.Config, "-s", port, "-a", "127.0.0.1", "-i", "1000", "-o", n.logPath()}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Dir = n.Dir
	log, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log // before -o takes effect, and for crashes
	p, err := StartProcess(cmd)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return p.WaitUntil(StartTimeout, func() bool {
		for _, addr := range n.Listen {
			if !accepts(addr) {
				return false
			}
		}
		return true
	})
}

func accepts(addr string) bool {
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// listenAddrs finds "pool:" at the start of a line and "listen: addr" indented
// under it: enough for the configs tests write, not a YAML parser.
func listenAddrs(yaml string) map[string]string {
	addrs := make(map[string]string)
	pool := ""
	for line := range strings.Lines(yaml) {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		key, value, ok := strings.Cut(trimmed, ":")
		if !ok {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			pool = unquote(strings.TrimSpace(key))
			continue
		}
		if pool == "" || strings.TrimSpace(key) != "listen" {
			continue
		}
		addr := unquote(strings.TrimSpace(value))
		if strings.HasPrefix(addr, "/") {
			addr, _, _ = strings.Cut(addr, " ") // "/path 0666": the permissions
		} else if i := strings.LastIndex(addr, ":"); i >= 0 {
			// nutcracker takes the text after the last colon as the port,
			// so IPv6 is written without brackets.
			addr = net.JoinHostPort(addr[:i], addr[i+1:])
		}
		addrs[pool] = addr
	}
	return addrs
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

func (n *Nutcracker) logPath() string { return filepath.Join(n.Dir, "nutcracker.log") }

// Log returns what nutcracker has logged so far.
func (n *Nutcracker) Log() string {
	b, _ := os.ReadFile(n.logPath())
	return string(b)
}

// Client connects to pool's listen address within t and closes the
// connection in t's cleanup.
func (n *Nutcracker) Client(t testing.TB, pool string) *Conn {
	t.Helper()
	addr, ok := n.Listen[pool]
	if !ok {
		t.Fatalf("proxytest: nutcracker has no pool %q with a listen address (pools: %v)", pool, n.Listen)
	}
	return Dial(t, addr)
}

// Stats returns the stats JSON document, as read from StatsAddr until
// nutcracker closes the connection. The values are aggregated every second
// (-i 1000), so they can lag by up to one second.
func (n *Nutcracker) Stats() ([]byte, error) {
	c, err := net.DialTimeout("tcp", n.StatsAddr, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(DefaultTimeout))
	return io.ReadAll(bufio.NewReader(c))
}

func (n *Nutcracker) process() *Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Stop ends nutcracker with SIGTERM, which it does not handle (it dies at
// once, like on a Kubernetes pod shutdown), and waits for it.
func (n *Nutcracker) Stop() {
	if p := n.process(); p != nil {
		p.Stop(5 * time.Second)
	}
}

// Kill kills nutcracker with SIGKILL and waits for it.
func (n *Nutcracker) Kill() {
	if p := n.process(); p != nil {
		p.Kill()
	}
}

// NutcrackerCheckConfig runs nutcracker -t -c path and returns whether it
// accepted the file, with its combined output. It fails t only if nutcracker
// cannot be run.
func NutcrackerCheckConfig(t testing.TB, path string) (ok bool, output string) {
	t.Helper()
	cmd := exec.Command(NutcrackerBinary(t), "-t", "-c", path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, string(out)
	case errors.As(err, &exit):
		return false, string(out)
	}
	t.Fatalf("proxytest: nutcracker -t -c %s: %v\n%s", path, err, out)
	return false, ""
}
