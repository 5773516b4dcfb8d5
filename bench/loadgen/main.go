// Loadgen sends GET and SET requests to a Redis server or a Redis proxy such
// as shardproxy or twemproxy, and reports throughput and latency.
//
// It opens --connections connections (one go-redis client, one goroutine per
// connection). Each goroutine sends one request, or a pipeline of --pipeline
// requests, waits for the replies and starts again, for --duration or until
// --requests have been sent. Keys are --key-prefix followed by a number in
// [0, --keys), picked uniformly or by a zipf distribution; a request is a GET
// with probability --read-ratio and otherwise a SET of --value-size bytes.
//
// With --rate N the load is open-loop instead: requests are scheduled at N
// per second in all, whatever the replies do, the connections sharing the
// rate evenly, each connection's schedule shifted by a fraction of its
// interval so that they do not all send at once. With --pipeline P a
// scheduled unit is a pipeline of P requests, N/P of them a second. A
// connection still has one unit in flight at a time: when a reply is late,
// the units that fell due meanwhile are sent as soon as it is in, back to
// back, and each one's latency is measured from when it was due, not from
// when it was sent, so a stall shows in the percentiles of every request it
// held up (no coordinated omission). The summary then gives the target and
// achieved rates, how many requests were sent more than one interval late
// ("behind"), and the send lag, how late units were sent after they were
// due: loadgen's own lateness, part of every latency. On Linux a connection
// sleeps on a timerfd, which wakes it within tens of microseconds, where a
// Go timer can be up to a millisecond late. An achieved rate more than 5%
// below the target is flagged, in the summary and on stderr: the target, or
// loadgen, could not keep up, and the percentiles are of what was sent.
//
// A progress line goes to stderr every second; the summary goes to stdout,
// as one JSON object with --json. Latency is the time from sending a request,
// or a whole pipeline, to reading its last reply (with --rate, from when it
// was due). Each goroutine records it in its own fixed-bucket histogram (no
// allocation or lock per request); the histograms are merged at the end.
// Failed requests count as errors and are left out of the latencies; a GET
// answered with nil is a miss, not an error.
//
// The exit code is 0 when requests were sent and at most --max-error-rate of
// them failed, 1 otherwise, and 2 for bad flags, so a Kubernetes Job that
// runs loadgen fails visibly. Loadgen takes flags only, no files.
//
// Only plain GET and SET are sent, in RESP2, and the connection starts
// without HELLO, CLIENT SETINFO or CLIENT SETNAME, so twemproxy accepts it.
// With --blocked N, N more connections each sit in a BLPOP that nothing
// wakes for the whole run, to measure the load beside blocked clients
// (bench/blocked.sh). With --cluster, --addr is one node of a Redis Cluster
// and loadgen is a cluster-aware client (go-redis' ClusterClient), the way
// an application talks to the cluster without a proxy (bench/cluster.sh).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config holds the flags.
type config struct {
	Addr         string
	Password     string
	Connections  int
	Pipeline     int
	Keys         int
	KeyPrefix    string
	Dist         string
	ZipfS        float64
	ValueSize    int
	ReadRatio    float64
	Duration     time.Duration
	Requests     int64
	Warmup       bool
	JSON         bool
	Timeout      time.Duration
	MaxErrorRate float64
	Seed         uint64
	Blocked      int
	Cluster      bool
	Rate         float64
}

