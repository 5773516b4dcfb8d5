package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startStaleClusterProxy is startClusterProxy with a watcher that reads
// the map once and is never poked: a slot moved by hand stays on its old
// master in the proxy's map.
func startStaleClusterProxy(t *testing.T, c *proxytest.Cluster) *clusterProxy {
	t.Helper()
	cp := &clusterProxy{cluster: c, addr: fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))}
	w, err := discovery.NewClusterWatcher(discovery.ClusterOptions{
		Seeds:    c.Seeds(),
		Poll:     time.Hour,
		OnChange: func(m discovery.ClusterMap) { cp.srv.SetClusterMap("alpha", testClusterMap(m)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	cp.watcher = w
	var servers []string
	for _, s := range c.Seeds() {
		servers = append(servers, s+":1")
	}
	cp.srv = startServer(t, poolYAML(cp.addr, "  redis_cluster: true\n", servers...), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for len(cp.pool().servers) != len(c.Masters()) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool has %d servers, want the cluster's %d masters", len(cp.pool().servers), len(c.Masters()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cp
}

// steps runs each step's command on cl and fails t unless the reply is
// the step's last element.
func steps(t *testing.T, cl *proxytest.Conn, ss ...[]string) {
	t.Helper()
	for _, step := range ss {
		args, want := step[:len(step)-1], step[len(step)-1]
		if got := do(t, cl, args...); got != want {
			t.Fatalf("%q = %q, want %q", args, got, want)
		}
	}
}

// slotNodes returns the slot of key, the master serving it and another
// master of c.
func slotNodes(t *testing.T, c *proxytest.Cluster, key string) (slot int, from, to *proxytest.ClusterNode) {
	t.Helper()
	slot = c.KeySlot(t, key)
	from = c.Owner(t, slot)
	for _, m := range c.Masters() {
		if m.ID != from.ID {
			return slot, from, m
		}
	}
	t.Fatal("the cluster has one master")
	return
}

// nodeDo runs args on n and fails t unless the reply is want.
func nodeDo(t *testing.T, n *proxytest.ClusterNode, want string, args ...string) {
	t.Helper()
	if got := do(t, n.Client(t), args...); got != want {
		t.Fatalf("%q on %s = %q, want %q", args, n.Addr, got, want)
	}
}

// openSlot starts moving slot from one master to another, as redis-cli
// --cluster reshard does: importing on to, migrating on from. No key
// moves yet.
func openSlot(t *testing.T, slot int, from, to *proxytest.ClusterNode) {
	t.Helper()
	s := strconv.Itoa(slot)
	nodeDo(t, to, "+OK\r\n", "CLUSTER", "SETSLOT", s, "IMPORTING", from.ID)
	nodeDo(t, from, "+OK\r\n", "CLUSTER", "SETSLOT", s, "MIGRATING", to.ID)
}

// moveSlot moves slot and its keys from one master to another by hand and
// waits until every node agrees. The proxy's map catches up at its next
// refresh; a connection pinned to from sees -MOVED at once.
func moveSlot(t *testing.T, c *proxytest.Cluster, slot int, from, to *proxytest.ClusterNode) {
	t.Helper()
	openSlot(t, slot, from, to)
	s := strconv.Itoa(slot)
	fc := from.Client(t)
	for {
		r, err := fc.Do("CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Elems) == 0 {
			break
		}
		host, port := splitAddr(t, to.Addr)
		args := []string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}
		for _, e := range r.Elems {
			args = append(args, string(e.Str))
		}
		if got := do(t, fc, args...); got != "+OK\r\n" {
			t.Fatalf("%q = %q", args, got)
		}
	}
	nodeDo(t, to, "+OK\r\n", "CLUSTER", "SETSLOT", s, "NODE", to.ID)
	nodeDo(t, from, "+OK\r\n", "CLUSTER", "SETSLOT", s, "NODE", to.ID)
	for _, m := range c.Masters() {
		if m.ID != from.ID && m.ID != to.ID {
			nodeDo(t, m, "+OK\r\n", "CLUSTER", "SETSLOT", s, "NODE", to.ID)
		}
	}
	c.WaitStable(t)
}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:]
		}
	}
	t.Fatalf("address %q has no port", addr)
	return
}

