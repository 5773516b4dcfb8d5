package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

var clusterService = proxy.Service{Namespace: "shop", Name: "redis"}

func clusterEndpoint(pod, ip string, usable bool) discovery.Endpoint {
	return discovery.Endpoint{Pod: pod, Address: ip, Ready: usable, Serving: usable}
}

// A node is dialled at its pod's current IP: the pod its announced
// hostname names, the pod with its announced IP, or the pod that had that
// IP before it came back on a new one; an address no pod has or had is
// unknown, and nothing is looked up in DNS.
func TestClusterMapAddr(t *testing.T) {
	w := newClusterWatch(slog.New(slog.DiscardHandler))
	w.pools = map[string]proxy.ClusterPool{"alpha": {Pool: "alpha", Service: clusterService}}
	w.endpointsChanged(clusterService, map[string]discovery.Endpoint{
		"redis-0": clusterEndpoint("redis-0", "198.18.0.2", true),
		"redis-1": clusterEndpoint("redis-1", "198.18.0.6", true),
	})
	w.endpointsChanged(clusterService, map[string]discovery.Endpoint{
		"redis-0": clusterEndpoint("redis-0", "198.18.0.2", true),
	})
	w.endpointsChanged(clusterService, map[string]discovery.Endpoint{
		"redis-0": clusterEndpoint("redis-0", "198.18.0.2", true),
		"redis-1": clusterEndpoint("redis-1", "198.18.0.10", false), // back, not ready yet
	})
	cases := []struct {
		addr, want string
		ok         bool
	}{
		{"198.18.0.2:6379", "198.18.0.2:6379", true},
		{"198.18.0.10:6379", "198.18.0.10:6379", true},
		{"198.18.0.6:6379", "198.18.0.10:6379", true}, // redis-1's old IP
		{"198.18.0.6:7000", "198.18.0.10:7000", true},
		{"redis-1:6379", "198.18.0.10:6379", true},
		{"redis-1.redis.shop.svc.cluster.local:6379", "198.18.0.10:6379", true},
		{"redis-1.other.shop.svc.cluster.local:6379", "", false},
		{"redis-7:6379", "", false},
		{"198.18.0.99:6379", "", false},
		{"not an address", "", false},
	}
	for _, tc := range cases {
		got, ok := w.mapAddr("alpha", tc.addr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("mapAddr(%q) = %q, %v, want %q, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	// An old IP that another pod has now is that pod's.
	w.endpointsChanged(clusterService, map[string]discovery.Endpoint{
		"redis-0": clusterEndpoint("redis-0", "198.18.0.2", true),
		"redis-1": clusterEndpoint("redis-1", "198.18.0.10", true),
		"redis-2": clusterEndpoint("redis-2", "198.18.0.6", true),
	})
	if got, ok := w.mapAddr("alpha", "198.18.0.6:6379"); got != "198.18.0.6:6379" || !ok {
		t.Errorf("mapAddr of an old IP redis-2 has now = %q, %v, want redis-2's", got, ok)
	}
}

// The seeds of a pool with kubernetes_service are its ready pods: every
// one on kubernetes_port without a servers list, else the pods the
// servers name on their ports, beside the servers that are IPs.
func TestClusterSeedsFromEndpoints(t *testing.T) {
	w := newClusterWatch(slog.New(slog.DiscardHandler))
	w.endpointsChanged(clusterService, map[string]discovery.Endpoint{
		"redis-0": clusterEndpoint("redis-0", "198.18.0.2", true),
		"redis-1": clusterEndpoint("redis-1", "198.18.0.6", true),
		"redis-2": clusterEndpoint("redis-2", "198.18.0.10", false),
	})
	cases := []struct {
		name string
		pool proxy.ClusterPool
		want []string
	}{
		{"every ready pod", proxy.ClusterPool{Service: clusterService, Port: 7000},
			[]string{"198.18.0.2:7000", "198.18.0.6:7000"}},
		{"servers naming pods", proxy.ClusterPool{Service: clusterService, Port: 6379,
			Seeds: []string{"redis-1:6380", "redis-2:6379", "redis-9:6379", "10.0.0.1:6379"},
			Pods:  []string{"redis-1", "redis-2", "redis-9", ""}},
			[]string{"10.0.0.1:6379", "198.18.0.6:6380"}},
		{"no Service", proxy.ClusterPool{Seeds: []string{"redis-1:6379"}}, []string{"redis-1:6379"}},
	}
	for _, tc := range cases {
		if got := w.seedsLocked(tc.pool); !slices.Equal(got, tc.want) {
			t.Errorf("%s: seeds = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A Redis Cluster whose nodes announce their pods' hostnames, which no DNS
// knows, is served through a pool with kubernetes_service: the seeds come
// from the Service's EndpointSlices (client-go's fake clientset here), and
// every node is dialled at its pod's address; /discovery's data lists
// them, none as stale.
func TestClusterPoolKubernetesHostnames(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	var endpoints []discoveryv1.Endpoint
	for i, n := range c.Nodes {
		host := fmt.Sprintf("redis-%d", i)
		nc := n.Client(t)
		for _, kv := range [][2]string{{"cluster-announce-hostname", host}, {"cluster-preferred-endpoint-type", "hostname"}} {
			if r, err := nc.Do("CONFIG", "SET", kv[0], kv[1]); err != nil || r.String() != "+OK" {
				t.Fatalf("CONFIG SET %s %s on %s = %v, %v", kv[0], kv[1], n.Addr, r, err)
			}
		}
		ready := true
		endpoints = append(endpoints, discoveryv1.Endpoint{
			Addresses:  []string{"127.0.0.1"},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			Hostname:   &host,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: host, Namespace: clusterService.Namespace},
		})
	}
	waitHostnamesGossiped(t, c)

	port := int32(c.Nodes[0].Port)
	name := "redis"
	client := fake.NewClientset(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "redis-abc", Namespace: clusterService.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: clusterService.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   endpoints,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	})
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	cfg, err := config.Parse([]byte(fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  redis_cluster: true\n  kubernetes_service: redis\n  kubernetes_port: %d\n", listen, port)))
	if err != nil {
		t.Fatal(err)
	}
	clusters := newClusterWatch(slog.New(slog.DiscardHandler))
	srv, err := proxy.NewServer(cfg, proxy.Options{Namespace: clusterService.Namespace, ResolveCluster: clusters.resolve})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ctx, cancel := context.WithCancel(context.Background())
	services := discovery.NewServices(client, nil, func(k discovery.ServiceKey, eps map[string]discovery.Endpoint) {
		srv.SetPodAddresses(k.Namespace, k.Name, podAddresses(eps))
		clusters.endpointsChanged(proxy.Service{Namespace: k.Namespace, Name: k.Name}, eps)
	})
	t.Cleanup(func() { cancel(); services.Stop(); clusters.stop() })
	if err := services.Set(ctx, serviceKeys(srv)); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if !services.WaitForSync(sctx) {
		t.Fatal("the EndpointSlices did not sync")
	}
	clusters.update(ctx, srv)
	clusters.waitFirst(ctx, proxytest.ClusterTimeout)

	want := map[string]stats.ClusterNodeAddress{}
	for i, n := range c.Nodes {
		pod := fmt.Sprintf("redis-%d", i)
		want[n.ID] = stats.ClusterNodeAddress{ID: n.ID, Announced: pod + ":" + strconv.Itoa(n.Port), Dialled: n.Addr, Pod: pod, Master: true}
	}
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for {
		var snap stats.Snapshot
		srv.Snapshot(&snap)
		got := map[string]stats.ClusterNodeAddress{}
		if len(snap.ClusterAddresses) == 1 {
			for _, n := range snap.ClusterAddresses[0].Nodes {
				got[n.ID] = n
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster addresses = %+v, want alpha's nodes %+v", snap.ClusterAddresses, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl := proxytest.Dial(t, listen)
	for slot := 0; slot < hashring.SlotCount; slot += 331 {
		k := fmt.Sprintf("{%s}", slotKey(slot))
		if r, err := cl.Do("SET", k, strconv.Itoa(slot)); err != nil || r.String() != "+OK" {
			t.Fatalf("SET %s = %v, %v", k, r, err)
		}
		if r, err := cl.Do("GET", k); err != nil || r.String() != strconv.Quote(strconv.Itoa(slot)) {
			t.Fatalf("GET %s = %v, %v", k, r, err)
		}
	}
}

// waitHostnamesGossiped waits until every node of c lists every node's
// hostname in CLUSTER NODES.
func waitHostnamesGossiped(t *testing.T, c *proxytest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for _, n := range c.Nodes {
		nc := n.Client(t)
		for {
			r, err := nc.Do("CLUSTER", "NODES")
			all := err == nil
			for i := range c.Nodes {
				all = all && strings.Contains(string(r.Raw()), fmt.Sprintf(",redis-%d ", i))
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CLUSTER NODES on %s = %q, %v: not every hostname gossiped", n.Addr, r.Raw(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// slotKey is a key in slot.
func slotKey(slot int) string {
	for i := 0; ; i++ {
		if k := "s" + strconv.Itoa(i); int(hashring.KeySlot([]byte(k))) == slot {
			return k
		}
	}
}
