package proxy

// Prometheus metrics for /metrics on the stats port. They are read from the
// same atomic counters as nutcracker's JSON document, at scrape time, by a
// custom collector: the request path never resolves a label or touches a
// Prometheus type. Every nutcracker field has a metric; the names follow
// Prometheus conventions (_total for counters, base units), and each help
// text names the nutcracker field the metric mirrors.
//
// Labels: pool is the pool's name; server is the server's ring name, its key
// in the JSON document (the explicit name, else the address as written).

import (
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	poolLabels   = []string{"pool"}
	serverLabels = []string{"pool", "server"}
)

func metricDesc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc("shardproxy_"+name, help, labels, nil)
}

var (
	buildInfoDesc = metricDesc("build_info", "Always 1; version is shardproxy's version.",
		[]string{"version"})
	uptimeDesc = metricDesc("uptime_seconds", "Time since the proxy started (nutcracker uptime).", nil)
	readyDesc  = metricDesc("ready", "1 while /readyz answers 200, else 0.", nil)
	connsDesc  = metricDesc("connections_total",
		"Connections opened since the start (nutcracker total_connections).", nil)
	currConnsDesc = metricDesc("curr_connections",
		"Connections open now (nutcracker curr_connections).", nil)
	coresDesc = metricDesc("cores", "Cores the proxy runs on now (GOMAXPROCS; see --cores).", nil)

	serverLatencyDesc = metricDesc("server_request_duration_seconds",
		"Time from submitting a request to the server's connection to reading its reply.", serverLabels)
	poolLatencyDesc = metricDesc("pool_request_duration_seconds",
		"Time from submitting a request to a server of the pool to reading its reply: the pool's server_request_duration_seconds summed.",
		poolLabels)
)

// poolMetric is one per-pool metric and how to read it.
type poolMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*poolStats) int64
}

var poolMetrics = [...]poolMetric{
	{metricDesc("client_eof_total", "Client connections closed by the client (nutcracker client_eof).", poolLabels),
		prometheus.CounterValue, func(s *poolStats) int64 { return s.clientEOF.Load() }},
	{metricDesc("client_errors_total", "Client connections closed on an error, protocol errors included (nutcracker client_err).", poolLabels),
		prometheus.CounterValue, func(s *poolStats) int64 { return s.clientErr.Load() }},
	{metricDesc("client_connections", "Client connections open now (nutcracker client_connections).", poolLabels),
		prometheus.GaugeValue, func(s *poolStats) int64 { return s.clientConnections.Load() }},
	{metricDesc("server_ejects_total", "Times a server of the pool was taken out of the ring by auto_eject_hosts (nutcracker server_ejects).", poolLabels),
		prometheus.CounterValue, func(s *poolStats) int64 { return s.serverEjects.Load() }},
	{metricDesc("forward_errors_total", "Requests answered with an error because a server could not be used (nutcracker forward_error).", poolLabels),
		prometheus.CounterValue, func(s *poolStats) int64 { return s.forwardError.Load() }},
	{metricDesc("fragments_total", "Sub-requests made by splitting multi-key commands (nutcracker fragments).", poolLabels),
		prometheus.CounterValue, func(s *poolStats) int64 { return s.fragments.Load() }},
	{metricDesc("client_output_limit_closes_total", "Client connections closed because their unwritten replies went over client_output_buffer_limit; also in client_errors_total.", poolLabels),
		prometheus.CounterValue, func(s *poolStats) int64 { return s.clientOutputLimit.Load() }},
}

// serverMetric is one per-server metric and how to read it at time now
// (unix nanoseconds).
type serverMetric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(s *server, now int64) float64
}

