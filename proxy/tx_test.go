package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// txStep is one command of a scripted session and the reply it must get:
// exactly want or, with prefix, a reply that starts with want.
type txStep struct {
	args   []string
	want   string
	prefix bool
}

func step(want string, args ...string) txStep { return txStep{args: args, want: want} }

func stepPrefix(want string, args ...string) txStep {
	return txStep{args: args, want: want, prefix: true}
}

func runSteps(t *testing.T, c *proxytest.Conn, steps ...txStep) {
	t.Helper()
	for _, s := range steps {
		got := do(t, c, s.args...)
		if got != s.want && !(s.prefix && strings.HasPrefix(got, s.want)) {
			t.Fatalf("%v = %q, want %q", s.args, got, s.want)
		}
	}
}

// busyScript keeps its server busy for ARGV[1] microseconds.
const busyScript = `local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= stop
return 1`

// busyFor is an EVAL of busyScript on key's server for d.
func busyFor(key string, d time.Duration) []string {
	return []string{"EVAL", busyScript, "1", key, fmt.Sprint(d.Microseconds())}
}

// serverError is the start of the error reply for server i of tp.
func (tp *testPool) serverError(i int) string {
	return fmt.Sprintf("-ERR server server%d (%s): ", i, tp.redises[i].Addr)
}

// idleTxConns is how many dedicated connections server i keeps for reuse.
func (tp *testPool) idleTxConns(i int) int {
	return tp.srv.poolList()[0].servers[i].up.IdleDedicated()
}

const txPool = "  hash_tag: \"{}\"\n"

// An EXEC that times out ends the transaction: the client is out of MULTI
// and its next commands run instead of being queued.
func TestTxExecTimeoutEndsTransaction(t *testing.T) {
	tp := startProxy(t, 1, txPool+"  timeout: 300\n")
	c := tp.client(t)
	runSteps(t, c,
		step("+OK\r\n", "SET", "{tt}a", "before"),
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{tt}a", "intx"),
		step("+QUEUED\r\n", busyFor("{tt}a", time.Second)...),
		stepPrefix(tp.serverError(0)+"timed out", "EXEC"),
		step("+PONG\r\n", "PING"),
	)
	do(t, tp.redises[0].Client(t), "PING") // returns once the script is done
	runSteps(t, c,
		step("$4\r\nintx\r\n", "GET", "{tt}a"),
		step("+OK\r\n", "SET", "{tt}a", "after"),
		step("-ERR EXEC without MULTI\r\n", "EXEC"),
		step("-ERR DISCARD without MULTI\r\n", "DISCARD"),
	)
	if n := tp.idleTxConns(0); n != 0 {
		t.Fatalf("%d idle transaction connections after a timed out EXEC, want 0 (its state is unknown)", n)
	}
}

// An EXEC or DISCARD whose server died ends the transaction with an error
// naming the server; transactions work again once it is back.
func TestTxServerKilledBeforeExecEndsTransaction(t *testing.T) {
	for _, end := range []string{"EXEC", "DISCARD"} {
		t.Run(end, func(t *testing.T) {
			tp := startProxy(t, 1, txPool)
			c := tp.client(t)
			runSteps(t, c,
				step("+OK\r\n", "MULTI"),
				step("+QUEUED\r\n", "SET", "{tt}a", "x"),
			)
			tp.redises[0].Kill()
			runSteps(t, c,
				stepPrefix(tp.serverError(0), end),
				step("+PONG\r\n", "PING"),
				step("-ERR EXEC without MULTI\r\n", "EXEC"),
			)
			tp.redises[0].Restart(t)
			runSteps(t, c,
				step("+OK\r\n", "MULTI"),
				step("+QUEUED\r\n", "SET", "{tt}a", "y"),
				step("*1\r\n+OK\r\n", "EXEC"),
				step("$1\r\ny\r\n", "GET", "{tt}a"),
			)
		})
	}
}

