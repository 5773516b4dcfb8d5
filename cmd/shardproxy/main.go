// Command shardproxy is a Redis sharding proxy that reads nutcracker.yml and
// accepts nutcracker's flags. See the README for what differs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
)

// options are the command-line flags. nutcracker's short flags keep their
// meaning; options it lacks have long names only.
type options struct {
	confFile      string
	statsPort     int
	statsAddr     string
	statsInterval int
	testConf      bool
	verbosity     int
	output        string
	pidFile       string
	version       bool
	describeStats bool
	daemonize     bool
	mbufSize      int
	shutdownGrace time.Duration
	logFormat     string
}

func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shardproxy", flag.ContinueOnError)
	fs.SetOutput(out)
	str := func(p *string, short, long, def, usage string) {
		fs.StringVar(p, short, def, usage)
		fs.StringVar(p, long, def, usage)
	}
	num := func(p *int, short, long string, def int, usage string) {
		fs.IntVar(p, short, def, usage)
		fs.IntVar(p, long, def, usage)
	}
	boolean := func(p *bool, short, long, usage string) {
		fs.BoolVar(p, short, false, usage)
		fs.BoolVar(p, long, false, usage)
	}
	str(&o.confFile, "c", "conf-file", "conf/nutcracker.yml", "configuration file (nutcracker.yml)")
	num(&o.statsPort, "s", "stats-port", 22222, "stats port: nutcracker's JSON, /metrics, /healthz, /readyz")
	str(&o.statsAddr, "a", "stats-addr", "0.0.0.0", "stats address")
	num(&o.statsInterval, "i", "stats-interval", 30000, "stats aggregation interval in msec (accepted for compatibility; stats are always current)")
	boolean(&o.testConf, "t", "test-conf", "test the configuration for syntax errors and exit")
	num(&o.verbosity, "v", "verbose", 5, "log level like nutcracker's: <=3 error, 4 warn, 5-6 info, >=7 debug")
	str(&o.output, "o", "output", "stderr", "log file")
	str(&o.pidFile, "p", "pid-file", "", "pid file, removed on exit")
	boolean(&o.version, "V", "version", "show version and exit")
	boolean(&o.describeStats, "D", "describe-stats", "print stats description and exit")
	boolean(&o.daemonize, "d", "daemonize", "run as a daemon: detach from the terminal, stdio to /dev/null (not needed under Kubernetes or systemd)")
	num(&o.mbufSize, "m", "mbuf-size", 16384, "accepted for compatibility; buffers grow as needed")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM or SIGINT, how long in-flight requests may take before connections are closed")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(out, "This is shardproxy-%s, a Redis sharding proxy compatible with nutcracker 0.5.0.\n\n", proxy.Version)
		fmt.Fprintf(out, "Usage: shardproxy [-c conf-file] [-s stats-port] [-a stats-addr] [-t] [-v level] [-o output] [-p pid-file] [-V] [-D]\n\nOptions:\n")
		printUsage(fs, out)
	}
	return fs
}

// printUsage lists each option once, short and long name together.
func printUsage(fs *flag.FlagSet, out io.Writer) {
	short := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			short[f.Usage] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			return
		}
		names := "    --" + f.Name
		if s, ok := short[f.Usage]; ok {
			names = "  -" + s + ", --" + f.Name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(out, "%-24s %s%s\n", names, f.Usage, def)
	})
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shardproxy: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch {
	case o.version:
		fmt.Fprintf(stdout, "This is shardproxy-%s (nutcracker 0.5.0 compatible)\n", proxy.Version)
		return 0
	case o.describeStats:
		fmt.Fprint(stdout, proxy.DescribeStats())
		return 0
	case o.daemonize && os.Getenv(daemonEnv) == "":
		return daemonize(stderr)
	}

	cfg, err := proxy.LoadConfig(o.confFile)
	if o.testConf {
		if err != nil {
			fmt.Fprintf(stderr, "shardproxy: configuration file '%s' syntax is invalid: %v\n", o.confFile, err)
			return 1
		}
		fmt.Fprintf(stderr, "shardproxy: configuration file '%s' syntax is ok\n", o.confFile)
		return 0
	}

	logger, closeLog, lerr := newLogger(o, stderr)
	if lerr != nil {
		fmt.Fprintf(stderr, "shardproxy: %v\n", lerr)
		return 1
	}
	defer closeLog()
	if err != nil {
		logger.Error("configuration invalid", "file", o.confFile, "err", err)
		return 1
	}
	logger.Info("shardproxy starting", "version", proxy.Version, "conf", o.confFile, "pools", len(cfg.Pools), "pid", os.Getpid())

	srv, err := proxy.NewServer(cfg, proxy.Options{Logger: logger})
	if err != nil {
		logger.Error("configuration refused", "file", o.confFile, "err", err)
		return 1
	}
	statsLn, err := net.Listen("tcp", net.JoinHostPort(o.statsAddr, strconv.Itoa(o.statsPort)))
	if err != nil {
		logger.Error("stats port", "err", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		statsLn.Close()
		logger.Error("listen failed", "err", err)
		return 1
	}
	stats := proxy.NewStatsServer(srv, proxy.StatsOptions{})
	go stats.Serve(statsLn)
	defer stats.Close()
	srv.SetReady(true)
	logger.Info("stats listening", "addr", statsLn.Addr().String())

	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			logger.Error("pid file", "err", err)
			return 1
		}
		defer os.Remove(o.pidFile)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	sig := <-sigs
	logger.Info("shutting down", "signal", sig.String(), "grace", o.shutdownGrace)
	srv.SetReady(false)
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("shutdown grace ran out; remaining clients closed", "err", err)
	}
	logger.Info("stopped")
	return 0
}

// daemonEnv marks the detached child of -d.
const daemonEnv = "SHARDPROXY_DAEMON_CHILD"

// daemonize starts this program again in a new session with its standard
// streams on /dev/null, as nutcracker's -d does (Go cannot fork), and
// returns the parent's exit status. Like nutcracker it keeps the working
// directory, so a relative -c still works.
func daemonize(stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "shardproxy: -d: %v\n", err)
		return 1
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(stderr, "shardproxy: -d: %v\n", err)
		return 1
	}
	defer null.Close()
	_, err = os.StartProcess(exe, os.Args, &os.ProcAttr{
		Env:   append(os.Environ(), daemonEnv+"=1"),
		Files: []*os.File{null, null, null},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		fmt.Fprintf(stderr, "shardproxy: -d: %v\n", err)
		return 1
	}
	return 0
}

// newLogger builds the slog logger that -v and -o ask for.
func newLogger(o options, stderr io.Writer) (*slog.Logger, func(), error) {
	level := slog.LevelInfo
	switch {
	case o.verbosity <= 3:
		level = slog.LevelError
	case o.verbosity == 4:
		level = slog.LevelWarn
	case o.verbosity >= 7:
		level = slog.LevelDebug
	}
	w, closeFn := stderr, func() {}
	if o.output != "" && o.output != "stderr" {
		f, err := os.OpenFile(o.output, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("log file: %w", err)
		}
		w, closeFn = f, func() { f.Close() }
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, hopts)
	if o.logFormat == "json" {
		h = slog.NewJSONHandler(w, hopts)
	}
	return slog.New(h), closeFn, nil
}
