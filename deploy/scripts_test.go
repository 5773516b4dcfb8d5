package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// scriptShims runs the overlays' start scripts outside a pod: hostname
// says the pod's name, redis-server records its arguments instead of
// starting, getent resolves every name, and redis-cli reaches the servers
// the script names by host and port (the Service "sentinel" on 26379, a
// peer pod "shard0-1.redis" on 6379) at the loopback addresses of servers,
// through the real redis-cli. A name servers lacks does not resolve.
type scriptShims struct {
	dir, args string
	servers   map[string]string // "host:port" as the script dials it -> loopback address
}

func newScriptShims(t *testing.T, pod string, servers map[string]string) *scriptShims {
	t.Helper()
	realCLI, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptShims{dir: t.TempDir(), servers: servers}
	s.args = filepath.Join(s.dir, "redis-server.args")
	shims := map[string]string{
		"hostname":     "echo " + pod,
		"getent":       "echo \"127.0.0.1 $2\"",
		"redis-server": "printf '%s\\n' \"$@\" > " + s.args,
		// The arguments other than -h and -p go through in their order;
		// SHIM_SERVERS holds "host:port=address" pairs.
		"redis-cli": `host=127.0.0.1 port=6379 n=$#
while [ "$n" -gt 0 ]; do
  case "$1" in
    -h) host=$2; shift 2; n=$((n - 2));;
    -p) port=$2; shift 2; n=$((n - 2));;
    *) set -- "$@" "$1"; shift; n=$((n - 1));;
  esac
done
for pair in $SHIM_SERVERS; do
  if [ "${pair%%=*}" = "$host:$port" ]; then
    addr=${pair#*=}
    exec ` + realCLI + ` -h "${addr%:*}" -p "${addr##*:}" "$@"
  fi
done
echo "Could not connect to Redis at $host:$port: Name or service not known (redis-cli shim)" >&2
exit 1`,
	}
	for name, body := range shims {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// sentinelAt is the servers of a script that asks the Service sentinel,
// there at addr.
func sentinelAt(addr string) map[string]string { return map[string]string{"sentinel:26379": addr} }

// run runs the script at path with env and returns redis-server's
// arguments.
func (s *scriptShims) run(t *testing.T, script string, env ...string) []string {
	t.Helper()
	var servers []string
	for hostPort, addr := range s.servers {
		servers = append(servers, hostPort+"="+addr)
	}
	cmd := exec.Command("sh", script)
	cmd.Env = append([]string{"PATH=" + s.dir + ":" + os.Getenv("PATH"), "REDIS_PASSWORD=pw",
		"SHIM_SERVERS=" + strings.Join(servers, " ")}, env...)
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
		args := newScriptShims(t, tc.pod, sentinelAt(closedAddr(t))).run(t, filepath.Join(sentinelDir, "redis-start.sh"))
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
		args := newScriptShims(t, pod, sentinelAt(sentinel.Addr)).run(t, filepath.Join(sentinelDir, "redis-start.sh"))
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
			args := newScriptShims(t, "sentinel-abc", sentinelAt(tc.sentinel)).run(t, filepath.Join(sentinelDir, "sentinel-start.sh"), "SENTINEL_GROUPS=shard0 shard1", "SENTINEL_DIR="+dir)
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

// The groups overlay's redis-start.sh: a pod replicates the peer of its
// StatefulSet whose ROLE says master, pod 0 included (a pod 0 that comes
// back after a replica was promoted joins it instead of being a second
// master), and never a peer that is itself a replica; with no master to
// be found pod 0 starts as the master and the others as its replicas.
func TestGroupsOverlayRedisStart(t *testing.T) {
	// The peers: Redis with the group's password, as in the pods.
	master := proxytest.StartRedis(t, proxytest.RedisPassword("pw"))
	replica := proxytest.StartRedis(t, proxytest.RedisPassword("pw"),
		proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port), "--masterauth", "pw"))
	closed := closedAddr(t)
	for _, tc := range []struct {
		name, pod string
		size      int
		peers     map[string]string // peer pod -> the Redis standing for it
		replicaOf string
	}{
		{"first start, pod 0, no peer resolves", "shard0-0", 2, nil, ""},
		{"first start, pod 0, peer down", "shard0-0", 2, map[string]string{"shard0-1": closed}, ""},
		{"first start, pod 1", "shard0-1", 2, map[string]string{"shard0-0": closed}, "shard0-0.redis"},
		{"first start, pod 2 of 3", "shard1-2", 3, nil, "shard1-0.redis"},
		{"pod 0 after pod 1 was promoted", "shard0-0", 2, map[string]string{"shard0-1": master.Addr}, "shard0-1.redis"},
		{"pod 1 with pod 0 master", "shard0-1", 2, map[string]string{"shard0-0": master.Addr}, "shard0-0.redis"},
		{"pod 1 of 3, pod 0 a replica, pod 2 master", "shard0-1", 3,
			map[string]string{"shard0-0": replica.Addr, "shard0-2": master.Addr}, "shard0-2.redis"},
		{"pod 0 beside a replica", "shard0-0", 2, map[string]string{"shard0-1": replica.Addr}, ""},
		{"pod 2 of 3 beside a replica, pod 0 down", "shard0-2", 3,
			map[string]string{"shard0-0": closed, "shard0-1": replica.Addr}, "shard0-0.redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers := map[string]string{}
			for pod, addr := range tc.peers {
				servers[pod+".redis:6379"] = addr
			}
			args := newScriptShims(t, tc.pod, servers).run(t, filepath.Join(groupsDir, "redis-start.sh"),
				"GROUP_SIZE="+strconv.Itoa(tc.size))
			if got := argAfter(args, "--replicaof"); got != tc.replicaOf {
				t.Errorf("%s: --replicaof %q, want %q (args %q)", tc.pod, got, tc.replicaOf, args)
			}
			want := []string{"--port", "6379", "--dir", "/data", "--appendonly", "yes",
				"--requirepass", "pw", "--masterauth", "pw", "--replica-announce-ip", tc.pod + ".redis"}
			if tc.replicaOf != "" {
				want = append(want, "--replicaof", tc.replicaOf, "6379")
			}
			if !slices.Equal(args, want) {
				t.Errorf("%s: redis-server args %q, want %q", tc.pod, args, want)
			}
		})
	}
}
