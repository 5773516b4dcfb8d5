package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// roleOfReplica is the ROLE reply of a replica at offset whose master
// link is in state.
func roleOfReplica(state string, offset int64) []byte {
	return fmt.Appendf(nil, "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$%d\r\n%s\r\n:%d\r\n", len(state), state, offset)
}

// What a replica's ROLE reply says of its link, its lag and whether it
// takes reads, for the stats.
func TestReplicaState(t *testing.T) {
	const addr = "127.0.0.1:6380"
	for _, tc := range []struct {
		name                string
		reply               []byte
		maxLag, masterOff   int64
		reads               bool
		link, state, reason string
		lag                 int64
	}{
		{"connected", roleOfReplica("connected", 900), 0, 1000, true, "up", "connected", "", 100},
		{"master offset unknown", roleOfReplica("connected", 900), 0, -1, true, "up", "connected", "", -1},
		{"read_from master", roleOfReplica("connected", 1000), 0, 1000, false, "up", "connected", stats.ReasonReadFromMaster, 0},
		{"within replica_max_lag", roleOfReplica("connected", 500), 500, 1000, true, "up", "connected", "", 500},
		{"over replica_max_lag", roleOfReplica("connected", 499), 500, 1000, true, "up", "connected", stats.ReasonLagOverMax, 501},
		{"lag unknown with replica_max_lag", roleOfReplica("connected", 499), 500, -1, true, "up", "connected", stats.ReasonLagUnknown, -1},
		{"link down", roleOfReplica("connect", 400), 0, 1000, true, "down", "connect", stats.ReasonLinkDown, 600},
		{"ahead of the master's older offset", roleOfReplica("connected", 1200), 0, 1000, true, "up", "connected", "", 0},
		{"a master", []byte("*3\r\n$6\r\nmaster\r\n:10\r\n*0\r\n"), 0, 1000, true, "down", "", stats.ReasonNotReplica, -1},
		{"no reply", nil, 0, 1000, true, "down", "", stats.ReasonUnreachable, -1},
		{"connection failed", []byte("-ERR server g0 (replica 127.0.0.1:6380): connection refused\r\n"), 0, 1000, true, "down", "", stats.ReasonUnreachable, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, why := replicaState(addr, tc.reply, tc.maxLag, tc.masterOff, tc.reads)
			if l.Addr != addr || l.Link != tc.link || l.State != tc.state || l.Reason != tc.reason || l.LagBytes != tc.lag {
				t.Errorf("replicaState = %+v, want link %q state %q reason %q lag %d", l, tc.link, tc.state, tc.reason, tc.lag)
			}
			if (why == "") != (tc.reason == "") {
				t.Errorf("replicaState's why = %q with reason %q", why, l.Reason)
			}
		})
	}
}

// The poll of a read_from master group's replicas, for the stats, leaves
// its requests allocation-free.
func TestGroupPolledReplicasRequestsAllocateNothing(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellReplicas()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if l := gp.groupSnapshot(t, 0).ReplicaLinks; len(l) == 1 && l[0].Link == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica links = %+v, want the replica up", gp.groupSnapshot(t, 0).ReplicaLinks)
		}
		time.Sleep(20 * time.Millisecond)
	}
	roundTrip := pipelineRoundTrip(t, gp.addr, "$-1\r\n", func(i int) []string { return []string{"GET", fmt.Sprint("k", i)} })
	if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
		t.Errorf("a pipeline of reads to a polled group allocates %.1f times per round trip, want 0", n)
	}
}
