package stats

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each scope's fields are numbered in the table's order, so that the JSON
// document (which walks the table) has nutcracker's order, and every value
// has a field.
func TestFieldsIndexes(t *testing.T) {
	counts := map[Scope]int{PerProcess: numProcess, PerPool: numPool, PerServer: numServer}
	next := map[Scope]int{}
	metrics := map[string]bool{}
	for i := range Fields {
		f := &Fields[i]
		if f.Nutcracker == "" && f.Metric == "" {
			t.Errorf("Fields[%d] has neither a nutcracker name nor a metric", i)
		}
		if f.Help == "" {
			t.Errorf("%s%s has no help", f.Nutcracker, f.Metric)
		}
		if f.Metric != "" {
			if metrics[f.Metric] {
				t.Errorf("metric %s is in the table twice", f.Metric)
			}
			metrics[f.Metric] = true
			if f.Kind == Counter && !strings.HasSuffix(f.Metric, "_total") {
				t.Errorf("counter %s does not end in _total", f.Metric)
			}
		}
		if f.Kind == Histogram {
			if f.Nutcracker != "" || f.Metric == "" {
				t.Errorf("histogram %q/%q: nutcracker has no histograms; it needs a metric", f.Nutcracker, f.Metric)
			}
			continue
		}
		if f.Index != next[f.Scope] {
			t.Errorf("%s%s: Index %d, want %d (the table's order)", f.Nutcracker, f.Metric, f.Index, next[f.Scope])
		}
		next[f.Scope]++
	}
	for scope, n := range counts {
		if next[scope] != n {
			t.Errorf("scope %d: %d fields, want one for each of its %d values", scope, next[scope], n)
		}
	}
}

func TestMetricHelp(t *testing.T) {
	for _, tc := range []struct {
		f    Field
		want string
	}{
		{Field{Nutcracker: "client_eof", Help: "client connections closed by the client"},
			"Client connections closed by the client (nutcracker client_eof)."},
		{Field{Metric: "ready", Help: "1 while /readyz answers 200, else 0"}, "1 while /readyz answers 200, else 0."},
	} {
		if got := tc.f.MetricHelp(); got != tc.want {
			t.Errorf("MetricHelp() = %q, want %q", got, tc.want)
		}
	}
}

// The queue counters are read one after the other while requests move;
// nutcracker's out_queue never reads below 0.
func TestServerReadQueues(t *testing.T) {
	for _, tc := range []struct {
		in, inBytes, out, outBytes                 int64 // counters
		wantIn, wantInBytes, wantOut, wantOutBytes int64 // reported
	}{
		{0, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 7, 700, 0, 0, 7, 700},
		{2, 200, 7, 700, 2, 200, 5, 500},
		{3, 300, 2, 200, 3, 300, 0, 0}, // read while moving: never negative
	} {
		var s Server
		s.InQueue.Store(tc.in)
		s.InQueueBytes.Store(tc.inBytes)
		s.OutQueue.Store(tc.out)
		s.OutQueueBytes.Store(tc.outBytes)
		var v ServerValues
		s.Read(&v)
		if v[InQueue] != tc.wantIn || v[InQueueBytes] != tc.wantInBytes || v[OutQueue] != tc.wantOut || v[OutQueueBytes] != tc.wantOutBytes {
			t.Errorf("Read with in %d/%d out %d/%d = %d %d %d %d, want %d %d %d %d",
				tc.in, tc.inBytes, tc.out, tc.outBytes, v[InQueue], v[InQueueBytes], v[OutQueue], v[OutQueueBytes],
				tc.wantIn, tc.wantInBytes, tc.wantOut, tc.wantOutBytes)
		}
	}
}

