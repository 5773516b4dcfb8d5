package backend

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Every kind of connection to a group checks ROLE in its handshake: to a
// replica, shared (RESP2 and RESP3), dedicated and subscription
// connections all fail with an error naming the group and the role found,
// and tell the pool that the master may have moved; to a master they work.
func TestGroupConnectionsCheckRole(t *testing.T) {
	master := proxytest.StartRedis(t)
	replica := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port)))
	var r Registry
	defer r.Close()
	cfg := testConfig()
	var doubts atomic.Int64
	cfg.MasterDoubt = func() { doubts.Add(1) }
	u, conns, _ := r.Acquire(Key{Pool: "p", Network: "tcp", Addr: replica.Addr, Group: "g1"}, 1, cfg)
	u.Address().Set(replica.Addr, "config", "")
	const want = "not the master of group g1: ROLE says slave"

	reqs, sizes := pipeline([]string{"SET", "k", "v"})
	for _, c := range []*Conn{conns[0], RESP3Conns(conns)[0]} {
		b := newBatchSink(1)
		b.run(t, c, reqs, sizes)
		if got := string(b.slots[0].reply); !strings.Contains(got, want) {
			t.Errorf("SET on a shared connection (RESP%d) to a replica = %q, want it to contain %q", c.proto, got, want)
		}
	}
	if _, err := u.DialDedicated(); err == nil || !errors.Is(err, ErrNotMaster) || !strings.Contains(err.Error(), want) {
		t.Errorf("DialDedicated to a replica: err = %v, want %q", err, want)
	}
	if _, err := u.DialSubscriber(nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("DialSubscriber to a replica: err = %v, want %q", err, want)
	}
	if doubts.Load() < 4 {
		t.Errorf("MasterDoubt ran %d times, want once per refused connection (4)", doubts.Load())
	}
	if err := u.CheckMaster(replica.Addr, 0); !errors.Is(err, ErrNotMaster) {
		t.Errorf("CheckMaster(replica) = %v, want ErrNotMaster", err)
	}
	if err := u.CheckMaster(master.Addr, 0); err != nil {
		t.Errorf("CheckMaster(master) = %v", err)
	}

	// Pointed at the master, the same upstream's connections work.
	u.Address().Set(master.Addr, "sentinel", "")
	u.Reset("moved")
	b := newBatchSink(1)
	b.run(t, conns[0], reqs, sizes)
	if got := string(b.slots[0].reply); got != "+OK\r\n" {
		t.Errorf("SET on the master = %q", got)
	}
	d, err := u.DialDedicated()
	if err != nil {
		t.Fatalf("DialDedicated to the master: %v", err)
	}
	d.Release()
}
