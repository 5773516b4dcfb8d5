package proxy

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

var readWriteCommand = resp.AppendCommand(nil, []byte("READWRITE"))

// startClusterProxyWith is startClusterProxy with extra pool keys.
func startClusterProxyWith(t *testing.T, c *proxytest.Cluster, extra string) *clusterProxy {
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
	cp.srv = startServer(t, poolYAML(cp.addr, "  redis_cluster: true\n"+extra, servers...), Options{ResolveCluster: func(string) { w.Poke() }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cp.waitReplicas(t, len(c.Replicas()))
	return cp
}

// waitReplicas waits until the pool has every master of the cluster and n
// replicas among them that take reads.
func (cp *clusterProxy) waitReplicas(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for {
		p, have := cp.pool(), 0
		for _, s := range p.servers {
			for _, r := range s.replicas {
				if r.reads.Load() {
					have++
				}
			}
		}
		if len(p.servers) == len(cp.cluster.Masters()) && have == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool has %d servers and %d replicas, want %d and %d", len(p.servers), have, len(cp.cluster.Masters()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeInfo returns the value of field in section of n's INFO, "" when
// the field is absent.
func nodeInfo(t *testing.T, n *proxytest.ClusterNode, section, field string) string {
	t.Helper()
	r, err := n.Client(t).Do("INFO", section)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(r.Str), "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

var statCalls = regexp.MustCompile(`(?:^|,)(?:calls|count)=(\d+)`)

// calls is how many times n ran cmd (INFO commandstats), or answered the
// error code cmd when errors is true (INFO errorstats).
func calls(t *testing.T, n *proxytest.ClusterNode, cmd string, errors bool) int {
	t.Helper()
	section, field := "commandstats", "cmdstat_"+cmd
	if errors {
		section, field = "errorstats", "errorstat_"+cmd
	}
	m := statCalls.FindStringSubmatch(nodeInfo(t, n, section, field))
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// spreadKeys returns n keys in slots spread evenly over all 16384, on
// every master.
func spreadKeys(prefix string, n int) []string {
	all := slotKeys(prefix)
	keys := make([]string, 0, n)
	for i := 0; i < n; i++ {
		keys = append(keys, all[i*len(all)/n])
	}
	return keys
}

// setAndReplicate sets keys[i] to "v<i>" through the proxy and waits until
// every master's replica has it.
func setAndReplicate(t *testing.T, cp *clusterProxy, keys []string) {
	t.Helper()
	cl := proxytest.Dial(t, cp.addr)
	var sets [][]string
	for i, k := range keys {
		sets = append(sets, []string{"SET", k, "v" + strconv.Itoa(i)})
	}
	for i, r := range pipelineChunks(t, cl, sets) {
		if r != "+OK\r\n" {
			t.Fatalf("SET %s = %q, want +OK", keys[i], r)
		}
	}
	for _, m := range cp.cluster.Masters() {
		if got := do(t, m.Client(t), "WAIT", "1", "10000"); got != ":1\r\n" {
			t.Fatalf("WAIT 1 on master %s = %q, want :1", m.Addr, got)
		}
	}
}

// checkGets reads every key through cl and checks its value.
func checkGets(t *testing.T, cl *proxytest.Conn, keys []string) {
	t.Helper()
	var gets [][]string
	for _, k := range keys {
		gets = append(gets, []string{"GET", k})
	}
	for i, r := range pipelineChunks(t, cl, gets) {
		if want := bulk("v" + strconv.Itoa(i)); r != want {
			t.Fatalf("GET %s = %q, want %q", keys[i], r, want)
		}
	}
}

// resetStats clears every node's commandstats and errorstats.
func resetStats(t *testing.T, c *proxytest.Cluster) {
	t.Helper()
	for _, n := range c.Nodes {
		do(t, n.Client(t), "CONFIG", "RESETSTAT")
	}
}

// With read_from replica a cluster pool's reads go to the replicas of their
// slots' masters, on READONLY connections, and its writes, scripts and
// split commands to the masters; every value read is the one written.
func TestClusterReadsFromReplicas(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxyWith(t, c, "  read_from: replica\n")
	keys := spreadKeys("r", 2048)
	setAndReplicate(t, cp, keys)
	resetStats(t, c)

	cl := proxytest.Dial(t, cp.addr)
	checkGets(t, cl, keys)
	replicaGets := 0
	for _, n := range c.Replicas() {
		got := calls(t, n, "get", false)
		if got == 0 {
			t.Errorf("replica %s ran no GET", n.Addr)
		}
		replicaGets += got
	}
	if replicaGets != len(keys) {
		t.Errorf("replicas ran %d GETs, want all %d", replicaGets, len(keys))
	}
	for _, n := range c.Masters() {
		if got := calls(t, n, "get", false); got != 0 {
			t.Errorf("master %s ran %d GETs, want none", n.Addr, got)
		}
	}

	// Writes, a script that writes and a split read stay on the masters:
	// no replica saw any of them (it would have answered -MOVED).
	if got := do(t, cl, "SET", "w:0", "w"); got != "+OK\r\n" {
		t.Fatalf("SET = %q, want +OK", got)
	}
	script := "return redis.call('set', KEYS[1], ARGV[1])"
	if got := do(t, cl, "EVAL", script, "1", "w:1", "e"); got != "+OK\r\n" {
		t.Fatalf("EVAL with a write = %q, want +OK", got)
	}
	if got, want := do(t, cl, "MGET", "w:0", "w:1", keys[2]), "*3\r\n"+bulk("w")+bulk("e")+bulk("v2"); got != want {
		t.Fatalf("MGET = %q, want %q", got, want)
	}
	// A write and a read of it in one batch: the read goes to the master.
	if got := pipeline(t, cl, [][]string{{"SET", "w:3", "x"}, {"GET", "w:3"}}); got[1] != bulk("x") {
		t.Fatalf("GET after SET in one batch = %q, want %q", got[1], bulk("x"))
	}
	for _, n := range c.Replicas() {
		if got := calls(t, n, "eval", false) + calls(t, n, "mget", false); got != 0 {
			t.Errorf("replica %s ran %d EVAL or MGET, want none", n.Addr, got)
		}
		if got := calls(t, n, "MOVED", true); got != 0 {
			t.Errorf("replica %s answered -MOVED %d times: a command that is no read went to it", n.Addr, got)
		}
	}
	if n := cp.srv.clusterRedirects.Load(); n != 0 {
		t.Errorf("%d redirects followed, want none", n)
	}

	// Connections that come back after a replica dropped them are in
	// READONLY mode again before they carry a read.
	for _, n := range c.Replicas() {
		do(t, n.Client(t), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	}
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for {
		// A read on a connection the replica has just closed may fail
		// once: read_from replica has no master to try instead.
		r, err := cl.Do("GET", keys[5])
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Raw()) == bulk("v5") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after the replicas closed their connections = %q", r.Raw())
		}
	}
	checkGets(t, cl, keys)
	for _, n := range c.Replicas() {
		if got := calls(t, n, "MOVED", true); got != 0 {
			t.Errorf("replica %s answered -MOVED %d times after reconnecting: a connection read without READONLY", n.Addr, got)
		}
	}
}

// A replica that answers -MOVED, as one does on a connection that left
// READONLY mode, has the read followed to the master it names.
func TestClusterReplicaMovedFollowed(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxyWith(t, c, "  read_from: replica\n")
	keys := spreadKeys("m", 256)
	setAndReplicate(t, cp, keys)
	for _, s := range cp.pool().servers {
		for _, r := range s.replicas {
			for _, conn := range r.conns {
				p := submitRole(conn) // connects it, READONLY included
				<-p.done
				rw := &roleProbe{done: make(chan []byte, 1)}
				conn.Submit(readWriteCommand, []backend.ReplySink{rw}, []int{len(readWriteCommand)}, time.Now())
				if got := string(<-rw.done); got != "+OK\r\n" {
					t.Fatalf("READWRITE on %s = %q", r.addr, got)
				}
			}
		}
	}
	resetStats(t, c)
	cl := proxytest.Dial(t, cp.addr)
	checkGets(t, cl, keys)
	moved := 0
	for _, n := range c.Replicas() {
		moved += calls(t, n, "MOVED", true)
	}
	if moved != len(keys) {
		t.Errorf("replicas answered -MOVED %d times, want %d", moved, len(keys))
	}
	if n := cp.srv.clusterRedirects.Load(); n != int64(len(keys)) {
		t.Errorf("%d redirects followed, want %d", n, len(keys))
	}
}

// A replica that dies takes no reads once the cluster says it failed: with
// prefer_replica its master's keys are read from the master, throughout;
// with replica they get an error naming the master, and the other masters'
// replicas go on serving theirs.
func TestClusterReplicaDown(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	prefer := startClusterProxyWith(t, c, "  read_from: prefer_replica\n")
	only := startClusterProxyWith(t, c, "  read_from: replica\n")
	keys := spreadKeys("d", 512)
	setAndReplicate(t, prefer, keys)

	srv := only.pool().servers[0]
	dead := srv.replicas[0].addr
	var mine, others []int // indexes of keys on srv, and on the others
	for i, k := range keys {
		if only.pool().servers[only.pool().full.Lookup([]byte(k))] == srv {
			mine = append(mine, i)
		} else {
			others = append(others, i)
		}
	}
	live := len(c.Replicas()) - 1
	for _, n := range c.Replicas() {
		if n.Addr == dead {
			n.Kill()
		}
	}
	pc, oc := proxytest.Dial(t, prefer.addr), proxytest.Dial(t, only.addr)
	want := noClusterReplica(srv.cfg.Name)
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for {
		checkGets(t, pc, keys)
		r, err := oc.Do("GET", keys[mine[0]])
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Raw()) == "-"+want+"\r\n" {
			break
		}
		if !strings.HasPrefix(string(r.Raw()), "-ERR server "+srv.cfg.Name+" (replica "+dead+"): ") {
			t.Fatalf("GET of a key of the master whose replica died = %q, want a connection error or %q", r.Raw(), want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET of a key of the master whose replica died = %q, want %q", r.Raw(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	prefer.waitReplicas(t, live)
	checkGets(t, pc, keys)
	for _, i := range others {
		if got, want := do(t, oc, "GET", keys[i]), bulk("v"+strconv.Itoa(i)); got != want {
			t.Fatalf("GET %s = %q, want %q", keys[i], got, want)
		}
	}
}

// A pipelined GET round trip that a replica serves allocates nothing, as
// one a master serves.
func TestClusterReplicaReadsAllocateNothing(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxyWith(t, c, "  read_from: replica\n")
	var keys []string
	for i := 0; i < 16; i++ {
		keys = append(keys, fmt.Sprint("k", i))
	}
	cl := proxytest.Dial(t, cp.addr)
	for _, k := range keys {
		do(t, cl, "SET", k, "v")
	}
	for _, m := range c.Masters() {
		do(t, m.Client(t), "WAIT", "1", "10000")
	}
	resetStats(t, c)
	roundTrip := pipelineRoundTrip(t, cp.addr, "$1\r\nv\r\n", func(i int) []string { return []string{"GET", keys[i]} })
	if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
		t.Errorf("a pipeline of reads from replicas allocates %.1f times per round trip, want 0", n)
	}
	for _, n := range c.Masters() {
		if got := calls(t, n, "get", false); got != 0 {
			t.Errorf("master %s ran %d GETs, want none", n.Addr, got)
		}
	}
}

// With replica_max_lag, a cluster replica that falls behind its master
// takes no reads, which go to the master, and takes them again once it
// caught up.
func TestClusterReplicaMaxLag(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxyWith(t, c, "  read_from: prefer_replica\n  replica_max_lag: 1000\n")
	srv := cp.pool().servers[0]
	r := srv.replicas[0]
	var key string
	for _, k := range slotKeys("lag") {
		if cp.pool().full.Lookup([]byte(k)) == 0 {
			key = k
			break
		}
	}
	var master, behind *proxytest.ClusterNode
	for _, n := range c.Nodes {
		switch n.Addr {
		case srv.cfg.Name:
			master = n
		case r.addr:
			behind = n
		}
	}
	// A replica's writes wait while it is paused for writes, those of
	// its master's replication stream too: its offset stays behind.
	do(t, behind.Client(t), "CLIENT", "PAUSE", "30000", "WRITE")
	defer do(t, behind.Client(t), "CLIENT", "UNPAUSE")
	cl := proxytest.Dial(t, cp.addr)
	value := strings.Repeat("x", 4000)
	if got := do(t, cl, "SET", key, value); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for r.reads.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the replica 4000 bytes behind still takes reads")
		}
		time.Sleep(20 * time.Millisecond)
	}
	masterGets, replicaGets := calls(t, master, "get", false), calls(t, behind, "get", false)
	if got := do(t, cl, "GET", key); got != bulk(value) {
		t.Fatalf("GET with the replica behind = %.20q...", got)
	}
	if n := calls(t, master, "get", false); n != masterGets+1 {
		t.Errorf("the master ran GET %d times, want %d", n, masterGets+1)
	}
	if n := calls(t, behind, "get", false); n != replicaGets {
		t.Errorf("the replica behind ran GET %d times, want %d", n, replicaGets)
	}
	do(t, behind.Client(t), "CLIENT", "UNPAUSE")
	cp.waitReplicas(t, len(c.Replicas()))
	if got := do(t, cl, "GET", key); got != bulk(value) {
		t.Fatalf("GET once the replica caught up = %.20q...", got)
	}
	if n := calls(t, behind, "get", false); n != replicaGets+1 {
		t.Errorf("the replica that caught up ran GET %d times, want %d", n, replicaGets+1)
	}
}

// A read that names no key, sent by the placeholder key's slot, gets the
// cluster's error when no master serves that slot, as it does without
// read_from.
func TestClusterReplicaReadSlotNotServed(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	var servers []string
	for _, s := range c.Seeds() {
		servers = append(servers, s+":1")
	}
	srv := startServer(t, poolYAML(addr, "  redis_cluster: true\n  read_from: prefer_replica\n", servers...), Options{})
	m := viewMap(t, c)
	m.Slots[hashring.KeySlot(placeholderKey)] = -1
	srv.SetClusterMap("alpha", m)
	cl := proxytest.Dial(t, addr)
	if got, want := do(t, cl, "ZUNION", "0", "x"), "-"+msgSlotNotServed+"\r\n"; got != want {
		t.Errorf("ZUNION 0 x with the placeholder's slot not served = %q, want %q", got, want)
	}
}
