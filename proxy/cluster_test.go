package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// clusterProxy is a proxy serving one redis_cluster pool, alpha, over a
// test cluster, fed by a ClusterWatcher as cmd/shardproxy feeds it.
type clusterProxy struct {
	srv     *Server
	addr    string
	cluster *proxytest.Cluster
	watcher *discovery.ClusterWatcher
}

func startClusterProxy(t *testing.T, c *proxytest.Cluster) *clusterProxy {
	t.Helper()
	cp := &clusterProxy{cluster: c, addr: fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))}
	w, err := discovery.NewClusterWatcher(discovery.ClusterOptions{
		Seeds:    c.Seeds(),
		Poll:     500 * time.Millisecond,
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
	cp.srv = startServer(t, poolYAML(cp.addr, "  redis_cluster: true\n", servers...), Options{ResolveCluster: func(string) { w.Poke() }})
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

func (cp *clusterProxy) pool() *pool { return cp.srv.poolList()[0] }

// testClusterMap is what cmd/shardproxy hands SetClusterMap for m.
func testClusterMap(m discovery.ClusterMap) ClusterMap {
	var out ClusterMap
	index := make([]int32, len(m.Nodes))
	for i, n := range m.Nodes {
		index[i] = -1
		if n.Master {
			index[i] = int32(len(out.Masters))
			out.Masters = append(out.Masters, n.Addr)
		}
	}
	for s, o := range m.Slots {
		out.Slots[s] = -1
		if o >= 0 {
			out.Slots[s] = index[o]
		}
	}
	out.Replicas = make([][]string, len(out.Masters))
	for _, n := range m.Nodes {
		if n.Master || n.Health != "" && n.Health != "online" {
			continue
		}
		for i, mn := range m.Nodes {
			if mn.Master && mn.ID == n.MasterID {
				out.Replicas[index[i]] = append(out.Replicas[index[i]], n.Addr)
			}
		}
	}
	return out
}

// slotKeys returns a key in each of the 16384 slots, prefix first.
func slotKeys(prefix string) []string {
	keys := make([]string, hashring.SlotCount)
	left := len(keys)
	for i := 0; left > 0; i++ {
		k := prefix + strconv.Itoa(i)
		if s := hashring.KeySlot([]byte(k)); keys[s] == "" {
			keys[s] = k
			left--
		}
	}
	return keys
}

// pipelineChunks sends cmds on c in chunks and returns the raw replies.
func pipelineChunks(t *testing.T, c *proxytest.Conn, cmds [][]string) []string {
	t.Helper()
	out := make([]string, 0, len(cmds))
	for len(cmds) > 0 {
		n := min(len(cmds), 256)
		for _, cmd := range cmds[:n] {
			if err := c.Send(cmd...); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for range n {
			r, err := c.Read()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(r.Raw()))
		}
		cmds = cmds[n:]
	}
	return out
}

// A redis_cluster pool serves every slot from the master that owns it:
// keys are set and read in all 16384, each lands on its slot's owner,
// multi-key commands are split by owner and merged, and the rest need one
// slot as Redis Cluster says.
func TestClusterPoolServesEverySlot(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxy(t, c)
	cl := proxytest.Dial(t, cp.addr)
	keys := slotKeys("k")
	var sets, gets [][]string
	for slot, k := range keys {
		sets = append(sets, []string{"SET", k, "v" + strconv.Itoa(slot)})
		gets = append(gets, []string{"GET", k})
	}
	for i, r := range pipelineChunks(t, cl, sets) {
		if r != "+OK\r\n" {
			t.Fatalf("SET %s (slot %d) = %q, want +OK", keys[i], i, r)
		}
	}
	for i, r := range pipelineChunks(t, cl, gets) {
		v := "v" + strconv.Itoa(i)
		if want := fmt.Sprintf("$%d\r\n%s\r\n", len(v), v); r != want {
			t.Fatalf("GET %s (slot %d) = %q, want %q", keys[i], i, r, want)
		}
	}
	for slot := 0; slot < hashring.SlotCount; slot += 997 {
		if got := do(t, cp.cluster.Owner(t, slot).Client(t), "GET", keys[slot]); !strings.Contains(got, "v"+strconv.Itoa(slot)) {
			t.Errorf("GET %s on the owner of slot %d = %q", keys[slot], slot, got)
		}
	}

	many := []string{"MGET"}
	var want strings.Builder
	fmt.Fprintf(&want, "*%d\r\n", 100)
	for slot := 0; slot < 100*163; slot += 163 {
		many = append(many, keys[slot])
		v := "v" + strconv.Itoa(slot)
		fmt.Fprintf(&want, "$%d\r\n%s\r\n", len(v), v)
	}
	if got := do(t, cl, many...); got != want.String() {
		t.Errorf("MGET over 100 slots = %q, want %q", got, want.String())
	}
	many[0] = "EXISTS"
	if got := do(t, cl, many...); got != ":100\r\n" {
		t.Errorf("EXISTS over 100 slots = %q, want :100", got)
	}
	many[0] = "DEL"
	if got := do(t, cl, many...); got != ":100\r\n" {
		t.Errorf("DEL over 100 slots = %q, want :100", got)
	}
	many[0] = "EXISTS"
	if got := do(t, cl, many...); got != ":0\r\n" {
		t.Errorf("EXISTS after DEL = %q, want :0", got)
	}

	if got := do(t, cl, "MULTI"); got != "+OK\r\n" {
		t.Fatalf("MULTI = %q", got)
	}
	do(t, cl, "SET", "{tx}a", "1")
	do(t, cl, "INCR", "{tx}b")
	if got := do(t, cl, "EXEC"); got != "*2\r\n+OK\r\n:1\r\n" {
		t.Errorf("EXEC on one tag = %q, want [OK 1]", got)
	}

	// Keys on two masters, and keys in two slots of one master: the
	// proxy refuses the first, the node the second, in the same words.
	pl := cp.pool().full.Placement
	var sameNode, otherNode string
	for _, k := range keys[1:] {
		switch {
		case otherNode == "" && pl.Lookup([]byte(k)) != pl.Lookup([]byte(keys[0])):
			otherNode = k
		case sameNode == "" && pl.Lookup([]byte(k)) == pl.Lookup([]byte(keys[0])):
			sameNode = k
		}
	}
	for _, k := range []string{sameNode, otherNode} {
		if got := do(t, cl, "RENAME", keys[0], k); got != "-CROSSSLOT Keys in request don't hash to the same slot\r\n" {
			t.Errorf("RENAME %s %s = %q, want -CROSSSLOT", keys[0], k, got)
		}
	}

	total := 0
	for _, m := range c.Masters() {
		n, _ := strconv.Atoi(strings.Trim(do(t, m.Client(t), "DBSIZE"), ":\r\n"))
		total += n
	}
	if got, want := do(t, cl, "DBSIZE"), fmt.Sprintf(":%d\r\n", total); got != want {
		t.Errorf("DBSIZE = %q, want the masters' sum %q", got, want)
	}
}

// Clients writing and reading through a reshard of thousands of slots see
// no error and no stale value: the MOVED and ASK replies of the move are
// followed, not passed on.
func TestClusterPoolReshard(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxy(t, c)
	masters := c.Masters()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var ops atomic.Int64
	errs := make(chan string, 16)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := proxytest.Dial(t, cp.addr)
			for round := 0; !stop.Load(); round++ {
				var cmds [][]string
				for j := 0; j < 64; j++ {
					k := fmt.Sprintf("w%d:%d", w, (round*64+j)%4096)
					cmds = append(cmds, []string{"SET", k, strconv.Itoa(round)}, []string{"GET", k})
				}
				for _, cmd := range cmds {
					if err := cl.Send(cmd...); err != nil {
						errs <- err.Error()
						return
					}
				}
				if err := cl.Flush(); err != nil {
					errs <- err.Error()
					return
				}
				v := strconv.Itoa(round)
				want := []string{"+OK\r\n", fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)}
				for i, cmd := range cmds {
					r, err := cl.Read()
					if err != nil {
						errs <- err.Error()
						return
					}
					if got := string(r.Raw()); got != want[i%2] {
						select {
						case errs <- fmt.Sprintf("%v = %q, want %q", cmd, got, want[i%2]):
						default:
						}
						return
					}
				}
				ops.Add(int64(len(cmds)))
			}
		}()
	}
	c.Reshard(t, masters[0].ID, masters[1].ID, 3000)
	c.Reshard(t, masters[1].ID, masters[2].ID, 3000)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := cp.srv.clusterRedirects.Load(); n == 0 {
		t.Errorf("no MOVED or ASK was followed during the reshard (%d requests)", ops.Load())
	} else {
		t.Logf("%d requests, %d redirects followed", ops.Load(), n)
	}
}

