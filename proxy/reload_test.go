package proxy

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, yaml)
	}
	return cfg
}

// startServer starts a Server for yaml and shuts it down in t's cleanup.
func startServer(t *testing.T, yaml string, opts Options) *Server {
	t.Helper()
	srv, err := NewServer(mustParse(t, yaml), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	return srv
}

// addresses reports every server's current address, from a Snapshot.
func addresses(srv *Server) []stats.AddressStatus {
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	var out []stats.AddressStatus
	for _, p := range snap.Pools {
		for _, s := range p.Servers {
			out = append(out, s.Address)
		}
	}
	return out
}

// reloadCounts reports how many reloads took effect and how many were
// rejected, from a Snapshot.
func reloadCounts(srv *Server) (ok, rejected int64) {
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	return snap.Reloads, snap.ReloadsRejected
}

func poolYAML(listen string, extra string, servers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "alpha:\n  listen: %s\n  redis: true\n%s  servers:\n", listen, extra)
	for _, s := range servers {
		fmt.Fprintf(&b, "    - %s\n", s)
	}
	return b.String()
}

// A reload that replaces a server keeps the client connection: its next
// command goes to the new ring.
func TestReloadKeepsClients(t *testing.T) {
	a, b := proxytest.StartRedis(t), proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "", a.Addr+":1 s0"), Options{})
	c := proxytest.Dial(t, listen)
	if got := do(t, c, "SET", "k", "on-a"); got != "+OK\r\n" {
		t.Fatalf("SET before reload = %q", got)
	}
	if err := srv.Reload(mustParse(t, poolYAML(listen, "", b.Addr+":1 s0"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := do(t, c, "SET", "k", "on-b"); got != "+OK\r\n" {
		t.Fatalf("SET after reload on the same connection = %q", got)
	}
	if got := do(t, b.Client(t), "GET", "k"); got != "$4\r\non-b\r\n" {
		t.Fatalf("new server has %q", got)
	}
	admin := a.Client(t)
	if got := do(t, admin, "GET", "k"); got != "$4\r\non-a\r\n" {
		t.Fatalf("old server has %q", got)
	}
	if ok, rejected := reloadCounts(srv); ok != 1 || rejected != 0 {
		t.Fatalf("ReloadCounts = %d, %d", ok, rejected)
	}
	// The old server's connection is drained and closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := do(t, admin, "INFO", "clients")
		if strings.Contains(info, "connected_clients:1\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old server still has the proxy's connection: %q", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A config that cannot be served is rejected whole; the old one serves on.
func TestReloadRejectsWhatCannotServe(t *testing.T) {
	r := proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "", r.Addr+":1"), Options{})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := poolYAML(listen, "", r.Addr+":1") + poolYAML(busy.Addr().String(), "", r.Addr+":1")
	bad = strings.Replace(bad, "alpha:", "beta:", 1)
	if err := srv.Reload(mustParse(t, bad)); err == nil {
		t.Fatalf("Reload with a listen address in use succeeded")
	}
	if got := do(t, proxytest.Dial(t, listen), "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("old config after a rejected reload: %q", got)
	}
	if _, rejected := reloadCounts(srv); rejected != 1 {
		t.Fatalf("rejected reloads = %d, want 1", rejected)
	}
}

// A new password applies to connected clients at once: they must AUTH
// with it.
func TestReloadPassword(t *testing.T) {
	r := proxytest.StartRedis(t, proxytest.RedisPassword("old"))
	// The server accepts both passwords, as during a rotation.
	if got := do(t, r.Client(t), "ACL", "SETUSER", "default", ">new"); got != "+OK\r\n" {
		t.Fatalf("ACL SETUSER = %q", got)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "  redis_auth: old\n", r.Addr+":1"), Options{})
	c := proxytest.Dial(t, listen)
	do(t, c, "AUTH", "old")
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	if err := srv.Reload(mustParse(t, poolYAML(listen, "  redis_auth: new\n", r.Addr+":1"))); err != nil {
		t.Fatal(err)
	}
	if got := do(t, c, "GET", "k"); got != "-"+msgNoAuth+"\r\n" {
		t.Fatalf("GET after the password changed = %q, want NOAUTH", got)
	}
	if got := do(t, c, "AUTH", "old"); got != "-"+msgWrongPass+"\r\n" {
		t.Fatalf("AUTH with the old password = %q", got)
	}
	if got := do(t, c, "AUTH", "new"); got != "+OK\r\n" {
		t.Fatalf("AUTH = %q", got)
	}
	if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET after AUTH = %q", got)
	}
}

