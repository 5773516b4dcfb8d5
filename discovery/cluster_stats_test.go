package discovery

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// currentEpoch is the highest cluster_current_epoch c's nodes give in
// CLUSTER INFO.
func currentEpoch(t *testing.T, c *proxytest.Cluster) uint64 {
	t.Helper()
	var top uint64
	for _, n := range c.Nodes {
		r, err := n.Client(t).Do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(r.Str), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_current_epoch:"); ok {
				e, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					t.Fatalf("CLUSTER INFO on %s: cluster_current_epoch:%s", n.Addr, v)
				}
				top = max(top, e)
			}
		}
	}
	return top
}

// waitStats pokes and polls Stats until ok accepts them.
func (r *clusterRun) waitStats(t *testing.T, what string, ok func(ClusterStats) bool) ClusterStats {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		st := r.w.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stats where %s after %v; last: %+v", what, clusterWait, st)
		}
		r.w.Poke()
		time.Sleep(20 * time.Millisecond)
	}
}

// Stats count every read of the map and, apart, those that changed it,
// and carry the map's epoch, which is the cluster's current epoch.
func TestClusterWatcherStats(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	idle, err := NewClusterWatcher(ClusterOptions{Seeds: c.Seeds()})
	if err != nil {
		t.Fatal(err)
	}
	if st := idle.Stats(); st != (ClusterStats{}) {
		t.Errorf("Stats before Run = %+v, want zero", st)
	}

	r := startClusterWatcher(t, ClusterOptions{Seeds: c.Seeds(), Poll: time.Hour})
	owners := c.View(t, c.Nodes[0]).Owners
	r.waitMap(t, "every slot is served as CLUSTER NODES says", func(m *ClusterMap) bool { return matches(c, m, owners) })
	first := r.w.Stats()
	if first.Changes < 1 || first.Refreshes < first.Changes || first.LastChange.IsZero() {
		t.Errorf("Stats after the first map = %+v, want a change, a refresh and its time", first)
	}
	epoch := currentEpoch(t, c)
	r.waitStats(t, "Epoch is "+strconv.FormatUint(epoch, 10), func(st ClusterStats) bool { return st.Epoch == epoch })
	st := r.waitStats(t, "two more refreshes", func(st ClusterStats) bool { return st.Refreshes >= first.Refreshes+2 })
	if st.Changes != first.Changes || !st.LastChange.Equal(first.LastChange) {
		t.Errorf("Stats after refreshes of the same map = %+v, want the changes of %+v", st, first)
	}

	m := r.w.Snapshot()
	from, _ := m.Owner(0)
	to, _ := m.Owner(hashring.SlotCount - 1)
	c.Reshard(t, from.ID, to.ID, 10)
	owners = c.View(t, c.Nodes[0]).Owners
	r.waitMap(t, "the resharded slots follow", func(m *ClusterMap) bool { return matches(c, m, owners) })
	st = r.w.Stats()
	if st.Changes < 2 || !st.LastChange.After(first.LastChange) || st.Refreshes < st.Changes {
		t.Errorf("Stats after a reshard = %+v, want more changes than %+v, and later", st, first)
	}
	epoch = currentEpoch(t, c)
	r.waitStats(t, "Epoch is "+strconv.FormatUint(epoch, 10)+" after the reshard", func(st ClusterStats) bool { return st.Epoch == epoch })
}
