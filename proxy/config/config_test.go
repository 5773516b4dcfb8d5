package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// configCorpus is the directory of the differential corpus: one config per
// file, named "ok-*.yml" when nutcracker -t accepts it and "bad-*.yml" when
// it does not. A "# error: TEXT" line in a file is a substring of the error
// Parse must return for it.
const configCorpus = "testdata/config"

// configDifferences lists the corpus files on which shardproxy disagrees
// with nutcracker 0.5.0 on purpose, with the reason. See the top of
// config.go.
var configDifferences = map[string]string{
	"ok-memcached-default.yml":     "no redis: true means memcached, which shardproxy does not serve",
	"ok-redis-false.yml":           "redis: false means memcached, which shardproxy does not serve",
	"bad-redis-auth-file.yml":      "redis_auth_file is a shardproxy key",
	"bad-redis-auth-env.yml":       "redis_auth_env is a shardproxy key",
	"bad-client-output-limit.yml":  "client_output_buffer_limit is a shardproxy key",
	"bad-hash-farm.yml":            "farm is a shardproxy hash",
	"bad-sentinels-groups.yml":     "sentinels and the sentinel_ keys are shardproxy keys",
	"bad-group-members.yml":        "group_members is a shardproxy key",
	"bad-cluster.yml":              "redis_cluster is a shardproxy key",
	"ok-number-wraps.yml":          "nutcracker's nc_atoi wraps numbers above 2^31-1 around; shardproxy refuses them",
	"ok-weight-wraps.yml":          "nutcracker's nc_atoi wraps numbers above 2^31-1 around; shardproxy refuses them",
	"ok-port-wraps.yml":            "nutcracker's nc_atoi wraps numbers above 2^31-1 around; shardproxy refuses them",
	"ok-total-weight-overflow.yml": "nutcracker sums weights in 32 bits and wraps around; shardproxy refuses the pool",
	"ok-utf16.yml":                 "libyaml reads UTF-16; shardproxy wants UTF-8",
	"ok-server-empty-name.yml":     "nutcracker names the server \"\"; hashring cannot express an empty explicit name",
	"ok-server-empty-host.yml":     "nutcracker never resolves an empty host; Go would dial the local host",
	"ok-server-nul.yml":            "nutcracker compares names with strncmp, which stops at NUL",
	"ok-same-listen-address.yml":   "nutcracker -t compares listen strings only and then fails to bind the second pool",
}

// configNutcrackerAccepts runs nutcracker -t on the config file at path and
// returns its verdict and output. err is set when nutcracker did not run.
func configNutcrackerAccepts(bin, path string) (ok bool, out string, err error) {
	b, err := exec.Command(bin, "-t", "-c", path).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, string(b), nil
	case errors.As(err, &exit):
		return false, string(b), nil
	}
	return false, "", fmt.Errorf("nutcracker -t -c %s: %w", path, err)
}

// configWantErrors returns the "# error: TEXT" lines of a corpus file.
func configWantErrors(data []byte) []string {
	var want []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "# error: "); ok {
			want = append(want, s)
		}
	}
	return want
}

func configCorpusFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(configCorpus, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestConfigDifferential runs every corpus file through nutcracker -t and
// loadConfig: they must agree, except on the files of configDifferences,
// where they must disagree.
func TestConfigDifferential(t *testing.T) {
	bin := proxytest.NutcrackerBinary(t)
	t.Setenv("SHARDPROXY_TEST_REDIS_PASSWORD", "hunter2")
	files := configCorpusFiles(t)
	if len(files) < 40 {
		t.Fatalf("%d files in %s, want at least 40", len(files), configCorpus)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ncOK, ncOut, err := configNutcrackerAccepts(bin, path)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(name, "ok-") && !ncOK:
				t.Fatalf("nutcracker -t rejects %s, whose name says it accepts it:\n%s", name, ncOut)
			case strings.HasPrefix(name, "bad-") && ncOK:
				t.Fatalf("nutcracker -t accepts %s, whose name says it rejects it:\n%s", name, ncOut)
			case !strings.HasPrefix(name, "ok-") && !strings.HasPrefix(name, "bad-"):
				t.Fatalf("%s: a corpus file's name starts with ok- or bad-", name)
			}
			cfg, err := loadConfig(path)
			ours := err == nil
			if reason, ok := configDifferences[name]; ok {
				if ours == ncOK {
					t.Fatalf("loadConfig and nutcracker -t agree (accept=%v), but %s is listed as a deliberate difference: %s (err: %v)", ours, name, reason, err)
				}
			} else if ours != ncOK {
				t.Fatalf("nutcracker -t accept=%v, loadConfig: cfg=%v err=%v\nnutcracker says:\n%s", ncOK, cfg != nil, err, ncOut)
			}
			for _, want := range configWantErrors(data) {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("loadConfig error = %v, want it to contain %q", err, want)
				}
			}
			if err == nil {
				checkConfigInvariants(t, cfg)
			}
		})
	}
	for name := range configDifferences {
		if !seen[name] {
			t.Errorf("configDifferences lists %s, which is not in %s", name, configCorpus)
		}
	}
}

// checkConfigInvariants checks what every accepted config satisfies.
func checkConfigInvariants(t testing.TB, cfg *Config) {
	t.Helper()
	if len(cfg.Pools) == 0 {
		t.Fatalf("accepted a config without pools")
	}
	for i, p := range cfg.Pools {
		if i > 0 && compareConfigNames(cfg.Pools[i-1].Name, p.Name) >= 0 {
			t.Errorf("pools out of order: %q before %q", cfg.Pools[i-1].Name, p.Name)
		}
		if p.Name == "" || p.Listen == "" || p.ListenAddr == "" {
			t.Errorf("pool %q: empty name, listen or listen address: %+v", p.Name, p)
		}
		if p.ListenNetwork != "tcp" && p.ListenNetwork != "unix" {
			t.Errorf("pool %q: ListenNetwork = %q", p.Name, p.ListenNetwork)
		}
		if p.ListenPerm&^0o777 != 0 {
			t.Errorf("pool %q: ListenPerm = %o", p.Name, p.ListenPerm)
		}
		if !p.Redis {
			t.Errorf("pool %q: Redis = false", p.Name)
		}
		if p.HashTag != "" && len(p.HashTag) != 2 {
			t.Errorf("pool %q: HashTag = %q", p.Name, p.HashTag)
		}
		if p.ServerConnections < 1 {
			t.Errorf("pool %q: ServerConnections = %d", p.Name, p.ServerConnections)
		}
		if p.Timeout < 0 || p.ServerRetryTimeout < 0 || p.Backlog < 0 || p.ClientConnections < 0 || p.RedisDB < 0 || p.ServerFailureLimit < 0 {
			t.Errorf("pool %q: a negative number: %+v", p.Name, p)
		}
		if len(p.Servers) == 0 {
			t.Errorf("pool %q: no servers", p.Name)
		}
		for j, s := range p.Servers {
			if j > 0 && compareConfigNames(p.Servers[j-1].Name, s.Name) >= 0 {
				t.Errorf("pool %q: servers out of order: %q before %q", p.Name, p.Servers[j-1].Name, s.Name)
			}
			if s.Weight < 1 {
				t.Errorf("pool %q: server %q: weight %d", p.Name, s.Name, s.Weight)
			}
			if s.Name != s.Node().RingName() || s.Name == "" {
				t.Errorf("pool %q: server Name %q, RingName %q", p.Name, s.Name, s.Node().RingName())
			}
			if (s.Network == "unix") != strings.HasPrefix(s.Addr, "/") || (s.Network != "tcp" && s.Network != "unix") {
				t.Errorf("pool %q: server %q: Network %q for Addr %q", p.Name, s.Name, s.Network, s.Addr)
			}
			if s.DialAddr == "" {
				t.Errorf("pool %q: server %q: empty DialAddr", p.Name, s.Name)
			}
		}
	}
}

