package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// groupPool is a shardproxy pool of Sentinel-watched groups, each a
// redis-server master with one replica; the test plays discovery.
type groupPool struct {
	srv      *Server
	addr     string
	masters  []*proxytest.Redis // as configured
	replicas []*proxytest.Redis
	resolves atomic.Int64 // calls of Options.ResolveGroup
	// yaml is the pool's config with %s where extra keys go.
	yaml string
}

// startGroups starts n groups and a pool over them; extra is added to the
// pool's YAML. Discovery has named no master yet.
func startGroups(t *testing.T, n int, extra string) *groupPool {
	t.Helper()
	gp := &groupPool{}
	var servers strings.Builder
	for i := 0; i < n; i++ {
		m := proxytest.StartRedis(t)
		r := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port)))
		gp.masters, gp.replicas = append(gp.masters, m), append(gp.replicas, r)
		fmt.Fprintf(&servers, "    - %s:1 g%d\n", m.Addr, i)
	}
	for i := range gp.replicas {
		waitSynced(t, gp.masters[i], gp.replicas[i])
	}
	port := proxytest.FreePort(t)
	gp.yaml = fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  sentinels:\n    - 127.0.0.1:26379\n%%s  servers:\n%s", port, servers.String())
	yaml := fmt.Sprintf(gp.yaml, extra)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, yaml)
	}
	srv, err := NewServer(cfg, Options{ResolveGroup: func(pool, server string) { gp.resolves.Add(1) }})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	gp.srv, gp.addr = srv, fmt.Sprintf("127.0.0.1:%d", port)
	return gp
}

// tell plays discovery: group i's master is at m.
func (gp *groupPool) tell(i int, m *proxytest.Redis) {
	gp.srv.SetGroupMasters("alpha", map[string]GroupMaster{fmt.Sprintf("g%d", i): {Addr: m.Addr, Source: "test", Agree: 1, Reachable: 1}})
}

// tellAll names every configured master.
func (gp *groupPool) tellAll() {
	groups := map[string]GroupMaster{}
	for i, m := range gp.masters {
		groups[fmt.Sprintf("g%d", i)] = GroupMaster{Addr: m.Addr, Source: "test", Agree: 1, Reachable: 1}
	}
	gp.srv.SetGroupMasters("alpha", groups)
}

// keyOn returns a key "<prefix><n>" that the ring puts on group i.
func (gp *groupPool) keyOn(t *testing.T, i int, prefix string) string {
	t.Helper()
	p := gp.srv.poolList()[0]
	for n := 0; ; n++ {
		k := fmt.Sprintf("%s%d", prefix, n)
		if p.servers[p.layout.Load().Lookup([]byte(k))].cfg.Name == fmt.Sprintf("g%d", i) {
			return k
		}
	}
}

// replInfo returns a field of r's INFO replication.
func replInfo(t *testing.T, r *proxytest.Redis, field string) string {
	t.Helper()
	info := do(t, r.Client(t), "INFO", "replication")
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// waitSynced waits until replica has everything master wrote.
func waitSynced(t *testing.T, master, replica *proxytest.Redis) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if replInfo(t, replica, "master_link_status") == "up" &&
			replInfo(t, replica, "slave_repl_offset") == replInfo(t, master, "master_repl_offset") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica %s did not catch up with %s", replica.Addr, master.Addr)
}

// pauseWrites holds old's writes (CLIENT PAUSE WRITE): requests sent to it
// now are in flight until failover unpauses it.
func pauseWrites(t *testing.T, old *proxytest.Redis) *proxytest.Conn {
	t.Helper()
	oc := old.Client(t)
	do(t, oc, "CLIENT", "PAUSE", "30000", "WRITE")
	return oc
}

