package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// tellReplicas plays discovery: every group's configured master, with its
// replica listed.
func (gp *groupPool) tellReplicas() {
	groups := map[string]GroupMaster{}
	for i, m := range gp.masters {
		groups[fmt.Sprintf("g%d", i)] = GroupMaster{Addr: m.Addr, Replicas: []string{gp.replicas[i].Addr}, Source: "test", Agree: 1, Reachable: 1}
	}
	gp.srv.SetGroupMasters("alpha", groups)
}

// waitReadReplicas waits until group i has n replicas taking reads.
func (gp *groupPool) waitReadReplicas(t *testing.T, i, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if len(gp.groupSnapshot(t, i).ReadReplicas) == n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("group %d has read replicas %v, want %d of them", i, gp.groupSnapshot(t, i).ReadReplicas, n)
}

// With prefer_replica, reads go to the replica and writes to the master;
// a read after a write in the same batch, and reads in MULTI, go to the
// master.
func TestReplicaReadsPreferReplica(t *testing.T) {
	gp := startGroups(t, 1, "  read_from: prefer_replica\n")
	gp.tellReplicas()
	gp.waitReadReplicas(t, 0, 1)
	m, r := gp.masters[0], gp.replicas[0]
	c := proxytest.Dial(t, gp.addr)
	sets := commandCalls(t, m, "set")
	for i := 0; i < 5; i++ {
		if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
			t.Fatalf("SET = %q", got)
		}
		if got := do(t, c, "INCR", "n"); got != fmt.Sprintf(":%d\r\n", i+1) {
			t.Fatalf("INCR = %q", got)
		}
	}
	if n := commandCalls(t, m, "set"); n != sets+5 {
		t.Errorf("the master ran SET %d times, want %d: every write goes to it", n, sets+5)
	}
	waitSynced(t, m, r)

	masterGets, replicaGets := commandCalls(t, m, "get"), commandCalls(t, r, "get")
	for i := 0; i < 10; i++ {
		if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
			t.Fatalf("GET = %q", got)
		}
	}
	if n := commandCalls(t, r, "get"); n != replicaGets+10 {
		t.Errorf("the replica ran GET %d times, want %d", n, replicaGets+10)
	}
	if n := commandCalls(t, m, "get"); n != masterGets {
		t.Errorf("the master ran GET %d times, want %d", n, masterGets)
	}
	if n := gp.groupSnapshot(t, 0).ReplicaReads; n < 10 {
		t.Errorf("ReplicaReads = %d, want at least 10", n)
	}

	// A read that follows a write in one batch reads the write.
	masterGets, replicaGets = commandCalls(t, m, "get"), commandCalls(t, r, "get")
	got := pipeline(t, c, [][]string{{"GET", "k"}, {"SET", "k", "own"}, {"GET", "k"}})
	if want := []string{"$1\r\nv\r\n", "+OK\r\n", "$3\r\nown\r\n"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("GET, SET, GET in one batch = %q, want %q", got, want)
	}
	if n := commandCalls(t, m, "get"); n != masterGets+1 {
		t.Errorf("the master ran GET %d times, want %d: the read after the write", n, masterGets+1)
	}
	if n := commandCalls(t, r, "get"); n != replicaGets+1 {
		t.Errorf("the replica ran GET %d times, want %d: the read before the write", n, replicaGets+1)
	}

	// Reads in MULTI go to the master.
	masterGets, replicaGets = commandCalls(t, m, "get"), commandCalls(t, r, "get")
	got = pipeline(t, c, [][]string{{"MULTI"}, {"GET", "k"}, {"EXEC"}})
	if got[2] != "*1\r\n$3\r\nown\r\n" {
		t.Errorf("EXEC = %q", got[2])
	}
	if n := commandCalls(t, m, "get"); n != masterGets+1 {
		t.Errorf("the master ran GET %d times, want %d: the read in MULTI", n, masterGets+1)
	}
	if n := commandCalls(t, r, "get"); n != replicaGets {
		t.Errorf("the replica ran GET %d times, want %d", n, replicaGets)
	}
}

// A replica whose master link goes down stops taking reads, which go to
// the master, and takes them again once its link is back.
func TestReplicaReadsLinkDown(t *testing.T) {
	gp := startGroups(t, 1, "  read_from: prefer_replica\n")
	gp.tellReplicas()
	gp.waitReadReplicas(t, 0, 1)
	m, r := gp.masters[0], gp.replicas[0]
	c := proxytest.Dial(t, gp.addr)
	do(t, c, "SET", "k", "v")
	do(t, r.Client(t), "REPLICAOF", "127.0.0.1", fmt.Sprint(proxytest.FreePort(t)))
	gp.waitReadReplicas(t, 0, 0)
	masterGets, replicaGets := commandCalls(t, m, "get"), commandCalls(t, r, "get")
	for i := 0; i < 5; i++ {
		if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
			t.Fatalf("GET with the replica's link down = %q", got)
		}
	}
	if n := commandCalls(t, r, "get"); n != replicaGets {
		t.Errorf("the replica whose link is down ran GET %d times, want %d", n, replicaGets)
	}
	if n := commandCalls(t, m, "get"); n != masterGets+5 {
		t.Errorf("the master ran GET %d times, want %d", n, masterGets+5)
	}
	do(t, r.Client(t), "REPLICAOF", "127.0.0.1", fmt.Sprint(m.Port))
	gp.waitReadReplicas(t, 0, 1)
}