// A pipelined GET round trip to a cluster pool allocates nothing: the
// request path is every pool's, with a slot table for a ring.
func TestClusterRequestsAllocateNothing(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxy(t, c)
	cl := proxytest.Dial(t, cp.addr)
	for i := 0; i < 16; i++ {
		do(t, cl, "SET", fmt.Sprint("k", i), "v")
	}
	roundTrip := pipelineRoundTrip(t, cp.addr, "$1\r\nv\r\n", func(i int) []string { return []string{"GET", fmt.Sprint("k", i)} })
	if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
		t.Errorf("a pipeline to a cluster pool allocates %.1f times per round trip, want 0", n)
	}
}

// startClusterServer starts a proxy over c's seeds that no watcher feeds:
// the test hands it maps.
func startClusterServer(t *testing.T, c *proxytest.Cluster) (*Server, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	var servers []string
	for _, s := range c.Seeds() {
		servers = append(servers, s+":1")
	}
	return startServer(t, poolYAML(addr, "  redis_cluster: true\n", servers...), Options{}), addr
}

// viewMap is the map c's first node gives, every master listed.
func viewMap(t *testing.T, c *proxytest.Cluster) ClusterMap {
	t.Helper()
	v := c.View(t, c.Nodes[0])
	var m ClusterMap
	index := map[string]int32{}
	for _, n := range c.Masters() {
		index[n.ID] = int32(len(m.Masters))
		m.Masters = append(m.Masters, n.Addr)
	}
	for s, id := range v.Owners {
		m.Slots[s] = -1
		if i, ok := index[id]; ok {
			m.Slots[s] = i
		}
	}
	return m
}

