package proxy

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

const (
	getScript  = "return redis.call('get', KEYS[1])"
	incrScript = "return redis.call('incrby', KEYS[1], ARGV[1])"
	// testLibrary is a FUNCTION library with a writing and a read-only function.
	testLibrary = "#!lua name=proxylib\n" +
		"redis.register_function('hello', function(keys, args) return 'hi' end)\n" +
		"redis.register_function{function_name='ro', callback=function(keys, args) return 'ro' end, flags={'no-writes'}}\n"
)

// pipeline sends every command at once and returns the replies in order.
func pipeline(t *testing.T, c *proxytest.Conn, cmds [][]string) []string {
	t.Helper()
	for _, cmd := range cmds {
		if err := c.Send(cmd...); err != nil {
			t.Fatalf("send %v: %v", cmd, err)
		}
	}
	replies := make([]string, len(cmds))
	for i, cmd := range cmds {
		r, err := c.Read()
		if err != nil {
			t.Fatalf("reply %d (%v): %v", i, cmd, err)
		}
		replies[i] = string(r.Raw())
	}
	return replies
}

// bulk is a bulk string reply.
func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

// SCRIPT LOAD reaches every server, so EVALSHA works on the keys of each.
func TestProxyScriptLoadReachesEveryServer(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	sha := do(t, proxytest.StartRedis(t).Client(t), "SCRIPT", "LOAD", getScript)
	if got := do(t, c, "SCRIPT", "LOAD", getScript); got != sha {
		t.Fatalf("SCRIPT LOAD = %q, one redis says %q", got, sha)
	}
	digest := strings.TrimSpace(sha[strings.IndexByte(sha, '\n')+1:])
	for i, r := range tp.redises {
		if got := do(t, r.Client(t), "SCRIPT", "EXISTS", digest); got != "*1\r\n:1\r\n" {
			t.Errorf("server%d: SCRIPT EXISTS = %q, want the script loaded", i, got)
		}
		key := tp.keyOn(t, r, "sl")
		do(t, c, "SET", key, "v"+key)
		if got := do(t, c, "EVALSHA", digest, "1", key); got != bulk("v"+key) {
			t.Errorf("EVALSHA on %s (server%d) = %q, want %q", key, i, got, bulk("v"+key))
		}
	}
}

// A script is reported as existing only when every server has it.
func TestProxyScriptExistsNeedsEveryServer(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	onOne := strings.TrimSpace(strings.SplitN(do(t, tp.redises[1].Client(t), "SCRIPT", "LOAD", "return 1"), "\n", 2)[1])
	everywhere := strings.TrimSpace(strings.SplitN(do(t, c, "SCRIPT", "LOAD", "return 2"), "\n", 2)[1])
	missing := strings.Repeat("0", 40)
	want := "*3\r\n:0\r\n:1\r\n:0\r\n"
	if got := do(t, c, "SCRIPT", "EXISTS", onOne, everywhere, missing); got != want {
		t.Fatalf("SCRIPT EXISTS (on one server, on all, on none) = %q, want %q", got, want)
	}
	if got := do(t, c, "script", "exists", everywhere); got != "*1\r\n:1\r\n" {
		t.Fatalf("script exists (lower case) = %q", got)
	}
}

// SCRIPT FLUSH empties every server's script cache.
func TestProxyScriptFlushEveryServer(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	single := proxytest.StartRedis(t).Client(t)
	sha := strings.TrimSpace(strings.SplitN(do(t, c, "SCRIPT", "LOAD", getScript), "\n", 2)[1])
	for _, args := range [][]string{{"SCRIPT", "FLUSH"}, {"SCRIPT", "FLUSH", "ASYNC"}, {"SCRIPT", "FLUSH", "SYNC"}, {"SCRIPT", "FLUSH", "bogus"}} {
		want := do(t, single, args...)
		if got := do(t, c, args...); got != want {
			t.Errorf("%v = %q, one redis says %q", args, got, want)
		}
	}
	for i, r := range tp.redises {
		if got := do(t, r.Client(t), "SCRIPT", "EXISTS", sha); got != "*1\r\n:0\r\n" {
			t.Errorf("server%d after SCRIPT FLUSH: SCRIPT EXISTS = %q, want 0", i, got)
		}
	}
}

