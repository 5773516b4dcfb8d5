package statsport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// poolSpec is one pool of a test configuration.
type poolSpec struct {
	name  string
	extra string // YAML lines added to the pool, each indented by two spaces
	// servers has one entry per server: its explicit name, "" for a server
	// named by its address, or "dead:NAME" for a server named NAME at a
	// port where nothing listens.
	servers []string
}

// testProxy is a proxy.Server over real redis-servers, with its stats port.
type testProxy struct {
	srv    *proxy.Server
	stats  string                      // the stats port's address
	listen map[string]string           // pool name → its listen address
	redis  map[string]*proxytest.Redis // "pool/server" (the ring name) → its redis-server
	names  map[string][]string         // pool name → its server names in the configuration's order
}

// startProxy starts a redis-server for every server of pools, a started
// proxy.Server over them and its stats port; Cleanup stops them.
func startProxy(t *testing.T, pools ...poolSpec) *testProxy {
	t.Helper()
	tp := &testProxy{listen: map[string]string{}, redis: map[string]*proxytest.Redis{}, names: map[string][]string{}}
	var yaml strings.Builder
	for _, p := range pools {
		tp.listen[p.name] = fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
		fmt.Fprintf(&yaml, "%s:\n  listen: %s\n  redis: true\n%s  servers:\n", p.name, tp.listen[p.name], p.extra)
		for _, name := range p.servers {
			var addr string
			var r *proxytest.Redis
			if dead, ok := strings.CutPrefix(name, "dead:"); ok {
				addr, name = fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t)), dead
			} else {
				r = proxytest.StartRedis(t)
				addr = r.Addr
			}
			line := addr + ":1"
			if name == "" {
				name = addr
			} else {
				line += " " + name
			}
			fmt.Fprintf(&yaml, "    - %s\n", line)
			if r != nil {
				tp.redis[p.name+"/"+name] = r
			}
			tp.names[p.name] = append(tp.names[p.name], name)
		}
	}
	tp.srv = newServer(t, yaml.String())
	if err := tp.srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	tp.srv.SetReady(true)
	tp.stats = startStatsPort(t, tp.srv, time.Minute)
	return tp
}

// client connects to pool's listen address.
func (tp *testProxy) client(t *testing.T, pool string) *proxytest.Conn {
	t.Helper()
	return proxytest.Dial(t, tp.listen[pool])
}

// newServer builds a proxy.Server for yaml without starting it; Cleanup
// shuts it down.
func newServer(t *testing.T, yaml string) *proxy.Server {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, yaml)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// startStatsPort serves src's stats port on 127.0.0.1 and returns its
// address. plainWait is how long a silent connection waits for the
// document: tests of the HTTP side make it long, so that a client slowed
// down (by -race, a busy machine) is not taken for a plain one. Cleanup
// closes it and checks that Serve returned http.ErrServerClosed.
func startStatsPort(t *testing.T, src Source, plainWait time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss := New(src, Options{})
	ss.plainWait = plainWait
	errc := make(chan error, 1)
	go func() { errc <- ss.Serve(ln) }()
	t.Cleanup(func() {
		if err := ss.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// readPlainStats connects like `nc host 22222`, optionally sends send (and
// half-closes if closeWrite), and reads until the server closes.
func readPlainStats(t *testing.T, addr, send string, closeWrite bool) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading stats from %s: %v (got %q)", addr, err, b)
	}
	return b
}

func httpGet(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, body
}

// jsonKeys returns every object key of doc in document order, nested keys
// as "outer/inner". The document must be one object of objects and scalars.
func jsonKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	var keys []string
	var object func(prefix string) error
	object = func(prefix string) error {
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key := tok.(string)
			keys = append(keys, prefix+key)
			if tok, err = dec.Token(); err != nil {
				return err
			}
			switch tok {
			case json.Delim('{'):
				if err := object(prefix + key + "/"); err != nil {
					return err
				}
			case json.Delim('['):
				return fmt.Errorf("unexpected array at %s", key)
			}
		}
		_, err := dec.Token() // '}'
		return err
	}
	tok, err := dec.Token()
	if err == nil && tok != json.Delim('{') {
		err = fmt.Errorf("starts with %v", tok)
	}
	if err == nil {
		err = object("")
	}
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = fmt.Errorf("data after the object")
		}
	}
	if err != nil {
		t.Fatalf("stats document does not parse: %v\n%s", err, doc)
	}
	return keys
}

