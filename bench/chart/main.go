// Command chart draws the tables the bench scripts write into
// BENCH_OUT_DIR as SVG bar charts, for bench/RESULTS.md:
//
//	go run ./bench/chart -in bench/out -out bench/charts
//
// It reads whichever of these exist in -in and writes one chart for each,
// named like the table: throughput.tsv and throughput-groups.tsv
// (compare.sh, without and with BENCH_GROUPS=1), cpu.tsv and
// cpu-groups.tsv (the same runs), latency.tsv (latency.sh) and memory.tsv
// (memory.sh). A table that is not there is skipped; a table that cannot
// be read is an error naming its file and line, and nothing is written
// over an older chart. Each table starts with the comment lines lib.sh's
// tsv_header writes (date, machine, commit, params), which become the
// chart's subtitle.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	in := flag.String("in", "bench/out", "the directory the bench scripts wrote their tables to (BENCH_OUT_DIR)")
	out := flag.String("out", "bench/charts", "the directory to write the charts to")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chart: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	written, err := drawAll(*in, *out)
	for _, f := range written {
		fmt.Println("wrote", f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

// A drawing is a chart and the file to write it to.
type drawing struct {
	svg   string
	chart Chart
}

// drawAll reads every table of the known kinds in dir in and writes its
// chart into dir out, returning the files written. It draws all charts
// before it writes any, so a bad table leaves the old charts as they were.
func drawAll(in, out string) ([]string, error) {
	var drawings []drawing
	for _, k := range kinds {
		paths, err := tablesOf(in, k.name)
		if err != nil {
			return nil, err
		}
		if len(paths) == 0 {
			fmt.Fprintf(os.Stderr, "chart: no %s.tsv in %s, no %s chart\n", k.name, in, k.name)
		}
		for _, path := range paths {
			t, err := readTable(path, k.columns)
			if err != nil {
				return nil, err
			}
			variant := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), k.name), ".tsv")
			c, err := k.draw(t, variant)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.file, err)
			}
			drawings = append(drawings, drawing{filepath.Join(out, k.name+variant+".svg"), c})
		}
	}
	if len(drawings) == 0 {
		return nil, fmt.Errorf("no tables in %s (the bench scripts write them there when BENCH_OUT_DIR is set)", in)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, d := range drawings {
		if err := os.WriteFile(d.svg, d.chart.SVG(), 0o644); err != nil {
			return written, err
		}
		written = append(written, d.svg)
	}
	return written, nil
}

// tablesOf lists the tables of kind name in dir: NAME.tsv and NAME-*.tsv.
func tablesOf(dir, name string) ([]string, error) {
	var paths []string
	if _, err := os.Stat(filepath.Join(dir, name+".tsv")); err == nil {
		paths = append(paths, filepath.Join(dir, name+".tsv"))
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	variants, err := filepath.Glob(filepath.Join(dir, name+"-*.tsv"))
	if err != nil {
		return nil, err
	}
	sort.Strings(variants)
	return append(paths, variants...), nil
}
