package backend

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// testConfig is a pool's Config as the tests need it: counters of its own
// and a logger that discards.
func testConfig() *Config {
	return &Config{
		Timeout:          10 * time.Second,
		FailureLimit:     1,
		ErrPrefix:        "ERR server s (test): ",
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		ForwardErrors:    new(atomic.Int64),
		Ejects:           new(atomic.Int64),
		TotalConnections: new(atomic.Int64),
		HealthChanged:    func() {},
	}
}

// acquire takes the upstream of a redis-server at addr from r, with n
// shared connections, dialled at addr.
func acquire(t *testing.T, r *Registry, pool, addr string, n int) (*Upstream, []*Conn) {
	t.Helper()
	u, conns, created := r.Acquire(Key{Pool: pool, Network: "tcp", Addr: addr}, n, testConfig())
	if created {
		u.Address().Set(addr, "config", "")
	}
	return u, conns
}

// batchSink is one batch's replies, as a client's reply slots hold them:
// each sink copies its reply and the last one signals done.
type batchSink struct {
	slots   []slotSink
	sinks   []ReplySink
	sizes   []int
	pending atomic.Int32
	done    chan struct{}
	hang    *time.Timer // made once, so that a run allocates nothing
}

type slotSink struct {
	b     *batchSink
	reply []byte
}

func (s *slotSink) Deliver(reply []byte) {
	s.reply = append(s.reply[:0], reply...)
	s.complete()
}

func (s *slotSink) Fail(msg string) {
	s.reply = append(append(append(s.reply[:0], '-'), msg...), "\r\n"...)
	s.complete()
}

func (s *slotSink) complete() {
	if s.b.pending.Add(-1) == 0 {
		s.b.done <- struct{}{}
	}
}

func newBatchSink(n int) *batchSink {
	b := &batchSink{slots: make([]slotSink, n), sinks: make([]ReplySink, n), sizes: make([]int, n), done: make(chan struct{}, 1), hang: time.NewTimer(time.Hour)}
	for i := range b.slots {
		b.slots[i].b = b
		b.sinks[i] = &b.slots[i]
	}
	return b
}

// run submits reqs, whose sizes are sizes, on c and waits for every reply.
func (b *batchSink) run(t testing.TB, c *Conn, reqs []byte, sizes []int) {
	b.pending.Store(int32(len(b.slots)))
	copy(b.sizes, sizes)
	b.hang.Reset(30 * time.Second)
	c.Submit(reqs, b.sinks, b.sizes, time.Now())
	select {
	case <-b.done:
		b.hang.Stop()
	case <-b.hang.C:
		t.Fatal("no replies after 30 s")
	}
}

// pipeline returns the requests of args, one per element, and their sizes.
func pipeline(args ...[]string) ([]byte, []int) {
	var reqs []byte
	var sizes []int
	for _, a := range args {
		n := len(reqs)
		reqs = proxytest.AppendCommand(reqs, a...)
		sizes = append(sizes, len(reqs)-n)
	}
	return reqs, sizes
}

// A request on a warm shared connection allocates nothing: not in Submit,
// the write, the reader or the match to its sink.
func TestConnRequestsAllocateNothing(t *testing.T) {
	redis := proxytest.StartRedis(t)
	var r Registry
	defer r.Close()
	_, conns := acquire(t, &r, "p", redis.Addr, 1)
	var args [][]string
	for i := 0; i < 16; i++ {
		args = append(args, []string{"GET", fmt.Sprint("k", i)})
	}
	reqs, sizes := pipeline(args...)
	b := newBatchSink(len(args))
	roundTrip := func() { b.run(t, conns[0], reqs, sizes) }
	roundTrip()
	for i, s := range b.slots {
		if string(s.reply) != "$-1\r\n" {
			t.Fatalf("reply %d = %q, want $-1", i, s.reply)
		}
	}
	if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
		t.Fatalf("%v allocations per pipeline, want none", n)
	}
}

