package proxy

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
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// The stats fields in nutcracker 0.5.0's order, copied from
// shared/reference/nutcracker.md §3.3 (nc_stats.h), not from our code.
var (
	nutcrackerTopFields = []string{"service", "source", "version", "uptime", "timestamp",
		"total_connections", "curr_connections"}
	nutcrackerPoolFields = []string{"client_eof", "client_err", "client_connections",
		"server_ejects", "forward_error", "fragments"}
	nutcrackerServerFields = []string{"server_eof", "server_err", "server_timedout",
		"server_connections", "server_ejected_at", "requests", "request_bytes", "responses",
		"response_bytes", "in_queue", "in_queue_bytes", "out_queue", "out_queue_bytes"}
)

// statsTestYAML has two pools, alpha first in the file; nutcracker orders
// pools shorter name first, so the Config (and the stats) has beta first.
// Each pool has a named server, which sorts before the unnamed one. The
// servers are never dialled.
func statsTestYAML(alphaPort, betaPort int) string {
	return fmt.Sprintf(`alpha:
  listen: 127.0.0.1:%d
  redis: true
  servers:
    - 127.0.0.1:7101:1
    - 127.0.0.1:7102:1 shard-b
beta:
  listen: 127.0.0.1:%d
  redis: true
  servers:
    - 127.0.0.1:7103:1
    - 127.0.0.1:7104:1 b
`, alphaPort, betaPort)
}

// statsTestPools is statsTestYAML's pools and servers in nutcracker's order.
var statsTestPools = []struct {
	name    string
	servers []string
}{
	{"beta", []string{"b", "127.0.0.1:7103"}},
	{"alpha", []string{"shard-b", "127.0.0.1:7101"}},
}

// newStatsTestServer builds a Server for yaml without starting it.
func newStatsTestServer(t *testing.T, yaml string) *Server {
	t.Helper()
	cfg, err := ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, yaml)
	}
	srv, err := NewServer(cfg, Options{})
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

// startStatsServer serves srv's stats port on 127.0.0.1 with opts and
// returns its address. Cleanup closes it and checks that Serve returned
// http.ErrServerClosed.
func startStatsServer(t *testing.T, srv *Server, opts StatsOptions) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss := NewStatsServer(srv, opts)
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

// wantStatsKeys is the key order nutcracker writes for statsTestPools.
func wantStatsKeys() []string {
	keys := slices.Clone(nutcrackerTopFields)
	for _, p := range statsTestPools {
		keys = append(keys, p.name)
		for _, f := range nutcrackerPoolFields {
			keys = append(keys, p.name+"/"+f)
		}
		for _, s := range p.servers {
			keys = append(keys, p.name+"/"+s)
			for _, f := range nutcrackerServerFields {
				keys = append(keys, p.name+"/"+s+"/"+f)
			}
		}
	}
	return keys
}

// setDistinctStats gives every counter a value of its own and returns the
// values by JSON path.
func setDistinctStats(srv *Server) map[string]int64 {
	want := make(map[string]int64)
	n := int64(1000)
	set := func(path string, c *atomic.Int64) {
		n++
		c.Store(n)
		want[path] = n
	}
	set("total_connections", &srv.stats.totalConnections)
	set("curr_connections", &srv.stats.currConnections)
	for _, p := range srv.poolList() {
		ps := p.stats
		for _, f := range []struct {
			name string
			c    *atomic.Int64
		}{
			{"client_eof", &ps.clientEOF}, {"client_err", &ps.clientErr},
			{"client_connections", &ps.clientConnections}, {"server_ejects", &ps.serverEjects},
			{"forward_error", &ps.forwardError}, {"fragments", &ps.fragments},
		} {
			set(p.cfg.Name+"/"+f.name, f.c)
		}
		for _, s := range p.servers {
			ss := s.stats
			for _, f := range []struct {
				name string
				c    *atomic.Int64
			}{
				{"server_eof", &ss.serverEOF}, {"server_err", &ss.serverErr},
				{"server_timedout", &ss.serverTimedout}, {"server_connections", &ss.connections},
				{"server_ejected_at", &s.health.ejectedAt}, {"requests", &ss.requests},
				{"request_bytes", &ss.requestBytes}, {"responses", &ss.responses},
				{"response_bytes", &ss.responseBytes}, {"in_queue", &ss.inQueue},
				{"in_queue_bytes", &ss.inQueueBytes}, {"out_queue", &ss.outQueue},
				{"out_queue_bytes", &ss.outQueueBytes},
			} {
				set(p.cfg.Name+"/"+s.cfg.Name+"/"+f.name, f.c)
			}
			// outQueue counts in_queue too; nutcracker's out_queue does not.
			prefix := p.cfg.Name + "/" + s.cfg.Name + "/"
			want[prefix+"out_queue"] -= want[prefix+"in_queue"]
			want[prefix+"out_queue_bytes"] -= want[prefix+"in_queue_bytes"]
		}
	}
	return want
}

