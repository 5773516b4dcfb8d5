package statsport

// Prometheus metrics for /metrics. A custom collector renders each scrape
// from a snapshot, walking stats.Fields: the request path never resolves a
// label or touches a Prometheus type. Every nutcracker field has a metric;
// the names follow Prometheus conventions (_total for counters, base
// units), and each help text names the nutcracker field the metric mirrors.
//
// Labels: pool is the pool's name; server is the server's ring name, its key
// in the JSON document (the explicit name, else the address as written).

import (
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

const metricPrefix = "shardproxy_"

// scopeLabels are the labels of a field's metric, by its scope.
var scopeLabels = [...][]string{
	stats.PerProcess: nil,
	stats.PerPool:    {"pool"},
	stats.PerServer:  {"pool", "server"},
}

func metricDesc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(metricPrefix+name, help, labels, nil)
}

// fieldDescs are the descriptions of the metrics of stats.Fields, at the
// same index; nil for a field without a metric.
var fieldDescs = func() (descs [len(stats.Fields)]*prometheus.Desc) {
	for i := range stats.Fields {
		if f := &stats.Fields[i]; f.Metric != "" {
			descs[i] = metricDesc(f.Metric, f.MetricHelp(), scopeLabels[f.Scope])
		}
	}
	return descs
}()

var buildInfoDesc = metricDesc("build_info", "Always 1; version is shardproxy's version.", []string{"version"})

// latencyBoundSeconds are stats.LatencyBounds as Prometheus "le" values.
var latencyBoundSeconds = func() (s [len(stats.LatencyBounds)]float64) {
	for i, d := range stats.LatencyBounds {
		s[i] = d.Seconds()
	}
	return s
}()

// collector is the stats port's prometheus.Collector.
type collector struct{ ss *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- buildInfoDesc
	for _, d := range fieldDescs {
		if d != nil {
			ch <- d
		}
	}
	for _, d := range discoveryDescs {
		ch <- d
	}
	for _, d := range groupDescs {
		ch <- d
	}
	for _, d := range clusterDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	r := c.ss.take()
	defer c.ss.put(r)
	snap := &r.snap
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, labelValue(snap.Version))
	collectScope(ch, stats.PerProcess, snap.Process[:], nil)
	for i := range snap.Pools {
		p := &snap.Pools[i]
		pool := labelValue(p.Name)
		collectScope(ch, stats.PerPool, p.Values[:], &p.Latency, pool)
		for j := range p.Servers {
			s := &p.Servers[j]
			collectScope(ch, stats.PerServer, s.Values[:], &s.Latency, pool, labelValue(s.Name))
		}
	}
	collectDiscovery(ch, snap)
	collectGroups(ch, snap)
	collectClusters(ch, snap)
}

// collectScope sends the metrics of the fields of scope for one object:
// its values and its latency histogram, with labels.
func collectScope(ch chan<- prometheus.Metric, scope stats.Scope, values []int64, latency *stats.LatencySnapshot, labels ...string) {
	for i := range stats.Fields {
		f := &stats.Fields[i]
		if f.Scope != scope || fieldDescs[i] == nil {
			continue
		}
		switch f.Kind {
		case stats.Histogram:
			ch <- latencyMetric(fieldDescs[i], latency, labels)
		case stats.Counter:
			ch <- prometheus.MustNewConstMetric(fieldDescs[i], prometheus.CounterValue, f.MetricValue(values[f.Index]), labels...)
		default:
			ch <- prometheus.MustNewConstMetric(fieldDescs[i], prometheus.GaugeValue, f.MetricValue(values[f.Index]), labels...)
		}
	}
}

// latencyMetric returns s as a Prometheus histogram with cumulative
// buckets.
func latencyMetric(desc *prometheus.Desc, s *stats.LatencySnapshot, labels []string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBoundSeconds))
	var cum uint64
	for i, le := range latencyBoundSeconds {
		cum += s.Buckets[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(desc, s.Count(), float64(s.Sum)/1e9, buckets, labels...)
}

// labelValue makes s a valid label value: Prometheus refuses invalid UTF-8,
// which a quoted YAML name can hold.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
