package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// testConfig is a short, small run against addr.
func testConfig(addr string) config {
	c, err := parseFlags([]string{"--addr", addr, "--connections", "4", "--keys", "1000",
		"--duration", "500ms", "--timeout", "5s"}, io.Discard)
	if err != nil {
		panic(err)
	}
	return c
}

func TestRunAgainstRedis(t *testing.T) {
	addr := startRedis(t)
	authAddr := startRedis(t, "--requirepass", "s3cret")
	tests := []struct {
		name string
		edit func(*config)
	}{
		{"single requests", func(c *config) {}},
		{"pipeline zipf warmup", func(c *config) { c.Pipeline, c.Dist, c.Warmup = 8, "zipf", true }},
		{"request budget", func(c *config) { c.Pipeline, c.Requests = 8, 1001 }},
		{"all writes", func(c *config) { c.ReadRatio = 0 }},
		{"password", func(c *config) { c.Addr, c.Password = authAddr, "s3cret" }},
		{"blocked connections", func(c *config) { c.Blocked = 20 }},
		{"blocked connections with password", func(c *config) { c.Addr, c.Password, c.Blocked = authAddr, "s3cret", 3 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(addr)
			tc.edit(&cfg)
			res := run(context.Background(), cfg, testWriter{t})
			checkClean(t, res)
			if cfg.Requests > 0 && res.Requests != cfg.Requests {
				t.Errorf("requests = %d, want exactly --requests %d", res.Requests, cfg.Requests)
			}
			if cfg.Warmup && res.Misses != 0 {
				t.Errorf("misses = %d after warmup, want 0", res.Misses)
			}
		})
	}
	// Warmup wrote every key of the key space.
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer c.Close()
	n, err := c.Exists(context.Background(), "loadgen:0", "loadgen:500", "loadgen:999").Result()
	if err != nil || n != 3 {
		t.Errorf("EXISTS loadgen:0 loadgen:500 loadgen:999 = %d, %v, want 3", n, err)
	}
}

// --blocked connections sit in BLPOP on the server for the whole run, and
// one that is answered fails it.
func TestRunBlockedConnections(t *testing.T) {
	addr := startRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer admin.Close()
	cfg := testConfig(addr)
	cfg.Blocked, cfg.Duration = 5, 3*time.Second
	pushed := make(chan error, 1)
	go pushWhenBlocked(admin, 5, "loadgen:blocked:3", pushed)
	res := run(context.Background(), cfg, testWriter{t})
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	if res.Passed || res.BlockedAnswered != 1 || !strings.Contains(res.Failure, "1 of 5 blocked connections were answered") || res.Requests == 0 {
		t.Errorf("result = %+v, want a failure for the one answered blocked connection", res)
	}
}

// pushWhenBlocked waits until n clients are blocked on the server of
// admin, then, once the load is likely under way, pushes to key.
func pushWhenBlocked(admin *redis.Client, n int, key string, done chan<- error) {
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		info, err := admin.Info(ctx, "clients").Result()
		if err != nil {
			done <- err
			return
		}
		if strings.Contains(info, fmt.Sprintf("blocked_clients:%d\r\n", n)) {
			time.Sleep(time.Second)
			done <- admin.LPush(ctx, key, "x").Err()
			return
		}
	}
	done <- fmt.Errorf("not %d blocked clients after 10s", n)
}

// go-redis opens connections with HELLO, on which twemproxy hangs up; the
// run must still be clean through nutcracker.
func TestRunThroughNutcracker(t *testing.T) {
	backends := []string{startRedis(t), startRedis(t)}
	proxy := startNutcracker(t, backends...)
	cfg := testConfig(proxy)
	cfg.Pipeline, cfg.Warmup = 4, true
	res := run(context.Background(), cfg, testWriter{t})
	checkClean(t, res)
	for _, b := range backends { // keys were sharded, so both backends hold some
		c := redis.NewClient(&redis.Options{Addr: b, Protocol: 2})
		n, err := c.DBSize(context.Background()).Result()
		c.Close()
		if err != nil || n == 0 {
			t.Errorf("DBSIZE on backend %s = %d, %v, want some keys", b, n, err)
		}
	}
}

// A Job pointed at nothing must fail, not report success.
func TestExitCodeWhenAllFail(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	var stdout bytes.Buffer
	code := realMain([]string{"--addr", addr, "--connections", "2", "--duration", "300ms", "--json"},
		&stdout, testWriter{t})
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout %q is not one JSON result: %v", stdout.String(), err)
	}
	if res.Passed || res.Errors == 0 || res.Errors != res.Requests || res.FirstError == "" {
		t.Errorf("result = %+v, want every request failed and passed false", res)
	}
}