// A keyless transaction whose server is down fails at EXEC and ends there.
func TestTxKeylessTransactionServerDown(t *testing.T) {
	tp := startProxy(t, 1, txPool)
	c := tp.client(t)
	tp.redises[0].Kill()
	runSteps(t, c,
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "PING"),
		stepPrefix(tp.serverError(0), "EXEC"),
		step("+PONG\r\n", "PING"),
		step("-ERR EXEC without MULTI\r\n", "EXEC"),

		// The keyless commands go to the server with the first key.
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "PING"),
		stepPrefix(tp.serverError(0), "SET", "{tt}a", "1"),
		step("-"+msgExecAbort+"\r\n", "EXEC"),
		step("+PONG\r\n", "PING"),
	)
}

// A command that cannot be queued because its server failed keeps the
// client in MULTI with the transaction aborted, as Redis does for a command
// it refuses to queue.
func TestTxQueuedCommandFailureAbortsExec(t *testing.T) {
	tp := startProxy(t, 1, txPool)
	c := tp.client(t)
	runSteps(t, c,
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{tt}a", "1"),
	)
	tp.redises[0].Kill()
	runSteps(t, c,
		stepPrefix(tp.serverError(0), "SET", "{tt}a", "2"),
		step("+QUEUED\r\n", "PING"),
		step("+QUEUED\r\n", "GET", "{tt}a"),
		step("-"+msgExecAbort+"\r\n", "EXEC"),
		step("+PONG\r\n", "PING"),
		step("+OK\r\n", "MULTI"),
		stepPrefix(tp.serverError(0), "SET", "{tt}a", "3"),
		step("-"+msgExecAbort+"\r\n", "EXEC"),
		step("+PONG\r\n", "PING"),
	)
}

// A WATCH whose connection died is lost: the next MULTI ... EXEC answers
// EXEC with a null reply, as for a watched key that was touched, and runs
// nothing.
func TestTxLostWatchFailsExec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{{"killed", false}, {"restarted", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tp := startProxy(t, 1, txPool)
			r := tp.redises[0]
			c := tp.client(t)
			runSteps(t, c, step("+OK\r\n", "WATCH", "{tt}a"))
			if tc.restart {
				r.Restart(t)
			} else {
				r.Kill()
			}
			runSteps(t, c,
				step("+OK\r\n", "MULTI"),
				step("+QUEUED\r\n", "SET", "{tt}a", "unwatched"),
				step("*-1\r\n", "EXEC"),
				step("+PONG\r\n", "PING"),
				step("-ERR EXEC without MULTI\r\n", "EXEC"),
			)
			if !tc.restart {
				r.Restart(t)
			}
			runSteps(t, c,
				step("$-1\r\n", "GET", "{tt}a"),
				step("+OK\r\n", "WATCH", "{tt}a"),
				step("+OK\r\n", "MULTI"),
				step("+QUEUED\r\n", "SET", "{tt}a", "watched"),
				step("*1\r\n+OK\r\n", "EXEC"),
			)
		})
	}
}

// A WATCH that fails on the connection of an earlier WATCH loses that one
// too; UNWATCH forgets a lost watch.
func TestTxLostWatchAndUnwatch(t *testing.T) {
	tp := startProxy(t, 1, txPool)
	r := tp.redises[0]
	c := tp.client(t)
	runSteps(t, c, step("+OK\r\n", "WATCH", "{tt}a"))
	r.Restart(t)
	runSteps(t, c,
		stepPrefix(tp.serverError(0), "WATCH", "{tt}b"),
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{tt}a", "x"),
		step("*-1\r\n", "EXEC"),
		step("$-1\r\n", "GET", "{tt}a"),

		step("+OK\r\n", "WATCH", "{tt}a"),
	)
	r.Restart(t)
	runSteps(t, c,
		step("+OK\r\n", "UNWATCH"),
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{tt}a", "y"),
		step("*1\r\n+OK\r\n", "EXEC"),
		step("$1\r\ny\r\n", "GET", "{tt}a"),
	)
	// A DISCARD forgets the lost watch too, as it does a held one.
	runSteps(t, c, step("+OK\r\n", "WATCH", "{tt}a"))
	r.Restart(t)
	runSteps(t, c,
		step("+OK\r\n", "MULTI"),
		step("+OK\r\n", "DISCARD"),
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{tt}a", "z"),
		step("*1\r\n+OK\r\n", "EXEC"),
	)
	// A WATCH that got an error was never held: nothing is lost.
	r.Kill()
	runSteps(t, c, stepPrefix(tp.serverError(0), "WATCH", "{tt}a"))
	r.Restart(t)
	runSteps(t, c,
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{tt}a", "after"),
		step("*1\r\n+OK\r\n", "EXEC"),
	)
}

