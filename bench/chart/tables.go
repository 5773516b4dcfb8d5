package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A kind is a table the bench scripts write and how it is drawn. The file
// is NAME.tsv, or NAME-VARIANT.tsv for a run of another shape
// (throughput-groups.tsv from BENCH_GROUPS=1).
type kind struct {
	name    string
	columns []string // as the script's tsv_header line names them
	draw    func(t *table, variant string) (Chart, error)
}

var kinds = []kind{
	{"throughput", []string{"workload", "target", "req_s", "vs_nutcracker"}, throughputChart},
	{"cpu", []string{"target", "workload", "cpu_us", "vs_nutcracker"}, cpuChart},
	{"latency", []string{"target", "rate", "pct", "p50_us", "p99_us", "p99_9_us"}, latencyChart},
	{"memory", []string{"target", "phase", "rss_kb", "kb_per_conn"}, memoryChart},
}

// logSpread is the ratio of the largest value to the smallest above which
// a chart's axis is logarithmic: below it a linear axis shows every bar.
const logSpread = 30

// How each target the scripts know is named and coloured: the Okabe-Ito
// palette, which stays distinct for colour-blind readers and in print.
var targetStyles = map[string]Series{
	"shardproxy":          {"shardproxy", "#0072B2"},
	"baseline":            {"baseline shardproxy (SHARDPROXY_BASE_BIN)", "#56B4E9"},
	"nutcracker":          {"nutcracker", "#E69F00"},
	"direct":              {"direct redis-server", "#009E73"},
	"shardproxy-groups":   {"shardproxy over groups (Sentinel)", "#CC79A7"},
	"shardproxy-replicas": {"shardproxy over groups, prefer_replica", "#D55E00"},
	"nutcracker-groups":   {"nutcracker over the masters", "#8C6D1F"},
	"direct-groups":       {"direct to master 1", "#999999"},
	"nutcracker-again":    {"a second nutcracker (the noise floor)", "#F0E442"},
	"floor":               {"floorproxy (an epoll loop, no features)", "#000000"},
}

// otherColours are for targets not in targetStyles, in turn.
var otherColours = []string{"#882255", "#44AA99", "#332288", "#AA4499"}

// variantTitles say what a variant's run measured, after the title, and
// variantNotes how to read it, under the subtitle.
var (
	variantTitles = map[string]string{
		"-groups": " over single servers and Sentinel-watched groups",
		"-cost":   ", user and system, beside Redis directly and floorproxy",
	}
	variantNotes = map[string]string{
		"-groups": "The ratios of the targets over the groups are to nutcracker over the masters.",
		"-cost":   "bench/cost.sh: totals over all its rounds; direct Redis's one read and one write per request are the floor of a proxy's client side.",
	}
)

// A builder collects bars into a Chart, the groups and series in the
// order they first appear in the table.
type builder struct {
	chart  Chart
	group  map[string]int
	series map[string]int
}

func newBuilder(title, variant string, t *table, axisLabel string, notes ...string) *builder {
	if v, ok := variantTitles[variant]; ok {
		title += v
	} else if variant != "" {
		title += " (" + strings.TrimPrefix(variant, "-") + ")"
	}
	var run []string
	for _, key := range []string{"commit", "machine", "date"} {
		if v := t.meta[key]; v != "" {
			run = append(run, key+" "+v)
		}
	}
	var sub []string
	if len(run) > 0 {
		sub = append(sub, strings.Join(run, " · "))
	}
	if p := t.meta["params"]; p != "" {
		sub = append(sub, p)
	}
	sub = append(sub, notes...)
	if n, ok := variantNotes[variant]; ok {
		sub = append(sub, n)
	}
	return &builder{
		chart:  Chart{Title: title, Subtitle: sub, Axis: axisLabel},
		group:  map[string]int{},
		series: map[string]int{},
	}
}

// add puts a bar for target under heading; an absent measure adds nothing.
func (b *builder) add(heading, target string, m measure, label string) {
	if m.absent {
		return
	}
	gi, ok := b.group[heading]
	if !ok {
		gi = len(b.chart.Groups)
		b.group[heading] = gi
		b.chart.Groups = append(b.chart.Groups, Group{Heading: heading})
	}
	si, ok := b.series[target]
	if !ok {
		si = len(b.chart.Series)
		b.series[target] = si
		s, known := targetStyles[target]
		if !known {
			s = Series{target, otherColours[(len(b.series)-1)%len(otherColours)]}
		}
		b.chart.Series = append(b.chart.Series, s)
	}
	bar := Bar{Series: si, Value: m.value, Failed: m.failed, Label: label}
	if m.failed {
		bar.Label = "error"
	}
	g := &b.chart.Groups[gi]
	g.Bars = append(g.Bars, bar)
}

// done returns the chart, its bars in series order within each group and
// its axis logarithmic when the values spread too far for a linear one.
func (b *builder) done(allowLog bool) (Chart, error) {
	if len(b.chart.Groups) == 0 {
		return Chart{}, fmt.Errorf("nothing was measured")
	}
	lo, hi := math.Inf(1), 0.0
	for _, g := range b.chart.Groups {
		slices.SortStableFunc(g.Bars, func(x, y Bar) int { return x.Series - y.Series })
		for _, bar := range g.Bars {
			if !bar.Failed && bar.Value > 0 {
				lo, hi = math.Min(lo, bar.Value), math.Max(hi, bar.Value)
			}
		}
	}
	b.chart.Log = allowLog && hi > logSpread*lo
	if b.chart.Log {
		b.chart.Axis += " (log scale)"
	}
	return b.chart, nil
}

