package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A group whose master discovery says takes no requests (its pod is not
// ready or terminating) fails its requests at once with that reason, and
// serves again once discovery says the master may take them.
func TestGroupUnavailableMasterFailsFast(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	c := proxytest.Dial(t, gp.addr)
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	gp.srv.SetGroupMasters("alpha", map[string]GroupMaster{"g0": {Addr: gp.masters[0].Addr, Source: "test", Agree: 1, Reachable: 1,
		Unavailable: "pod shard0-0 is terminating"}})
	got := do(t, c, "SET", "k", "w")
	if !strings.HasPrefix(got, "-ERR server g0 ") || !strings.Contains(got, "group g0 has no confirmed master: pod shard0-0 is terminating") {
		t.Fatalf("SET while the master's pod terminates = %q, want the group's error naming the pod", got)
	}
	if got := do(t, c, "GET", "k"); !strings.Contains(got, "pod shard0-0 is terminating") {
		t.Fatalf("GET while the master's pod terminates = %q, want the group's error naming the pod", got)
	}
	if got := do(t, gp.masters[0].Client(t), "GET", "k"); got != "$1\r\nv\r\n" {
		t.Errorf("the master has k = %q, want v: the refused SET must not have run", got)
	}
	gp.tellAll()
	if got := do(t, c, "SET", "k", "x"); got != "+OK\r\n" {
		t.Fatalf("SET once the master is ready again = %q", got)
	}
}

// A pool with sentinel_service and kubernetes_service hands both Services,
// in the pool's namespace, to discovery.
func TestSentinelPoolsServices(t *testing.T) {
	cfg, err := config.Parse([]byte("watched:\n  listen: 127.0.0.1:2\n  redis: true\n  sentinel_service: sentinel\n  sentinel_port: 5000\n" +
		"  kubernetes_service: shard0\n  kubernetes_namespace: shop\n  servers:\n    - shard0-0.shard0:6379:1 shard0\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg, Options{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	got := srv.SentinelPools()
	want := []SentinelPool{{Pool: "watched", Masters: map[string]string{"shard0": "shard0"},
		SentinelService: Service{Namespace: "shop", Name: "sentinel"}, SentinelPort: 5000, GroupService: Service{Namespace: "shop", Name: "shard0"}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SentinelPools() = %+v, want %+v", got, want)
	}
}
