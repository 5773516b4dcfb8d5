package statsport

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// keysOn returns the keys redis-server r holds, read on r itself.
func keysOn(t *testing.T, r *proxytest.Redis) []string {
	t.Helper()
	rep, err := r.Client(t).Do("KEYS", "*")
	if err != nil || rep.Type != '*' {
		t.Fatalf("KEYS * on %s = %v, %v", r.Addr, rep, err)
	}
	var keys []string
	for _, e := range rep.Elems {
		keys = append(keys, string(e.Str))
	}
	return keys
}

func cmdLen(args ...string) int64 { return int64(len(proxytest.AppendCommand(nil, args...))) }

// Requests and replies count on the server that got them, bytes as they
// went over the wire; a multi-key command counts one request per server it
// is split to, and its parts in fragments; every reply is in the latency
// histograms.
func TestStatsCountRequests(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"server0", ""}})
	c := tp.client(t, "alpha")
	const n = 30
	for i := range n {
		key := fmt.Sprintf("%d:key", i) // fnv1a spreads keys that differ early
		if got, err := c.Do("SET", key, "v"); err != nil || string(got.Raw()) != "+OK\r\n" {
			t.Fatalf("SET %s = %q, %v", key, got.Raw(), err)
		}
		if got, err := c.Do("GET", key); err != nil || string(got.Raw()) != "$1\r\nv\r\n" {
			t.Fatalf("GET %s = %q, %v", key, got.Raw(), err)
		}
	}
	// One MGET of a key on each server: two fragments.
	var mget []string
	var wants []stat
	var total int64
	for _, name := range tp.names["alpha"] {
		keys := keysOn(t, tp.redis["alpha/"+name])
		if len(keys) == 0 {
			t.Fatalf("the ring put none of %d keys on %s", n, name)
		}
		mget = append(mget, keys[0])
		var reqBytes int64
		for _, k := range keys {
			reqBytes += cmdLen("SET", k, "v") + cmdLen("GET", k)
		}
		k := int64(len(keys))
		wants = append(wants,
			stat{"alpha", name, "requests", 2*k + 1},
			stat{"alpha", name, "request_bytes", reqBytes + cmdLen("MGET", keys[0])},
			stat{"alpha", name, "responses", 2*k + 1},
			stat{"alpha", name, "response_bytes", k*int64(len("+OK\r\n")+len("$1\r\nv\r\n")) + int64(len("*1\r\n$1\r\nv\r\n"))},
			stat{"alpha", name, "server_connections", 1},
			stat{"alpha", name, "server_eof", 0},
			stat{"alpha", name, "server_err", 0},
			stat{"alpha", name, "in_queue", 0},
			stat{"alpha", name, "out_queue", 0},
			stat{"alpha", name, "out_queue_bytes", 0},
			stat{"alpha", name, "server_ejected_at", 0},
			stat{"alpha", name, "server_ejected", 0},
		)
		total += k
	}
	if total != n {
		t.Fatalf("the redis-servers hold %d keys, want %d", total, n)
	}
	if got, err := c.Do(append([]string{"MGET"}, mget...)...); err != nil || string(got.Raw()) != "*2\r\n$1\r\nv\r\n$1\r\nv\r\n" {
		t.Fatalf("MGET %q = %q, %v", mget, got.Raw(), err)
	}
	wants = append(wants,
		stat{"alpha", "", "fragments", 2},
		stat{"alpha", "", "forward_error", 0},
		stat{"alpha", "", "client_connections", 1},
		stat{"", "", "curr_connections", 1},
		stat{"", "", "total_connections", 3}, // the client and a connection to each server
	)
	checkStats(t, tp.stats, wants)

	// Every reply is in its server's histogram, and the pool's is their sum.
	families := scrapeMetrics(t, tp.stats)
	var poolBuckets []uint64
	for _, name := range tp.names["alpha"] {
		labels := map[string]string{"pool": "alpha", "server": name}
		h := metricWith(t, families, "shardproxy_server_request_duration_seconds", labels).GetHistogram()
		responses := metricValue(metricWith(t, families, "shardproxy_server_responses_total", labels))
		if float64(h.GetSampleCount()) != responses || h.GetSampleSum() <= 0 {
			t.Errorf("%s: latency count %d, sum %v; want %v replies taking some time", name, h.GetSampleCount(), h.GetSampleSum(), responses)
		}
		prev := uint64(0)
		for i, b := range h.Bucket {
			if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > h.GetSampleCount() {
				t.Errorf("%s: bucket le=%v = %d after %d: buckets must be cumulative up to the count %d", name, b.GetUpperBound(), b.GetCumulativeCount(), prev, h.GetSampleCount())
			}
			prev = b.GetCumulativeCount()
			if len(poolBuckets) <= i {
				poolBuckets = append(poolBuckets, 0)
			}
			poolBuckets[i] += b.GetCumulativeCount()
		}
	}
	h := metricWith(t, families, "shardproxy_pool_request_duration_seconds", map[string]string{"pool": "alpha"}).GetHistogram()
	var got []uint64
	for _, b := range h.Bucket {
		got = append(got, b.GetCumulativeCount())
	}
	if h.GetSampleCount() != 2*n+2 || !slices.Equal(got, poolBuckets) {
		t.Errorf("pool latency: count %d, buckets %v; want %d and the servers' sum %v", h.GetSampleCount(), got, 2*n+2, poolBuckets)
	}
}