// Replies reach the sinks of their own requests, in order, while many
// submitters share one connection.
func TestConnMatchesRepliesInOrder(t *testing.T) {
	redis := proxytest.StartRedis(t)
	var r Registry
	defer r.Close()
	_, conns := acquire(t, &r, "p", redis.Addr, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var args [][]string
			for i := 0; i < 32; i++ {
				args = append(args, []string{"ECHO", fmt.Sprintf("g%d-%d", g, i)})
			}
			reqs, sizes := pipeline(args...)
			b := newBatchSink(len(args))
			for round := 0; round < 50; round++ {
				b.run(t, conns[0], reqs, sizes)
				for i, s := range b.slots {
					want := fmt.Sprintf("g%d-%d", g, i)
					if got := string(s.reply); got != fmt.Sprintf("$%d\r\n%s\r\n", len(want), want) {
						errs <- fmt.Errorf("round %d: reply to ECHO %s = %q", round, want, got)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Requests to a server that does not answer fail with the server's error
// prefix and the cause once the timeout passes, and count as a timeout.
func TestConnFailsRequestsOfAStoppedServer(t *testing.T) {
	redis := proxytest.StartRedis(t)
	var r Registry
	defer r.Close()
	u, conns := acquire(t, &r, "p", redis.Addr, 1)
	cfg := testConfig()
	cfg.Timeout = 200 * time.Millisecond
	u.SetConfig(cfg)
	reqs, sizes := pipeline([]string{"PING"})
	b := newBatchSink(1)
	b.run(t, conns[0], reqs, sizes)
	if got := string(b.slots[0].reply); got != "+PONG\r\n" {
		t.Fatalf("PING = %q", got)
	}
	redis.Pause()
	defer redis.Resume()
	b.run(t, conns[0], reqs, sizes)
	if got, want := string(b.slots[0].reply), "-ERR server s (test): timed out\r\n"; got != want {
		t.Fatalf("PING to a stopped server = %q, want %q", got, want)
	}
	if n := u.Stats().ServerTimedout.Load(); n != 1 {
		t.Fatalf("server_timedout = %d, want 1", n)
	}
	if n := cfg.ForwardErrors.Load(); n != 1 {
		t.Fatalf("forward_error = %d, want 1", n)
	}
}

// The dialer authenticates before it selects the database, so SELECT works
// on a password-protected server; a wrong password is AUTH's refusal.
func TestDialerAuthBeforeSelect(t *testing.T) {
	redis := proxytest.StartRedis(t, proxytest.RedisPassword("secret"))
	d := dialer{network: "tcp", auth: "secret", db: 3}
	conn, err := d.dial(redis.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := proxytest.NewConn(conn)
	defer c.Close()
	reply, err := c.Do("CLIENT", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reply.Str), " db=3 ") {
		t.Fatalf("CLIENT INFO = %q, want db=3", reply.String())
	}

	d.auth = "wrong"
	if _, err := d.dial(redis.Addr, 5*time.Second); err == nil || !strings.HasPrefix(err.Error(), "AUTH refused: WRONGPASS") {
		t.Fatalf("dial with a wrong password: %v, want AUTH refused: WRONGPASS ...", err)
	}
}

// Two pools with the same server key share one upstream and its
// connections; the connections only one of them holds come back when it
// lets go, and the upstream leaves the registry with its last user.
func TestRegistrySharesUpstreamsByKey(t *testing.T) {
	redis := proxytest.StartRedis(t)
	var r Registry
	defer r.Close()
	key := Key{Pool: "p", Network: "tcp", Addr: redis.Addr}
	u1, c1, created := r.Acquire(key, 1, testConfig())
	if !created {
		t.Fatal("first Acquire did not create the upstream")
	}
	u2, c2, created := r.Acquire(key, 2, testConfig())
	if created || u2 != u1 || len(c2) != 2 || c2[0] != c1[0] {
		t.Fatalf("second Acquire: created %v, same upstream %v, %d conns, first shared %v", created, u2 == u1, len(c2), c2[0] == c1[0])
	}
	if other, _, created := r.Acquire(Key{Pool: "p", Network: "tcp", Addr: redis.Addr, DB: 1}, 1, testConfig()); !created || other == u1 {
		t.Fatal("another database got the same upstream")
	}
	if unused := r.Release(u1, 2); len(unused) != 1 || unused[0] != c2[1] {
		t.Fatalf("Release of the 2-connection user returned %d connections, want its second", len(unused))
	}
	if inUse, _ := r.Len(); inUse != 2 {
		t.Fatalf("%d upstreams in use, want 2", inUse)
	}
	if unused := r.Release(u1, 1); len(unused) != 1 || unused[0] != c1[0] {
		t.Fatalf("Release of the last user returned %d connections, want the first", len(unused))
	}
	if inUse, retired := r.Len(); inUse != 1 || retired != 0 {
		t.Fatalf("after both releases: %d in use, %d retired; want 1, 0", inUse, retired)
	}
	if u3, _, created := r.Acquire(key, 1, testConfig()); !created || u3 == u1 {
		t.Fatal("an upstream out of use was handed out again")
	}
}

// A released dedicated connection is reused by the next transaction; one
// whose server closed it while idle is not.
func TestDedicatedReuse(t *testing.T) {
	redis := proxytest.StartRedis(t)
	var r Registry
	defer r.Close()
	u, _ := acquire(t, &r, "p", redis.Addr, 1)
	ping := proxytest.AppendCommand(nil, "PING")
	d, err := u.TakeDedicated()
	if err != nil {
		t.Fatal(err)
	}
	if reply, err := d.Do(ping, 1); err != nil || string(reply) != "+PONG\r\n" {
		t.Fatalf("PING = %q, %v", reply, err)
	}
	d.Release()
	if n := u.IdleDedicated(); n != 1 {
		t.Fatalf("%d idle dedicated connections, want 1", n)
	}
	if d, err = u.TakeDedicated(); err != nil || !d.Reused() {
		t.Fatalf("second TakeDedicated: reused %v, %v; want the idle one", d != nil && d.Reused(), err)
	}
	d.Release()

	admin := redis.Client(t)
	if _, err := admin.Do("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !d.peerClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	d2, err := u.TakeDedicated()
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if d2.Reused() {
		t.Fatal("a connection the server closed was reused")
	}
	if reply, err := d2.Do(ping, 1); err != nil || string(reply) != "+PONG\r\n" {
		t.Fatalf("PING on the new connection = %q, %v", reply, err)
	}
}

// A ReadOnly upstream's connections are in READONLY mode before they carry
// a request, as a Redis Cluster replica needs to serve reads; a node that
// refuses READONLY (cluster support disabled) refuses the connection.
func TestDialerReadOnly(t *testing.T) {
	node := proxytest.StartRedis(t, proxytest.RedisArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	d := dialer{network: "tcp", readOnly: true}
	conn, err := d.dial(node.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := proxytest.NewConn(conn)
	defer c.Close()
	reply, err := c.Do("CLIENT", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reply.Str), " flags=r ") {
		t.Fatalf("CLIENT INFO = %q, want flags=r", reply.String())
	}

	plain := proxytest.StartRedis(t)
	if _, err := d.dial(plain.Addr, 5*time.Second); err == nil || !strings.HasPrefix(err.Error(), "READONLY refused: ERR This instance has cluster support disabled") {
		t.Fatalf("dial of a node without cluster support: %v, want READONLY refused: ERR This instance has cluster support disabled", err)
	}
}