func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{-time.Second, 0},
		{0, 0},
		{50 * time.Microsecond, 0}, // le is inclusive
		{50*time.Microsecond + 1, 1},
		{time.Millisecond, 4},
		{10 * time.Second, len(LatencyBounds) - 1},
		{10*time.Second + 1, len(LatencyBounds)},
		{time.Hour, len(LatencyBounds)},
	} {
		var h Latency
		h.Observe(tc.d)
		s := h.Snapshot()
		if s.Buckets[tc.bucket] != 1 || s.Count() != 1 {
			t.Errorf("Observe(%v): buckets %v, want 1 in bucket %d", tc.d, s.Buckets, tc.bucket)
		}
		if want := uint64(max(tc.d, 0)); s.Sum != want {
			t.Errorf("Observe(%v): sum %d, want %d", tc.d, s.Sum, want)
		}
	}
}

func TestLatencyObserveAllocs(t *testing.T) {
	var h Latency
	if n := testing.AllocsPerRun(1000, func() { h.Observe(700 * time.Microsecond) }); n != 0 {
		t.Errorf("Observe allocates %v times, want 0", n)
	}
}

// A snapshot taken into the storage of the previous one starts empty.
func TestSnapshotReuse(t *testing.T) {
	var s Snapshot
	p := s.AddPool("a")
	p.Values[ClientEOF] = 3
	p.AddServer("x").Values[Requests] = 5
	p.AddServer("y")
	s.NotReady = "not ready"
	s.Reset()
	if len(s.Pools) != 0 || s.NotReady != "" {
		t.Fatalf("after Reset: %+v", s)
	}
	p = s.AddPool("b")
	srv := p.AddServer("z")
	if p.Name != "b" || p.Values[ClientEOF] != 0 || len(p.Servers) != 1 || srv.Name != "z" || srv.Values[Requests] != 0 {
		t.Errorf("reused pool %+v, server %+v: want empty ones", p, srv)
	}
}

// Describe lists every field once, nutcracker's by their name and the rest
// by their metric.
func TestDescribe(t *testing.T) {
	d := Describe("1.2.3")
	if !strings.HasPrefix(d, "This is shardproxy-1.2.3\n\npool stats:\n  client_eof ") {
		t.Errorf("Describe starts %q", d[:min(len(d), 60)])
	}
	for i := range Fields {
		f := &Fields[i]
		name := f.Nutcracker
		if name == "" {
			name = "shardproxy_" + f.Metric
		}
		if n := strings.Count(d, "  "+name+" ") + strings.Count(d, "  "+name+"{"); n != 1 {
			t.Errorf("%s appears %d times in -D, want once:\n%s", name, n, d)
		}
	}
}

func BenchmarkLatencyObserve(b *testing.B) {
	var h Latency
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i&1023) * time.Microsecond)
	}
}

func BenchmarkLatencyObserveParallel(b *testing.B) {
	var h Latency
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			h.Observe(time.Duration(i&1023) * time.Microsecond)
		}
	})
}

// readmeRow is f's row in the README's table of stats.
func readmeRow(f *Field) string {
	name, metric := "", ""
	if f.Nutcracker != "" {
		name = "`" + f.Nutcracker + "`"
	}
	if f.Metric != "" {
		metric = "`shardproxy_" + f.Metric + f.Scope.labelSuffix() + "`"
	}
	kind := [...]string{Counter: "counter", Gauge: "gauge", Histogram: "histogram"}[f.Kind]
	return "| " + name + " | " + metric + " | " + kind + " | " + f.Help + " |"
}

// The README's table of stats is the table's, row for row.
func TestReadmeListsEveryField(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const header = "| nutcracker field | metric | kind | what it counts |\n|---|---|---|---|\n"
	var want strings.Builder
	want.WriteString(header)
	for i := range Fields {
		want.WriteString(readmeRow(&Fields[i]) + "\n")
	}
	_, rest, ok := strings.Cut(string(readme), header)
	got := header
	for ok && strings.HasPrefix(rest, "|") {
		line, after, _ := strings.Cut(rest, "\n")
		got += line + "\n"
		rest = after
	}
	if got != want.String() {
		t.Errorf("README's table of stats:\n%s\nwant:\n%s", got, want.String())
	}
}