// withRatio appends " (1.67× nutcracker)" to label, unless the target is a
// nutcracker itself or the ratio was not measured.
func withRatio(label, target string, ratio measure) string {
	// The references' ratios are 1.00 by definition; a second nutcracker's
	// is the noise floor, and is shown.
	if target == "nutcracker" || target == "nutcracker-groups" || ratio.absent || ratio.failed {
		return label
	}
	return label + " (" + strconv.FormatFloat(ratio.value, 'f', 2, 64) + "× nutcracker)"
}

// thousands writes v rounded to a whole number with comma separators.
func thousands(v float64) string {
	s := strconv.FormatFloat(math.Abs(math.Round(v)), 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if v <= -0.5 {
		s = "-" + s
	}
	return s
}

func throughputChart(t *table, variant string) (Chart, error) {
	b := newBuilder("Throughput per workload", variant, t, "requests per second",
		"Median of the rounds; the ratio is the median of each round's ratio to nutcracker.")
	for _, r := range t.rows {
		rps, err := t.number(r, 2)
		if err != nil {
			return Chart{}, err
		}
		ratio, err := t.number(r, 3)
		if err != nil {
			return Chart{}, err
		}
		b.add(r.cells[0], r.cells[1], rps, withRatio(thousands(rps.value), r.cells[1], ratio))
	}
	return b.done(false)
}

func cpuChart(t *table, variant string) (Chart, error) {
	over := "Over each redis-benchmark run (SET and GET); median of the rounds."
	if variant == "-cost" {
		over = "Over each redis-benchmark run (SET and GET)."
	}
	b := newBuilder("Proxy CPU time per request", variant, t, "CPU µs per request (user+system of the proxy process)", over)
	for _, r := range t.rows {
		us, err := t.number(r, 2)
		if err != nil {
			return Chart{}, err
		}
		ratio, err := t.number(r, 3)
		if err != nil {
			return Chart{}, err
		}
		label := strconv.FormatFloat(us.value, 'f', 2, 64) + " µs"
		b.add(r.cells[1], r.cells[0], us, withRatio(label, r.cells[0], ratio))
	}
	return b.done(false)
}

// latencyPercentiles are latency.tsv's percentile columns and their names.
var latencyPercentiles = []struct {
	column int
	name   string
}{{3, "p50"}, {4, "p99"}, {5, "p99.9"}}

func latencyChart(t *table, variant string) (Chart, error) {
	b := newBuilder("Latency at fixed request rates", variant, t, "latency from each request's due time to its reply, µs",
		"Open loop, 80/20 GET/SET zipf, unpipelined; rates are shares of nutcracker's closed-loop maximum.")
	// Group by rate, then percentile, whatever the order of the rows.
	type groupKey struct {
		pct  float64
		pctl int
	}
	headings := map[groupKey]string{}
	var keys []groupKey
	type cell struct {
		key    groupKey
		target string
		m      measure
	}
	var cells []cell
	for _, r := range t.rows {
		rate, err := t.number(r, 1)
		if err != nil {
			return Chart{}, err
		}
		pct, err := t.number(r, 2)
		if err != nil {
			return Chart{}, err
		}
		for i, p := range latencyPercentiles {
			m, err := t.number(r, p.column)
			if err != nil {
				return Chart{}, err
			}
			k := groupKey{pct.value, i}
			if _, seen := headings[k]; !seen {
				headings[k] = fmt.Sprintf("%s at %s req/s (%s%% of nutcracker's maximum)", p.name, thousands(rate.value), r.cells[2])
				keys = append(keys, k)
			}
			cells = append(cells, cell{k, r.cells[0], m})
		}
	}
	slices.SortStableFunc(keys, func(a, b groupKey) int {
		if c := cmp.Compare(a.pct, b.pct); c != 0 {
			return c
		}
		return a.pctl - b.pctl
	})
	for _, k := range keys {
		for _, c := range cells {
			if c.key == k {
				b.add(headings[k], c.target, c.m, thousands(c.m.value)+" µs")
			}
		}
	}
	return b.done(true)
}

// memoryPhases name memory.sh's phases; closed+Ns (BENCH_SETTLE) is named
// by phaseHeading.
var memoryPhases = map[string]string{
	"connected":  "every connection open, idle",
	"pinged":     "right after one PING on each",
	"pinged+10s": "10 s after the PINGs, still connected",
	"closed":     "right after the clients closed",
	"closed+10s": "10 s after the clients closed",
	"peak":       "peak (VmHWM)",
}

func phaseHeading(phase string) string {
	if h, ok := memoryPhases[phase]; ok {
		return h
	}
	if s, ok := strings.CutPrefix(phase, "closed+"); ok {
		return strings.TrimSuffix(s, "s") + " s after the clients closed"
	}
	return phase
}

func memoryChart(t *table, variant string) (Chart, error) {
	b := newBuilder("Memory per client connection", variant, t, "KB per connection: (VmRSS − VmRSS at start) / connections",
		"Each proxy measured alone; the label gives the proxy's whole resident memory too.")
	for _, r := range t.rows {
		rss, err := t.number(r, 2)
		if err != nil {
			return Chart{}, err
		}
		per, err := t.number(r, 3)
		if err != nil {
			return Chart{}, err
		}
		label := strconv.FormatFloat(per.value, 'f', 2, 64) + " KB"
		if !rss.absent && !rss.failed {
			reading := "RSS"
			if r.cells[1] == "peak" {
				reading = "VmHWM"
			}
			label += " (" + reading + " " + thousands(rss.value) + " KB)"
		}
		b.add(phaseHeading(r.cells[1]), r.cells[0], per, label)
	}
	return b.done(false)
}
