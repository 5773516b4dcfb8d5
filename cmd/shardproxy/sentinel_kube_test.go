package main

import (
	"slices"
	"testing"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
)

// kubeSentinelWatch is a sentinelWatch of one pool "alpha" whose groups'
// pods are the endpoints of Service shop/shard0.
func kubeSentinelWatch() *sentinelWatch {
	w := newSentinelWatch(nil)
	group := proxy.Service{Namespace: "shop", Name: "shard0"}
	w.pools = map[string]proxy.SentinelPool{"alpha": {Pool: "alpha", GroupService: group}}
	w.endpoints = map[proxy.Service]map[string]discovery.Endpoint{group: {
		"shard0-0": {Pod: "shard0-0", Address: "198.18.0.2", Ready: true, Serving: true},
		"shard0-1": {Pod: "shard0-1", Address: "198.18.0.6", Ready: false, Serving: false, Terminating: true},
	}}
	return w
}

// Addresses Sentinel reports are matched to the groups' Service's
// endpoints: a pod hostname becomes its pod's IP, an IP no endpoint has is
// unknown, and nothing is looked up in DNS.
func TestSentinelMapAddr(t *testing.T) {
	w := kubeSentinelWatch()
	for _, tc := range []struct {
		addr, want string
		ok         bool
	}{
		{"198.18.0.2:6379", "198.18.0.2:6379", true},
		{"198.18.0.6:6380", "198.18.0.6:6380", true}, // terminating, but an endpoint still
		{"198.18.0.9:6379", "", false},
		{"shard0-0:6379", "198.18.0.2:6379", true},
		{"shard0-0.shard0.shop.svc.cluster.local:6379", "198.18.0.2:6379", true},
		{"shard0-1.shard0:7000", "198.18.0.6:7000", true},
		{"shard0-0.other.shop.svc.cluster.local:6379", "", false},
		{"shard0-0.shard0.elsewhere.svc.cluster.local:6379", "", false},
		{"shard0-7:6379", "", false},
		{"localhost:6379", "", false},
		{"not an address", "", false},
	} {
		got, ok := w.mapAddr("alpha", tc.addr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("mapAddr(%q) = %q, %v, want %q, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
}

// A master whose endpoint is gone, not ready or terminating is unavailable.
func TestSentinelMasterUnavailable(t *testing.T) {
	w := kubeSentinelWatch()
	for _, tc := range []struct{ addr, want string }{
		{"198.18.0.2:6379", ""},
		{"198.18.0.6:6379", "its master's pod shard0-1 is terminating"},
		{"198.18.0.9:6379", "its master 198.18.0.9:6379 is not an endpoint of Service shop/shard0"},
		{"", ""},
	} {
		if got := w.unavailable("alpha", tc.addr); got != tc.want {
			t.Errorf("unavailable(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	w.pools["alpha"] = proxy.SentinelPool{Pool: "alpha"}
	if got := w.unavailable("alpha", "198.18.0.9:6379"); got != "" {
		t.Errorf("unavailable without a groups' Service = %q, want \"\"", got)
	}
}

// The Sentinels of a sentinel_service are its ready endpoints, on the
// slice's port named sentinel, else its only port, else sentinel_port,
// else 26379.
func TestSentinelAddrsFromEndpoints(t *testing.T) {
	eps := map[string]discovery.Endpoint{
		"sentinel-a": {Pod: "sentinel-a", Address: "198.18.0.10", Ready: true, Serving: true, Ports: "metrics=9121,sentinel=5000"},
		"sentinel-b": {Pod: "sentinel-b", Address: "198.18.0.14", Ready: true, Serving: true, Ports: "=26380"},
		"sentinel-c": {Pod: "sentinel-c", Address: "198.18.0.18", Ready: true, Serving: true, Ports: "a=1,b=2"},
		"sentinel-d": {Pod: "sentinel-d", Address: "198.18.0.22", Ready: false, Serving: false, Ports: "sentinel=5000"},
	}
	got := sentinelAddrs(proxy.SentinelPool{}, eps)
	want := []string{"198.18.0.10:5000", "198.18.0.14:26380", "198.18.0.18:26379"}
	if !slices.Equal(got, want) {
		t.Errorf("sentinelAddrs = %q, want %q", got, want)
	}
	got = sentinelAddrs(proxy.SentinelPool{SentinelPort: 7000}, eps)
	want = []string{"198.18.0.10:5000", "198.18.0.14:26380", "198.18.0.18:7000"}
	if !slices.Equal(got, want) {
		t.Errorf("sentinelAddrs with sentinel_port 7000 = %q, want %q", got, want)
	}
}
