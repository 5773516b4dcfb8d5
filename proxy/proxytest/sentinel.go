package proxytest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sentinel is a redis-server in Sentinel mode started by StartSentinel.
// Dir holds sentinel.conf and sentinel.log; Password is also its
// sentinel-pass.
type Sentinel struct {
	Instance
}

// A SentinelOption configures StartSentinel.
type SentinelOption func(*sentinelOptions)

type sentinelOptions struct {
	password string
	monitors []string
	lines    []string
}

// SentinelPassword sets requirepass, which clients of the Sentinel must AUTH
// with, and sentinel-pass, which Sentinel uses to AUTH to the other
// Sentinels (so all Sentinels of a test should be given the same one).
func SentinelPassword(password string) SentinelOption {
	return func(o *sentinelOptions) { o.password = password }
}

// SentinelMonitor adds another master to monitor, with the same timeouts as
// the first.
func SentinelMonitor(masterName, masterAddr string, quorum int) SentinelOption {
	return func(o *sentinelOptions) {
		o.monitors = append(o.monitors, monitorLine(masterName, masterAddr, quorum))
	}
}

// SentinelConfig appends lines to sentinel.conf, after those StartSentinel
// writes.
func SentinelConfig(lines ...string) SentinelOption {
	return func(o *sentinelOptions) { o.lines = append(o.lines, lines...) }
}

func monitorLine(masterName, masterAddr string, quorum int) string {
	host, port, _ := net.SplitHostPort(masterAddr)
	return fmt.Sprintf("sentinel monitor %s %s %s %d", masterName, host, port, quorum)
}

// SentinelDownAfter is the down-after-milliseconds StartSentinel sets: a
// killed master is subjectively down this long after its last reply.
const SentinelDownAfter = time.Second

// SentinelFailoverTimeout is the failover-timeout StartSentinel sets. A
// Sentinel that lost an election tries again after twice this.
const SentinelFailoverTimeout = 3 * time.Second

// StartSentinel starts redis-server --sentinel on a free loopback port,
// monitoring masterName at masterAddr with quorum, waits until it answers,
// and kills it in t's cleanup. down-after-milliseconds and failover-timeout
// are short (SentinelDownAfter, SentinelFailoverTimeout) so that a test's
// failover takes seconds. Sentinels that monitor the same master find each
// other through it within a few seconds; WaitForSentinels waits for that.
func StartSentinel(t testing.TB, masterName, masterAddr string, quorum int, opts ...SentinelOption) *Sentinel {
	t.Helper()
	o := sentinelOptions{monitors: []string{monitorLine(masterName, masterAddr, quorum)}}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Sentinel{Instance{
		Dir:      t.TempDir(),
		Password: o.password,
		bin:      lookBinary(t, "redis-server", "apt-get install redis-server"),
		logName:  "sentinel.log",
	}}
	t.Cleanup(s.Kill)
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if err := s.writeConfig(o); err != nil {
			t.Fatalf("proxytest: sentinel.conf: %v", err)
		}
		logStart := len(s.Log())
		err := s.start()
		if err == nil {
			return s
		}
		// Another process may take the port between FreePort and bind.
		if attempt < 3 && strings.Contains(s.Log()[logStart:], "Address already in use") {
			continue
		}
		t.Fatalf("proxytest: sentinel on %s: %v\nsentinel.log:\n%s", s.Addr, err, s.Log())
	}
}

// writeConfig writes sentinel.conf. Sentinel rewrites the file as it learns
// replicas, other Sentinels and new epochs, so it must be writable and is
// written once per start attempt.
func (s *Sentinel) writeConfig(o sentinelOptions) error {
	lines := []string{
		"port " + strconv.Itoa(s.Port),
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		`logfile ""`,
		"dir " + s.Dir,
	}
	if s.Password != "" {
		lines = append(lines, "requirepass "+s.Password, "sentinel sentinel-pass "+s.Password)
	}
	for _, m := range o.monitors {
		lines = append(lines, m)
		name := strings.Fields(m)[2]
		lines = append(lines,
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", name, SentinelDownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", name, SentinelFailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", name),
		)
	}
	lines = append(lines, o.lines...)
	return os.WriteFile(s.confPath(), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func (s *Sentinel) start() error { return s.run(s.confPath(), "--sentinel") }

func (s *Sentinel) confPath() string { return filepath.Join(s.Dir, "sentinel.conf") }

// Master returns the fields of SENTINEL MASTER masterName as the Sentinel
// answers now: "ip", "port", "config-epoch", "flags", "num-other-sentinels"
// and the rest.
func (s *Sentinel) Master(t testing.TB, masterName string) map[string]string {
	t.Helper()
	c := s.Client(t)
	defer c.Close()
	rep, err := c.Do("SENTINEL", "MASTER", masterName)
	if err != nil || rep.Type != '*' {
		t.Fatalf("proxytest: SENTINEL MASTER %s on %s: %v %v", masterName, s.Addr, rep, err)
	}
	fields := make(map[string]string)
	for i := 0; i+1 < len(rep.Elems); i += 2 {
		fields[string(rep.Elems[i].Str)] = string(rep.Elems[i+1].Str)
	}
	return fields
}

// WaitForSentinels waits until every one of sentinels knows all the others
// and at least replicas replicas of masterName, which a failover needs: the
// Sentinels find each other through hello messages on the master every 2 s.
// It fails t after timeout.
func WaitForSentinels(t testing.TB, masterName string, replicas int, timeout time.Duration, sentinels ...*Sentinel) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, s := range sentinels {
		for {
			m := s.Master(t, masterName)
			others, _ := strconv.Atoi(m["num-other-sentinels"])
			slaves, _ := strconv.Atoi(m["num-slaves"])
			if others >= len(sentinels)-1 && slaves >= replicas {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxytest: sentinel %s knows %d other sentinels and %d replicas of %s after %v, want %d and %d\nsentinel.log:\n%s",
					s.Addr, others, slaves, masterName, timeout, len(sentinels)-1, replicas, s.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
