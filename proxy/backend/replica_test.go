package backend

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// waitLinkUp waits until replica's master link is up.
func waitLinkUp(t *testing.T, replica *proxytest.Redis) {
	t.Helper()
	c := replica.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		info, err := c.Do("INFO", "replication")
		if err == nil && strings.Contains(string(info.Str), "master_link_status:up") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica %s never linked up", replica.Addr)
}

// Connections to a group's replica check ROLE: a replica with its master
// link up takes reads, on RESP2 and RESP3 connections; a master, or a
// replica whose link is down, is refused with an error naming the group.
func TestReplicaConnectionsCheckRole(t *testing.T) {
	master := proxytest.StartRedis(t)
	replica := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port)))
	waitLinkUp(t, replica)
	var r Registry
	defer r.Close()
	reqs, sizes := pipeline([]string{"GET", "k"})
	up, conns, _ := r.Acquire(Key{Pool: "p", Network: "tcp", Addr: replica.Addr, Group: "g1", Replica: true}, 1, testConfig())
	up.Address().Set(replica.Addr, "sentinel", "")
	for _, c := range []*Conn{conns[0], RESP3Conns(conns)[0]} {
		b := newBatchSink(1)
		b.run(t, c, reqs, sizes)
		if got := string(b.slots[0].reply); got != "$-1\r\n" && got != "_\r\n" {
			t.Errorf("GET on a replica (RESP%d) = %q, want a null", c.proto, got)
		}
	}

	mu, mconns, _ := r.Acquire(Key{Pool: "p", Network: "tcp", Addr: master.Addr, Group: "g1", Replica: true}, 1, testConfig())
	mu.Address().Set(master.Addr, "sentinel", "")
	b := newBatchSink(1)
	b.run(t, mconns[0], reqs, sizes)
	if got, want := string(b.slots[0].reply), "not a connected replica of group g1: ROLE says master"; !strings.Contains(got, want) {
		t.Errorf("GET on a master through a replica's connection = %q, want it to contain %q", got, want)
	}

	// The replica's link goes down: a new connection is refused.
	do := replica.Client(t)
	if _, err := do.Do("REPLICAOF", "127.0.0.1", strconv.Itoa(proxytest.FreePort(t))); err != nil {
		t.Fatal(err)
	}
	if _, err := up.DialDedicated(); !errors.Is(err, ErrNotReplica) || !strings.Contains(err.Error(), "ROLE says slave, link connect") {
		t.Errorf("DialDedicated to a replica whose link is down: err = %v, want ErrNotReplica naming its link", err)
	}
}

// ParseRole reads what real servers answer to ROLE, in RESP2 and RESP3.
func TestParseRole(t *testing.T) {
	master := proxytest.StartRedis(t)
	replica := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port)))
	waitLinkUp(t, replica)
	if _, err := master.Client(t).Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	var r Registry
	defer r.Close()
	reqs, sizes := pipeline([]string{"ROLE"})
	role := func(addr string, proto int) (Role, error) {
		_, conns, _ := r.Acquire(Key{Pool: "p", Network: "tcp", Addr: addr}, 1, testConfig())
		conns[0].up.Address().Set(addr, "config", "")
		c := conns[0]
		if proto == RESP3 {
			c = RESP3Conns(conns)[0]
		}
		b := newBatchSink(1)
		b.run(t, c, reqs, sizes)
		return ParseRole(b.slots[0].reply)
	}
	for _, proto := range []int{RESP2, RESP3} {
		m, err := role(master.Addr, proto)
		for deadline := time.Now().Add(10 * time.Second); err == nil && len(m.Replicas) == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond) // the master lists a replica once it is online
			m, err = role(master.Addr, proto)
		}
		if err != nil {
			t.Fatalf("ParseRole(master, RESP%d): %v", proto, err)
		}
		if m.Role != "master" || m.Offset <= 0 || len(m.Replicas) != 1 {
			t.Errorf("ParseRole(master, RESP%d) = %+v, want a master with an offset and one replica", proto, m)
		}
		if _, ok := m.Replicas[replica.Addr]; !ok {
			t.Errorf("ParseRole(master, RESP%d).Replicas = %v, want %s in it", proto, m.Replicas, replica.Addr)
		}
		s, err := role(replica.Addr, proto)
		for deadline := time.Now().Add(10 * time.Second); err == nil && s.Offset == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			s, err = role(replica.Addr, proto)
		}
		if err != nil {
			t.Fatalf("ParseRole(replica, RESP%d): %v", proto, err)
		}
		if s.Role != "slave" || s.State != "connected" || s.Offset <= 0 {
			t.Errorf("ParseRole(replica, RESP%d) = %+v, want a connected replica with an offset", proto, s)
		}
	}
	for _, bad := range []string{"", "+OK\r\n", "*2\r\n$6\r\nmaster\r\n", "*3\r\n$6\r\nmaster\r\n:1\r\n*1\r\n$1\r\nx\r\n", "*1\r\n$9\r\nmaster\r\n"} {
		if _, err := ParseRole([]byte(bad)); err == nil {
			t.Errorf("ParseRole(%q): no error", bad)
		}
	}
}
