package statsport

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// appendGroupJSON appends a group's state to its server's object in the
// stats document: extra members after nutcracker's, which only servers of
// a pool with sentinels have, so a plain pool's document stays
// nutcracker's byte for byte.
func appendGroupJSON(b []byte, g *stats.GroupStatus) []byte {
	b = statsAddString(b, "group_master", g.Master)
	confirmed := int64(0)
	if g.Confirmed {
		confirmed = 1
	}
	b = statsAddNum(b, "group_confirmed", confirmed)
	b = statsAddNum(b, "group_replicas", int64(len(g.Replicas)))
	b = statsAddNum(b, "group_failovers", g.Failovers)
	last := int64(0)
	if !g.LastSwitch.IsZero() {
		last = g.LastSwitch.Unix()
	}
	b = statsAddNum(b, "group_last_switch", last)
	b = statsAddNum(b, "group_sentinels_agree", int64(g.Agree))
	b = statsAddNum(b, "group_sentinels_reachable", int64(g.Reachable))
	b = statsAddNum(b, "group_read_replicas", int64(len(g.ReadReplicas)))
	b = statsAddNum(b, "group_replica_reads", g.ReplicaReads)
	return appendReplicaLinksJSON(b, g.ReplicaLinks)
}

// appendReplicaLinksJSON appends "group_replica_links":[...], one object
// per replica as the proxy's ROLE poll last saw it, ending in ", " as the
// members before it do.
func appendReplicaLinksJSON(b []byte, links []stats.ReplicaLink) []byte {
	b = appendJSONString(b, "group_replica_links")
	b = append(b, ":["...)
	for i, l := range links {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = appendJSONMember(b, "addr", l.Addr)
		b = append(b, ',')
		b = appendJSONMember(b, "link", l.Link)
		b = append(b, ',')
		b = appendJSONMember(b, "state", l.State)
		b = append(b, ",\"lag_bytes\":"...)
		b = strconv.AppendInt(b, l.LagBytes, 10)
		b = append(b, ",\"reads\":"...)
		b = strconv.AppendBool(b, l.Reads)
		b = append(b, ',')
		b = appendJSONMember(b, "reason", l.Reason)
		b = append(b, ',')
		b = appendJSONMember(b, "error", l.Error)
		b = append(b, '}')
	}
	return append(b, "], "...)
}

// appendJSONMember appends "key":"value".
func appendJSONMember(b []byte, key, value string) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	return appendJSONString(b, value)
}

var (
	groupMasterInfo    = metricDesc("group_master_info", "Always 1; addr is the group's confirmed master, \"\" while none is.", []string{"pool", "server", "addr"})
	groupConfirmed     = metricDesc("group_confirmed", "1 while ROLE on the group's master said master, else 0: the group's requests fail.", serverLabels)
	groupReplicas      = metricDesc("group_replicas", "Replicas of the group's master, as discovery reports them.", serverLabels)
	groupFailovers     = metricDesc("group_failovers_total", "Times the group's master switched to another node.", serverLabels)
	groupSwitched      = metricDesc("group_last_switch_timestamp_seconds", "When the group's master last switched, 0 if never.", serverLabels)
	groupAgree         = metricDesc("group_sentinels_agree", "Sentinels (for a group without Sentinel: members) agreeing on the group's master.", serverLabels)
	groupReachable     = metricDesc("group_sentinels_reachable", "Sentinels that answered about the group (for a group without Sentinel: members that answered ROLE).", serverLabels)
	groupReadReplicas  = metricDesc("group_read_replicas", "Replicas of the group that take reads now (read_from): master link connected, lag within replica_max_lag.", serverLabels)
	groupReplicaReads  = metricDesc("group_replica_reads_total", "Reads sent to the group's replicas.", serverLabels)
	groupReplicaLinkUp = metricDesc("group_replica_link_up", "1 while the proxy's ROLE poll of the replica says its master link is connected, else 0 (also while it does not answer).", replicaLabels)
	groupReplicaLag    = metricDesc("group_replica_lag_bytes", "Bytes of replication offset the replica is behind the group's master, as the proxy's last ROLE poll of both saw it; absent while unknown.", replicaLabels)
	groupDescs         = []*prometheus.Desc{groupMasterInfo, groupConfirmed, groupReplicas, groupFailovers, groupSwitched, groupAgree, groupReachable, groupReadReplicas, groupReplicaReads, groupReplicaLinkUp, groupReplicaLag}
	replicaLabels      = []string{"pool", "server", "replica"}
)

// collectGroups sends the state of each server that is a group.
func collectGroups(ch chan<- prometheus.Metric, snap *stats.Snapshot) {
	for i := range snap.Pools {
		for j := range snap.Pools[i].Servers {
			g := snap.Pools[i].Servers[j].Group
			if g == nil {
				continue
			}
			pool, srv := labelValue(g.Pool), labelValue(g.Server)
			ch <- prometheus.MustNewConstMetric(groupMasterInfo, prometheus.GaugeValue, 1, pool, srv, labelValue(g.Master))
			ch <- prometheus.MustNewConstMetric(groupConfirmed, prometheus.GaugeValue, boolValue(g.Confirmed), pool, srv)
			ch <- prometheus.MustNewConstMetric(groupReplicas, prometheus.GaugeValue, float64(len(g.Replicas)), pool, srv)
			ch <- prometheus.MustNewConstMetric(groupFailovers, prometheus.CounterValue, float64(g.Failovers), pool, srv)
			last := 0.0
			if !g.LastSwitch.IsZero() {
				last = float64(g.LastSwitch.UnixNano()) / 1e9
			}
			ch <- prometheus.MustNewConstMetric(groupSwitched, prometheus.GaugeValue, last, pool, srv)
			ch <- prometheus.MustNewConstMetric(groupAgree, prometheus.GaugeValue, float64(g.Agree), pool, srv)
			ch <- prometheus.MustNewConstMetric(groupReachable, prometheus.GaugeValue, float64(g.Reachable), pool, srv)
			ch <- prometheus.MustNewConstMetric(groupReadReplicas, prometheus.GaugeValue, float64(len(g.ReadReplicas)), pool, srv)
			ch <- prometheus.MustNewConstMetric(groupReplicaReads, prometheus.CounterValue, float64(g.ReplicaReads), pool, srv)
			for _, l := range g.ReplicaLinks {
				addr := labelValue(l.Addr)
				ch <- prometheus.MustNewConstMetric(groupReplicaLinkUp, prometheus.GaugeValue, boolValue(l.Link == "up"), pool, srv, addr)
				if l.LagBytes >= 0 {
					ch <- prometheus.MustNewConstMetric(groupReplicaLag, prometheus.GaugeValue, float64(l.LagBytes), pool, srv, addr)
				}
			}
		}
	}
}
