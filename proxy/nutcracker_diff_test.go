package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// diffScript covers every command family nutcracker supports with replies
// Redis makes deterministic. Keys are spread over the servers on purpose.
var diffScript = [][]string{
	// Strings.
	{"SET", "s1", "hello"}, {"GET", "s1"}, {"APPEND", "s1", " world"}, {"STRLEN", "s1"},
	{"GETRANGE", "s1", "0", "4"}, {"SETRANGE", "s1", "0", "J"}, {"GET", "s1"}, {"SETNX", "s1", "x"},
	{"SETEX", "s2", "1000", "v"}, {"PSETEX", "s3", "100000", "v"}, {"GETSET", "s2", "w"}, {"GETDEL", "s3"},
	{"INCR", "n1"}, {"INCRBY", "n1", "41"}, {"DECR", "n1"}, {"DECRBY", "n1", "10"}, {"INCRBYFLOAT", "f1", "1.5"},
	{"SETBIT", "b1", "7", "1"}, {"GETBIT", "b1", "7"}, {"BITCOUNT", "b1"}, {"BITPOS", "b1", "1"},
	{"SET", "s4", "v", "NX"}, {"SET", "s4", "v2", "XX", "GET"}, {"GET", "missing"}, {"GET", ""},
	{"SET", "{tag}a", "1"}, {"SET", "x{tag}b", "2"},
	// Multi-key commands nutcracker splits.
	{"MSET", "m1", "1", "m2", "2", "m3", "3", "m4", "4", "m5", "5"},
	{"MGET", "m1", "m2", "missing", "m3", "m4", "m5", "m1"},
	{"DEL", "m1", "m2", "missing"}, {"TOUCH", "m3", "m4", "missing"}, {"UNLINK", "m4", "m5"},
	{"MGET", "m1", "m2", "m3", "m4", "m5"}, {"MGET", "m3"}, {"DEL", "m3"},
	// Keys.
	{"EXISTS", "s1"}, {"TYPE", "s1"}, {"TTL", "s1"}, {"PTTL", "s1"}, {"PERSIST", "s2"}, {"TTL", "s2"},
	{"EXPIRE", "s1", "1000"}, {"PERSIST", "s1"}, {"EXPIREAT", "s1", "4102444800"}, {"PERSIST", "s1"},
	// Hashes.
	{"HSET", "h1", "a", "1", "b", "2"}, {"HGET", "h1", "a"}, {"HMGET", "h1", "a", "x", "b"}, {"HLEN", "h1"},
	{"HINCRBY", "h1", "a", "5"}, {"HINCRBYFLOAT", "h1", "c", "0.5"}, {"HSETNX", "h1", "a", "9"},
	{"HEXISTS", "h1", "b"}, {"HSTRLEN", "h1", "a"}, {"HDEL", "h1", "b", "zz"}, {"HKEYS", "h1"}, {"HVALS", "h1"},
	{"HGETALL", "h1"}, {"HMSET", "h2", "x", "1"},
	// Lists.
	{"RPUSH", "l1", "a", "b", "c", "b"}, {"LPUSH", "l1", "z"}, {"LRANGE", "l1", "0", "-1"}, {"LLEN", "l1"},
	{"LINDEX", "l1", "1"}, {"LSET", "l1", "0", "y"}, {"LREM", "l1", "1", "b"}, {"LINSERT", "l1", "BEFORE", "c", "q"},
	{"LPOS", "l1", "c"}, {"LPOP", "l1"}, {"RPOP", "l1", "2"}, {"LTRIM", "l1", "0", "0"}, {"LRANGE", "l1", "0", "-1"},
	{"RPUSHX", "l1", "w"}, {"LPUSHX", "nolist", "w"},
	// Sets.
	{"SADD", "set1", "a", "b", "c"}, {"SCARD", "set1"}, {"SISMEMBER", "set1", "a"},
	{"SMISMEMBER", "set1", "a", "z"}, {"SREM", "set1", "c"}, {"SADD", "{k}s2", "b", "d"}, {"SADD", "{k}s3", "b"},
	{"SINTER", "{k}s2", "{k}s3"}, {"SUNIONSTORE", "{k}s4", "{k}s2", "{k}s3"}, {"SCARD", "{k}s4"},
	// Sorted sets.
	{"ZADD", "z1", "1", "a", "2", "b", "3", "c"}, {"ZSCORE", "z1", "b"}, {"ZRANK", "z1", "c"},
	{"ZREVRANK", "z1", "c"}, {"ZCARD", "z1"}, {"ZCOUNT", "z1", "1", "2"}, {"ZINCRBY", "z1", "10", "a"},
	{"ZRANGE", "z1", "0", "-1", "WITHSCORES"}, {"ZRANGEBYSCORE", "z1", "2", "+inf"},
	{"ZREVRANGE", "z1", "0", "1"}, {"ZLEXCOUNT", "z1", "-", "+"}, {"ZMSCORE", "z1", "a", "q"},
	{"ZPOPMIN", "z1"}, {"ZPOPMAX", "z1"}, {"ZREM", "z1", "a"}, {"ZREMRANGEBYRANK", "z1", "0", "-1"},
	// HyperLogLog, geo, scripting, sort.
	{"PFADD", "hll", "a", "b", "c"}, {"PFCOUNT", "hll"},
	{"GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"},
	{"GEODIST", "geo", "Palermo", "Catania", "km"}, {"GEOHASH", "geo", "Palermo"},
	{"EVAL", "return redis.call('incr', KEYS[1])", "1", "ev1"},
	{"EVAL", "return {KEYS[1], ARGV[1]}", "1", "ev2", "arg"},
	{"RPUSH", "sortme", "3", "1", "2"}, {"SORT", "sortme"},
	// Server errors pass through unchanged.
	{"INCR", "s1"}, {"LPUSH", "s1", "x"}, {"HGET", "l1", "x"},
	{"PING"},
}

