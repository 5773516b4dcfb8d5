package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/statsport"
)

// connectionsReceived is the redis-server's total_connections_received.
func connectionsReceived(t *testing.T, admin *proxytest.Conn) int {
	t.Helper()
	info := do(t, admin, "INFO", "stats")
	const field = "total_connections_received:"
	i := strings.Index(info, field)
	if i < 0 {
		t.Fatalf("INFO stats has no %s: %q", field, info)
	}
	rest := info[i+len(field):]
	n, err := strconv.Atoi(rest[:strings.IndexByte(rest, '\r')])
	if err != nil {
		t.Fatalf("INFO stats: %v", err)
	}
	return n
}

// waitFor polls cond until it holds, failing t with what after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reload of the same file keeps every server connection, shared and
// transaction ones, a pinned one included: the server is not dialled again.
func TestReloadKeepsServerConnections(t *testing.T) {
	tp := startProxy(t, 1, "")
	admin := tp.redises[0].Client(t)
	c, pinned := tp.client(t), tp.client(t)
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	do(t, c, "WATCH", "k")
	if got := do(t, pinned, "WATCH", "w"); got != "+OK\r\n" {
		t.Fatalf("WATCH = %q", got)
	}
	do(t, c, "UNWATCH") // its transaction connection is idle now
	requests := tp.srv.poolList()[0].servers[0].stats.Requests.Load()
	before := connectionsReceived(t, admin)

	if err := tp.srv.Reload(tp.cfg); err != nil {
		t.Fatal(err)
	}
	if got := do(t, c, "SET", "k", "v2"); got != "+OK\r\n" {
		t.Fatalf("SET after reload = %q", got)
	}
	for _, step := range [][]string{{"MULTI"}, {"SET", "k", "v3"}, {"EXEC"}} {
		do(t, pinned, step...)
	}
	// Two transactions at once take both idle connections.
	do(t, c, "WATCH", "k")
	do(t, pinned, "WATCH", "k")
	do(t, c, "UNWATCH")
	do(t, pinned, "UNWATCH")
	if got := do(t, c, "GET", "k"); got != "$2\r\nv3\r\n" {
		t.Fatalf("GET = %q", got)
	}
	if after := connectionsReceived(t, admin); after != before {
		t.Fatalf("the server received %d connections during and after an identical reload, want 0", after-before)
	}
	if got := tp.srv.poolList()[0].servers[0].stats.Requests.Load(); got <= requests {
		t.Fatalf("server requests = %d after the reload, want more than the %d before", got, requests)
	}
}

// A reload that keeps a server keeps its failure count towards
// server_failure_limit.
func TestReloadKeepsFailureCount(t *testing.T) {
	tp := startProxy(t, 2, "  auto_eject_hosts: true\n  server_failure_limit: 3\n  server_retry_timeout: 60000\n")
	dead := tp.redises[0]
	key := tp.keyOn(t, dead, "f")
	dead.Stop()
	if got := do(t, tp.client(t), "SET", key, "1"); !strings.HasPrefix(got, "-ERR server server0") {
		t.Fatalf("SET on a stopped server = %q", got)
	}
	if n := tp.srv.poolList()[0].servers[0].health.Failures(); n != 1 {
		t.Fatalf("failures = %d, want 1", n)
	}
	if err := tp.srv.Reload(tp.cfg); err != nil {
		t.Fatal(err)
	}
	if n := tp.srv.poolList()[0].servers[0].health.Failures(); n != 1 {
		t.Fatalf("failures after a reload = %d, want the 1 before", n)
	}
}

// serverEjectedMetric reads shardproxy_server_ejected of a server from
// /metrics.
func serverEjectedMetric(t *testing.T, srv *Server, server string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := statsport.New(srv, statsport.Options{})
	go port.Serve(ln)
	defer port.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	prefix := fmt.Sprintf(`shardproxy_server_ejected{pool="alpha",server=%q} `, server)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	t.Fatalf("/metrics has no %s", prefix)
	return ""
}