// Scripts and functions without keys run on the server that owns the key
// "placeholder".
func TestProxyScriptsWithoutKeys(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	chosen := tp.owner(t, "placeholder")
	direct := chosen.Client(t)
	sha := strings.TrimSpace(strings.SplitN(do(t, direct, "SCRIPT", "LOAD", "return 'loaded'"), "\n", 2)[1])
	if got := do(t, direct, "FUNCTION", "LOAD", testLibrary); got != bulk("proxylib") {
		t.Fatalf("FUNCTION LOAD on the chosen server = %q", got)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"EVAL", "return 1", "0"}, ":1\r\n"},
		{[]string{"EVAL", "return ARGV[1]", "0", "x"}, bulk("x")},
		{[]string{"EVAL", "return redis.call('set', ARGV[1], 'here')", "0", "keyless-marker"}, "+OK\r\n"},
		{[]string{"EVAL_RO", "return 2", "0"}, ":2\r\n"},
		{[]string{"EVALSHA", sha, "0"}, bulk("loaded")},
		{[]string{"evalsha_ro", sha, "0"}, bulk("loaded")},
		{[]string{"FCALL", "hello", "0"}, bulk("hi")},
		{[]string{"FCALL_RO", "ro", "0", "arg"}, bulk("ro")},
		{[]string{"EVAL", "return 1", "5", "k"}, "-" + msgBadNumKeys + "\r\n"},
	}
	for _, tc := range tests {
		if got := do(t, c, tc.args...); got != tc.want {
			t.Errorf("%v = %q, want %q", tc.args, got, tc.want)
		}
	}
	if got := do(t, direct, "GET", "keyless-marker"); got != bulk("here") {
		t.Errorf("keyless EVAL's write on the owner of \"placeholder\": GET = %q", got)
	}
}

// SCRIPT and FUNCTION subcommands: fanned out, answered by one server, or
// refused with Redis' wording where Redis has one.
func TestProxyScriptSubcommands(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	single := proxytest.StartRedis(t).Client(t)
	sameAsRedis := [][]string{
		{"SCRIPT"},
		{"SCRIPT", "FoO"},
		{"SCRIPT", "LOAD"},
		{"SCRIPT", "LOAD", "a", "b"},
		{"SCRIPT", "LOAD", "syntax error here"},
		{"SCRIPT", "EXISTS"},
		{"SCRIPT", "HELP"},
		{"FUNCTION", "nosuch"},
		{"FUNCTION", "HELP"},
		{"FUNCTION", "LOAD", testLibrary},
		{"FUNCTION", "LOAD", testLibrary},
		{"FUNCTION", "LOAD", "REPLACE", testLibrary},
		{"FUNCTION", "DELETE", "proxylib"},
		{"FUNCTION", "DELETE", "proxylib"},
		{"FUNCTION", "LOAD", testLibrary},
		{"FUNCTION", "FLUSH"},
		{"FUNCTION", "FLUSH", "ASYNC"},
	}
	for _, args := range sameAsRedis {
		want := do(t, single, args...)
		if got := do(t, c, args...); got != want {
			t.Errorf("%q = %q, one redis says %q", args, got, want)
		}
	}
	for _, args := range [][]string{{"SCRIPT", "KILL"}, {"SCRIPT", "DEBUG", "YES"}, {"FUNCTION", "KILL"}, {"FUNCTION", "LIST"}, {"FUNCTION", "DUMP"}, {"FUNCTION", "STATS"}} {
		want := "-ERR unsupported command '" + strings.ToLower(args[0]+"|"+args[1]) + "' in shardproxy: "
		if got := do(t, c, args...); !strings.HasPrefix(got, want) {
			t.Errorf("%v = %q, want prefix %q", args, got, want)
		}
	}
	// FUNCTION RESTORE, which redis-server sends to every shard, restores
	// a dump on every server.
	direct := tp.redises[0].Client(t)
	do(t, direct, "FUNCTION", "LOAD", testLibrary)
	dump := do(t, direct, "FUNCTION", "DUMP")
	do(t, c, "FUNCTION", "FLUSH")
	payload := dump[strings.Index(dump, "\r\n")+2 : len(dump)-2]
	if got := do(t, c, "FUNCTION", "RESTORE", payload); got != "+OK\r\n" {
		t.Fatalf("FUNCTION RESTORE = %q, want +OK", got)
	}
	for i, r := range tp.redises {
		key := tp.keyOn(t, r, "fr")
		if got := do(t, c, "FCALL", "hello", "1", key); got != bulk("hi") {
			t.Errorf("FCALL hello on %s (server%d) after FUNCTION RESTORE = %q", key, i, got)
		}
	}
	do(t, c, "FUNCTION", "FLUSH")
	// A function loaded through the proxy is on every server.
	do(t, c, "FUNCTION", "LOAD", testLibrary)
	for i, r := range tp.redises {
		key := tp.keyOn(t, r, "fn")
		if got := do(t, c, "FCALL", "hello", "1", key); got != bulk("hi") {
			t.Errorf("FCALL hello on %s (server%d) = %q", key, i, got)
		}
	}
	if got := do(t, c, "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after the subcommands = %q", got)
	}
}