func TestStatsQueues(t *testing.T) {
	for _, tc := range []struct {
		in, inBytes, out, outBytes                 int64 // counters
		wantIn, wantInBytes, wantOut, wantOutBytes int64 // reported
	}{
		{0, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 7, 700, 0, 0, 7, 700},
		{2, 200, 7, 700, 2, 200, 5, 500},
		{3, 300, 2, 200, 3, 300, 0, 0}, // read while moving: never negative
	} {
		var s serverStats
		s.inQueue.Store(tc.in)
		s.inQueueBytes.Store(tc.inBytes)
		s.outQueue.Store(tc.out)
		s.outQueueBytes.Store(tc.outBytes)
		in, inBytes, out, outBytes := s.queues()
		if in != tc.wantIn || inBytes != tc.wantInBytes || out != tc.wantOut || outBytes != tc.wantOutBytes {
			t.Errorf("queues() with in %d/%d out %d/%d = %d %d %d %d, want %d %d %d %d",
				tc.in, tc.inBytes, tc.out, tc.outBytes, in, inBytes, out, outBytes,
				tc.wantIn, tc.wantInBytes, tc.wantOut, tc.wantOutBytes)
		}
	}
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

// checkStatsDocument checks a stats document of a Server built from
// statsTestYAML after setDistinctStats.
func checkStatsDocument(t *testing.T, srv *Server, doc []byte, want map[string]int64, before, after time.Time) {
	t.Helper()
	if !bytes.HasSuffix(doc, []byte("}\n")) {
		t.Errorf("stats document ends in %q, want \"}\\n\"", doc[max(0, len(doc)-10):])
	}
	if keys, wantKeys := jsonKeys(t, doc), wantStatsKeys(); !slices.Equal(keys, wantKeys) {
		t.Errorf("stats keys:\n%q\nwant nutcracker's order:\n%q", keys, wantKeys)
	}
	got := flattenStats(t, doc)
	host, _ := os.Hostname()
	for k, v := range map[string]any{"service": "nutcracker", "source": host, "version": "0.5.0"} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if ts, _ := got["timestamp"].(float64); ts < float64(before.Unix()) || ts > float64(after.Unix()) {
		t.Errorf("timestamp = %v, want between %d and %d", got["timestamp"], before.Unix(), after.Unix())
	}
	// Whole seconds of both clocks, as nutcracker subtracts two time(NULL).
	if up, ts := got["uptime"], got["timestamp"].(float64); up != ts-float64(srv.started.Unix()) {
		t.Errorf("uptime = %v, want timestamp %v - start %d", up, ts, srv.started.Unix())
	}
	for path, v := range want {
		if got[path] != float64(v) {
			t.Errorf("%s = %v, want %d", path, got[path], v)
		}
	}
}

func TestStatsPlainTCP(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	var names []string
	for _, p := range srv.poolList() {
		names = append(names, p.cfg.Name)
	}
	// The file says alpha first; the check below must see the Config's order.
	if want := []string{"beta", "alpha"}; !slices.Equal(names, want) {
		t.Fatalf("Config pool order = %q, want %q", names, want)
	}
	want := setDistinctStats(srv)
	addr := startStatsServer(t, srv, StatsOptions{})
	for _, tc := range []struct {
		name       string
		send       string
		closeWrite bool
	}{
		{name: "silent"},                            // nc localhost 22222
		{name: "half-closed", closeWrite: true},     // printf "" | nc -N localhost 22222
		{name: "non-HTTP bytes", send: "stats\r\n"}, // nutcracker ignores what it is sent
		{name: "non-HTTP bytes, EOF", send: "\n", closeWrite: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			doc := readPlainStats(t, addr, tc.send, tc.closeWrite)
			checkStatsDocument(t, srv, doc, want, before, time.Now())
		})
	}
}

