package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The Sentinel keys: what they parse to, and what they refuse.
func TestConfigSentinels(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - 127.0.0.1:6379:1 shard1\n    - 127.0.0.1:6380:1 shard2\n"
	const sentinels = "  sentinels:\n    - 127.0.0.1:26379\n    - localhost:26380\n"
	t.Setenv("SHARDPROXY_TEST_SENTINEL_PASSWORD", "s3cret")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sentinel.pass"), []byte("fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra string
		want  Pool // only the Sentinel fields are compared
	}{
		{"none", "", Pool{}},
		{"list", sentinels, Pool{Sentinels: []string{"127.0.0.1:26379", "localhost:26380"}}},
		{"one", "  sentinels: 127.0.0.1:26379\n", Pool{Sentinels: []string{"127.0.0.1:26379"}}},
		{"auth", sentinels + "  sentinel_username: watcher\n  sentinel_auth: pw\n  failover_hold: 250\n",
			Pool{Sentinels: []string{"127.0.0.1:26379", "localhost:26380"}, SentinelUsername: "watcher", SentinelAuth: "pw", FailoverHold: 250 * time.Millisecond}},
		{"auth env", sentinels + "  sentinel_auth_env: SHARDPROXY_TEST_SENTINEL_PASSWORD\n",
			Pool{Sentinels: []string{"127.0.0.1:26379", "localhost:26380"}, SentinelAuth: "s3cret"}},
		{"auth file", sentinels + "  sentinel_auth_file: sentinel.pass\n",
			Pool{Sentinels: []string{"127.0.0.1:26379", "localhost:26380"}, SentinelAuth: "fromfile"}},
		{"masters", sentinels + "  sentinel_masters:\n    - shard2 mymaster-2\n",
			Pool{Sentinels: []string{"127.0.0.1:26379", "localhost:26380"}, SentinelMasters: map[string]string{"shard2": "mymaster-2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseFile(filepath.Join(dir, "nutcracker.yml"), []byte(head+tc.extra+servers))
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Pools[0]
			got := Pool{Sentinels: p.Sentinels, SentinelMasters: p.SentinelMasters, SentinelUsername: p.SentinelUsername, SentinelAuth: p.SentinelAuth, FailoverHold: p.FailoverHold}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse = %+v, want %+v", got, tc.want)
			}
			if tc.want.SentinelMasters != nil {
				if m := p.SentinelMaster("shard1"); m != "shard1" {
					t.Errorf("SentinelMaster(shard1) = %q, want shard1", m)
				}
				if m := p.SentinelMaster("shard2"); m != "mymaster-2" {
					t.Errorf("SentinelMaster(shard2) = %q, want mymaster-2", m)
				}
			}
		})
	}
	for _, tc := range []struct{ name, text, want string }{
		{"auto eject", head + "  auto_eject_hosts: true\n" + sentinels + servers,
			`pool "alpha": auto_eject_hosts: a pool with sentinels fails over instead of ejecting: auto_eject_hosts must be false with sentinels`},
		{"bad address", head + "  sentinels:\n    - 127.0.0.1\n" + servers,
			`pool "alpha": sentinels[0]: "127.0.0.1": want "host:port"`},
		{"bad port", head + "  sentinels:\n    - 127.0.0.1:26379\n    - 127.0.0.1:x\n" + servers,
			`pool "alpha": sentinels[1]: "127.0.0.1:x": port "x" is not a number`},
		{"unnamed server", head + sentinels + "  servers:\n    - 127.0.0.1:6379:1\n",
			`pool "alpha": servers[0]: "127.0.0.1:6379": a group watched by sentinels needs a name (host:port:weight name)`},
		{"unix server", head + sentinels + "  servers:\n    - /tmp/redis.sock:1 shard1\n",
			`pool "alpha": servers[0]: "/tmp/redis.sock": a group watched by sentinels needs a host:port`},
		{"unknown master", head + sentinels + "  sentinel_masters:\n    - shard9 m\n" + servers,
			`pool "alpha": sentinel_masters: no server is named "shard9"`},
		{"bad master line", head + sentinels + "  sentinel_masters: shard1\n" + servers,
			`pool "alpha": sentinel_masters: "shard1": want "server-name master-name"`},
		{"master twice", head + sentinels + "  sentinel_masters:\n    - shard1 a\n    - shard1 b\n" + servers,
			`pool "alpha": sentinel_masters: "shard1 b": server "shard1" is mapped twice`},
		{"auth without sentinels", head + "  sentinel_auth: pw\n" + servers,
			`pool "alpha": sentinel_auth: only allowed with sentinels`},
		{"hold without sentinels", head + "  failover_hold: 10\n" + servers,
			`pool "alpha": failover_hold: only allowed with sentinels or group_members`},
		{"two auths", head + sentinels + "  sentinel_auth: pw\n  sentinel_auth_env: SHARDPROXY_TEST_SENTINEL_PASSWORD\n" + servers,
			`pool "alpha": sentinel_auth_env: give only one of sentinel_auth, sentinel_auth_file and sentinel_auth_env`},
		{"unset env", head + sentinels + "  sentinel_auth_env: SHARDPROXY_TEST_NO_SUCH_VARIABLE\n" + servers,
			`pool "alpha": sentinel_auth_env: environment variable "SHARDPROXY_TEST_NO_SUCH_VARIABLE" is not set`},
		{"username alone", head + sentinels + "  sentinel_username: watcher\n" + servers,
			`pool "alpha": sentinel_username: needs a password: sentinel_auth, sentinel_auth_file or sentinel_auth_env`},
		{"zero hold", head + sentinels + "  failover_hold: 0\n" + servers,
			`pool "alpha": failover_hold: must be at least 1`},
		{"bad hold", head + sentinels + "  failover_hold: -1\n" + servers,
			`pool "alpha": failover_hold: "-1" is not a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Parse: err = %v, want %q", err, tc.want)
			}
		})
	}
}

// sentinel_service finds the Sentinels through a Service, and
// kubernetes_service then names the groups' pods' Service.
func TestConfigSentinelService(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - shard0-0.shard0:6379:1 shard0\n    - 10.0.0.9:6379:1 shard1\n"
	type fields struct {
		Sentinels                          []string
		SentinelService, KubernetesService string
		KubernetesNamespace                string
		SentinelPort                       int
		Pods                               string
	}
	for _, tc := range []struct {
		name  string
		extra string
		want  fields
	}{
		{"service", "  sentinel_service: sentinel\n", fields{SentinelService: "sentinel"}},
		{"service and port", "  sentinel_service: sentinel\n  sentinel_port: 5000\n", fields{SentinelService: "sentinel", SentinelPort: 5000}},
		{"service in namespace", "  sentinel_service: sentinel\n  kubernetes_namespace: shop\n", fields{SentinelService: "sentinel", KubernetesNamespace: "shop"}},
		{"service and pods", "  sentinel_service: sentinel\n  kubernetes_service: shard0\n", fields{SentinelService: "sentinel", KubernetesService: "shard0"}},
		{"list and pods", "  sentinels:\n    - 10.0.0.1:26379\n  kubernetes_service: shard0\n", fields{Sentinels: []string{"10.0.0.1:26379"}, KubernetesService: "shard0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head + tc.extra + servers))
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Pools[0]
			got := fields{p.Sentinels, p.SentinelService, p.KubernetesService, p.KubernetesNamespace, p.SentinelPort, ""}
			for _, s := range p.Servers {
				got.Pods += s.Pod // a group's address comes from its Sentinels, never from a pod
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse = %+v, want %+v", got, tc.want)
			}
			if !p.HasSentinels() {
				t.Errorf("HasSentinels() = false, want true")
			}
		})
	}
	for _, tc := range []struct{ name, text, want string }{
		{"both", head + "  sentinel_service: sentinel\n  sentinels:\n    - 10.0.0.1:26379\n" + servers,
			`pool "alpha": sentinel_service: give either sentinels or sentinel_service, not both`},
		{"bad name", head + "  sentinel_service: Sentinel_1\n" + servers,
			`pool "alpha": sentinel_service: "Sentinel_1" is not a Kubernetes name (lower-case letters, digits and '-', at most 63)`},
		{"port alone", head + "  sentinels:\n    - 10.0.0.1:26379\n  sentinel_port: 26379\n" + servers,
			`pool "alpha": sentinel_port: only allowed with sentinel_service`},
		{"bad port", head + "  sentinel_service: sentinel\n  sentinel_port: 70000\n" + servers,
			`pool "alpha": sentinel_port: "70000" is not between 1 and 65535`},
		{"twice", head + "  sentinel_service: sentinel\n  sentinel_service: other\n" + servers,
			`pool "alpha": sentinel_service: duplicate key`},
		{"no servers", head + "  sentinel_service: sentinel\n  kubernetes_service: shard0\n",
			`pool "alpha": servers: missing: a pool with sentinels lists its groups as servers`},
		{"no servers list", head + "  sentinel_service: sentinel\n", `pool "alpha": servers: missing`},
		{"auth alone", head + "  sentinel_auth: pw\n" + servers, `pool "alpha": sentinel_auth: only allowed with sentinels`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Parse: err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A pool with sentinels may still hold only one list of nutcracker's own.
func TestConfigSentinelsOneNutcrackerList(t *testing.T) {
	text := "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  sentinels:\n    - 127.0.0.1:26379\n  hash:\n    - fnv1a_64\n  servers:\n    - 127.0.0.1:6379:1 a\n"
	_, err := Parse([]byte(text))
	if err == nil || !strings.Contains(err.Error(), "only one key of a pool may hold a list") {
		t.Errorf("Parse: err = %v, want the one-list error", err)
	}
}