// A pipeline mixing fan-out commands, scripts and plain commands gets its
// replies in order, as one Redis server gives them.
func TestProxyFanOutPipelineKeepsOrder(t *testing.T) {
	tp := startProxy(t, 3, "")
	single := proxytest.StartRedis(t).Client(t)
	keys := []string{tp.keyOn(t, tp.redises[0], "po"), tp.keyOn(t, tp.redises[1], "po"), tp.keyOn(t, tp.redises[2], "po")}
	sha := strings.TrimSpace(strings.SplitN(do(t, single, "SCRIPT", "LOAD", incrScript), "\n", 2)[1])
	do(t, single, "SCRIPT", "FLUSH")
	var cmds [][]string
	for round := 0; round < 3; round++ {
		for _, k := range keys {
			cmds = append(cmds,
				[]string{"EVALSHA", sha, "1", k, "1"},
				[]string{"SCRIPT", "LOAD", incrScript},
				[]string{"EVALSHA", sha, "1", k, "2"},
				[]string{"SCRIPT", "EXISTS", sha, "ffffffffffffffffffffffffffffffffffffffff", sha},
				[]string{"GET", k},
				[]string{"EVAL", "return ARGV[1]", "0", k},
				[]string{"MGET", keys[0], keys[1], keys[2]},
				[]string{"SCRIPT", "FLUSH"},
				[]string{"PING"},
			)
		}
	}
	want := pipeline(t, single, cmds)
	got := pipeline(t, tp.client(t), cmds)
	for i := range cmds {
		if got[i] != want[i] {
			t.Errorf("reply %d to %v = %q, one redis says %q", i, cmds[i], got[i], want[i])
		}
	}
}

// A server that is down fails a fan-out command with an error naming it
// (the first such server in the pool's order); keys elsewhere still work.
func TestProxyFanOutServerDown(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	live := tp.keyOn(t, tp.redises[1], "d")
	tp.redises[2].Stop()
	tp.redises[0].Stop()
	wantErr := "-ERR server server0 (" + tp.redises[0].Addr + "): "
	got := pipeline(t, c, [][]string{
		{"SCRIPT", "LOAD", getScript},
		{"SET", live, "1"},
		{"SCRIPT", "EXISTS", "ffffffffffffffffffffffffffffffffffffffff"},
		{"SCRIPT", "FLUSH"},
		{"GET", live},
	})
	for _, i := range []int{0, 2, 3} {
		if !strings.HasPrefix(got[i], wantErr) {
			t.Errorf("reply %d = %q, want prefix %q", i, got[i], wantErr)
		}
	}
	if got[1] != "+OK\r\n" || got[4] != bulk("1") {
		t.Errorf("commands on a live server: %q, %q", got[1], got[4])
	}
}

