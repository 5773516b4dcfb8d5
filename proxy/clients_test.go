package proxy

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Popular clients, each with its default options, must work through the
// proxy: they send HELLO, CLIENT SETINFO/SETNAME, SELECT 0 or INFO when they
// connect, which nutcracker answers by closing the connection.

func TestClientGoRedisDefaults(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()

	if err := rdb.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := rdb.Get(ctx, "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if err := rdb.MSet(ctx, "a", "1", "b", "2", "c", "3").Err(); err != nil {
		t.Fatalf("MSET: %v", err)
	}
	vals, err := rdb.MGet(ctx, "a", "b", "c", "missing").Result()
	if err != nil || fmt.Sprint(vals) != "[1 2 3 <nil>]" {
		t.Fatalf("MGET = %v, %v", vals, err)
	}
	pipe := rdb.Pipeline()
	incr := pipe.Incr(ctx, "n")
	pipe.Expire(ctx, "n", time.Minute)
	if _, err := pipe.Exec(ctx); err != nil || incr.Val() != 1 {
		t.Fatalf("pipeline: %v, INCR = %d", err, incr.Val())
	}
	tx := rdb.TxPipeline()
	tx.Set(ctx, "{user:7}:name", "ada", 0)
	tx.Incr(ctx, "{user:7}:visits")
	if _, err := tx.Exec(ctx); err != nil {
		t.Fatalf("MULTI/EXEC pipeline: %v", err)
	}
	err = rdb.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Get(ctx, "{user:7}:visits").Int()
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{user:7}:visits", n+1, 0)
			return nil
		})
		return err
	}, "{user:7}:visits")
	if err != nil {
		t.Fatalf("WATCH transaction: %v", err)
	}
	if v, _ := rdb.Get(ctx, "{user:7}:visits").Result(); v != "2" {
		t.Fatalf("visits = %q after WATCH transaction, want 2", v)
	}
	if err := rdb.Time(ctx).Err(); err == nil || !strings.Contains(err.Error(), "time") {
		t.Fatalf("TIME: err = %v, want an error naming the command", err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after an unsupported command: %v", err)
	}
}

func TestClientGoRedisWithPassword(t *testing.T) {
	tp := startProxy(t, 2, "  redis_auth: pw\n  redis_db: 3\n", proxytest.RedisPassword("pw"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr, Password: "pw", DB: 3})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET with password and DB 3: %v", err)
	}
	// The key must be in db 3 of its server.
	r := tp.owner(t, "k").Client(t)
	if got := do(t, r, "SELECT", "3"); got != "+OK\r\n" {
		t.Fatalf("SELECT 3 on the server = %q", got)
	}
	if got := do(t, r, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET k in db 3 on its server = %q", got)
	}
	bad := redis.NewClient(&redis.Options{Addr: tp.addr, Password: "nope"})
	defer bad.Close()
	if err := bad.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: err = %v, want WRONGPASS", err)
	}
}

func TestClientRedisCli(t *testing.T) {
	tp := startProxy(t, 3, "")
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is needed (Debian package redis-tools): %v", err)
	}
	port := tp.addr[strings.LastIndexByte(tp.addr, ':')+1:]
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(cli, append([]string{"-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("set", "cli-key", "x"); got != "OK" {
		t.Fatalf("redis-cli set = %q", got)
	}
	if got := run("get", "cli-key"); got != "x" {
		t.Fatalf("redis-cli get = %q", got)
	}
	if got := run("--no-raw", "mget", "cli-key", "nope"); !strings.Contains(got, `"x"`) || !strings.Contains(got, "(nil)") {
		t.Fatalf("redis-cli mget = %q", got)
	}
	// Interactive mode sends COMMAND DOCS first; a script on stdin works too.
	cmd := exec.Command(cli, "-p", port)
	cmd.Stdin = strings.NewReader("ping\nincr cli-n\nincr cli-n\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PONG") || !strings.Contains(string(out), "2") {
		t.Fatalf("redis-cli with a script: %v\n%s", err, out)
	}
}

func TestClientRedisPy(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	host, port, _ := strings.Cut(tp.addr, ":")
	script := fmt.Sprintf(`
import redis
r = redis.Redis(host=%q, port=%s)
assert r.ping()
r.set("py", "1")
assert r.get("py") == b"1", r.get("py")
r.mset({"a": "1", "b": "2", "c": "3"})
assert r.mget("a", "b", "c", "zz") == [b"1", b"2", b"3", None]
assert r.delete("a", "b", "c") == 3
p = r.pipeline()   # transaction=True: MULTI ... EXEC
p.set("{t}:x", "1").incr("{t}:y")
assert p.execute() == [True, 1]
p = r.pipeline(transaction=False)
p.set("q", "1").get("q")
assert p.execute() == [True, b"1"]
r.client_setname("py-client")
assert r.client_getname() == "py-client"
assert "redis_version" in r.info()
print("ok")
`, host, port)
	out, err := exec.Command("/usr/bin/python3", "-c", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("redis-py (Debian python3-redis) with default options: %v\n%s", err, out)
	}
}
