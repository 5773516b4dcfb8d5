package proxy

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// invalidation is the push Redis sends a RESP3 tracking client for keys.
func invalidation(keys ...string) string {
	var b strings.Builder
	b.WriteString(">2\r\n$10\r\ninvalidate\r\n")
	b.WriteString("*" + itoa(len(keys)) + "\r\n")
	for _, k := range keys {
		b.WriteString("$" + itoa(len(k)) + "\r\n" + k + "\r\n")
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// trackingClient is a RESP3 client of the proxy with tracking on.
func trackingClient(t *testing.T, addr string, opts ...string) *rawConn {
	t.Helper()
	c := dialRaw(t, addr)
	if r := c.do("HELLO", "3"); !strings.HasPrefix(r, "%") {
		t.Fatalf("HELLO 3 = %q", r)
	}
	if r := c.do(append([]string{"CLIENT", "TRACKING", "ON"}, opts...)...); r != "+OK\r\n" {
		t.Fatalf("CLIENT TRACKING ON %v = %q", opts, r)
	}
	return c
}

// A key a tracking client read through the proxy, on any server, is
// invalidated when any client changes it: through the proxy, or on the
// server directly. The pushes are the bytes one redis-server sends.
func TestTrackingInvalidatesWhatTheClientRead(t *testing.T) {
	tp := startProxy(t, 3, "")
	keys := make([]string, 3)
	for i, r := range tp.redises {
		keys[i] = tp.keyOn(t, r, "tk")
	}
	c := trackingClient(t, tp.addr)
	writer := tp.client(t)
	for _, k := range keys {
		do(t, writer, "SET", k, "v1")
		if r := c.do("GET", k); r != "$2\r\nv1\r\n" {
			t.Fatalf("GET %s = %q", k, r)
		}
	}
	// On the server directly.
	direct := tp.owner(t, keys[0]).Client(t)
	if _, err := direct.Do("SET", keys[0], "v2"); err != nil {
		t.Fatal(err)
	}
	if r := c.read(); r != invalidation(keys[0]) {
		t.Fatalf("after a direct SET: %q, want %q", r, invalidation(keys[0]))
	}
	// Through the proxy, by another client.
	do(t, writer, "DEL", keys[1])
	if r := c.read(); r != invalidation(keys[1]) {
		t.Fatalf("after DEL through the proxy: %q, want %q", r, invalidation(keys[1]))
	}
	// By the tracking client itself (no NOLOOP): the push follows the reply.
	if r := c.do("SET", keys[2], "v3"); r != invalidation(keys[2]) && r != "+OK\r\n" {
		t.Fatalf("own SET = %q", r)
	} else if r == "+OK\r\n" {
		if p := c.read(); p != invalidation(keys[2]) {
			t.Fatalf("after own SET: %q", p)
		}
	}

	// The same script against one redis-server gives the same pushes.
	one := proxytest.StartRedis(t)
	o := trackingClient(t, one.Addr)
	ow := one.Client(t)
	ow.Do("SET", keys[0], "v1")
	if r := o.do("GET", keys[0]); r != "$2\r\nv1\r\n" {
		t.Fatalf("redis GET = %q", r)
	}
	ow.Do("SET", keys[0], "v2")
	if r := o.read(); r != invalidation(keys[0]) {
		t.Fatalf("redis-server pushed %q, want %q", r, invalidation(keys[0]))
	}
}

// A multi-key read split over the servers is tracked on each of them.
func TestTrackingSplitRead(t *testing.T) {
	tp := startProxy(t, 3, "")
	var keys []string
	for _, r := range tp.redises {
		keys = append(keys, tp.keyOn(t, r, "mk"))
	}
	c := trackingClient(t, tp.addr)
	if r := c.do(append([]string{"MGET"}, keys...)...); r != "*3\r\n_\r\n_\r\n_\r\n" {
		t.Fatalf("MGET = %q", r)
	}
	writer := tp.client(t)
	for _, k := range keys {
		do(t, writer, "SET", k, "x")
		if r := c.read(); r != invalidation(k) {
			t.Fatalf("after SET %s: %q", k, r)
		}
	}
}

// OPTIN tracks only what follows CLIENT CACHING yes, also when that is a
// transaction, as rueidis' DoCache sends it; OPTOUT all but what follows
// CLIENT CACHING no.
func TestTrackingOptInAndOut(t *testing.T) {
	tp := startProxy(t, 3, "")
	a := tp.keyOn(t, tp.redises[0], "oa")
	b := tp.keyOn(t, tp.redises[1], "ob")
	x := tp.keyOn(t, tp.redises[2], "ox")
	writer := tp.client(t)

	c := trackingClient(t, tp.addr, "OPTIN")
	c.do("GET", b) // not opted in
	if r := c.do("CLIENT", "CACHING", "yes"); r != "+OK\r\n" {
		t.Fatalf("CLIENT CACHING yes = %q", r)
	}
	c.do("GET", a)
	for _, step := range [][]string{{"CLIENT", "CACHING", "yes"}, {"MULTI"}, {"PTTL", x}, {"GET", x}} {
		c.send(step...)
	}
	c.send("EXEC")
	for _, want := range []string{"+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n", "*2\r\n:-2\r\n_\r\n"} {
		if r := c.read(); r != want {
			t.Fatalf("DoCache's pipeline: %q, want %q", r, want)
		}
	}
	do(t, writer, "SET", b, "1") // b was not opted in: no push
	do(t, writer, "SET", a, "1")
	if r := c.read(); r != invalidation(a) {
		t.Fatalf("OPTIN: %q, want %q", r, invalidation(a))
	}
	do(t, writer, "SET", x, "1")
	if r := c.read(); r != invalidation(x) {
		t.Fatalf("OPTIN transaction: %q, want %q", r, invalidation(x))
	}

	o := trackingClient(t, tp.addr, "OPTOUT")
	o.do("CLIENT", "CACHING", "no")
	o.do("GET", b) // opted out
	o.do("GET", a)
	do(t, writer, "SET", b, "2")
	do(t, writer, "SET", a, "2")
	if r := o.read(); r != invalidation(a) {
		t.Fatalf("OPTOUT: %q, want %q", r, invalidation(a))
	}
}

// BCAST with a prefix hears of every matching key on every server, read
// or not; NOLOOP leaves out the client's own writes.
func TestTrackingBcastAndNoloop(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := trackingClient(t, tp.addr, "BCAST", "PREFIX", "user:", "NOLOOP")
	own := tp.keyOn(t, tp.redises[0], "user:own")
	if r := c.do("SET", own, "1"); r != "+OK\r\n" {
		t.Fatalf("own SET = %q", r)
	}
	for _, r := range tp.redises {
		k := tp.keyOn(t, r, "user:")
		if _, err := r.Client(t).Do("SET", k, "1"); err != nil {
			t.Fatal(err)
		}
		if got := c.read(); got != invalidation(k) {
			t.Fatalf("BCAST from %s: %q, want %q", r.Addr, got, invalidation(k))
		}
	}
	if r := c.do("CLIENT", "TRACKINGINFO"); r != "%3\r\n$5\r\nflags\r\n~3\r\n$2\r\non\r\n$5\r\nbcast\r\n$6\r\nnoloop\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*1\r\n$5\r\nuser:\r\n" {
		t.Fatalf("TRACKINGINFO = %q", r)
	}
}

// Options are checked as Redis checks them, with its texts; REDIRECT is
// refused.
func TestTrackingErrors(t *testing.T) {
	tp := startProxy(t, 1, "")
	one := proxytest.StartRedis(t)
	cases := [][]string{
		{"CLIENT", "TRACKING", "ON", "PREFIX", "a"},
		{"CLIENT", "TRACKING", "ON", "BCAST", "OPTIN"},
		{"CLIENT", "TRACKING", "ON", "OPTIN", "OPTOUT"},
		{"CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "ab", "PREFIX", "a"},
		{"CLIENT", "TRACKING", "MAYBE"},
		{"CLIENT", "TRACKING", "ON", "NOSUCH"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "TRACKING", "ON", "OPTIN"},
		{"CLIENT", "CACHING", "no"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "TRACKING", "ON", "OPTOUT"},
		{"CLIENT", "TRACKING", "ON", "BCAST"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKING", "OFF"},
		{"CLIENT", "TRACKINGINFO"},
	}
	for _, proto := range []string{"2", "3"} {
		p, r := dialRaw(t, tp.addr), dialRaw(t, one.Addr)
		p.do("HELLO", proto)
		r.do("HELLO", proto)
		for _, cmd := range cases {
			if got, want := p.do(cmd...), r.do(cmd...); got != want {
				t.Errorf("RESP%s %v: proxy %q, redis %q", proto, cmd, got, want)
			}
		}
	}
	c := dialRaw(t, tp.addr)
	id := strings.Trim(c.do("CLIENT", "ID"), ":\r\n")
	if r := c.do("CLIENT", "TRACKING", "ON", "REDIRECT", id); !strings.HasPrefix(r, "-ERR unsupported command 'client|tracking' in shardproxy: REDIRECT") {
		t.Fatalf("REDIRECT = %q", r)
	}
}

// When a tracking connection is lost, or the pool's ring changes, the
// client is told to drop everything: the server forgot what it tracked.
func TestTrackingLostConnectionFlushes(t *testing.T) {
	tp := startProxy(t, 2, "")
	k := tp.keyOn(t, tp.redises[1], "lk")
	c := trackingClient(t, tp.addr)
	c.do("GET", k)
	tp.redises[1].Kill()
	if r := c.read(); r != ">2\r\n$10\r\ninvalidate\r\n_\r\n" {
		t.Fatalf("after the server died: %q", r)
	}
}

// rueidis with its defaults (cluster detection, client-side caching on,
// OPTIN) caches through the proxy and sees another client's write.
func TestTrackingRueidisDoCache(t *testing.T) {
	tp := startProxy(t, 3, "")
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{tp.addr}})
	if err != nil {
		t.Fatalf("rueidis.NewClient: %v", err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	writer := tp.client(t)
	keys := []string{tp.keyOn(t, tp.redises[0], "rk"), tp.keyOn(t, tp.redises[1], "rk"), tp.keyOn(t, tp.redises[2], "rk")}
	for _, k := range keys {
		do(t, writer, "SET", k, "old")
		for i := 0; i < 2; i++ {
			r := client.DoCache(ctx, client.B().Get().Key(k).Cache(), time.Minute)
			if v, err := r.ToString(); err != nil || v != "old" {
				t.Fatalf("DoCache GET %s = %q, %v", k, v, err)
			}
			if i == 1 && !r.IsCacheHit() {
				t.Fatalf("second DoCache GET %s was not a cache hit", k)
			}
		}
	}
	for _, k := range keys {
		do(t, writer, "SET", k, "new")
		for {
			v, err := client.DoCache(ctx, client.B().Get().Key(k).Cache(), time.Minute).ToString()
			if err != nil {
				t.Fatalf("DoCache GET %s: %v", k, err)
			}
			if v == "new" {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// go-redis' client-side cache (ClientSideCacheConfig, RESP3, default
// tracking on each pooled connection) sees other clients' writes to keys
// of every server through the proxy.
func TestTrackingGoRedisCache(t *testing.T) {
	tp := startProxy(t, 3, "")
	cache := redis.NewLocalCache(redis.CacheConfig{MaxEntries: 1024})
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr, ClientSideCache: cache})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer := tp.client(t)
	var keys []string
	for _, r := range tp.redises {
		k := tp.keyOn(t, r, "gk")
		keys = append(keys, k)
		do(t, writer, "SET", k, "old")
		if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "old" {
			t.Fatalf("GET %s = %q, %v", k, v, err)
		}
	}
	for cache.Len() < len(keys) {
		if ctx.Err() != nil {
			t.Fatalf("the cache holds %d entries, want %d", cache.Len(), len(keys))
		}
		for _, k := range keys {
			rdb.Get(ctx, k)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, k := range keys {
		do(t, writer, "SET", k, "new")
		for {
			v, err := rdb.Get(ctx, k).Result()
			if err != nil {
				t.Fatalf("GET %s: %v", k, err)
			}
			if v == "new" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A reload that changes the servers tells a tracking client to drop its
// cache, and tracking goes on over the new servers.
func TestTrackingReloadFlushes(t *testing.T) {
	a, b := proxytest.StartRedis(t), proxytest.StartRedis(t)
	listen := "127.0.0.1:" + itoa(proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "", a.Addr+":1 s0"), Options{})
	c := trackingClient(t, listen)
	c.do("GET", "k")
	if err := srv.Reload(mustParse(t, poolYAML(listen, "", b.Addr+":1 s0"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if r := c.read(); r != ">2\r\n$10\r\ninvalidate\r\n_\r\n" {
		t.Fatalf("after the reload: %q", r)
	}
	if r := c.do("GET", "k"); r != "_\r\n" {
		t.Fatalf("GET on the new server = %q", r)
	}
	if _, err := b.Client(t).Do("SET", "k", "1"); err != nil {
		t.Fatal(err)
	}
	if r := c.read(); r != invalidation("k") {
		t.Fatalf("after SET on the new server: %q", r)
	}
}
