package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The SVG as the tests read it back, with encoding/xml.
type svgDoc struct {
	XMLName xml.Name  `xml:"svg"`
	Width   string    `xml:"width,attr"`
	Rects   []svgRect `xml:"rect"`
	Texts   []string  `xml:"text"`
}

type svgRect struct {
	Class string  `xml:"class,attr"`
	Width float64 `xml:"width,attr"`
	Fill  string  `xml:"fill,attr"`
	Title string  `xml:"title"`
}

// decodeSVG checks that b is well-formed XML, token by token, and returns
// it decoded.
func decodeSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, b)
		}
	}
	var doc svgDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("xml.Unmarshal: %v", err)
	}
	return doc
}

func (d svgDoc) bars() []svgRect {
	var bars []svgRect
	for _, r := range d.Rects {
		if r.Class == "bar" {
			bars = append(bars, r)
		}
	}
	return bars
}

// writeFile writes a table into dir.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const runMeta = "# date: 2026-12-01 23:18 UTC\n# machine: 2 x AMD EPYC, 23Gi memory\n# commit: cc4d238\n# params: BENCH_ROUNDS=1\n"

// Tables of every kind, as the scripts write them.
var sampleTables = map[string]string{
	"throughput.tsv": runMeta + "workload\ttarget\treq_s\tvs_nutcracker\n" +
		"redis-benchmark SET, 50 clients, pipeline 1\tshardproxy\t58651\t1.18\n" +
		"redis-benchmark SET, 50 clients, pipeline 1\tnutcracker\t49505\t1.00\n" +
		"redis-benchmark SET, 50 clients, pipeline 1\tdirect\t78431\t1.58\n" +
		"redis-benchmark GET, 50 clients, pipeline 1\tshardproxy\terror\terror\n" +
		"redis-benchmark GET, 50 clients, pipeline 1\tnutcracker\t49628\t1.00\n" +
		"redis-benchmark GET, 50 clients, pipeline 1\tdirect\t-\t-\n",
	"cpu-groups.tsv": runMeta + "target\tworkload\tcpu_us\tvs_nutcracker\n" +
		"shardproxy-groups\tredis-benchmark SET+GET, 50 clients, pipeline 1\t13.50\t0.84\n" +
		"nutcracker-groups\tredis-benchmark SET+GET, 50 clients, pipeline 1\t16.00\t1.00\n",
	"latency.tsv": runMeta + "target\trate\tpct\tp50_us\tp99_us\tp99_9_us\n" +
		"shardproxy\t13803\t25\t187\t2130\t5308\n" +
		"shardproxy\t27607\t50\t238\t2703\t5439\n" +
		"nutcracker\t13803\t25\t194\t852\t4080\n" +
		"nutcracker\t27607\t50\t795\t6750\t110760\n",
	"memory.tsv": runMeta + "target\tphase\trss_kb\tkb_per_conn\n" +
		"shardproxy\tstart\t27352\t-\n" +
		"shardproxy\tconnected\t30616\t1.63\n" +
		"shardproxy\tclosed+130s\t28000\t0.32\n" +
		"nutcracker\tstart\t2548\t-\n" +
		"nutcracker\tconnected\t3076\t0.26\n" +
		"nutcracker\tclosed+130s\t2500\t-0.02\n",
}