// Client connections count while open, and by how they ended.
func TestStatsCountClients(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"server0"}})
	var clients []*proxytest.Conn
	for range 3 {
		c := tp.client(t, "alpha")
		if got, err := c.Do("PING"); err != nil || string(got.Raw()) != "+PONG\r\n" {
			t.Fatalf("PING = %q, %v", got.Raw(), err)
		}
		clients = append(clients, c)
	}
	checkStats(t, tp.stats, []stat{
		{"alpha", "", "client_connections", 3},
		{"", "", "curr_connections", 3},
		{"", "", "total_connections", 3},
		{"alpha", "", "client_eof", 0},
		{"alpha", "", "client_err", 0},
		{"alpha", "server0", "server_connections", 0},
	})

	clients[2].Close()
	waitStat(t, tp.stats, "alpha/client_eof", 1)
	// A malformed request is answered with an error and closes the client.
	if err := clients[1].WriteRaw([]byte("*1\r\n$-2\r\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := clients[1].Read(); err != nil || !strings.HasPrefix(string(got.Raw()), "-ERR Protocol error") {
		t.Fatalf("malformed request = %q, %v", got.Raw(), err)
	}
	waitStat(t, tp.stats, "alpha/client_err", 1)
	if got, err := clients[0].Do("GET", "k"); err != nil || string(got.Raw()) != "$-1\r\n" {
		t.Fatalf("GET = %q, %v", got.Raw(), err)
	}
	checkStats(t, tp.stats, []stat{
		{"alpha", "", "client_connections", 1},
		{"", "", "curr_connections", 1},
		{"", "", "total_connections", 4}, // and the connection to server0
		{"alpha", "", "client_eof", 1},
		{"alpha", "", "client_err", 1},
		{"alpha", "server0", "server_connections", 1},
	})
}

// A server that cannot be reached counts as a server error and a forward
// error and, with auto_eject_hosts, is ejected; a connection the server
// closes counts in server_eof, one that times out in server_timedout.
func TestStatsCountServerFailures(t *testing.T) {
	tp := startProxy(t,
		poolSpec{name: "alpha", extra: "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 3600000\n",
			servers: []string{"live", "dead:gone"}},
		poolSpec{name: "beta", servers: []string{"beta0"}},
		poolSpec{name: "gamma", extra: "  timeout: 200\n", servers: []string{"gamma0"}},
	)

	// Keys go to both servers of alpha until the dead one fails a request
	// and is ejected; from then on every key goes to the live one.
	c := tp.client(t, "alpha")
	before := time.Now()
	failed := 0
	for i := 0; i < 100; i++ {
		got, err := c.Do("GET", fmt.Sprintf("%d:key", i))
		if err != nil {
			t.Fatal(err)
		}
		if got.IsError() {
			if !strings.Contains(string(got.Raw()), "server gone") {
				t.Fatalf("GET %d:key = %q, want an error naming server gone", i, got.Raw())
			}
			failed++
		}
	}
	after := time.Now()
	if failed != 1 {
		t.Fatalf("%d requests failed, want 1: the first failure ejects the dead server", failed)
	}
	doc := statsDoc(t, tp.stats)
	if at := int64(doc["alpha/gone/server_ejected_at"].(float64)); at < before.UnixMicro() || at > after.UnixMicro() {
		t.Errorf("server_ejected_at = %d, want between %d and %d (microseconds)", at, before.UnixMicro(), after.UnixMicro())
	}
	ejectedAt := int64(doc["alpha/gone/server_ejected_at"].(float64))
	checkStats(t, tp.stats, []stat{
		{"alpha", "gone", "server_err", 1},
		{"alpha", "gone", "server_connections", 0},
		{"alpha", "gone", "server_ejected_at", ejectedAt},
		{"alpha", "gone", "server_ejected", 1},
		{"alpha", "live", "server_ejected", 0},
		{"alpha", "live", "server_err", 0},
		{"alpha", "", "server_ejects", 1},
		{"alpha", "", "forward_error", 1},
	})

	// redis-server closes the proxy's connection: CLIENT KILL from a
	// connection of our own (SKIPME yes) kills only the proxy's.
	beta := tp.client(t, "beta")
	if got, err := beta.Do("SET", "k", "v"); err != nil || string(got.Raw()) != "+OK\r\n" {
		t.Fatalf("SET = %q, %v", got.Raw(), err)
	}
	if got, err := tp.redis["beta/beta0"].Client(t).Do("CLIENT", "KILL", "TYPE", "normal"); err != nil || string(got.Raw()) != ":1\r\n" {
		t.Fatalf("CLIENT KILL = %q, %v", got.Raw(), err)
	}
	waitStat(t, tp.stats, "beta/beta0/server_eof", 1)
	checkStats(t, tp.stats, []stat{
		{"beta", "beta0", "server_connections", 0},
		{"beta", "beta0", "server_err", 0},
		{"beta", "", "forward_error", 0},
		{"beta", "", "server_ejects", 0},
	})

	// A paused server does not answer within gamma's timeout.
	r := tp.redis["gamma/gamma0"]
	r.Pause()
	t.Cleanup(r.Resume)
	if got, err := tp.client(t, "gamma").Do("GET", "k"); err != nil || !strings.Contains(string(got.Raw()), "timed out") {
		t.Fatalf("GET on a paused server = %q, %v; want a timeout", got.Raw(), err)
	}
	r.Resume()
	checkStats(t, tp.stats, []stat{
		{"gamma", "gamma0", "server_timedout", 1},
		{"gamma", "gamma0", "server_connections", 0},
		{"gamma", "gamma0", "out_queue", 0},
		{"gamma", "", "forward_error", 1},
	})
}

