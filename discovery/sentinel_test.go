package discovery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// failoverBound is how long a test waits for Sentinel to notice a dead
// master (down-after-milliseconds), agree, elect a leader and promote the
// replica. A failover takes a few seconds; a lost election is retried after
// twice the failover-timeout.
const failoverBound = 60 * time.Second

// sentinelGroup is a master, its replica and the Sentinels watching them.
type sentinelGroup struct {
	name      string
	master    *proxytest.Redis
	replica   *proxytest.Redis
	sentinels []*proxytest.Sentinel
}

// startSentinelGroup starts a master, a replica of it and n Sentinels with
// quorum n/2+1, and waits until every Sentinel knows the replica and the
// other Sentinels, so that a failover can happen.
func startSentinelGroup(t *testing.T, name string, n int, opts ...proxytest.SentinelOption) *sentinelGroup {
	t.Helper()
	g := &sentinelGroup{name: name, master: proxytest.StartRedis(t)}
	g.replica = proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(g.master.Port)))
	waitReplicaLinked(t, g.replica)
	for range n {
		g.sentinels = append(g.sentinels, proxytest.StartSentinel(t, name, g.master.Addr, n/2+1, opts...))
	}
	proxytest.WaitForSentinels(t, name, 1, 30*time.Second, g.sentinels...)
	return g
}

func (g *sentinelGroup) addrs() []string {
	var out []string
	for _, s := range g.sentinels {
		out = append(out, s.Addr)
	}
	return out
}

