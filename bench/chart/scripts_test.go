package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tsvHeaderLine matches a bench script's call of lib.sh's tsv_header:
// the table's kind (the file name up to any suffix) and its columns.
var tsvHeaderLine = regexp.MustCompile(`(?m)^\s*tsv_header "\$OUT_DIR/([a-z]+)[^"]*\.tsv"((?: [a-z0-9_]+)+)\s*$`)

// scriptTables finds the tables the bench scripts write: kind → columns.
func scriptTables(t *testing.T) map[string][]string {
	t.Helper()
	scripts, err := filepath.Glob("../*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no bench scripts in ..: %v", err)
	}
	found := map[string][]string{}
	for _, script := range scripts {
		b, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tsvHeaderLine.FindAllStringSubmatch(string(b), -1) {
			if prev, ok := found[m[1]]; ok && strings.Join(prev, " ") != strings.TrimSpace(m[2]) {
				t.Errorf("%s writes %s with columns %q, elsewhere %q", script, m[1], m[2], prev)
			}
			found[m[1]] = strings.Fields(m[2])
		}
	}
	return found
}

// TestScriptsWriteWhatChartReads guards that the columns every bench
// script writes are the columns the chart program reads, so that changing
// one without the other fails here rather than at the end of `make bench`.
func TestScriptsWriteWhatChartReads(t *testing.T) {
	written := scriptTables(t)
	for _, k := range kinds {
		cols, ok := written[k.name]
		if !ok {
			t.Errorf("no bench script writes %s.tsv with tsv_header", k.name)
			continue
		}
		if got, want := strings.Join(cols, "\t"), strings.Join(k.columns, "\t"); got != want {
			t.Errorf("the scripts write %s.tsv with columns %q, the chart reads %q", k.name, got, want)
		}
		delete(written, k.name)
	}
	for name := range written {
		t.Errorf("the scripts write %s.tsv, which the chart program does not draw", name)
	}
}

// TestTSVHeaderIsRead runs lib.sh's tsv_header for each table the scripts
// write, adds a row, and draws it: the comment lines and the column line it
// writes are what the chart program parses.
func TestTSVHeaderIsRead(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is not installed: the bench scripts need it")
	}
	lib, err := filepath.Abs("../lib.sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, cols := range scriptTables(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name+".tsv")
			cmd := exec.Command("bash", "-c", `set -eu; source "$0"; tsv_params="BENCH_ROUNDS=1"; tsv_header "$@"`, lib, path)
			cmd.Args = append(cmd.Args, cols...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tsv_header: %v\n%s", err, out)
			}
			var cells []string
			for _, c := range cols {
				switch c {
				case "workload", "target", "phase":
					cells = append(cells, "a "+c)
				default:
					cells = append(cells, "12")
				}
			}
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(strings.Join(cells, "\t") + "\n"); err != nil {
				t.Fatal(err)
			}
			f.Close()
			k := kindNamed(t, name)
			tb, err := readTable(path, k.columns)
			if err != nil {
				t.Fatalf("readTable: %v", err)
			}
			for _, key := range []string{"date", "machine", "commit", "params"} {
				if tb.meta[key] == "" {
					t.Errorf("tsv_header wrote no %q comment line", key)
				}
			}
			if _, err := k.draw(tb, ""); err != nil {
				t.Errorf("draw: %v", err)
			}
		})
	}
}
