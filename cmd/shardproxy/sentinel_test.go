package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// sentinelGroups is two groups, each a master with one replica, watched by
// three Sentinels.
type sentinelGroups struct {
	masters, replicas []*proxytest.Redis
	sentinels         []*proxytest.Sentinel
}

func startSentinelGroups(t *testing.T) *sentinelGroups {
	t.Helper()
	g := &sentinelGroups{}
	for range 2 {
		m := proxytest.StartRedis(t)
		r := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port)))
		g.masters, g.replicas = append(g.masters, m), append(g.replicas, r)
	}
	for range 3 {
		g.sentinels = append(g.sentinels, proxytest.StartSentinel(t, "g0", g.masters[0].Addr, 2,
			proxytest.SentinelMonitor("g1", g.masters[1].Addr, 2)))
	}
	for i := range 2 {
		proxytest.WaitForSentinels(t, fmt.Sprintf("g%d", i), 1, 30*time.Second, g.sentinels...)
	}
	return g
}

// startSentinelProxy runs the shardproxy binary over the groups.
func startSentinelProxy(t *testing.T, g *sentinelGroups) (addr string, logs *lockedBuffer) {
	t.Helper()
	var sentinels []string
	for _, s := range g.sentinels {
		sentinels = append(sentinels, s.Addr)
	}
	return startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 1000\n  sentinels:\n    - %s\n  servers:\n    - %s:1 g0\n    - %s:1 g1\n",
			port, strings.Join(sentinels, "\n    - "), g.masters[0].Addr, g.masters[1].Addr)
	})
}