// A client blocked on a key whose slot moves gets the value pushed on the
// slot's new owner, not the -MOVED that unblocked it on the old one.
func TestClusterBlockedFollowsMoved(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	const key = "{blm}list"
	slot, from, to := slotNodes(t, c, key)
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	if err := cl.Send("BLPOP", key, "0"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	waitBlocked(t, from.Redis, 1)
	moveSlot(t, c, slot, from, to)
	waitBlocked(t, to.Redis, 1)
	if got := do(t, proxytest.Dial(t, cp.addr), "RPUSH", key, "v"); got != ":1\r\n" {
		t.Fatalf("RPUSH = %q, want :1", got)
	}
	if got, want := readReply(t, cl), "*2\r\n$9\r\n"+key+"\r\n$1\r\nv\r\n"; got != want {
		t.Fatalf("BLPOP = %q, want %q", got, want)
	}
	nodeDo(t, to, ":0\r\n", "LLEN", key)
}

// A blocking command that -ASK sends to the node importing its slot blocks
// there, after ASKING, and gets what is pushed there.
func TestClusterBlockedFollowsAsk(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	const key = "{bla}list"
	slot, from, to := slotNodes(t, c, key)
	openSlot(t, slot, from, to)
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	if err := cl.Send("BLPOP", key, "0"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	waitBlocked(t, to.Redis, 1)
	if got := do(t, proxytest.Dial(t, cp.addr), "RPUSH", key, "v"); got != ":1\r\n" {
		t.Fatalf("RPUSH = %q, want :1", got)
	}
	if got, want := readReply(t, cl), "*2\r\n$9\r\n"+key+"\r\n$1\r\nv\r\n"; got != want {
		t.Fatalf("BLPOP = %q, want %q", got, want)
	}
}

// A blocking command that keeps being redirected gets the last redirect
// after maxRedirects, never a hang.
func TestClusterBlockedRedirectBound(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	const key = "{blb}list"
	slot, from, to := slotNodes(t, c, key)
	// Each node says the other owns the slot: -ASK from one, -MOVED back
	// from the other, for ever.
	nodeDo(t, from, "+OK\r\n", "CLUSTER", "SETSLOT", strconv.Itoa(slot), "MIGRATING", to.ID)
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	got := do(t, cl, "BLPOP", key, "0")
	if want := "-MOVED " + strconv.Itoa(slot) + " " + from.Addr + "\r\n"; got != want {
		t.Fatalf("BLPOP = %q, want %q", got, want)
	}
	if got := do(t, cl, "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after = %q", got)
	}
}

// A transaction whose slot moves while commands are queued is replayed on
// the new owner: the client sees QUEUED for each command and EXEC's
// replies, and the writes are on the new owner, once.
func TestClusterTxFollowsMovedWhileQueued(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	slot, from, to := slotNodes(t, c, "{txq}")
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	for _, step := range [][]string{{"MULTI", "+OK"}, {"SET", "{txq}a", "1", "+QUEUED"}, {"PING", "+QUEUED"}} {
		if got := do(t, cl, step[:len(step)-1]...); got != step[len(step)-1]+"\r\n" {
			t.Fatalf("%q = %q", step[:len(step)-1], got)
		}
	}
	moveSlot(t, c, slot, from, to)
	if got := do(t, cl, "INCR", "{txq}b"); got != "+QUEUED\r\n" {
		t.Fatalf("INCR after the slot moved = %q, want +QUEUED", got)
	}
	if got, want := do(t, cl, "EXEC"), "*3\r\n+OK\r\n+PONG\r\n:1\r\n"; got != want {
		t.Fatalf("EXEC = %q, want %q", got, want)
	}
	nodeDo(t, to, "$1\r\n1\r\n", "GET", "{txq}a")
	nodeDo(t, to, "$1\r\n1\r\n", "GET", "{txq}b")
}

// A transaction whose slot moves after its commands were queued is
// replayed on the new owner at EXEC, which Redis refused to run on the
// old one.
func TestClusterTxFollowsMovedAtExec(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	slot, from, to := slotNodes(t, c, "{txe}")
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	do(t, cl, "SET", "{txe}a", "5")
	for _, step := range [][]string{{"MULTI", "+OK"}, {"INCR", "{txe}a", "+QUEUED"}, {"INCR", "{txe}b", "+QUEUED"}} {
		if got := do(t, cl, step[:len(step)-1]...); got != step[len(step)-1]+"\r\n" {
			t.Fatalf("%q = %q", step[:len(step)-1], got)
		}
	}
	moveSlot(t, c, slot, from, to)
	if got, want := do(t, cl, "EXEC"), "*2\r\n:6\r\n:1\r\n"; got != want {
		t.Fatalf("EXEC = %q, want %q", got, want)
	}
	nodeDo(t, to, "$1\r\n6\r\n", "GET", "{txe}a")
	if got := do(t, cl, "GET", "{txe}a"); got != "$1\r\n6\r\n" {
		t.Fatalf("GET after EXEC = %q, want 6", got)
	}
}

// A transaction that -ASK sends to the node importing its slot runs
// there, with ASKING before MULTI so that Redis lets every command of it
// in.
func TestClusterTxFollowsAsk(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	slot, from, to := slotNodes(t, c, "{txa}")
	openSlot(t, slot, from, to)
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	for _, step := range [][]string{{"MULTI", "+OK"}, {"SET", "{txa}a", "1", "+QUEUED"}, {"INCR", "{txa}a", "+QUEUED"}} {
		if got := do(t, cl, step[:len(step)-1]...); got != step[len(step)-1]+"\r\n" {
			t.Fatalf("%q = %q", step[:len(step)-1], got)
		}
	}
	if got, want := do(t, cl, "EXEC"), "*2\r\n+OK\r\n:2\r\n"; got != want {
		t.Fatalf("EXEC = %q, want %q", got, want)
	}
	nodeDo(t, from, ":0\r\n", "DBSIZE")
	nodeDo(t, to, ":1\r\n", "DBSIZE")
}

// A watched transaction whose slot moves cannot take its watches along:
// EXEC answers as for a touched watched key and nothing runs, wherever the
// move is seen.
func TestClusterTxWatchMoved(t *testing.T) {
	for _, tc := range []struct {
		name    string
		atQueue bool // the move is seen when a command is queued, else at EXEC
	}{{"at queue", true}, {"at exec", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := proxytest.StartCluster(t, 3, 0)
			cp := startClusterProxy(t, c)
			slot, from, to := slotNodes(t, c, "{txw}")
			cl := proxytest.Dial(t, cp.addr)
			cl.Timeout = proxytest.ClusterTimeout
			do(t, cl, "SET", "{txw}a", "1")
			if got := do(t, cl, "WATCH", "{txw}a"); got != "+OK\r\n" {
				t.Fatalf("WATCH = %q", got)
			}
			if got := do(t, cl, "MULTI"); got != "+OK\r\n" {
				t.Fatalf("MULTI = %q", got)
			}
			if !tc.atQueue {
				if got := do(t, cl, "SET", "{txw}a", "2"); got != "+QUEUED\r\n" {
					t.Fatalf("SET = %q", got)
				}
			}
			moveSlot(t, c, slot, from, to)
			if tc.atQueue {
				if got := do(t, cl, "SET", "{txw}a", "2"); got != "+QUEUED\r\n" {
					t.Fatalf("SET after the slot moved = %q, want +QUEUED", got)
				}
			}
			if got := do(t, cl, "EXEC"); got != "*-1\r\n" {
				t.Fatalf("EXEC = %q, want a null reply", got)
			}
			nodeDo(t, to, "$1\r\n1\r\n", "GET", "{txw}a")
			// The client is out of the transaction and its next one runs.
			for _, step := range [][]string{{"MULTI", "+OK"}, {"SET", "{txw}a", "3", "+QUEUED"}, {"EXEC", "*1\r\n+OK"}} {
				if got := do(t, cl, step[:len(step)-1]...); got != step[len(step)-1]+"\r\n" {
					t.Fatalf("%q = %q", step[:len(step)-1], got)
				}
			}
			nodeDo(t, to, "$1\r\n3\r\n", "GET", "{txw}a")
		})
	}
}