// waitReplicaLinked waits until r has synced with its master: Sentinel
// learns replicas from the master's INFO, and a failover needs one.
func waitReplicaLinked(t *testing.T, r *proxytest.Redis) {
	t.Helper()
	c := r.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := c.Do("INFO", "replication")
		if err != nil {
			t.Fatalf("INFO replication on %s: %v", r.Addr, err)
		}
		if strings.Contains(string(rep.Str), "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not linked after 30s:\n%s", r.Addr, rep.Str)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sentinelChange is one OnChange call.
type sentinelChange struct {
	at    time.Time
	views map[string]SentinelMaster
}

// sentinelRun is a running SentinelWatcher with its OnChange calls and logs.
type sentinelRun struct {
	watchRun[sentinelChange]
	w *SentinelWatcher
}

// startSentinelWatcher runs a watcher with opts, logging at Debug into a
// buffer that is dumped if the test fails, and stops it in t's cleanup.
func startSentinelWatcher(t *testing.T, opts SentinelOptions) *sentinelRun {
	t.Helper()
	r := &sentinelRun{}
	opts.Logger = r.logger()
	opts.OnChange = func(views map[string]SentinelMaster) { r.record(sentinelChange{at: time.Now(), views: views}) }
	w, err := NewSentinelWatcher(opts)
	if err != nil {
		t.Fatalf("NewSentinelWatcher: %v", err)
	}
	r.w = w
	r.start(t, w.Run)
	return r
}

// waitGoroutinesGone waits until no goroutine runs a method of the types
// named, after a watcher's Run returned. One that called its WaitGroup's
// Done is still on its way out then: it gets a moment, not a leak's
// lifetime.
func waitGoroutinesGone(t *testing.T, types ...string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; {
		stacks := string(buf[:runtime.Stack(buf, true)])
		left := ""
		for _, typ := range types {
			if strings.Contains(stacks, "discovery.(*"+typ+")") {
				left = typ
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a goroutine of %s is left 5s after Run returned:\n%s", left, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watchRun is a watcher's Run under way in a test: its log, at Debug, and
// what its OnChange got, in order.
type watchRun[V any] struct {
	cancel  context.CancelFunc
	done    chan error
	stopped bool // Run has returned
	logs    *syncBuffer

	inCall     atomic.Int32 // OnChange calls under way
	concurrent atomic.Bool  // two calls overlapped

	mu      sync.Mutex // guards changes
	changes []V
}

// logger is the watcher's logger, into r's log.
func (r *watchRun[V]) logger() *slog.Logger {
	r.logs = &syncBuffer{}
	return slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs run until t ends, then checks that no OnChange overlapped
// another and dumps the log if t failed.
func (r *watchRun[V]) start(t *testing.T, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() {
		r.stop(t)
		if r.concurrent.Load() {
			t.Error("OnChange was called concurrently")
		}
		if t.Failed() {
			t.Logf("watcher log:\n%s", r.logs.String())
		}
	})
}

// record is an OnChange: it keeps v and notes a call that overlaps
// another.
func (r *watchRun[V]) record(v V) {
	if r.inCall.Add(1) > 1 {
		r.concurrent.Store(true)
	}
	defer r.inCall.Add(-1)
	r.mu.Lock()
	r.changes = append(r.changes, v)
	r.mu.Unlock()
	time.Sleep(time.Millisecond) // widen the window for an overlapping call
}

func (r *watchRun[V]) changeList() []V {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// stop cancels Run and waits for it to return; it may be called twice.
func (r *watchRun[V]) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if r.stopped {
		return
	}
	select {
	case err := <-r.done:
		r.stopped = true
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10s after its context was cancelled")
	}
}

// waitView polls Snapshot until ok accepts the view of master, and returns
// it. It fails t after timeout, with the last view.
func (r *sentinelRun) waitView(t *testing.T, master, what string, timeout time.Duration, ok func(SentinelMaster) bool) SentinelMaster {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := r.w.Snapshot()[master]
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no view where %s after %v; last %+v", master, what, timeout, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits until the watcher's log has a line containing every one of
// parts, and returns it.
func (r *sentinelRun) waitLog(t *testing.T, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if lines := logLines(r.logs.String(), parts...); len(lines) > 0 {
			return lines[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q after %v", parts, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func logLines(logs string, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// subscribeSwitchMaster subscribes to +switch-master on s and returns a
// channel that gets the time of the first message.
func subscribeSwitchMaster(t *testing.T, s *proxytest.Sentinel) <-chan time.Time {
	t.Helper()
	c := s.Client(t)
	if rep, err := c.Do("SUBSCRIBE", "+switch-master"); err != nil || rep.Type != '*' {
		t.Fatalf("SUBSCRIBE +switch-master on %s: %v %v", s.Addr, rep, err)
	}
	c.Timeout = failoverBound
	at := make(chan time.Time, 1)
	go func() {
		if rep, err := c.Read(); err == nil && rep.Type == '*' {
			at <- time.Now()
		}
		close(at)
	}()
	return at
}

func TestSentinelWatcherFailover(t *testing.T) {
	g := startSentinelGroup(t, "shard0", 3)
	r := startSentinelWatcher(t, SentinelOptions{
		Sentinels: g.addrs(),
		Masters:   []string{"shard0"},
		Poll:      200 * time.Millisecond,
		Timeout:   500 * time.Millisecond,
	})
	before := r.waitView(t, "shard0", "all three agree on the master and its replica", 10*time.Second, func(v SentinelMaster) bool {
		return v.Addr == g.master.Addr && v.Agree == 3 && v.Reachable == 3 && slices.Equal(v.Replicas, []string{g.replica.Addr})
	})
	wantEpoch, _ := strconv.ParseInt(g.sentinels[0].Master(t, "shard0")["config-epoch"], 10, 64)
	if before.Epoch != wantEpoch || before.Switches != 0 || before.Down != 0 {
		t.Errorf("before the failover: %+v, want Epoch %d, Switches 0, Down 0", before, wantEpoch)
	}
	if len(r.changeList()) == 0 {
		t.Error("no OnChange for the first view")
	}

	switched := subscribeSwitchMaster(t, g.sentinels[0])
	g.master.Kill()
	after := r.waitView(t, "shard0", "the replica is master", failoverBound, func(v SentinelMaster) bool {
		return v.Addr == g.replica.Addr
	})
	if after.Epoch <= before.Epoch || after.Switches != 1 || after.LastSwitch.IsZero() || after.Agree < 2 {
		t.Errorf("after the failover: %+v, want Epoch > %d, Switches 1, LastSwitch set, Agree >= 2", after, before.Epoch)
	}
	// OnChange comes from its own goroutine, after Snapshot shows the
	// switch.
	var called time.Time
	for deadline := time.Now().Add(10 * time.Second); called.IsZero(); {
		for _, c := range r.changeList() {
			if c.views["shard0"].Addr == g.replica.Addr {
				called = c.at
				break
			}
		}
		if called.IsZero() && time.Now().After(deadline) {
			t.Fatal("OnChange was not called with the new master")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case at, ok := <-switched:
		if ok {
			t.Logf("OnChange came %v after +switch-master on the first Sentinel", called.Sub(at))
		}
	case <-time.After(5 * time.Second):
		t.Log("+switch-master not heard on the first Sentinel")
	}
	// The killed master is listed as a replica of the new one, flagged down.
	r.waitView(t, "shard0", "all three agree on the new master", 30*time.Second, func(v SentinelMaster) bool {
		return v.Addr == g.replica.Addr && v.Agree == 3 && !slices.Contains(v.Replicas, g.master.Addr)
	})
}

// A Sentinel that slept through a failover and wakes up naming the old
// master at the old epoch must not move the view back.
//
// The watcher's question must reach the paused Sentinel before the other
// Sentinels' hello messages with the new configuration do, or it answers
// with the new one: on resume it serves its sockets in the order they
// became readable, and a connection dialed during the pause is accepted
// only after the queued hellos are read. So the Timeout is longer than the
// pause and the poll written just after SIGSTOP waits on its connection.
func TestSentinelWatcherIgnoresStaleSentinel(t *testing.T) {
	g := startSentinelGroup(t, "shard0", 3)
	r := startSentinelWatcher(t, SentinelOptions{
		Sentinels: g.addrs(),
		Masters:   []string{"shard0"},
		Poll:      10 * time.Millisecond,
		Timeout:   failoverBound,
	})
	r.waitView(t, "shard0", "all three agree", 10*time.Second, func(v SentinelMaster) bool {
		return v.Addr == g.master.Addr && v.Agree == 3
	})
	sleeper := g.sentinels[2]
	sleeper.Pause()
	g.master.Kill()
	after := r.waitView(t, "shard0", "the replica is master", failoverBound, func(v SentinelMaster) bool {
		return v.Addr == g.replica.Addr
	})
	if after.Agree != 2 {
		t.Errorf("with one Sentinel paused: %+v, want Agree 2", after)
	}
	sleeper.Resume()
	line := r.waitLog(t, 30*time.Second, "sentinel answer ignored", "sentinel="+sleeper.Addr, "addr="+g.master.Addr)
	t.Logf("the resumed Sentinel's answer: %s", line)
	r.waitView(t, "shard0", "the resumed Sentinel agrees again", 30*time.Second, func(v SentinelMaster) bool {
		return v.Agree == 3
	})
	v := r.w.Snapshot()["shard0"]
	if v.Addr != g.replica.Addr || v.Switches != 1 || v.Stale == 0 {
		t.Errorf("after the resumed Sentinel caught up: %+v, want Addr %s, Switches 1, Stale > 0", v, g.replica.Addr)
	}
	moved := false
	for _, c := range r.changeList() {
		if c.views["shard0"].Addr == g.replica.Addr {
			moved = true
		} else if moved {
			t.Errorf("OnChange at %v went back to %+v", c.at, c.views["shard0"])
		}
	}
}

func TestSentinelWatcherTwoMastersAndUnknown(t *testing.T) {
	alpha := proxytest.StartRedis(t)
	beta := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "alpha", alpha.Addr, 1, proxytest.SentinelMonitor("beta", beta.Addr, 1))
	r := startSentinelWatcher(t, SentinelOptions{
		Sentinels: []string{s.Addr},
		Masters:   []string{"alpha", "beta", "nosuch"},
		Poll:      20 * time.Millisecond,
		Timeout:   time.Second,
	})
	for name, addr := range map[string]string{"alpha": alpha.Addr, "beta": beta.Addr} {
		r.waitView(t, name, "it is at "+addr, 10*time.Second, func(v SentinelMaster) bool {
			return v.Addr == addr && v.Agree == 1 && v.Reachable == 1
		})
	}
	r.waitView(t, "nosuch", "the Sentinel answered", 10*time.Second, func(v SentinelMaster) bool {
		return v.Reachable == 1
	})
	// Let it poll a few dozen more times.
	time.Sleep(500 * time.Millisecond)
	v := r.w.Snapshot()["nosuch"]
	if v.Addr != "" || v.Agree != 0 || v.Reachable != 1 {
		t.Errorf("nosuch: %+v, want Addr \"\", Agree 0, Reachable 1", v)
	}
	lines := logLines(r.logs.String(), "master=nosuch", "No such master with that name")
	if len(lines) != 1 {
		t.Errorf("the Sentinel's error for nosuch was logged %d times, want once:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if lines := logLines(r.logs.String(), "master=alpha", "level=WARN"); len(lines) != 0 {
		t.Errorf("warnings about alpha:\n%s", strings.Join(lines, "\n"))
	}
}

// MapAddr turns reported addresses into the ones to dial, and a master
// address it does not know is ignored as a stale answer, warned of once.
func TestSentinelWatcherMapAddr(t *testing.T) {
	alpha := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "alpha", alpha.Addr, 1)
	var known atomic.Bool
	known.Store(true)
	r := startSentinelWatcher(t, SentinelOptions{
		Sentinels: []string{s.Addr},
		Masters:   []string{"alpha"},
		Poll:      20 * time.Millisecond,
		MapAddr: func(addr string) (string, bool) {
			if addr != alpha.Addr || !known.Load() {
				return "", false
			}
			return "198.18.0.2:6379", true
		},
	})
	r.waitView(t, "alpha", "it is at the mapped address", 10*time.Second, func(v SentinelMaster) bool {
		return v.Addr == "198.18.0.2:6379" && v.Agree == 1
	})
	known.Store(false)
	stale := r.waitView(t, "alpha", "the unknown address is ignored", 10*time.Second, func(v SentinelMaster) bool {
		return v.Agree == 0 && v.Stale > 2
	})
	if stale.Addr != "198.18.0.2:6379" {
		t.Errorf("Addr = %q while the Sentinel names an unknown address, want the last agreed 198.18.0.2:6379", stale.Addr)
	}
	known.Store(true)
	r.waitView(t, "alpha", "it is agreed again", 10*time.Second, func(v SentinelMaster) bool { return v.Agree == 1 })
	if lines := logLines(r.logs.String(), "level=WARN", "not a known endpoint", "addr="+alpha.Addr); len(lines) != 1 {
		t.Errorf("the unknown address was warned of %d times, want once:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

func TestSentinelWatcherAuth(t *testing.T) {
	master := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "shard0", master.Addr, 1, proxytest.SentinelPassword("s3cret"))
	opts := SentinelOptions{
		Sentinels: []string{s.Addr},
		Masters:   []string{"shard0"},
		Poll:      50 * time.Millisecond,
		Timeout:   time.Second,
	}
	withPassword := opts
	withPassword.Username, withPassword.Password = "default", "s3cret"
	good := startSentinelWatcher(t, withPassword)
	wrongPassword := opts
	wrongPassword.Password = "wrong"
	wrong := startSentinelWatcher(t, wrongPassword)
	none := startSentinelWatcher(t, opts)

	good.waitView(t, "shard0", "the master is found", 10*time.Second, func(v SentinelMaster) bool {
		return v.Addr == master.Addr && v.Reachable == 1
	})
	none.waitLog(t, 10*time.Second, "level=WARN", "sentinel unreachable", "requires a password", "NOAUTH")
	wrong.waitLog(t, 10*time.Second, "level=WARN", "sentinel unreachable", "AUTH", "WRONGPASS")
	time.Sleep(300 * time.Millisecond) // several more failed polls
	for name, r := range map[string]*sentinelRun{"no password": none, "wrong password": wrong} {
		if v := r.w.Snapshot()["shard0"]; v.Reachable != 0 || v.Addr != "" {
			t.Errorf("%s: %+v, want Reachable 0 and no Addr", name, v)
		}
		if n := len(logLines(r.logs.String(), "level=WARN", "sentinel unreachable")); n != 1 {
			t.Errorf("%s: \"sentinel unreachable\" logged %d times, want once", name, n)
		}
	}
}

func TestSentinelWatcherPoke(t *testing.T) {
	first := proxytest.StartRedis(t)
	second := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "shard0", first.Addr, 1)
	r := startSentinelWatcher(t, SentinelOptions{
		Sentinels: []string{s.Addr},
		Masters:   []string{"shard0"},
		Poll:      10 * time.Second,
		Timeout:   time.Second,
	})
	r.waitView(t, "shard0", "the first master is found", 5*time.Second, func(v SentinelMaster) bool {
		return v.Addr == first.Addr
	})
	// Re-monitoring under the same name moves the master without any of the
	// events the watcher subscribes to: only a poll can see it.
	c := s.Client(t)
	for _, cmd := range [][]string{
		{"SENTINEL", "REMOVE", "shard0"},
		{"SENTINEL", "MONITOR", "shard0", "127.0.0.1", strconv.Itoa(second.Port), "1"},
	} {
		if rep, err := c.Do(cmd...); err != nil || rep.Type != '+' {
			t.Fatalf("%q: %v %v", cmd, rep, err)
		}
	}
	poked := time.Now()
	r.w.Poke("shard0")
	// Poll is 10s: without the poke the next poll is seconds past this wait.
	v := r.waitView(t, "shard0", "the second master is found", 4*time.Second, func(v SentinelMaster) bool {
		return v.Addr == second.Addr
	})
	t.Logf("the poked poll's answer came %v after Poke", time.Since(poked))
	if v.Switches != 1 {
		t.Errorf("after the poke: %+v, want Switches 1", v)
	}
	r.w.Poke("unknown") // ignored
}

func TestSentinelWatcherRunClosesEverything(t *testing.T) {
	master := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "shard0", master.Addr, 1)
	r := startSentinelWatcher(t, SentinelOptions{
		Sentinels: []string{s.Addr},
		Masters:   []string{"shard0"},
		Poll:      50 * time.Millisecond,
	})
	r.waitView(t, "shard0", "the master is found", 10*time.Second, func(v SentinelMaster) bool {
		return v.Addr == master.Addr
	})
	c := s.Client(t)
	waitWatcherConns(t, c, 2) // polls and subscription
	r.stop(t)
	waitWatcherConns(t, c, 0)
	waitGoroutinesGone(t, "sentinelLink", "SentinelWatcher")
	if err := r.w.Run(context.Background()); err == nil {
		t.Error("a second Run returned nil, want an error")
	}
}

// waitWatcherConns waits until the Sentinel behind c lists n connections
// named by a watcher.
func waitWatcherConns(t *testing.T, c *proxytest.Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err := c.Do("CLIENT", "LIST")
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		got := strings.Count(string(rep.Str), "name="+sentinelClientName+" ")
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinel lists %d watcher connections, want %d:\n%s", got, n, rep.Str)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewSentinelWatcherChecksOptions(t *testing.T) {
	ok := SentinelOptions{Sentinels: []string{"127.0.0.1:26379"}, Masters: []string{"m"}}
	tests := []struct {
		name string
		edit func(*SentinelOptions)
		want string // in the error; "" for none
	}{
		{"ok", func(*SentinelOptions) {}, ""},
		{"no sentinels", func(o *SentinelOptions) { o.Sentinels = nil }, "no Sentinels"},
		{"no masters", func(o *SentinelOptions) { o.Masters = nil }, "no Masters"},
		{"bad address", func(o *SentinelOptions) { o.Sentinels = []string{"localhost"} }, `Sentinels[0]: "localhost"`},
		{"bad port", func(o *SentinelOptions) { o.Sentinels = []string{"h:0"} }, "not host:port"},
		{"twice", func(o *SentinelOptions) { o.Sentinels = []string{"h:1", "h:1"} }, "Sentinels[1]"},
		{"empty master", func(o *SentinelOptions) { o.Masters = []string{""} }, "Masters[0]"},
		{"master with space", func(o *SentinelOptions) { o.Masters = []string{"a b"} }, "not a Sentinel master name"},
		{"master twice", func(o *SentinelOptions) { o.Masters = []string{"a", "a"} }, "listed twice"},
		{"username alone", func(o *SentinelOptions) { o.Username = "u" }, "needs a Password"},
		{"negative poll", func(o *SentinelOptions) { o.Poll = -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			_, err := NewSentinelWatcher(o)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("NewSentinelWatcher = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestSentinelAgree(t *testing.T) {
	a := func(addr string, epoch int64) sentinelAnswer {
		return sentinelAnswer{answered: true, addr: addr, epoch: epoch}
	}
	leading := func(a sentinelAnswer) sentinelAnswer { a.inFailover = true; return a }
	none := sentinelAnswer{}
	unknown := sentinelAnswer{answered: true}
	tests := []struct {
		name    string
		old     SentinelMaster
		answers []sentinelAnswer
		want    SentinelMaster // Addr, Epoch, Agree, Reachable, Switches
	}{
		{"first majority", SentinelMaster{}, []sentinelAnswer{a("A:1", 0), a("A:1", 0), none},
			SentinelMaster{Addr: "A:1", Agree: 2, Reachable: 2}},
		{"one of three is no majority", SentinelMaster{}, []sentinelAnswer{a("A:1", 0), none, none},
			SentinelMaster{Agree: 0, Reachable: 1}},
		{"majority of all, not of the reachable", SentinelMaster{Addr: "A:1"}, []sentinelAnswer{a("B:1", 1), none, none},
			SentinelMaster{Addr: "A:1", Agree: 0, Reachable: 1}},
		{"switch", SentinelMaster{Addr: "A:1"}, []sentinelAnswer{a("B:1", 1), a("B:1", 2), a("A:1", 0)},
			SentinelMaster{Addr: "B:1", Epoch: 2, Agree: 2, Reachable: 3, Switches: 1}},
		{"lower epoch does not count", SentinelMaster{Addr: "B:1", Epoch: 1, Switches: 1}, []sentinelAnswer{a("A:1", 0), a("A:1", 0), a("B:1", 1)},
			SentinelMaster{Addr: "B:1", Epoch: 1, Agree: 1, Reachable: 3, Switches: 1}},
		{"split keeps the view", SentinelMaster{Addr: "A:1"}, []sentinelAnswer{a("A:1", 0), a("B:1", 1), unknown, none},
			SentinelMaster{Addr: "A:1", Agree: 1, Reachable: 3}},
		// A failover's leader names the old master at the new epoch until
		// the switch; that epoch must not become the old master's.
		{"leader mid-failover", SentinelMaster{Addr: "A:1"}, []sentinelAnswer{leading(a("A:1", 1)), a("A:1", 0), a("A:1", 0)},
			SentinelMaster{Addr: "A:1", Epoch: 0, Agree: 3, Reachable: 3}},
		{"even count needs more than half", SentinelMaster{Addr: "A:1"}, []sentinelAnswer{a("B:1", 1), a("B:1", 1), a("A:1", 0), none},
			SentinelMaster{Addr: "A:1", Agree: 1, Reachable: 3}},
	}
	w := &SentinelWatcher{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := w.agree(tc.old, tc.answers)
			if got.Addr != tc.want.Addr || got.Epoch != tc.want.Epoch || got.Agree != tc.want.Agree ||
				got.Reachable != tc.want.Reachable || got.Switches != tc.want.Switches {
				t.Errorf("agree(%+v) = %+v, want %+v", tc.old, got, tc.want)
			}
		})
	}
}

func TestAgreedReplicas(t *testing.T) {
	answers := []sentinelAnswer{
		{answered: true, addr: "M:1", replicas: []string{"R:2", "R:1"}},
		{answered: true, addr: "M:1", replicas: []string{"R:1"}, downs: []string{"R:2", "M:1"}},
		{answered: true, addr: "X:1", replicas: []string{"R:3"}},
		{addr: "M:1", replicas: []string{"R:4"}}, // did not answer this poll
	}
	if got := agreedReplicas("M:1", answers, 0); !slices.Equal(got, []string{"R:1"}) {
		t.Errorf("agreedReplicas = %q, want [R:1]", got)
	}
}

func TestSentinelEventMaster(t *testing.T) {
	tests := []struct{ channel, payload, want string }{
		{"+switch-master", "shard0 127.0.0.1 6379 127.0.0.1 6380", "shard0"},
		{"+sdown", "master shard0 127.0.0.1 6379", "shard0"},
		{"+sdown", "slave 127.0.0.1:6380 127.0.0.1 6380 @ shard0 127.0.0.1 6379", "shard0"},
		{"+config-update-from", "sentinel 5a7c 127.0.0.1 26379 @ shard0 127.0.0.1 6379", "shard0"},
		{"+odown", "master shard0 127.0.0.1 6379 #quorum 2/2", "shard0"},
		{"+sdown", "", ""},
		{"+sdown", "slave x 1 2 @", ""},
	}
	for _, tc := range tests {
		if got := eventMaster(tc.channel, tc.payload); got != tc.want {
			t.Errorf("eventMaster(%q, %q) = %q, want %q", tc.channel, tc.payload, got, tc.want)
		}
	}
}

func FuzzReadRESP(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n", "-ERR No such master with that name\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n",
		"*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n", "*1\r\n*2\r\n$4\r\nport\r\n$4\r\n6379\r\n", "*-1\r\n",
		"*1\r\n$-2\r\n", "*-5\r\n", "$2147483648\r\n", "+OK\n", "$3\r\nabcd\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		for range 16 {
			if _, err := readRESP(br); err != nil {
				return
			}
		}
	})
}
