package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// rawConn reads replies of either protocol as raw bytes, framed by the
// proxy's own scanner, which its tests check separately.
type rawConn struct {
	t    *testing.T
	nc   net.Conn
	buf  []byte
	scan resp.ReplyScanner
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

func (c *rawConn) send(args ...string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(proxytest.AppendCommand(nil, args...)); err != nil {
		c.t.Fatalf("%v: %v", args, err)
	}
}

func (c *rawConn) read() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, err := c.scan.Scan(c.buf)
		if err != nil {
			c.t.Fatalf("reply %q: %v", c.buf, err)
		}
		if n > 0 {
			r := string(c.buf[:n])
			c.buf = c.buf[n:]
			return r
		}
		var chunk [4096]byte
		k, err := c.nc.Read(chunk[:])
		c.buf = append(c.buf, chunk[:k]...)
		if k == 0 && err != nil {
			c.t.Fatalf("read: %v (have %q)", err, c.buf)
		}
	}
}

func (c *rawConn) do(args ...string) string {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

// ids and versions differ between the proxy and a redis-server, and from
// one connection to the next.
var (
	helloID      = regexp.MustCompile(`\$2\r\nid\r\n:\d+\r\n`)
	helloVersion = regexp.MustCompile(`\$7\r\nversion\r\n\$\d+\r\n[0-9.]+\r\n`)
)

func maskHello(r string) string {
	r = helloID.ReplaceAllString(r, "$$2\r\nid\r\n:ID\r\n")
	return helloVersion.ReplaceAllString(r, "$$7\r\nversion\r\n$$V\r\nV\r\n")
}

// resp3Script are commands whose replies differ between RESP2 and RESP3,
// on keys whose replies do not depend on which server has them, and
// multi-key commands that the proxy splits over the servers.
var resp3Script = [][]string{
	{"HSET", "h", "f1", "v1", "f2", "2"}, {"HGETALL", "h"}, {"HGETALL", "nohash"},
	{"SADD", "s", "1", "2", "3"}, {"SMEMBERS", "s"}, {"SMISMEMBER", "s", "1", "9"},
	{"ZADD", "z", "1.5", "a", "2", "b"}, {"ZSCORE", "z", "a"}, {"ZSCORE", "z", "none"}, {"ZINCRBY", "z", "1", "a"},
	{"ZRANGE", "z", "0", "-1", "WITHSCORES"}, {"ZPOPMIN", "z"}, {"ZMSCORE", "z", "a", "b", "x"},
	{"INCRBYFLOAT", "f", "1.5"}, {"HINCRBYFLOAT", "h", "f2", "0.25"},
	{"GET", "missing"}, {"LPOP", "emptylist"}, {"LPOP", "emptylist", "2"}, {"RPOP", "emptylist"},
	{"XADD", "x", "1-1", "a", "1"}, {"XADD", "x", "2-1", "b", "2"}, {"XRANGE", "x", "-", "+"},
	{"XREAD", "STREAMS", "x", "0"}, {"XREAD", "COUNT", "1", "STREAMS", "x", "1-1"}, {"XREAD", "STREAMS", "x", "$"},
	{"OBJECT", "ENCODING", "s"}, {"TYPE", "h"}, {"TTL", "h"},
	{"EVAL", "return {double=3.5}", "0"}, {"EVAL", "return true", "0"}, {"EVAL", "redis.setresp(3); return true", "0"}, {"EVAL", "redis.setresp(3); return false", "0"},
	{"EVAL", "redis.setresp(3); return redis.call('HGETALL', KEYS[1])", "1", "h"},
	{"EVAL", "return {big_number='123456789012345678901234567890'}", "0"},
	{"EVAL", "return {map={a=1}}", "0"}, {"EVAL", "return {set={a=true}}", "0"},
	{"MSET", "m1", "1", "m2", "2", "m3", "3", "m4", "4", "m5", "5"},
	{"MGET", "m1", "m2", "nokey", "m3", "m4", "m5", "m1"},
	{"EXISTS", "m1", "m2", "nokey", "m3"}, {"TOUCH", "m1", "m4", "nokey"},
	{"DEL", "m1", "m2", "nokey"}, {"UNLINK", "m3", "nokey"}, {"MGET", "m1", "m2", "m5"},
	{"RANDOMKEY"}, // one key left in the pool and in the one redis: m4 or m5 or another, so only its type is compared
	{"MULTI"}, {"SET", "t", "1"}, {"GET", "t"}, {"INCRBYFLOAT", "t", "0.5"}, {"HGETALL", "h"}, {"EXEC"},
	{"PING"}, {"PING", "hi"}, {"ECHO", "e"}, {"CLIENT", "GETNAME"},
	{"CLIENT", "SETNAME", "app"}, {"CLIENT", "GETNAME"}, {"SELECT", "0"},
	{"HELLO"},
}

// Every reply of resp3Script is the bytes one redis-server sends, in RESP2
// and in RESP3: RESP3 servers' replies come through unchanged, merged ones
// and the proxy's own are framed in the client's protocol.
func TestRESP3RepliesMatchOneRedis(t *testing.T) {
	tp := startProxy(t, 3, "")
	single := proxytest.StartRedis(t)
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			via, one := dialRaw(t, tp.addr), dialRaw(t, single.Addr)
			if got, want := maskHello(via.do("HELLO", proto)), maskHello(one.do("HELLO", proto)); got != want {
				t.Errorf("HELLO %s = %q, redis says %q", proto, got, want)
			}
			kinds := map[byte]bool{} // the reply types the script met
			for _, cmd := range resp3Script {
				got, want := via.do(cmd...), one.do(cmd...)
				kinds[want[0]] = true
				switch cmd[0] {
				case "RANDOMKEY":
					got, want = got[:1], want[:1]
				case "HELLO":
					got, want = maskHello(got), maskHello(want)
				}
				if got != want {
					t.Errorf("%q = %q, redis says %q", cmd, got, want)
				}
			}
			// INFO and LOLWUT differ in content, not in type: a verbatim
			// string of text in RESP3.
			for _, cmd := range [][]string{{"INFO", "server"}, {"LOLWUT"}, {"CLIENT", "INFO"}} {
				got, want := via.do(cmd...), one.do(cmd...)
				if kind := func(r string) string {
					if _, rest, _ := strings.Cut(r, "\r\n"); r[0] == '=' {
						return r[:1] + rest[:min(4, len(rest))]
					}
					return r[:1]
				}; kind(got) != kind(want) {
					t.Errorf("%q = %.40q..., redis says %.40q...", cmd, got, want)
				}
			}
			if proto == "3" {
				for _, k := range []byte("%~,_#(") {
					if !kinds[k] {
						t.Errorf("no reply of RESP3 type %q in the script", k)
					}
				}
			}
			for _, c := range []*rawConn{via, one} {
				c.do("FLUSHALL")
			}
		})
	}
}

