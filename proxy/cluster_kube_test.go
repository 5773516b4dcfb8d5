package proxy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// A redis_cluster pool takes its seeds from kubernetes_service: discovery
// is told the Service and the port, and the Service's pods never become
// the pool's servers, which stay the masters of the cluster's map.
func TestClusterPoolKubernetesSeeds(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	yaml := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  redis_cluster: true\n  kubernetes_service: redis\n  kubernetes_namespace: shop\n  kubernetes_port: 7000\n", listen)
	srv := startServer(t, yaml, Options{})
	want := []ClusterPool{{Pool: "alpha", Service: Service{Namespace: "shop", Name: "redis"}, Port: 7000}}
	if got := srv.ClusterPools(); !slices.EqualFunc(got, want, func(a, b ClusterPool) bool {
		return a.Pool == b.Pool && a.Service == b.Service && a.Port == b.Port && len(a.Seeds) == 0 && len(a.Pods) == 0
	}) {
		t.Errorf("ClusterPools() = %+v, want %+v", got, want)
	}
	if got, want := srv.Services(), []Service{{Namespace: "shop", Name: "redis"}}; !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}
	srv.SetClusterMap("alpha", viewMap(t, c))
	srv.SetPodAddresses("shop", "redis", map[string]PodAddress{
		"redis-0": {IP: "127.0.0.1", Usable: true},
		"redis-1": {IP: "127.0.0.2", Usable: true},
	})
	if n := len(srv.poolList()[0].servers); n != 3 {
		t.Errorf("the pool has %d servers after the Service's pods changed, want the 3 masters", n)
	}
	cl := proxytest.Dial(t, listen)
	keys := slotKeys("k")
	for slot := 0; slot < hashring.SlotCount; slot += 997 {
		if got := do(t, cl, "SET", keys[slot], "v"); got != "+OK\r\n" {
			t.Fatalf("SET %s = %q, want +OK", keys[slot], got)
		}
	}
	if n := srv.clusterRedirects.Load(); n != 0 {
		t.Errorf("%d redirects followed, want none: every key goes to its master", n)
	}
}

// A redirect to a node the map dials elsewhere than the cluster announces
// it goes where the map dials it: here a master announces a port nothing
// listens on, as a pod gossiped at an IP it no longer has.
func TestClusterPoolRedirectToRemappedNode(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	srv, addr := startClusterServer(t, c)
	masters := c.Masters()
	first, moved := masters[0], masters[1]
	dead := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	mc := moved.Client(t)
	_, deadPort, _ := strings.Cut(dead, ":")
	for _, kv := range [][2]string{{"cluster-announce-bus-port", strconv.Itoa(moved.Port + 10000)}, {"cluster-announce-port", deadPort}} {
		if got := do(t, mc, "CONFIG", "SET", kv[0], kv[1]); got != "+OK\r\n" {
			t.Fatalf("CONFIG SET %s %s = %q", kv[0], kv[1], got)
		}
	}
	var key string
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("r", i); c.Owner(t, int(hashring.KeySlot([]byte(k)))).ID == moved.ID {
			key = k
		}
	}
	want := fmt.Sprintf("-MOVED %d %s\r\n", hashring.KeySlot([]byte(key)), dead)
	fc := first.Client(t)
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for got := do(t, fc, "GET", key); got != want; got = do(t, fc, "GET", key) {
		if time.Now().After(deadline) {
			t.Fatalf("GET %s on %s = %q, want %q once the new port is gossiped", key, first.Addr, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := do(t, mc, "SET", key, "there"); got != "+OK\r\n" {
		t.Fatalf("SET %s on its master = %q", key, got)
	}

	m := ClusterMap{Masters: []string{first.Addr}, Remapped: []stats.ClusterNodeAddress{
		{ID: moved.ID, Announced: dead, Dialled: moved.Addr, Master: true, Stale: true},
	}}
	for s := range m.Slots {
		m.Slots[s] = 0
	}
	srv.SetClusterMap("alpha", m)
	if got := do(t, proxytest.Dial(t, addr), "GET", key); got != "$5\r\nthere\r\n" {
		t.Errorf("GET %s through the proxy = %q, want the value on %s, where the map dials the node MOVED names", key, got, moved.Addr)
	}
}
