package main

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// The binary serves a redis_cluster pool from one seed: it finds the
// other masters, serves keys of every master, follows a reshard, and
// after a master is SIGKILLed, writes to its slots resume once the
// cluster has promoted its replica.
func TestClusterPoolEndToEnd(t *testing.T) {
	began := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("%5.1fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	c := proxytest.StartCluster(t, 3, 1)
	step("cluster up")
	addr, _ := startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 1000\n  redis_cluster: true\n  servers:\n    - %s:1\n", port, c.Nodes[0].Addr)
	})
	cl := proxytest.Dial(t, addr)
	const keys = 2000
	for i := range keys {
		if r, err := cl.Do("SET", fmt.Sprint("k", i), strconv.Itoa(i)); err != nil || r.String() != "+OK" {
			t.Fatalf("SET k%d = %v, %v", i, r, err)
		}
	}
	step("%d keys written", keys)

	masters := c.Masters()
	c.Reshard(t, masters[0].ID, masters[1].ID, 2000)
	step("2000 slots moved from %s to %s", masters[0].Addr, masters[1].Addr)
	checkClusterKeys(t, cl, keys)

	victim := masters[1]
	var key string
	for i := 0; key == ""; i++ {
		k := fmt.Sprint("f", i)
		if c.Owner(t, int(hashring.KeySlot([]byte(k)))).ID == victim.ID {
			key = k
		}
	}
	victim.Kill()
	killed := time.Now()
	step("master %s SIGKILLed", victim.Addr)
	deadline := killed.Add(proxytest.ClusterTimeout)
	for {
		r, err := cl.Do("SET", key, "after")
		if err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if r.String() == "+OK" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET %s = %v %v after the kill", key, r, proxytest.ClusterTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	step("writes to the killed master's slots resumed %.1fs after the kill", time.Since(killed).Seconds())
	c.WaitStable(t)
	checkClusterKeys(t, cl, keys)
}

// checkClusterKeys reads k0... through the proxy.
func checkClusterKeys(t *testing.T, cl *proxytest.Conn, keys int) {
	t.Helper()
	for i := range keys {
		r, err := cl.Do("GET", fmt.Sprint("k", i))
		v := strconv.Itoa(i)
		if want := fmt.Sprintf("$%d\r\n%s\r\n", len(v), v); err != nil || string(r.Raw()) != want {
			t.Fatalf("GET k%d = %v, %v, want %q", i, r, err, want)
		}
	}
}
