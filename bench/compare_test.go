package bench_test

import (
	"os/exec"
	"strings"
	"testing"
)

// badSetting is an environment a bench script must refuse, and what its
// error must say.
type badSetting struct {
	env  []string
	want string
}

// checkRejects runs script with each bad setting and checks that it exits
// with an error naming itself and saying want, before it builds or starts
// anything.
func checkRejects(t *testing.T, script string, cases []badSetting) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash is not installed: %s needs it", script)
	}
	for _, tc := range cases {
		cmd := exec.Command("bash", script)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v: %s exited 0, want an error\n%s", tc.env, script, out)
			continue
		}
		if !strings.HasPrefix(string(out), script+": ") || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q does not say %q", tc.env, out, tc.want)
		}
		if strings.Contains(string(out), "== build") {
			t.Errorf("%v: %s got as far as building:\n%s", tc.env, script, out)
		}
	}
}

// TestCompareRejectsBadSettings guards that compare.sh refuses settings it
// cannot honour before it builds or starts anything.
func TestCompareRejectsBadSettings(t *testing.T) {
	checkRejects(t, "compare.sh", []badSetting{
		{[]string{"BENCH_GROUPS=2"}, `BENCH_GROUPS must be 0 or 1, got "2"`},
		{[]string{"BENCH_GROUPS=yes"}, `BENCH_GROUPS must be 0 or 1, got "yes"`},
		{[]string{"BENCH_GROUPS=1", "BENCH_SKIP_SHARDPROXY=1"}, "cannot be combined with BENCH_SKIP_SHARDPROXY=1"},
		{[]string{"BENCH_GROUPS=1", "SHARDPROXY_BASE_BIN=/bin/true"}, "cannot be combined with SHARDPROXY_BASE_BIN"},
		{[]string{"BENCH_ROUNDS=0"}, `BENCH_* counts must be positive integers, got "0"`},
		{[]string{"BENCH_OUT_DIR=/dev/null"}, "BENCH_OUT_DIR=/dev/null is not a directory"},
		{[]string{"BENCH_OUT_DIR=/dev/null/out"}, "BENCH_OUT_DIR=/dev/null/out cannot be made"},
	})
}

// TestMemoryRejectsBadSettings guards the same for memory.sh.
func TestMemoryRejectsBadSettings(t *testing.T) {
	checkRejects(t, "memory.sh", []badSetting{
		{[]string{"BENCH_CONNECTIONS=0"}, `BENCH_* counts must be positive integers, got "0"`},
		{[]string{"BENCH_DIALERS=many"}, `BENCH_* counts must be positive integers, got "many"`},
		{[]string{"BENCH_SETTLE=10"}, `BENCH_SETTLE must be 0 or a number of seconds above 10, got "10"`},
		{[]string{"BENCH_SETTLE=2m"}, `BENCH_SETTLE must be 0 or a number of seconds above 10, got "2m"`},
		{[]string{"SHARDPROXY_BIN=/nonexistent/shardproxy"}, "SHARDPROXY_BIN=/nonexistent/shardproxy is not an executable"},
		{[]string{"SHARDPROXY_BASE_BIN=/nonexistent/shardproxy"}, "SHARDPROXY_BASE_BIN=/nonexistent/shardproxy is not an executable"},
		{[]string{"BENCH_OUT_DIR=/dev/null"}, "BENCH_OUT_DIR=/dev/null is not a directory"},
	})
}

// TestLatencyRejectsBadSettings guards the same for latency.sh.
func TestLatencyRejectsBadSettings(t *testing.T) {
	checkRejects(t, "latency.sh", []badSetting{
		{[]string{"BENCH_ROUNDS=0"}, `BENCH_* counts must be positive integers, got "0"`},
		{[]string{"BENCH_CLIENTS=many"}, `BENCH_* counts must be positive integers, got "many"`},
		{[]string{"BENCH_DURATION=5"}, `BENCH_DURATION must be a duration such as 5s or 500ms, got "5"`},
		{[]string{"BENCH_OUT_DIR=/dev/null"}, "BENCH_OUT_DIR=/dev/null is not a directory"},
	})
}

// TestCostRejectsBadSettings guards the same for cost.sh.
func TestCostRejectsBadSettings(t *testing.T) {
	checkRejects(t, "cost.sh", []badSetting{
		{[]string{"BENCH_REQUESTS=0"}, `BENCH_* counts must be positive integers, got "0"`},
		{[]string{"BENCH_PIPELINE=deep"}, `BENCH_* counts must be positive integers, got "deep"`},
		{[]string{"BENCH_PROFILE=yes"}, `BENCH_PROFILE must be 0 or 1, got "yes"`},
		{[]string{"BENCH_OUT_DIR=/dev/null"}, "BENCH_OUT_DIR=/dev/null is not a directory"},
		{[]string{"SHARDPROXY_BIN=/nonexistent/shardproxy"}, "SHARDPROXY_BIN=/nonexistent/shardproxy is not an executable"},
		{[]string{"SHARDPROXY_BASE_BIN=/nonexistent/shardproxy"}, "SHARDPROXY_BASE_BIN=/nonexistent/shardproxy is not an executable"},
	})
}
