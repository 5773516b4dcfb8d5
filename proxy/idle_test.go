package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/internal/rawsock"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// shortParkAfter makes idle clients park after d for the test.
func shortParkAfter(t *testing.T, d time.Duration) {
	t.Helper()
	testHookParkAfter.Store(int64(d))
	t.Cleanup(func() { testHookParkAfter.Store(0) })
}

// parkedNow returns the stats port's parked_connections.
func parkedNow(srv *Server) int64 {
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	return snap.Process[stats.ParkedConnections]
}

// Idle clients park (no goroutine, no read buffer) and are served as
// before when they send again: requests, pipelines and a request split
// over several writes.
func TestIdleClientsParkAndResume(t *testing.T) {
	shortParkAfter(t, 50*time.Millisecond)
	tp := startProxy(t, 3, "")
	const n = 50
	conns := make([]*proxytest.Conn, n)
	for i := range conns {
		conns[i] = tp.client(t)
		if got := do(t, conns[i], "SET", fmt.Sprint("k", i), fmt.Sprint(i)); got != "+OK\r\n" {
			t.Fatalf("SET = %q", got)
		}
	}
	waitFor(t, "every client to park", func() bool { return parkedNow(tp.srv) == n })
	goroutines := runtime.NumGoroutine()
	for round := range 3 {
		for i, c := range conns {
			if got := do(t, c, "GET", fmt.Sprint("k", i)); got != fmt.Sprintf("$%d\r\n%d\r\n", len(fmt.Sprint(i)), i) {
				t.Fatalf("round %d: GET k%d after parking = %q", round, i, got)
			}
			// A pipeline after parking keeps its order.
			for j := range 5 {
				c.Send("INCR", fmt.Sprint("n", i, "-", round, "-", j))
			}
			c.Send("PING")
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				if r, err := c.Read(); err != nil || string(r.Raw()) != ":1\r\n" {
					t.Fatalf("pipelined INCR after parking = %q, %v", r.Raw(), err)
				}
			}
			if r, err := c.Read(); err != nil || string(r.Raw()) != "+PONG\r\n" {
				t.Fatalf("pipelined PING after parking = %q, %v", r.Raw(), err)
			}
		}
		waitFor(t, "the clients to park again", func() bool { return parkedNow(tp.srv) == n })
	}
	// A command that arrives in pieces, with a park in between: the
	// unfinished request keeps its client awake.
	c := conns[0]
	if err := c.WriteRaw([]byte("*3\r\n$3\r\nSET\r\n$5\r\nsplit")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // several park delays
	if err := c.WriteRaw([]byte("\r\n$2\r\nok\r\n")); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Read(); err != nil || string(r.Raw()) != "+OK\r\n" {
		t.Fatalf("SET sent in two parts around a pause = %q, %v", r.Raw(), err)
	}
	if got := do(t, c, "GET", "split"); got != "$2\r\nok\r\n" {
		t.Fatalf("GET split = %q", got)
	}
	// Parked clients hold no goroutine: the count did not grow with the
	// rounds above.
	waitFor(t, "the clients to park again", func() bool { return parkedNow(tp.srv) == n })
	if now := runtime.NumGoroutine(); now > goroutines+5 {
		t.Fatalf("goroutines: %d with %d parked clients, %d before the rounds", now, n, goroutines)
	}
}

// Every way a client ends reaches a parked one: the client hanging up,
// CLIENT KILL, and shutdown, which must not wait for its deadline.
func TestParkedClientsEnd(t *testing.T) {
	shortParkAfter(t, 50*time.Millisecond)
	tp := startProxy(t, 1, "")
	hangUp, killed, admin := tp.client(t), tp.client(t), tp.client(t)
	do(t, hangUp, "PING")
	do(t, killed, "CLIENT", "SETNAME", "victim")
	waitFor(t, "the clients to park", func() bool { return parkedNow(tp.srv) == 3 })

	hangUp.Close()
	waitFor(t, "the hung-up client to go", func() bool { return tp.srv.clientCount() == 2 })

	do(t, admin, "PING") // wakes admin; killed stays parked
	if got := do(t, admin, "CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal"); got != ":1\r\n" {
		t.Fatalf("CLIENT KILL = %q, want one client killed", got)
	}
	killed.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := killed.NetConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on a killed parked client: %v, want EOF", err)
	}
	waitFor(t, "the killed client to go", func() bool { return tp.srv.clientCount() == 1 })

	waitFor(t, "admin to park", func() bool { return parkedNow(tp.srv) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a parked client: %v", err)
	}
	if n := tp.srv.clientCount(); n != 0 {
		t.Fatalf("%d clients left after Shutdown", n)
	}
}