// A server ejected before a reload returns to the ring of the pool the
// reload built once server_retry_timeout has passed.
func TestReloadEjectedServerReturns(t *testing.T) {
	tp := startProxy(t, 3, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 1500\n")
	c := tp.client(t)
	dead := tp.redises[0]
	key := tp.keyOn(t, dead, "e")
	dead.Stop()
	if got := do(t, c, "SET", key, "1"); !strings.HasPrefix(got, "-ERR server server0") {
		t.Fatalf("SET on a stopped server = %q", got)
	}
	if tp.owner(t, key) == dead {
		t.Fatalf("server0 was not ejected")
	}
	if err := tp.srv.Reload(tp.cfg); err != nil {
		t.Fatal(err)
	}
	if tp.owner(t, key) == dead {
		t.Fatalf("the reload brought server0 back before server_retry_timeout")
	}
	dead.Restart(t)
	if v := serverEjectedMetric(t, tp.srv, "server0"); v != "1" {
		t.Fatalf("server_ejected of server0 after the reload = %s, want 1", v)
	}
	waitFor(t, "server0 back in the ring after server_retry_timeout", func() bool { return tp.owner(t, key) == dead })
	if v := serverEjectedMetric(t, tp.srv, "server0"); v != "0" {
		t.Fatalf("server_ejected of server0 once back = %s, want 0", v)
	}
	if got := do(t, c, "SET", key, "back"); got != "+OK\r\n" {
		t.Fatalf("SET after return = %q", got)
	}
	if got := do(t, dead.Client(t), "GET", key); got != "$4\r\nback\r\n" {
		t.Fatalf("GET on the returned server = %q", got)
	}
}

// A pod server ejected before a membership change returns to the ring of
// the pool the change built.
func TestPodMembersChangeEjectedServerReturns(t *testing.T) {
	// redis-0 answers at 127.0.0.2 (and at 127.0.0.1, for the test's own
	// checks); the other pods share its port on other addresses.
	pod0 := proxytest.StartRedis(t, proxytest.RedisArgs("--bind", "127.0.0.1", "127.0.0.2"))
	startRedisAt(t, "127.0.0.3", pod0.Port)
	startRedisAt(t, "127.0.0.4", pod0.Port)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	yaml := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  kubernetes_service: redis\n  kubernetes_port: %d\n"+
		"  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 1500\n", listen, pod0.Port)
	srv := startServer(t, yaml, Options{})
	pods := map[string]PodAddress{
		"redis-0": {IP: "127.0.0.2", Usable: true},
		"redis-1": {IP: "127.0.0.3", Usable: true},
	}
	srv.SetPodAddresses("default", "redis", pods)
	// ownerPod is the pod that the live ring puts key on; with full, the
	// pod that the ring without ejections does.
	ownerPod := func(key string, full bool) string {
		p := srv.poolList()[0]
		ring := p.layout.Load()
		if full {
			ring = p.full
		}
		return p.servers[ring.Lookup([]byte(key))].cfg.Pod
	}
	keyOnPod0 := func() string {
		for i := 0; ; i++ {
			if k := fmt.Sprintf("m%d", i); ownerPod(k, true) == "redis-0" {
				return k
			}
		}
	}
	key := keyOnPod0()
	c := proxytest.Dial(t, listen)
	pod0.Stop()
	if got := do(t, c, "SET", key, "1"); !strings.HasPrefix(got, "-ERR server redis-0") {
		t.Fatalf("SET on a stopped pod = %q", got)
	}
	if ownerPod(key, false) == "redis-0" {
		t.Fatalf("redis-0 was not ejected")
	}
	pods["redis-2"] = PodAddress{IP: "127.0.0.4", Usable: true}
	srv.SetPodAddresses("default", "redis", pods)
	if n := len(srv.poolList()[0].servers); n != 3 {
		t.Fatalf("%d members after a pod joined, want 3", n)
	}
	key = keyOnPod0() // in the new ring
	if ownerPod(key, false) == "redis-0" {
		t.Fatalf("the membership change brought redis-0 back before server_retry_timeout")
	}
	pod0.Restart(t)
	waitFor(t, "redis-0 back in the ring after server_retry_timeout", func() bool { return ownerPod(key, false) == "redis-0" })
	if got := do(t, c, "SET", key, "back"); got != "+OK\r\n" {
		t.Fatalf("SET after return = %q", got)
	}
	if got := do(t, pod0.Client(t), "GET", key); got != "$4\r\nback\r\n" {
		t.Fatalf("GET on the returned pod = %q", got)
	}
}

// Shutdown ends a client whose transaction waits on a server that stopped
// answering: the pinned connection is closed with the others, so the
// client's goroutine has ended when Shutdown returns.
func TestShutdownClosesPinnedConnections(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	if got := do(t, c, "WATCH", "k"); got != "+OK\r\n" {
		t.Fatalf("WATCH = %q", got)
	}
	tp.redises[0].Pause()
	defer tp.redises[0].Resume()
	c.Send("MULTI")
	c.Flush()
	time.Sleep(100 * time.Millisecond) // let the client send MULTI on its pinned connection
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	tp.srv.Shutdown(ctx)
	if n := tp.srv.stats.CurrConnections.Load(); n != 0 {
		t.Fatalf("%d client still served after Shutdown returned, want 0", n)
	}
}

// connectedClients is the redis-server's connected_clients.
func connectedClients(t *testing.T, admin *proxytest.Conn) string {
	t.Helper()
	info := do(t, admin, "INFO", "clients")
	const field = "connected_clients:"
	i := strings.Index(info, field)
	if i < 0 {
		t.Fatalf("INFO clients has no %s: %q", field, info)
	}
	rest := info[i+len(field):]
	return rest[:strings.IndexByte(rest, '\r')]
}