// statsPlaceholders replaces what differs between two runs of the same
// config (numbers, the host name) so that documents can be compared.
func statsPlaceholders(doc []byte) []byte {
	doc = regexp.MustCompile(`"source":"[^"]*"`).ReplaceAll(doc, []byte(`"source":"SOURCE"`))
	return regexp.MustCompile(`":-?[0-9]+`).ReplaceAll(doc, []byte(`":N`))
}

// The stats document must be nutcracker's byte for byte, apart from values.
func TestStatsNutcrackerFormat(t *testing.T) {
	yaml := statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t))
	nc := proxytest.StartNutcracker(t, yaml)
	theirs, err := nc.Stats()
	if err != nil {
		t.Fatalf("nutcracker stats: %v", err)
	}
	srv := newStatsTestServer(t, yaml)
	setDistinctStats(srv)
	ours := readPlainStats(t, startStatsServer(t, srv, StatsOptions{}), "", false)
	if a, b := statsPlaceholders(ours), statsPlaceholders(theirs); !bytes.Equal(a, b) {
		t.Errorf("stats format differs from nutcracker's (values replaced)\nours:\n%s\nnutcracker:\n%s\nours raw:\n%s\nnutcracker raw:\n%s", a, b, ours, theirs)
	}
	// A counter beyond 32 bits and a negative gauge print as %PRId64 does.
	srv.poolList()[0].servers[0].stats.responseBytes.Store(1 << 40)
	srv.poolList()[0].stats.clientConnections.Store(-1)
	doc := srv.StatsJSON()
	for _, s := range []string{`"response_bytes":1099511627776, `, `"client_connections":-1, `} {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("document lacks %s:\n%s", s, doc)
		}
	}
}

