package proxy

import (
	"log/slog"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Guards the names discovery's connections verify: a group member's with
// {server} its group, a Sentinel's or cluster node's, which have no name,
// with the host of its address.
func TestServerTLSConfigsNames(t *testing.T) {
	if (ServerTLS{}).Configs(slog.Default()) != nil {
		t.Fatal("the zero ServerTLS gives configs; want plain TCP")
	}
	files := proxytest.NewCA(t, "ca").WriteTLSFiles(t, t.TempDir(), "redis", "127.0.0.1")
	for _, tc := range []struct {
		pattern, server, addr, want string
	}{
		{"", "g0", "10.0.0.1:6379", "10.0.0.1"},
		{"", "", "[::1]:26379", "::1"},
		{"{server}.redis.test", "g0", "10.0.0.1:6379", "g0.redis.test"},
		{"{server}.redis.test", "", "10.0.0.2:26379", "10.0.0.2"},
		{"{host}.nodes.test", "", "10.0.0.3:6379", "10.0.0.3.nodes.test"},
		{"{host}.{server}.test", "g1", "10.0.0.4:6379", "10.0.0.4.g1.test"},
		{"redis.test", "", "10.0.0.5:26379", "redis.test"},
	} {
		configs := ServerTLS{CAFile: files.CA, ServerName: tc.pattern}.Configs(slog.Default())
		cfg, err := configs(tc.server, tc.addr)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if cfg.ServerName != tc.want || cfg.RootCAs == nil {
			t.Errorf("server_tls_server_name %q, server %q at %s: name %q, want %q", tc.pattern, tc.server, tc.addr, cfg.ServerName, tc.want)
		}
	}
}
