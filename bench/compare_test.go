package bench_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCompareRejectsBadSettings guards that compare.sh refuses settings it
// cannot honour before it builds or starts anything.
func TestCompareRejectsBadSettings(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is not installed: compare.sh needs it")
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"BENCH_GROUPS=2"}, `BENCH_GROUPS must be 0 or 1, got "2"`},
		{[]string{"BENCH_GROUPS=yes"}, `BENCH_GROUPS must be 0 or 1, got "yes"`},
		{[]string{"BENCH_GROUPS=1", "BENCH_SKIP_SHARDPROXY=1"}, "cannot be combined with BENCH_SKIP_SHARDPROXY=1"},
		{[]string{"BENCH_GROUPS=1", "SHARDPROXY_BASE_BIN=/bin/true"}, "cannot be combined with SHARDPROXY_BASE_BIN"},
		{[]string{"BENCH_ROUNDS=0"}, `BENCH_* counts must be positive integers, got "0"`},
	} {
		cmd := exec.Command("bash", "compare.sh")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v: compare.sh exited 0, want an error\n%s", tc.env, out)
			continue
		}
		if !strings.HasPrefix(string(out), "compare.sh: ") || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q does not say %q", tc.env, out, tc.want)
		}
		if strings.Contains(string(out), "== build") {
			t.Errorf("%v: compare.sh got as far as building:\n%s", tc.env, out)
		}
	}
}

// TestLatencyRejectsBadSettings guards that latency.sh refuses settings it
// cannot honour before it builds or starts anything.
func TestLatencyRejectsBadSettings(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is not installed: latency.sh needs it")
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"BENCH_ROUNDS=0"}, `BENCH_* counts must be positive integers, got "0"`},
		{[]string{"BENCH_CLIENTS=many"}, `BENCH_* counts must be positive integers, got "many"`},
		{[]string{"BENCH_DURATION=5"}, `BENCH_DURATION must be a duration such as 5s or 500ms, got "5"`},
	} {
		cmd := exec.Command("bash", "latency.sh")
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v: latency.sh exited 0, want an error\n%s", tc.env, out)
			continue
		}
		if !strings.HasPrefix(string(out), "latency.sh: ") || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q does not say %q", tc.env, out, tc.want)
		}
		if strings.Contains(string(out), "== build") {
			t.Errorf("%v: latency.sh got as far as building:\n%s", tc.env, out)
		}
	}
}
