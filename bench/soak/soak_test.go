package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A short soak against real redis-servers and a freshly built shardproxy
// passes, with its reports, reloads, restarts and final check.
func TestSoakShort(t *testing.T) {
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "shardproxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/shardproxy/shardproxy/cmd/shardproxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o, err := parseFlags([]string{
		"--shardproxy", bin, "--redis-server", redis,
		"--duration", "40s", "--connections", "500", "--churn", "50", "--rate", "500", "--workers", "10",
		"--reload-every", "10s", "--restart-every", "20s", "--report-every", "5s", "--warmup", "10s",
		"--idle-ping", "10s",
		// The proxy's heap is still growing toward its first GC goal in so
		// short a run; this test checks the run, not the drift.
		"--rss-floor", "64",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err = run(ctx, o, &out)
	text := out.String()
	if err != nil {
		t.Fatalf("soak failed: %v\n%s", err, text)
	}
	reports := regexp.MustCompile(`(?m)^ +[\dms]+ +\d+\.\d +\d+\.\d +\d+ +\d+ +\d+ +\d+ +\d+ +\d+ +0 +0 `).FindAllString(text, -1)
	if len(reports) != 8 {
		t.Errorf("%d report lines, want 8 (one every 5s for 40s):\n%s", len(reports), text)
	}
	for _, want := range []string{"restarted shard0", "restarted shard1", "final check: ", "| elapsed | RSS MiB |", "\nPASS\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if !regexp.MustCompile(`; [3-9] reloads, 2 restarts;`).MatchString(text) {
		t.Errorf("want at least 3 reloads and 2 restarts:\n%s", text)
	}
}