// startRedisAt runs a redis-server on ip:port (a loopback address other
// than 127.0.0.1, so two servers can share a port as two pods do).
func startRedisAt(t *testing.T, ip string, port int) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--bind", ip, "--port", fmt.Sprint(port), "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if i == 100 {
			t.Fatalf("redis-server on %s did not start", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A server found through Kubernetes follows its pod: no address yet means
// an immediate error, a new IP is used at once and the old connection is
// closed, a pod that is not ready gets no requests.
func TestPodAddresses(t *testing.T) {
	port := proxytest.FreePort(t)
	startRedisAt(t, "127.0.0.2", port)
	startRedisAt(t, "127.0.0.3", port)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "  kubernetes_service: redis\n", fmt.Sprintf("redis-0.redis:%d:1 server0", port)), Options{})
	c := proxytest.Dial(t, listen)
	if got := do(t, c, "SET", "k", "v"); !strings.Contains(got, "pod redis-0 is not in the EndpointSlices") {
		t.Fatalf("SET before discovery = %q", got)
	}
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{"redis-0": {IP: "127.0.0.2", Usable: true, Slice: "redis-abc"}})
	if got := do(t, c, "SET", "k", "first"); got != "+OK\r\n" {
		t.Fatalf("SET at the first address = %q", got)
	}
	st := addresses(srv)
	if len(st) != 1 || st[0].Addr != fmt.Sprintf("127.0.0.2:%d", port) || st[0].Source != "endpointslice/redis-abc" || !st[0].Usable {
		t.Fatalf("Addresses = %+v", st)
	}
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{"redis-0": {IP: "127.0.0.3", Usable: true, Slice: "redis-abc"}})
	if got := do(t, c, "GET", "k"); got != "$-1\r\n" {
		t.Fatalf("GET after the pod moved to an empty server = %q, want nil from the new address", got)
	}
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{"redis-0": {IP: "127.0.0.3", Usable: false, Reason: "not ready", Slice: "redis-abc"}})
	if got := do(t, c, "GET", "k"); !strings.Contains(got, "pod redis-0 is not ready") {
		t.Fatalf("GET while the pod is not ready = %q", got)
	}
	srv.SetPodAddresses("default", "other", map[string]PodAddress{})
	srv.SetPodAddresses("elsewhere", "redis", map[string]PodAddress{})
	if got := do(t, c, "GET", "k"); !strings.Contains(got, "pod redis-0 is not ready") {
		t.Fatalf("another Service's or namespace's pods changed this pool: %q", got)
	}
	if got := srv.Services(); len(got) != 1 || got[0] != (Service{"default", "redis"}) {
		t.Fatalf("Services() = %v", got)
	}
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{})
	if got := do(t, c, "GET", "k"); !strings.Contains(got, "not in the Service's EndpointSlices") {
		t.Fatalf("GET after the pod left = %q", got)
	}
}

// A reload keeps the pod addresses discovery already gave: the new pools
// start from the last snapshot instead of waiting for the next change.
func TestReloadKeepsPodAddresses(t *testing.T) {
	port := proxytest.FreePort(t)
	startRedisAt(t, "127.0.0.2", port)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	line := fmt.Sprintf("redis-0:%d:1 server0", port)
	srv := startServer(t, poolYAML(listen, "  kubernetes_service: redis\n", line), Options{})
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{"redis-0": {IP: "127.0.0.2", Usable: true}})
	if err := srv.Reload(mustParse(t, poolYAML(listen, "  kubernetes_service: redis\n  timeout: 900\n", line))); err != nil {
		t.Fatal(err)
	}
	if got := do(t, proxytest.Dial(t, listen), "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET after a reload = %q", got)
	}
}

// Without a servers list, the Service's pods are the servers, named by
// pod name in ordinal order.
func TestPodsAsMembers(t *testing.T) {
	port := proxytest.FreePort(t)
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		startRedisAt(t, ip, port)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	yaml := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  kubernetes_service: redis\n  kubernetes_port: %d\n", listen, port)
	srv := startServer(t, yaml, Options{})
	c := proxytest.Dial(t, listen)
	if got := do(t, c, "SET", "k", "v"); !strings.HasPrefix(got, "-"+msgNoServer) {
		t.Fatalf("SET before any pod = %q", got)
	}
	pods := map[string]PodAddress{
		"redis-10": {IP: "127.0.0.4", Usable: true},
		"redis-2":  {IP: "127.0.0.3", Usable: true},
		"redis-1":  {IP: "127.0.0.2", Usable: true},
	}
	srv.SetPodAddresses("default", "redis", pods)
	var names []string
	for _, a := range addresses(srv) {
		names = append(names, a.Server)
	}
	if fmt.Sprint(names) != "[redis-1 redis-2 redis-10]" {
		t.Fatalf("members = %v, want ordinal order", names)
	}
	for i := 0; i < 50; i++ {
		if got := do(t, c, "SET", fmt.Sprintf("k%d", i), "v"); got != "+OK\r\n" {
			t.Fatalf("SET with pods as members = %q", got)
		}
	}
	// Every key is where a ring over the pod names puts it.
	p := srv.poolList()[0]
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("k%d", i)
		addr := p.servers[p.layout.Load().Lookup([]byte(key))].address.DialAddr()
		if got := do(t, proxytest.Dial(t, addr), "GET", key); got != "$1\r\nv\r\n" {
			t.Fatalf("GET %s on %s = %q", key, addr, got)
		}
	}
	delete(pods, "redis-10")
	srv.SetPodAddresses("default", "redis", pods)
	if n := len(addresses(srv)); n != 2 {
		t.Fatalf("%d members after a pod left, want 2", n)
	}
	if got := do(t, c, "SET", "after", "v"); got != "+OK\r\n" {
		t.Fatalf("SET after a pod left = %q", got)
	}
}

// A pod that moves while its old address is in dial backoff is dialled at
// the new address at once, not after the backoff.
func TestPodMoveClearsBackoff(t *testing.T) {
	port := proxytest.FreePort(t)
	startRedisAt(t, "127.0.0.3", port)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "  kubernetes_service: redis\n", fmt.Sprintf("redis-0:%d:1 server0", port)), Options{})
	c := proxytest.Dial(t, listen)
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{"redis-0": {IP: "127.0.0.5", Usable: true}})
	if got := do(t, c, "SET", "k", "v"); !strings.Contains(got, "refused") {
		t.Fatalf("SET with nothing at the pod's address = %q", got)
	}
	srv.SetPodAddresses("default", "redis", map[string]PodAddress{"redis-0": {IP: "127.0.0.3", Usable: true}})
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET right after the pod moved = %q", got)
	}
}