// go-redis keeps using a pooled connection whose transaction failed: its
// next TxPipelined must not meet "MULTI calls can not be nested".
func TestTxGoRedisAfterFailedExec(t *testing.T) {
	tp := startProxy(t, 1, txPool+"  timeout: 300\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	busy := busyFor("{tt}a", time.Second)
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{tt}a", "intx", 0)
		p.Eval(ctx, busy[1], busy[3:4], busy[4])
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "server0") || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("TxPipelined with a busy server: err = %v, want the timeout naming server0", err)
	}
	do(t, tp.redises[0].Client(t), "PING") // returns once the script is done
	if v, err := rdb.Get(ctx, "{tt}a").Result(); err != nil || v != "intx" {
		t.Fatalf("GET after the failed transaction = %q, %v; want \"intx\"", v, err)
	}
	var get *redis.StringCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{tt}a", "after", 0)
		get = p.Get(ctx, "{tt}a")
		return nil
	}); err != nil || get.Val() != "after" {
		t.Fatalf("next TxPipelined: %v, GET = %q", err, get.Val())
	}
}

// go-redis' Watch whose WATCH was lost on the way gets TxFailedErr, the
// answer to a touched key, and retries on the same client.
func TestTxGoRedisLostWatch(t *testing.T) {
	tp := startProxy(t, 1, txPool)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	set := func(value string, restart bool) error {
		return rdb.Watch(ctx, func(tx *redis.Tx) error {
			if restart {
				tp.redises[0].Restart(t)
			}
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "{tt}a", value, 0)
				return nil
			})
			return err
		}, "{tt}a")
	}
	if err := set("unwatched", true); !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("Watch whose server restarted: err = %v, want %v", err, redis.TxFailedErr)
	}
	if err := set("watched", false); err != nil {
		t.Fatalf("next Watch: %v", err)
	}
	if v, err := rdb.Get(ctx, "{tt}a").Result(); err != nil || v != "watched" {
		t.Fatalf("GET = %q, %v; want \"watched\"", v, err)
	}
}

// redis-py (Debian's python3-redis) returns its pooled connection after a
// failed transaction; plain commands on it must run, not be queued.
func TestTxRedisPyAfterFailedExec(t *testing.T) {
	tp := startProxy(t, 1, txPool+"  timeout: 300\n")
	host, port, _ := strings.Cut(tp.addr, ":")
	script := fmt.Sprintf(`
import redis
r = redis.Redis(host=%q, port=%s)
direct = redis.Redis(host=%q, port=%d)
p = r.pipeline()
p.set("{tt}a", "intx")
p.eval(%q, 1, "{tt}a", 1000000)
try:
    p.execute()
    raise SystemExit("EXEC with a busy server did not fail")
except redis.ResponseError as e:
    assert "server0" in str(e) and "timed out" in str(e), e
direct.ping()  # returns once the script is done
assert r.ping() is True
got = r.get("{tt}a")
assert got == b"intx", got
p = r.pipeline()
p.set("{tt}a", "after").get("{tt}a")
got = p.execute()
assert got == [True, b"after"], got
print("ok")
`, host, port, "127.0.0.1", tp.redises[0].Port, busyScript)
	out, err := exec.Command("/usr/bin/python3", "-c", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("redis-py (Debian python3-redis) after a failed transaction: %v\n%s", err, out)
	}
}

