package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startRoleGroupProxy runs the shardproxy binary over groups without
// Sentinel: members are group_members lines, servers server lines.
func startRoleGroupProxy(t *testing.T, members, servers []string) (addr string, logs *lockedBuffer) {
	t.Helper()
	return startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 1000\n  group_members:\n    - %s\n  servers:\n    - %s\n",
			port, strings.Join(members, "\n    - "), strings.Join(servers, "\n    - "))
	}, "--discovery-sync-timeout", "2s") // a group with no master yet must not hold the listener back long
}

// replicaOf points r at master ("NO ONE" promotes it) and waits until
// ROLE on r says so.
func replicaOf(t *testing.T, r *proxytest.Redis, master *proxytest.Redis) {
	t.Helper()
	c := r.Client(t)
	defer c.Close()
	args, want := []string{"REPLICAOF", "NO", "ONE"}, "master"
	if master != nil {
		args, want = []string{"REPLICAOF", "127.0.0.1", strconv.Itoa(master.Port)}, "connected"
	}
	if rep, err := c.Do(args...); err != nil || !strings.HasPrefix(rep.String(), "+OK") {
		t.Fatalf("%s on %s = %v, %v", strings.Join(args, " "), r.Addr, rep, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := c.Do("ROLE")
		if err == nil && strings.Contains(string(rep.Raw()), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ROLE on %s = %q, %v; want %s", r.Addr, rep.Raw(), err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A group without Sentinel under a steady write load: when its master is
// SIGKILLed the group's writes fail closed with an error naming it (no
// member says master; nothing guesses), the other group sees no error;
// when an operator promotes a replica and points the other at it, writes
// resume there with nothing acknowledged lost; and the old master,
// restarted empty and claiming to be a master, never gets a write.
func TestRoleGroupManualFailoverUnderLoad(t *testing.T) {
	var masters, replicas []*proxytest.Redis
	for range 2 {
		m := proxytest.StartRedis(t)
		masters = append(masters, m)
		replicas = append(replicas, proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port))))
	}
	extra := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(masters[0].Port)))
	// Every link up before the proxy starts: a group whose replica is still
	// in its handshake has no confirmed master yet, and the load below
	// must begin with both groups serving.
	for i, r := range replicas {
		replicaOf(t, r, masters[i])
	}
	replicaOf(t, extra, masters[0])
	addr, logs := startRoleGroupProxy(t,
		[]string{"g0 " + replicas[0].Addr + " " + extra.Addr, "g1 " + replicas[1].Addr},
		[]string{masters[0].Addr + ":1 g0", masters[1].Addr + ":1 g1"})
	c := proxytest.Dial(t, addr)
	waitReply(t, c, "+OK", "SET", "probe", "1")
	keys := keysOf(t, addr, &sentinelGroups{masters: masters}, 20)

	var stop atomic.Bool
	var wg sync.WaitGroup
	loads := [2]*incrLoad{runIncrLoad(t, addr, keys[0], &stop, &wg), runIncrLoad(t, addr, keys[1], &stop, &wg)}
	time.Sleep(300 * time.Millisecond)

	masters[0].Kill()
	// Until someone promotes a replica the group fails closed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := c.Do("SET", keys[0][0], "x")
		if err != nil {
			t.Fatal(err)
		}
		// A request sent before the members were asked again meets the
		// dead connection; then the group's own error comes.
		if r.IsError() && strings.Contains(r.String(), "group g0 has no confirmed master: no member says master") {
			t.Logf("SET on g0 with its master dead: %v", r)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET on g0 30s after its master was killed = %v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}

	promoted := time.Now()
	replicaOf(t, replicas[0], nil)
	replicaOf(t, extra, replicas[0])
	resumed := loads[0].firstOKAfter(t, promoted)
	t.Logf("g0: writes resumed %v after the promotion began", resumed.Sub(promoted).Round(time.Millisecond))

	// The old master comes back empty, a master of nothing: the members
	// still agree on the promoted one, so the group keeps serving there and
	// the old one gets no write.
	masters[0].Restart(t)
	okBefore := func() int { loads[0].mu.Lock(); defer loads[0].mu.Unlock(); return len(loads[0].okAt) }
	for n, deadline := okBefore(), time.Now().Add(30*time.Second); okBefore() < n+200; {
		if time.Now().After(deadline) {
			t.Fatalf("g0's writes stopped after the old master restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	old := masters[0].Client(t)
	if r, err := old.Do("INFO", "commandstats"); err != nil || strings.Contains(string(r.Raw()), "cmdstat_incr:") {
		t.Errorf("the restarted old master ran INCR: %q, %v", r.Raw(), err)
	}
	if r, err := old.Do("DBSIZE"); err != nil || r.String() != "(integer) 0" && string(r.Raw()) != ":0\r\n" {
		t.Errorf("the restarted old master DBSIZE = %v, %v, want 0", r, err)
	}
	stop.Store(true)
	wg.Wait()

	if n := len(loads[1].errs); n > 0 {
		t.Errorf("g1 saw %d errors during g0's failover, the first %s", n, loads[1].first)
	}
	t.Logf("g0 saw %d errors between the kill and the promotion, the first %s", len(loads[0].errs), loads[0].first)
	// Every value acknowledged after the promotion is on the new master.
	nc := replicas[0].Client(t)
	for _, k := range keys[0] {
		vals := loads[0].acked[k]
		if len(vals) == 0 {
			continue
		}
		r, err := nc.Do("GET", k)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := strconv.ParseInt(string(r.Str), 10, 64)
		if last := vals[len(vals)-1]; got != last {
			t.Errorf("%s: the new master has %d, the last acknowledged INCR said %d", k, got, last)
		}
	}
	if !strings.Contains(logs.String(), "group master changed") {
		t.Errorf("no \"group master changed\" in the log")
	}
}

// Two members that both say master, each with a replica attached (a split
// brain): the group fails closed, with an error saying why, and neither
// gets a write.
func TestRoleGroupTwoMastersFailClosed(t *testing.T) {
	m0, m1 := proxytest.StartRedis(t), proxytest.StartRedis(t)
	r0 := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m0.Port)))
	r1 := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m1.Port)))
	replicaOf(t, r0, m0)
	replicaOf(t, r1, m1)
	addr, _ := startRoleGroupProxy(t, []string{"g0 " + r0.Addr + " " + m1.Addr + " " + r1.Addr}, []string{m0.Addr + ":1 g0"})
	c := proxytest.Dial(t, addr)
	r, err := c.Do("SET", "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsError() || !strings.Contains(r.String(), "group g0 has no confirmed master") {
		t.Fatalf("SET = %v, want the group's error", r)
	}
	t.Logf("SET = %v", r)
	for _, m := range []*proxytest.Redis{m0, m1} {
		mc := m.Client(t)
		if rep, err := mc.Do("EXISTS", "k"); err != nil || string(rep.Raw()) != ":0\r\n" {
			t.Errorf("%s EXISTS k = %q, %v: a master of a split group got the write", m.Addr, rep.Raw(), err)
		}
		mc.Close()
	}
}
