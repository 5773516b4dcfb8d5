package config

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
)

// configFuzzSeeds are nasty inputs beside the corpus files.
var configFuzzSeeds = []string{
	"",
	"\n",
	"---",
	"...",
	"--- |\n  x\n",
	"%YAML 1.1\n---\na: b\n",
	"a:",
	"a: [",
	"a: {b: c}",
	"a: &x\n  b: *x\n",
	"a: !!map\n  b: c\n",
	"a:\n  b: ! c\n",
	"a:\n  b: !<!> c\n",
	"a:\n\tb: c\n",
	"\xef\xbb\xbfa:\n  listen: 127.0.0.1:1\n  redis: true\n  servers:\n  - h:1:1\n",
	"a:\n  listen: 127.0.0.1:1\n\xef\xbb\xbf redis: true\n  servers:\n  - h:1:1\n",
	"a:\r  listen: 127.0.0.1:1\r  redis: true\r  servers:\r  - h:1:1\r",
	"a:\u2028  listen: 127.0.0.1:1\u2028  redis: true\u2028  servers:\u2028  - h:1:1\u2028",
	"a:\n  listen: ::1:1\n  redis: true\n  servers:\n  - ::1:1:1\n  - \"::1:1:1 \"\n",
	"a:\n  listen: /s 0777\n  redis: true\n  servers:\n  - /s:1\n  - /s:2 n\n",
	"a:\n  listen: /s -37777777777\n  redis: true\n  servers:\n  - h:11211:1\n",
	"a:\n  ? listen\n  : 0:1\n  redis: true\n  servers: h:1:1\n  hash:\n  - farm\n",
	"a:\n  listen: 1.2.3.4:5\n  redis: true\n  servers:\n  - h:1:2147483647\n  - i:1:2147483647\n  - j:1:2147483647\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_auth_env: PATH\n  servers:\n  - \"h:1:1 \\0\"\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_auth: \"\\x01\\u2028\\\"\"\n  hash_tag: \"\\t\\n\"\n  servers:\n  - h:1:1\n",
	"b:\n  listen: h:1\n  redis: true\n  servers:\n  - h:1:1\na:\n  listen: h:2\n  redis: true\n  servers:\n  - h:1:1\n",
	"a:\n  listen: h:1\n  redis: true\n  servers:\n  - h:99999999999999999999:1\n",
	"0:\n  listen: 0:1\n  redis: true\n  servers:\n  - 0[:1:1",
	"a:\n  listen: h:1\n  redis: true\n  client_output_buffer_limit: 64mb 16Mb 60\n  servers:\n  - h:1:1\n",
	"a:\n  listen: h:1\n  redis: true\n  client_output_buffer_limit: \"0 0\t0\"\n  servers:\n  - h:1:1\n",
	"a:\n  listen: h:1\n  redis: true\n  client_output_buffer_limit: 8589934592gb 1k -1\n  servers:\n  - h:1:1\n",
	"a:\n  listen: h:1\n  redis: true\n  client_output_buffer_limit: normal 1 1 1\n  servers:\n  - h:1:1\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_cluster: true\n  servers:\n  - h:7000\n  - h:7001:5 b\n  - ::1:7002:1\n  - ::1:7003\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_cluster: \"true\"\n  read_from: replica\n  servers:\n  - h:7000 a\n  - h:7000 b\n  - h:x\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_cluster: false\n  servers:\n  - h:7000\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_cluster: true\n  redis_cluster: true\n  servers:\n  - h:7000\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_cluster: true\n  hash_tag: \"{}\"\n  servers:\n  - /s:1\n",
	"a:\n  listen: h:1\n  redis: true\n  redis_cluster: true\n  redis_db: 0\n  auto_eject_hosts: false\n  servers:\n  - h:7000\n",
}

func FuzzParseConfig(f *testing.F) {
	for _, path := range configCorpusFiles(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range configFuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil || err.Error() == "" {
				t.Fatalf("Parse = %v, %q", cfg, err)
			}
			return
		}
		checkConfigInvariants(t, cfg)
		checkConfigRings(t, cfg)
		// What Parse accepts, written back as nutcracker YAML, parses
		// to the same Config.
		again, err := Parse(formatConfig(cfg))
		if err != nil {
			t.Fatalf("Parse(formatConfig(cfg)): %v\n%s", err, formatConfig(cfg))
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, cfg)
		}
	})
}

// checkConfigRings checks that every pool of an accepted config builds a ring, in
// hashring's server order, with addresses net can use.
func checkConfigRings(t *testing.T, cfg *Config) {
	t.Helper()
	for _, p := range cfg.Pools {
		nodes := make([]hashring.Node, len(p.Servers))
		for i, s := range p.Servers {
			nodes[i] = s.Node()
		}
		sorted := append([]hashring.Node(nil), nodes...)
		hashring.SortNodes(sorted)
		if !reflect.DeepEqual(sorted, nodes) {
			t.Fatalf("pool %q: servers not in hashring.SortNodes order", p.Name)
		}
		dist, err := hashring.ParseDistribution(p.Distribution)
		if err != nil {
			t.Fatalf("pool %q: %v", p.Name, err)
		}
		if _, err := hashring.New(nodes, hashring.Options{Hash: p.Hash, Distribution: dist, HashTag: p.HashTag}); err != nil {
			t.Fatalf("pool %q: hashring.New: %v", p.Name, err)
		}
		checkConfigTCPAddr(t, p.Name, p.ListenNetwork, p.ListenAddr)
		for _, s := range p.Servers {
			// nutcracker takes any server host, "[::1]" or "0[" too, and
			// fails when it resolves it; so does net.Dial.
			if !strings.ContainsAny(s.Addr, "[]") {
				checkConfigTCPAddr(t, p.Name, s.Network, s.DialAddr)
			}
		}
		if p.Timeout%time.Millisecond != 0 || p.ServerRetryTimeout%time.Millisecond != 0 {
			t.Fatalf("pool %q: timeouts not in milliseconds", p.Name)
		}
	}
}