func TestFailure(t *testing.T) {
	tests := []struct {
		name string
		res  result
		want string // a substring; empty: passed
	}{
		{"clean", result{Requests: 100, MaxErrRate: 0.01}, ""},
		{"errors at the limit", result{Requests: 100, Errors: 1, ErrorRate: 0.01, MaxErrRate: 0.01}, ""},
		{"errors above the limit", result{Requests: 100, Errors: 2, ErrorRate: 0.02, MaxErrRate: 0.01}, "2 of 100 requests failed"},
		{"nothing sent", result{MaxErrRate: 1}, "no requests"},
		{"warmup failed", result{Requests: 100, WarmupKeys: 1000, WarmupErr: 100, MaxErrRate: 0.01}, "warmup: 100 of 1000 SETs failed"},
		{"warmup within the limit", result{Requests: 100, WarmupKeys: 1000, WarmupErr: 10, MaxErrRate: 0.01}, ""},
		{"blocked answered", result{Requests: 100, MaxErrRate: 0.01, Blocked: 10, BlockedAnswered: 1, BlockedFirst: "x"}, "1 of 10 blocked connections were answered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.res.failure()
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("failure() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags() with defaults: %v", err)
	}
	want := config{Addr: "127.0.0.1:22121", Connections: 50, Pipeline: 1, Keys: 100000,
		KeyPrefix: "loadgen:", Dist: "uniform", ZipfS: 1.01, ValueSize: 64, ReadRatio: 0.8,
		Duration: 10 * time.Second, Timeout: 2 * time.Second, MaxErrorRate: 0.01, Seed: 1}
	if c != want {
		t.Errorf("defaults = %+v\nwant %+v", c, want)
	}

	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--pipeline", "16", "--dist", "zipf", "--zipf-s", "1.2", "--requests", "5", "--duration", "0"}, ""},
		{[]string{"--connections", "0"}, "--connections"},
		{[]string{"--pipeline", "0"}, "--pipeline"},
		{[]string{"--keys", "0"}, "--keys"},
		{[]string{"--dist", "normal"}, "--dist"},
		{[]string{"--dist", "zipf", "--zipf-s", "0.99"}, "--zipf-s"},
		{[]string{"--read-ratio", "1.5"}, "--read-ratio"},
		{[]string{"--value-size", "-1"}, "--value-size"},
		{[]string{"--duration", "0"}, "--duration"},
		{[]string{"--requests", "-1"}, "--requests"},
		{[]string{"--timeout", "0"}, "--timeout"},
		{[]string{"--max-error-rate", "2"}, "--max-error-rate"},
		{[]string{"--blocked", "-1"}, "--blocked"},
		{[]string{"--rate", "5000", "--pipeline", "4"}, ""},
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"extra"}, "flags only"},
		{[]string{"--no-such-flag"}, "not defined"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("parseFlags(%q) = %v, want nil", tc.args, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("parseFlags(%q) = %v, want an error about %s", tc.args, err, tc.wantErr)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	if code := realMain([]string{"--help"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("--help exit code = %d, want 0", code)
	}
	if code := realMain([]string{"--pipeline", "0"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("bad flag exit code = %d, want 2", code)
	}
}

// checkClean fails unless res has requests, no errors, and latencies.
func checkClean(t *testing.T, res result) {
	t.Helper()
	if res.Requests == 0 || res.Errors != 0 || res.WarmupErr != 0 || !res.Passed {
		t.Fatalf("requests %d, errors %d (first: %q), warmup errors %d (first: %q), failure %q; want requests > 0 and no errors",
			res.Requests, res.Errors, res.FirstError, res.WarmupErr, res.WarmupFirst, res.Failure)
	}
	if !(res.P50us > 0 && res.P50us <= res.P99us && res.P99us <= res.P999us && res.P999us <= res.MaxUs) {
		t.Errorf("latencies p50 %v p99 %v p999 %v max %v µs, want 0 < p50 <= p99 <= p999 <= max",
			res.P50us, res.P99us, res.P999us, res.MaxUs)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func freePort(t *testing.T) int { return proxytest.FreePort(t) }

// startRedis starts a redis-server on a free loopback port and returns its
// address; extra are redis-server arguments, "--requirepass" among them.
func startRedis(t *testing.T, extra ...string) string {
	t.Helper()
	var opts []proxytest.RedisOption
	for i := 0; i < len(extra); i++ {
		if extra[i] == "--requirepass" && i+1 < len(extra) {
			opts = append(opts, proxytest.RedisPassword(extra[i+1]))
			i++
			continue
		}
		opts = append(opts, proxytest.RedisArgs(extra[i]))
	}
	return proxytest.StartRedis(t, opts...).Addr
}

// startNutcracker starts nutcracker with one ketama/fnv1a_64 pool over
// backends and returns its listen address.
func startNutcracker(t *testing.T, backends ...string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	conf := fmt.Sprintf("test:\n  listen: %s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  servers:\n", addr)
	for i, b := range backends {
		conf += fmt.Sprintf("   - %s:1 redis%d\n", b, i+1)
	}
	proxytest.StartNutcracker(t, conf)
	return addr
}

// With --cluster, loadgen pointed at one node of a Redis Cluster sends
// every key to the master serving its slot: no request fails, and every
// master gets keys.
func TestRunAgainstCluster(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cfg := testConfig(c.Nodes[0].Addr)
	cfg.Cluster, cfg.Pipeline, cfg.Warmup = true, 8, true
	res := run(context.Background(), cfg, testWriter{t})
	if !res.Passed || res.Errors != 0 || res.Requests == 0 || !res.Cluster {
		t.Fatalf("result = %+v, want requests and no error", res)
	}
	for _, m := range c.Masters() {
		if r, err := m.Client(t).Do("DBSIZE"); err != nil || r.Int == 0 {
			t.Errorf("DBSIZE on master %s = %v, %v, want some keys", m.Addr, r, err)
		}
	}
	if _, err := parseFlags([]string{"--cluster", "--blocked", "1"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--blocked: not with --cluster") {
		t.Errorf("--cluster --blocked 1: err = %v", err)
	}
}

// With --rate, a run against a real redis-server sends about the rate asked
// for, spread over the connections, and reports ordered percentiles.
func TestRateAgainstRedis(t *testing.T) {
	addr := startRedis(t)
	tests := []struct {
		name string
		edit func(*config)
	}{
		{"single requests", func(c *config) {}},
		{"pipeline", func(c *config) { c.Pipeline = 4 }},
		{"request budget", func(c *config) { c.Requests, c.Duration = 1001, 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(addr)
			cfg.Rate, cfg.Duration = 2000, time.Second
			tc.edit(&cfg)
			res := run(context.Background(), cfg, testWriter{t})
			checkClean(t, res)
			t.Logf("target %v achieved %v behind %v send lag p50 %vµs p99 %vµs; p50 %v p90 %v p99 %v p999 %v max %v µs",
				res.TargetRate, res.AchievedRate, *res.Behind, res.SendLagP50us, res.SendLagP99us,
				res.P50us, res.P90us, res.P99us, res.P999us, res.MaxUs)
			if res.TargetRate != 2000 || res.Behind == nil {
				t.Errorf("target rate %v, behind %v: want 2000 and a count", res.TargetRate, res.Behind)
			}
			// Wide bounds: a noisy machine may fall short, but never far
			// beyond the schedule.
			if res.AchievedRate < 1000 || res.AchievedRate > 2100 {
				t.Errorf("achieved rate %v, want about --rate 2000", res.AchievedRate)
			}
			if cfg.Requests > 0 && res.Requests != cfg.Requests {
				t.Errorf("requests = %d, want exactly --requests %d", res.Requests, cfg.Requests)
			}
			if !(res.P50us <= res.P90us && res.P90us <= res.P99us) {
				t.Errorf("p50 %v p90 %v p99 %v µs, want them in order", res.P50us, res.P90us, res.P99us)
			}
		})
	}
}

// With --rate, latency runs from when a request was due: a server that
// stalls once for 200ms holds up every request due during the stall, and
// that shows in p99 and max instead of in one sample only.
func TestRateCountsStalls(t *testing.T) {
	const stall = 200 * time.Millisecond
	addr := startStallingServer(t, 100, stall)
	cfg := testConfig(addr)
	cfg.Connections, cfg.ReadRatio = 1, 0
	cfg.Rate, cfg.Requests, cfg.Duration = 200, 300, 0 // a request due every 5ms
	res := run(context.Background(), cfg, testWriter{t})
	checkClean(t, res)
	t.Logf("achieved %v behind %v; p50 %v p90 %v p99 %v p999 %v max %v µs",
		res.AchievedRate, *res.Behind, res.P50us, res.P90us, res.P99us, res.P999us, res.MaxUs)
	// About 40 requests fell due during the stall and waited up to 200ms,
	// 6 of them at least 100ms later than due.
	if res.MaxUs < 150e3 || res.P99us < 100e3 {
		t.Errorf("p99 %vµs, max %vµs: want the 200ms stall in both (p99 >= 100ms, max >= 150ms)", res.P99us, res.MaxUs)
	}
	if *res.Behind < 10 {
		t.Errorf("behind = %d, want the requests held up by the stall (at least 10)", *res.Behind)
	}
}

// startStallingServer starts a server that answers every command with +OK,
// holding back the reply to its stallAt'th command for stall, and returns
// its address.
func startStallingServer(t *testing.T, stallAt int64, stall time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &stallingServer{stallAt: stallAt, stall: stall}
	go s.accept(ln)
	return ln.Addr().String()
}

type stallingServer struct {
	stallAt  int64
	stall    time.Duration
	commands atomic.Int64
}

func (s *stallingServer) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go s.serve(c)
	}
}

// serve reads RESP arrays of bulk strings and answers each with +OK.
func (s *stallingServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
		if err != nil || !strings.HasPrefix(line, "*") {
			return
		}
		for range 2 * n { // each argument: its $length line, then its bytes
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
		if s.commands.Add(1) == s.stallAt {
			time.Sleep(s.stall)
		}
		if _, err := c.Write([]byte("+OK\r\n")); err != nil {
			return
		}
	}
}
