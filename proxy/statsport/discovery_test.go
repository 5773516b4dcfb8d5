package statsport

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Discovery's state shows on the stats port: /readyz waits for the first
// list of EndpointSlices but not for an API server that stops answering
// later; /discovery and /metrics show each server's address and source.
func TestDiscoveryStateOnStatsPort(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	cfg, err := config.Parse([]byte("alpha:\n  listen: " + listen + "\n  redis: true\n  kubernetes_service: redis\n  servers:\n    - redis-0:6379:1 server0\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	srv.SetReady(true)
	h := New(srv, Options{}).http.Handler
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	status := stats.ServiceStatus{Namespace: "shop", Name: "redis"}
	srv.SetServiceStatus(func() []stats.ServiceStatus { return []stats.ServiceStatus{status} })
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "shop/redis not listed yet") {
		t.Fatalf("/readyz before the first list = %d %q", code, body)
	}
	status.Synced, status.Healthy = true, true
	srv.SetPodAddresses("shop", "redis", map[string]proxy.PodAddress{"redis-0": {IP: "198.18.0.2", Usable: true, Slice: "redis-x"}})
	if code, body := get("/readyz"); code != 200 || body != "ok" {
		t.Fatalf("/readyz after sync = %d %q", code, body)
	}
	status.Healthy, status.LastError = false, "connection refused"
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "warning: serving the last known addresses of shop/redis: connection refused") {
		t.Fatalf("/readyz with the API server down = %d %q", code, body)
	}
	srv.SetConfigHash("abc123")
	_, body := get("/discovery")
	for _, want := range []string{`"addr": "198.18.0.2:6379"`, `"source": "endpointslice/redis-x"`, `"config_sha256": "abc123"`, `"healthy": false`, `"namespace": "shop"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/discovery lacks %s:\n%s", want, body)
		}
	}
	_, body = get("/metrics")
	for _, want := range []string{
		`shardproxy_server_address_info{address="198.18.0.2:6379",pool="alpha",server="server0",source="endpointslice/redis-x"} 1`,
		`shardproxy_discovery_healthy{namespace="shop",service="redis"} 0`,
		`shardproxy_config_info{sha256="abc123"} 1`,
		`shardproxy_config_reloads_total{result="ok"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The nodes of a redis_cluster pool dialled at another address than the
// cluster announces are listed in /discovery, and those announced at an
// address their pod had before are counted in /metrics.
func TestClusterAddressesOnStatsPort(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	cfg, err := config.Parse([]byte("alpha:\n  listen: " + listen + "\n  redis: true\n  redis_cluster: true\n  kubernetes_service: redis\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	h := New(srv, Options{}).http.Handler
	get := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Body.String()
	}
	if body := get("/discovery"); !strings.Contains(body, `"cluster_addresses": [
    {
      "pool": "alpha",
      "nodes": []
    }
  ]`) {
		t.Errorf("/discovery before a map lacks alpha's empty cluster_addresses:\n%s", body)
	}
	if body := get("/metrics"); !strings.Contains(body, `shardproxy_cluster_address_mismatches{pool="alpha"} 0`) {
		t.Errorf("/metrics before a map lacks alpha's mismatch count 0")
	}
	m := proxy.ClusterMap{Remapped: []stats.ClusterNodeAddress{
		{ID: "07c37dfeb235213a872192d90877d0cd55635b91", Announced: "198.18.0.2:6379", Dialled: "198.18.0.14:6379", Pod: "redis-1", Master: true, Stale: true},
		{ID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", Announced: "redis-2.redis.shop.svc.cluster.local:6379", Dialled: "198.18.0.10:6379", Pod: "redis-2"},
	}}
	for i := range m.Slots {
		m.Slots[i] = -1
	}
	srv.SetClusterMap("alpha", m)
	body := get("/discovery")
	for _, want := range []string{
		`"id": "07c37dfeb235213a872192d90877d0cd55635b91",
          "announced": "198.18.0.2:6379",
          "dialled": "198.18.0.14:6379",
          "pod": "redis-1",
          "master": true,
          "stale": true`,
		`"announced": "redis-2.redis.shop.svc.cluster.local:6379",
          "dialled": "198.18.0.10:6379",
          "pod": "redis-2",
          "master": false,
          "stale": false`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/discovery lacks %s:\n%s", want, body)
		}
	}
	body = get("/metrics")
	for _, want := range []string{
		`shardproxy_cluster_node_address_mismatch{announced="198.18.0.2:6379",dialled="198.18.0.14:6379",node_id="07c37dfeb235213a872192d90877d0cd55635b91",pod="redis-1",pool="alpha"} 1`,
		`shardproxy_cluster_address_mismatches{pool="alpha"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `announced="redis-2`) {
		t.Errorf("/metrics counts a node announced by its hostname as a mismatch")
	}
}