// beyondNutcracker are commands nutcracker answers by closing the
// connection (or splits wrongly); shardproxy must answer them as a single
// redis-server would.
var beyondNutcracker = [][]string{
	{"SET", "e1", "1"}, {"SET", "e2", "2"}, {"SET", "e3", "3"},
	{"EXISTS", "e1", "e2", "e3", "nope", "e1"},
	{"PING", "hello"}, {"ECHO", "echo"}, {"SELECT", "0"},
	{"EXPIRE", "e1", "100", "NX"}, {"EXPIRE", "e1", "100", "NX"}, {"PERSIST", "e1"},
	{"SET", "e4", "v", "GET"}, {"GETEX", "e4", "PERSIST"},
	{"SET", "k"}, {"GET", "a", "b"},
	{"MGET", "e1", "e2", "e3"}, {"DEL", "e1", "e2", "e3"},
}

// startNutcrackerPool runs nutcracker over n fresh redis-servers with the
// same server lines shardproxy gets in startProxy.
func startNutcrackerPool(t *testing.T, n int, extra string) *proxytest.Conn {
	t.Helper()
	var servers strings.Builder
	for i := 0; i < n; i++ {
		r := proxytest.StartRedis(t)
		fmt.Fprintf(&servers, "    - %s:1 server%d\n", r.Addr, i)
	}
	port := proxytest.FreePort(t)
	yaml := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n%s  servers:\n%s", port, extra, servers.String())
	nc := proxytest.StartNutcracker(t, yaml)
	return nc.Client(t, "alpha")
}

func TestNutcrackerSameReplies(t *testing.T) {
	extra := "  hash_tag: \"{}\"\n"
	nut := startNutcrackerPool(t, 3, extra)
	ours := startProxy(t, 3, extra).client(t)
	for _, cmd := range diffScript {
		want, err := nut.Do(cmd...)
		if err != nil {
			t.Fatalf("nutcracker %q: %v (it closed the connection: the script must hold only commands nutcracker serves)", cmd, err)
		}
		got := do(t, ours, cmd...)
		if got != string(want.Raw()) {
			t.Errorf("%q: shardproxy %q, nutcracker %q", cmd, got, want.Raw())
		}
	}
}

func TestNutcrackerFailsWhereWeAnswerLikeRedis(t *testing.T) {
	single := proxytest.StartRedis(t).Client(t)
	ours := startProxy(t, 3, "").client(t)
	for _, cmd := range beyondNutcracker {
		want := do(t, single, cmd...)
		if got := do(t, ours, cmd...); got != want {
			t.Errorf("%q: shardproxy %q, one redis-server %q", cmd, got, want)
		}
	}
	// And nutcracker really does fail on them: it closes the connection.
	nut := startNutcrackerPool(t, 3, "")
	for _, cmd := range [][]string{{"PING", "hello"}, {"SELECT", "0"}, {"EXPIRE", "e1", "100", "NX"}} {
		if r, err := nut.Do(cmd...); err == nil {
			t.Errorf("nutcracker answered %q with %q; this test assumes it closes the connection", cmd, r.Raw())
		}
		nut = startNutcrackerPool(t, 1, "")
	}
}
