package proxy

import (
	"context"
	"fmt"
	"math"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// arrayElems returns the raw elements of an array reply of bulk strings.
func arrayElems(t *testing.T, reply string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(reply, "\r\n"), "\r\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "*") {
		t.Fatalf("not an array: %q", reply)
	}
	var elems []string
	for i := 2; i < len(lines); i += 2 {
		elems = append(elems, lines[i])
	}
	if fmt.Sprintf("*%d", len(elems)) != lines[0] {
		t.Fatalf("array %q has %d elements", reply, len(elems))
	}
	return elems
}

// fillPool sets n keys through the proxy and returns them.
func fillPool(t *testing.T, c *proxytest.Conn, prefix string, n int) []string {
	t.Helper()
	var req [][]string
	var keys []string
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		keys = append(keys, k)
		req = append(req, []string{"SET", k, "v"})
	}
	for i, r := range pipeline(t, c, req) {
		if r != "+OK\r\n" {
			t.Fatalf("SET %s = %q", keys[i], r)
		}
	}
	return keys
}

// DBSIZE is the sum of the servers' and KEYS their keys one server after
// the other, in server order.
func TestProxyDBSizeAndKeysCoverEveryServer(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	fillPool(t, c, "k", 60)
	fillPool(t, c, "other", 5)
	for _, r := range tp.redises {
		do(t, c, "SET", tp.keyOn(t, r, "each"), "v")
	}
	var sum int
	var all, ks []string
	for i, r := range tp.redises {
		rc := r.Client(t)
		var n int
		if _, err := fmt.Sscanf(do(t, rc, "DBSIZE"), ":%d", &n); err != nil {
			t.Fatalf("server%d DBSIZE: %v", i, err)
		}
		if n == 0 {
			t.Fatalf("server%d has no keys; the test needs keys on every server (proxy DBSIZE %q)", i, do(t, c, "DBSIZE"))
		}
		sum += n
		all = append(all, arrayElems(t, do(t, rc, "KEYS", "*"))...)
		ks = append(ks, arrayElems(t, do(t, rc, "KEYS", "k*"))...)
	}
	if got, want := do(t, c, "DBSIZE"), fmt.Sprintf(":%d\r\n", sum); got != want || sum != 68 {
		t.Fatalf("DBSIZE = %q, the servers hold %d keys", got, sum)
	}
	if got := arrayElems(t, do(t, c, "KEYS", "*")); !slices.Equal(got, all) {
		t.Fatalf("KEYS * = %v, want the servers' in server order %v", got, all)
	}
	if got := arrayElems(t, do(t, c, "keys", "k*")); !slices.Equal(got, ks) || len(got) != 60 {
		t.Fatalf("KEYS k* = %v, want %v", got, ks)
	}
	if got := do(t, c, "KEYS", "nosuch*"); got != "*0\r\n" {
		t.Fatalf("KEYS nosuch* = %q, want an empty array", got)
	}
	if got := do(t, c, "DBSIZE", "x"); got != "-ERR wrong number of arguments for 'dbsize' command\r\n" {
		t.Fatalf("DBSIZE x = %q", got)
	}
}

// FLUSHDB and FLUSHALL empty every server and answer +OK once; a bad
// option gets the servers' error.
func TestProxyFlushEveryServer(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	for _, flush := range [][]string{{"FLUSHDB"}, {"FLUSHDB", "ASYNC"}, {"flushall"}, {"FLUSHALL", "SYNC"}} {
		fillPool(t, c, "f", 30)
		if got := do(t, c, flush...); got != "+OK\r\n" {
			t.Fatalf("%v = %q, want +OK", flush, got)
		}
		for i, r := range tp.redises {
			if got := do(t, r.Client(t), "DBSIZE"); got != ":0\r\n" {
				t.Fatalf("after %v server%d DBSIZE = %q, want 0", flush, i, got)
			}
		}
	}
	fillPool(t, c, "f", 10)
	if got := do(t, c, "FLUSHDB", "NOW"); got != "-ERR syntax error\r\n" {
		t.Fatalf("FLUSHDB NOW = %q, want the servers' syntax error", got)
	}
	if got := do(t, c, "DBSIZE"); got != ":10\r\n" {
		t.Fatalf("DBSIZE after a refused FLUSHDB = %q, want 10", got)
	}
}