// A protocol switch in a pipeline applies exactly from the next command,
// on every server the batch touches, and RESET goes back to RESP2.
func TestRESP3SwitchInsideAPipeline(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := dialRaw(t, tp.addr)
	var req []byte
	cmds := [][]string{
		{"GET", "k"}, {"MGET", "k", "a", "b", "c"}, {"HELLO", "3"}, {"GET", "k"}, {"MGET", "k", "a", "b", "c"},
		{"CLIENT", "GETNAME"}, {"HELLO", "2"}, {"GET", "k"}, {"HELLO", "3"}, {"GET", "k"}, {"RESET"}, {"GET", "k"},
	}
	for _, cmd := range cmds {
		req = proxytest.AppendCommand(req, cmd...)
	}
	if _, err := c.nc.Write(req); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"$-1\r\n", "*4\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n", "%7", "_\r\n", "*4\r\n_\r\n_\r\n_\r\n_\r\n",
		"_\r\n", "*14", "$-1\r\n", "%7", "_\r\n", "+RESET\r\n", "$-1\r\n",
	}
	for i, w := range want {
		if got := c.read(); !strings.HasPrefix(got, w) {
			t.Errorf("%q = %q, want %q...", cmds[i], got, w)
		}
	}
}

// HELLO answers and refuses as Redis 7.0 does.
func TestRESP3HelloErrors(t *testing.T) {
	tp := startProxy(t, 2, "")
	single := proxytest.StartRedis(t)
	via, one := dialRaw(t, tp.addr), dialRaw(t, single.Addr)
	for _, cmd := range [][]string{
		{"HELLO", "4"}, {"HELLO", "1"}, {"HELLO", "x"}, {"HELLO", "+3"}, {"HELLO", "03"}, {"HELLO", "-0"}, {"HELLO", " 3"},
		{"HELLO", "99999999999999999999"}, {"HELLO", "-9223372036854775808"}, {"HELLO", "3", "AUTH", "default"}, {"HELLO", "3", "bogus"},
		{"HELLO", "3", "SETNAME", "a b"}, {"HELLO", "2", "AUTH", "bob", "pw"}, {"HELLO", "3", "SETNAME", "n"},
		{"HELLO", "2"},
	} {
		got, want := maskHello(via.do(cmd...)), maskHello(one.do(cmd...))
		if got != want {
			t.Errorf("%q = %q, redis says %q", cmd, got, want)
		}
	}
}