// failover promotes next, old's replica, once it has all of old's writes,
// and makes old its replica, as Sentinel does; writes paused on old then
// run and get -READONLY.
func failover(t *testing.T, old, next *proxytest.Redis, paused *proxytest.Conn) {
	t.Helper()
	waitSynced(t, old, next)
	do(t, next.Client(t), "REPLICAOF", "NO", "ONE")
	if paused == nil {
		paused = old.Client(t)
	}
	do(t, paused, "REPLICAOF", "127.0.0.1", strconv.Itoa(next.Port))
	do(t, paused, "CLIENT", "UNPAUSE")
}

// commandCalls returns how many times r ran cmd, from INFO commandstats.
func commandCalls(t *testing.T, r *proxytest.Redis, cmd string) int {
	t.Helper()
	info := do(t, r.Client(t), "INFO", "commandstats")
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// Before discovery names a master, and while the one it names is a
// replica, a group's requests fail at once with an error naming the group,
// and nothing is written to the replica.
func TestGroupWithoutConfirmedMasterFailsFast(t *testing.T) {
	gp := startGroups(t, 2, "")
	c := proxytest.Dial(t, gp.addr)
	k0 := gp.keyOn(t, 0, "k")
	got := do(t, c, "SET", k0, "v")
	if !strings.HasPrefix(got, "-ERR server g0 ") || !strings.Contains(got, "group g0 has no confirmed master") {
		t.Fatalf("SET before discovery = %q, want the group's error", got)
	}
	gp.tellAll()
	if got := do(t, c, "SET", k0, "v"); got != "+OK\r\n" {
		t.Fatalf("SET after discovery = %q", got)
	}
	waitSynced(t, gp.masters[0], gp.replicas[0])
	setsBefore := commandCalls(t, gp.replicas[0], "set")
	gp.tell(0, gp.replicas[0]) // discovery is wrong: that node is a replica
	got = do(t, c, "SET", k0, "w")
	if !strings.Contains(got, "group g0 has no confirmed master") || !strings.Contains(got, "ROLE says slave") {
		t.Fatalf("SET with discovery naming a replica = %q, want the group's error naming the role", got)
	}
	if got := do(t, c, "SET", gp.keyOn(t, 1, "k"), "v"); got != "+OK\r\n" {
		t.Fatalf("SET on the other group = %q", got)
	}
	if n := commandCalls(t, gp.replicas[0], "set"); n != setsBefore {
		t.Errorf("the replica ran SET %d times, want %d (only what replication sent)", n, setsBefore)
	}
	if gp.resolves.Load() == 0 {
		t.Error("ResolveGroup was not called")
	}
}

// A write in flight to a master that is demoted gets -READONLY from it:
// the client gets the new master's replies instead, in order with its
// later commands.
func TestGroupReadonlyRetriedOnNewMaster(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	c := proxytest.Dial(t, gp.addr)
	do(t, c, "SET", "n", "1")
	paused := pauseWrites(t, gp.masters[0])
	for _, cmd := range [][]string{{"SET", "a", "10"}, {"INCR", "a"}, {"INCR", "n"}, {"SET", "b", "x"}, {"INCR", "a"}, {"GET", "a"}} {
		if err := c.Send(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	failover(t, gp.masters[0], gp.replicas[0], paused)
	gp.tell(0, gp.replicas[0])
	want := []string{"+OK\r\n", ":11\r\n", ":2\r\n", "+OK\r\n", ":12\r\n", "$2\r\n12\r\n"}
	for i, w := range want {
		r, err := c.Read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if string(r.Raw()) != w {
			t.Errorf("reply %d = %q, want %q", i, r.Raw(), w)
		}
	}
	nc := gp.replicas[0].Client(t)
	for k, w := range map[string]string{"a": "$2\r\n12\r\n", "n": "$1\r\n2\r\n", "b": "$1\r\nx\r\n"} {
		if got := do(t, nc, "GET", k); got != w {
			t.Errorf("GET %s on the new master = %q, want %q", k, got, w)
		}
	}
	if snap := gp.groupSnapshot(t, 0); snap.Master != gp.replicas[0].Addr || !snap.Confirmed || snap.Failovers != 1 {
		t.Errorf("group state = %+v, want master %s confirmed after 1 failover", snap, gp.replicas[0].Addr)
	}
}

// A steady writer on each of two groups through a failover of one: no
// write fails, the other group never notices, and every acknowledged
// write is on the new master.
func TestGroupFailoverUnderSteadyWrites(t *testing.T) {
	gp := startGroups(t, 2, "  hash_tag: \"{}\"\n")
	gp.tellAll()
	var stop atomic.Bool
	var wg sync.WaitGroup
	acked := make([][]string, 2)
	errs := make([][]string, 2)
	var written [2]atomic.Int64
	for g := 0; g < 2; g++ {
		c := proxytest.Dial(t, gp.addr)
		prefix := gp.keyOn(t, g, "w")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && i < 100000; i++ {
				key := "{" + prefix + "}" + strconv.Itoa(i)
				r, err := c.Do("SET", key, "v")
				switch {
				case err != nil:
					errs[g] = append(errs[g], err.Error())
					return
				case string(r.Raw()) != "+OK\r\n":
					errs[g] = append(errs[g], string(r.Raw()))
				default:
					acked[g] = append(acked[g], key)
					written[g].Add(1)
				}
			}
		}()
	}
	waitFor := func(g int, n int64) {
		deadline := time.Now().Add(20 * time.Second)
		for written[g].Load() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(0, 50)
	paused := pauseWrites(t, gp.masters[0])
	failover(t, gp.masters[0], gp.replicas[0], paused)
	gp.tell(0, gp.replicas[0])
	after := written[0].Load()
	waitFor(0, after+50)
	waitFor(1, written[1].Load()+50)
	stop.Store(true)
	wg.Wait()
	for g := range errs {
		if len(errs[g]) > 0 {
			t.Errorf("group %d: %d writes failed, first %q", g, len(errs[g]), errs[g][0])
		}
	}
	nc := gp.replicas[0].Client(t)
	missing := 0
	for _, k := range acked[0] {
		if do(t, nc, "EXISTS", k) != ":1\r\n" {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes are not on the new master", missing, len(acked[0]))
	}
}

// The old master back from a restart, empty and claiming to be master,
// while the proxy follows the new one, gets no write.
func TestGroupOldMasterBackGetsNoWrite(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	c := proxytest.Dial(t, gp.addr)
	do(t, c, "SET", "a", "1")
	failover(t, gp.masters[0], gp.replicas[0], nil)
	gp.tell(0, gp.replicas[0])
	gp.masters[0].Restart(t) // empty, and a master again
	for i := 0; i < 20; i++ {
		if got := do(t, c, "SET", "k"+strconv.Itoa(i), "v"); got != "+OK\r\n" {
			t.Fatalf("SET = %q", got)
		}
	}
	gp.tell(0, gp.replicas[0]) // discovery again, unchanged
	do(t, c, "SET", "last", "v")
	if n := commandCalls(t, gp.masters[0], "set"); n != 0 {
		t.Errorf("the old master ran SET %d times, want 0", n)
	}
	if got := do(t, gp.replicas[0].Client(t), "DBSIZE"); got != ":22\r\n" {
		t.Errorf("DBSIZE on the new master = %q, want 22", got)
	}
}

// With no new master within failover_hold, the request refused by the old
// one gets the error it got.
func TestGroupFailoverHoldExpires(t *testing.T) {
	gp := startGroups(t, 1, "  failover_hold: 300\n")
	gp.tellAll()
	c := proxytest.Dial(t, gp.addr)
	paused := pauseWrites(t, gp.masters[0])
	if err := c.Send("SET", "a", "1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	failover(t, gp.masters[0], gp.replicas[0], paused) // discovery never says
	r, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	// The SET was written to the old master before it was demoted: it fails
	// with the demoted node's READONLY, or, when the group's ROLE check saw
	// the demotion first, with the proxy's own error naming it. Either way
	// it fails, and it is not sent again to the new master.
	readOnly := "-READONLY You can't write against a read only replica.\r\n"
	notMaster := "the node is not the master of group g0: ROLE says slave"
	if got := string(r.Raw()); got != readOnly && !(strings.HasPrefix(got, "-ERR ") && strings.Contains(got, notMaster)) {
		t.Errorf("SET = %q, want %q or an error saying %q", got, readOnly, notMaster)
	}
	if got := do(t, gp.replicas[0].Client(t), "EXISTS", "a"); got != ":0\r\n" {
		t.Errorf("EXISTS a on the new master = %q, want 0", got)
	}
}

// A transaction pinned to a master that is demoted fails with the error
// and is not replayed on the new master.
func TestGroupTransactionOnDemotedMasterFails(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	c := proxytest.Dial(t, gp.addr)
	do(t, c, "MULTI")
	if got := do(t, c, "SET", "a", "1"); got != "+QUEUED\r\n" {
		t.Fatalf("SET in MULTI = %q", got)
	}
	failover(t, gp.masters[0], gp.replicas[0], nil)
	gp.tell(0, gp.replicas[0])
	got := do(t, c, "EXEC")
	if !strings.HasPrefix(got, "-") || !strings.Contains(got, "READONLY") {
		t.Errorf("EXEC = %q, want the READONLY error", got)
	}
	if got := do(t, gp.replicas[0].Client(t), "EXISTS", "a"); got != ":0\r\n" {
		t.Errorf("EXISTS a on the new master = %q, want 0: the transaction was replayed", got)
	}
	if got := do(t, c, "SET", "b", "1"); got != "+OK\r\n" {
		t.Errorf("SET after the transaction = %q", got)
	}
}

// go-redis with default options through a failover: no write or read
// returns an error to the application.
func TestGroupFailoverGoRedis(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	rdb := redis.NewClient(&redis.Options{Addr: gp.addr})
	defer rdb.Close()
	ctx := context.Background()
	var stop atomic.Bool
	var done atomic.Int64
	var firstErr atomic.Pointer[string]
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			key := "k" + strconv.Itoa(i%100)
			if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
				msg := "SET: " + err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				return
			}
			if err := rdb.Get(ctx, key).Err(); err != nil {
				msg := "GET: " + err.Error()
				firstErr.CompareAndSwap(nil, &msg)
				return
			}
			done.Add(1)
		}
	}()
	wait := func(n int64) {
		deadline := time.Now().Add(20 * time.Second)
		for done.Load() < n && firstErr.Load() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait(50)
	paused := pauseWrites(t, gp.masters[0])
	failover(t, gp.masters[0], gp.replicas[0], paused)
	gp.tell(0, gp.replicas[0])
	wait(done.Load() + 50)
	stop.Store(true)
	wg.Wait()
	if msg := firstErr.Load(); msg != nil {
		t.Errorf("go-redis got an error through the failover: %s", *msg)
	}
}

// groupSnapshot returns group i's state as the stats report it.
func (gp *groupPool) groupSnapshot(t *testing.T, i int) *stats.GroupStatus {
	t.Helper()
	var snap stats.Snapshot
	gp.srv.Snapshot(&snap)
	g := snap.Pools[0].Servers[i].Group
	if g == nil {
		t.Fatalf("server %d has no group state", i)
	}
	return g
}

// A reload keeps each group's confirmed master, whether the servers keep
// their connections or get new ones (another redis_db).
func TestGroupMasterSurvivesReload(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	failover(t, gp.masters[0], gp.replicas[0], nil)
	gp.tell(0, gp.replicas[0])
	c := proxytest.Dial(t, gp.addr)
	for i, extra := range []string{"  timeout: 5000\n", "  redis_db: 1\n"} {
		cfg, err := config.Parse([]byte(fmt.Sprintf(gp.yaml, extra)))
		if err != nil {
			t.Fatal(err)
		}
		if err := gp.srv.Reload(cfg); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		key := "after" + strconv.Itoa(i)
		if got := do(t, c, "SET", key, "v"); got != "+OK\r\n" {
			t.Fatalf("SET after reload %q = %q", extra, got)
		}
		nc := gp.replicas[0].Client(t)
		do(t, nc, "SELECT", strconv.Itoa(i))
		if got := do(t, nc, "EXISTS", key); got != ":1\r\n" {
			t.Errorf("after reload %q: EXISTS %s on the new master = %q, want 1", extra, key, got)
		}
	}
}

// A client with CLIENT TRACKING on, whose requests go on a connection of
// its own, follows the failover too: that connection is closed with the
// shared ones, and its refused write is sent to the new master.
func TestGroupFailoverTrackingClient(t *testing.T) {
	gp := startGroups(t, 1, "  failover_hold: 3000\n")
	gp.tellAll()
	c := trackingClient(t, gp.addr)
	c.do("SET", "a", "1")
	paused := pauseWrites(t, gp.masters[0])
	c.send("SET", "a", "2")
	failover(t, gp.masters[0], gp.replicas[0], paused)
	gp.tell(0, gp.replicas[0])
	for {
		r := c.read()
		if strings.HasPrefix(r, ">") {
			continue // an invalidation
		}
		if r != "+OK\r\n" {
			t.Fatalf("SET during the failover = %q, want +OK", r)
		}
		break
	}
	if got := do(t, gp.replicas[0].Client(t), "GET", "a"); got != "$1\r\n2\r\n" {
		t.Errorf("GET a on the new master = %q, want 2", got)
	}
}

// SentinelPools lists what a watcher needs for each pool with sentinels:
// the Sentinels, their credentials and each server's master name.
func TestSentinelPools(t *testing.T) {
	cfg, err := config.Parse([]byte("plain:\n  listen: 127.0.0.1:1\n  redis: true\n  servers:\n    - 127.0.0.1:6379:1\n" +
		"watched:\n  listen: 127.0.0.1:2\n  redis: true\n  sentinels:\n    - 127.0.0.1:26379\n  sentinel_username: watcher\n  sentinel_auth: pw\n" +
		"  sentinel_masters:\n    - b mymaster-b\n  servers:\n    - 127.0.0.1:6379:1 a\n    - 127.0.0.1:6380:1 b\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := srv.SentinelPools()
	want := []SentinelPool{{Pool: "watched", Sentinels: []string{"127.0.0.1:26379"}, Username: "watcher", Password: "pw", Masters: map[string]string{"a": "a", "b": "mymaster-b"}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SentinelPools() = %+v, want %+v", got, want)
	}
}

// pipelineRoundTrip connects to addr and returns a round trip of 16
// pipelined commands, cmd(0) to cmd(15), each answered want. It has made
// one already, and checked the replies.
func pipelineRoundTrip(t *testing.T, addr, want string, cmd func(i int) []string) func() {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var pipeline []byte
	for i := 0; i < 16; i++ {
		pipeline = proxytest.AppendCommand(pipeline, cmd(i)...)
	}
	want = strings.Repeat(want, 16)
	buf := make([]byte, len(want))
	roundTrip := func() {
		if _, err := conn.Write(pipeline); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if string(buf) != want {
		t.Fatalf("replies = %q, want %q", buf, want)
	}
	return roundTrip
}

// Requests to a group with a confirmed master allocate nothing either: the
// group's check on the request path is a pointer on the slot.
func TestGroupRequestsAllocateNothing(t *testing.T) {
	gp := startGroups(t, 2, "")
	gp.tellAll()
	roundTrip := pipelineRoundTrip(t, gp.addr, "+OK\r\n", func(i int) []string { return []string{"SET", fmt.Sprint("k", i), "v"} })
	if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
		t.Errorf("a pipeline to two groups allocates %.1f times per round trip, want 0", n)
	}
}
