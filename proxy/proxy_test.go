package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// testPool is a running shardproxy pool in front of real redis-servers.
type testPool struct {
	srv     *Server
	cfg     *config.Config
	addr    string
	redises []*proxytest.Redis
}

// startProxy starts n redis-servers and shardproxy with one pool over them;
// extra is added to the pool's YAML (indented by two spaces per line).
func startProxy(t *testing.T, n int, extra string, opts ...proxytest.RedisOption) *testPool {
	t.Helper()
	tp := &testPool{}
	var servers strings.Builder
	for i := 0; i < n; i++ {
		r := proxytest.StartRedis(t, opts...)
		tp.redises = append(tp.redises, r)
		fmt.Fprintf(&servers, "    - %s:1 server%d\n", r.Addr, i)
	}
	port := proxytest.FreePort(t)
	yaml := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n%s  servers:\n%s", port, extra, servers.String())
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, yaml)
	}
	srv, err := NewServer(cfg, Options{})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	tp.srv, tp.cfg, tp.addr = srv, cfg, fmt.Sprintf("127.0.0.1:%d", port)
	return tp
}

func (tp *testPool) client(t *testing.T) *proxytest.Conn {
	t.Helper()
	return proxytest.Dial(t, tp.addr)
}

// owner returns the redis-server that the pool's ring puts key on.
func (tp *testPool) owner(t *testing.T, key string) *proxytest.Redis {
	t.Helper()
	p := tp.srv.poolList()[0]
	idx := p.layout.Load().Lookup([]byte(key))
	addr := p.servers[idx].cfg.Addr
	for _, r := range tp.redises {
		if r.Addr == addr {
			return r
		}
	}
	t.Fatalf("no redis at %s", addr)
	return nil
}

// keyOn returns the first key "<prefix><n>" that the ring puts on r.
func (tp *testPool) keyOn(t *testing.T, r *proxytest.Redis, prefix string) string {
	t.Helper()
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s%d", prefix, i); tp.owner(t, k) == r {
			return k
		}
	}
}

func do(t *testing.T, c *proxytest.Conn, args ...string) string {
	t.Helper()
	r, err := c.Do(args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return string(r.Raw())
}

func TestProxyRoutesKeysToTheirServers(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("key:%d", i)
		if got := do(t, c, "SET", key, "v"+key); got != "+OK\r\n" {
			t.Fatalf("SET %s = %q", key, got)
		}
	}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("key:%d", i)
		want := fmt.Sprintf("$%d\r\nv%s\r\n", len(key)+1, key)
		if got := do(t, tp.owner(t, key).Client(t), "GET", key); got != want {
			t.Fatalf("GET %s on its owner = %q, want %q", key, got, want)
		}
		if got := do(t, c, "GET", key); got != want {
			t.Fatalf("GET %s through the proxy = %q, want %q", key, got, want)
		}
	}
}

func TestProxyPipelineKeepsOrder(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	const n = 10000
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("p:%d", (i/4)%500)
		switch i % 4 {
		case 0:
			c.Send("SET", key, fmt.Sprint(i))
		case 1:
			c.Send("GET", key)
		case 2:
			c.Send("INCR", "counter:"+key)
		default:
			c.Send("PING")
		}
	}
	last := map[string]int{}
	counters := map[string]int{}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("p:%d", (i/4)%500)
		r, err := c.Read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		var want string
		switch i % 4 {
		case 0:
			want = "+OK\r\n"
			last[key] = i
		case 1:
			v := fmt.Sprint(last[key])
			want = fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)
		case 2:
			counters[key]++
			want = fmt.Sprintf(":%d\r\n", counters[key])
		default:
			want = "+PONG\r\n"
		}
		if string(r.Raw()) != want {
			t.Fatalf("reply %d = %q, want %q", i, r.Raw(), want)
		}
	}
}

