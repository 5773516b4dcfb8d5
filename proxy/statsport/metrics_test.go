package statsport

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

func TestMetrics(t *testing.T) {
	tp := startTwoPools(t)
	pools := statsTestPools(tp)
	want := sendTraffic(t, tp, pools)
	families := scrapeMetrics(t, tp.stats)

	for _, name := range []string{
		"shardproxy_build_info", "shardproxy_uptime_seconds", "shardproxy_ready",
		"shardproxy_connections_total", "shardproxy_curr_connections", "shardproxy_cores",
		"shardproxy_client_eof_total", "shardproxy_client_errors_total", "shardproxy_client_connections",
		"shardproxy_server_ejects_total", "shardproxy_forward_errors_total", "shardproxy_fragments_total",
		"shardproxy_server_eof_total", "shardproxy_server_errors_total", "shardproxy_server_timeouts_total",
		"shardproxy_server_connections", "shardproxy_server_ejected_timestamp_seconds", "shardproxy_server_ejected",
		"shardproxy_server_requests_total", "shardproxy_server_request_bytes_total",
		"shardproxy_server_responses_total", "shardproxy_server_response_bytes_total",
		"shardproxy_server_in_queue", "shardproxy_server_in_queue_bytes",
		"shardproxy_server_out_queue", "shardproxy_server_out_queue_bytes",
		"shardproxy_server_request_duration_seconds", "shardproxy_pool_request_duration_seconds",
		"go_goroutines", "process_open_fds",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s in /metrics", name)
		}
	}
	if m := metricWith(t, families, "shardproxy_build_info", map[string]string{"version": proxy.Version}); metricValue(m) != 1 {
		t.Errorf("shardproxy_build_info = %v, want 1", metricValue(m))
	}
	if got := metricValue(metricWith(t, families, "shardproxy_cores", nil)); got != float64(runtime.GOMAXPROCS(0)) {
		t.Errorf("shardproxy_cores = %v, want %d", got, runtime.GOMAXPROCS(0))
	}
	// What the traffic counted, as the JSON document and /metrics show it.
	var wants []stat
	for path, v := range want {
		parts := strings.Split(path, "/")
		s := stat{field: parts[len(parts)-1], want: v}
		if len(parts) > 1 {
			s.pool = parts[0]
		}
		if len(parts) > 2 {
			s.server = parts[1]
		}
		wants = append(wants, s)
	}
	checkStats(t, tp.stats, wants)
}

// Describe and Collect must agree, and label sets must be unique.
func TestMetricsCollectorIsConsistent(t *testing.T) {
	srv := newServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{New(srv, Options{})})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Without discovery and a config hash: build_info, the table's
	// metrics, the three per-server address families and
	// config_reloads_total.
	n := 0
	for i := range stats.Fields {
		if stats.Fields[i].Metric != "" {
			n++
		}
	}
	if want := 1 + n + 3 + 1; len(families) != want {
		t.Errorf("%d metric families, want %d", len(families), want)
	}
}

// The JSON document, /metrics and -D all come from stats.Fields: every field
// with a nutcracker name is in the document for every pool or server of its
// scope, and nothing else is; every field with a metric is in /metrics for
// every pool or server; -D describes every field. (A field only
// shardproxy reports has no place in nutcracker's document, and timestamp
// none in Prometheus, which stamps its scrapes itself.)
func TestFieldsDriveAllOutputs(t *testing.T) {
	tp := startTwoPools(t)
	pools := statsTestPools(tp)
	sendTraffic(t, tp, pools)

	// The document's keys are exactly the table's nutcracker fields.
	want := []string{"service", "source", "version"}
	add := func(prefix string, scope stats.Scope) {
		for i := range stats.Fields {
			if f := &stats.Fields[i]; f.Scope == scope && f.Nutcracker != "" {
				want = append(want, prefix+f.Nutcracker)
			}
		}
	}
	add("", stats.PerProcess)
	for _, p := range pools {
		want = append(want, p.name)
		add(p.name+"/", stats.PerPool)
		for _, s := range p.servers {
			want = append(want, p.name+"/"+s)
			add(p.name+"/"+s+"/", stats.PerServer)
		}
	}
	_, doc := httpGet(t, "http://"+tp.stats+"/")
	if got := jsonKeys(t, doc); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("stats document keys:\n%q\nwant the table's:\n%q", got, want)
	}

	families := scrapeMetrics(t, tp.stats)
	describe := stats.Describe(proxy.Version)
	for i := range stats.Fields {
		f := &stats.Fields[i]
		if f.Metric != "" {
			mf, ok := families["shardproxy_"+f.Metric]
			if !ok {
				t.Errorf("no shardproxy_%s in /metrics", f.Metric)
				continue
			}
			n := map[stats.Scope]int{stats.PerProcess: 1, stats.PerPool: len(pools), stats.PerServer: 4}[f.Scope]
			if len(mf.Metric) != n {
				t.Errorf("shardproxy_%s: %d series, want %d", f.Metric, len(mf.Metric), n)
			}
			if !strings.Contains(mf.GetHelp(), f.Help[1:]) {
				t.Errorf("shardproxy_%s help %q lacks the table's %q", f.Metric, mf.GetHelp(), f.Help)
			}
		}
		name := f.Nutcracker
		if name == "" {
			name = "shardproxy_" + f.Metric
		}
		if !strings.Contains(describe, "  "+name) || !strings.Contains(describe, `"`+f.Help+`"`) {
			t.Errorf("-D does not describe %s as %q", name, f.Help)
		}
	}
}
