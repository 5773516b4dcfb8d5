package proxy

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startReplicas starts one replica of each of tp's servers and waits until
// each master sees its replica online.
func startReplicas(t *testing.T, tp *testPool) []*proxytest.Redis {
	t.Helper()
	var replicas []*proxytest.Redis
	for _, m := range tp.redises {
		replicas = append(replicas, proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", fmt.Sprint(m.Port))))
	}
	for _, m := range tp.redises {
		admin := m.Client(t)
		waitFor(t, "a replica online on "+m.Addr, func() bool {
			return strings.Contains(do(t, admin, "INFO", "replication"), ",state=online,")
		})
	}
	return replicas
}

// WAIT counts the replicas of every server of the pool: each server with
// a replica that has the client's writes answers 1, so the pool does.
func TestWaitCountsReplicasOfEveryServer(t *testing.T) {
	tp := startProxy(t, 2, "")
	startReplicas(t, tp)
	c := tp.client(t)
	for _, r := range tp.redises {
		do(t, c, "SET", tp.keyOn(t, r, "w"), "v")
	}
	if got := do(t, c, "WAIT", "1", "0"); got != ":1\r\n" {
		t.Fatalf("WAIT 1 0 with a replica per server = %q, want :1", got)
	}
	// Only one replica each: WAIT 2 waits out its timeout and says 1.
	if got := do(t, c, "WAIT", "2", "100"); got != ":1\r\n" {
		t.Fatalf("WAIT 2 100 with one replica per server = %q, want :1", got)
	}
}

// WAIT covers writes that went over the shared connections, also on a
// dedicated connection that an earlier WAIT left at an older replication
// offset: a replica that stopped acknowledging makes its server, and so
// the pool, answer 0 once the timeout is over.
func TestWaitCoversWritesOnOtherConnections(t *testing.T) {
	tp := startProxy(t, 2, "")
	replicas := startReplicas(t, tp)
	c := tp.client(t)
	key := tp.keyOn(t, tp.redises[1], "w")
	do(t, c, "SET", key, "1")
	if got := do(t, c, "WAIT", "1", "0"); got != ":1\r\n" {
		t.Fatalf("WAIT 1 0 = %q, want :1", got)
	}
	// The replica acknowledges all its server had before it pauses, so a
	// WAIT that asked about an offset from before the next write would
	// count it.
	admin := tp.redises[1].Client(t)
	waitFor(t, "server1's replica acknowledging everything", func() bool {
		info := do(t, admin, "INFO", "replication")
		master := regexp.MustCompile(`master_repl_offset:(\d+)`).FindStringSubmatch(info)
		acked := regexp.MustCompile(`slave0:[^\r]*,offset=(\d+),`).FindStringSubmatch(info)
		return master != nil && acked != nil && master[1] == acked[1]
	})
	replicas[1].Pause()
	defer replicas[1].Resume()
	do(t, c, "SET", key, "2")
	if got := do(t, c, "WAIT", "1", "100"); got != ":0\r\n" {
		t.Fatalf("WAIT 1 100 with server1's replica paused after a write = %q, want :0", got)
	}
	replicas[1].Resume()
	if got := do(t, c, "WAIT", "1", "0"); got != ":1\r\n" {
		t.Fatalf("WAIT 1 0 after the replica resumed = %q, want :1", got)
	}
	replicas[1].Kill()
	waitFor(t, "server1 without its replica", func() bool {
		return strings.Contains(do(t, admin, "INFO", "replication"), "connected_slaves:0\r\n")
	})
	if got := do(t, c, "WAIT", "1", "100"); got != ":0\r\n" {
		t.Fatalf("WAIT 1 100 with server1's replica killed = %q, want :0", got)
	}
}

// Without replicas WAIT answers 0, after its timeout when it asks for
// more; inside MULTI it is queued and answered at EXEC without blocking;
// bad arguments get Redis' errors.
func TestWaitWithoutReplicas(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	c := tp.client(t)
	single := proxytest.StartRedis(t).Client(t)
	do(t, c, "SET", "k", "v")
	for _, cmd := range [][]string{
		{"WAIT", "0", "0"},
		{"WAIT", "1", "100"},
		{"WAIT", "-1", "0"},
		{"WAIT", "x", "0"},
		{"WAIT", "1", "x"},
		{"WAIT", "1", "-1"},
		{"WAIT", "1", "1.5"},
		{"WAIT", "99999999999999999999", "0"},
		{"WAIT", "1"},
		{"WAIT", "1", "2", "3"},
	} {
		if got, want := do(t, c, cmd...), do(t, single, cmd...); got != want {
			t.Errorf("%v = %q, redis-server says %q", cmd, got, want)
		}
	}
	tx := [][]string{{"MULTI"}, {"SET", "{t}a", "1"}, {"WAIT", "1", "0"}, {"WAIT", "0", "0"}, {"EXEC"}}
	want := pipeline(t, single, tx)
	if got := pipeline(t, c, tx); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("WAIT in MULTI: %q, redis-server says %q", got, want)
	}
}