// The handshake redis-py sends with a password and protocol 3, one
// command at a time, gets what a redis-server with requirepass answers;
// CLIENT SETINFO, which redis-server 7.0 does not have, gets Redis 7.2's
// +OK. Also with SETNAME inside HELLO, and HELLO before AUTH.
func TestRESP3RedisPyHandshake(t *testing.T) {
	const pass = "s3cret"
	tp := startProxy(t, 3, "  redis_auth: "+pass+"\n", proxytest.RedisPassword(pass))
	single := proxytest.StartRedis(t, proxytest.RedisPassword(pass))
	via, one := dialRaw(t, tp.addr), dialRaw(t, single.Addr)
	for _, cmd := range [][]string{
		{"HELLO", "3"},
		{"HELLO", "3", "SETNAME", "a b"},
		{"HELLO", "3", "SETNAME", "early", "AUTH", "default", "wrong"},
		{"HELLO", "3", "AUTH", "default", pass},
		{"CLIENT", "GETNAME"},
		{"CLIENT", "SETNAME", "worker-1"},
		{"HELLO", "3", "AUTH", "default", pass, "SETNAME", "worker-2"},
		{"CLIENT", "GETNAME"},
		{"HGETALL", "nohash"},
	} {
		if got, want := maskHello(via.do(cmd...)), maskHello(one.do(cmd...)); got != want {
			t.Errorf("%q = %q, redis says %q", cmd, got, want)
		}
	}
	for _, cmd := range [][]string{{"CLIENT", "SETINFO", "LIB-NAME", "redis-py"}, {"CLIENT", "SETINFO", "LIB-VER", "8.0.0"}} {
		if got := via.do(cmd...); got != "+OK\r\n" {
			t.Errorf("%q = %q, want +OK", cmd, got)
		}
	}
	info := via.do("CLIENT", "INFO")
	for _, field := range []string{"=", "txt:id=", " name=worker-2 ", " resp=3 ", " lib-name=redis-py ", " lib-ver=8.0.0\n"} {
		if !strings.Contains(info, field) {
			t.Errorf("CLIENT INFO = %q, want %q in it", info, field)
		}
	}
}