// With the proxy's map behind, the pinned commands that go to the old
// master follow its -MOVED: a blocking command, the first key of a
// transaction, and a first WATCH.
func TestClusterPinnedStaleMap(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startStaleClusterProxy(t, c)
	for _, key := range []string{"{stb}", "{stt}", "{stw}"} {
		slot, from, to := slotNodes(t, c, key)
		moveSlot(t, c, slot, from, to)
	}
	t.Cleanup(func() {
		for _, key := range []string{"{stb}", "{stt}", "{stw}"} {
			if i := cp.pool().full.Placement.Lookup([]byte(key)); cp.pool().servers[i].cfg.DialAddr == c.Owner(t, c.KeySlot(t, key)).Addr {
				t.Errorf("the proxy's map moved the slot of %s; the test needs it behind", key)
			}
		}
	})
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	t.Run("blocking", func(t *testing.T) {
		do(t, cl, "RPUSH", "{stb}l", "v")
		steps(t, cl, []string{"BLPOP", "{stb}l", "0", "*2\r\n$6\r\n{stb}l\r\n$1\r\nv\r\n"})
	})
	t.Run("multi", func(t *testing.T) {
		steps(t, cl, []string{"MULTI", "+OK\r\n"}, []string{"PING", "+QUEUED\r\n"}, []string{"SET", "{stt}a", "1", "+QUEUED\r\n"},
			[]string{"EXEC", "*2\r\n+PONG\r\n+OK\r\n"})
		nodeDo(t, c.Owner(t, c.KeySlot(t, "{stt}")), "$1\r\n1\r\n", "GET", "{stt}a")
	})
	t.Run("watch", func(t *testing.T) {
		cl := proxytest.Dial(t, cp.addr)
		steps(t, cl, []string{"WATCH", "{stw}a", "+OK\r\n"}, []string{"MULTI", "+OK\r\n"}, []string{"SET", "{stw}a", "1", "+QUEUED\r\n"},
			[]string{"EXEC", "*1\r\n+OK\r\n"})
		nodeDo(t, c.Owner(t, c.KeySlot(t, "{stw}")), "$1\r\n1\r\n", "GET", "{stw}a")
	})
}

