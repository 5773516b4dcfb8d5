package proxy

import (
	"strconv"
	"testing"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// clusterNodes returns the cluster nodes of the pool alpha in a snapshot
// of srv, by address.
func clusterNodes(t *testing.T, srv *Server) (map[string]*stats.ClusterNodeStatus, *stats.ClusterStatus) {
	t.Helper()
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	out := map[string]*stats.ClusterNodeStatus{}
	for _, s := range snap.Pools[0].Servers {
		if s.Cluster == nil {
			t.Fatalf("server %s of a cluster pool has no cluster status", s.Name)
		}
		if s.Name != s.Cluster.Addr {
			t.Errorf("server %s has the cluster address %s", s.Name, s.Cluster.Addr)
		}
		out[s.Cluster.Addr] = s.Cluster
	}
	return out, snap.Pools[0].Cluster
}

// The MOVED replies of a node are counted on it, and the count survives
// the map change that rebuilds the pool; a node dialled for a redirect
// is reported, its ID unknown, until a map names it.
func TestClusterStatsSurviveMapChange(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	srv, addr := startClusterServer(t, c)
	first := c.Masters()[0]
	m := ClusterMap{Masters: []string{first.Addr}, IDs: []string{first.ID}}
	for s := range m.Slots {
		m.Slots[s] = 0
	}
	srv.SetClusterMap("alpha", m)
	cl := proxytest.Dial(t, addr)
	keys := slotKeys("s")
	moved := 0
	for slot := 0; slot < hashring.SlotCount; slot += 499 {
		if c.Owner(t, slot).ID != first.ID {
			moved++
		}
		if got := do(t, cl, "SET", keys[slot], "v"+strconv.Itoa(slot)); got != "+OK\r\n" {
			t.Fatalf("SET %s = %q", keys[slot], got)
		}
	}
	nodes, pool := clusterNodes(t, srv)
	if n := nodes[first.Addr]; n == nil || n.Moved != int64(moved) || n.ID != first.ID || n.Role != stats.RoleMaster || n.Ask != 0 || n.TryAgain != 0 {
		t.Errorf("the map's master is %+v, want ID %s, role master and %d MOVED", n, first.ID, moved)
	}
	if len(nodes) != 3 {
		t.Errorf("%d nodes in the stats, want the map's master and the 2 nodes MOVED named", len(nodes))
	}
	for _, o := range c.Masters()[1:] {
		if n := nodes[o.Addr]; n == nil || n.ID != "" || n.Role != "" || n.Moved != 0 {
			t.Errorf("the node %s dialled for MOVED is %+v, want no ID, no role, no MOVED", o.Addr, n)
		}
	}
	if pool.SlotsServed != hashring.SlotCount || pool.SlotsUnserved != 0 {
		t.Errorf("the pool serves %d slots, %d not, want all", pool.SlotsServed, pool.SlotsUnserved)
	}

	full := viewMap(t, c)
	for _, n := range c.Masters() {
		full.IDs = append(full.IDs, n.ID)
	}
	lost := int(hashring.KeySlot([]byte("lost")))
	full.Slots[lost] = -1
	srv.SetClusterMap("alpha", full)
	if len(srv.poolList()[0].servers) != 3 {
		t.Fatalf("the pool has %d servers after the full map, want 3", len(srv.poolList()[0].servers))
	}
	nodes, pool = clusterNodes(t, srv)
	if n := nodes[first.Addr]; n == nil || n.Moved != int64(moved) {
		t.Errorf("after the map changed the first master is %+v, want its %d MOVED kept", n, moved)
	}
	for _, o := range c.Masters() {
		if n := nodes[o.Addr]; n == nil || n.ID != o.ID || n.Role != stats.RoleMaster {
			t.Errorf("the master %s is %+v, want ID %s and role master", o.Addr, n, o.ID)
		}
	}
	if len(nodes) != 3 || pool.SlotsServed != hashring.SlotCount-1 || pool.SlotsUnserved != 1 {
		t.Errorf("after the full map: %d nodes, %d slots served, %d not; want 3, all but one, one", len(nodes), pool.SlotsServed, pool.SlotsUnserved)
	}
}