// CLIENT SETINFO, NO-EVICT and NO-TOUCH answer as Redis 7.2 does.
func TestRESP3ClientSetInfo(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := dialRaw(t, tp.addr)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"CLIENT", "SETINFO", "lib-name", "go-redis(x)"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "Lib-Ver", "9.0"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "lib-name", "a b"}, "-ERR lib-name cannot contain spaces, newlines or special characters.\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-VER", "1\n"}, "-ERR LIB-VER cannot contain spaces, newlines or special characters.\r\n"},
		{[]string{"CLIENT", "SETINFO", "lib-foo", "x"}, "-ERR Unrecognized option 'lib-foo'\r\n"},
		{[]string{"CLIENT", "SETINFO", "lib-name"}, "-ERR wrong number of arguments for 'client|setinfo' command\r\n"},
		{[]string{"CLIENT", "INFO"}, "$"},
		{[]string{"CLIENT", "SETINFO", "lib-ver", ""}, "+OK\r\n"},
		{[]string{"CLIENT", "NO-EVICT", "on"}, "+OK\r\n"},
		{[]string{"CLIENT", "NO-EVICT", "OFF"}, "+OK\r\n"},
		{[]string{"CLIENT", "NO-EVICT", "maybe"}, "-ERR syntax error\r\n"},
		{[]string{"CLIENT", "NO-EVICT"}, "-ERR wrong number of arguments for 'client|no-evict' command\r\n"},
		{[]string{"CLIENT", "NO-TOUCH", "ON"}, "+OK\r\n"},
		{[]string{"CLIENT", "NO-TOUCH", "off"}, "+OK\r\n"},
		{[]string{"CLIENT", "NO-TOUCH", "x"}, "-ERR syntax error\r\n"},
		{[]string{"CLIENT", "NO-TOUCH", "on", "x"}, "-ERR wrong number of arguments for 'client|no-touch' command\r\n"},
		{[]string{"CLIENT", "ID", "x"}, "-ERR wrong number of arguments for 'client|id' command\r\n"},
		{[]string{"CLIENT", "INFO", "x"}, "-ERR wrong number of arguments for 'client|info' command\r\n"},
		{[]string{"CLIENT", "GETNAME", "x"}, "-ERR wrong number of arguments for 'client|getname' command\r\n"},
	} {
		if got := c.do(tc.args...); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q = %q, want %q", tc.args, got, tc.want)
		}
	}
	info := c.do("CLIENT", "LIST")
	if !strings.Contains(info, " resp=2 lib-name=go-redis(x) lib-ver=\n") {
		t.Errorf("CLIENT LIST = %q, want resp=2, the lib-name and an empty lib-ver", info)
	}
}

// Transactions and blocking commands run on dedicated connections of the
// client's protocol: their replies, a timed-out BLPOP's null included, are
// redis-server's in RESP3 and, after HELLO 2, in RESP2. A WATCH across
// the switch keeps its connection, which switches too.
func TestRESP3TransactionsAndBlocking(t *testing.T) {
	tp := startProxy(t, 3, "")
	single := proxytest.StartRedis(t)
	via, one := dialRaw(t, tp.addr), dialRaw(t, single.Addr)
	script := [][]string{
		{"HELLO", "3"},
		{"MULTI"}, {"HSET", "{t}h", "a", "1"}, {"HGETALL", "{t}h"}, {"ZADD", "{t}z", "2.5", "m"}, {"ZSCORE", "{t}z", "m"}, {"EXEC"},
		{"BLPOP", "{t}list", "0.1"}, {"BZPOPMIN", "{t}zz", "0.1"},
		{"WATCH", "{t}h"}, {"HELLO", "2"}, {"MULTI"}, {"HGETALL", "{t}h"}, {"EXEC"},
		{"MULTI"}, {"HGETALL", "{t}h"}, {"ZSCORE", "{t}z", "m"}, {"EXEC"},
		{"BLPOP", "{t}list", "0.1"},
		{"WATCH", "{t}h"}, {"HELLO", "3"}, {"UNWATCH"}, {"MULTI"}, {"ZSCORE", "{t}z", "m"}, {"EXEC"},
	}
	for _, cmd := range script {
		got, want := via.do(cmd...), one.do(cmd...)
		if cmd[0] == "HELLO" {
			got, want = maskHello(got), maskHello(want)
		}
		if got != want {
			t.Errorf("%q = %q, redis says %q", cmd, got, want)
		}
	}
}