var serverMetrics = [...]serverMetric{
	{metricDesc("server_eof_total", "Server connections closed by the server (nutcracker server_eof).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.serverEOF.Load()) }},
	{metricDesc("server_errors_total", "Server connections that failed otherwise, connect errors included (nutcracker server_err).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.serverErr.Load()) }},
	{metricDesc("server_timeouts_total", "Server connections closed because a reply took longer than the pool's timeout (nutcracker server_timedout).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.serverTimedout.Load()) }},
	{metricDesc("server_connections", "Server connections open now (nutcracker server_connections).", serverLabels),
		prometheus.GaugeValue, func(s *server, _ int64) float64 { return float64(s.stats.connections.Load()) }},
	{metricDesc("server_ejected_timestamp_seconds", "When the server was last ejected, in seconds since the epoch; 0 if never (nutcracker server_ejected_at, in microseconds).", serverLabels),
		prometheus.GaugeValue, func(s *server, _ int64) float64 { return float64(s.health.ejectedAt.Load()) / 1e6 }},
	{metricDesc("server_ejected", "1 while the server is out of the ring, else 0.", serverLabels),
		prometheus.GaugeValue, func(s *server, now int64) float64 {
			if s.health.ejectedUntil.Load() > now {
				return 1
			}
			return 0
		}},
	{metricDesc("server_requests_total", "Requests sent to the server, each fragment counted (nutcracker requests).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.requests.Load()) }},
	{metricDesc("server_request_bytes_total", "Bytes of requests sent to the server (nutcracker request_bytes).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.requestBytes.Load()) }},
	{metricDesc("server_responses_total", "Replies received from the server (nutcracker responses).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.responses.Load()) }},
	{metricDesc("server_response_bytes_total", "Bytes of replies received from the server (nutcracker response_bytes).", serverLabels),
		prometheus.CounterValue, func(s *server, _ int64) float64 { return float64(s.stats.responseBytes.Load()) }},
	{metricDesc("server_in_queue", "Requests waiting to be written to the server (nutcracker in_queue).", serverLabels),
		prometheus.GaugeValue, func(s *server, _ int64) float64 { q, _, _, _ := s.stats.queues(); return float64(q) }},
	{metricDesc("server_in_queue_bytes", "Bytes of requests waiting to be written to the server (nutcracker in_queue_bytes).", serverLabels),
		prometheus.GaugeValue, func(s *server, _ int64) float64 { _, q, _, _ := s.stats.queues(); return float64(q) }},
	{metricDesc("server_out_queue", "Requests written to the server and waiting for their reply (nutcracker out_queue).", serverLabels),
		prometheus.GaugeValue, func(s *server, _ int64) float64 { _, _, q, _ := s.stats.queues(); return float64(q) }},
	{metricDesc("server_out_queue_bytes", "Bytes of requests written to the server and waiting for their reply (nutcracker out_queue_bytes).", serverLabels),
		prometheus.GaugeValue, func(s *server, _ int64) float64 { _, _, _, q := s.stats.queues(); return float64(q) }},
}

// latencyBoundSeconds are latencyBounds as Prometheus "le" values.
var latencyBoundSeconds = func() (s [len(latencyBounds)]float64) {
	for i, d := range latencyBounds {
		s[i] = d.Seconds()
	}
	return s
}()

// collector is the Server's prometheus.Collector.
type collector struct{ srv *Server }

func newCollector(srv *Server) prometheus.Collector { return collector{srv} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range [...]*prometheus.Desc{buildInfoDesc, uptimeDesc, readyDesc, connsDesc, currConnsDesc, coresDesc, serverLatencyDesc, poolLatencyDesc} {
		ch <- d
	}
	for i := range poolMetrics {
		ch <- poolMetrics[i].desc
	}
	for i := range serverMetrics {
		ch <- serverMetrics[i].desc
	}
	for _, d := range discoveryDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.srv
	now := time.Now()
	ready := 0.0
	if s.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, labelValue(Version))
	ch <- prometheus.MustNewConstMetric(uptimeDesc, prometheus.GaugeValue, now.Sub(s.started).Seconds())
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.CounterValue, float64(s.stats.totalConnections.Load()))
	ch <- prometheus.MustNewConstMetric(currConnsDesc, prometheus.GaugeValue, float64(s.stats.currConnections.Load()))
	ch <- prometheus.MustNewConstMetric(coresDesc, prometheus.GaugeValue, float64(runtime.GOMAXPROCS(0)))
	nowNanos := now.UnixNano()
	for _, p := range s.poolList() {
		pool := labelValue(p.cfg.Name)
		for i := range poolMetrics {
			m := &poolMetrics[i]
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(p.stats)), pool)
		}
		var poolLatency latencySnapshot
		for _, srv := range p.servers {
			name := labelValue(srv.cfg.Name)
			for i := range serverMetrics {
				m := &serverMetrics[i]
				ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(srv, nowNanos), pool, name)
			}
			latency := srv.stats.latency.snapshot()
			poolLatency.add(&latency)
			ch <- latency.metric(serverLatencyDesc, pool, name)
		}
		ch <- poolLatency.metric(poolLatencyDesc, pool)
	}
	s.collectDiscovery(ch)
}

// metric returns the snapshot as a Prometheus histogram with cumulative
// buckets.
func (s *latencySnapshot) metric(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBoundSeconds))
	var cum uint64
	for i, le := range latencyBoundSeconds {
		cum += s.buckets[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(desc, s.count(), float64(s.sum)/1e9, buckets, labels...)
}

// labelValue makes s a valid label value: Prometheus refuses invalid UTF-8,
// which a quoted YAML name can hold.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