func TestProxyMultiKeyCommandsMergeLikeOneRedis(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	single := proxytest.StartRedis(t).Client(t)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "a"}
	script := [][]string{
		append([]string{"MSET"}, "a", "1", "b", "2", "c", "3", "d", "4"),
		append([]string{"MGET"}, keys...),
		append([]string{"EXISTS"}, keys...),
		append([]string{"TOUCH"}, keys...),
		append([]string{"DEL"}, "a", "c", "zz", "d"),
		append([]string{"MGET"}, keys...),
		append([]string{"UNLINK"}, keys...),
		append([]string{"MGET"}, "a"),
	}
	for _, cmd := range script {
		want := do(t, single, cmd...)
		if got := do(t, c, cmd...); got != want {
			t.Errorf("%v = %q, one redis says %q", cmd, got, want)
		}
	}
}

// msgBadNumKeys is redis-server's reply to EVAL with more keys than
// arguments, which the proxy passes on from the server.
const msgBadNumKeys = "ERR Number of keys can't be greater than number of args"

func TestProxyLocalCommands(t *testing.T) {
	tp := startProxy(t, 2, "")
	c := tp.client(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"PING", "hi"}, "$2\r\nhi\r\n"},
		{[]string{"ECHO", "x"}, "$1\r\nx\r\n"},
		{[]string{"SELECT", "0"}, "+OK\r\n"},
		{[]string{"HELLO", "4"}, "-" + msgNoProto + "\r\n"},
		{[]string{"CLIENT", "SETNAME", "app"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$3\r\napp\r\n"},
		{[]string{"CLIENT", "SETINFO", "lib-name", "x"}, "+OK\r\n"},
		{[]string{"TIME"}, "-" + unsupportedCommand(command.Lookup([]byte("time"))) + "\r\n"},
		{[]string{"GET"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"NOSUCH", "a"}, "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n"},
		{[]string{"AUTH", "x"}, "-" + msgNoPassword + "\r\n"},
		{[]string{"EVAL", "return 1", "0"}, ":1\r\n"},
		{[]string{"EVAL", "return 1", "5", "k"}, "-" + msgBadNumKeys + "\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
	}
	for _, tc := range tests {
		if got := do(t, c, tc.args...); got != tc.want {
			t.Errorf("%v = %q, want %q", tc.args, got, tc.want)
		}
	}
	if got := do(t, c, "INFO"); !strings.Contains(got, "# Server\r\nredis_version:") {
		t.Errorf("INFO = %q, want a # Server section", got)
	}
}

func TestProxyAuth(t *testing.T) {
	tp := startProxy(t, 2, "  redis_auth: s3cret\n", proxytest.RedisPassword("s3cret"))
	c := tp.client(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"GET", "k"}, "-" + msgNoAuth + "\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"AUTH", "wrong"}, "-" + msgWrongPass + "\r\n"},
		{[]string{"GET", "k"}, "-" + msgNoAuth + "\r\n"},
		{[]string{"AUTH", "s3cret"}, "+OK\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$1\r\nv\r\n"},
	}
	for _, s := range steps {
		if got := do(t, c, s.args...); got != s.want {
			t.Fatalf("%v = %q, want %q", s.args, got, s.want)
		}
	}
	c2 := tp.client(t)
	if got := do(t, c2, "AUTH", "default", "s3cret"); got != "+OK\r\n" {
		t.Fatalf("AUTH default s3cret = %q", got)
	}
}

func TestProxyTransactionOnOneServer(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	c := tp.client(t)
	for _, s := range []struct {
		args []string
		want string
	}{
		{[]string{"WATCH", "{u1}:a"}, "+OK\r\n"},
		{[]string{"MULTI"}, "+OK\r\n"},
		{[]string{"SET", "{u1}:a", "1"}, "+QUEUED\r\n"},
		{[]string{"INCR", "{u1}:b"}, "+QUEUED\r\n"},
		{[]string{"EXEC"}, "*2\r\n+OK\r\n:1\r\n"},
		{[]string{"GET", "{u1}:a"}, "$1\r\n1\r\n"},
		{[]string{"EXEC"}, "-ERR EXEC without MULTI\r\n"},
	} {
		if got := do(t, c, s.args...); got != s.want {
			t.Fatalf("%v = %q, want %q", s.args, got, s.want)
		}
	}

	// Find a key on another server than {u1}.
	ring := tp.srv.poolList()[0].layout.Load()
	other := ""
	for i := 0; other == ""; i++ {
		k := fmt.Sprintf("other%d", i)
		if ring.Lookup([]byte(k)) != ring.Lookup([]byte("u1")) {
			other = k
		}
	}
	for _, s := range []struct {
		args []string
		want string
	}{
		{[]string{"MULTI"}, "+OK\r\n"},
		{[]string{"SET", "{u1}:a", "2"}, "+QUEUED\r\n"},
		{[]string{"SET", other, "x"}, "-" + msgCrossSlot + "\r\n"},
		{[]string{"EXEC"}, "-" + msgExecAbort + "\r\n"},
		{[]string{"GET", "{u1}:a"}, "$1\r\n1\r\n"},
	} {
		if got := do(t, c, s.args...); got != s.want {
			t.Fatalf("%v = %q, want %q", s.args, got, s.want)
		}
	}
}

