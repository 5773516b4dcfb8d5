package proxytest_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

func TestStartNutcracker(t *testing.T) {
	r := proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	n := proxytest.StartNutcracker(t, fmt.Sprintf(`# one pool
alpha:
  listen: %s
  redis: true
  servers:
   - %s:1 shard-a
`, listen, r.Addr))
	if got := n.Listen["alpha"]; got != listen || len(n.Listen) != 1 {
		t.Fatalf("Listen = %v, want alpha: %s", n.Listen, listen)
	}
	c := n.Client(t, "alpha")
	expect(t, c, "+PONG\r\n", "PING")
	expect(t, c, "+OK\r\n", "SET", "k\r\n\xff", "v")
	expect(t, r.Client(t), "$1\r\nv\r\n", "GET", "k\r\n\xff")

	stats, err := n.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Service string         `json:"service"`
		Alpha   map[string]any `json:"alpha"`
	}
	if err := json.Unmarshal(stats, &doc); err != nil || doc.Service != "nutcracker" || doc.Alpha["shard-a"] == nil {
		t.Errorf("Stats() = %s (%v), want nutcracker's JSON with pool alpha and server shard-a", stats, err)
	}
	if !strings.Contains(n.Log(), "nutcracker-0.5.0") {
		t.Errorf("Log() = %q, want nutcracker's start-up line", n.Log())
	}
	n.Kill()
	if !refuses(listen) {
		t.Error("nutcracker still accepts connections after Kill")
	}
}

func TestStartNutcrackerPools(t *testing.T) {
	r := proxytest.StartRedis(t)
	sock := filepath.Join(shortDir(t), "n.sock")
	tcp := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	n := proxytest.StartNutcracker(t, fmt.Sprintf(`beta:
  listen: "%s"
  redis: true
  servers:
   - %s:1
gamma:
  listen: %s 0600
  redis: true
  hash_tag: "{}"
  servers:
   - %s:1
`, tcp, r.Addr, sock, r.Addr))
	if n.Listen["beta"] != tcp || n.Listen["gamma"] != sock {
		t.Fatalf("Listen = %v, want beta: %s, gamma: %s", n.Listen, tcp, sock)
	}
	expect(t, n.Client(t, "gamma"), "+OK\r\n", "SET", "k", "v")
	expect(t, n.Client(t, "beta"), "$1\r\nv\r\n", "GET", "k")
}

func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestStartNutcrackerFailureShowsLog(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	ft.run(func() {
		proxytest.StartNutcracker(ft, "alpha:\n  listen: 127.0.0.1:1\n  bogus: 1\n  servers:\n   - 127.0.0.1:2:1\n")
	})
	if !ft.failed || !strings.Contains(ft.msg, `directive "bogus" is unknown`) {
		t.Errorf("StartNutcracker with an unknown directive: failed=%v, message %q; want nutcracker's log", ft.failed, ft.msg)
	}
}

func TestNutcrackerCheckConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		ok         bool
	}{
		{"valid", "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n   - 127.0.0.1:6379:1\n", true},
		{"document start", "---\nalpha:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:6379:1\n", false},
		{"no weight", "alpha:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:6379\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			ok, out := proxytest.NutcrackerCheckConfig(t, path)
			want := "syntax is invalid"
			if tc.ok {
				want = "syntax is ok"
			}
			if ok != tc.ok || !strings.Contains(out, want) {
				t.Errorf("NutcrackerCheckConfig(%s) = %v, %q; want %v, %q", tc.name, ok, out, tc.ok, want)
			}
		})
	}
}