// A first WATCH that -ASK sends to the node importing its slot watches the
// key there, and the transaction runs there, ASKING going before MULTI.
func TestClusterTxWatchAsk(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	slot, from, to := slotNodes(t, c, "{twa}")
	openSlot(t, slot, from, to)
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	steps(t, cl, []string{"WATCH", "{twa}a", "+OK\r\n"}, []string{"MULTI", "+OK\r\n"}, []string{"SET", "{twa}a", "1", "+QUEUED\r\n"},
		[]string{"EXEC", "*1\r\n+OK\r\n"})
	nodeDo(t, from, ":0\r\n", "DBSIZE")
	nodeDo(t, to, ":1\r\n", "DBSIZE")

	// A write to the watched key on the importing node fails the next one.
	steps(t, cl, []string{"WATCH", "{twa}a", "+OK\r\n"})
	toc := to.Client(t)
	steps(t, toc, []string{"ASKING", "+OK\r\n"}, []string{"SET", "{twa}a", "2", "+OK\r\n"})
	steps(t, cl, []string{"MULTI", "+OK\r\n"}, []string{"SET", "{twa}a", "3", "+QUEUED\r\n"}, []string{"EXEC", "*-1\r\n"})
	steps(t, toc, []string{"ASKING", "+OK\r\n"}, []string{"GET", "{twa}a", "$1\r\n2\r\n"})
}