func TestReadTable(t *testing.T) {
	columns := []string{"workload", "target", "req_s", "vs_nutcracker"}
	header := "workload\ttarget\treq_s\tvs_nutcracker\n"
	tests := []struct {
		name, text string
		wantErr    string // "" for none
	}{
		{"good", runMeta + header + "w\tshardproxy\t1\t1.00\n\nw\tnutcracker\t-\terror\n", ""},
		{"no meta", header + "w\tshardproxy\t1\t1.00\n", ""},
		{"CRLF", strings.ReplaceAll(header+"w\tshardproxy\t1\t1.00\n", "\n", "\r\n"), ""},
		{"empty", "", `t.tsv: no line of column names (want "workload\ttarget\treq_s\tvs_nutcracker")`},
		{"meta only", runMeta, "t.tsv: no line of column names"},
		{"other columns", runMeta + "workload\ttarget\treq_s\n", `t.tsv:5: the columns are "workload\ttarget\treq_s", want "workload\ttarget\treq_s\tvs_nutcracker"`},
		{"short row", header + "w\tshardproxy\t1\t1.00\nw\tnutcracker\t1\n", "t.tsv:3: 3 fields, want 4 (workload, target, req_s, vs_nutcracker)"},
		{"long row", header + "w\tshardproxy\t1\t1.00\t9\n", "t.tsv:2: 5 fields, want 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "t.tsv", tc.text)
			tb, err := readTable(path, columns)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("readTable: %v", err)
				}
				if len(tb.rows) == 0 {
					t.Fatalf("readTable read no rows")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("readTable error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestReadTableMeta(t *testing.T) {
	path := writeFile(t, t.TempDir(), "latency.tsv", sampleTables["latency.tsv"])
	tb, err := readTable(path, kindNamed(t, "latency").columns)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"date": "2026-12-01 23:18 UTC", "machine": "2 x AMD EPYC, 23Gi memory", "commit": "cc4d238", "params": "BENCH_ROUNDS=1"} {
		if got := tb.meta[key]; got != want {
			t.Errorf("meta[%q] = %q, want %q", key, got, want)
		}
	}
}

func TestBadNumberNamesFileLineAndColumn(t *testing.T) {
	tests := []struct{ cell, want string }{
		{"fast", `t.tsv:6: req_s "fast" is not a number`},
		{"NaN", `t.tsv:6: req_s "NaN" is not a number`},
		{"+Inf", `t.tsv:6: req_s "+Inf" is not a number`},
	}
	for _, tc := range tests {
		t.Run(tc.cell, func(t *testing.T) {
			text := runMeta + "workload\ttarget\treq_s\tvs_nutcracker\nw\tshardproxy\t" + tc.cell + "\t1.00\n"
			k := kindNamed(t, "throughput")
			tb, err := readTable(writeFile(t, t.TempDir(), "t.tsv", text), k.columns)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.draw(tb, ""); err == nil || err.Error() != tc.want {
				t.Fatalf("draw error = %v, want %q", err, tc.want)
			}
		})
	}
}

func kindNamed(t *testing.T, name string) kind {
	t.Helper()
	for _, k := range kinds {
		if k.name == name {
			return k
		}
	}
	t.Fatalf("no kind %q", name)
	return kind{}
}

// TestDrawAllWritesWellFormedSVG draws a table of every kind and reads
// each chart back.
func TestDrawAllWritesWellFormedSVG(t *testing.T) {
	in, out := t.TempDir(), filepath.Join(t.TempDir(), "charts")
	for name, text := range sampleTables {
		writeFile(t, in, name, text)
	}
	written, err := drawAll(in, out)
	if err != nil {
		t.Fatalf("drawAll: %v", err)
	}
	if len(written) != len(sampleTables) {
		t.Fatalf("drawAll wrote %q, want a chart for each of %d tables", written, len(sampleTables))
	}
	for name := range sampleTables {
		svg := filepath.Join(out, strings.TrimSuffix(name, ".tsv")+".svg")
		b, err := os.ReadFile(svg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		doc := decodeSVG(t, b)
		if doc.Width != "900" {
			t.Errorf("%s: width %q, want the fixed 900", svg, doc.Width)
		}
		if len(doc.bars()) == 0 {
			t.Errorf("%s: no bars", svg)
		}
		all := strings.Join(doc.Texts, "\n")
		for _, want := range []string{"commit cc4d238", "2 x AMD EPYC", "BENCH_ROUNDS=1"} {
			if !strings.Contains(all, want) {
				t.Errorf("%s: no text says %q:\n%s", svg, want, all)
			}
		}
	}
}

func TestThroughputChart(t *testing.T) {
	c := drawSample(t, "throughput", "throughput.tsv")
	if len(c.Series) != 3 || c.Series[0].Name != "shardproxy" || c.Series[1].Name != "nutcracker" {
		t.Fatalf("series = %+v, want shardproxy, nutcracker, direct", c.Series)
	}
	if len(c.Groups) != 2 {
		t.Fatalf("groups = %+v, want the two workloads", c.Groups)
	}
	if got, want := c.Groups[0].Bars[0].Label, "58,651 (1.18× nutcracker)"; got != want {
		t.Errorf("shardproxy's label = %q, want %q", got, want)
	}
	if got, want := c.Groups[0].Bars[1].Label, "49,505"; got != want {
		t.Errorf("nutcracker's label = %q, want %q", got, want)
	}
	// A failed measurement is a labelled gap; one not measured ("-") is not drawn.
	get := c.Groups[1].Bars
	if len(get) != 2 || !get[0].Failed || get[0].Label != "error" {
		t.Errorf("GET bars = %+v, want shardproxy's failed and nutcracker's, and no direct", get)
	}
	if c.Log {
		t.Errorf("the throughput axis is logarithmic")
	}
}

func TestGroupsVariantSaysWhatItsRatiosAre(t *testing.T) {
	c := drawSample(t, "cpu", "cpu-groups.tsv")
	if !strings.HasSuffix(c.Title, " over single servers and Sentinel-watched groups") {
		t.Errorf("title = %q, want it to say the run was over groups", c.Title)
	}
	if got := strings.Join(c.Subtitle, "\n"); !strings.Contains(got, "to nutcracker over the masters") {
		t.Errorf("subtitle = %q, want it to say what the ratios are to", got)
	}
}

func TestLatencyChartGroupsByRateThenPercentile(t *testing.T) {
	c := drawSample(t, "latency", "latency.tsv")
	var headings []string
	for _, g := range c.Groups {
		headings = append(headings, strings.Fields(g.Heading)[0]+" "+strings.Fields(g.Heading)[2])
	}
	want := "p50 13,803|p99 13,803|p99.9 13,803|p50 27,607|p99 27,607|p99.9 27,607"
	if got := strings.Join(headings, "|"); got != want {
		t.Errorf("headings = %q, want %q", got, want)
	}
	if !c.Log || !strings.HasSuffix(c.Axis, "(log scale)") {
		t.Errorf("Log = %v, axis %q: latencies from 187 to 110760 µs want a log axis", c.Log, c.Axis)
	}
}

func TestMemoryChartSkipsStart(t *testing.T) {
	c := drawSample(t, "memory", "memory.tsv")
	var headings []string
	for _, g := range c.Groups {
		headings = append(headings, g.Heading)
	}
	want := "every connection open, idle|130 s after the clients closed"
	if got := strings.Join(headings, "|"); got != want {
		t.Errorf("headings = %q, want %q", got, want)
	}
	// nutcracker's -0.02 KB draws an empty bar, not one of negative width.
	for _, r := range decodeSVG(t, c.SVG()).bars() {
		if r.Width < 0 {
			t.Errorf("bar %q has width %v", r.Title, r.Width)
		}
	}
}

func drawSample(t *testing.T, kindName, file string) Chart {
	t.Helper()
	k := kindNamed(t, kindName)
	tb, err := readTable(writeFile(t, t.TempDir(), file, sampleTables[file]), k.columns)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.draw(tb, strings.TrimSuffix(strings.TrimPrefix(file, kindName), ".tsv"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testChart is a linear chart of one group with a bar per value.
func testChart(values ...float64) Chart {
	c := Chart{Title: "t", Axis: "requests per second", Series: []Series{{"a", "#0072B2"}, {"b", "#E69F00"}, {"c", "#009E73"}}}
	g := Group{Heading: "g"}
	for i, v := range values {
		g.Bars = append(g.Bars, Bar{Series: i % len(c.Series), Value: v, Label: "v"})
	}
	c.Groups = []Group{g}
	return c
}

func TestBarLengthProportionalToValue(t *testing.T) {
	values := []float64{100, 250, 400, 37}
	bars := decodeSVG(t, testChart(values...).SVG()).bars()
	if len(bars) != len(values) {
		t.Fatalf("%d bars, want %d", len(bars), len(values))
	}
	perUnit := bars[0].Width / values[0]
	for i, b := range bars {
		if want := values[i] * perUnit; math.Abs(b.Width-want) > 0.05 {
			t.Errorf("bar %d: width %.2f for %v, want %.2f (bar 0: %.2f for %v)", i, b.Width, values[i], want, bars[0].Width, values[0])
		}
	}
	if longest := bars[2].Width; longest > plotRight-plotLeft || longest < (plotRight-plotLeft)/2 {
		t.Errorf("the longest bar is %.1f wide, want it to fill most of the plot (%d)", longest, plotRight-plotLeft)
	}
}

func TestLogAxisEqualStepsPerDecade(t *testing.T) {
	c := testChart(10, 100, 1000)
	c.Log = true
	bars := decodeSVG(t, c.SVG()).bars()
	if len(bars) != 3 {
		t.Fatalf("%d bars, want 3", len(bars))
	}
	if d1, d2 := bars[1].Width-bars[0].Width, bars[2].Width-bars[1].Width; math.Abs(d1-d2) > 0.05 || d1 <= 0 {
		t.Errorf("a decade is %.2f then %.2f wide, want equal and positive", d1, d2)
	}
}

func TestTextIsEscaped(t *testing.T) {
	c := testChart(1, 2)
	c.Title = `R&D "quick" <run>`
	c.Series[0].Name = "a&b<c>"
	c.Groups[0].Heading = "GET & SET <pipeline 16>"
	doc := decodeSVG(t, c.SVG())
	all := strings.Join(doc.Texts, "\n")
	for _, want := range []string{`R&D "quick" <run>`, "a&b<c>", "GET & SET <pipeline 16>"} {
		if !strings.Contains(all, want) {
			t.Errorf("no text reads %q:\n%s", want, all)
		}
	}
	if got := doc.bars()[0].Title; got != "a&b<c>: v" {
		t.Errorf("bar title = %q, want %q", got, "a&b<c>: v")
	}
}

// TestDrawsARealRun draws the tables of a short real run of compare.sh,
// latency.sh and memory.sh (testdata/run, copied from their BENCH_OUT_DIR).
func TestDrawsARealRun(t *testing.T) {
	out := t.TempDir()
	written, err := drawAll(filepath.Join("testdata", "run"), out)
	if err != nil {
		t.Fatalf("drawAll: %v", err)
	}
	want := map[string]int{ // the bars each chart has
		"throughput.svg": 6 * 3, // six workloads, three targets
		"cpu.svg":        2 * 2, // two workloads, two proxies
		"latency.svg":    3 * 3 * 3,
		"memory.svg":     6 * 2, // the phases after start, two proxies
	}
	if len(written) != len(want) {
		t.Fatalf("drawAll wrote %q, want %d charts", written, len(want))
	}
	for _, path := range written {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(decodeSVG(t, b).bars()); got != want[filepath.Base(path)] {
			t.Errorf("%s: %d bars, want %d", path, got, want[filepath.Base(path)])
		}
	}
}

func TestMissingTablesAreSkipped(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writeFile(t, in, "latency.tsv", sampleTables["latency.tsv"])
	written, err := drawAll(in, out)
	if err != nil {
		t.Fatalf("drawAll: %v", err)
	}
	if want := filepath.Join(out, "latency.svg"); len(written) != 1 || written[0] != want {
		t.Fatalf("drawAll wrote %q, want only %s", written, want)
	}
}

func TestNoTablesIsAnError(t *testing.T) {
	in := t.TempDir()
	if _, err := drawAll(in, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no tables in "+in) {
		t.Fatalf("drawAll error = %v, want one saying there are no tables in %s", err, in)
	}
}

// A bad table must not leave some charts new and some old.
func TestBadTableWritesNoChart(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writeFile(t, in, "throughput.tsv", sampleTables["throughput.tsv"])
	writeFile(t, in, "latency.tsv", "target\trate\n")
	if _, err := drawAll(in, out); err == nil || !strings.Contains(err.Error(), "latency.tsv:1:") {
		t.Fatalf("drawAll error = %v, want one naming latency.tsv:1", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("drawAll wrote %v after a bad table", entries)
	}
}

func TestTickLabels(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.5: "0.5", 200: "200", 1000: "1k", 250000: "250k", 1.5e6: "1.5M"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 689655.4: "689,655", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

// The references' bars carry no ratio; a second nutcracker's does, since
// it is the run's noise floor.
func TestRatioLabels(t *testing.T) {
	r := measure{value: 0.94}
	for target, want := range map[string]string{
		"nutcracker":        "x",
		"nutcracker-groups": "x",
		"nutcracker-again":  "x (0.94× nutcracker)",
		"shardproxy":        "x (0.94× nutcracker)",
	} {
		if got := withRatio("x", target, r); got != want {
			t.Errorf("withRatio for %s = %q, want %q", target, got, want)
		}
	}
}
