package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/config"
)

// redisServer is one redis-server the soak owns: its port and data
// directory stay the same across restarts.
type redisServer struct {
	name string // ring name in the config
	port int
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// reopenHost is the loopback address of what closes and opens its port again
// during the run: the redis-servers, which restart, and the second pool,
// which reloads take away and bring back. No client socket is bound to it
// (they all use 127.0.0.x), so while such a port is closed no client
// connection can take it as its local port and make the next bind fail.
const reopenHost = "127.0.1.1"

func (r *redisServer) addr() string { return net.JoinHostPort(reopenHost, strconv.Itoa(r.port)) }

// start runs redis-server with an append-only file fsynced on every write,
// so that a write it acknowledged survives a SIGTERM and a start.
func (r *redisServer) start(binary string) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("redis %s: %w", r.name, err)
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redis %s: %w", r.name, err)
	}
	cmd := exec.Command(binary,
		"--port", strconv.Itoa(r.port), "--bind", reopenHost,
		"--dir", r.dir, "--appendonly", "yes", "--appendfsync", "always",
		"--save", "", "--daemonize", "no", "--maxclients", "1000")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("redis %s: %w", r.name, err)
	}
	done := make(chan struct{})
	go r.reap(cmd, logf, done)
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	return waitPing(r.addr(), 20*time.Second)
}

func (r *redisServer) reap(cmd *exec.Cmd, logf *os.File, done chan struct{}) {
	cmd.Wait()
	logf.Close()
	close(done)
}

// stop sends SIGTERM and waits for the exit (SIGKILL after timeout, which is
// reported as an error: an acknowledged write might then be lost).
func (r *redisServer) stop(timeout time.Duration) error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis %s did not exit within %v of SIGTERM", r.name, timeout)
	}
}

// waitPing waits until addr answers PING.
func waitPing(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := dial(addr, nil, time.Second, 256)
		if err == nil {
			_, err = c.do(time.Second, "PING")
			c.close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer PING: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a TCP port of host nothing listens on now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// configFile writes the soak's nutcracker.yml. Each reload flips variant:
// odd variants change the pool's timeout and add a second, empty-handed
// pool on its own port, even ones take them back, so a reload both changes
// a kept pool and opens or closes a listener.
type configFile struct {
	path       string
	listen     string
	extraPort  int
	maxClients int
	servers    []*redisServer
	variant    int
}

func (c *configFile) text() string {
	var b strings.Builder
	timeout := 4000
	if c.variant%2 == 1 {
		timeout = 4001
	}
	pool := func(name, listen string) {
		fmt.Fprintf(&b, "%s:\n", name)
		fmt.Fprintf(&b, "  listen: %s\n", listen)
		b.WriteString("  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  hash_tag: \"{}\"\n")
		b.WriteString("  auto_eject_hosts: false\n  server_retry_timeout: 2000\n  server_failure_limit: 1\n")
		fmt.Fprintf(&b, "  timeout: %d\n", timeout)
		if c.maxClients > 0 {
			fmt.Fprintf(&b, "  client_connections: %d\n", c.maxClients)
		}
		b.WriteString("  servers:\n")
		for _, s := range c.servers {
			fmt.Fprintf(&b, "   - %s:1 %s\n", s.addr(), s.name)
		}
	}
	pool("soak", c.listen)
	if c.variant%2 == 1 {
		pool("soak_extra", net.JoinHostPort(reopenHost, strconv.Itoa(c.extraPort)))
	}
	return b.String()
}

// write replaces the file by rename, as an editor or a ConfigMap would.
func (c *configFile) write() error {
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(c.text()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.path)
}

// ring builds the placement shardproxy builds for the soak pool: the
// config parsed by proxy/config (which orders the servers as nutcracker
// does) and a hashring over them. owner[i] indexes c.servers.
type ring struct {
	r     *hashring.Ring
	owner []int // ring node index -> index in configFile.servers
}

func (c *configFile) ring() (*ring, error) {
	cfg, err := config.Parse([]byte(c.text()))
	if err != nil {
		return nil, fmt.Errorf("parse own config: %w", err)
	}
	var pool *config.Pool
	for i := range cfg.Pools {
		if cfg.Pools[i].Name == "soak" {
			pool = &cfg.Pools[i]
		}
	}
	if pool == nil {
		return nil, errors.New("own config has no pool soak")
	}
	nodes := make([]hashring.Node, len(pool.Servers))
	owner := make([]int, len(pool.Servers))
	for i, s := range pool.Servers {
		nodes[i] = s.Node()
		owner[i] = -1
		for j, rs := range c.servers {
			if rs.name == s.Name {
				owner[i] = j
			}
		}
		if owner[i] < 0 {
			return nil, fmt.Errorf("server %q of the parsed config is unknown", s.Name)
		}
	}
	dist, err := hashring.ParseDistribution(pool.Distribution)
	if err != nil {
		return nil, err
	}
	r, err := hashring.New(nodes, hashring.Options{Hash: pool.Hash, Distribution: dist, HashTag: pool.HashTag})
	if err != nil {
		return nil, err
	}
	return &ring{r: r, owner: owner}, nil
}

// serverOf returns the index in configFile.servers of the server that owns
// key.
func (r *ring) serverOf(key string) int { return r.owner[r.r.Lookup([]byte(key))] }

// proxyProcess is the shardproxy under test.
type proxyProcess struct {
	cmd       *exec.Cmd
	done      chan struct{}
	statsAddr string
	logPath   string
}

func startProxy(binary, conf string, statsPort int, logPath string) (*proxyProcess, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "-c", conf, "-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "-v", "5")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &proxyProcess{cmd: cmd, done: make(chan struct{}), statsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(statsPort)), logPath: logPath}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("shardproxy exited at start: %s", p.logTail())
		default:
		}
		resp, err := http.Get("http://" + p.statsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("shardproxy not ready within 30s: %s", p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *proxyProcess) pid() int { return p.cmd.Process.Pid }

func (p *proxyProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to 30s, then kills.
func (p *proxyProcess) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last lines of the proxy's log, for error messages.
func (p *proxyProcess) logTail() string {
	data, _ := os.ReadFile(p.logPath)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// metrics fetches the proxy's /metrics and returns the unlabelled and
// labelled samples by their full text name ("go_goroutines",
// `shardproxy_config_reloads_total{result="ok"}`).
func (p *proxyProcess) metrics() (map[string]float64, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + p.statsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(body), nil
}

func parseMetrics(body []byte) map[string]float64 {
	m := make(map[string]float64)
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// rssBytes reads VmRSS of pid from /proc.
func rssBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// openFDs counts /proc/pid/fd.
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}
