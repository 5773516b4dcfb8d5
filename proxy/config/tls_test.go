package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// The TLS keys are read with their files, relative to the config's
// directory, and nonsense is refused with the key and the file named.
func TestConfigTLS(t *testing.T) {
	dir := t.TempDir()
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, dir, "shardproxy", "127.0.0.1")
	otherCert, _ := ca.Issue(t, "other")
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := write("other.crt", otherCert)
	empty := write("empty.pem", nil)
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const one = "  servers:\n    - 127.0.0.1:6379:1 redis0\n"

	t.Run("relative paths", func(t *testing.T) {
		p := write("tls.yml", []byte(head+"  tls_cert_file: tls.crt\n  tls_key_file: tls.key\n  tls_client_ca_file: ca.crt\n"+
			"  server_tls_ca_file: ca.crt\n  server_tls_cert_file: tls.crt\n  server_tls_key_file: tls.key\n"+
			"  server_tls_server_name: \"{server}.{host}.svc\"\n"+one))
		cfg, err := loadConfig(p)
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		pc := cfg.Pools[0]
		if pc.TLSCertFile != files.Cert || pc.TLSKeyFile != files.Key || pc.TLSClientCAFile != files.CA ||
			pc.ServerTLSCAFile != files.CA || pc.ServerTLSCertFile != files.Cert || pc.ServerTLSKeyFile != files.Key {
			t.Fatalf("TLS files = %+v, want them in %s", pc, dir)
		}
		if got, want := pc.ServerName(pc.Servers[0]), "redis0.127.0.0.1.svc"; got != want {
			t.Errorf("ServerName = %q, want %q", got, want)
		}
	})
	t.Run("server name", func(t *testing.T) {
		for _, tc := range []struct{ pattern, server, want string }{
			{"", "127.0.0.1:6379:1 redis0", "127.0.0.1"},
			{"", "redis-0.redis.ns.svc:6379:1", "redis-0.redis.ns.svc"},
			{"", "::1:6379:1", "::1"},
			{"redis.example", "127.0.0.1:6379:1 redis0", "redis.example"},
			{"{server}.redis.ns.svc", "10.0.0.1:6379:1 redis-0", "redis-0.redis.ns.svc"},
		} {
			yml := head + "  server_tls_ca_file: " + files.CA + "\n"
			if tc.pattern != "" {
				yml += "  server_tls_server_name: \"" + tc.pattern + "\"\n"
			}
			cfg, err := Parse([]byte(yml + "  servers:\n    - " + tc.server + "\n"))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.Pools[0].ServerName(cfg.Pools[0].Servers[0]); got != tc.want {
				t.Errorf("ServerName(%q) with %q = %q, want %q", tc.server, tc.pattern, got, tc.want)
			}
		}
	})

	for _, tc := range []struct{ name, keys, want string }{
		{"cert without key", "  tls_cert_file: " + files.Cert + "\n", `pool "alpha": tls_cert_file: needs tls_key_file`},
		{"key without cert", "  tls_key_file: " + files.Key + "\n", `pool "alpha": tls_key_file: needs tls_cert_file`},
		{"client CA without cert", "  tls_client_ca_file: " + files.CA + "\n", `pool "alpha": tls_client_ca_file: only used with tls_cert_file and tls_key_file`},
		{"cert missing", "  tls_cert_file: /nonexistent/tls.crt\n  tls_key_file: " + files.Key + "\n",
			`pool "alpha": tls_cert_file, tls_key_file: open /nonexistent/tls.crt: no such file or directory`},
		{"key does not match", "  tls_cert_file: " + other + "\n  tls_key_file: " + files.Key + "\n",
			`…tls_cert_file, tls_key_file: ` + other + ` with key ` + files.Key + `: tls: private key does not match public key`},
		{"key is a certificate", "  tls_cert_file: " + files.Cert + "\n  tls_key_file: " + files.CA + "\n", `…tls: found a certificate rather than a key in the PEM for the private key`},
		{"client CA unreadable", "  tls_cert_file: " + files.Cert + "\n  tls_key_file: " + files.Key + "\n  tls_client_ca_file: /nonexistent/ca.crt\n",
			`pool "alpha": tls_cert_file, tls_key_file, tls_client_ca_file: open /nonexistent/ca.crt: no such file or directory`},
		{"client CA empty", "  tls_cert_file: " + files.Cert + "\n  tls_key_file: " + files.Key + "\n  tls_client_ca_file: " + empty + "\n", `…: ` + empty + `: no PEM certificate in it`},
		{"client CA a directory", "  tls_cert_file: " + files.Cert + "\n  tls_key_file: " + files.Key + "\n  tls_client_ca_file: /\n", `…/ is not a regular file`},
		{"server CA missing", "  server_tls_ca_file: /nonexistent/ca.crt\n", `pool "alpha": server_tls_ca_file: open /nonexistent/ca.crt: no such file or directory`},
		{"server cert without server CA", "  server_tls_cert_file: " + files.Cert + "\n  server_tls_key_file: " + files.Key + "\n", `pool "alpha": server_tls_cert_file: only used with server_tls_ca_file`},
		{"server name without server CA", "  server_tls_server_name: redis.example\n", `pool "alpha": server_tls_server_name: only used with server_tls_ca_file`},
		{"server cert without key", "  server_tls_ca_file: " + files.CA + "\n  server_tls_cert_file: " + files.Cert + "\n", `pool "alpha": server_tls_cert_file: needs server_tls_key_file`},
		{"server key does not match", "  server_tls_ca_file: " + files.CA + "\n  server_tls_cert_file: " + other + "\n  server_tls_key_file: " + files.Key + "\n", `…tls: private key does not match public key`},
		{"unknown placeholder", "  server_tls_ca_file: " + files.CA + "\n  server_tls_server_name: \"{pod}.redis\"\n", `pool "alpha": server_tls_server_name: "{pod}.redis": only {server} and {host} may stand in braces`},
		{"duplicate", "  server_tls_ca_file: " + files.CA + "\n  server_tls_ca_file: " + files.CA + "\n", `pool "alpha": server_tls_ca_file: duplicate key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head + tc.keys + one))
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", cfg, tc.want)
			}
			if got := err.Error(); got != tc.want && !(strings.HasPrefix(tc.want, "…") && strings.Contains(got, tc.want[len("…"):])) {
				t.Errorf("Parse error:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
	// Guards that discovery's connections, which speak TLS too, no longer
	// refuse server_tls_ca_file, and that a cluster's nodes, named by
	// address, are not given {server}.
	t.Run("discovery with TLS", func(t *testing.T) {
		for _, keys := range []string{
			"  redis_cluster: true\n  server_tls_server_name: \"{host}.nodes.test\"\n",
			"  group_members:\n    - redis0 127.0.0.1:6380\n  server_tls_server_name: \"{server}.redis.test\"\n",
		} {
			if _, err := Parse([]byte(head + "  server_tls_ca_file: " + files.CA + "\n" + keys + one)); err != nil {
				t.Errorf("Parse with %q: %v", keys, err)
			}
		}
		_, err := Parse([]byte(head + "  server_tls_ca_file: " + files.CA + "\n  redis_cluster: true\n  server_tls_server_name: \"{server}.nodes.test\"\n" + one))
		if want := `pool "alpha": server_tls_server_name: "{server}.nodes.test": a redis_cluster pool's nodes have no names: use {host}`; err == nil || err.Error() != want {
			t.Errorf("Parse error = %v, want %q", err, want)
		}
	})
	t.Run("unix server", func(t *testing.T) {
		_, err := Parse([]byte(head + "  server_tls_ca_file: " + files.CA + "\n  servers:\n    - /tmp/redis.sock:1\n"))
		if want := `pool "alpha": servers[0]: "/tmp/redis.sock": server_tls_ca_file: Redis serves TLS on TCP only`; err == nil || err.Error() != want {
			t.Errorf("Parse error = %v, want %q", err, want)
		}
	})
}
