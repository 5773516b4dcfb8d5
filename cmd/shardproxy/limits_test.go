package main

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// keepOpenFiles puts the process's open file limit back when t ends.
func keepOpenFiles(t *testing.T) syscall.Rlimit {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("putting the open file limit back: %v", err)
		}
	})
	return orig
}

// The soft open file limit is raised to the hard one, and the hard one up
// to nr_open where the process may raise it.
func TestRaiseOpenFiles(t *testing.T) {
	orig := keepOpenFiles(t)
	nrOpen := filepath.Join(t.TempDir(), "nr_open")
	os.WriteFile(nrOpen, []byte(strconv.FormatUint(orig.Max+1000, 10)+"\n"), 0o644)
	for _, tc := range []struct {
		name      string
		nrOpen    string
		hardMayBe []uint64
	}{
		{"no nr_open", filepath.Join(t.TempDir(), "missing"), []uint64{orig.Max}},
		{"nr_open above the hard limit", nrOpen, []uint64{orig.Max, orig.Max + 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			low := syscall.Rlimit{Cur: min(orig.Max, 512), Max: orig.Max}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
				t.Fatal(err)
			}
			before, after, err := raiseOpenFiles(tc.nrOpen)
			if err != nil {
				t.Fatal(err)
			}
			if before != low {
				t.Errorf("before = %+v, want %+v", before, low)
			}
			var now syscall.Rlimit
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
			if now != after || now.Cur != now.Max {
				t.Errorf("limit %+v, reported %+v; want the soft limit at the hard one", now, after)
			}
			if !slices.Contains(tc.hardMayBe, now.Max) {
				t.Errorf("hard limit %d, want one of %v", now.Max, tc.hardMayBe)
			}
			t.Logf("open file limit %d (hard limit was %d)", now.Max, orig.Max)
			// Back to the original hard limit for the next case.
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
		})
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string // under the cgroup root; "self" is /proc/self/cgroup
		want   int64
		from   string
		errHas string
	}{
		{"v2 container", map[string]string{"cgroup.controllers": "memory", "memory.max": "268435456\n", "self": "0::/\n"}, 268435456, "memory.max", ""},
		{"v2 without a limit", map[string]string{"cgroup.controllers": "memory", "memory.max": "max\n", "self": "0::/\n"}, 0, "", ""},
		{"v2 host, the limit on a parent", map[string]string{"cgroup.controllers": "memory", "a/b/memory.max": "max\n", "a/memory.max": "1000000\n", "self": "0::/a/b\n"}, 1000000, "a/memory.max", ""},
		{"v2 host, the lowest of the path", map[string]string{"cgroup.controllers": "memory", "a/b/memory.max": "500000\n", "a/memory.max": "1000000\n", "self": "0::/a/b\n"}, 500000, "a/b/memory.max", ""},
		{"v2 container whose cgroup path is the host's", map[string]string{"cgroup.controllers": "memory", "memory.max": "268435456\n", "self": "0::/kubepods/pod1/c1\n"}, 268435456, "memory.max", ""},
		{"v1 container", map[string]string{"memory/memory.limit_in_bytes": "536870912\n", "self": "12:memory:/\n"}, 536870912, "memory/memory.limit_in_bytes", ""},
		{"v1 unlimited", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n", "self": "12:memory:/\n"}, 0, "memory/memory.limit_in_bytes", ""},
		{"v1 host", map[string]string{"memory/docker/c1/memory.limit_in_bytes": "1073741824\n", "memory/memory.limit_in_bytes": "9223372036854771712\n", "self": "12:cpu,memory:/docker/c1\n0::/\n"}, 1073741824, "memory/docker/c1/memory.limit_in_bytes", ""},
		{"no cgroup", map[string]string{}, 0, "", ""},
		{"garbage", map[string]string{"cgroup.controllers": "memory", "memory.max": "lots\n", "self": "0::/\n"}, 0, "memory.max", `"lots" is not a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			self := filepath.Join(t.TempDir(), "cgroup")
			for name, content := range tc.files {
				file := filepath.Join(root, name)
				if name == "self" {
					file = self
				}
				os.MkdirAll(filepath.Dir(file), 0o755)
				if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, from, err := cgroupMemoryLimit(root, self)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one saying %s", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantFrom := ""
			if tc.from != "" {
				wantFrom = filepath.Join(root, tc.from)
			}
			if got != tc.want || (tc.want != 0 && from != wantFrom) {
				t.Errorf("cgroupMemoryLimit = %d from %q, want %d from %q", got, from, tc.want, wantFrom)
			}
		})
	}
}

// Without GOMEMLIMIT, Go's memory limit is 90% of the cgroup's; with it,
// GOMEMLIMIT's stays.
func TestSetMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory\n"), 0o644)
	os.WriteFile(filepath.Join(root, "memory.max"), []byte("268435456\n"), 0o644)
	self := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(self, []byte("0::/\n"), 0o644)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	setMemoryLimit(defaultMemoryLimitRatio, root, self, logger)
	// 268435456 × 0.9, rounded down.
	if got, want := debug.SetMemoryLimit(-1), int64(241591910); got != want {
		t.Errorf("memory limit %d from a cgroup limit of 256 MiB, want %d", got, want)
	}
	if !strings.Contains(logs.String(), "msg=\"memory limit\" bytes=241591910 cgroup_limit=268435456 ratio=0.9") {
		t.Errorf("log: %s", logs.String())
	}

	debug.SetMemoryLimit(math.MaxInt64)
	setMemoryLimit(0, root, self, logger)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("memory limit %d with --memory-limit-ratio 0, want none", got)
	}

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30) // as the runtime read it at start
	logs.Reset()
	setMemoryLimit(defaultMemoryLimitRatio, root, self, logger)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit %d with GOMEMLIMIT=1GiB, want GOMEMLIMIT's", got)
	}
	if !strings.Contains(logs.String(), "memory limit set by GOMEMLIMIT") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-clients", "-1"}, "--max-clients must be 0 (computed) or a positive number"},
		{[]string{"--memory-limit-ratio", "1.5"}, "--memory-limit-ratio must be between 0 and 1"},
		{[]string{"--memory-limit-ratio", "-0.1"}, "--memory-limit-ratio must be between 0 and 1"},
	} {
		var out, errOut bytes.Buffer
		if code := run(append(tc.args, "-V"), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--max-clients", "100", "--memory-limit-ratio", "0.5", "-V"}, &out, &errOut); code != 0 {
		t.Errorf("--max-clients 100 --memory-limit-ratio 0.5: exit %d, %q", code, errOut.String())
	}
}