func checkConfigTCPAddr(t *testing.T, pool, network, addr string) {
	t.Helper()
	if network != "tcp" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		t.Fatalf("pool %q: address %q: host %q, %v", pool, addr, host, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		t.Fatalf("pool %q: address %q: port %q", pool, addr, port)
	}
}

// formatConfig writes cfg as nutcracker YAML, every value double-quoted.
// The password is written as redis_auth, wherever it came from.
func formatConfig(cfg *Config) []byte {
	var b strings.Builder
	q := strconv.Quote // Go's escapes are a subset of YAML's double-quoted ones
	for _, p := range cfg.Pools {
		fmt.Fprintf(&b, "%s:\n", q(p.Name))
		fmt.Fprintf(&b, "  listen: %s\n", q(p.Listen))
		if p.RedisCluster {
			// The cluster places keys: a cluster pool refuses these keys.
			b.WriteString("  redis_cluster: true\n")
		} else {
			fmt.Fprintf(&b, "  hash: %s\n", q(p.Hash))
			if p.HashTag != "" {
				fmt.Fprintf(&b, "  hash_tag: %s\n", q(p.HashTag))
			}
			fmt.Fprintf(&b, "  distribution: %s\n", q(p.Distribution))
		}
		fmt.Fprintf(&b, "  timeout: %d\n", p.Timeout.Milliseconds())
		fmt.Fprintf(&b, "  backlog: %d\n", p.Backlog)
		fmt.Fprintf(&b, "  client_connections: %d\n", p.ClientConnections)
		fmt.Fprintf(&b, "  redis: %t\n", p.Redis)
		if p.RedisAuth != "" {
			fmt.Fprintf(&b, "  redis_auth: %s\n", q(p.RedisAuth))
		}
		fmt.Fprintf(&b, "  redis_db: %d\n", p.RedisDB)
		fmt.Fprintf(&b, "  preconnect: %t\n", p.Preconnect)
		fmt.Fprintf(&b, "  server_connections: %d\n", p.ServerConnections)
		fmt.Fprintf(&b, "  auto_eject_hosts: %t\n", p.AutoEjectHosts)
		fmt.Fprintf(&b, "  server_retry_timeout: %d\n", p.ServerRetryTimeout.Milliseconds())
		fmt.Fprintf(&b, "  server_failure_limit: %d\n", p.ServerFailureLimit)
		fmt.Fprintf(&b, "  tcpkeepalive: %t\n", p.TCPKeepalive)
		lim := p.ClientOutputBufferLimit
		fmt.Fprintf(&b, "  client_output_buffer_limit: \"%d %d %d\"\n", lim.Hard, lim.Soft, lim.SoftTime/time.Second)
		if len(p.Sentinels) > 0 {
			b.WriteString("  sentinels:\n")
			for _, addr := range p.Sentinels {
				fmt.Fprintf(&b, "    - %s\n", q(addr))
			}
			if p.SentinelMasters != nil {
				b.WriteString("  sentinel_masters:\n")
				for server, master := range p.SentinelMasters {
					fmt.Fprintf(&b, "    - %s\n", q(server+" "+master))
				}
			}
			if p.SentinelUsername != "" {
				fmt.Fprintf(&b, "  sentinel_username: %s\n", q(p.SentinelUsername))
			}
			if p.SentinelAuth != "" {
				fmt.Fprintf(&b, "  sentinel_auth: %s\n", q(p.SentinelAuth))
			}
			if p.FailoverHold != 0 {
				fmt.Fprintf(&b, "  failover_hold: %d\n", p.FailoverHold.Milliseconds())
			}
		}
		if p.GroupMembers != nil {
			b.WriteString("  group_members:\n")
			for server, members := range p.GroupMembers {
				line := server
				for _, m := range members {
					line += " " + m.String()
				}
				fmt.Fprintf(&b, "    - %s\n", q(line))
			}
			if p.FailoverHold != 0 {
				fmt.Fprintf(&b, "  failover_hold: %d\n", p.FailoverHold.Milliseconds())
			}
		}
		if p.ReadFrom != "" {
			fmt.Fprintf(&b, "  read_from: %s\n", q(string(p.ReadFrom)))
		}
		if p.ReplicaMaxLag != 0 {
			fmt.Fprintf(&b, "  replica_max_lag: %d\n", p.ReplicaMaxLag)
		}
		b.WriteString("  servers:\n")
		for _, s := range p.Servers {
			line := s.Addr + ":" + strconv.Itoa(s.Weight)
			if s.ExplicitName {
				line += " " + s.Name
			}
			fmt.Fprintf(&b, "    - %s\n", q(line))
		}
	}
	return []byte(b.String())
}

// The round trip itself, on the corpus: formatConfig must not hide a bug
// only the fuzzer would find.
func TestFormatConfigRoundTrip(t *testing.T) {
	t.Setenv("SHARDPROXY_TEST_REDIS_PASSWORD", "hunter2")
	n := 0
	for _, path := range configCorpusFiles(t) {
		cfg, err := loadConfig(path)
		if err != nil {
			continue
		}
		n++
		again, err := Parse(formatConfig(cfg))
		if err != nil {
			t.Fatalf("%s: Parse(formatConfig(cfg)): %v\n%s", path, err, formatConfig(cfg))
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Errorf("%s: round trip:\n got %+v\nwant %+v", path, again, cfg)
		}
	}
	if n < 20 {
		t.Errorf("%d corpus files parse, want at least 20", n)
	}
}