func TestProxyProtocolErrorClosesOnlyThatClient(t *testing.T) {
	tp := startProxy(t, 2, "")
	good := tp.client(t)
	bad := tp.client(t)
	bad.WriteRaw([]byte("*1\r\n$-2\r\n"))
	r, err := bad.Read()
	if err != nil || !r.IsError() {
		t.Fatalf("malformed request: reply %q, err %v; want an error reply", r.Raw(), err)
	}
	if _, err := bad.Read(); err == nil {
		t.Fatalf("connection still open after a protocol error")
	}
	if got := do(t, good, "PING"); got != "+PONG\r\n" {
		t.Fatalf("other client: PING = %q", got)
	}
}

func TestProxyServerDownFailsOnlyItsKeys(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	dead := tp.redises[0]
	dead.Stop()
	deadKey, liveKey := tp.keyOn(t, dead, "k"), tp.keyOn(t, tp.redises[1], "k")
	c.Send("SET", liveKey, "1")
	c.Send("GET", deadKey)
	c.Send("GET", liveKey)
	want := []string{"+OK\r\n", "-ERR server server0 (" + dead.Addr + "): ", "$1\r\n1\r\n"}
	for i, w := range want {
		r, err := c.Read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if !strings.HasPrefix(string(r.Raw()), w) {
			t.Fatalf("reply %d = %q, want prefix %q", i, r.Raw(), w)
		}
	}
}