// EXEC after a WATCH whose connection was lost answers the null of the
// client's protocol.
func TestRESP3LostWatchNull(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := dialRaw(t, tp.addr)
	c.do("HELLO", "3")
	if got := c.do("WATCH", "w"); got != "+OK\r\n" {
		t.Fatalf("WATCH = %q", got)
	}
	tp.redises[0].Restart(t)
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"MULTI"}, "+OK\r\n"}, {[]string{"SET", "w", "1"}, "+QUEUED\r\n"}, {[]string{"EXEC"}, "_\r\n"},
	} {
		if got := c.do(step.args...); got != step.want {
			t.Errorf("%q = %q, want %q", step.args, got, step.want)
		}
	}
}

// A client's requests, RESP3 ones included, allocate nothing per request
// once warm (as TestProxyRequestsAllocateNothing checks for RESP2).
func TestRESP3RequestsAllocateNothing(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := dialRaw(t, tp.addr)
	c.do("HELLO", "3")
	var pipeline []byte
	for i := 0; i < 16; i++ {
		pipeline = proxytest.AppendCommand(pipeline, "HGETALL", fmt.Sprint("k", i))
	}
	for _, tc := range []struct {
		name  string
		req   []byte
		reply string
	}{
		{"direct", proxytest.AppendCommand(nil, "GET", "k"), "_\r\n"},
		{"pipeline", pipeline, strings.Repeat("%0\r\n", 16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, len(tc.reply))
			roundTrip := func() {
				if _, err := c.nc.Write(tc.req); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c.nc, buf); err != nil {
					t.Fatal(err)
				}
			}
			roundTrip()
			if string(buf) != tc.reply {
				t.Fatalf("replies = %q, want %q", buf, tc.reply)
			}
			if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
				t.Fatalf("%v allocations per round trip, want none", n)
			}
		})
	}
}

// go-redis v9 with its default options says HELLO 3 and gets it.
func TestRESP3GoRedisDefaults(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	conn := rdb.Conn()
	defer conn.Close()
	hello, err := conn.Do(ctx, "HELLO").Result()
	if m, ok := hello.(map[any]any); err != nil || !ok || m["proto"] != int64(3) {
		t.Fatalf("HELLO on a go-redis connection = %#v, %v; want proto 3", hello, err)
	}
	if err := rdb.MSet(ctx, "a", "1", "b", "2", "c", "3").Err(); err != nil {
		t.Fatalf("MSET: %v", err)
	}
	if vals, err := rdb.MGet(ctx, "a", "b", "c", "missing").Result(); err != nil || fmt.Sprint(vals) != "[1 2 3 <nil>]" {
		t.Fatalf("MGET = %v, %v", vals, err)
	}
	rdb.HSet(ctx, "h", "f", "v", "g", "w")
	if m, err := rdb.HGetAll(ctx, "h").Result(); err != nil || fmt.Sprint(m) != "map[f:v g:w]" {
		t.Fatalf("HGETALL = %v, %v", m, err)
	}
	rdb.ZAdd(ctx, "z", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: 2, Member: "b"})
	if zs, err := rdb.ZRangeWithScores(ctx, "z", 0, -1).Result(); err != nil || fmt.Sprint(zs) != "[{1.5 a} {2 b}]" {
		t.Fatalf("ZRANGE WITHSCORES = %v, %v", zs, err)
	}
	pipe := rdb.Pipeline()
	incr := pipe.IncrByFloat(ctx, "n", 1.25)
	get := pipe.Get(ctx, "nothing")
	if _, err := pipe.Exec(ctx); err != redis.Nil || incr.Val() != 1.25 || get.Err() != redis.Nil {
		t.Fatalf("pipeline: %v, INCRBYFLOAT = %v, GET = %v", err, incr.Val(), get.Err())
	}
	var visits *redis.IntCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{user:7}:name", "ada", 0)
		visits = p.Incr(ctx, "{user:7}:visits")
		return nil
	}); err != nil || visits.Val() != 1 {
		t.Fatalf("TxPipelined: %v, INCR = %d", err, visits.Val())
	}
	if v, err := rdb.BLPop(ctx, 100*time.Millisecond, "nolist").Result(); err != redis.Nil {
		t.Fatalf("BLPOP = %v, %v; want redis.Nil", v, err)
	}
}

