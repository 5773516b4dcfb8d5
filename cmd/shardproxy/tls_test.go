package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// tlsFiles writes a CA and a certificate it issued for names, good for
// Redis' TLS ports (the IP 127.0.0.1 among them), into a new directory.
func tlsFiles(t *testing.T, names ...string) proxytest.TLSFiles {
	t.Helper()
	ca := proxytest.NewCA(t, "redis CA")
	return ca.WriteTLSFiles(t, t.TempDir(), "redis", append([]string{"127.0.0.1"}, names...)...)
}

// Guards that the slot map of a redis_cluster pool is read over TLS, with
// server_tls_server_name's {host}: the nodes' TLS ports are all the proxy
// is given, and all the nodes tell a TLS client.
func TestClusterPoolOverTLS(t *testing.T) {
	files := tlsFiles(t, "127.0.0.1.nodes.test")
	c := proxytest.StartCluster(t, 3, 0, proxytest.RedisTLS(files, true))
	addr, _ := startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 1000\n  redis_cluster: true\n"+
			"  server_tls_ca_file: %s\n  server_tls_cert_file: %s\n  server_tls_key_file: %s\n  server_tls_server_name: \"{host}.nodes.test\"\n"+
			"  servers:\n    - %s:1\n", port, files.CA, files.Cert, files.Key, c.Nodes[0].TLSAddr)
	})
	cl := proxytest.Dial(t, addr)
	waitReply(t, cl, "+OK", "SET", "probe", "1")
	const keys = 300
	for i := range keys {
		if r, err := cl.Do("SET", fmt.Sprint("k", i), strconv.Itoa(i)); err != nil || r.String() != "+OK" {
			t.Fatalf("SET k%d = %v, %v", i, r, err)
		}
	}
	checkClusterKeys(t, cl, keys)
	// Every master got keys, so the proxy reached each at its TLS port.
	for _, n := range c.Masters() {
		r, err := n.Client(t).Do("DBSIZE")
		if err != nil || r.Int <= 0 {
			t.Errorf("DBSIZE on %s = %v, %v; want keys", n.Addr, r, err)
		}
	}
}

// Guards that the members of a group_members pool are asked ROLE over TLS,
// with server_tls_server_name's {server} the group's name: writes need a
// master confirmed by ROLE.
func TestRoleGroupPoolOverTLS(t *testing.T) {
	files := tlsFiles(t, "g0.redis.test")
	m := proxytest.StartRedis(t, proxytest.RedisTLS(files, false))
	r := proxytest.StartRedis(t, proxytest.RedisTLS(files, false), proxytest.RedisArgs(
		"--tls-replication", "yes", "--replicaof", "127.0.0.1", strconv.Itoa(m.TLSPort)))
	waitReplicaConnected(t, r)
	addr, _ := startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 1000\n"+
			"  server_tls_ca_file: %s\n  server_tls_server_name: \"{server}.redis.test\"\n"+
			"  group_members:\n    - g0 %s %s\n  servers:\n    - %s:1 g0\n", port, files.CA, m.TLSAddr, r.TLSAddr, m.TLSAddr)
	}, "--discovery-sync-timeout", "2s")
	cl := proxytest.Dial(t, addr)
	waitReply(t, cl, "+OK", "SET", "k", "v")
	if got, err := m.Client(t).Do("GET", "k"); err != nil || string(got.Str) != "v" {
		t.Fatalf("GET k on the master = %v, %v; want v", got, err)
	}
}

// Guards that a pool's Sentinels are asked over TLS: the servers line names
// no server, so writes work only once the Sentinel, reached at its TLS port,
// has named the master.
func TestSentinelPoolOverTLS(t *testing.T) {
	files := tlsFiles(t)
	m := proxytest.StartRedis(t, proxytest.RedisTLS(files, false))
	tlsPort := proxytest.FreePort(t)
	s := proxytest.StartSentinel(t, "g0", m.TLSAddr, 1, proxytest.SentinelConfig(
		"tls-port "+strconv.Itoa(tlsPort), "tls-cert-file "+files.Cert, "tls-key-file "+files.Key,
		"tls-ca-cert-file "+files.CA, "tls-auth-clients no", "tls-replication yes"))
	if got := s.Master(t, "g0")["port"]; got != strconv.Itoa(m.TLSPort) {
		t.Fatalf("the Sentinel has g0 at port %s, want %d", got, m.TLSPort)
	}
	nowhere := proxytest.FreePort(t)
	addr, _ := startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 1000\n  server_tls_ca_file: %s\n"+
			"  sentinels:\n    - 127.0.0.1:%d\n  servers:\n    - 127.0.0.1:%d:1 g0\n", port, files.CA, tlsPort, nowhere)
	}, "--discovery-sync-timeout", "2s")
	cl := proxytest.Dial(t, addr)
	waitReply(t, cl, "+OK", "SET", "k", "v")
	if got, err := m.Client(t).Do("GET", "k"); err != nil || string(got.Str) != "v" {
		t.Fatalf("GET k on the master = %v, %v; want v", got, err)
	}
}

// waitReplicaConnected waits until ROLE on r says its link to its master
// is up.
func waitReplicaConnected(t *testing.T, r *proxytest.Redis) {
	t.Helper()
	c := r.Client(t)
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := c.Do("ROLE")
		if err == nil && strings.Contains(string(rep.Raw()), "connected") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ROLE on %s = %q, %v; want connected\nredis.log:\n%s", r.Addr, rep.Raw(), err, r.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
