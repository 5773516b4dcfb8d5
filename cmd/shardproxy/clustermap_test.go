package main

import (
	"reflect"
	"testing"

	"github.com/shardproxy/shardproxy/discovery"
)

// The proxy's map lists under each master the replicas that may serve
// reads: none the cluster flags as failed or not online, none of a master
// the map does not know.
func TestClusterMapOfReplicas(t *testing.T) {
	var m discovery.ClusterMap
	for i := range m.Slots {
		m.Slots[i] = int32(i % 2)
	}
	m.Nodes = []discovery.ClusterNode{
		{ID: "a", Addr: "10.0.0.1:6379", Master: true},
		{ID: "b", Addr: "10.0.0.2:6379", Master: true},
		{ID: "a1", Addr: "10.0.0.3:6379", MasterID: "a", Health: "online"},
		{ID: "a2", Addr: "10.0.0.4:6379", MasterID: "a", Health: "fail"},
		{ID: "b1", Addr: "10.0.0.5:6379", MasterID: "b"}, // CLUSTER SLOTS says nothing of health
		{ID: "b2", Addr: "10.0.0.6:6379", MasterID: "b", Health: "loading"},
		{ID: "c1", Addr: "10.0.0.7:6379", MasterID: "c", Health: "online"},
		{ID: "a3", Addr: "10.0.0.8:6379", MasterID: "a", Health: "online"},
	}
	got := clusterMapOf(m)
	if want := []string{"10.0.0.1:6379", "10.0.0.2:6379"}; !reflect.DeepEqual(got.Masters, want) {
		t.Errorf("Masters = %q, want %q", got.Masters, want)
	}
	if want := [][]string{{"10.0.0.3:6379", "10.0.0.8:6379"}, {"10.0.0.5:6379"}}; !reflect.DeepEqual(got.Replicas, want) {
		t.Errorf("Replicas = %q, want %q", got.Replicas, want)
	}
}