// flattenStats decodes the document into path → value.
func flattenStats(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatalf("stats document does not parse: %v\n%s", err, doc)
	}
	out := make(map[string]any)
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+"/", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", m)
	return out
}

// statsDoc fetches the stats document from addr over HTTP, flattened.
func statsDoc(t *testing.T, addr string) map[string]any {
	t.Helper()
	_, body := httpGet(t, "http://"+addr+"/")
	return flattenStats(t, body)
}

// statsValue reads one number from the stats JSON served at addr.
func statsValue(t *testing.T, addr, path string) int64 {
	t.Helper()
	v, ok := statsDoc(t, addr)[path].(float64)
	if !ok {
		t.Fatalf("no number %s in the stats document", path)
	}
	return int64(v)
}

// waitStat waits until path in the stats document at addr reads want.
func waitStat(t *testing.T, addr, path string, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := statsValue(t, addr, path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", path, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrapeMetrics gets /metrics and parses it.
func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := httpGet(t, "http://"+addr+"/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %s, Content-Type %q\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return families
}

// metricWith returns the metric of family name whose labels are labels.
func metricWith(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	if _, ok := families[name]; !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	m := findMetric(families, name, labels)
	if m == nil {
		t.Fatalf("no %s%v in /metrics", name, labels)
	}
	return m
}

// findMetric is the series of name with exactly labels, nil when there is
// none.
func findMetric(families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	mf, ok := families[name]
	if !ok {
		return nil
	}
	for _, m := range mf.Metric {
		got := make(map[string]string)
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) == len(labels) {
			match := true
			for k, v := range labels {
				match = match && got[k] == v
			}
			if match {
				return m
			}
		}
	}
	return nil
}

// metricValue is a counter's or gauge's value.
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return math.NaN()
}

// field returns the field of stats.Fields with the nutcracker name or
// metric name.
func field(t *testing.T, name string) *stats.Field {
	t.Helper()
	for i := range stats.Fields {
		if f := &stats.Fields[i]; f.Nutcracker == name || f.Metric == name {
			return f
		}
	}
	t.Fatalf("no field %s in stats.Fields", name)
	return nil
}

// stat is an expected value of one field of one object.
type stat struct {
	pool, server string // "" above the scope
	field        string // the nutcracker name, or the metric for shardproxy's own
	want         int64
}

// checkStats checks each expected value in the stats document and in
// /metrics, both read once.
func checkStats(t *testing.T, addr string, wants []stat) {
	t.Helper()
	doc := statsDoc(t, addr)
	families := scrapeMetrics(t, addr)
	for _, s := range wants {
		f := field(t, s.field)
		if f.Nutcracker != "" {
			path := f.Nutcracker
			for _, p := range []string{s.server, s.pool} {
				if p != "" {
					path = p + "/" + path
				}
			}
			if got := doc[path]; got != float64(s.want) {
				t.Errorf("stats JSON %s = %v, want %d", path, got, s.want)
			}
		}
		if f.Metric == "" {
			continue
		}
		labels := map[string]string{}
		if s.pool != "" {
			labels["pool"] = s.pool
		}
		if s.server != "" {
			labels["server"] = s.server
		}
		if got, want := metricValue(metricWith(t, families, "shardproxy_"+f.Metric, labels)), f.MetricValue(s.want); got != want {
			t.Errorf("/metrics shardproxy_%s%v = %v, want %v", f.Metric, labels, got, want)
		}
	}
}
