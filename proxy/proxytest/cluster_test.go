package proxytest_test

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

func TestStartCluster(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1, proxytest.RedisPassword("s3cret"))
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	masters, replicas := c.Masters(), c.Replicas()
	if len(masters) != 3 || len(replicas) != 3 {
		t.Fatalf("%d masters and %d replicas, want 3 and 3", len(masters), len(replicas))
	}
	if got := c.Seeds(); len(got) != 6 || got[0] != c.Nodes[0].Addr {
		t.Errorf("Seeds() = %q, want every node's address", got)
	}
	view := c.View(t, c.Nodes[0])
	for _, r := range replicas {
		if m := c.Node(view.Master[r.ID]); m == nil || !containsNode(masters, m) {
			t.Errorf("replica %s follows %q, no master", r.Addr, view.Master[r.ID])
		}
	}

	// A key is served by the slot's owner and refused with MOVED elsewhere.
	key := "user:1000"
	slot := c.KeySlot(t, key)
	owner := c.Owner(t, slot)
	cl := owner.Client(t)
	if rep, err := cl.Do("SET", key, "v"); err != nil || rep.String() != "+OK" {
		t.Fatalf("SET on the owner %s = %v, %v", owner.Addr, rep, err)
	}
	for _, m := range masters {
		if m == owner {
			continue
		}
		rep, err := m.Client(t).Do("GET", key)
		if err != nil || !strings.HasPrefix(string(rep.Str), "MOVED ") || !strings.HasSuffix(string(rep.Str), owner.Addr) {
			t.Errorf("GET on %s = %v, %v; want MOVED to %s", m.Addr, rep, err, owner.Addr)
		}
	}

	// Reshard moves the key's slot (and the key) when it moves every slot.
	var to *proxytest.ClusterNode
	for _, m := range masters {
		if m != owner {
			to = m
			break
		}
	}
	owned := 0
	for _, id := range view.Owners {
		if id == owner.ID {
			owned++
		}
	}
	c.Reshard(t, owner.ID, to.ID, owned)
	if got := c.Owner(t, slot); got != to {
		t.Fatalf("after Reshard slot %d is served by %s, want %s", slot, got.Addr, to.Addr)
	}
	after := c.View(t, to)
	for s, id := range after.Owners {
		if id == owner.ID {
			t.Fatalf("after Reshard of all its slots %s still serves slot %d", owner.Addr, s)
		}
	}
	if rep, err := to.Client(t).Do("GET", key); err != nil || string(rep.Str) != "v" {
		t.Errorf("GET on the new owner = %v, %v; want the key moved with its slot", rep, err)
	}
}

func containsNode(nodes []*proxytest.ClusterNode, n *proxytest.ClusterNode) bool {
	for _, m := range nodes {
		if m == n {
			return true
		}
	}
	return false
}