// A key whose slot no master serves gets Redis' CLUSTERDOWN at once, alone
// or among keys of served slots, in a transaction too, and so does a
// PUBLISH to a channel of such a slot; the error names the slot.
func TestClusterPoolSlotNotServed(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	srv, addr := startClusterServer(t, c)
	m := viewMap(t, c)
	lost := hashring.KeySlot([]byte("lost"))
	m.Slots[lost] = -1
	srv.SetClusterMap("alpha", m)
	cl := proxytest.Dial(t, addr)
	want := fmt.Sprintf("-CLUSTERDOWN Hash slot not served (slot %d)\r\n", lost)
	for _, cmd := range [][]string{{"GET", "lost"}, {"SET", "lost", "v"}, {"MGET", "kept", "lost"}, {"DEL", "lost", "kept"}, {"PUBLISH", "lost", "m"}} {
		if got := do(t, cl, cmd...); got != want {
			t.Errorf("%v = %q, want %q", cmd, got, want)
		}
	}
	if got := do(t, cl, "MULTI"); got != "+OK\r\n" {
		t.Fatalf("MULTI = %q", got)
	}
	if got := do(t, cl, "MSET", "lost", "v"); got != want {
		t.Errorf("MSET lost v in MULTI = %q, want %q", got, want)
	}
	if got := do(t, cl, "DISCARD"); got != "+OK\r\n" {
		t.Fatalf("DISCARD = %q", got)
	}
	if got := do(t, cl, "SET", "kept", "v"); got != "+OK\r\n" {
		t.Errorf("SET kept = %q, want +OK", got)
	}
}

// With a map that gives every slot to one master, the others unknown, each
// request for another master's slot is answered MOVED there, a node the
// map does not name, and is sent on to it: the client sees the values.
func TestClusterPoolMovedToUnknownNode(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	srv, addr := startClusterServer(t, c)
	m := ClusterMap{Masters: []string{c.Masters()[0].Addr}}
	for s := range m.Slots {
		m.Slots[s] = 0
	}
	srv.SetClusterMap("alpha", m)
	cl := proxytest.Dial(t, addr)
	keys := slotKeys("m")
	var sets, gets [][]string
	for slot := 0; slot < hashring.SlotCount; slot += 61 {
		sets = append(sets, []string{"SET", keys[slot], "v" + strconv.Itoa(slot)})
		gets = append(gets, []string{"GET", keys[slot]})
	}
	for i, r := range pipelineChunks(t, cl, sets) {
		if r != "+OK\r\n" {
			t.Fatalf("%v = %q, want +OK", sets[i], r)
		}
	}
	for i, r := range pipelineChunks(t, cl, gets) {
		v := sets[i][2]
		if want := fmt.Sprintf("$%d\r\n%s\r\n", len(v), v); r != want {
			t.Fatalf("%v = %q, want %q", gets[i], r, want)
		}
	}
	if srv.clusterRedirects.Load() == 0 {
		t.Error("no MOVED was followed")
	}
	// A lone request's reply is written by the reader that gets it.
	for slot := 0; slot < hashring.SlotCount; slot += 61 {
		if c.Owner(t, slot).ID == c.Masters()[0].ID {
			continue
		}
		v := "v" + strconv.Itoa(slot)
		if got, want := do(t, cl, "GET", keys[slot]), fmt.Sprintf("$%d\r\n%s\r\n", len(v), v); got != want {
			t.Errorf("lone GET %s = %q, want %q", keys[slot], got, want)
		}
		break
	}
	if got := do(t, c.Owner(t, int(hashring.KeySlot([]byte(keys[61])))).Client(t), "GET", keys[61]); got != "$3\r\nv61\r\n" {
		t.Errorf("GET %s on its slot's owner = %q, want v61", keys[61], got)
	}
}