// WAIT after a write whose slot moved asks every master, the old owner
// and the new one among them, and counts the replica each has.
func TestClusterWaitAfterSlotMoved(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxy(t, c)
	slot, from, to := slotNodes(t, c, "{wm}")
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	steps(t, cl, []string{"SET", "{wm}a", "1", "+OK\r\n"})
	moveSlot(t, c, slot, from, to)
	steps(t, cl, []string{"WAIT", "1", "10000", ":1\r\n"}, []string{"GET", "{wm}a", "$1\r\n1\r\n"})
}

// A transaction a node refused a command of is not replayed when its slot
// moves: EXEC answers EXECABORT, as the node would have without the move.
func TestClusterTxRefusedNotReplayed(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	slot, from, to := slotNodes(t, c, "{txr}")
	pl := cp.pool().full.Placement
	other := ""
	for i := 0; other == ""; i++ {
		k := "{txr" + strconv.Itoa(i) + "}"
		if c.KeySlot(t, k) != slot && pl.Lookup([]byte(k)) == pl.Lookup([]byte("{txr}")) {
			other = k
		}
	}
	cl := proxytest.Dial(t, cp.addr)
	cl.Timeout = proxytest.ClusterTimeout
	steps(t, cl, []string{"MULTI", "+OK\r\n"}, []string{"SET", "{txr}a", "1", "+QUEUED\r\n"},
		[]string{"RENAME", "{txr}a", other, "-CROSSSLOT Keys in request don't hash to the same slot\r\n"})
	moveSlot(t, c, slot, from, to)
	steps(t, cl, []string{"EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n"})
	nodeDo(t, to, ":0\r\n", "DBSIZE")
	nodeDo(t, from, ":0\r\n", "DBSIZE")
}

// A CLIENT TRACKING client whose read meets -MOVED gets the value from the
// slot's new owner, not the redirect, and then an invalidation of
// everything: the new owner read the key on a connection that tracks
// nothing for the client, so nothing it cached may outlive that reply. Its
// transaction follows the redirect on a tracking connection to the new
// owner.
func TestClusterTrackingFollowsMoved(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startStaleClusterProxy(t, c)
	const key = "{trk}k"
	writer := proxytest.Dial(t, cp.addr)
	steps(t, writer, []string{"SET", key, "v", "+OK\r\n"})
	tc := trackingClient(t, cp.addr)
	if r := tc.do("GET", key); r != "$1\r\nv\r\n" {
		t.Fatalf("GET %s = %q", key, r)
	}
	slot, from, to := slotNodes(t, c, key)
	moveSlot(t, c, slot, from, to)
	// MIGRATE deleted the key on from, which invalidates it.
	if r := tc.read(); r != invalidation(key) {
		t.Fatalf("after the move: %q, want %q", r, invalidation(key))
	}
	if r := tc.do("GET", key); r != "$1\r\nv\r\n" {
		t.Fatalf("GET %s after its slot moved = %q, want the value", key, r)
	}
	if r := tc.read(); r != string(invalidateAll) {
		t.Fatalf("after the redirected read: %q, want the invalidation of everything %q", r, invalidateAll)
	}
	// Its transaction, which the stale map pins to from, is replayed on
	// its tracking connection to to, where what it reads is tracked.
	for _, step := range [][2]string{{"MULTI", "+OK\r\n"}, {"SET " + key + " v2", "+QUEUED\r\n"}, {"GET " + key, "+QUEUED\r\n"}, {"EXEC", "*2\r\n+OK\r\n$2\r\nv2\r\n"}} {
		if r := tc.do(strings.Fields(step[0])...); r != step[1] {
			t.Fatalf("%s = %q, want %q", step[0], r, step[1])
		}
	}
	steps(t, writer, []string{"SET", key, "v3", "+OK\r\n"})
	if r := tc.read(); r != invalidation(key) {
		t.Fatalf("after another client's SET of what the transaction read: %q, want %q", r, invalidation(key))
	}
	if r := tc.do("PING"); r != "+PONG\r\n" {
		t.Fatalf("PING = %q", r)
	}
}
