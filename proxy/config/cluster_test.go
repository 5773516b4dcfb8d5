package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// redis_cluster: what a Redis Cluster pool parses to.
func TestConfigCluster(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_cluster: true\n"
	t.Setenv("SHARDPROXY_TEST_REDIS_PASSWORD", "hunter2")
	seed := func(addr, dial string, weight, port int, name string) Server {
		s := Server{Name: addr, Addr: addr, Network: "tcp", DialAddr: dial, Weight: weight, Port: port}
		if name != "" {
			s.Name, s.ExplicitName = name, true
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		text    string
		servers []Server
		members bool // KubernetesMembers: the Service's pods are the seeds
	}{
		{"seeds", head + "  servers:\n    - 127.0.0.1:7000:1\n    - 127.0.0.1:7001:5 b\n",
			[]Server{seed("127.0.0.1:7001", "127.0.0.1:7001", 5, 7001, "b"), seed("127.0.0.1:7000", "127.0.0.1:7000", 1, 7000, "")}, false},
		{"seeds without weights", head + "  servers:\n    - 127.0.0.1:7000\n    - 127.1:7001 b\n    - localhost:07002\n",
			[]Server{seed("127.1:7001", "127.0.0.1:7001", 1, 7001, "b"), seed("127.0.0.1:7000", "127.0.0.1:7000", 1, 7000, ""), seed("localhost:07002", "localhost:7002", 1, 7002, "")}, false},
		{"IPv6 seed", head + "  servers:\n    - ::1:7000:1\n",
			[]Server{seed("::1:7000", "[::1]:7000", 1, 7000, "")}, false},
		{"redis_cluster after servers", "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n    - 127.0.0.1:7000\n  redis_cluster: true\n",
			[]Server{seed("127.0.0.1:7000", "127.0.0.1:7000", 1, 7000, "")}, false},
		{"quoted true", "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_cluster: \"true\"\n  servers:\n    - 127.0.0.1:7000\n",
			[]Server{seed("127.0.0.1:7000", "127.0.0.1:7000", 1, 7000, "")}, false},
		{"pods as seeds", head + "  kubernetes_service: redis\n  kubernetes_port: 7000\n  kubernetes_namespace: shop\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Pools[0]
			if !p.RedisCluster || !p.IsCluster() {
				t.Errorf("RedisCluster, IsCluster() = %v, %v, want true", p.RedisCluster, p.IsCluster())
			}
			if !reflect.DeepEqual(p.Servers, tc.servers) && !(len(p.Servers) == 0 && tc.servers == nil) {
				t.Errorf("Servers = %+v\nwant %+v", p.Servers, tc.servers)
			}
			if p.KubernetesMembers != tc.members {
				t.Errorf("KubernetesMembers = %v, want %v", p.KubernetesMembers, tc.members)
			}
			if p.HasGroups() {
				t.Errorf("HasGroups() = true: a cluster's nodes are not groups of the config")
			}
		})
	}

	// Every key that does not place keys keeps its meaning.
	cfg, err := Parse([]byte(head + `  timeout: 400
  backlog: 1024
  client_connections: 100
  redis_auth_env: SHARDPROXY_TEST_REDIS_PASSWORD
  redis_db: 0
  preconnect: true
  server_connections: 3
  blocking_connections: 8
  auto_eject_hosts: false
  server_retry_timeout: 2000
  server_failure_limit: 5
  tcpkeepalive: true
  client_output_buffer_limit: 1mb 0 0
  client_output_buffer_limit_pubsub: 2mb 0 0
  read_from: prefer_replica
  replica_max_lag: 1000
  servers:
    - 127.0.0.1:7000
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	p.Servers, p.ClientOutputBufferLimitPubSub = nil, nil
	want := configDefaultPool("alpha", "127.0.0.1:22121")
	want.RedisCluster = true
	want.Timeout, want.Backlog, want.ClientConnections = 400*time.Millisecond, 1024, 100
	want.RedisAuth, want.Preconnect, want.ServerConnections, want.BlockingConnections = "hunter2", true, 3, 8
	want.ServerRetryTimeout, want.ServerFailureLimit, want.TCPKeepalive = 2*time.Second, 5, true
	want.ClientOutputBufferLimit = OutputBufferLimit{Hard: 1 << 20}
	want.ReadFrom, want.ReplicaMaxLag = ReadFromPreferReplica, 1000
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Parse = %+v\nwant %+v", p, want)
	}

	// redis_cluster: false is a pool like any other.
	cfg, err = Parse([]byte("alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_cluster: false\n  hash: murmur\n  servers:\n    - 127.0.0.1:6379:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Pools[0]; p.IsCluster() || p.Hash != "murmur" {
		t.Errorf("IsCluster() = %v, Hash %q; want false, murmur", p.IsCluster(), p.Hash)
	}
}

// redis_cluster refuses the keys that place keys, each with its reason.
func TestConfigClusterRefuses(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_cluster: true\n"
	const seeds = "  servers:\n    - 127.0.0.1:7000:1 a\n    - 127.0.0.1:7001:1 b\n"
	const slot = "Redis Cluster places keys by CRC16 slot"
	const failover = "Redis Cluster fails a node over by itself"
	for _, tc := range []struct{ name, text, want string }{
		{"hash", head + "  hash: murmur\n" + seeds, `pool "alpha": hash: not with redis_cluster: ` + slot},
		{"default hash", head + "  hash: fnv1a_64\n" + seeds, `pool "alpha": hash: not with redis_cluster: ` + slot},
		{"hash_tag", head + "  hash_tag: \"{}\"\n" + seeds,
			`pool "alpha": hash_tag: not with redis_cluster: Redis Cluster places keys by CRC16 slot, hashing the part of a key between '{' and '}' when it has one`},
		{"distribution", head + "  distribution: ketama\n" + seeds, `pool "alpha": distribution: not with redis_cluster: ` + slot},
		{"auto_eject_hosts", head + "  auto_eject_hosts: true\n" + seeds,
			`pool "alpha": auto_eject_hosts: not with redis_cluster: Redis Cluster fails a node over by itself, so auto_eject_hosts must be false`},
		{"redis_db", head + "  redis_db: 3\n" + seeds,
			`pool "alpha": redis_db: not with redis_cluster: SELECT is not allowed in cluster mode (Redis Cluster has database 0 only)`},
		{"sentinels", head + "  sentinels:\n    - 127.0.0.1:26379\n" + seeds, `pool "alpha": sentinels: not with redis_cluster: ` + failover},
		{"sentinel_service", head + "  sentinel_service: sentinel\n" + seeds, `pool "alpha": sentinel_service: not with redis_cluster: ` + failover},
		{"sentinel_masters", head + "  sentinel_masters:\n    - a m\n" + seeds, `pool "alpha": sentinel_masters: not with redis_cluster: ` + failover},
		{"sentinel_auth", head + "  sentinel_auth: pw\n" + seeds, `pool "alpha": sentinel_auth: not with redis_cluster: ` + failover},
		{"failover_hold", head + "  failover_hold: 100\n" + seeds, `pool "alpha": failover_hold: not with redis_cluster: ` + failover},
		{"group_members", head + "  group_members:\n    - a\n    - b\n" + seeds,
			`pool "alpha": group_members: not with redis_cluster: Redis Cluster says which node is a master`},
		{"kubernetes_weight", head + "  kubernetes_service: redis\n  kubernetes_weight: 2\n",
			`pool "alpha": kubernetes_weight: not with redis_cluster: Redis Cluster places keys by CRC16 slot, so a seed has no weight`},
		{"unix seed", head + "  servers:\n    - 127.0.0.1:7000:1\n    - /tmp/redis.sock:1 b\n",
			`pool "alpha": servers[1]: "/tmp/redis.sock": a Redis Cluster seed needs a host:port: cluster nodes are reached over TCP`},
		{"not a bool", "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_cluster: yes\n" + seeds,
			`pool "alpha": redis_cluster: "yes" is not true or false`},
		{"twice", head + "  redis_cluster: true\n" + seeds, `pool "alpha": redis_cluster: duplicate key`},
		{"no seeds", head, `pool "alpha": servers: missing`},
		{"bad seed port", head + "  servers:\n    - 127.0.0.1:x\n", `pool "alpha": servers[0]: "127.0.0.1:x": port "x" is not a number`},
		{"bad seed weight", head + "  servers:\n    - 127.0.0.1:7000:0\n", `pool "alpha": servers[0]: "127.0.0.1:7000:0": weight must be at least 1`},
		{"seeds named twice", head + "  servers:\n    - 127.0.0.1:7000 a\n    - 127.0.0.1:7001 a\n",
			`pool "alpha": servers[0] and servers[1]: both are named "a"`},
		{"without weight, not a cluster", "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  redis_cluster: false\n  servers:\n    - 127.0.0.1:7000\n",
			`pool "alpha": servers[0]: "127.0.0.1:7000": want "host:port:weight [name]" or "/path/to.sock:weight [name]"`},
		{"without redis", "alpha:\n  listen: 127.0.0.1:22121\n  redis_cluster: true\n" + seeds,
			`pool "alpha": redis: shardproxy serves only Redis pools (redis: true)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Parse: err = %v, want %q", err, tc.want)
			}
		})
	}
}