// Names are JSON-escaped where nutcracker would write broken JSON.
func TestStatsJSONEscapesNames(t *testing.T) {
	weirdPool := "we\"ird\\pool\x01"
	weirdServer := "tab\there \xff é"
	cfg := &Config{Pools: []PoolConfig{{
		Name: weirdPool, Redis: true, Hash: "fnv1a_64", Distribution: "ketama", ServerConnections: 1,
		Servers: []ServerConfig{{Name: weirdServer, Addr: "127.0.0.1:7101", Network: "tcp",
			DialAddr: "127.0.0.1:7101", Weight: 1, ExplicitName: true}},
	}}}
	srv, err := NewServer(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := flattenStats(t, srv.StatsJSON())
	key := weirdPool + "/" + viaEncodingJSON(t, weirdServer) + "/requests"
	if _, ok := got[key]; !ok {
		t.Errorf("no %q in %v", key, got)
	}
	for _, tc := range []struct {
		s     string
		plain bool // nutcracker's bytes: no escape needed
	}{
		{"", true}, {"127.0.0.1:6379", true}, {"shard-b", true}, {"é/ü", true}, {"\u2028", true},
		{"a\"b", false}, {"a\\b", false}, {"\x00\x1f\x7f", false}, {"\xff\xfe", false},
	} {
		enc := appendJSONString(nil, tc.s)
		var dec string
		if err := json.Unmarshal(enc, &dec); err != nil {
			t.Errorf("appendJSONString(%q) = %s: %v", tc.s, enc, err)
			continue
		}
		if want := viaEncodingJSON(t, tc.s); dec != want {
			t.Errorf("appendJSONString(%q) decodes to %q, want %q", tc.s, dec, want)
		}
		if tc.plain && string(enc) != `"`+tc.s+`"` {
			t.Errorf("appendJSONString(%q) = %s, want the bytes unchanged as nutcracker writes them", tc.s, enc)
		}
	}
}

// viaEncodingJSON returns s after a round trip through encoding/json, which
// turns each invalid UTF-8 byte into U+FFFD.
func viaEncodingJSON(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Without pools the document is still valid JSON (nutcracker always has one).
func TestStatsJSONWithoutPools(t *testing.T) {
	srv, err := NewServer(&Config{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc := srv.StatsJSON()
	if !json.Valid(doc) || !bytes.HasSuffix(doc, []byte(`"curr_connections":0}`+"\n")) {
		t.Errorf("StatsJSON() = %q", doc)
	}
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

func TestStatsHTTP(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	want := setDistinctStats(srv)
	addr := startStatsServer(t, srv, httpOnly)

	before := time.Now()
	resp, body := httpGet(t, "http://"+addr+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET / = %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	checkStatsDocument(t, srv, body, want, before, time.Now())

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404},
		{"POST", "/", 405},
		{"HEAD", "/", 200},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}

	// HTTP/1.0 without keep-alive, as a shell script would send it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	raw, err := io.ReadAll(c)
	if err != nil || !bytes.HasPrefix(raw, []byte("HTTP/1.0 200 OK\r\n")) || !bytes.HasSuffix(raw, []byte("}\n")) {
		t.Errorf("HTTP/1.0 GET / = %q, %v", raw, err)
	}
}

func TestHealthz(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	addr := startStatsServer(t, srv, httpOnly)
	resp, body := httpGet(t, "http://"+addr+"/healthz")
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("GET /healthz = %s %q, want 200 \"ok\"", resp.Status, body)
	}
}

func TestReadyz(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	addr := startStatsServer(t, srv, httpOnly)
	check := func(step string, status int, body string) {
		t.Helper()
		resp, got := httpGet(t, "http://"+addr+"/readyz")
		if resp.StatusCode != status || string(got) != body {
			t.Errorf("%s: GET /readyz = %d %q, want %d %q", step, resp.StatusCode, got, status, body)
		}
		if srv.Ready() != (status == 200) {
			t.Errorf("%s: Ready() = %v", step, srv.Ready())
		}
		if resp, got := httpGet(t, "http://"+addr+"/healthz"); resp.StatusCode != 200 || string(got) != "ok" {
			t.Errorf("%s: GET /healthz = %d %q, want 200 \"ok\"", step, resp.StatusCode, got)
		}
	}
	check("new", 503, "not ready")
	srv.SetReady(true)
	check("SetReady(true) before Start", 503, "not listening")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	check("started", 200, "ok")
	srv.SetReady(false)
	check("SetReady(false)", 503, "not ready")
	srv.SetReady(true)
	check("SetReady(true)", 200, "ok")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	check("Shutdown", 503, "shutting down")
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
	mf, ok := families[name]
	if !ok {
		t.Fatalf("no %s in /metrics", name)
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
	t.Fatalf("no %s%v in /metrics", name, labels)
	return nil
}

func TestMetrics(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	want := setDistinctStats(srv)
	alpha := srv.poolList()[1]
	if alpha.cfg.Name != "alpha" || alpha.servers[0].cfg.Name != "shard-b" {
		t.Fatalf("pools[1] = %s, servers[0] = %s", alpha.cfg.Name, alpha.servers[0].cfg.Name)
	}
	shardB, other := alpha.servers[0], alpha.servers[1]
	for _, d := range []time.Duration{40 * time.Microsecond, time.Millisecond, 20 * time.Second} {
		shardB.stats.latency.observe(d)
	}
	other.stats.latency.observe(3 * time.Millisecond)
	shardB.health.ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
	addr := startStatsServer(t, srv, httpOnly)
	families := scrapeMetrics(t, addr)

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

	type value struct {
		name   string
		labels map[string]string
		want   float64
	}
	server := map[string]string{"pool": "alpha", "server": "shard-b"}
	values := []value{
		{"shardproxy_connections_total", nil, float64(want["total_connections"])},
		{"shardproxy_curr_connections", nil, float64(want["curr_connections"])},
		{"shardproxy_ready", nil, 0},
		{"shardproxy_cores", nil, float64(runtime.GOMAXPROCS(0))},
		{"shardproxy_client_errors_total", map[string]string{"pool": "beta"}, float64(want["beta/client_err"])},
		{"shardproxy_client_connections", map[string]string{"pool": "alpha"}, float64(want["alpha/client_connections"])},
		{"shardproxy_server_requests_total", server, float64(want["alpha/shard-b/requests"])},
		{"shardproxy_server_timeouts_total", server, float64(want["alpha/shard-b/server_timedout"])},
		{"shardproxy_server_out_queue_bytes", server, float64(want["alpha/shard-b/out_queue_bytes"])},
		{"shardproxy_server_ejected_timestamp_seconds", server, float64(want["alpha/shard-b/server_ejected_at"]) / 1e6},
		{"shardproxy_server_ejected", server, 1},
		{"shardproxy_server_ejected", map[string]string{"pool": "alpha", "server": "127.0.0.1:7101"}, 0},
	}
	for _, v := range values {
		m := metricWith(t, families, v.name, v.labels)
		var got float64
		switch {
		case m.Counter != nil:
			got = m.Counter.GetValue()
		case m.Gauge != nil:
			got = m.Gauge.GetValue()
		}
		if got != v.want {
			t.Errorf("%s%v = %v, want %v", v.name, v.labels, got, v.want)
		}
	}

	checkHistogram := func(name string, labels map[string]string, count uint64, sum float64, cumulative map[float64]uint64) {
		t.Helper()
		h := metricWith(t, families, name, labels).GetHistogram()
		if h.GetSampleCount() != count || math.Abs(h.GetSampleSum()-sum) > 1e-9 {
			t.Errorf("%s%v: count %d sum %v, want %d %v", name, labels, h.GetSampleCount(), h.GetSampleSum(), count, sum)
		}
		// The text format also lists le="+Inf".
		if len(h.Bucket) != len(latencyBounds)+1 {
			t.Errorf("%s%v: %d buckets, want %d", name, labels, len(h.Bucket), len(latencyBounds)+1)
		}
		for _, b := range h.Bucket {
			if want, ok := cumulative[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
				t.Errorf("%s%v le=%v: %d, want %d", name, labels, b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}
	checkHistogram("shardproxy_server_request_duration_seconds", server, 3, 20.00104,
		map[float64]uint64{5e-05: 1, 0.0001: 1, 0.001: 2, 0.005: 2, 10: 2})
	checkHistogram("shardproxy_pool_request_duration_seconds", map[string]string{"pool": "alpha"}, 4, 20.00404,
		map[float64]uint64{5e-05: 1, 0.001: 2, 0.0025: 2, 0.005: 3, 10: 3})
	checkHistogram("shardproxy_pool_request_duration_seconds", map[string]string{"pool": "beta"}, 0, 0,
		map[float64]uint64{5e-05: 0, 10: 0})
}

// httpOnly makes tests of the HTTP side independent of timing: a client
// slowed down (by -race, a busy machine) must not be taken for a plain one.
var httpOnly = StatsOptions{PlainWait: time.Minute}

// Describe and Collect must agree, and label sets must be unique.
func TestMetricsCollectorIsConsistent(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(srv))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Without discovery and a config hash: the three per-server address
	// families and config_reloads_total on top of the nutcracker ones.
	if want := 6 + len(poolMetrics) + len(serverMetrics) + 2 + 4; len(families) != want {
		t.Errorf("%d metric families, want %d", len(families), want)
	}
}

func TestMetricsLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{-time.Second, 0},
		{0, 0},
		{50 * time.Microsecond, 0}, // le is inclusive
		{50*time.Microsecond + 1, 1},
		{time.Millisecond, 4},
		{10 * time.Second, len(latencyBounds) - 1},
		{10*time.Second + 1, len(latencyBounds)},
		{time.Hour, len(latencyBounds)},
	} {
		var h latencyHistogram
		h.observe(tc.d)
		s := h.snapshot()
		if s.buckets[tc.bucket] != 1 || s.count() != 1 {
			t.Errorf("observe(%v): buckets %v, want 1 in bucket %d", tc.d, s.buckets, tc.bucket)
		}
		if want := uint64(max(tc.d, 0)); s.sum != want {
			t.Errorf("observe(%v): sum %d, want %d", tc.d, s.sum, want)
		}
	}
}

func TestMetricsLatencyObserveAllocs(t *testing.T) {
	var h latencyHistogram
	if n := testing.AllocsPerRun(1000, func() { h.observe(700 * time.Microsecond) }); n != 0 {
		t.Errorf("observe allocates %v times, want 0", n)
	}
}

// Close ends Serve, closes connections still being sniffed, and a closed
// StatsServer serves nothing.
func TestStatsServerClose(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss := NewStatsServer(srv, httpOnly)
	errc := make(chan error, 1)
	go func() { errc <- ss.Serve(ln) }()
	keepAlive, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer keepAlive.Close()
	io.WriteString(keepAlive, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	keepAlive.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := keepAlive.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK")) {
		t.Fatalf("GET /healthz: %q %v", buf[:n], err)
	}
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := ss.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want http.ErrServerClosed", err)
	}
	if _, err := keepAlive.Read(buf); err == nil {
		t.Errorf("keep-alive HTTP connection still open after Close")
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Serve(ln2); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want http.ErrServerClosed", err)
	}
	if _, err := net.DialTimeout("tcp", ln2.Addr().String(), time.Second); err == nil {
		t.Errorf("Serve after Close left its listener open")
	}
}

// ServeStats serves until its listener is closed.
func TestStatsServeStats(t *testing.T) {
	srv := newStatsTestServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeStats(ln) }()
	doc := readPlainStats(t, ln.Addr().String(), "", true)
	if !json.Valid(doc) {
		t.Errorf("ServeStats sent %q", doc)
	}
	ln.Close()
	if err := <-errc; err != nil {
		t.Errorf("ServeStats after its listener closed = %v, want nil", err)
	}
}

func BenchmarkLatencyObserve(b *testing.B) {
	var h latencyHistogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.observe(time.Duration(i&1023) * time.Microsecond)
	}
}

func BenchmarkLatencyObserveParallel(b *testing.B) {
	var h latencyHistogram
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			h.observe(time.Duration(i&1023) * time.Microsecond)
		}
	})
}

