package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// infoField returns field of INFO clients on r.
func infoField(t *testing.T, r *proxytest.Redis, field string) string {
	t.Helper()
	info := do(t, r.Client(t), "INFO", "clients")
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	t.Fatalf("INFO clients has no %s: %q", field, info)
	return ""
}

// waitBlocked waits until n clients are blocked on r.
func waitBlocked(t *testing.T, r *proxytest.Redis, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d blocked clients on %s", n, r.Addr), func() bool {
		return infoField(t, r, "blocked_clients") == fmt.Sprint(n)
	})
}

// sendBlocking sends args on a new client of tp without reading the reply.
func sendBlocking(t *testing.T, tp *testPool, args ...string) *proxytest.Conn {
	t.Helper()
	c := tp.client(t)
	if err := c.Send(args...); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func readReply(t *testing.T, c *proxytest.Conn) string {
	t.Helper()
	r, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	return string(r.Raw())
}

// BLPOP blocks on its server until another client's RPUSH through the
// proxy wakes it.
func TestBlockingBLPOPWokenByPush(t *testing.T) {
	tp := startProxy(t, 3, "")
	blocked := sendBlocking(t, tp, "BLPOP", "bl", "0")
	waitBlocked(t, tp.owner(t, "bl"), 1)
	if got := do(t, tp.client(t), "RPUSH", "bl", "v"); got != ":1\r\n" {
		t.Fatalf("RPUSH = %q", got)
	}
	if got, want := readReply(t, blocked), "*2\r\n$2\r\nbl\r\n$1\r\nv\r\n"; got != want {
		t.Fatalf("BLPOP = %q, want %q", got, want)
	}
	// The connection is reused for the next one, and the client goes on.
	if got := do(t, blocked, "BLPOP", "bl", "0.01"); got != "*-1\r\n" {
		t.Fatalf("second BLPOP = %q", got)
	}
}

// The pool's timeout does not cut a longer block short: the timeout's
// reply is the server's own, byte for byte, for the list and zset
// commands and XREAD. The timeout is wide enough that a loaded machine's
// late reply is not taken for a stuck server.
func TestBlockingTimeoutRepliesAsRedis(t *testing.T) {
	tp := startProxy(t, 3, "  timeout: 500\n")
	plain := proxytest.StartRedis(t).Client(t)
	c := tp.client(t)
	far := tp.keyOn(t, tp.redises[0], "x")
	near := tp.keyOn(t, tp.owner(t, far), "y")
	for _, args := range [][]string{
		{"BLPOP", "t", "0.6"},
		{"BRPOP", "t", "u", "0.6"},
		{"BZPOPMIN", "z", "0.6"},
		{"BZPOPMAX", "z", "0.6"},
		{"BLMPOP", "0.6", "1", "t", "LEFT"},
		{"BZMPOP", "0.6", "1", "z", "MIN"},
		{"BRPOPLPUSH", far, near, "0.6"},
		{"BLMOVE", far, near, "LEFT", "RIGHT", "0.6"},
		{"XREAD", "BLOCK", "600", "STREAMS", "s", "$"},
		{"BLPOP", "t", "-1"},
		{"BLPOP", "t", "x"},
		{"XREAD", "BLOCK", "x", "STREAMS", "s", "$"},
	} {
		want := do(t, plain, args...)
		if got := do(t, c, args...); got != want {
			t.Errorf("%q = %q, redis-server answers %q", args, got, want)
		}
	}
}

// BZPOPMIN pops at once when there is something to pop, and BLMOVE moves
// between keys of one server; keys on two servers are CROSSSLOT.
func TestBlockingZsetAndMove(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	do(t, c, "ZADD", "z", "1", "a", "2", "b")
	if got, want := do(t, c, "BZPOPMIN", "z", "1"), "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"; got != want {
		t.Fatalf("BZPOPMIN = %q, want %q", got, want)
	}
	src := tp.keyOn(t, tp.redises[0], "src")
	dst := tp.keyOn(t, tp.redises[0], "dst")
	other := tp.keyOn(t, tp.redises[1], "other")
	blocked := sendBlocking(t, tp, "BLMOVE", src, dst, "LEFT", "RIGHT", "0")
	waitBlocked(t, tp.redises[0], 1)
	do(t, c, "RPUSH", src, "m")
	if got := readReply(t, blocked); got != "$1\r\nm\r\n" {
		t.Fatalf("BLMOVE = %q", got)
	}
	if got := do(t, tp.redises[0].Client(t), "LRANGE", dst, "0", "-1"); got != "*1\r\n$1\r\nm\r\n" {
		t.Fatalf("LRANGE %s on its server = %q", dst, got)
	}
	if got := do(t, c, "BLMOVE", src, other, "LEFT", "RIGHT", "0"); got != "-"+msgCrossSlot+"\r\n" {
		t.Fatalf("BLMOVE across servers = %q", got)
	}
	if got := do(t, c, "BLPOP", src, other, "0"); got != "-"+msgCrossSlot+"\r\n" {
		t.Fatalf("BLPOP across servers = %q", got)
	}
}

// XREAD BLOCK waits for the next entry, which another client's XADD adds.
func TestBlockingXREADWokenByXADD(t *testing.T) {
	tp := startProxy(t, 3, "")
	blocked := sendBlocking(t, tp, "XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "st", "$")
	waitBlocked(t, tp.owner(t, "st"), 1)
	do(t, tp.client(t), "XADD", "st", "5-1", "f", "v")
	want := "*1\r\n*2\r\n$2\r\nst\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
	if got := readReply(t, blocked); got != want {
		t.Fatalf("XREAD = %q, want %q", got, want)
	}
}

// A blocking command answers in its place among the client's pipelined
// commands, before and after it.
func TestBlockingPipelineKeepsOrder(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	c.Send("SET", "pa", "1")
	c.Send("GET", "pa")
	c.Send("BLPOP", "pl", "0.05")
	c.Send("SET", "pa", "2")
	c.Send("GET", "pa")
	c.Send("RPUSH", "pl", "x")
	c.Send("BLPOP", "pl", "0")
	c.Send("GET", "pa")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []string{"+OK\r\n", "$1\r\n1\r\n", "*-1\r\n", "+OK\r\n", "$1\r\n2\r\n", ":1\r\n",
		"*2\r\n$2\r\npl\r\n$1\r\nx\r\n", "$1\r\n2\r\n"}
	for i, w := range want {
		if got := readReply(t, c); got != w {
			t.Fatalf("reply %d = %q, want %q", i, got, w)
		}
	}
}

// blocking_connections bounds the clients blocked on one server.
func TestBlockingConnectionsBound(t *testing.T) {
	tp := startProxy(t, 1, "  blocking_connections: 2\n")
	a := sendBlocking(t, tp, "BLPOP", "b1", "0")
	b := sendBlocking(t, tp, "BLPOP", "b2", "0")
	waitBlocked(t, tp.redises[0], 2)
	want := "-" + tooManyBlocked("server0", 2) + "\r\n"
	if got := do(t, tp.client(t), "BLPOP", "b3", "0"); got != want {
		t.Fatalf("third BLPOP = %q, want %q", got, want)
	}
	do(t, tp.client(t), "RPUSH", "b1", "v")
	readReply(t, a)
	if got := do(t, tp.client(t), "BLPOP", "b1", "0.01"); got != "*-1\r\n" {
		t.Fatalf("BLPOP once one was woken = %q", got)
	}
	b.Close()
}

// The bound counts clients blocked through a pool that a reload replaced:
// it is the server's, not the pool version's.
func TestBlockingConnectionsBoundSurvivesReload(t *testing.T) {
	tp := startProxy(t, 1, "  blocking_connections: 1\n")
	a := sendBlocking(t, tp, "BLPOP", "b1", "0")
	waitBlocked(t, tp.redises[0], 1)
	yaml := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  blocking_connections: 1\n  timeout: 5000\n  servers:\n    - %s:1 server0\n", tp.addr, tp.redises[0].Addr)
	if err := tp.srv.Reload(mustParse(t, yaml)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	want := "-" + tooManyBlocked("server0", 1) + "\r\n"
	if got := do(t, tp.client(t), "BLPOP", "b2", "0"); got != want {
		t.Fatalf("BLPOP after the reload = %q, want %q", got, want)
	}
	do(t, tp.client(t), "RPUSH", "b1", "v")
	readReply(t, a)
}

// A client that disconnects while blocked frees its server connection at
// once: the server has no blocked client and no connection left for it.
func TestBlockingClientGoneFreesConnection(t *testing.T) {
	tp := startProxy(t, 1, "")
	r := tp.redises[0]
	admin := r.Client(t)
	blocked := sendBlocking(t, tp, "BLPOP", "gone", "0")
	waitBlocked(t, r, 1)
	if list := do(t, admin, "CLIENT", "LIST"); !strings.Contains(list, "cmd=blpop") {
		t.Fatalf("CLIENT LIST shows no BLPOP: %s", list)
	}
	blocked.Close()
	waitBlocked(t, r, 0)
	waitFor(t, "the blocked connection closed on the server", func() bool {
		return !strings.Contains(do(t, admin, "CLIENT", "LIST"), "cmd=blpop")
	})
}

// Clients blocked on a server do not hold up anyone else's requests to it.
func TestBlockingOthersKeepWorking(t *testing.T) {
	tp := startProxy(t, 2, "")
	var blocked []*proxytest.Conn
	for i := 0; i < 20; i++ {
		blocked = append(blocked, sendBlocking(t, tp, "BLPOP", fmt.Sprintf("w%d", i), "0"))
	}
	waitFor(t, "20 blocked clients", func() bool {
		n := 0
		for _, r := range tp.redises {
			var k int
			fmt.Sscan(infoField(t, r, "blocked_clients"), &k)
			n += k
		}
		return n == 20
	})
	c := tp.client(t)
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("o%d", i)
		if got := do(t, c, "SET", k, "v"); got != "+OK\r\n" {
			t.Fatalf("SET %s = %q", k, got)
		}
		if got := do(t, c, "GET", k); got != "$1\r\nv\r\n" {
			t.Fatalf("GET %s = %q", k, got)
		}
	}
	for i, b := range blocked {
		do(t, c, "RPUSH", fmt.Sprintf("w%d", i), "x")
		if got := readReply(t, b); !strings.HasSuffix(got, "$1\r\nx\r\n") {
			t.Fatalf("BLPOP w%d = %q", i, got)
		}
	}
}

// Shutdown ends a client blocked forever: it returns without waiting out
// its context, and the client's connection closes.
func TestBlockingShutdownEndsBlockedClient(t *testing.T) {
	tp := startProxy(t, 1, "")
	blocked := sendBlocking(t, tp, "BLPOP", "sd", "0")
	waitBlocked(t, tp.redises[0], 1)
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
			t.Fatalf("BLPOP at shutdown = %q", r.Raw())
		}
	}
	waitBlocked(t, tp.redises[0], 0)
}