// startBinaryProxy runs the shardproxy binary on the config conf makes for
// its listen port, with args, until the test ends, and waits until it
// listens.
func startBinaryProxy(t *testing.T, conf func(port int) string, args ...string) (addr string, logs *lockedBuffer) {
	t.Helper()
	bin := buildBinary(t)
	port, stats := proxytest.FreePort(t), proxytest.FreePort(t)
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(conf(port)), 0o644); err != nil {
		t.Fatal(err)
	}
	logs = &lockedBuffer{}
	cmd := exec.Command(bin, append([]string{"-c", path, "-s", fmt.Sprint(stats), "-a", "127.0.0.1"}, args...)...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shardproxy's log:\n%s", logs.String())
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; !proxytestAccepts(addr); i++ {
		if i == 200 {
			t.Fatalf("no listener:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, logs
}

// keysOf returns, for each group, keys that the proxy puts there: it
// writes k0... through the proxy and asks each master which it holds.
func keysOf(t *testing.T, addr string, g *sentinelGroups, n int) [2][]string {
	t.Helper()
	c := proxytest.Dial(t, addr)
	var out [2][]string
	for i := 0; len(out[0]) < n || len(out[1]) < n; i++ {
		k := fmt.Sprintf("k%d", i)
		if r, err := c.Do("SET", k, "0"); err != nil || r.IsError() {
			t.Fatalf("SET %s: %v %v", k, r, err)
		}
		for j, m := range g.masters {
			mc := m.Client(t)
			r, err := mc.Do("EXISTS", k)
			mc.Close()
			if err == nil && string(r.Raw()) == ":1\r\n" && len(out[j]) < n {
				out[j] = append(out[j], k)
			}
		}
	}
	return out
}

// incrLoad INCRs its keys one after the other until stopped, recording
// every acknowledged value and every error with its time.
type incrLoad struct {
	keys   []string
	mu     sync.Mutex
	acked  map[string][]int64 // the values INCR answered, in order
	errs   []time.Time
	first  string    // the first error's text
	lastOK time.Time // the last acknowledged INCR
	okAt   []time.Time
}

func runIncrLoad(t *testing.T, addr string, keys []string, stop *atomic.Bool, wg *sync.WaitGroup) *incrLoad {
	l := &incrLoad{keys: keys, acked: map[string][]int64{}}
	c := proxytest.Dial(t, addr)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			k := keys[i%len(keys)]
			r, err := c.Do("INCR", k)
			now := time.Now()
			l.mu.Lock()
			if err != nil || r.IsError() {
				if l.first == "" {
					l.first = fmt.Sprintf("%q %v", r.Raw(), err)
				}
				l.errs = append(l.errs, now)
				l.mu.Unlock()
				if err != nil {
					c = proxytest.Dial(t, addr)
				}
				time.Sleep(5 * time.Millisecond)
				continue
			}
			v, _ := strconv.ParseInt(strings.Trim(string(r.Raw()), ":\r\n"), 10, 64)
			l.acked[k] = append(l.acked[k], v)
			l.lastOK = now
			l.okAt = append(l.okAt, now)
			l.mu.Unlock()
		}
	}()
	return l
}

// firstOKAfter waits, up to 30s, for the first write acknowledged after
// since, and returns when it was.
func (l *incrLoad) firstOKAfter(t *testing.T, since time.Time) time.Time {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		l.mu.Lock()
		for _, at := range l.okAt {
			if at.After(since) {
				l.mu.Unlock()
				return at
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume within 30s (%d errors, the first %s)", len(l.errs), l.first)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// masterOf asks a Sentinel where it says group's master is now.
func masterOf(t *testing.T, s *proxytest.Sentinel, group string) string {
	m := s.Master(t, group)
	return m["ip"] + ":" + m["port"]
}

// SIGKILL a group's master under a steady write load: the group's writes
// resume on the new master once Sentinel has switched, the other group
// sees no error, nothing acknowledged after the switch is lost, and the
// old master, restarted empty and still configured as a master, gets no
// write.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	g := startSentinelGroups(t)
	addr, _ := startSentinelProxy(t, g)
	keys := keysOf(t, addr, g, 20)

	var stop atomic.Bool
	var wg sync.WaitGroup
	loads := [2]*incrLoad{runIncrLoad(t, addr, keys[0], &stop, &wg), runIncrLoad(t, addr, keys[1], &stop, &wg)}
	time.Sleep(500 * time.Millisecond)

	killed := time.Now()
	g.masters[0].Kill()
	// When a majority of the Sentinels names the replica.
	var switched time.Time
	for deadline := time.Now().Add(60 * time.Second); switched.IsZero(); {
		n := 0
		for _, s := range g.sentinels {
			if masterOf(t, s, "g0") == g.replicas[0].Addr {
				n++
			}
		}
		if n >= 2 {
			switched = time.Now()
		} else if time.Now().After(deadline) {
			t.Fatalf("Sentinels did not fail over g0 within 60s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	resumed := loads[0].firstOKAfter(t, switched) // the first write the new master acknowledges
	t.Logf("g0: master killed; Sentinels switched %v later; writes resumed %v after the switch (%v after the kill)",
		switched.Sub(killed).Round(time.Millisecond), resumed.Sub(switched).Round(time.Millisecond), resumed.Sub(killed).Round(time.Millisecond))

	// The old master comes back empty, configured as a master, while the
	// load goes on: the proxy keeps writing to the new master only.
	g.masters[0].Restart(t)
	time.Sleep(time.Second)
	old := g.masters[0].Client(t)
	if r, err := old.Do("DBSIZE"); err != nil || string(r.Raw()) != ":0\r\n" {
		if info, _ := old.Do("INFO", "replication"); !strings.Contains(string(info.Raw()), "role:slave") {
			t.Errorf("the restarted old master holds keys while it is a master: DBSIZE %q", r.Raw())
		}
	}
	if r, _ := old.Do("INFO", "commandstats"); strings.Contains(string(r.Raw()), "cmdstat_incr:") {
		if info, _ := old.Do("INFO", "replication"); !strings.Contains(string(info.Raw()), "role:slave") {
			t.Errorf("the restarted old master ran INCR while a master:\n%s", r.Raw())
		}
	}
	stop.Store(true)
	wg.Wait()

	if n := len(loads[1].errs); n > 0 {
		t.Errorf("g1 saw %d errors during g0's failover, the first %s", n, loads[1].first)
	}
	t.Logf("g0 saw %d errors between the kill and the resumption, the first %s", len(loads[0].errs), loads[0].first)
	// Every value acknowledged after the switch is on the new master; those
	// the old master acknowledged and did not replicate before it died are
	// counted.
	nc := g.replicas[0].Client(t)
	lost := 0
	for _, k := range keys[0] {
		vals := loads[0].acked[k]
		if len(vals) == 0 {
			continue
		}
		r, err := nc.Do("GET", k)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := strconv.ParseInt(strings.Trim(string(r.Raw()[strings.Index(string(r.Raw()), "\n")+1:]), "\r\n"), 10, 64)
		if last := vals[len(vals)-1]; got != last {
			t.Errorf("%s: the new master has %d, the last acknowledged INCR said %d", k, got, last)
		}
		for i := 1; i < len(vals); i++ {
			if vals[i] <= vals[i-1] {
				lost += int(vals[i-1] - vals[i] + 1)
			}
		}
	}
	t.Logf("g0: %d acknowledged increments lost to asynchronous replication at the kill", lost)
}
