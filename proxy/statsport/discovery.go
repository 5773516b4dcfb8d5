package statsport

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// discoveryReport is the /discovery document.
type discoveryReport struct {
	ConfigSHA256  string                `json:"config_sha256,omitempty"`
	Reloads       int64                 `json:"reloads"`
	ReloadsFailed int64                 `json:"reloads_rejected"`
	Services      []stats.ServiceStatus `json:"services"`
	Servers       []stats.AddressStatus `json:"servers"`
	Groups        []*stats.GroupStatus  `json:"groups,omitempty"` // servers that Sentinel watches
	// ClusterAddresses lists, per redis_cluster pool, the nodes dialled at
	// another address than the cluster announces.
	ClusterAddresses []stats.ClusterAddresses `json:"cluster_addresses,omitempty"`
}

func (ss *Server) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	r := ss.take()
	defer ss.put(r)
	snap := &r.snap
	rep := discoveryReport{
		ConfigSHA256:  snap.ConfigSHA256,
		Reloads:       snap.Reloads,
		ReloadsFailed: snap.ReloadsRejected,
		Services:      snap.Services,

		ClusterAddresses: snap.ClusterAddresses,
	}
	if rep.Services == nil {
		rep.Services = []stats.ServiceStatus{}
	}
	for i := range snap.Pools {
		for j := range snap.Pools[i].Servers {
			rep.Servers = append(rep.Servers, snap.Pools[i].Servers[j].Address)
			if g := snap.Pools[i].Servers[j].Group; g != nil {
				rep.Groups = append(rep.Groups, g)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}

var (
	serviceLabels    = []string{"namespace", "service"}
	serverLabels     = scopeLabels[stats.PerServer]
	discoverySynced  = metricDesc("discovery_synced", "1 once the Service's EndpointSlices were listed.", serviceLabels)
	discoveryHealthy = metricDesc("discovery_healthy", "1 while the last call to the API server for the Service succeeded.", serviceLabels)
	discoveryEndpts  = metricDesc("discovery_endpoints", "Pods of the Service in its EndpointSlices.", serviceLabels)
	discoveryChanged = metricDesc("discovery_last_change_timestamp_seconds", "When the Service's endpoints last changed.", serviceLabels)
	addressInfo      = metricDesc("server_address_info", "Always 1; address is where the server is dialled now and source where that came from (config, or endpointslice/<name>).", []string{"pool", "server", "address", "source"})
	addressUsable    = metricDesc("server_address_usable", "1 while the server may take requests (its pod is ready and not terminating).", serverLabels)
	addressChanged   = metricDesc("server_address_changed_timestamp_seconds", "When the server's address or usability last changed.", serverLabels)
	configReloads    = metricDesc("config_reloads_total", "Configuration reloads, by result (ok, rejected).", []string{"result"})
	configInfo       = metricDesc("config_info", "Always 1; sha256 is the SHA-256 of the running configuration file.", []string{"sha256"})
	clusterMismatch  = metricDesc("cluster_node_address_mismatch", "Always 1, for each node of a redis_cluster pool that the cluster announces at an address its pod had before: announced is that address, dialled the pod's current one.", []string{"pool", "node_id", "announced", "dialled", "pod"})
	clusterMismatchN = metricDesc("cluster_address_mismatches", "Nodes of the redis_cluster pool that the cluster announces at an address their pod had before; each is dialled at its pod's current one.", []string{"pool"})
	discoveryDescs   = []*prometheus.Desc{discoverySynced, discoveryHealthy, discoveryEndpts, discoveryChanged, addressInfo, addressUsable, addressChanged, configReloads, configInfo, clusterMismatch, clusterMismatchN}
)

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectDiscovery sends the discovery and configuration metrics, which
// carry labels of their own and so stay outside stats.Fields.
func collectDiscovery(ch chan<- prometheus.Metric, snap *stats.Snapshot) {
	for _, st := range snap.Services {
		ns, name := labelValue(st.Namespace), labelValue(st.Name)
		ch <- prometheus.MustNewConstMetric(discoverySynced, prometheus.GaugeValue, boolValue(st.Synced), ns, name)
		ch <- prometheus.MustNewConstMetric(discoveryHealthy, prometheus.GaugeValue, boolValue(st.Healthy), ns, name)
		ch <- prometheus.MustNewConstMetric(discoveryEndpts, prometheus.GaugeValue, float64(st.Endpoints), ns, name)
		if !st.LastChangeAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(discoveryChanged, prometheus.GaugeValue, float64(st.LastChangeAt.UnixNano())/1e9, ns, name)
		}
	}
	for i := range snap.Pools {
		for j := range snap.Pools[i].Servers {
			a := &snap.Pools[i].Servers[j].Address
			pool, srv := labelValue(a.Pool), labelValue(a.Server)
			ch <- prometheus.MustNewConstMetric(addressInfo, prometheus.GaugeValue, 1, pool, srv, labelValue(a.Addr), labelValue(a.Source))
			ch <- prometheus.MustNewConstMetric(addressUsable, prometheus.GaugeValue, boolValue(a.Usable), pool, srv)
			ch <- prometheus.MustNewConstMetric(addressChanged, prometheus.GaugeValue, float64(a.ChangedAt.UnixNano())/1e9, pool, srv)
		}
	}
	for _, ca := range snap.ClusterAddresses {
		pool, stale := labelValue(ca.Pool), 0
		for _, n := range ca.Nodes {
			if n.Stale {
				stale++
				ch <- prometheus.MustNewConstMetric(clusterMismatch, prometheus.GaugeValue, 1,
					pool, labelValue(n.ID), labelValue(n.Announced), labelValue(n.Dialled), labelValue(n.Pod))
			}
		}
		ch <- prometheus.MustNewConstMetric(clusterMismatchN, prometheus.GaugeValue, float64(stale), pool)
	}
	ch <- prometheus.MustNewConstMetric(configReloads, prometheus.CounterValue, float64(snap.Reloads), "ok")
	ch <- prometheus.MustNewConstMetric(configReloads, prometheus.CounterValue, float64(snap.ReloadsRejected), "rejected")
	if snap.ConfigSHA256 != "" {
		ch <- prometheus.MustNewConstMetric(configInfo, prometheus.GaugeValue, 1, snap.ConfigSHA256)
	}
}