// With replica_max_lag, a replica that falls behind its master stops
// taking reads.
func TestReplicaReadsMaxLag(t *testing.T) {
	gp := startGroups(t, 1, "  read_from: prefer_replica\n  replica_max_lag: 1000\n")
	gp.tellReplicas()
	gp.waitReadReplicas(t, 0, 1)
	m, r := gp.masters[0], gp.replicas[0]
	c := proxytest.Dial(t, gp.addr)
	r.Pause()
	resumed := false
	defer func() {
		if !resumed {
			r.Resume()
		}
	}()
	if got := do(t, c, "SET", "big", strings.Repeat("x", 4000)); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	gp.waitReadReplicas(t, 0, 0)
	masterGets := commandCalls(t, m, "get")
	if got := do(t, c, "GET", "big"); len(got) != 4000+len("$4000\r\n\r\n") {
		t.Fatalf("GET with the replica behind = %.20q...", got)
	}
	if n := commandCalls(t, m, "get"); n != masterGets+1 {
		t.Errorf("the master ran GET %d times, want %d", n, masterGets+1)
	}
	r.Resume()
	resumed = true
	gp.waitReadReplicas(t, 0, 1)
}

// With read_from replica, a read that finds no replica fails with an
// error naming the group; writes still go to the master.
func TestReplicaReadsReplicaOnly(t *testing.T) {
	gp := startGroups(t, 1, "  read_from: replica\n")
	gp.tellAll() // no replica listed
	c := proxytest.Dial(t, gp.addr)
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	want := fmt.Sprintf("-ERR server g0 (%s): group g0 has no replica to read from\r\n", gp.masters[0].Addr)
	if got := do(t, c, "GET", "k"); got != want {
		t.Errorf("GET without a replica = %q, want %q", got, want)
	}
	// After a write in the same batch, the read goes to the master.
	got := pipeline(t, c, [][]string{{"SET", "k", "w"}, {"GET", "k"}})
	if got[1] != "$1\r\nw\r\n" {
		t.Errorf("GET after SET in one batch = %q, want the write", got[1])
	}
	gp.tellReplicas()
	gp.waitReadReplicas(t, 0, 1)
	waitSynced(t, gp.masters[0], gp.replicas[0])
	if got := do(t, c, "GET", "k"); got != "$1\r\nw\r\n" {
		t.Errorf("GET with a replica = %q", got)
	}
}

// Reads sent to replicas allocate nothing per request either.
func TestReplicaReadsAllocateNothing(t *testing.T) {
	gp := startGroups(t, 2, "  read_from: prefer_replica\n")
	gp.tellReplicas()
	gp.waitReadReplicas(t, 0, 1)
	gp.waitReadReplicas(t, 1, 1)
	roundTrip := pipelineRoundTrip(t, gp.addr, "$-1\r\n", func(i int) []string { return []string{"GET", fmt.Sprint("k", i)} })
	before := gp.groupSnapshot(t, 0).ReplicaReads + gp.groupSnapshot(t, 1).ReplicaReads
	if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
		t.Errorf("a pipeline of reads to two groups' replicas allocates %.1f times per round trip, want 0", n)
	}
	if after := gp.groupSnapshot(t, 0).ReplicaReads + gp.groupSnapshot(t, 1).ReplicaReads; after-before < 200*16 {
		t.Errorf("replicas took %d reads, want at least %d", after-before, 200*16)
	}
}

// With prefer_replica, a replica that dies while it takes reads costs no
// read an error: a read its connection fails is sent on to the master,
// and the next poll takes the replica out.
func TestReplicaReadsReplicaDies(t *testing.T) {
	gp := startGroups(t, 1, "  read_from: prefer_replica\n")
	gp.tellReplicas()
	gp.waitReadReplicas(t, 0, 1)
	c := proxytest.Dial(t, gp.addr)
	do(t, c, "SET", "k", "v")
	waitSynced(t, gp.masters[0], gp.replicas[0])
	if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET = %q", got)
	}
	gp.replicas[0].Stop()
	for i := 0; i < 20; i++ {
		if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
			t.Fatalf("GET %d after the replica died = %q, want the master's reply", i, got)
		}
	}
	gp.waitReadReplicas(t, 0, 0)
}