// An ejected server is out of the ring: fan-out commands go to the servers
// its keys moved to, so scripts keep working while it is away.
func TestProxyFanOutSkipsEjectedServer(t *testing.T) {
	tp := startProxy(t, 3, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 60000\n")
	c := tp.client(t)
	dead := tp.redises[0]
	key := tp.keyOn(t, dead, "ej")
	dead.Stop()
	if got := do(t, c, "SET", key, "1"); !strings.HasPrefix(got, "-ERR server server0") {
		t.Fatalf("SET on a stopped server = %q, want an error naming it", got)
	}
	sha := do(t, proxytest.StartRedis(t).Client(t), "SCRIPT", "LOAD", getScript)
	if got := do(t, c, "SCRIPT", "LOAD", getScript); got != sha {
		t.Fatalf("SCRIPT LOAD with server0 ejected = %q, want %q", got, sha)
	}
	digest := strings.TrimSpace(sha[strings.IndexByte(sha, '\n')+1:])
	do(t, c, "SET", key, "moved")
	if got := do(t, c, "EVALSHA", digest, "1", key); got != bulk("moved") {
		t.Fatalf("EVALSHA on a key of the ejected server = %q", got)
	}
	if got := do(t, c, "SCRIPT", "EXISTS", digest); got != "*1\r\n:1\r\n" {
		t.Fatalf("SCRIPT EXISTS with server0 ejected = %q", got)
	}
}

// Fan-out commands are refused inside MULTI and abort the transaction; a
// script without keys is queued like any keyless command.
func TestProxyFanOutInMulti(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	c := tp.client(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"MULTI"}, "+OK\r\n"},
		{[]string{"SET", "{m}:a", "1"}, "+QUEUED\r\n"},
		{[]string{"SCRIPT", "LOAD", getScript}, "-ERR 'script' is not allowed inside MULTI by shardproxy: it goes to every server\r\n"},
		{[]string{"EXEC"}, "-" + msgExecAbort + "\r\n"},
		{[]string{"GET", "{m}:a"}, "$-1\r\n"},
		{[]string{"MULTI"}, "+OK\r\n"},
		{[]string{"FUNCTION", "FLUSH"}, "-ERR 'function' is not allowed inside MULTI by shardproxy: it goes to every server\r\n"},
		{[]string{"DISCARD"}, "+OK\r\n"},
		{[]string{"MULTI"}, "+OK\r\n"},
		{[]string{"EVAL", "return 5", "0"}, "+QUEUED\r\n"},
		{[]string{"SET", "{m}:a", "2"}, "+QUEUED\r\n"},
		{[]string{"EVAL", "return redis.call('get', KEYS[1])", "1", "{m}:a"}, "+QUEUED\r\n"},
		{[]string{"EXEC"}, "*3\r\n:5\r\n+OK\r\n$1\r\n2\r\n"},
		{[]string{"SCRIPT", "EXISTS", strings.Repeat("a", 40)}, "*1\r\n:0\r\n"},
	}
	for _, s := range steps {
		if got := do(t, c, s.args...); got != s.want {
			t.Fatalf("%v = %q, want %q", s.args, got, s.want)
		}
	}
}

// redis-py's Lock (acquire, extend, release) and register_script work with
// default options: they send EVALSHA, and SCRIPT LOAD on NOSCRIPT.
func TestClientRedisPyLockAndScripts(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	host, port, _ := strings.Cut(tp.addr, ":")
	script := fmt.Sprintf(`
import redis
r = redis.Redis(host=%q, port=%s)
for i in range(12):
    name = "lock:%%d" %% i
    lock = r.lock(name, timeout=10)
    assert lock.acquire(blocking=False), name
    assert not r.lock(name, timeout=10).acquire(blocking=False), name
    assert lock.extend(5), name
    assert r.pttl(name) > 10000, (name, r.pttl(name))
    assert lock.reacquire(), name
    lock.release()
    assert r.get(name) is None, name
with r.lock("lock:with", timeout=5):
    assert r.exists("lock:with") == 1
assert r.exists("lock:with") == 0
incr = r.register_script(%q)
for i in range(12):
    assert incr(keys=["n:%%d" %% i], args=[2]) == 2
    assert incr(keys=["n:%%d" %% i], args=[3]) == 5
r.script_flush()
assert incr(keys=["n:0"], args=[1]) == 6
assert r.script_exists(incr.sha) == [True]
p = r.pipeline()
incr(keys=["{t}:a"], args=[1], client=p)
incr(keys=["{t}:b"], args=[2], client=p)
assert p.execute() == [1, 2]
r.script_flush()
p = r.pipeline(transaction=False)
for i in range(6):
    incr(keys=["p:%%d" %% i], args=[i], client=p)
assert p.execute() == list(range(6))
assert r.eval("return 7", 0) == 7
print("ok")
`, host, port, incrScript)
	out, err := exec.Command("/usr/bin/python3", "-c", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("redis-py (Debian python3-redis) Lock and register_script: %v\n%s", err, out)
	}
}

