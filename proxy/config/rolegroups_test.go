package config

import (
	"reflect"
	"strings"
	"testing"
)

// group_members: what it parses to, and what it refuses.
func TestConfigGroupMembers(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - 127.0.0.1:6379:1 shard1\n    - 127.0.0.1:6380:1 shard2\n"
	const kubeServers = "  kubernetes_service: redis\n  servers:\n    - shard1-0:6379:1 shard1\n    - shard2-0.redis:6379:1 shard2\n"
	for _, tc := range []struct {
		name, text string
		want       map[string][]GroupMember
	}{
		{"addresses", head + "  group_members:\n    - shard1 127.0.0.2:6379 localhost:6379\n    - shard2\n" + servers,
			map[string][]GroupMember{
				"shard1": {{Addr: "127.0.0.1:6379"}, {Addr: "127.0.0.2:6379"}, {Addr: "localhost:6379"}},
				"shard2": {{Addr: "127.0.0.1:6380"}},
			}},
		{"own address listed again", head + "  group_members:\n    - shard1 127.0.0.1:6379 127.1:6381\n    - shard2\n" + servers,
			map[string][]GroupMember{
				"shard1": {{Addr: "127.0.0.1:6379"}, {Addr: "127.0.0.1:6381"}},
				"shard2": {{Addr: "127.0.0.1:6380"}},
			}},
		{"pods", head + "  group_members:\n    - shard1 shard1-*\n    - shard2 replica2-0 replica2-1\n" + kubeServers,
			map[string][]GroupMember{
				"shard1": {{Pod: "shard1-0"}, {Pod: "shard1", StatefulSet: true}},
				"shard2": {{Pod: "shard2-0"}, {Pod: "replica2-0"}, {Pod: "replica2-1"}},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Pools[0]
			if !reflect.DeepEqual(p.GroupMembers, tc.want) {
				t.Errorf("GroupMembers = %+v, want %+v", p.GroupMembers, tc.want)
			}
			if !p.HasRoleGroups() || !p.HasGroups() || p.HasSentinels() {
				t.Errorf("HasRoleGroups, HasGroups, HasSentinels = %v, %v, %v; want true, true, false", p.HasRoleGroups(), p.HasGroups(), p.HasSentinels())
			}
			for _, s := range p.Servers {
				if s.Pod != "" {
					t.Errorf("server %s has Pod %q: a group's address is its master's", s.Name, s.Pod)
				}
			}
		})
	}

	for _, tc := range []struct{ name, text, want string }{
		{"with sentinels", head + "  sentinels: 127.0.0.1:26379\n  group_members:\n    - shard1\n    - shard2\n" + servers,
			`pool "alpha": group_members: a pool's groups follow either their Sentinels or ROLE`},
		{"auto eject", head + "  auto_eject_hosts: true\n  group_members:\n    - shard1\n    - shard2\n" + servers,
			`pool "alpha": auto_eject_hosts: a pool of groups keeps each group's place`},
		{"server without a line", head + "  group_members:\n    - shard1\n" + servers,
			`pool "alpha": group_members: server "shard2" has no line`},
		{"unknown server", head + "  group_members:\n    - shard1\n    - shard2\n    - shard3\n" + servers,
			`pool "alpha": group_members: no server is named "shard3"`},
		{"two lines", head + "  group_members:\n    - shard1\n    - shard1 127.0.0.1:7000\n    - shard2\n" + servers,
			`pool "alpha": group_members: "shard1 127.0.0.1:7000": server "shard1" has two lines`},
		{"member of two groups", head + "  group_members:\n    - shard1 127.0.0.1:7000\n    - shard2 127.0.0.1:7000\n" + servers,
			`pool "alpha": group_members: 127.0.0.1:7000 is a member of both "shard1" and "shard2"`},
		{"a group's address in another", head + "  group_members:\n    - shard1 127.0.0.1:6380\n    - shard2\n" + servers,
			`is a member of both`},
		{"pod without a Service", head + "  group_members:\n    - shard1 shard1-1\n    - shard2\n" + servers,
			`pool "alpha": group_members: server "shard1": member "shard1-1" is not host:port (pod names need kubernetes_service)`},
		{"bad port", head + "  group_members:\n    - shard1 127.0.0.1:99999\n    - shard2\n" + servers,
			`member "127.0.0.1:99999": want host:port`},
		{"bad pod", head + "  group_members:\n    - shard1 Shard_1\n    - shard2\n" + kubeServers,
			`member "Shard_1": want host:port, a pod name or StatefulSet-*`},
		{"unnamed server", head + "  group_members:\n    - 127.0.0.1:6379\n  servers:\n    - 127.0.0.1:6379:1\n",
			`a group needs a name (host:port:weight name)`},
		{"unix server", head + "  group_members:\n    - shard1\n  servers:\n    - /tmp/redis.sock:1 shard1\n",
			`a group needs a host:port`},
		{"read_from without groups", head + "  read_from: prefer_replica\n" + servers,
			`pool "alpha": read_from: only allowed with sentinels or group_members`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// read_from and failover_hold apply to these groups as to Sentinel's.
	cfg, err := Parse([]byte(head + "  read_from: prefer_replica\n  replica_max_lag: 1000\n  failover_hold: 300\n  group_members:\n    - shard1\n    - shard2\n" + servers))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Pools[0]; !p.ReadsReplicas() || p.ReplicaMaxLag != 1000 || p.Hold().Milliseconds() != 300 {
		t.Errorf("read_from, replica_max_lag, failover_hold = %v, %d, %v", p.ReadFrom, p.ReplicaMaxLag, p.Hold())
	}
}
