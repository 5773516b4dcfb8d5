package statsport

import (
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// /metrics reports the open file limit, the client limit computed from it
// and the clients refused on accept, under names Prometheus' lint accepts.
func TestClientLimitMetrics(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"", "b"}, extra: "  client_connections: 1\n"})
	first := tp.client(t, "alpha")
	if r, err := first.Do("PING"); err != nil || string(r.Raw()) != "+PONG\r\n" {
		t.Fatalf("PING = %q, %v", r.Raw(), err)
	}
	over := tp.client(t, "alpha")
	if r, err := over.Read(); err != nil || string(r.Raw()) != "-ERR max number of clients reached\r\n" {
		t.Fatalf("the client over client_connections: %q, %v", r.Raw(), err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	families := scrapeMetrics(t, tp.stats)
	// Two servers with one connection each and the listener, and 33
	// reserved.
	for name, want := range map[string]float64{
		"shardproxy_open_files_limit":           float64(lim.Cur),
		"shardproxy_max_client_connections":     float64(lim.Cur) - 3 - 33,
		"shardproxy_rejected_connections_total": 1,
	} {
		if got := metricValue(metricWith(t, families, name, nil)); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	var limits []*dto.MetricFamily
	for _, name := range []string{"shardproxy_open_files_limit", "shardproxy_max_client_connections", "shardproxy_rejected_connections_total"} {
		limits = append(limits, families[name])
	}
	problems, err := promlint.NewWithMetricFamilies(limits).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