// compareConfigNames is nutcracker's string_compare: length first, then bytes.
func compareConfigNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// pool returns the Pool that a pool with nothing but listen, redis:
// true and servers parses to: nutcracker's defaults.
func configDefaultPool(name, listen string, servers ...Server) Pool {
	return Pool{
		Name:               name,
		Listen:             listen,
		ListenNetwork:      "tcp",
		ListenAddr:         listen,
		Hash:               "fnv1a_64",
		Distribution:       "ketama",
		Backlog:            512,
		Redis:              true,
		ServerConnections:  1,
		ServerRetryTimeout: 30 * time.Second,
		ServerFailureLimit: 2,
		Servers:            servers,

		ClientOutputBufferLimit: defaultClientOutputBufferLimit,
	}
}

func configTCPServer(addr string, weight int) Server {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return Server{Name: addr, Addr: addr, Network: "tcp", DialAddr: addr, Weight: weight, Port: n}
}

func TestParseConfigValid(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []Pool
	}{
		{
			name: "defaults",
			yml: `alpha:
  listen: 127.0.0.1:22121
  redis: true
  servers:
    - 127.0.0.1:6379:1
`,
			want: []Pool{configDefaultPool("alpha", "127.0.0.1:22121", configTCPServer("127.0.0.1:6379", 1))},
		},
		{
			name: "every directive",
			yml: `alpha:
  listen: 127.0.0.1:22121
  hash: murmur
  hash_tag: "{}"
  distribution: modula
  timeout: 400
  backlog: 1024
  client_connections: 100
  redis: true
  redis_auth: s3cret
  redis_db: 3
  preconnect: true
  server_connections: 4
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 0
  tcpkeepalive: true
  servers:
    - 127.0.0.1:6379:1
`,
			want: []Pool{{
				Name:               "alpha",
				Listen:             "127.0.0.1:22121",
				ListenNetwork:      "tcp",
				ListenAddr:         "127.0.0.1:22121",
				Hash:               "murmur",
				HashTag:            "{}",
				Distribution:       "modula",
				Timeout:            400 * time.Millisecond,
				Backlog:            1024,
				ClientConnections:  100,
				Redis:              true,
				RedisAuth:          "s3cret",
				RedisDB:            3,
				Preconnect:         true,
				ServerConnections:  4,
				AutoEjectHosts:     true,
				ServerRetryTimeout: 2 * time.Second,
				ServerFailureLimit: 0,
				TCPKeepalive:       true,
				Servers:            []Server{configTCPServer("127.0.0.1:6379", 1)},

				ClientOutputBufferLimit: defaultClientOutputBufferLimit,
			}},
		},
		{
			// nutcracker's order: by name, shorter first, then bytewise
			// (reference §1.3 example).
			name: "servers sorted by ring name",
			yml: `alpha:
  listen: 127.0.0.1:22121
  redis: true
  servers:
    - 10.0.0.1:6379:1 zeta
    - 10.0.0.2:6379:2 alpha
    - 10.0.0.3:6379:3 mid
    - 10.0.0.4:6379:1 b
    - 10.0.0.5:6379:1 longername
`,
			want: []Pool{configDefaultPool("alpha", "127.0.0.1:22121",
				Server{Name: "b", Addr: "10.0.0.4:6379", Network: "tcp", DialAddr: "10.0.0.4:6379", Weight: 1, ExplicitName: true, Port: 6379},
				Server{Name: "mid", Addr: "10.0.0.3:6379", Network: "tcp", DialAddr: "10.0.0.3:6379", Weight: 3, ExplicitName: true, Port: 6379},
				Server{Name: "zeta", Addr: "10.0.0.1:6379", Network: "tcp", DialAddr: "10.0.0.1:6379", Weight: 1, ExplicitName: true, Port: 6379},
				Server{Name: "alpha", Addr: "10.0.0.2:6379", Network: "tcp", DialAddr: "10.0.0.2:6379", Weight: 2, ExplicitName: true, Port: 6379},
				Server{Name: "longername", Addr: "10.0.0.5:6379", Network: "tcp", DialAddr: "10.0.0.5:6379", Weight: 1, ExplicitName: true, Port: 6379},
			)},
		},
		{
			name: "ring names",
			yml: `alpha:
  listen: 127.0.0.1:22121
  redis: true
  servers:
    - 127.0.0.1:06379:1
    - 127.0.0.2:11211:2
    - 127.0.0.3:011211:1
    - /tmp/r.sock:1
    - ::1:6380:1
    - 127.1:6381:1
    - cache.example.com:6382:1
`,
			want: []Pool{configDefaultPool("alpha", "127.0.0.1:22121",
				Server{Name: "::1:6380", Addr: "::1:6380", Network: "tcp", DialAddr: "[::1]:6380", Weight: 1, Port: 6380},
				Server{Name: "127.0.0.2", Addr: "127.0.0.2:11211", Network: "tcp", DialAddr: "127.0.0.2:11211", Weight: 2, Port: 11211},
				Server{Name: "127.0.0.3", Addr: "127.0.0.3:011211", Network: "tcp", DialAddr: "127.0.0.3:11211", Weight: 1, Port: 11211},
				Server{Name: "127.1:6381", Addr: "127.1:6381", Network: "tcp", DialAddr: "127.0.0.1:6381", Weight: 1, Port: 6381},
				Server{Name: "/tmp/r.sock:", Addr: "/tmp/r.sock", Network: "unix", DialAddr: "/tmp/r.sock", Weight: 1},
				Server{Name: "127.0.0.1:06379", Addr: "127.0.0.1:06379", Network: "tcp", DialAddr: "127.0.0.1:6379", Weight: 1, Port: 6379},
				Server{Name: "cache.example.com:6382", Addr: "cache.example.com:6382", Network: "tcp", DialAddr: "cache.example.com:6382", Weight: 1, Port: 6382},
			)},
		},
		{
			name: "named unix socket server",
			yml: `alpha:
  listen: 127.0.0.1:22121
  redis: true
  servers:
    - /var/run/redis.sock:3 local
`,
			want: []Pool{configDefaultPool("alpha", "127.0.0.1:22121",
				Server{Name: "local", Addr: "/var/run/redis.sock", Network: "unix", DialAddr: "/var/run/redis.sock", Weight: 3, ExplicitName: true},
			)},
		},
		{
			name: "listen forms",
			yml: `ipv6:
  listen: ::1:22121
  redis: true
  servers:
    - 127.0.0.1:6379:1
unix:
  listen: /tmp/gamma.sock 0666
  redis: true
  servers:
    - 127.0.0.1:6379:1
bare:
  listen: /tmp/bare.sock
  redis: true
  servers:
    - 127.0.0.1:6379:1
zeros:
  listen: 0x7f.1:022122
  redis: true
  servers:
    - 127.0.0.1:6379:1
`,
			want: []Pool{
				func() Pool {
					p := configDefaultPool("bare", "/tmp/bare.sock", configTCPServer("127.0.0.1:6379", 1))
					p.ListenNetwork = "unix"
					return p
				}(),
				func() Pool {
					p := configDefaultPool("ipv6", "::1:22121", configTCPServer("127.0.0.1:6379", 1))
					p.ListenAddr = "[::1]:22121"
					return p
				}(),
				func() Pool {
					p := configDefaultPool("unix", "/tmp/gamma.sock 0666", configTCPServer("127.0.0.1:6379", 1))
					p.ListenNetwork, p.ListenAddr, p.ListenPerm = "unix", "/tmp/gamma.sock", 0o666
					return p
				}(),
				func() Pool {
					p := configDefaultPool("zeros", "0x7f.1:022122", configTCPServer("127.0.0.1:6379", 1))
					p.ListenAddr = "127.0.0.1:22122"
					return p
				}(),
			},
		},
		{
			// nutcracker sorts pools by name, shorter first: beta before alpha.
			name: "pools sorted by name",
			yml: `gamma:
  listen: 127.0.0.1:22123
  redis: true
  servers:
    - 127.0.0.1:6379:1
alpha:
  listen: 127.0.0.1:22121
  redis: true
  servers:
    - 127.0.0.1:6379:1
beta:
  listen: 127.0.0.1:22122
  redis: true
  servers:
    - 127.0.0.1:6379:1
`,
			want: []Pool{
				configDefaultPool("beta", "127.0.0.1:22122", configTCPServer("127.0.0.1:6379", 1)),
				configDefaultPool("alpha", "127.0.0.1:22121", configTCPServer("127.0.0.1:6379", 1)),
				configDefaultPool("gamma", "127.0.0.1:22123", configTCPServer("127.0.0.1:6379", 1)),
			},
		},
		{
			// nutcracker applies each item of the one list in a pool as a
			// value of its key, whatever the key.
			name: "listen as the list, servers as a scalar",
			yml: `alpha:
  listen:
    - 127.0.0.1:22121
  redis: true
  servers: 127.0.0.1:6379:1
`,
			want: []Pool{configDefaultPool("alpha", "127.0.0.1:22121", configTCPServer("127.0.0.1:6379", 1))},
		},
		{
			name: "servers given twice add up",
			yml: `alpha:
  listen: 127.0.0.1:22121
  servers:
    - 127.0.0.1:6380:1
  redis: true
  servers: 127.0.0.1:6379:1
`,
			want: []Pool{configDefaultPool("alpha", "127.0.0.1:22121", configTCPServer("127.0.0.1:6379", 1), configTCPServer("127.0.0.1:6380", 1))},
		},
		{
			name: "quoting, comments, block scalars",
			yml: `# comment
"alpha":   # comment
  'listen': "127.0.0.1:22121"
  redis: "true"
  hash: >-
    md5
  redis_auth: first
    second
  servers:
  - "127.0.0.1:6379:1"   # comment
`,
			want: []Pool{func() Pool {
				p := configDefaultPool("alpha", "127.0.0.1:22121", configTCPServer("127.0.0.1:6379", 1))
				p.Hash, p.RedisAuth = "md5", "first second"
				return p
			}()},
		},
		{
			name: "farm hash (shardproxy only)",
			yml: `alpha:
  listen: 127.0.0.1:22121
  redis: true
  hash: farm
  servers:
    - 127.0.0.1:6379:1
`,
			want: []Pool{func() Pool {
				p := configDefaultPool("alpha", "127.0.0.1:22121", configTCPServer("127.0.0.1:6379", 1))
				p.Hash = "farm"
				return p
			}()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(cfg.Pools, tc.want) {
				t.Errorf("Parse pools:\n got %+v\nwant %+v", cfg.Pools, tc.want)
			}
			checkConfigInvariants(t, cfg)
		})
	}
}

