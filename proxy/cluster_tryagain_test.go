package proxy

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startTryAgainServer starts a proxy over c with extra pool keys, its map
// c's own: no watcher feeds it, so MOVED is what tells it of a slot that
// moved.
func startTryAgainServer(t *testing.T, c *proxytest.Cluster, extra string) (*Server, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	var servers []string
	for _, s := range c.Seeds() {
		servers = append(servers, s+":1")
	}
	srv := startServer(t, poolYAML(addr, "  redis_cluster: true\n"+extra, servers...), Options{})
	srv.SetClusterMap("alpha", viewMap(t, c))
	return srv, addr
}

// tryAgainSeen counts, by hash tag, the -TRYAGAIN replies that reach the
// proxy's reply slots.
type tryAgainSeen struct {
	mu    sync.Mutex
	byTag map[string]int
}

func watchTryAgain(t *testing.T, tags ...string) *tryAgainSeen {
	w := &tryAgainSeen{byTag: map[string]int{}}
	hook := func(s *replySlot, reply []byte) {
		if !bytes.HasPrefix(reply, []byte("-TRYAGAIN ")) {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, tag := range tags {
			if bytes.Contains(s.req.bytes, []byte("{"+tag+"}")) {
				w.byTag[tag]++
			}
		}
	}
	testHookDeliver.Store(&hook)
	t.Cleanup(func() { testHookDeliver.Store(nil) })
	return w
}

func (w *tryAgainSeen) count(tag string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byTag[tag]
}

// waitFor waits until every tag has had n -TRYAGAIN replies.
func (w *tryAgainSeen) waitFor(t *testing.T, n int, tags ...string) {
	t.Helper()
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for _, tag := range tags {
		for w.count(tag) < n {
			if time.Now().After(deadline) {
				t.Fatalf("the requests of {%s} got %d -TRYAGAIN, want %d", tag, w.count(tag), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// slotMove is a slot of the cluster halfway through a migration by hand:
// {tag}a is on the importing node already, {tag}b still on the migrating
// one, so a command on both gets -TRYAGAIN.
type slotMove struct {
	c        *proxytest.Cluster
	tag      string
	slot     string
	from, to *proxytest.ClusterNode
	movedB   bool // {tag}b is on the importing node too
}

// startSlotMove sets {tag}a to "old-a" and {tag}b to "old-b" and starts
// moving their slot to another master, {tag}a first.
func startSlotMove(t *testing.T, c *proxytest.Cluster, tag string) *slotMove {
	t.Helper()
	slot := int(hashring.KeySlot([]byte("{" + tag + "}")))
	m := &slotMove{c: c, tag: tag, slot: strconv.Itoa(slot), from: c.Owner(t, slot)}
	for _, n := range c.Masters() {
		if n.ID != m.from.ID {
			m.to = n
			break
		}
	}
	from, to := m.from.Client(t), m.to.Client(t)
	for _, k := range []string{"a", "b"} {
		if got := do(t, from, "SET", m.key(k), "old-"+k); got != "+OK\r\n" {
			t.Fatalf("SET %s on its owner = %q", m.key(k), got)
		}
	}
	if got := do(t, to, "CLUSTER", "SETSLOT", m.slot, "IMPORTING", m.from.ID); got != "+OK\r\n" {
		t.Fatalf("CLUSTER SETSLOT %s IMPORTING = %q", m.slot, got)
	}
	if got := do(t, from, "CLUSTER", "SETSLOT", m.slot, "MIGRATING", m.to.ID); got != "+OK\r\n" {
		t.Fatalf("CLUSTER SETSLOT %s MIGRATING = %q", m.slot, got)
	}
	m.migrate(t, "a")
	return m
}

func (m *slotMove) key(k string) string { return "{" + m.tag + "}" + k }

// migrate moves {tag}k to the importing node.
func (m *slotMove) migrate(t *testing.T, k string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(m.to.Addr)
	if got := do(t, m.from.Client(t), "MIGRATE", host, port, m.key(k), "0", "5000"); got != "+OK\r\n" {
		t.Fatalf("MIGRATE %s = %q", m.key(k), got)
	}
	m.movedB = m.movedB || k == "b"
}

// finish moves {tag}b too and gives the slot to the importing node, which
// is told first, as redis-cli --cluster does.
func (m *slotMove) finish(t *testing.T) {
	t.Helper()
	if !m.movedB {
		m.migrate(t, "b")
	}
	for _, n := range []*proxytest.ClusterNode{m.to, m.from} {
		if got := do(t, n.Client(t), "CLUSTER", "SETSLOT", m.slot, "NODE", m.to.ID); got != "+OK\r\n" {
			t.Fatalf("CLUSTER SETSLOT %s NODE on %s = %q", m.slot, n.Addr, got)
		}
	}
}

// readReplies reads one reply per want and reports those that differ.
func readReplies(t *testing.T, cl *proxytest.Conn, what string, want ...string) {
	t.Helper()
	for i, w := range want {
		r, err := cl.Read()
		if err != nil {
			t.Fatalf("%s: reply %d: %v", what, i, err)
		}
		if got := string(r.Raw()); got != w {
			t.Errorf("%s: reply %d = %q, want %q", what, i, got, w)
		}
	}
}

// A multi-key command that a node answers -TRYAGAIN during a slot's
// migration is sent again, whole, until the migration ends, and the
// client's requests after it in the pipeline run after it.
func TestClusterTryAgainRetried(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	_, addr := startTryAgainServer(t, c, "  timeout: 30000\n")
	seen := watchTryAgain(t, "pipe", "lone", "ask")
	pipe := startSlotMove(t, c, "pipe")
	lone := startSlotMove(t, c, "lone")
	ask := startSlotMove(t, c, "ask")

	// The migrating node has {pipe}b but not {pipe}a: -TRYAGAIN. The
	// reads after the MSET would see the old values if they ran first.
	pc := proxytest.Dial(t, addr)
	pc.Timeout = proxytest.ClusterTimeout
	for _, cmd := range [][]string{
		{"MSET", pipe.key("a"), "new-a", pipe.key("b"), "new-b"},
		{"GET", pipe.key("a")},
		{"GET", pipe.key("b")},
		{"MGET", pipe.key("a"), pipe.key("b")},
	} {
		if err := pc.Send(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := pc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A lone request, whose reply the node's reader writes itself.
	lc := proxytest.Dial(t, addr)
	lc.Timeout = proxytest.ClusterTimeout
	if err := lc.Send("MGET", lone.key("a"), lone.key("b")); err != nil {
		t.Fatal(err)
	}
	if err := lc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Neither key is on the migrating node any more ({ask}c is nowhere):
	// -ASK, and the importing node, lacking {ask}c, says -TRYAGAIN.
	ac := proxytest.Dial(t, addr)
	ac.Timeout = proxytest.ClusterTimeout
	ask.migrate(t, "b")
	if err := ac.Send("MSET", ask.key("a"), "new-a", ask.key("c"), "new-c"); err != nil {
		t.Fatal(err)
	}
	if err := ac.Flush(); err != nil {
		t.Fatal(err)
	}

	seen.waitFor(t, 1, "pipe", "lone", "ask")
	pipe.finish(t)
	lone.finish(t)
	ask.finish(t)

	readReplies(t, pc, "MSET, GET, GET, MGET", "+OK\r\n", bulk("new-a"), bulk("new-b"), "*2\r\n"+bulk("new-a")+bulk("new-b"))
	readReplies(t, lc, "lone MGET", "*2\r\n"+bulk("old-a")+bulk("old-b"))
	readReplies(t, ac, "MSET after -ASK", "+OK\r\n")
	for _, m := range []*slotMove{pipe, ask} {
		if got := do(t, m.to.Client(t), "GET", m.key("a")); got != bulk("new-a") {
			t.Errorf("GET %s on the slot's new owner = %q, want new-a", m.key("a"), got)
		}
	}
}

// A -TRYAGAIN that lasts past the pool's timeout reaches the client as
// Redis wrote it, after retries rather than at once, and the client's
// next request in the pipeline still runs after it.
func TestClusterTryAgainBounded(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	_, addr := startTryAgainServer(t, c, "  timeout: 300\n")
	seen := watchTryAgain(t, "stuck")
	m := startSlotMove(t, c, "stuck")
	cl := proxytest.Dial(t, addr)
	cl.Timeout = proxytest.ClusterTimeout
	const tryAgain = "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
	if got := do(t, cl, "MSET", m.key("a"), "new-a", m.key("b"), "new-b"); got != tryAgain {
		t.Fatalf("MSET on a slot that stays split = %q, want %q", got, tryAgain)
	}
	if n := seen.count("stuck"); n < 2 {
		t.Errorf("the proxy passed -TRYAGAIN on after %d, want it sent again first", n)
	}
	for _, cmd := range [][]string{{"MSET", m.key("a"), "new-a", m.key("b"), "new-b"}, {"GET", m.key("a")}, {"GET", m.key("b")}} {
		if err := cl.Send(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	readReplies(t, cl, "MSET, GET, GET", tryAgain, bulk("old-a"), bulk("old-b"))
	if got := do(t, cl, "GET", m.key("b")); got != bulk("old-b") {
		t.Errorf("GET %s after the -TRYAGAIN = %q, want old-b", m.key("b"), got)
	}
}