// A request that nodes keep redirecting is followed five times, and the
// client then gets the last redirect: here the slot's owner says ASK for a
// missing key, as it migrates the slot, and the node it names, which is
// not importing it, says MOVED back.
func TestClusterPoolRedirectsBounded(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	srv, addr := startClusterServer(t, c)
	srv.SetClusterMap("alpha", viewMap(t, c))
	slot := int(hashring.KeySlot([]byte("loop")))
	owner := c.Owner(t, slot)
	var other *proxytest.ClusterNode
	for _, m := range c.Masters() {
		if m.ID != owner.ID {
			other = m
		}
	}
	oc := owner.Client(t)
	if got := do(t, oc, "CLUSTER", "SETSLOT", strconv.Itoa(slot), "MIGRATING", other.ID); got != "+OK\r\n" {
		t.Fatalf("CLUSTER SETSLOT MIGRATING = %q", got)
	}
	t.Cleanup(func() { oc.Do("CLUSTER", "SETSLOT", strconv.Itoa(slot), "STABLE") })
	got := do(t, proxytest.Dial(t, addr), "GET", "loop")
	if want := fmt.Sprintf("-MOVED %d %s\r\n", slot, owner.Addr); got != want {
		t.Errorf("GET loop = %q, want the sixth redirect %q", got, want)
	}
	if n := srv.clusterRedirects.Load(); n != maxRedirects {
		t.Errorf("%d redirects followed, want %d", n, maxRedirects)
	}
}

// A reload of a redis_cluster pool builds it over the last map at once:
// its masters stay its servers and every key stays reachable.
func TestClusterPoolReload(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	cl := proxytest.Dial(t, cp.addr)
	keys := slotKeys("r")
	for slot := 0; slot < hashring.SlotCount; slot += 397 {
		do(t, cl, "SET", keys[slot], "v")
	}
	var servers []string
	for _, s := range c.Seeds() {
		servers = append(servers, s+":1")
	}
	if err := cp.srv.Reload(mustParse(t, poolYAML(cp.addr, "  redis_cluster: true\n  timeout: 2000\n", servers...))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if n := len(cp.pool().servers); n != 3 {
		t.Fatalf("after the reload the pool has %d servers, want the 3 masters", n)
	}
	for slot := 0; slot < hashring.SlotCount; slot += 397 {
		if got := do(t, cl, "GET", keys[slot]); got != "$1\r\nv\r\n" {
			t.Errorf("GET %s after the reload = %q, want v", keys[slot], got)
		}
	}
}

// CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT of a Redis Cluster pool are
// answered by the master that serves the slot; a slot out of range gets
// Redis' own error.
func TestClusterPoolKeysInSlot(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	cl := proxytest.Dial(t, cp.addr)
	for _, slot := range []int{0, 5000, hashring.SlotCount - 1} {
		k := slotKeys("k")[slot]
		for i := range 3 {
			if got := do(t, cl, "SET", fmt.Sprintf("{%s}:%d", k, i), "v"); got != "+OK\r\n" {
				t.Fatalf("SET = %q", got)
			}
		}
		owner := cp.cluster.Owner(t, slot).Client(t)
		s := strconv.Itoa(slot)
		for _, cmd := range [][]string{{"CLUSTER", "COUNTKEYSINSLOT", s}, {"CLUSTER", "GETKEYSINSLOT", s, "10"}} {
			want := do(t, owner, cmd...)
			if got := do(t, cl, cmd...); got != want || !strings.HasPrefix(want, ":3\r\n") && !strings.HasPrefix(want, "*3\r\n") {
				t.Errorf("%v through the proxy = %q, from the slot's owner %q", cmd, got, want)
			}
		}
	}
	direct := c.Nodes[0].Client(t)
	for _, cmd := range [][]string{{"CLUSTER", "COUNTKEYSINSLOT", "16384"}, {"CLUSTER", "GETKEYSINSLOT", "x", "1"}} {
		if got, want := do(t, cl, cmd...), do(t, direct, cmd...); got != want {
			t.Errorf("%v = %q, want Redis' %q", cmd, got, want)
		}
	}
}