// txClients runs n proxy clients that each do WATCH, MULTI, INCR, EXEC on
// key at the same time, so that the server keeps n idle transaction
// connections afterwards.
func txClients(t *testing.T, tp *testPool, n int, key string) []*proxytest.Conn {
	t.Helper()
	clients := make([]*proxytest.Conn, n)
	for i := range clients {
		clients[i] = tp.client(t)
	}
	var watched, wg sync.WaitGroup
	watched.Add(n)
	errs := make(chan error, n)
	for _, c := range clients {
		wg.Add(1)
		go func(c *proxytest.Conn) {
			defer wg.Done()
			r, err := c.Do("WATCH", key)
			watched.Done()
			if err != nil || string(r.Raw()) != "+OK\r\n" {
				errs <- fmt.Errorf("WATCH = %q, %v", r.Raw(), err)
				return
			}
			watched.Wait() // every client holds a transaction connection now
			c.Send("MULTI")
			c.Send("INCR", key)
			c.Send("EXEC")
			for _, want := range []string{"+OK\r\n", "+QUEUED\r\n", ""} {
				r, err := c.Read()
				if err != nil || want != "" && string(r.Raw()) != want || want == "" && r.IsError() {
					errs <- fmt.Errorf("transaction reply %q, %v", r.Raw(), err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := tp.idleTxConns(0); got != n {
		t.Fatalf("%d idle transaction connections after %d concurrent transactions, want %d", got, n, n)
	}
	return clients
}

// txRounds runs rounds transactions one after another over clients; every
// one must commit. They take turns at the three ways a transaction picks
// its connection: at WATCH, at the first key in MULTI, and at EXEC for
// keyless commands.
func txRounds(t *testing.T, clients []*proxytest.Conn, rounds int, key string) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		c := clients[i%len(clients)]
		var script [][]string
		var want []string
		switch i % 3 {
		case 0:
			script = [][]string{{"WATCH", key}, {"MULTI"}, {"INCR", key}, {"EXEC"}}
			want = []string{"+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n:"}
		case 1:
			script = [][]string{{"MULTI"}, {"INCR", key}, {"EXEC"}}
			want = []string{"+OK\r\n", "+QUEUED\r\n", "*1\r\n:"}
		default:
			script = [][]string{{"MULTI"}, {"PING"}, {"EXEC"}}
			want = []string{"+OK\r\n", "+QUEUED\r\n", "*1\r\n+PONG\r\n"}
		}
		for _, args := range script {
			c.Send(args...)
		}
		var got []string
		ok := true
		for j := range script {
			r, err := c.Read()
			if err != nil {
				t.Fatalf("transaction %d: %v", i, err)
			}
			got = append(got, string(r.Raw()))
			ok = ok && strings.HasPrefix(got[j], want[j])
		}
		if !ok {
			t.Fatalf("transaction %d of %d: %v: replies %q, want it to commit", i+1, rounds, script, got)
		}
	}
}

// Idle transaction connections that the server closed (a restart, its
// timeout setting) are not handed to a client: transactions succeed at
// once. Without the check before reuse, the first request on such a
// connection finds it closed and is sent again on a new one.
func TestTxIdleConnectionsGoneStale(t *testing.T) {
	for _, tc := range []struct {
		name      string
		timeout   bool // the server's timeout closes them, instead of a restart
		withCheck bool
	}{
		{"restart", false, true},
		{"server timeout", true, true},
		{"restart, redial only", false, false},
		{"server timeout, redial only", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.withCheck {
				saved := backend.TestHookIdleConnClosed
				backend.TestHookIdleConnClosed = func(net.Conn) bool { return false }
				t.Cleanup(func() { backend.TestHookIdleConnClosed = saved })
			}
			tp := startProxy(t, 1, txPool)
			r := tp.redises[0]
			clients := txClients(t, tp, backend.MaxIdleDedicated, "{txr}a")
			if tc.timeout {
				do(t, r.Client(t), "CONFIG", "SET", "timeout", "1")
				waitConnectedClients(t, r, 1) // every proxy connection closed as idle
			} else {
				r.Restart(t)
				deadline := time.Now().Add(10 * time.Second)
				for do(t, clients[0], "GET", "{txr}a") != "$-1\r\n" {
					if time.Now().After(deadline) {
						t.Fatal("plain GET does not work after the restart")
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			txRounds(t, clients, 10, "{txr}a")
		})
	}
}

// waitConnectedClients waits until r counts n clients, the one asking
// included.
func waitConnectedClients(t *testing.T, r *proxytest.Redis, n int) {
	t.Helper()
	want := fmt.Sprintf("connected_clients:%d\r\n", n)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := r.Client(t)
		info := do(t, c, "INFO", "clients")
		c.Close()
		if strings.Contains(info, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis %s: %q, want %s", r.Addr, info, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SELECT of the pool's own database is queued in MULTI, as redis-server
// queues it; another database is still refused and aborts EXEC.
func TestTxSelectInMulti(t *testing.T) {
	tp := startProxy(t, 2, txPool+"  redis_db: 2\n")
	c := tp.client(t)
	runSteps(t, c,
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SELECT", "2"),
		step("+QUEUED\r\n", "SET", "{s}a", "1"),
		step("+QUEUED\r\n", "SELECT", "2"),
		step("*3\r\n+OK\r\n+OK\r\n+OK\r\n", "EXEC"),

		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SELECT", "2"),
		step("*1\r\n+OK\r\n", "EXEC"),

		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{s}a", "2"),
		step("-ERR DB index is out of range: this pool serves only db 2 (redis_db)\r\n", "SELECT", "0"),
		step("-"+msgExecAbort+"\r\n", "EXEC"),
		step("$1\r\n1\r\n", "GET", "{s}a"),
	)
	// The same session on redis-server itself.
	single := proxytest.StartRedis(t).Client(t)
	runSteps(t, single,
		step("+OK\r\n", "SELECT", "2"),
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SELECT", "2"),
		step("+QUEUED\r\n", "SET", "{s}a", "1"),
		step("+QUEUED\r\n", "SELECT", "2"),
		step("*3\r\n+OK\r\n+OK\r\n+OK\r\n", "EXEC"),
	)
}

// go-redis' Watch and TxPipelined, with default options, commit at once
// after the server restarted under the proxy's idle transaction
// connections.
func TestTxGoRedisAfterServerRestart(t *testing.T) {
	tp := startProxy(t, 1, txPool)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	incr := func() error {
		return rdb.Watch(ctx, func(tx *redis.Tx) error {
			n, err := tx.Get(ctx, "{txr}a").Int()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "{txr}a", n+1, 0)
				return nil
			})
			return err
		}, "{txr}a")
	}
	// Eight transactions at once leave eight idle transaction connections.
	var wg sync.WaitGroup
	errs := make(chan error, backend.MaxIdleDedicated)
	for range backend.MaxIdleDedicated {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := incr(); err != nil && !errors.Is(err, redis.TxFailedErr) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("transaction before the restart: %v", err)
	}
	if got := tp.idleTxConns(0); got == 0 {
		t.Fatal("no idle transaction connection before the restart")
	}
	tp.redises[0].Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(ctx).Err() != nil || rdb.Get(ctx, "{txr}a").Err() != redis.Nil {
		if time.Now().After(deadline) {
			t.Fatal("plain GET does not work after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		if err := incr(); err != nil {
			t.Fatalf("transaction %d of 10 after the restart: %v", i+1, err)
		}
	}
	if v, err := rdb.Get(ctx, "{txr}a").Int(); err != nil || v != 10 {
		t.Fatalf("GET after 10 transactions = %d, %v; want 10", v, err)
	}
}