// rueidis, without client-side caching, works through the proxy in RESP3.
func TestRESP3Rueidis(t *testing.T) {
	tp := startProxy(t, 3, "")
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{tp.addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatalf("rueidis.NewClient: %v", err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := client.Do(ctx, client.B().Set().Key("a").Value("1").Build()).Error(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := client.Do(ctx, client.B().Get().Key("a").Build()).ToString(); err != nil || v != "1" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if err := client.Do(ctx, client.B().Get().Key("missing").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("GET missing: %v, want nil", err)
	}
	client.Do(ctx, client.B().Set().Key("b").Value("2").Build())
	vals, err := client.Do(ctx, client.B().Mget().Key("a", "b", "c").Build()).ToArray()
	if err != nil || len(vals) != 3 {
		t.Fatalf("MGET = %v, %v", vals, err)
	}
	if s, _ := vals[1].ToString(); s != "2" || !vals[2].IsNil() {
		t.Fatalf("MGET = %v", vals)
	}
	results := client.DoMulti(ctx,
		client.B().Hset().Key("h").FieldValue().FieldValue("f", "v").Build(),
		client.B().Hgetall().Key("h").Build(),
		client.B().Incrbyfloat().Key("n").Increment(0.5).Build(),
	)
	if m, err := results[1].AsStrMap(); err != nil || m["f"] != "v" {
		t.Fatalf("DoMulti HGETALL = %v, %v", m, err)
	}
	if f, err := results[2].AsFloat64(); err != nil || f != 0.5 {
		t.Fatalf("DoMulti INCRBYFLOAT = %v, %v", f, err)
	}
}

// A pool with a server that does not speak RESP3 (HELLO renamed away, as
// on Redis 5) refuses HELLO 3 with Redis 5's unknown command error, on
// which go-redis falls back to RESP2 and works; HELLO 2 still works.
func TestRESP3RefusedWhenAServerLacksHello(t *testing.T) {
	tp := startProxy(t, 2, "", proxytest.RedisArgs("--rename-command", "HELLO", ""))
	c := dialRaw(t, tp.addr)
	want := "-ERR unknown command `HELLO`, with args beginning with: `3`, `SETNAME`, `x`, \r\n"
	if got := c.do("HELLO", "3", "SETNAME", "x"); got != want {
		t.Errorf("HELLO 3 = %q, want %q", got, want)
	}
	if got := c.do("GET", "k"); got != "$-1\r\n" {
		t.Errorf("GET after the refusal = %q, want RESP2's null", got)
	}
	if got := c.do("HELLO", "2"); !strings.HasPrefix(got, "*14\r\n") {
		t.Errorf("HELLO 2 = %q", got)
	}
	long := strings.Repeat("p", 200)
	if got, want := c.do("HELLO", "3", "AUTH", "default", long), "-ERR unknown command `HELLO`, with args beginning with: `3`, `AUTH`, `default`, `"+long[:128-len("`3`, `AUTH`, `default`, ")]+"`, \r\n"; got != want {
		t.Errorf("HELLO 3 with a long password = %q, want %q", got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	if err := rdb.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatalf("go-redis SET: %v", err)
	}
	if vals, err := rdb.MGet(ctx, "a", "b").Result(); err != nil || fmt.Sprint(vals) != "[1 <nil>]" {
		t.Fatalf("go-redis MGET = %v, %v", vals, err)
	}
	if info, err := rdb.Do(ctx, "CLIENT", "INFO").Text(); err != nil || !strings.Contains(info, " resp=2 ") {
		t.Fatalf("go-redis CLIENT INFO = %q, %v; want resp=2", info, err)
	}
}

// Pushes the server sends on a shared RESP3 connection answer no request:
// the replies around them still reach their requests.
func TestRESP3PushIsNotAReply(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := dialRaw(t, tp.addr)
	c.do("HELLO", "3")
	c.do("SET", "pk", "1")
	// The proxy's shared RESP3 connection is the one whose last command
	// was that SET: a tracking redirect to it makes the server push
	// invalidations on it.
	clients := do(t, tp.redises[0].Client(t), "CLIENT", "LIST")
	var id string
	for _, line := range strings.Split(clients, "\n") {
		if strings.Contains(line, " resp=3") && strings.Contains(line, " cmd=set ") {
			id, _, _ = strings.Cut(strings.TrimPrefix(line, "$"), " ")
			_, id, _ = strings.Cut(id, "id=")
		}
	}
	if id == "" {
		t.Fatalf("no RESP3 connection of the proxy in %q", clients)
	}
	tracker := tp.redises[0].Client(t)
	if got := do(t, tracker, "CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", id); got != "+OK\r\n" {
		t.Fatalf("CLIENT TRACKING = %q", got)
	}
	up := tp.srv.poolList()[0].servers[0].up
	pushes := make(chan []byte, 16)
	up.SetPushHandler(func(p []byte) { pushes <- bytes.Clone(p) })
	for i := 0; i < 5; i++ {
		if got := c.do("SET", "pk", fmt.Sprint(i)); got != "+OK\r\n" {
			t.Fatalf("SET = %q", got)
		}
		if got := c.do("GET", "pk"); got != fmt.Sprintf("$1\r\n%d\r\n", i) {
			t.Fatalf("GET = %q", got)
		}
	}
	select {
	case p := <-pushes:
		if !bytes.HasPrefix(p, []byte(">2\r\n$10\r\ninvalidate\r\n")) {
			t.Errorf("push = %q, want an invalidation", p)
		}
	case <-time.After(10 * time.Second):
		t.Error("no push reached the handler")
	}
	up.SetPushHandler(nil)
	dropped := up.PushesDropped()
	c.do("SET", "pk", "x")
	if got := c.do("GET", "pk"); got != "$1\r\nx\r\n" {
		t.Errorf("GET with pushes dropped = %q", got)
	}
	// The invalidation of that SET came on the connection before GET's reply.
	if n := up.PushesDropped(); n <= dropped {
		t.Errorf("pushes dropped = %d, want more than %d", n, dropped)
	}
}

// BenchmarkProxyGetRESP3 is BenchmarkProxyGet for a client that said
// HELLO 3: its GETs go on the RESP3 server connections.
func BenchmarkProxyGetRESP3(b *testing.B) {
	tp := startProxy(&testing.T{}, 3, "")
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	hello := make([]byte, 512)
	conn.Write(proxytest.AppendCommand(nil, "HELLO", "3"))
	if n, _ := conn.Read(hello); n == 0 || hello[0] != '%' {
		b.Fatalf("HELLO 3 = %q", hello[:n])
	}
	req := proxytest.AppendCommand(nil, "GET", "key:00")
	buf := make([]byte, len("_\r\n"))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Clients that say HELLO 3 at the same moment to a fresh pool whose server
// lacks HELLO all get the refusal: they wait for one probe of the server.
func TestRESP3RefusalForClientsAskingAtOnce(t *testing.T) {
	tp := startProxy(t, 1, "", proxytest.RedisArgs("--rename-command", "HELLO", ""))
	const n = 20
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, tp.addr)
	}
	for _, c := range conns {
		c.send("HELLO", "3")
	}
	for i, c := range conns {
		if got := c.read(); !strings.HasPrefix(got, "-ERR unknown command `HELLO`") {
			t.Errorf("client %d: HELLO 3 = %q, want the refusal", i, got)
		}
	}
}