// RANDOMKEY finds a key wherever it is, and is null only when the pool is
// empty.
func TestProxyRandomKeyFromAServerWithKeys(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	if got := do(t, c, "RANDOMKEY"); got != "$-1\r\n" {
		t.Fatalf("RANDOMKEY on an empty pool = %q, want null", got)
	}
	for i, r := range tp.redises {
		do(t, c, "FLUSHALL")
		key := tp.keyOn(t, r, "rk")
		do(t, c, "SET", key, "v")
		for range 20 {
			if got := do(t, c, "RANDOMKEY"); got != bulk(key) {
				t.Fatalf("RANDOMKEY with only %s on server%d = %q", key, i, got)
			}
		}
	}
	do(t, c, "FLUSHALL")
	keys := fillPool(t, c, "r", 30)
	seen := map[string]bool{}
	for range 100 {
		got := do(t, c, "RANDOMKEY")
		k := strings.TrimSpace(got[strings.IndexByte(got, '\n')+1:])
		if !slices.Contains(keys, k) {
			t.Fatalf("RANDOMKEY = %q, not a key of the pool", got)
		}
		seen[tp.owner(t, k).Addr] = true
	}
	if len(seen) < 2 {
		t.Fatalf("100 RANDOMKEYs all came from one server of three")
	}
}

// Whole-pool commands are refused inside MULTI: a transaction runs on one
// server.
func TestProxyWholePoolCommandsInMulti(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	for _, cmd := range [][]string{{"DBSIZE"}, {"KEYS", "*"}, {"FLUSHDB"}, {"FLUSHALL"}, {"RANDOMKEY"}, {"SCAN", "0"}} {
		do(t, c, "MULTI")
		want := "-ERR '" + strings.ToLower(cmd[0]) + "' is not allowed inside MULTI by shardproxy: it goes to every server\r\n"
		if got := do(t, c, cmd...); got != want {
			t.Fatalf("%v inside MULTI = %q, want %q", cmd, got, want)
		}
		if got := do(t, c, "EXEC"); got != "-"+msgExecAbort+"\r\n" {
			t.Fatalf("EXEC after %v = %q", cmd, got)
		}
	}
}

// Whole-pool commands allocate nothing per request once the client's
// pools are warm.
func TestProxyWholePoolAllocatesNothing(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	fillPool(t, c, "a", 3)
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const depth = 16
	var req []byte
	for i := 0; i < depth; i++ {
		req = proxytest.AppendCommand(req, "DBSIZE")
		req = proxytest.AppendCommand(req, "KEYS", "nosuch*")
		req = proxytest.AppendCommand(req, "SCAN", "0", "MATCH", "nosuch*", "COUNT", "1000")
	}
	scanReply := do(t, c, "SCAN", "0", "MATCH", "nosuch*", "COUNT", "1000")
	pipelineAllocatesNothing(t, conn, req, ":3\r\n*0\r\n"+scanReply, depth)
}

// A SCAN cursor round-trips every server cursor up to the documented
// bound and refuses cursors of another server list.
func TestScanCursorEncoding(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 1000} {
		for _, tag := range []uint64{0, 1, scanTagSpace - 1} {
			bound := (math.MaxUint64 - tag) / scanTagSpace
			for server := 0; server < n; server += max(1, n/3) {
				maxCur := (bound - uint64(server)) / uint64(n)
				for _, cur := range []uint64{0, 1, 2, 1 << 31, 1<<32 - 1, 1 << 40, maxCur - 1, maxCur} {
					if cur == 0 && server == 0 {
						continue // the start of the walk, sent as 0
					}
					c, ok := encodeScanCursor(cur, server, n, tag)
					if !ok || c == 0 {
						t.Fatalf("encode(%d, %d/%d, tag %d) = %d, %v", cur, server, n, tag, c, ok)
					}
					gs, gc, ok := decodeScanCursor(c, n, tag)
					if !ok || gs != server || gc != cur {
						t.Fatalf("decode(encode(%d, %d/%d)) = %d, %d, %v", cur, server, n, gs, gc, ok)
					}
					if _, _, ok := decodeScanCursor(c, n, (tag+1)%scanTagSpace); ok {
						t.Fatalf("cursor %d accepted with another server list's tag", c)
					}
				}
				if _, ok := encodeScanCursor(maxCur+1, server, n, tag); ok {
					t.Fatalf("encode(%d, %d/%d) fits, past the bound", maxCur+1, server, n)
				}
				if _, ok := encodeScanCursor(math.MaxUint64, server, n, tag); ok {
					t.Fatalf("encode(MaxUint64, %d/%d) fits", server, n)
				}
			}
		}
	}
	for _, bad := range []string{"", "-1", "x", "18446744073709551616", "1.5", "+1"} {
		if _, ok := parseCursor([]byte(bad)); ok {
			t.Fatalf("parseCursor(%q) ok", bad)
		}
	}
	if c, ok := parseCursor([]byte("18446744073709551615")); !ok || c != math.MaxUint64 {
		t.Fatalf("parseCursor(MaxUint64) = %d, %v", c, ok)
	}
}

