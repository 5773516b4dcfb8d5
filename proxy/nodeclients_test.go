package proxy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// nodeClients are the npm aliases of testdata/node/package.json: two
// majors each of node-redis and ioredis.
var nodeClients = []string{"redis4", "redis6", "ioredis5", "ioredis6"}

// nodeAndClients returns the node binary and the directory of the
// installed clients, failing t with what to run when they are missing.
func nodeAndClients(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed for the Node.js client tests (Debian package nodejs; `make deps` installs it): %v", err)
	}
	dir, err = filepath.Abs(filepath.Join("testdata", "node"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range nodeClients {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", name, "package.json")); err != nil {
			t.Fatalf("the Node.js clients are not installed: run `make node-deps` (npm ci --prefix proxy/testdata/node): %v", err)
		}
	}
	return node, dir
}

// TestClientNode runs each Node.js client with its default options through
// a pool of three servers (testdata/node/clients.js): SET/GET, MGET across
// servers, a pipeline, a transaction, INFO, BLPOP woken by another
// connection and a SCAN that must return every key the servers hold, once.
// The packages are installed by `make node-deps`.
func TestClientNode(t *testing.T) {
	node, dir := nodeAndClients(t)
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	for _, name := range nodeClients {
		t.Run(name, func(t *testing.T) {
			for _, r := range tp.redises {
				if got := do(t, r.Client(t), "FLUSHALL"); got != "+OK\r\n" {
					t.Fatalf("FLUSHALL on %s = %q", r.Addr, got)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "clients.js"), name, tp.addr)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node clients.js %s: %v\n%s", name, err, out)
			}
			text := strings.TrimSpace(string(out))
			last := text[strings.LastIndexByte(text, '\n')+1:]
			js, ok := strings.CutPrefix(last, "scan: ")
			if !ok {
				t.Fatalf("node clients.js %s printed no scan line:\n%s", name, out)
			}
			var scanned []string
			if err := json.Unmarshal([]byte(js), &scanned); err != nil {
				t.Fatalf("scan line %q: %v", js, err)
			}
			var held []string
			for _, r := range tp.redises {
				reply, err := r.Client(t).Do("KEYS", "*")
				if err != nil {
					t.Fatalf("KEYS * on %s: %v", r.Addr, err)
				}
				for _, k := range reply.Elems {
					held = append(held, string(k.Str))
				}
			}
			slices.Sort(scanned)
			slices.Sort(held)
			if !slices.Equal(scanned, held) {
				t.Fatalf("%s: SCAN through the proxy returned %d keys, the servers hold %d:\nscanned %q\nheld    %q", name, len(scanned), len(held), scanned, held)
			}
			if len(held) < 300 {
				t.Fatalf("%s: the servers hold %d keys, want the 300 the script set and more", name, len(held))
			}
		})
	}
}

// ioredis connects, and serves keys of the servers that are up, while a
// server of the pool is down: its ready check's INFO must not fail.
func TestClientNodeIoredisWithAServerDown(t *testing.T) {
	node, dir := nodeAndClients(t)
	tp := startProxy(t, 3, "")
	tp.redises[1].Stop()
	key := tp.keyOn(t, tp.redises[0], "up")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "serverdown.js"), tp.addr, key)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("ioredis with server1 down: %v\n%s", err, out)
	}
}

// Each Node.js client in cluster mode (ioredis' Cluster, node-redis'
// createCluster) finds the pool to be one node and works through it
// (testdata/node/cluster.js).
func TestClientNodeCluster(t *testing.T) {
	node, dir := nodeAndClients(t)
	tp := startProxy(t, 3, "")
	for _, name := range nodeClients {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "cluster.js"), name, tp.addr)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
				t.Fatalf("node cluster.js %s: %v\n%s", name, err, out)
			}
		})
	}
}