// out_queue_bytes counts the bytes of requests written to a server and not yet answered.
func TestStatsOutQueueBytesThroughTraffic(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"server0"}})
	c := tp.client(t, "alpha")
	if got, err := c.Do("SET", "k", "v"); err != nil || string(got.Raw()) != "+OK\r\n" { // connects
		t.Fatalf("SET = %q, %v", got.Raw(), err)
	}
	r := tp.redis["alpha/server0"]
	r.Pause()
	t.Cleanup(r.Resume)
	c.Send("GET", "k")
	c.Send("SET", "k2", "a longer value")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := cmdLen("GET", "k") + cmdLen("SET", "k2", "a longer value")
	prefix := "alpha/server0/"
	deadline := time.Now().Add(10 * time.Second)
	for statsValue(t, tp.stats, prefix+"out_queue") != 2 || statsValue(t, tp.stats, prefix+"in_queue") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("out_queue %d, in_queue %d: the two requests were never written to the paused server",
				statsValue(t, tp.stats, prefix+"out_queue"), statsValue(t, tp.stats, prefix+"in_queue"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkStats(t, tp.stats, []stat{
		{"alpha", "server0", "out_queue_bytes", want},
		{"alpha", "server0", "in_queue_bytes", 0},
	})
	r.Resume()
	for _, want := range []string{"$1\r\nv\r\n", "+OK\r\n"} {
		if rep, err := c.Read(); err != nil || string(rep.Raw()) != want {
			t.Fatalf("reply = %q, %v; want %q", rep.Raw(), err, want)
		}
	}
	checkStats(t, tp.stats, []stat{
		{"alpha", "server0", "out_queue", 0},
		{"alpha", "server0", "out_queue_bytes", 0},
		{"alpha", "server0", "in_queue", 0},
		{"alpha", "server0", "in_queue_bytes", 0},
	})
}

// A request in flight on a transaction's connection counts in out_queue and out_queue_bytes too.
func TestStatsOutQueueBytesOnTransactionConnection(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"server0"}})
	c := tp.client(t, "alpha")
	if got, err := c.Do("WATCH", "k"); err != nil || string(got.Raw()) != "+OK\r\n" { // pins a connection
		t.Fatalf("WATCH = %q, %v", got.Raw(), err)
	}
	r := tp.redis["alpha/server0"]
	r.Pause()
	t.Cleanup(r.Resume)
	c.Send("MULTI") // on the connection WATCH pinned
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	waitStat(t, tp.stats, "alpha/server0/out_queue", 1)
	checkStats(t, tp.stats, []stat{{"alpha", "server0", "out_queue_bytes", cmdLen("MULTI")}})
	r.Resume()
	if rep, err := c.Read(); err != nil || string(rep.Raw()) != "+OK\r\n" {
		t.Fatalf("MULTI = %q, %v", rep.Raw(), err)
	}
	checkStats(t, tp.stats, []stat{
		{"alpha", "server0", "out_queue", 0},
		{"alpha", "server0", "out_queue_bytes", 0},
	})
}