// unionKeys is every key of the servers, from their own KEYS *.
func unionKeys(t *testing.T, tp *testPool) []string {
	var all []string
	for _, r := range tp.redises {
		all = append(all, arrayElems(t, do(t, r.Client(t), "KEYS", "*"))...)
	}
	slices.Sort(all)
	return all
}

// scanAll walks SCAN through c with the given options and returns every
// key it listed, in order.
func scanAll(t *testing.T, c *proxytest.Conn, opts ...string) []string {
	t.Helper()
	var keys []string
	cursor := "0"
	for range 100000 {
		r, err := c.Do(append([]string{"SCAN", cursor}, opts...)...)
		if err != nil {
			t.Fatalf("SCAN %s: %v", cursor, err)
		}
		raw := string(r.Raw())
		if strings.HasPrefix(raw, "-") {
			t.Fatalf("SCAN %s = %q", cursor, raw)
		}
		lines := strings.Split(raw, "\r\n")
		cursor = lines[2]
		rest := strings.Join(lines[3:], "\r\n")
		keys = append(keys, arrayElems(t, rest)...)
		if cursor == "0" {
			return keys
		}
	}
	t.Fatalf("SCAN did not end")
	return nil
}

// SCAN lists every key of every server exactly once, with MATCH, COUNT
// and TYPE passed on to the servers.
func TestProxyScanListsEveryKeyOnce(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	fillPool(t, c, "s", 1200)
	do(t, c, "RPUSH", "list1", "x")
	do(t, c, "RPUSH", "list2", "x")
	want := unionKeys(t, tp)
	if len(want) != 1202 {
		t.Fatalf("servers hold %d keys, want 1202", len(want))
	}
	for _, opts := range [][]string{nil, {"COUNT", "7"}, {"COUNT", "5000"}, {"MATCH", "s1*", "COUNT", "50"}, {"TYPE", "list"}} {
		got := scanAll(t, c, opts...)
		slices.Sort(got)
		w := want
		switch {
		case len(opts) > 0 && opts[0] == "MATCH":
			w = slices.DeleteFunc(slices.Clone(want), func(k string) bool { return !strings.HasPrefix(k, "s1") })
		case len(opts) > 0 && opts[0] == "TYPE":
			w = []string{"list1", "list2"}
		}
		if !slices.Equal(got, w) {
			t.Fatalf("SCAN %v listed %d keys, want the servers' %d exactly once", opts, len(got), len(w))
		}
	}
	// go-redis' iterator.
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	ctx := context.Background()
	var got []string
	it := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for it.Next(ctx) {
		got = append(got, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("go-redis Scan: %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("go-redis Scan listed %d keys, want the servers' %d exactly once", len(got), len(want))
	}
	// redis-cli --scan.
	host, port, _ := net.SplitHostPort(tp.addr)
	out, err := exec.Command("redis-cli", "-h", host, "-p", port, "--scan").Output()
	if err != nil {
		t.Fatalf("redis-cli --scan: %v\n%s", err, err.(*exec.ExitError).Stderr)
	}
	got = strings.Fields(string(out))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("redis-cli --scan listed %d keys, want the servers' %d exactly once", len(got), len(want))
	}
	// redis-py's scan_iter.
	script := "import redis,sys\nfor k in redis.Redis(host=sys.argv[1], port=int(sys.argv[2])).scan_iter(count=100): print(k.decode())"
	out, err = exec.Command("/usr/bin/python3", "-c", script, host, port).Output()
	if err != nil {
		t.Fatalf("redis-py scan_iter: %v", err)
	}
	got = strings.Fields(string(out))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("redis-py scan_iter listed %d keys, want the servers' %d exactly once", len(got), len(want))
	}
}

