package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A table is one TSV file the bench scripts write into BENCH_OUT_DIR: the
// "# KEY: VALUE" comment lines that name the run (lib.sh's tsv_header), a
// line of column names, then one row a line.
type table struct {
	file    string            // the file's base name, for errors
	meta    map[string]string // the comment lines: date, machine, commit, params
	columns []string
	rows    []row
}

// A row is one line of a table, its cells in the order of the columns.
type row struct {
	line  int // 1-based, for errors
	cells []string
}

// readTable reads the table at path, whose column names must be columns.
func readTable(path string, columns []string) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &table{file: filepath.Base(path), meta: map[string]string{}, columns: columns}
	sc := bufio.NewScanner(f)
	line := 0
	header := false
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(text, "#"):
			if key, value, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(text, "#")), ":"); ok {
				t.meta[strings.TrimSpace(key)] = strings.TrimSpace(value)
			}
		case text == "":
			continue
		case !header:
			if got, want := text, strings.Join(columns, "\t"); got != want {
				return nil, fmt.Errorf("%s:%d: the columns are %q, want %q", t.file, line, got, want)
			}
			header = true
		default:
			cells := strings.Split(text, "\t")
			if len(cells) != len(columns) {
				return nil, fmt.Errorf("%s:%d: %d fields, want %d (%s)", t.file, line, len(cells), len(columns), strings.Join(columns, ", "))
			}
			t.rows = append(t.rows, row{line: line, cells: cells})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", t.file, line, err)
	}
	if !header {
		return nil, fmt.Errorf("%s: no line of column names (want %q)", t.file, strings.Join(columns, "\t"))
	}
	return t, nil
}

// A measure is a number cell: the scripts write "-" where nothing was
// measured and "error" where the measurement failed.
type measure struct {
	value  float64
	failed bool // "error"
	absent bool // "-"
}

// number reads cell i of r as a measure.
func (t *table) number(r row, i int) (measure, error) {
	switch s := r.cells[i]; s {
	case "-", "":
		return measure{absent: true}, nil
	case "error":
		return measure{failed: true}, nil
	default:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return measure{}, fmt.Errorf("%s:%d: %s %q is not a number", t.file, r.line, t.columns[i], s)
		}
		return measure{value: v}, nil
	}
}