// A client that goes away during WAIT has its server connections closed,
// which ends the WAIT on every server; WAIT counts against
// blocking_connections; Shutdown ends a WAIT that would wait forever.
func TestWaitBlocksOnConnectionsOfItsOwn(t *testing.T) {
	tp := startProxy(t, 2, "  blocking_connections: 1\n")
	replicas := startReplicas(t, tp)
	for _, r := range replicas {
		r.Pause()
		defer r.Resume()
	}
	c := tp.client(t)
	do(t, c, "SET", "k", "v")
	gone := sendBlocking(t, tp, "WAIT", "1", "0")
	for _, r := range tp.redises {
		waitBlocked(t, r, 1)
	}
	// Others go on meanwhile, but find no blocking connection left.
	if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET while another client waits = %q", got)
	}
	if got, want := do(t, c, "WAIT", "1", "0"), "-"+tooManyBlocked("server0", 1)+"\r\n"; got != want {
		t.Fatalf("WAIT past blocking_connections = %q, want %q", got, want)
	}
	gone.Close()
	for _, r := range tp.redises {
		waitBlocked(t, r, 0)
	}

	blocked := sendBlocking(t, tp, "WAIT", "1", "0")
	for _, r := range tp.redises {
		waitBlocked(t, r, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tp.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for {
		r, err := blocked.Read()
		if err != nil {
			break
		}
		if !r.IsError() {
			t.Fatalf("WAIT at shutdown = %q", r.Raw())
		}
	}
	for _, r := range tp.redises {
		waitBlocked(t, r, 0)
	}
}

// A server that is down makes WAIT its error: the client's writes there
// cannot be counted. An ejected server too, as it may hold writes from
// before its ejection.
func TestWaitServerDown(t *testing.T) {
	tp := startProxy(t, 3, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n")
	c := tp.client(t)
	down := tp.keyOn(t, tp.redises[1], "d")
	tp.redises[1].Stop()
	wantErr := "-ERR server server1 (" + tp.redises[1].Addr + "): "
	if got := do(t, c, "WAIT", "0", "0"); !strings.HasPrefix(got, wantErr) {
		t.Fatalf("WAIT with server1 down = %q, want prefix %q", got, wantErr)
	}
	// The failure ejects server1; its keys go to the others meanwhile.
	waitFor(t, "server1 ejected", func() bool { return do(t, c, "SET", down, "v") == "+OK\r\n" })
	if got := do(t, c, "WAIT", "0", "0"); !strings.HasPrefix(got, "-ERR server server1 ") {
		t.Fatalf("WAIT with server1 ejected = %q, want an error naming it", got)
	}
	if got := do(t, c, "DBSIZE"); got != ":1\r\n" {
		t.Fatalf("DBSIZE with server1 ejected = %q, want :1", got)
	}
}