// Fan-out commands allocate nothing per request once the client's pools
// are warm: a pipeline of them costs no more than a few stray allocations.
func TestProxyFanOutAllocatesNothing(t *testing.T) {
	tp := startProxy(t, 3, "")
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const depth = 16
	sha := strings.Repeat("a", 40)
	var req []byte
	for i := 0; i < depth; i++ {
		req = proxytest.AppendCommand(req, "SCRIPT", "EXISTS", sha, sha)
		req = proxytest.AppendCommand(req, "SCRIPT", "LOAD", "return 1")
	}
	reply := "*2\r\n:0\r\n:0\r\n$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n"
	pipelineAllocatesNothing(t, conn, req, reply, depth)
}

// pipelineAllocatesNothing sends req (depth rounds of the same commands,
// whose replies are reply) on conn, checks the replies, then fails if a
// round trip allocates: a request that allocated would cost at least depth
// per run, and a few stray allocations are the runtime's.
func pipelineAllocatesNothing(t *testing.T, conn net.Conn, req []byte, reply string, depth int) {
	t.Helper()
	buf := make([]byte, len(reply)*depth)
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	if got := string(buf[:len(reply)]); got != reply {
		t.Fatalf("replies = %q, want %q", got, reply)
	}
	if n := testing.AllocsPerRun(200, roundTrip); n >= float64(depth) {
		t.Fatalf("%v allocations per pipeline of %d rounds, want none", n, depth)
	}
}

func BenchmarkProxyScriptExistsPipeline16(b *testing.B) {
	tp := startProxy(&testing.T{}, 3, "")
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	const depth = 16
	var req []byte
	for i := 0; i < depth; i++ {
		req = proxytest.AppendCommand(req, "SCRIPT", "EXISTS", strings.Repeat("a", 40))
	}
	buf := make([]byte, len("*1\r\n:0\r\n")*depth)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// A split of many keys, whose sub-requests are found through a table
// rather than a search, still sends each server its own keys and pairs in
// the client's order and merges the replies back in that order.
func TestProxySplitManyKeys(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	mset, mget, want := []string{"MSET"}, []string{"MGET"}, fmt.Sprintf("*%d\r\n", 60)
	for i := 0; i < 60; i++ {
		k := fmt.Sprint("many:", i)
		mset = append(mset, k, "v"+k)
		mget = append(mget, k)
		want += bulk("v" + k)
	}
	if got := do(t, c, mset...); got != "+OK\r\n" {
		t.Fatalf("MSET of 60 pairs = %q, want +OK", got)
	}
	if got := do(t, c, mget...); got != want {
		t.Fatalf("MGET of 60 keys = %q, want %q", got, want)
	}
	for _, r := range tp.redises {
		for i := 0; i < 60; i++ {
			k := fmt.Sprint("many:", i)
			if got, want := do(t, r.Client(t), "EXISTS", k), map[bool]string{true: ":1\r\n", false: ":0\r\n"}[tp.owner(t, k) == r]; got != want {
				t.Errorf("EXISTS %s on %s = %q, want %q", k, r.Addr, got, want)
			}
		}
	}
	mget[0] = "DEL"
	if got := do(t, c, mget...); got != ":60\r\n" {
		t.Errorf("DEL of 60 keys = %q, want :60", got)
	}
}