func BenchmarkStatsJSON(b *testing.B) {
	yaml := "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n"
	for i := range 100 {
		yaml += fmt.Sprintf("    - 10.0.%d.%d:6379:1\n", i/250, i%250+1)
	}
	cfg, err := ParseConfig([]byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	buf := srv.StatsJSON()
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = srv.appendStatsJSON(buf[:0], time.Now())
	}
}

// statsValue reads one number from the stats JSON served at addr.
func statsValue(t *testing.T, addr, path string) int64 {
	t.Helper()
	_, body := httpGet(t, "http://"+addr+"/")
	v, ok := flattenStats(t, body)[path].(float64)
	if !ok {
		t.Fatalf("no %s in the stats document:\n%s", path, body)
	}
	return int64(v)
}

// out_queue_bytes counts the bytes of requests written to a server and not yet answered.
func TestStatsOutQueueBytesThroughTraffic(t *testing.T) {
	tp := startProxy(t, 1, "")
	addr := startStatsServer(t, tp.srv, httpOnly)
	c := tp.client(t)
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" { // connects
		t.Fatalf("SET = %q", got)
	}
	r := tp.redises[0]
	r.Pause()
	t.Cleanup(r.Resume)
	c.Send("GET", "k")
	c.Send("SET", "k2", "a longer value")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := int64(len(proxytest.AppendCommand(nil, "GET", "k")) + len(proxytest.AppendCommand(nil, "SET", "k2", "a longer value")))
	prefix := "alpha/server0/"
	deadline := time.Now().Add(10 * time.Second)
	for statsValue(t, addr, prefix+"out_queue") != 2 || statsValue(t, addr, prefix+"in_queue") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("out_queue %d, in_queue %d: the two requests were never written to the paused server",
				statsValue(t, addr, prefix+"out_queue"), statsValue(t, addr, prefix+"in_queue"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := statsValue(t, addr, prefix+"out_queue_bytes"); got != want {
		t.Errorf("out_queue_bytes with two requests in flight = %d, want %d", got, want)
	}
	if got := statsValue(t, addr, prefix+"in_queue_bytes"); got != 0 {
		t.Errorf("in_queue_bytes with everything written = %d, want 0", got)
	}
	server := map[string]string{"pool": "alpha", "server": "server0"}
	if got := metricWith(t, scrapeMetrics(t, addr), "shardproxy_server_out_queue_bytes", server).GetGauge().GetValue(); got != float64(want) {
		t.Errorf("shardproxy_server_out_queue_bytes = %v, want %d", got, want)
	}
	r.Resume()
	for _, want := range []string{"$1\r\nv\r\n", "+OK\r\n"} {
		if rep, err := c.Read(); err != nil || string(rep.Raw()) != want {
			t.Fatalf("reply = %q, %v; want %q", rep.Raw(), err, want)
		}
	}
	for _, f := range []string{"out_queue", "out_queue_bytes", "in_queue", "in_queue_bytes"} {
		if got := statsValue(t, addr, prefix+f); got != 0 {
			t.Errorf("%s after the replies = %d, want 0", f, got)
		}
	}
	if got := metricWith(t, scrapeMetrics(t, addr), "shardproxy_server_out_queue_bytes", server).GetGauge().GetValue(); got != 0 {
		t.Errorf("shardproxy_server_out_queue_bytes after the replies = %v, want 0", got)
	}
}

// A request in flight on a transaction's connection counts in out_queue and out_queue_bytes too.
func TestStatsOutQueueBytesOnTransactionConnection(t *testing.T) {
	tp := startProxy(t, 1, "")
	addr := startStatsServer(t, tp.srv, httpOnly)
	c := tp.client(t)
	if got := do(t, c, "WATCH", "k"); got != "+OK\r\n" { // pins a connection
		t.Fatalf("WATCH = %q", got)
	}
	r := tp.redises[0]
	r.Pause()
	t.Cleanup(r.Resume)
	c.Send("MULTI") // on the connection WATCH pinned
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := int64(len(proxytest.AppendCommand(nil, "MULTI")))
	prefix := "alpha/server0/"
	deadline := time.Now().Add(10 * time.Second)
	for statsValue(t, addr, prefix+"out_queue") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("out_queue %d: MULTI never reached the paused server", statsValue(t, addr, prefix+"out_queue"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := statsValue(t, addr, prefix+"out_queue_bytes"); got != want {
		t.Errorf("out_queue_bytes with MULTI in flight on the pinned connection = %d, want %d", got, want)
	}
	r.Resume()
	if rep, err := c.Read(); err != nil || string(rep.Raw()) != "+OK\r\n" {
		t.Fatalf("MULTI = %q, %v", rep.Raw(), err)
	}
	for _, f := range []string{"out_queue", "out_queue_bytes"} {
		if got := statsValue(t, addr, prefix+f); got != 0 {
			t.Errorf("%s after the reply = %d, want 0", f, got)
		}
	}
}