func TestProxyTimeoutResetsServerConnection(t *testing.T) {
	tp := startProxy(t, 2, "  timeout: 200\n")
	c := tp.client(t)
	key := tp.keyOn(t, tp.redises[0], "t")
	if got := do(t, c, "SET", key, "before"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	tp.redises[0].Pause()
	got := do(t, c, "GET", key)
	if !strings.Contains(got, "timed out") {
		tp.redises[0].Resume()
		t.Fatalf("GET on a stopped server = %q, want a timeout error", got)
	}
	tp.redises[0].Resume()
	// The late reply to the timed-out GET must not be matched to this one.
	if got := do(t, c, "SET", key, "after"); got != "+OK\r\n" {
		t.Fatalf("SET after resume = %q", got)
	}
	if got := do(t, c, "GET", key); got != "$5\r\nafter\r\n" {
		t.Fatalf("GET after resume = %q", got)
	}
}

func TestProxyEjectionAndReturn(t *testing.T) {
	tp := startProxy(t, 3, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 700\n")
	c := tp.client(t)
	dead := tp.redises[0]
	key := tp.keyOn(t, dead, "e")
	dead.Stop()
	if got := do(t, c, "SET", key, "1"); !strings.HasPrefix(got, "-ERR server server0") {
		t.Fatalf("SET on a stopped server = %q, want an error naming it", got)
	}
	// The failure ejected server0: its keys now live elsewhere.
	if got := do(t, c, "SET", key, "elsewhere"); got != "+OK\r\n" {
		t.Fatalf("SET after ejection = %q", got)
	}
	if owner := tp.owner(t, key); owner == dead {
		t.Fatalf("ring still places %q on the ejected server", key)
	}
	if n := tp.srv.poolList()[0].stats.ServerEjects.Load(); n != 1 {
		t.Fatalf("server_ejects = %d, want 1", n)
	}
	dead.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for tp.owner(t, key) != dead {
		if time.Now().After(deadline) {
			t.Fatalf("server0 did not return to the ring after server_retry_timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := do(t, c, "SET", key, "back"); got != "+OK\r\n" {
		t.Fatalf("SET after return = %q", got)
	}
	if got := do(t, dead.Client(t), "GET", key); got != "$4\r\nback\r\n" {
		t.Fatalf("GET on the returned server = %q", got)
	}
}

// A server killed mid-run fails only the requests in flight to it; the
// proxy reconnects when it is back.
func TestProxyServerKilledMidRun(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	victim := tp.redises[1]
	key := tp.keyOn(t, victim, "m")
	if got := do(t, c, "SET", key, "1"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	victim.Kill()
	got := do(t, c, "GET", key)
	if !strings.HasPrefix(got, "-ERR server server1") {
		t.Fatalf("GET on a killed server = %q, want an error naming it", got)
	}
	victim.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = do(t, c, "SET", key, "2")
		if got == "+OK\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect after the server came back: %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestProxyClientConnectionsLimit(t *testing.T) {
	tp := startProxy(t, 1, "  client_connections: 2\n")
	a, b := tp.client(t), tp.client(t)
	do(t, a, "PING")
	do(t, b, "PING")
	over := tp.client(t)
	r, err := over.Read()
	if err != nil || string(r.Raw()) != "-ERR max number of clients reached\r\n" {
		t.Fatalf("third client: %q, %v; want the max clients error", r.Raw(), err)
	}
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tp.srv.poolList()[0].stats.ClientConnections.Load() > 1 {
		if time.Now().After(deadline) {
			t.Fatal("closed client still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := do(t, tp.client(t), "PING"); got != "+PONG\r\n" {
		t.Fatalf("client after one left = %q", got)
	}
}

// Declared sizes are checked before anything is allocated: a request that
// announces 2 GB or a billion arguments gets an error at once.
func TestProxyHugeDeclaredRequests(t *testing.T) {
	tp := startProxy(t, 1, "")
	for _, req := range []string{"*1\r\n$2147483648\r\n", "*1000000000\r\n", "*2\r\n$3\r\nGET\r\n$-5\r\n"} {
		c := tp.client(t)
		c.WriteRaw([]byte(req))
		r, err := c.Read()
		if err != nil || !strings.HasPrefix(string(r.Raw()), "-ERR Protocol error: ") {
			t.Errorf("%q: reply %q, %v; want a protocol error", req, r.Raw(), err)
		}
	}
	if got := do(t, tp.client(t), "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after bad clients = %q", got)
	}
}

func TestProxyUnixSocketListen(t *testing.T) {
	r := proxytest.StartRedis(t)
	sock := fmt.Sprintf("/tmp/shardproxy-test-%d.sock", proxytest.FreePort(t))
	t.Cleanup(func() { os.Remove(sock) })
	startServer(t, fmt.Sprintf("alpha:\n  listen: %s 0600\n  redis: true\n  servers:\n    - %s:1\n", sock, r.Addr), Options{})
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, mode %v; want 0600", sock, err, fi.Mode())
	}
	c := proxytest.Dial(t, sock)
	if got := do(t, c, "SET", "u", "1"); got != "+OK\r\n" {
		t.Fatalf("SET over the unix socket = %q", got)
	}
}

// backlog is the listen(2) backlog and tcpkeepalive turns keepalive on for
// client connections, as in nutcracker; ss(8) shows both.
func TestProxyBacklogAndKeepalive(t *testing.T) {
	for _, keepalive := range []bool{false, true} {
		tp := startProxy(t, 1, fmt.Sprintf("  backlog: 7\n  tcpkeepalive: %v\n", keepalive))
		port := tp.addr[strings.LastIndexByte(tp.addr, ':')+1:]
		out, err := exec.Command("ss", "-Hltn", "sport = :"+port).CombinedOutput()
		if err != nil {
			t.Fatalf("ss (iproute2) is needed: %v\n%s", err, out)
		}
		if f := strings.Fields(string(out)); len(f) < 3 || f[2] != "7" {
			t.Fatalf("listening socket: %q, want backlog (Send-Q) 7", out)
		}
		c := tp.client(t)
		do(t, c, "PING")
		out, _ = exec.Command("ss", "-Htno", "state", "established", "sport = :"+port).CombinedOutput()
		if got := strings.Contains(string(out), "keepalive"); got != keepalive {
			t.Fatalf("tcpkeepalive %v: client connection %q", keepalive, out)
		}
	}
}

// preconnect dials every server connection at start; server_connections
// is how many each server gets, shared by all clients.
func TestProxyPreconnectAndServerConnections(t *testing.T) {
	tp := startProxy(t, 2, "  preconnect: true\n  server_connections: 3\n")
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range tp.srv.poolList()[0].servers {
		for s.stats.Connections.Load() != 3 {
			if time.Now().After(deadline) {
				t.Fatalf("server %s: %d connections after preconnect, want 3", s.cfg.Name, s.stats.Connections.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	clients := make([]*proxytest.Conn, 10)
	for i := range clients {
		clients[i] = tp.client(t)
		for j := 0; j < 20; j++ {
			do(t, clients[i], "SET", fmt.Sprintf("k%d", j), "v")
		}
	}
	for _, r := range tp.redises {
		info := do(t, r.Client(t), "INFO", "clients")
		// Three proxy connections plus this one.
		if !strings.Contains(info, "connected_clients:4\r\n") {
			t.Fatalf("redis %s: %q, want 3 proxy connections", r.Addr, info)
		}
	}
}

// Shutdown is bounded even when a server never answers and the pool has
// no timeout: the waiting request gets an error and the client returns.
func TestProxyShutdownWithHungServer(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	do(t, c, "SET", "k", "v")
	tp.redises[0].Pause()
	defer tp.redises[0].Resume()
	c.Send("GET", "k")
	c.Flush()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tp.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("Shutdown returned nil with a request stuck on a stopped server")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Shutdown did not return")
	}
}

// Garbage and half-valid requests from many clients cost those clients
// their connections at most: the proxy keeps serving everyone else.
func TestProxySurvivesGarbage(t *testing.T) {
	tp := startProxy(t, 2, "  hash_tag: \"{}\"\n")
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"*", "$", "\r\n", "-1", "3", "GET", "MGET", "MULTI", "EXEC", "{a}", "2147483648", "\n", " ", "\"", "'", "\x00", "\xff", "EVAL", "0"}
	for i := 0; i < 100; i++ {
		var b strings.Builder
		for j := rng.IntN(40); j > 0; j-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		conn, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(b.String()))
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	if got := do(t, tp.client(t), "SET", "still", "here"); got != "+OK\r\n" {
		t.Fatalf("after garbage: SET = %q", got)
	}
}

// A client that connects while the proxy starts, before its listener's
// loop runs, is served: the loop must find the listener's pool set (it
// found none, and the proxy died on a nil pool).
func TestProxyClientConnectingAtStart(t *testing.T) {
	r := proxytest.StartRedis(t)
	// A logger as slow as one writing to a busy terminal widens the moment
	// between the loop's start and the pool's.
	slow := slog.New(slowHandler{slog.DiscardHandler})
	for range 5 {
		port := proxytest.FreePort(t)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cfg, err := config.Parse([]byte(fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1 s0\n", addr, r.Addr)))
		if err != nil {
			t.Fatal(err)
		}
		srv, err := NewServer(cfg, Options{Logger: slow})
		if err != nil {
			t.Fatal(err)
		}
		dialed := make(chan net.Conn, 1)
		go func() {
			for {
				if c, err := net.Dial("tcp", addr); err == nil {
					dialed <- c
					return
				}
			}
		}()
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		c := <-dialed
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "+PONG\r\n" {
			t.Fatalf("PING = %q, %v", buf, err)
		}
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(ctx)
		cancel()
	}
}

// slowHandler takes 20 ms for every record.
type slowHandler struct{ slog.Handler }

func (h slowHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h slowHandler) Handle(ctx context.Context, r slog.Record) error {
	time.Sleep(20 * time.Millisecond)
	return h.Handler.Handle(ctx, r)
}