// Bad SCAN cursors and options get Redis' errors; an empty pool scans to
// 0 at once.
func TestProxyScanErrors(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	if got := scanAll(t, c); len(got) != 0 {
		t.Fatalf("SCAN on an empty pool listed %q", got)
	}
	for _, bad := range []string{"x", "-1", "18446744073709551616"} {
		if got := do(t, c, "SCAN", bad); got != "-"+msgInvalidCursor+"\r\n" {
			t.Fatalf("SCAN %s = %q, want %q", bad, got, msgInvalidCursor)
		}
	}
	tag := tp.srv.poolList()[0].scanTag
	other := (tag+1)%scanTagSpace + scanTagSpace*5
	if got := do(t, c, "SCAN", fmt.Sprint(other)); got != "-"+msgStaleCursor+"\r\n" {
		t.Fatalf("SCAN with another server list's cursor = %q, want %q", got, msgStaleCursor)
	}
	if got := do(t, c, "SCAN", "0", "COUNT", "0"); got != "-ERR syntax error\r\n" {
		t.Fatalf("SCAN 0 COUNT 0 = %q, want the server's syntax error", got)
	}
	if got := do(t, c, "SCAN"); got != "-ERR wrong number of arguments for 'scan' command\r\n" {
		t.Fatalf("SCAN = %q", got)
	}
}

// A SCAN cursor survives a reload that keeps the server list, and is
// refused after one that changes it, rather than skipping keys.
func TestProxyScanCursorAcrossReload(t *testing.T) {
	a, b, c := proxytest.StartRedis(t), proxytest.StartRedis(t), proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	three := []string{a.Addr + ":1 s0", b.Addr + ":1 s1", c.Addr + ":1 s2"}
	srv := startServer(t, poolYAML(listen, "", three...), Options{})
	conn := proxytest.Dial(t, listen)
	fillPool(t, conn, "x", 300)
	first := func() string {
		lines := strings.Split(do(t, conn, "SCAN", "0", "COUNT", "10"), "\r\n")
		if lines[2] == "0" {
			t.Fatalf("SCAN 0 COUNT 10 ended the walk at once")
		}
		return lines[2]
	}
	cursor := first()
	if err := srv.Reload(mustParse(t, poolYAML(listen, "  timeout: 3000\n", three...))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := do(t, conn, "SCAN", cursor); strings.HasPrefix(got, "-") {
		t.Fatalf("SCAN %s after a reload with the same servers = %q", cursor, got)
	}
	cursor = first()
	// Two of the servers, the second renamed until the list's fingerprint
	// differs: a fingerprint the old list shares (1 in 1024) would keep the
	// cursor valid, which the README admits.
	var two *config.Config
	for i := 0; two == nil; i++ {
		if i == 64 {
			t.Fatal("no renamed two-server list with a fingerprint of its own")
		}
		cand := mustParse(t, poolYAML(listen, "", three[0], fmt.Sprintf("%s:1 s1r%d", b.Addr, i)))
		if scanTag(cand.Pools[0].Servers) != srv.poolList()[0].scanTag {
			two = cand
		}
	}
	if err := srv.Reload(two); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := do(t, conn, "SCAN", cursor); got != "-"+msgStaleCursor+"\r\n" {
		t.Fatalf("SCAN %s after a reload that dropped a server = %q, want %q", cursor, got, msgStaleCursor)
	}
}

// A server that is down makes whole-pool commands an error naming it,
// and a SCAN that reaches it too, rather than a walk that skips its keys;
// keyed commands on the other servers still work.
func TestProxyWholePoolServerDown(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	fillPool(t, c, "d", 100)
	live := tp.keyOn(t, tp.redises[0], "live")
	tp.redises[1].Stop()
	wantErr := "-ERR server server1 (" + tp.redises[1].Addr + "): "
	got := pipeline(t, c, [][]string{{"DBSIZE"}, {"KEYS", "*"}, {"RANDOMKEY"}, {"FLUSHDB"}, {"SET", live, "1"}})
	for i := range 4 {
		if !strings.HasPrefix(got[i], wantErr) {
			t.Errorf("reply %d = %q, want prefix %q", i, got[i], wantErr)
		}
	}
	if got[4] != "+OK\r\n" {
		t.Errorf("SET on a live server = %q", got[4])
	}
	cursor := "0"
	for range 1000 {
		raw := do(t, c, "SCAN", cursor, "COUNT", "1000")
		if strings.HasPrefix(raw, wantErr) {
			return
		}
		if cursor = strings.Split(raw, "\r\n")[2]; cursor == "0" {
			t.Fatalf("SCAN ended without reaching the stopped server")
		}
	}
	t.Fatalf("SCAN did not end")
}