// parseFlags parses args (without the program name) and checks the values.
// It returns flag.ErrHelp for --help.
func parseFlags(args []string, output io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(output, `usage: loadgen [flags]

Sends GET and SET requests to a Redis server or proxy (shardproxy,
twemproxy) and reports requests/s, errors and p50/p90/p99/p999 latency;
with --rate, at a fixed rate whatever the replies do (open loop).
Progress goes to stderr each second, the summary to stdout. Exits 1 when
the error rate is above --max-error-rate or nothing was sent.

flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:22121", "`host:port` to send load to")
	fs.StringVar(&c.Password, "password", "", "password sent with AUTH on each new connection; empty sends no AUTH")
	fs.IntVar(&c.Connections, "connections", 50, "connections, each driven by one goroutine")
	fs.IntVar(&c.Pipeline, "pipeline", 1, "requests per round trip on a connection (1 = no pipelining)")
	fs.IntVar(&c.Keys, "keys", 100000, "key space size: keys are <key-prefix>0 .. <key-prefix><keys-1>")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "loadgen:", "prefix of every key name")
	fs.StringVar(&c.Dist, "dist", "uniform", "key distribution: uniform or zipf")
	fs.Float64Var(&c.ZipfS, "zipf-s", 1.01, "zipf exponent s, > 1: key k is picked with probability ∝ (k+1)^-s")
	fs.IntVar(&c.ValueSize, "value-size", 64, "bytes in each SET value")
	fs.Float64Var(&c.ReadRatio, "read-ratio", 0.8, "fraction of requests that are GET, 0..1; the rest are SET")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send load (ignored when --requests is set)")
	fs.Int64Var(&c.Requests, "requests", 0, "send this many requests in total instead of running for --duration; 0 = use --duration")
	fs.BoolVar(&c.Warmup, "warmup", false, "before measuring, SET every key of the key space once so GETs hit")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as one JSON line")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Second, "timeout for dialing and for each request or pipeline round trip")
	fs.Float64Var(&c.MaxErrorRate, "max-error-rate", 0.01, "exit 1 if more than this fraction of requests fail")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the key and command choices (each connection derives its own stream)")
	fs.IntVar(&c.Blocked, "blocked", 0, "before the load, open this many more connections, each blocked in BLPOP <key-prefix>blocked:<i> 0 for the whole run; the run fails if one is answered")
	fs.BoolVar(&c.Cluster, "cluster", false, "--addr is a node of a Redis Cluster: send each key to the node serving its slot, as a cluster-aware client (go-redis ClusterClient) does")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: send this many requests per second in all, spread evenly over the connections, whatever the replies do, and measure each latency from when the request was due; 0 = closed loop, each connection sends as soon as its last reply is in")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: loadgen takes flags only", fs.Arg(0))
	}
	return c, c.check()
}

// check validates the flag values, naming the flag in the error.
func (c *config) check() error {
	switch {
	case c.Addr == "":
		return errors.New("--addr: must not be empty")
	case c.Connections < 1:
		return fmt.Errorf("--connections: %d: must be at least 1", c.Connections)
	case c.Pipeline < 1:
		return fmt.Errorf("--pipeline: %d: must be at least 1", c.Pipeline)
	case c.ValueSize < 0:
		return fmt.Errorf("--value-size: %d: must not be negative", c.ValueSize)
	case !(c.ReadRatio >= 0 && c.ReadRatio <= 1):
		return fmt.Errorf("--read-ratio: %v: must be between 0 and 1", c.ReadRatio)
	case c.Requests < 0:
		return fmt.Errorf("--requests: %d: must not be negative", c.Requests)
	case c.Requests == 0 && c.Duration <= 0:
		return fmt.Errorf("--duration: %v: must be positive", c.Duration)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout: %v: must be positive", c.Timeout)
	case !(c.MaxErrorRate >= 0 && c.MaxErrorRate <= 1):
		return fmt.Errorf("--max-error-rate: %v: must be between 0 and 1", c.MaxErrorRate)
	case !(c.Rate >= 0 && c.Rate <= 1e9):
		return fmt.Errorf("--rate: %v: must be between 0 and 1e9 requests per second", c.Rate)
	case c.Blocked < 0:
		return fmt.Errorf("--blocked: %d: must not be negative", c.Blocked)
	case c.Blocked > 0 && c.Cluster:
		return errors.New("--blocked: not with --cluster")
	}
	return checkKeys(c.Dist, c.Keys, c.ZipfS)
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs loadgen and returns the exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	// SIGTERM is how Kubernetes stops a Job's pod: report what was measured.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := run(ctx, cfg, stderr)
	if cfg.JSON {
		b, err := json.Marshal(res)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printSummary(stdout, res)
	}
	if res.BelowTarget {
		fmt.Fprintf(stderr, "loadgen: BELOW TARGET: achieved %.0f req/s, %.1f%% short of --rate %g: the target (or loadgen) could not keep up\n",
			res.AchievedRate, 100*(1-res.AchievedRate/res.TargetRate), res.TargetRate)
	}
	if !res.Passed {
		fmt.Fprintf(stderr, "loadgen: FAIL: %s\n", res.Failure)
		return 1
	}
	return 0
}

func printSummary(w io.Writer, r result) {
	dist := r.Dist
	if r.Dist == "zipf" {
		dist = fmt.Sprintf("zipf(s=%g)", r.ZipfS)
	}
	us := func(v float64) time.Duration { return time.Duration(v * 1e3).Round(time.Microsecond) }
	fmt.Fprintf(w, "target      %s  connections %d  pipeline %d  keys %d %s  value %dB  reads %.0f%%\n",
		r.Addr, r.Connections, r.Pipeline, r.Keys, dist, r.ValueSize, r.ReadRatio*100)
	if r.WarmupKeys > 0 {
		fmt.Fprintf(w, "warmup      %d keys, %d errors\n", r.WarmupKeys, r.WarmupErr)
		if r.WarmupFirst != "" {
			fmt.Fprintf(w, "warmup err  %s\n", r.WarmupFirst)
		}
	}
	fmt.Fprintf(w, "requests    %d in %.2fs  (GET misses %d)\n", r.Requests, r.Seconds, r.Misses)
	fmt.Fprintf(w, "req/s       %d\n", r.RPS)
	if r.TargetRate > 0 {
		var behind int64
		if r.Behind != nil {
			behind = *r.Behind
		}
		short := ""
		if r.BelowTarget {
			short = "  BELOW TARGET: the target could not keep up"
		}
		fmt.Fprintf(w, "rate        target %g/s  achieved %.0f/s  behind %d (sent more than one interval late)%s\n",
			r.TargetRate, r.AchievedRate, behind, short)
		fmt.Fprintf(w, "send lag    p50 %v  p99 %v (after the due time; in every latency)\n",
			us(r.SendLagP50us), us(r.SendLagP99us))
	}
	fmt.Fprintf(w, "errors      %d (%.3f%%)\n", r.Errors, r.ErrorRate*100)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error %s\n", r.FirstError)
	}
	if r.Blocked > 0 {
		fmt.Fprintf(w, "blocked     %d connections in BLPOP, %d answered\n", r.Blocked, r.BlockedAnswered)
	}
	fmt.Fprintf(w, "latency     p50 %v  p90 %v  p99 %v  p999 %v  max %v  mean %v\n",
		us(r.P50us), us(r.P90us), us(r.P99us), us(r.P999us), us(r.MaxUs), us(r.MeanUs))
}