// go-redis' BLPop with default options: it waits for the push, and its
// timeout gets redis.Nil.
func TestBlockingGoRedisBLPop(t *testing.T) {
	tp := startProxy(t, 3, "  timeout: 400\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	if _, err := rdb.BLPop(ctx, time.Second, "gl").Result(); err != redis.Nil {
		t.Fatalf("BLPop timeout: err = %v, want redis.Nil", err)
	}
	done := make(chan []string, 1)
	go func() {
		v, err := rdb.BLPop(ctx, 0, "gl").Result()
		if err != nil {
			v = []string{err.Error()}
		}
		done <- v
	}()
	waitBlocked(t, tp.owner(t, "gl"), 1)
	if err := rdb.RPush(ctx, "gl", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if v := <-done; len(v) != 2 || v[0] != "gl" || v[1] != "v" {
		t.Fatalf("BLPop = %q", v)
	}
}

// Inside MULTI a blocking command is queued, and EXEC runs it without
// blocking, as Redis does.
func TestBlockingInMulti(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	do(t, c, "MULTI")
	if got := do(t, c, "BLPOP", "ml", "0"); got != "+QUEUED\r\n" {
		t.Fatalf("BLPOP in MULTI = %q", got)
	}
	if got := do(t, c, "EXEC"); got != "*1\r\n*-1\r\n" {
		t.Fatalf("EXEC = %q", got)
	}
}

// CLIENT KILL of a blocked client ends its block on the server too.
func TestBlockingClientKilled(t *testing.T) {
	tp := startProxy(t, 1, "")
	blocked := tp.client(t)
	id := strings.TrimSuffix(strings.TrimPrefix(do(t, blocked, "CLIENT", "ID"), ":"), "\r\n")
	blocked.Send("BLPOP", "killed", "0")
	blocked.Flush()
	waitBlocked(t, tp.redises[0], 1)
	if got := do(t, tp.client(t), "CLIENT", "KILL", "ID", id); got != ":1\r\n" {
		t.Fatalf("CLIENT KILL ID %s = %q", id, got)
	}
	waitBlocked(t, tp.redises[0], 0)
}