// client_timeout closes a client that sent nothing for that long, parked
// or not, and counts it; a client that keeps talking, a subscribed one and
// one blocked in BLPOP stay.
func TestClientTimeout(t *testing.T) {
	shortParkAfter(t, 50*time.Millisecond)
	tp := startProxy(t, 1, "  client_timeout: 1500\n")
	idle := tp.client(t)
	do(t, idle, "PING")
	busy := tp.client(t)
	sub := tp.client(t)
	do(t, sub, "SUBSCRIBE", "news")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocked := redis.NewClient(&redis.Options{Addr: tp.addr, ReadTimeout: -1, PoolSize: 1})
	defer blocked.Close()
	blockedDone := make(chan error, 1)
	go func() { blockedDone <- blocked.BLPop(ctx, 3*time.Second, "queue").Err() }()

	start := time.Now()
	for time.Since(start) < 3500*time.Millisecond {
		if got := do(t, busy, "PING"); got != "+PONG\r\n" {
			t.Fatalf("a busy client's PING = %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.NetConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on an idle client past client_timeout: %v, want EOF", err)
	}
	if got := do(t, sub, "PING"); got != "*2\r\n$4\r\npong\r\n$0\r\n\r\n" {
		t.Fatalf("subscribed client's PING after client_timeout = %q", got)
	}
	if err := <-blockedDone; err != redis.Nil {
		t.Fatalf("BLPOP of 3 s with client_timeout 1.5 s: %v, want a nil reply", err)
	}
	var snap stats.Snapshot
	tp.srv.Snapshot(&snap)
	if got := snap.Pools[0].Values[stats.ClientIdleTimeouts]; got != 1 {
		t.Fatalf("client_idle_timeouts = %d, want 1 (only the idle client)", got)
	}
	if got := do(t, busy, "PING"); got != "+PONG\r\n" {
		t.Fatalf("the busy client's PING at the end = %q", got)
	}

	// A parked client is closed by the sweeper, with no goroutine of its
	// own to see a deadline.
	busy.Close()
	blocked.Close()
	sub.Close()
	waitFor(t, "the other clients to leave", func() bool { return tp.srv.clientCount() == 0 })
	parked := tp.client(t)
	do(t, parked, "PING")
	waitFor(t, "a parked client", func() bool { return parkedNow(tp.srv) >= 1 })
	parked.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := parked.NetConn().Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on a parked client past client_timeout: %v, want EOF", err)
	}
	tp.srv.Snapshot(&snap)
	if got := snap.Pools[0].Values[stats.ClientIdleTimeouts]; got != 2 {
		t.Fatalf("client_idle_timeouts = %d, want 2", got)
	}
}

// A TLS client cannot park (crypto/tls buffers what it has read, which
// the lot cannot see), but client_timeout still closes it, and it is
// served while it talks.
func TestClientTimeoutTLS(t *testing.T) {
	shortParkAfter(t, 50*time.Millisecond)
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, t.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, tlsListenerKeys(files, "")+"  client_timeout: 500\n", r.Addr+":1 server0")
	conn, err := dialTLS(t, tp.addr, ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for range 3 {
		conn.Write([]byte("PING\r\n"))
		if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
			t.Fatalf("PING over TLS = %q, %v", buf[:n], err)
		}
		time.Sleep(200 * time.Millisecond) // past the park delay, within the timeout
	}
	if n := parkedNow(tp.srv); n != 0 {
		t.Fatalf("parked = %d with only a TLS client", n)
	}
	if _, err := conn.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read on an idle TLS client past client_timeout: %v, want EOF", err)
	}
}

// A client whose socket the lot refuses keeps its session and is served on
// its goroutine as before, once and for all.
func TestParkRefused(t *testing.T) {
	shortParkAfter(t, 50*time.Millisecond)
	var parks atomic.Int32
	refuse := func(fd int, w rawsock.Waker) error {
		if parks.Add(1) == 1 {
			return lot().Park(fd, w) // the accept's
		}
		return errors.New("refused for the test")
	}
	testHookPark.Store(&refuse)
	t.Cleanup(func() { testHookPark.Store(nil) })
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	for i := range 3 {
		if got := do(t, c, "SET", "k", fmt.Sprint(i)); got != "+OK\r\n" {
			t.Fatalf("SET after a refused park = %q", got)
		}
		time.Sleep(150 * time.Millisecond) // past the park delay
	}
	if got := do(t, c, "GET", "k"); got != "$1\r\n2\r\n" {
		t.Fatalf("GET after refused parks = %q", got)
	}
	if n := parkedNow(tp.srv); n != 0 {
		t.Fatalf("parked = %d with a lot that refuses", n)
	}
	if n := parks.Load(); n != 2 {
		t.Fatalf("%d parks tried, want 2: the accept's, and one refused that is not tried again", n)
	}
}
