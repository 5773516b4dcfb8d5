package statsport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
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

// statsTestPools is the pools and servers of startTwoPools in nutcracker's
// order: beta before alpha, the named server before the unnamed one.
func statsTestPools(tp *testProxy) []poolSpec {
	var pools []poolSpec
	for _, name := range []string{"beta", "alpha"} {
		servers := slices.Clone(tp.names[name])
		slices.Reverse(servers) // the file has the unnamed one first
		pools = append(pools, poolSpec{name: name, servers: servers})
	}
	return pools
}

// startTwoPools runs statsTestYAML's layout over real redis-servers.
func startTwoPools(t *testing.T) *testProxy {
	return startProxy(t,
		poolSpec{name: "alpha", servers: []string{"", "shard-b"}},
		poolSpec{name: "beta", servers: []string{"", "b"}},
	)
}

// wantStatsKeys is the key order nutcracker writes for pools.
func wantStatsKeys(pools []poolSpec) []string {
	keys := slices.Clone(nutcrackerTopFields)
	for _, p := range pools {
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

// sendTraffic sends a few requests to each pool of tp and returns the
// document's values it changed by path, counted from what the
// redis-servers hold.
func sendTraffic(t *testing.T, tp *testProxy, pools []poolSpec) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	for _, p := range pools {
		c := tp.client(t, p.name)
		for i := range 10 {
			if got, err := c.Do("SET", fmt.Sprintf("%s:%d", p.name, i), "v"); err != nil || string(got.Raw()) != "+OK\r\n" {
				t.Fatalf("SET = %q, %v", got.Raw(), err)
			}
		}
		want[p.name+"/client_connections"] = 1
		for _, s := range p.servers {
			var bytes int64
			keys := keysOn(t, tp.redis[p.name+"/"+s])
			for _, k := range keys {
				bytes += cmdLen("SET", k, "v")
			}
			prefix := p.name + "/" + s + "/"
			want[prefix+"requests"], want[prefix+"responses"] = int64(len(keys)), int64(len(keys))
			want[prefix+"request_bytes"], want[prefix+"response_bytes"] = bytes, int64(len(keys)*len("+OK\r\n"))
		}
	}
	want["curr_connections"] = int64(len(pools))
	return want
}

// checkStatsDocument checks a stats document of tp (pools in nutcracker's
// order) after sendTraffic returned want.
func checkStatsDocument(t *testing.T, doc []byte, pools []poolSpec, want map[string]int64, started, before, after time.Time) {
	t.Helper()
	if !bytes.HasSuffix(doc, []byte("}\n")) {
		t.Errorf("stats document ends in %q, want \"}\\n\"", doc[max(0, len(doc)-10):])
	}
	if keys, wantKeys := jsonKeys(t, doc), wantStatsKeys(pools); !slices.Equal(keys, wantKeys) {
		t.Errorf("stats keys:\n%q\nwant nutcracker's order:\n%q", keys, wantKeys)
	}
	got := flattenStats(t, doc)
	host, _ := os.Hostname()
	for k, v := range map[string]any{"service": "nutcracker", "source": host, "version": "0.5.0"} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	ts, _ := got["timestamp"].(float64)
	if ts < float64(before.Unix()) || ts > float64(after.Unix()) {
		t.Errorf("timestamp = %v, want between %d and %d", got["timestamp"], before.Unix(), after.Unix())
	}
	// Whole seconds of both clocks, as nutcracker subtracts two time(NULL).
	if up, _ := got["uptime"].(float64); up < 0 || up > ts-float64(started.Unix()) {
		t.Errorf("uptime = %v, want between 0 and timestamp %v - start %d", up, ts, started.Unix())
	}
	for path, v := range want {
		if got[path] != float64(v) {
			t.Errorf("%s = %v, want %d", path, got[path], v)
		}
	}
}

func TestStatsPlainTCP(t *testing.T) {
	started := time.Now()
	tp := startTwoPools(t)
	pools := statsTestPools(tp)
	want := sendTraffic(t, tp, pools)
	addr := startStatsPort(t, tp.srv, defaultPlainWait)
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
			checkStatsDocument(t, doc, pools, want, started, before, time.Now())
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
	srv := newServer(t, yaml)
	ours := readPlainStats(t, startStatsPort(t, srv, defaultPlainWait), "", false)
	if a, b := statsPlaceholders(ours), statsPlaceholders(theirs); !bytes.Equal(a, b) {
		t.Errorf("stats format differs from nutcracker's (values replaced)\nours:\n%s\nnutcracker:\n%s\nours raw:\n%s\nnutcracker raw:\n%s", a, b, ours, theirs)
	}
	// A counter beyond 32 bits and a negative gauge print as %PRId64 does.
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	snap.Pools[0].Servers[0].Values[stats.ResponseBytes] = 1 << 40
	snap.Pools[0].Values[stats.ClientConnections] = -1
	doc := appendJSON(nil, &snap)
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
	cfg := &config.Config{Pools: []config.Pool{{
		Name: weirdPool, Redis: true, Hash: "fnv1a_64", Distribution: "ketama", ServerConnections: 1,
		Servers: []config.Server{{Name: weirdServer, Addr: "127.0.0.1:7101", Network: "tcp",
			DialAddr: "127.0.0.1:7101", Weight: 1, ExplicitName: true}},
	}}}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	got := flattenStats(t, appendJSON(nil, &snap))
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
	srv, err := proxy.NewServer(&config.Config{}, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	doc := appendJSON(nil, &snap)
	if !json.Valid(doc) || !bytes.HasSuffix(doc, []byte(`"curr_connections":0}`+"\n")) {
		t.Errorf("appendJSON = %q", doc)
	}
}

// BenchmarkStatsJSON takes a snapshot of a pool of 100 servers and renders
// the document, as each request to the stats port does.
func BenchmarkStatsJSON(b *testing.B) {
	yaml := "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n"
	for i := range 100 {
		yaml += fmt.Sprintf("    - 10.0.%d.%d:6379:1\n", i/250, i%250+1)
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	buf := appendJSON(nil, &snap)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		srv.Snapshot(&snap)
		buf = appendJSON(buf[:0], &snap)
	}
}
