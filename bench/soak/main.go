// Soak runs shardproxy for a bounded time under the load of a long-lived
// deployment and fails if it leaks or loses or misroutes anything.
//
// It starts three redis-servers on free loopback ports, each with an
// append-only file fsynced on every write (--appendfsync always), so a write
// a server acknowledged survives its restart; writes a nutcracker.yml with
// one ketama pool over them (fnv1a_64, hash_tag "{}", auto_eject_hosts
// false, so a restarting server's keys get errors instead of moving); and
// starts the --shardproxy binary on it. It raises its own RLIMIT_NOFILE,
// which the proxy inherits, and prints the limits.
//
// For --duration it then keeps:
//   - --connections idle client connections open, each sending PING once
//     per --idle-ping, spread evenly, from --source-addrs loopback source
//     addresses (127.0.0.1, 127.0.0.2, ...) so ephemeral ports do not run
//     short;
//   - --churn new connections a second, each sending PING and GET of a key
//     and closing;
//   - --rate GET and SET requests a second, paced over --workers
//     connections; each worker owns --keys-per-worker keys, so every key has
//     one writer;
//   - a config reload every --reload-every (the file is replaced with the
//     pool's timeout changed and a second pool added or taken away), checked
//     in shardproxy_config_reloads_total: it must count an ok reload and no
//     rejected one;
//   - a restart of one redis-server every --restart-every, round robin,
//     the first after half an interval: SIGTERM, wait for the exit, start
//     on the same port and directory.
//
// A value is "<key>#<sequence>". Every GET checks that the value is its key's
// (else the reply is misrouted) and that it is the last acknowledged SET of
// the key, or one of the SETs after it whose outcome is unknown because they
// failed (else the write is lost). Failures of keys on a server that is
// restarting, or within 5 s after it answers again, are counted as
// unavailable; any other failure is an error and its message is printed.
// At the end every key written is read back through the proxy and from each
// server directly: it must be on the server the ring (built from the same
// config with the hashring package, as shardproxy builds it) places it on,
// with an acceptable value, and on no other server.
//
// Every --report-every it prints one line: elapsed time; the proxy's RSS
// (/proc/PID/status VmRSS), Go heap in use (go_memstats_heap_inuse_bytes
// from /metrics), goroutines (go_goroutines), open
// file descriptors (/proc/PID/fd) and client connections
// (shardproxy_curr_connections); requests, errors, unavailable, misrouted,
// lost in that interval; and the latency p50, p99 and p99.9 of that
// interval's requests.
//
// RSS and goroutines must not drift upward after the warm-up (--warmup,
// default the smaller of 5 minutes and a sixth of --duration): over the
// post-warm-up reports, the Theil–Sen slope (the median of the slopes of all
// pairs of samples) times the post-warm-up span must not exceed the larger
// of 10% of the first post-warm-up value and a floor (--rss-floor, default
// 16 MiB; --goroutine-floor, default 100). A single spike, such as a
// restart's, does not move that median much; growth at every report does.
// The warm-up must cover the proxy's heap growing to its first GC goal
// after the connections open: with 10,000 connections on a 2-core machine
// RSS levels off after 2 to 3 minutes, so a run shorter than 30 minutes
// needs --warmup set by hand (for 5 minutes, --warmup 2m30s
// --report-every 30s).
//
// It exits 0 when the run passes, printing a summary with the reports as a
// Markdown table, and 1 with the reasons when it fails: drift, a lost or
// misrouted reply, a reload not applied or rejected, a server that did not
// stop or start, or the proxy exiting. Errors alone do not fail the run.
// Flags other than --shardproxy have defaults for the 30-minute soak
// (`make soak`).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	shardproxy     string
	redisServer    string
	duration       time.Duration
	connections    int
	idlePing       time.Duration
	sourceAddrs    int
	churn          float64
	rate           int
	workers        int
	keysPerWorker  int
	reloadEvery    time.Duration
	restartEvery   time.Duration
	reportEvery    time.Duration
	warmup         time.Duration
	rssFloor       int64
	goroutineFloor int
	keep           bool
}

func parseFlags(args []string, out io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.shardproxy, "shardproxy", "bin/shardproxy", "shardproxy binary to run")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the load runs")
	fs.IntVar(&o.connections, "connections", 10000, "idle client connections held open")
	fs.DurationVar(&o.idlePing, "idle-ping", time.Minute, "how often each idle connection sends PING")
	fs.IntVar(&o.sourceAddrs, "source-addrs", 4, "loopback source addresses for idle and churn connections (127.0.0.1 up)")
	fs.Float64Var(&o.churn, "churn", 200, "connections a second that connect, PING, GET and close")
	fs.IntVar(&o.rate, "rate", 2000, "GET and SET requests a second over the workers")
	fs.IntVar(&o.workers, "workers", 50, "connections the GET/SET load is paced over")
	fs.IntVar(&o.keysPerWorker, "keys-per-worker", 200, "keys each worker owns")
	fs.DurationVar(&o.reloadEvery, "reload-every", time.Minute, "config reload interval (0: none)")
	fs.DurationVar(&o.restartEvery, "restart-every", 5*time.Minute, "redis-server restart interval (0: none)")
	fs.DurationVar(&o.reportEvery, "report-every", time.Minute, "report interval")
	fs.DurationVar(&o.warmup, "warmup", -1, "time before drift is measured (default: min(5m, duration/6))")
	rssFloorMiB := fs.Int64("rss-floor", 16, "RSS growth in MiB always allowed after the warm-up")
	fs.IntVar(&o.goroutineFloor, "goroutine-floor", 100, "goroutine growth always allowed after the warm-up")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (config, logs, data)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.rssFloor = *rssFloorMiB << 20
	if o.warmup < 0 {
		o.warmup = min(5*time.Minute, o.duration/6)
	}
	switch {
	case o.duration <= 0:
		return nil, fmt.Errorf("--duration must be positive")
	case o.reportEvery <= 0:
		return nil, fmt.Errorf("--report-every must be positive")
	case o.connections < 0 || o.workers < 1 || o.rate < 1 || o.keysPerWorker < 1:
		return nil, fmt.Errorf("--connections must be >= 0, --workers, --rate and --keys-per-worker >= 1")
	case o.idlePing <= 0:
		return nil, fmt.Errorf("--idle-ping must be positive")
	case o.sourceAddrs < 1 || o.sourceAddrs > 250:
		return nil, fmt.Errorf("--source-addrs must be in [1, 250]")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stdout, "FAIL:", err)
		os.Exit(1)
	}
}
