package statsport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// appendClusterJSON appends a redis_cluster pool's slot map state to its
// object in the stats document: extra members after nutcracker's, before
// the servers, which only cluster pools have.
func appendClusterJSON(b []byte, c *stats.ClusterStatus) []byte {
	b = statsAddNum(b, "cluster_epoch", int64(c.Epoch))
	b = statsAddNum(b, "cluster_map_refreshes", c.Refreshes)
	b = statsAddNum(b, "cluster_map_changes", c.Changes)
	last := int64(0)
	if !c.LastChange.IsZero() {
		last = c.LastChange.Unix()
	}
	b = statsAddNum(b, "cluster_map_last_change", last)
	b = statsAddNum(b, "cluster_slots_served", int64(c.SlotsServed))
	return statsAddNum(b, "cluster_slots_unserved", int64(c.SlotsUnserved))
}

// appendClusterNodeJSON appends what a server of a redis_cluster pool is
// in its cluster, and the redirects it answered, to its object in the
// stats document, after nutcracker's members.
func appendClusterNodeJSON(b []byte, n *stats.ClusterNodeStatus) []byte {
	b = statsAddString(b, "cluster_node_id", n.ID)
	b = statsAddString(b, "cluster_addr", n.Addr)
	b = statsAddString(b, "cluster_role", n.Role)
	b = statsAddNum(b, "cluster_moved", n.Moved)
	b = statsAddNum(b, "cluster_ask", n.Ask)
	return statsAddNum(b, "cluster_tryagain", n.TryAgain)
}

var (
	clusterNodeInfo   = metricDesc("cluster_node_info", "Always 1; node_id is the ID the slot map gives the server's cluster node (\"\" for a node it does not name, dialled for a redirect), role its role (master, or \"\").", []string{"pool", "server", "node_id", "role"})
	clusterRedirects  = metricDesc("cluster_redirects_total", "Replies of the cluster node saying a request belongs elsewhere or later, by kind: moved (-MOVED), ask (-ASK), tryagain (-TRYAGAIN).", []string{"pool", "server", "node_id", "kind"})
	clusterEpoch      = metricDesc("cluster_map_epoch", "The cluster's current epoch (CLUSTER INFO cluster_current_epoch) at the last read of its slot map.", poolLabels)
	clusterRefreshes  = metricDesc("cluster_map_refreshes_total", "Reads of the cluster's slot map by discovery.", poolLabels)
	clusterChanges    = metricDesc("cluster_map_changes_total", "Reads of the cluster's slot map that found its slots or nodes changed, each handing the pool the new map.", poolLabels)
	clusterChanged    = metricDesc("cluster_map_last_change_timestamp_seconds", "When the cluster's slot map last changed, 0 if never.", poolLabels)
	clusterUnserved   = metricDesc("cluster_slots_unserved", "Hash slots the pool's slot map gives no master: their keys get -CLUSTERDOWN.", poolLabels)
	clusterDescs      = []*prometheus.Desc{clusterNodeInfo, clusterRedirects, clusterEpoch, clusterRefreshes, clusterChanges, clusterChanged, clusterUnserved}
	poolLabels        = scopeLabels[stats.PerPool]
	clusterRedirectBy = [...]string{"moved", "ask", "tryagain"}
)

// collectClusters sends the state of each redis_cluster pool and of its
// nodes.
func collectClusters(ch chan<- prometheus.Metric, snap *stats.Snapshot) {
	for i := range snap.Pools {
		p := &snap.Pools[i]
		if p.Cluster == nil {
			continue
		}
		pool := labelValue(p.Name)
		c := p.Cluster
		ch <- prometheus.MustNewConstMetric(clusterEpoch, prometheus.GaugeValue, float64(c.Epoch), pool)
		ch <- prometheus.MustNewConstMetric(clusterRefreshes, prometheus.CounterValue, float64(c.Refreshes), pool)
		ch <- prometheus.MustNewConstMetric(clusterChanges, prometheus.CounterValue, float64(c.Changes), pool)
		last := 0.0
		if !c.LastChange.IsZero() {
			last = float64(c.LastChange.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(clusterChanged, prometheus.GaugeValue, last, pool)
		ch <- prometheus.MustNewConstMetric(clusterUnserved, prometheus.GaugeValue, float64(c.SlotsUnserved), pool)
		for j := range p.Servers {
			s := &p.Servers[j]
			n := s.Cluster
			if n == nil {
				continue
			}
			srv, id := labelValue(s.Name), labelValue(n.ID)
			ch <- prometheus.MustNewConstMetric(clusterNodeInfo, prometheus.GaugeValue, 1, pool, srv, id, labelValue(n.Role))
			for k, v := range [...]int64{n.Moved, n.Ask, n.TryAgain} {
				ch <- prometheus.MustNewConstMetric(clusterRedirects, prometheus.CounterValue, float64(v), pool, srv, id, clusterRedirectBy[k])
			}
		}
	}
}
