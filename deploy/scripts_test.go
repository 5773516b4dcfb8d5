package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// scriptShims runs the Sentinel overlay's start scripts outside a pod:
// hostname says the pod's name, redis-server records its arguments
// instead of starting, getent resolves every name, and redis-cli reaches
// the Service "sentinel" at sentinelAddr (a real Sentinel, or a closed
// port) through the real redis-cli.
type scriptShims struct {
	dir, args string
}

func newScriptShims(t *testing.T, pod, sentinelAddr string) *scriptShims {
	t.Helper()
	realCLI, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(sentinelAddr, ":")
	s := &scriptShims{dir: t.TempDir()}
	s.args = filepath.Join(s.dir, "redis-server.args")
	shims := map[string]string{
		"hostname":     "echo " + pod,
		"getent":       "echo \"127.0.0.1 $2\"",
		"redis-server": "printf '%s\\n' \"$@\" > " + s.args,
		"redis-cli": `args=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h) [ "$2" = sentinel ] || { echo "redis-cli shim: unexpected host $2" >&2; exit 2; }; shift 2;;
    -p) [ "$2" = 26379 ] || { echo "redis-cli shim: unexpected port $2" >&2; exit 2; }; shift 2;;
    *) break;;
  esac
done
exec ` + realCLI + ` -h ` + host + ` -p ` + port + ` "$@"`,
	}
	for name, body := range shims {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// run runs the overlay's script with env and returns redis-server's
// arguments.
func (s *scriptShims) run(t *testing.T, script string, env ...string) []string {
	t.Helper()
	cmd := exec.Command("sh", filepath.Join(sentinelDir, script))
	cmd.Env = append([]string{"PATH=" + s.dir + ":" + os.Getenv("PATH"), "REDIS_PASSWORD=pw"}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	data, err := os.ReadFile(s.args)
	if err != nil {
		t.Fatalf("%s did not start redis-server: %v", script, err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t)) }

// argAfter is the value after flag in args, "" when absent.
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// redis-start.sh: on a first start pod 0 is its group's master and the
// other pods its replicas; once the Sentinels know a master, every pod
// starts as its replica, pod 0 included (an old master never comes back as
// a second master).
func TestSentinelOverlayRedisStart(t *testing.T) {
	for _, tc := range []struct{ pod, replicaOf string }{
		{"shard0-0", ""},
		{"shard0-1", "shard0-0.redis"},
		{"shard1-2", "shard1-0.redis"},
	} {
		args := newScriptShims(t, tc.pod, closedAddr(t)).run(t, "redis-start.sh")
		if got := argAfter(args, "--replicaof"); got != tc.replicaOf {
			t.Errorf("%s without Sentinels: --replicaof %q, want %q (args %q)", tc.pod, got, tc.replicaOf, args)
		}
		if got := argAfter(args, "--replica-announce-ip"); got != tc.pod+".redis" {
			t.Errorf("%s: --replica-announce-ip %q, want its stable name", tc.pod, got)
		}
		if argAfter(args, "--requirepass") != "pw" || argAfter(args, "--masterauth") != "pw" {
			t.Errorf("%s: args %q, want the password for clients and for its master", tc.pod, args)
		}
	}

	// A Sentinel that knows shard0's master (here at 127.0.0.1).
	master := proxytest.StartRedis(t)
	sentinel := proxytest.StartSentinel(t, "shard0", master.Addr, 1)
	for _, pod := range []string{"shard0-0", "shard0-1"} {
		args := newScriptShims(t, pod, sentinel.Addr).run(t, "redis-start.sh")
		if got := argAfter(args, "--replicaof"); got != "127.0.0.1" {
			t.Errorf("%s with a Sentinel naming 127.0.0.1: --replicaof %q, want 127.0.0.1 (args %q)", pod, got, args)
		}
	}
}

// sentinel-start.sh: the Sentinel monitors every group, at pod 0 on a
// first start and where the running Sentinels say once there are any, and
// starts with the file it wrote.
func TestSentinelOverlaySentinelStart(t *testing.T) {
	master := proxytest.StartRedis(t)
	running := proxytest.StartSentinel(t, "shard0", master.Addr, 1)
	for _, tc := range []struct {
		name, sentinel string
		want           []string
	}{
		{"first start", closedAddr(t), []string{"sentinel monitor shard0 shard0-0.redis 6379 2", "sentinel monitor shard1 shard1-0.redis 6379 2"}},
		{"joining", running.Addr, []string{"sentinel monitor shard0 127.0.0.1 6379 2", "sentinel monitor shard1 shard1-0.redis 6379 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := newScriptShims(t, "sentinel-abc", tc.sentinel).run(t, "sentinel-start.sh", "SENTINEL_GROUPS=shard0 shard1", "SENTINEL_DIR="+dir)
			conf := filepath.Join(dir, "sentinel.conf")
			if len(args) != 2 || args[0] != conf || args[1] != "--sentinel" {
				t.Errorf("redis-server args %q, want %s --sentinel", args, conf)
			}
			data, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			for _, line := range append(tc.want, "port 26379", "dir "+dir, "sentinel announce-hostnames yes", "sentinel auth-pass shard0 pw", "sentinel auth-pass shard1 pw") {
				if !strings.Contains(text, line+"\n") {
					t.Errorf("sentinel.conf lacks %q:\n%s", line, text)
				}
			}
		})
	}
}