// A reload that lowers server_connections keeps one of the connections
// and closes the others once idle.
func TestReloadFewerServerConnections(t *testing.T) {
	r := proxytest.StartRedis(t)
	admin := r.Client(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	yaml := func(n int) string {
		return poolYAML(listen, fmt.Sprintf("  preconnect: true\n  server_connections: %d\n", n), r.Addr+":1")
	}
	srv := startServer(t, yaml(3), Options{})
	waitFor(t, "3 connections after preconnect", func() bool { return connectedClients(t, admin) == "4" })
	before := connectionsReceived(t, admin)
	if err := srv.Reload(mustParse(t, yaml(1))); err != nil {
		t.Fatal(err)
	}
	c := proxytest.Dial(t, listen)
	for i := 0; i < 10; i++ {
		if got := do(t, c, "SET", fmt.Sprint("k", i), "v"); got != "+OK\r\n" {
			t.Fatalf("SET after reload = %q", got)
		}
	}
	waitFor(t, "the 2 connections no longer asked for closed", func() bool { return connectedClients(t, admin) == "2" })
	if after := connectionsReceived(t, admin); after != before {
		t.Fatalf("the server received %d connections after the reload, want 0", after-before)
	}
}

// A transaction pinned to a server that a reload removed runs to its end,
// and then its connection is closed rather than kept for a pool that is
// gone.
func TestReloadRemovedServerClosesPinnedConnection(t *testing.T) {
	a, _, c := pinnedThenRemoved(t)
	adminA := a.Client(t)
	time.Sleep(drainDelay + 200*time.Millisecond) // for the old pool to give its server back
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"MULTI"}, "+OK\r\n"},
		{[]string{"SET", "k", "v"}, "+QUEUED\r\n"},
		{[]string{"EXEC"}, "*1\r\n+OK\r\n"},
	} {
		if got := do(t, c, step.args...); got != step.want {
			t.Fatalf("%v = %q, want %q", step.args, got, step.want)
		}
	}
	if got := do(t, adminA, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET on the removed server = %q, want the transaction's write", got)
	}
	waitFor(t, "the removed server's transaction connection closed", func() bool { return connectedClients(t, adminA) == "1" })
}

// A reload that changes redis_auth or redis_db makes new connections with
// the new AUTH and SELECT: the old ones are not reused.
func TestReloadNewAuthOrDBDialsAgain(t *testing.T) {
	r := proxytest.StartRedis(t, proxytest.RedisPassword("old"))
	admin := r.Client(t)
	if got := do(t, admin, "ACL", "SETUSER", "default", ">new"); got != "+OK\r\n" {
		t.Fatalf("ACL SETUSER = %q", got)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "  redis_auth: old\n", r.Addr+":1"), Options{})
	c := proxytest.Dial(t, listen)
	do(t, c, "AUTH", "old")
	if got := do(t, c, "SET", "k", "db0"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	if err := srv.Reload(mustParse(t, poolYAML(listen, "  redis_auth: new\n  redis_db: 1\n", r.Addr+":1"))); err != nil {
		t.Fatal(err)
	}
	// Only the new password works from now on.
	if got := do(t, admin, "ACL", "SETUSER", "default", "<old"); got != "+OK\r\n" {
		t.Fatalf("ACL SETUSER = %q", got)
	}
	do(t, c, "AUTH", "new")
	if got := do(t, c, "SET", "k", "db1"); got != "+OK\r\n" {
		t.Fatalf("SET after the reload = %q", got)
	}
	do(t, admin, "SELECT", "1")
	if got := do(t, admin, "GET", "k"); got != "$3\r\ndb1\r\n" {
		t.Fatalf("GET in db 1 = %q, want the write made after the reload", got)
	}
}

// Shutdown also ends a client whose transaction is pinned to a server that
// a reload removed, once no pool holds that server any more.
func TestShutdownClosesPinnedConnectionOfRemovedServer(t *testing.T) {
	a, srv, c := pinnedThenRemoved(t)
	waitFor(t, "the old pool giving s0 back", func() bool {
		inUse, retired := srv.registry.Len()
		return inUse == 1 && retired == 1
	})
	a.Pause()
	defer a.Resume()
	c.Send("MULTI")
	c.Flush()
	time.Sleep(100 * time.Millisecond) // let the client send MULTI on its pinned connection
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	srv.Shutdown(ctx)
	if n := srv.stats.CurrConnections.Load(); n != 0 {
		t.Fatalf("%d client still served after Shutdown returned, want 0", n)
	}
}

// pinnedThenRemoved starts a proxy over server a, pins a client to a with
// WATCH, and reloads onto another server, so the pinned connection belongs
// to a server no new pool has.
func pinnedThenRemoved(t *testing.T) (a *proxytest.Redis, srv *Server, c *proxytest.Conn) {
	t.Helper()
	a, b := proxytest.StartRedis(t), proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv = startServer(t, poolYAML(listen, "", a.Addr+":1 s0"), Options{})
	c = proxytest.Dial(t, listen)
	if got := do(t, c, "WATCH", "k"); got != "+OK\r\n" {
		t.Fatalf("WATCH = %q", got)
	}
	if err := srv.Reload(mustParse(t, poolYAML(listen, "", b.Addr+":1 s1"))); err != nil {
		t.Fatal(err)
	}
	return a, srv, c
}