func TestParseConfigInvalid(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const one = "  servers:\n    - 127.0.0.1:6379:1\n"
	// want is the whole error, or a substring of it after "…".
	tests := []struct {
		name, yml, want string
	}{
		// The file.
		{"empty", "", "no pools: the file is empty"},
		{"comments only", "# nothing\n", "no pools: the file is empty"},
		{"document start", "---\n" + head + one, `line 1: document marker "---": nutcracker reads one document without markers`},
		{"document end", head + one + "...\n", `line 6: document marker "...": nutcracker reads one document without markers`},
		{"second document", head + one + "--- # next\n", `line 6: document marker "---": nutcracker reads one document without markers`},
		{"utf-16", "\xff\xfea\x00:\x00", "the file is UTF-16; save it as UTF-8"},
		{"yaml syntax", head + "   hash: md5\n" + one, "yaml: line 4: mapping values are not allowed in this context"},
		{"tab indentation", "alpha:\n\tlisten: 127.0.0.1:22121\n", "yaml: line 2: found character that cannot start any token"},
		{"flow sequence", head + "  servers: [127.0.0.1:6379:1]\n", `line 4: flow style ("[...]" or "{...}"): nutcracker allows only block style ("key: value" and "- item" lines)`},
		{"flow mapping", "alpha: {listen: 127.0.0.1:22121}\n", `line 1: flow style ("[...]" or "{...}"): nutcracker allows only block style ("key: value" and "- item" lines)`},
		{"anchor", head + "  timeout: &t 100\n" + one, `line 4: anchor "&t": nutcracker does not allow anchors`},
		{"alias", "a: &x\n  listen: 127.0.0.1:22121\nb: *x\n", `line 1: anchor "&x": nutcracker does not allow anchors`},
		{"tag", head + "  timeout: !!int 100\n" + one, "line 4: tag: nutcracker does not allow tags"},
		{"non-specific tag", head + "  timeout: ! 100\n" + one, "line 4: tag: nutcracker does not allow tags"},
		{"tag after wide characters", head + "  \"ключ\": ! 100\n" + one, "line 4: tag: nutcracker does not allow tags"},
		{"tag on item", head + "  servers:\n    - ! 127.0.0.1:6379:1\n", "line 5: tag: nutcracker does not allow tags"},
		{"nul", head + "  redis_auth: \"a\\0b\"\n" + one, "line 4: a value holds a NUL byte"},
		{"top-level scalar", "hello\n", "line 1: the top level must map pool names to their settings"},
		{"top-level list", "- a\n", "line 1: the top level must map pool names to their settings"},
		{"pool is a scalar", "alpha: 127.0.0.1:22121\n", `pool "alpha": line 1: the pool must be a mapping of settings ("key: value" lines)`},
		{"pool is empty", "alpha:\n", `pool "alpha": line 1: the pool must be a mapping of settings ("key: value" lines)`},
		{"pool is a list", "alpha:\n  - a\n", `pool "alpha": line 2: the pool must be a mapping of settings ("key: value" lines)`},
		{"too deep", head + "  options:\n    x: 1\n" + one, `pool "alpha": options: line 5: too deep; nutcracker allows a string or a list of strings`},
		{"list of lists", head + "  servers:\n    - - 127.0.0.1:6379:1\n", `pool "alpha": servers: line 5: a list item must be a string`},
		{"two lists", "alpha:\n  listen:\n    - 127.0.0.1:22121\n  redis: true\n" + one, `pool "alpha": servers: only one key of a pool may hold a list, and listen already does`},
		{"no servers", head, `pool "alpha": servers: missing`},
		{"servers scalar", head + "  servers: 127.0.0.1:6379:1\n", `pool "alpha": servers: must be a list of "- host:port:weight [name]" lines`},
		{"empty pool name", "\"\":\n  listen: 127.0.0.1:22121\n  redis: true\n" + one, "line 1: empty pool name"},
		{"empty key", head + "  \"\": x\n" + one, `pool "alpha": line 4: empty key`},

		// Directives.
		{"unknown key", head + "  reuseport: true\n" + one, `pool "alpha": unknown key "reuseport"`},
		{"key case", head + "  Hash: md5\n" + one, `pool "alpha": unknown key "Hash"`},
		{"duplicate key", head + "  hash: md5\n  hash: md5\n" + one, `pool "alpha": hash: duplicate key`},
		{"duplicate via list", "alpha:\n  hash:\n    - md5\n    - crc16\n  listen: 127.0.0.1:22121\n  redis: true\n  servers: 127.0.0.1:6379:1\n", `pool "alpha": hash: duplicate key`},
		{"empty value", head + "  hash:\n" + one, `pool "alpha": hash: empty value`},
		{"empty quoted value", head + "  redis_auth: ''\n" + one, `pool "alpha": redis_auth: empty value`},
		{"bool yes", "alpha:\n  listen: 127.0.0.1:22121\n  redis: yes\n" + one, `pool "alpha": redis: "yes" is not true or false`},
		{"bool True", head + "  preconnect: True\n" + one, `pool "alpha": preconnect: "True" is not true or false`},
		{"negative", head + "  timeout: -1\n" + one, `pool "alpha": timeout: "-1" is not a number`},
		{"plus sign", head + "  backlog: +1\n" + one, `pool "alpha": backlog: "+1" is not a number`},
		{"space in number", head + "  backlog: \"1 \"\n" + one, `pool "alpha": backlog: "1 " is not a number`},
		{"too large", head + "  redis_db: 2147483648\n" + one, `pool "alpha": redis_db: "2147483648" is too large (at most 2147483647)`},
		{"too large and not a number", head + "  redis_db: 99999999999x\n" + one, `pool "alpha": redis_db: "99999999999x" is not a number`},
		{"hash case", head + "  hash: FNV1A_64\n" + one, `pool "alpha": hash: "FNV1A_64" is not a known hash`},
		{"distribution", head + "  distribution: Ketama\n" + one, `pool "alpha": distribution: "Ketama" is not a known distribution`},
		{"hash_tag short", head + "  hash_tag: \"{\"\n" + one, `pool "alpha": hash_tag: "{" is not exactly 2 characters`},
		{"hash_tag long", head + "  hash_tag: \"{}{\"\n" + one, `pool "alpha": hash_tag: "{}{" is not exactly 2 characters`},

		// listen.
		{"listen missing", "alpha:\n  redis: true\n" + one, `pool "alpha": listen: missing`},
		{"listen no port", "alpha:\n  listen: localhost\n  redis: true\n" + one, `pool "alpha": listen: "localhost" is not host:port or /path/to.sock`},
		{"listen port 0", "alpha:\n  listen: 127.0.0.1:0\n  redis: true\n" + one, `pool "alpha": listen: "127.0.0.1:0": port "0" is not between 1 and 65535`},
		{"listen port 65536", "alpha:\n  listen: 127.0.0.1:65536\n  redis: true\n" + one, `pool "alpha": listen: "127.0.0.1:65536": port "65536" is not between 1 and 65535`},
		{"listen port text", "alpha:\n  listen: 127.0.0.1:http\n  redis: true\n" + one, `pool "alpha": listen: "127.0.0.1:http": port "http" is not a number`},
		{"listen brackets", "alpha:\n  listen: \"[::1]:22121\"\n  redis: true\n" + one, `pool "alpha": listen: "[::1]:22121": write an IPv6 host without brackets, as in ::1:22121`},
		{"listen empty host", "alpha:\n  listen: :22121\n  redis: true\n" + one, `pool "alpha": listen: ":22121": the host is empty`},
		{"listen bad host", "alpha:\n  listen: bad_host!:22121\n  redis: true\n" + one, `pool "alpha": listen: "bad_host!:22121": "bad_host!" is not an IP address or a host name`},
		{"listen perm", "alpha:\n  listen: /tmp/a.sock 1000\n  redis: true\n" + one, `pool "alpha": listen: "/tmp/a.sock 1000": permissions "1000" are not octal 0 to 0777`},
		{"listen perm negative", "alpha:\n  listen: /tmp/a.sock -1\n  redis: true\n" + one, `pool "alpha": listen: "/tmp/a.sock -1": permissions "-1" are not octal 0 to 0777`},
		{"listen perm overflow", "alpha:\n  listen: /tmp/a.sock 7777777777777777777777\n  redis: true\n" + one, `pool "alpha": listen: "/tmp/a.sock 7777777777777777777777": permissions "7777777777777777777777" are not octal 0 to 0777`},
		{"listen path long", "alpha:\n  listen: /" + strings.Repeat("x", 107) + "\n  redis: true\n" + one, `…: the socket path is longer than 107 bytes`},

		// servers.
		{"weight missing", head + "  servers:\n    - 127.0.0.1:6379\n", `pool "alpha": servers[0]: "127.0.0.1:6379": want "host:port:weight [name]" or "/path/to.sock:weight [name]"`},
		{"no colon", head + "  servers:\n    - localhost\n", `pool "alpha": servers[0]: "localhost": want "host:port:weight [name]" or "/path/to.sock:weight [name]"`},
		{"weight 0", head + "  servers:\n    - 127.0.0.1:6379:1\n    - 127.0.0.1:6380:0\n", `pool "alpha": servers[1]: "127.0.0.1:6380:0": weight must be at least 1`},
		{"weight x", head + "  servers:\n    - 127.0.0.1:6379:1\n    - 127.0.0.1:6380:1\n    - 10.0.0.1:6379:x\n", `pool "alpha": servers[2]: "10.0.0.1:6379:x": weight is not a number`},
		{"weight too large", head + "  servers:\n    - 127.0.0.1:6379:4294967297\n", `pool "alpha": servers[0]: "127.0.0.1:6379:4294967297": weight is too large (at most 2147483647)`},
		{"port 0", head + "  servers:\n    - 127.0.0.1:0:1\n", `pool "alpha": servers[0]: "127.0.0.1:0:1": port "0" is not between 1 and 65535`},
		{"port empty", head + "  servers:\n    - 127.0.0.1::1\n", `pool "alpha": servers[0]: "127.0.0.1::1": port "" is not a number`},
		{"empty host", head + "  servers:\n    - :6379:1\n", `pool "alpha": servers[0]: ":6379:1": the host is empty`},
		{"empty name", head + "  servers:\n    - \"127.0.0.1:6379:1 \"\n", `pool "alpha": servers[0]: "127.0.0.1:6379:1 ": the name after the last space is empty`},
		{"name with a space", head + "  servers:\n    - 127.0.0.1:6379:1 my server\n", `pool "alpha": servers[0]: "127.0.0.1:6379:1 my server": weight is not a number`},
		{"unix path with colon", head + "  servers:\n    - /tmp/a:b.sock:1\n", `pool "alpha": servers[0]: "/tmp/a:b.sock:1": want "host:port:weight [name]" or "/path/to.sock:weight [name]"`},
		{"empty item", head + "  servers:\n    - 127.0.0.1:6379:1\n    -\n", `pool "alpha": servers: empty value`},
		{"duplicate names", head + "  servers:\n    - 127.0.0.1:6379:1 a\n    - 127.0.0.1:6380:1\n    - 127.0.0.1:6381:1 a\n", `pool "alpha": servers[0] and servers[2]: both are named "a"`},
		{"duplicate address", head + "  servers:\n    - 127.0.0.1:6379:1\n    - 127.0.0.1:6379:2\n", `pool "alpha": servers[0] and servers[1]: both are named "127.0.0.1:6379"`},
		{"server_connections 0", head + "  server_connections: 0\n" + one, `pool "alpha": server_connections: must be at least 1`},

		// redis and passwords.
		{"memcached by default", "alpha:\n  listen: 127.0.0.1:22121\n" + one, `pool "alpha": redis: shardproxy serves only Redis pools (redis: true); redis is missing, and nutcracker's default is memcached`},
		{"redis false", "alpha:\n  listen: 127.0.0.1:22121\n  redis: false\n" + one, `pool "alpha": redis: shardproxy serves only Redis pools (redis: true); redis: false is memcached`},
		{"redis_auth without redis", "alpha:\n  listen: 127.0.0.1:22121\n  redis_auth: x\n" + one, `pool "alpha": redis_auth: only allowed with redis: true`},
		{"redis_auth_env without redis", "alpha:\n  listen: 127.0.0.1:22121\n  redis: false\n  redis_auth_env: HOME\n" + one, `pool "alpha": redis_auth_env: only allowed with redis: true`},
		{"two passwords", head + "  redis_auth: x\n  redis_auth_file: /nonexistent\n" + one, `pool "alpha": redis_auth_file: give only one of redis_auth, redis_auth_file and redis_auth_env`},
		{"auth env unset", head + "  redis_auth_env: SHARDPROXY_TEST_UNSET_VARIABLE\n" + one, `pool "alpha": redis_auth_env: environment variable "SHARDPROXY_TEST_UNSET_VARIABLE" is not set`},
		{"auth file missing", head + "  redis_auth_file: /nonexistent/password\n" + one, `pool "alpha": redis_auth_file: open /nonexistent/password: no such file or directory`},
		{"auth file is a directory", head + "  redis_auth_file: /\n" + one, `pool "alpha": redis_auth_file: / is not a regular file`},

		// Across pools.
		{"duplicate pool", head + one + head + one, `pool "alpha": defined twice, on lines 1 and 6`},
		{"duplicate listen", head + one + "beta:\n  listen: 127.0.0.1:22121\n  redis: true\n" + one, `pools "alpha" and "beta": both listen on "127.0.0.1:22121"`},
		{"same address", head + one + "beta:\n  listen: 127.0.0.1:022121\n  redis: true\n" + one, `pools "alpha" and "beta": "127.0.0.1:22121" and "127.0.0.1:022121" are the same address`},
		{"same socket", "a:\n  listen: /tmp/x.sock\n  redis: true\n" + one + "b:\n  listen: /tmp/x.sock 0600\n  redis: true\n" + one, `pools "a" and "b": "/tmp/x.sock" and "/tmp/x.sock 0600" are the same address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yml))
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", cfg, tc.want)
			}
			if got := err.Error(); got != tc.want && !(strings.HasPrefix(tc.want, "…") && strings.Contains(got, tc.want[len("…"):])) {
				t.Errorf("Parse error:\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

// The forms below were checked with nutcracker -t: glibc's getaddrinfo
// takes those with a want as numeric addresses and looks the others up.
func TestInetAton(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0X7F.1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"127.0.0.01", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"4294967295", "255.255.255.255"},
		{"1.16777215", "1.255.255.255"},
		{"0x", ""},
		{"1.2.3.4.5", ""},
		{"256.1", ""},
		{"08", ""},
		{"4294967296", ""},
		{"0x100000000", ""},
		{"1.16777216", ""},
		{"127.0.0.1.", ""},
		{"+1", ""},
		{"localhost", ""},
		{"", ""},
	}
	for _, tc := range tests {
		a, ok := inetAton(tc.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("inetAton(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStrtolOctal(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0666", 0o666, true},
		{"666", 0o666, true},
		{" \t0777x", 0o777, true},
		{"rw", 0, true},
		{"", 0, true},
		{"9", 0, true},
		{"-1", -1, true},
		{"+7", 7, true},
		{"-0", 0, true},
		{"777777777777777777777", 1<<63 - 1, true},
		{"1000000000000000000000", 0, false},
		{"-1000000000000000000000", -1 << 63, true},
		{"-1000000000000000000001", 0, false},
	}
	for _, tc := range tests {
		got, ok := strtolOctal(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("strtolOctal(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// loadConfig reads and parses the config file at path, as start-up and
// reload do.
func loadConfig(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseFile(path, data)
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const pool = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n%s  servers:\n    - 127.0.0.1:6379:1\n"

	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "missing.yml")
		_, err := loadConfig(p)
		if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("loadConfig(%q) error = %v, want one naming the path and wrapping ErrNotExist", p, err)
		}
	})
	t.Run("error names the path", func(t *testing.T) {
		p := write("bad.yml", "alpha:\n  listen: 127.0.0.1:22121\n  redis: yes\n  servers:\n    - 127.0.0.1:6379:1\n")
		_, err := loadConfig(p)
		want := p + `: pool "alpha": redis: "yes" is not true or false`
		if err == nil || err.Error() != want {
			t.Errorf("loadConfig error = %v, want %q", err, want)
		}
	})
	t.Run("too large", func(t *testing.T) {
		p := write("big.yml", "#"+strings.Repeat("x", maxConfigSize))
		_, err := loadConfig(p)
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("loadConfig error = %v, want a size error", err)
		}
	})
	t.Run("redis_auth_file relative to the config", func(t *testing.T) {
		write("password", "s3cret\r\n\n")
		p := write("auth-file.yml", fmt.Sprintf(pool, "  redis_auth_file: password\n"))
		cfg, err := loadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Pools[0].RedisAuth; got != "s3cret" {
			t.Errorf("RedisAuth = %q, want %q", got, "s3cret")
		}
	})
	t.Run("redis_auth_file empty", func(t *testing.T) {
		pw := write("empty-password", "\n")
		p := write("auth-empty.yml", fmt.Sprintf(pool, "  redis_auth_file: "+pw+"\n"))
		_, err := loadConfig(p)
		want := fmt.Sprintf(`%s: pool "alpha": redis_auth_file: %s is empty`, p, pw)
		if err == nil || err.Error() != want {
			t.Errorf("loadConfig error = %v, want %q", err, want)
		}
	})
	// A FIFO as the config or as its redis_auth_file is refused at once:
	// opening it for reading must not wait for a writer.
	t.Run("FIFO", func(t *testing.T) {
		fifo := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { // let a reader stuck in open go
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		})
		authFIFO := write("auth-fifo.yml", fmt.Sprintf(pool, "  redis_auth_file: fifo\n"))
		for _, tc := range []struct{ path, want string }{
			{fifo, fifo + " is not a regular file"},
			{authFIFO, fmt.Sprintf(`%s: pool "alpha": redis_auth_file: %s is not a regular file`, authFIFO, fifo)},
		} {
			done := make(chan error, 1)
			go func() {
				_, err := loadConfig(tc.path)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || err.Error() != tc.want {
					t.Errorf("loadConfig(%q) error = %v, want %q", tc.path, err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("loadConfig(%q): no answer within 10s", tc.path)
			}
		}
	})
	t.Run("symlink", func(t *testing.T) {
		target := write("target.yml", fmt.Sprintf(pool, ""))
		link := filepath.Join(dir, "link.yml")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(link); err != nil {
			t.Errorf("loadConfig(%q) through a symlink: %v", link, err)
		}
	})
	t.Run("redis_auth_env", func(t *testing.T) {
		t.Setenv("SHARDPROXY_TEST_PASSWORD", "from-env")
		cfg, err := Parse([]byte(fmt.Sprintf(pool, "  redis_auth_env: SHARDPROXY_TEST_PASSWORD\n")))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Pools[0].RedisAuth; got != "from-env" {
			t.Errorf("RedisAuth = %q, want %q", got, "from-env")
		}
	})
	t.Run("redis_auth_env empty", func(t *testing.T) {
		t.Setenv("SHARDPROXY_TEST_PASSWORD", "")
		_, err := Parse([]byte(fmt.Sprintf(pool, "  redis_auth_env: SHARDPROXY_TEST_PASSWORD\n")))
		want := `pool "alpha": redis_auth_env: environment variable "SHARDPROXY_TEST_PASSWORD" is empty`
		if err == nil || err.Error() != want {
			t.Errorf("Parse error = %v, want %q", err, want)
		}
	})
}

// TestConfigDifferentialGenerated compares loadConfig with nutcracker -t on
// random configs made of plausible and broken pieces, most of them valid
// or nearly so. Disagreements are allowed only for the deliberate
// differences, recognized by shardproxy's error.
func TestConfigDifferentialGenerated(t *testing.T) {
	bin := proxytest.NutcrackerBinary(t)
	deliberate := []string{
		"shardproxy serves only Redis pools",
		"is too large",
		`port "4294`, // above 2^32: nc_atoi wraps it around
		"the weights add up to more than",
		"the name after the last space is empty",
		"the host is empty",
		"are the same address",
	}
	const n = 300
	r := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	configs := make([]string, n)
	paths := make([]string, n)
	for i := range configs {
		configs[i] = generateConfig(r)
		paths[i] = filepath.Join(dir, fmt.Sprintf("%03d.yml", i))
		if err := os.WriteFile(paths[i], []byte(configs[i]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// nutcracker -t takes milliseconds, mostly process start: run a few at
	// once.
	ncOK := make([]bool, n)
	ncOut := make([]string, n)
	ncErr := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				ncOK[i], ncOut[i], ncErr[i] = configNutcrackerAccepts(bin, paths[i])
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(ncErr...); err != nil {
		t.Fatal(err)
	}

	var both int
	for i, yml := range configs {
		cfg, err := loadConfig(paths[i])
		if err == nil {
			checkConfigInvariants(t, cfg)
		}
		if ncOK[i] && err == nil {
			both++
		}
		if ncOK[i] == (err == nil) {
			continue
		}
		if err != nil && slices.ContainsFunc(deliberate, func(s string) bool { return strings.Contains(err.Error(), s) }) {
			continue
		}
		if err == nil && strings.Contains(yml, "hash: farm") {
			continue
		}
		t.Errorf("config %d: nutcracker -t accept=%v, loadConfig error %v\n%s%s", i, ncOK[i], err, yml, ncOut[i])
	}
	if both < n/8 {
		t.Errorf("only %d of %d generated configs are valid; the generator needs tuning", both, n)
	}
}

// generateConfig returns a random config: 1 to 3 pools of mostly valid
// directives and servers, with a few broken values.
func generateConfig(r *rand.Rand) string {
	pick := func(valid []string, broken ...string) string {
		if len(broken) > 0 && r.IntN(25) == 0 {
			return broken[r.IntN(len(broken))]
		}
		return valid[r.IntN(len(valid))]
	}
	quote := func(v string) string {
		if strings.ContainsAny(v, "{}#") || strings.Contains(v, ": ") || strings.HasSuffix(v, ":") {
			return strconv.Quote(v) // YAML would read these as something else
		}
		switch r.IntN(6) {
		case 0:
			return strconv.Quote(v)
		case 1:
			return "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		return v
	}
	nums := []string{"0", "1", "2", "100", "2147483647", "007"}
	badNums := []string{"-1", "+1", "0x10", "1.5", "", "2147483648", "4294967297"}
	bools := []string{"true", "false"}
	badBools := []string{"yes", "True", "1", ""}
	values := map[string]func() string{
		"hash": func() string {
			return pick([]string{"fnv1a_64", "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins", "one_at_a_time"}, "FNV1A_64", "farm", "")
		},
		"hash_tag":     func() string { return pick([]string{"{}", "$$", "é"}, "{", "{}}", "") },
		"distribution": func() string { return pick([]string{"ketama", "modula", "random"}, "Ketama", "") },
		"redis_auth":   func() string { return pick([]string{"secret", "x: y", "#not a comment"}, "") },
	}
	for _, k := range []string{"timeout", "backlog", "client_connections", "redis_db", "server_connections", "server_retry_timeout", "server_failure_limit"} {
		values[k] = func() string { return pick(nums, badNums...) }
	}
	for _, k := range []string{"preconnect", "auto_eject_hosts", "tcpkeepalive"} {
		values[k] = func() string { return pick(bools, badBools...) }
	}
	keys := slices.Sorted(maps.Keys(values))
	server := func() string {
		var s string
		if r.IntN(6) == 0 {
			s = pick([]string{"/tmp/r1.sock", "/tmp/r2.sock"}, "/tmp/a:b.sock", "/tmp/r 3.sock")
		} else {
			s = pick([]string{"127.0.0.1", "127.0.0.2", "::1", "localhost", "redis.example.com"}, "", "[::1]") +
				":" + pick([]string{strconv.Itoa(6379 + r.IntN(50)), "11211", "011211", "06379"}, "0", "65536", "", "x", "4294973675")
		}
		if r.IntN(15) != 0 {
			s += ":" + pick([]string{"1", "2", "3"}, "0", "-1", "x", "", "2147483647", "4294967297")
		}
		if r.IntN(3) == 0 {
			s += " " + pick([]string{"a", "b", "server1", "127.0.0.1:6379", "127.0.0.1", "/tmp/r1.sock:", "s" + strconv.Itoa(r.IntN(1000))}, "", "a b", "x\ty")
		}
		return s
	}
	var b strings.Builder
	for p := 1 + r.IntN(3); p > 0; p-- {
		fmt.Fprintf(&b, "%s:\n", pick([]string{"alpha", "beta", "b", "gamma", "a b", "p" + strconv.Itoa(r.IntN(100))}, `""`))
		ind := pick([]string{"  ", "    ", " "})
		if r.IntN(12) != 0 {
			port := strconv.Itoa(22121 + r.IntN(100))
			listen := pick([]string{"127.0.0.1:" + port, "localhost:" + port, "::1:" + port, ":::" + port, "0.0.0.0:" + port, "127.0.0.1:0" + port, "127.1:" + port, "/tmp/sp-" + port + ".sock", "/tmp/sp-" + port + ".sock 0666", "/tmp/sp-" + port + ".sock rw"},
				"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1", "[::1]:"+port, ":"+port, "/tmp/sp-d.sock 1000")
			fmt.Fprintf(&b, "%slisten: %s\n", ind, quote(listen))
		}
		if r.IntN(20) != 0 {
			fmt.Fprintf(&b, "%sredis: true\n", ind)
		}
		for k := r.IntN(4); k > 0; k-- {
			key := keys[r.IntN(len(keys))]
			fmt.Fprintf(&b, "%s%s: %s\n", ind, pick([]string{key}, "reuseport", "Hash", "sentinels"), quote(values[key]()))
		}
		if r.IntN(20) != 0 {
			fmt.Fprintf(&b, "%sservers:\n", ind)
			item := ind + pick([]string{"  ", "", "    "}) + "- "
			for k := 1 + r.IntN(4); k > 0; k-- {
				fmt.Fprintf(&b, "%s%s\n", item, quote(server()))
			}
		}
		if r.IntN(15) == 0 {
			fmt.Fprintf(&b, "%sservers: %s\n", ind, quote(server()))
		}
	}
	return b.String()
}

func TestParseConfigKubernetes(t *testing.T) {
	base := "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	cfg, err := Parse([]byte(base + "  kubernetes_service: redis\n  kubernetes_port: 7000\n  kubernetes_weight: 2\n"))
	if err != nil {
		t.Fatalf("pods as members: %v", err)
	}
	if p := cfg.Pools[0]; !p.KubernetesMembers || p.KubernetesPort != 7000 || p.KubernetesWeight != 2 || len(p.Servers) != 0 {
		t.Fatalf("pods as members: %+v", p)
	}
	cfg, err = Parse([]byte(base + "  kubernetes_service: redis\n  kubernetes_namespace: shop\n  servers:\n    - redis-0.redis.shop.svc:6379:1 server0\n    - 10.0.0.9:6379:1 static\n"))
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]string{}
	for _, s := range cfg.Pools[0].Servers {
		pods[s.Name] = s.Pod
	}
	if pods["server0"] != "redis-0" || pods["static"] != "" || cfg.Pools[0].KubernetesNamespace != "shop" {
		t.Fatalf("pods = %v", pods)
	}
	for _, tc := range []struct{ extra, want string }{
		{"  kubernetes_service: Redis_1\n  servers:\n    - a:1:1\n", `kubernetes_service: "Redis_1" is not a Kubernetes name`},
		{"  kubernetes_namespace: shop\n  servers:\n    - a:1:1\n", "kubernetes_namespace: only allowed with kubernetes_service"},
		{"  kubernetes_service: redis\n  kubernetes_port: 7000\n  servers:\n    - a:1:1\n", "kubernetes_port: only used with kubernetes_service and no servers list"},
		{"  kubernetes_service: redis\n  kubernetes_weight: 0\n", "kubernetes_weight: must be at least 1"},
		{"", "servers: missing"},
	} {
		_, err := Parse([]byte(base + tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.extra, err, tc.want)
		}
	}
}

// client_output_buffer_limit takes Redis' client-output-buffer-limit
// values after the class, and its errors name the pool, key and value.
func TestConfigClientOutputBufferLimit(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - 127.0.0.1:6379:1\n"
	cfg, err := Parse([]byte(head + servers))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Pools[0].ClientOutputBufferLimit; got != defaultClientOutputBufferLimit {
		t.Errorf("default = %+v, want %+v", got, defaultClientOutputBufferLimit)
	}
	for _, tc := range []struct {
		value string
		want  OutputBufferLimit
	}{
		{"0 0 0", OutputBufferLimit{}},
		{"256mb 64mb 60", OutputBufferLimit{Hard: 256 << 20, Soft: 64 << 20, SoftTime: 60 * time.Second}},
		{"1gb 1g 1", OutputBufferLimit{Hard: 1 << 30, Soft: 1e9, SoftTime: time.Second}},
		{"1GB 2Mb 0", OutputBufferLimit{Hard: 1 << 30, Soft: 2 << 20}},
		{"1kb 1k 2", OutputBufferLimit{Hard: 1024, Soft: 1000, SoftTime: 2 * time.Second}},
		{"100b 7m 3", OutputBufferLimit{Hard: 100, Soft: 7e6, SoftTime: 3 * time.Second}},
		{"  12   34\t56 ", OutputBufferLimit{Hard: 12, Soft: 34, SoftTime: 56 * time.Second}},
		{"8589934591gb 0 0", OutputBufferLimit{Hard: 8589934591 << 30}},
	} {
		cfg, err := Parse([]byte(head + "  client_output_buffer_limit: \"" + tc.value + "\"\n" + servers))
		if err != nil {
			t.Errorf("%q: %v", tc.value, err)
			continue
		}
		if got := cfg.Pools[0].ClientOutputBufferLimit; got != tc.want {
			t.Errorf("%q = %+v, want %+v", tc.value, got, tc.want)
		}
	}
	for _, tc := range []struct{ value, want string }{
		{"64mb 16mb", `pool "alpha": client_output_buffer_limit: "64mb 16mb": want "<hard> <soft> <soft-seconds>"`},
		{"normal 64mb 16mb 60", `pool "alpha": client_output_buffer_limit: "normal 64mb 16mb 60": want "<hard> <soft> <soft-seconds>"`},
		{"64xb 16mb 60", `pool "alpha": client_output_buffer_limit: "64xb 16mb 60": hard limit "64xb" is not a size (digits, then optionally b, k, kb, m, mb, g or gb)`},
		{"64mb mb 60", `soft limit "mb" is not a size`},
		{"-1 0 0", `hard limit "-1" is not a size`},
		{"1.5mb 0 0", `hard limit "1.5mb" is not a size`},
		{"0x10 0 0", `hard limit "0x10" is not a size`},
		{"8589934591gb 8589934592gb 0", `soft limit "8589934592gb" is too large`},
		{"99999999999999999999 0 0", `hard limit "99999999999999999999" is too large`},
		{"64mb 16mb -1", `soft seconds "-1" is not a number`},
		{"64mb 16mb 1s", `soft seconds "1s" is not a number`},
		{"64mb 16mb 2147483648", `soft seconds "2147483648" is too large`},
	} {
		_, err := Parse([]byte(head + "  client_output_buffer_limit: \"" + tc.value + "\"\n" + servers))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.value, err, tc.want)
		}
	}
	_, err = Parse([]byte(head + "  client_output_buffer_limit: 1 1 1\n  client_output_buffer_limit: 1 1 1\n" + servers))
	if want := `pool "alpha": client_output_buffer_limit: duplicate key`; err == nil || err.Error() != want {
		t.Errorf("twice: err = %v, want %q", err, want)
	}
}

// blocking_connections is a number of at least 1, 64 when absent.
func TestConfigBlockingConnections(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - 127.0.0.1:6379:1\n"
	for _, tc := range []struct {
		extra string
		want  int
	}{{"", 64}, {"  blocking_connections: 2\n", 2}} {
		cfg, err := Parse([]byte(head + tc.extra + servers))
		if err != nil {
			t.Errorf("%q: %v", tc.extra, err)
			continue
		}
		if got := cfg.Pools[0].BlockingLimit(); got != tc.want {
			t.Errorf("%q: BlockingConnections = %d, want %d", tc.extra, got, tc.want)
		}
	}
	for value, want := range map[string]string{
		"-1": `pool "alpha": blocking_connections: "-1" is not a number`,
		"0":  `pool "alpha": blocking_connections: must be at least 1`,
	} {
		_, err := Parse([]byte(head + "  blocking_connections: " + value + "\n" + servers))
		if err == nil || err.Error() != want {
			t.Errorf("blocking_connections: %s: err = %v, want %q", value, err, want)
		}
	}
}

// client_output_buffer_limit_pubsub is Redis' pubsub class, "32mb 8mb 60"
// when absent, with client_output_buffer_limit's syntax and errors.
func TestConfigClientOutputBufferLimitPubSub(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - 127.0.0.1:6379:1\n"
	cfg, err := Parse([]byte(head + servers))
	if err != nil {
		t.Fatal(err)
	}
	want := OutputBufferLimit{Hard: 32 << 20, Soft: 8 << 20, SoftTime: 60 * time.Second}
	if got := cfg.Pools[0].PubSubLimit(); got != want {
		t.Errorf("default = %+v, want %+v", got, want)
	}
	cfg, err = Parse([]byte(head + "  client_output_buffer_limit_pubsub: 1mb 0 0\n" + servers))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Pools[0].PubSubLimit(), (OutputBufferLimit{Hard: 1 << 20}); got != want {
		t.Errorf("1mb 0 0 = %+v, want %+v", got, want)
	}
	_, err = Parse([]byte(head + "  client_output_buffer_limit_pubsub: 32mb 8mb\n" + servers))
	if want := `pool "alpha": client_output_buffer_limit_pubsub: "32mb 8mb": want "<hard> <soft> <soft-seconds>"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("32mb 8mb: err = %v, want %q", err, want)
	}
}
