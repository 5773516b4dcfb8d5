// Command shardproxy is a Redis sharding proxy that reads nutcracker.yml and
// accepts nutcracker's flags. See the README for what differs.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/stats"
	"github.com/shardproxy/shardproxy/proxy/statsport"
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
	kubeconfig    string
	namespace     string
	syncTimeout   time.Duration
	noWatch       bool
	cores         string

	// --max-clients and --memory-limit-ratio (limits.go)
	maxClients       int
	memoryLimitRatio float64
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
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for pools with kubernetes_service (default: the in-cluster service account)")
	fs.StringVar(&o.namespace, "kubernetes-namespace", "", "namespace of kubernetes_service when a pool names none (default: the pod's own namespace, else default)")
	fs.DurationVar(&o.syncTimeout, "discovery-sync-timeout", 10*time.Second, "how long to wait at start for the first list of EndpointSlices, for every Sentinel-watched group's first master, and for every Redis Cluster pool's first slot map, before serving anyway (/readyz stays false until the EndpointSlices arrive)")
	fs.BoolVar(&o.noWatch, "no-watch", false, "do not reload the configuration when its file changes (SIGHUP still reloads)")
	fs.StringVar(&o.cores, "cores", "auto", "cores to run on: a number, or auto to use as many as the load keeps busy, up to those available (a set GOMAXPROCS also fixes the number)")
	fs.IntVar(&o.maxClients, "max-clients", 0, "client connections served at once over all pools; the next gets -ERR max number of clients reached (0: what the open file limit leaves beside the pools' server connections, as nutcracker computes it)")
	fs.Float64Var(&o.memoryLimitRatio, "memory-limit-ratio", defaultMemoryLimitRatio, "without GOMEMLIMIT, Go's soft memory limit as a share of the container's (cgroup's) memory limit; 0 for none")
	fs.Usage = func() {
		fmt.Fprintf(out, "This is shardproxy-%s, a Redis sharding proxy compatible with nutcracker 0.5.0.\n\n", proxy.Version)
		fmt.Fprintf(out, "Usage: shardproxy [-c conf-file] [-s stats-port] [-a stats-addr] [-t] [-v level] [-o output] [-p pid-file] [-V] [-D]\n")
		fmt.Fprintf(out, "       shardproxy locate [-c conf-file] [--pool pool] [--json] [--stats host:port] key...  (where keys live: shardproxy locate -h)\n\nOptions:\n")
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
	if len(args) > 0 && args[0] == "locate" {
		return runLocate(args[1:], stdout, stderr)
	}
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
	fixedCores, err := parseCores(o.cores)
	if err == nil {
		err = checkLimitFlags(o)
	}
	if err != nil {
		fmt.Fprintf(stderr, "shardproxy: %v\n", err)
		return 2
	}
	switch {
	case o.version:
		fmt.Fprintf(stdout, "This is shardproxy-%s (nutcracker 0.5.0 compatible)\n", proxy.Version)
		return 0
	case o.describeStats:
		fmt.Fprint(stdout, stats.Describe(proxy.Version))
		return 0
	case o.daemonize && os.Getenv(daemonEnv) == "":
		return daemonize(stderr)
	}

	data, err := config.ReadFile(o.confFile)
	var cfg *config.Config
	if err == nil {
		cfg, err = config.ParseFile(o.confFile, data)
	}
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
	scaler := setCores(fixedCores, logger)
	setOpenFiles(logger)
	setMemoryLimit(o.memoryLimitRatio, cgroupRoot, selfCgroup, logger)
	discovery.RouteKlog(logger)

	ws, err := newWatchedServer(cfg, o, logger)
	if err != nil {
		logger.Error("configuration refused", "file", o.confFile, "err", err)
		return 1
	}
	srv := ws.srv
	srv.SetConfigHash(fmt.Sprintf("%x", sha256.Sum256(data)))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if scaler != nil {
		go scaler.Run(ctx)
	}

	if err := ws.startDiscovery(ctx, o, logger); err != nil {
		logger.Error("kubernetes discovery", "err", err)
		return 1
	}
	defer ws.stop()
	services := ws.services

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
	statsPort := statsport.New(srv, statsport.Options{Logger: logger})
	go statsPort.Serve(statsLn)
	defer statsPort.Close()
	srv.SetReady(true)
	logger.Info("stats listening", "addr", statsLn.Addr().String())

	var aclWatch *aclFiles
	reload := func(data []byte) {
		cfg, err := config.ParseFile(o.confFile, data)
		if err == nil {
			err = srv.Reload(cfg)
		} else {
			srv.RejectReload()
		}
		if err != nil {
			logger.Error("configuration reload rejected; the previous one keeps serving", "file", o.confFile, "err", err)
			return
		}
		sum := fmt.Sprintf("%x", sha256.Sum256(data))
		srv.SetConfigHash(sum)
		ws.update(ctx)
		if aclWatch != nil {
			aclWatch.update(ctx, cfg)
		}
		if services != nil {
			if err := services.Set(ctx, serviceKeys(srv)); err != nil {
				logger.Error("kubernetes discovery", "err", err)
			}
		}
		logger.Info("configuration reloaded", "file", o.confFile, "pools", len(cfg.Pools), "sha256", sum[:12])
	}
	watcher, err := discovery.NewConfigFile(discovery.ConfigFileOptions{Path: o.confFile, Logger: logger, OnChange: reload}, data)
	if err != nil {
		logger.Error("configuration watch", "err", err)
		return 1
	}
	if !o.noWatch {
		aclWatch = newACLFiles(logger, watcher.Reload)
		aclWatch.update(ctx, cfg)
		defer aclWatch.stop()
		go func() {
			if err := watcher.Run(ctx); err != nil {
				logger.Error("configuration watch failed; reload with SIGHUP", "err", err)
			}
		}()
	}

	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			logger.Error("pid file", "err", err)
			return 1
		}
		defer os.Remove(o.pidFile)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig != syscall.SIGHUP {
			logger.Info("shutting down", "signal", sig.String(), "grace", o.shutdownGrace)
			break
		}
		logger.Info("SIGHUP: reloading the configuration", "file", o.confFile)
		if o.noWatch {
			if data, err := config.ReadFile(o.confFile); err != nil {
				logger.Error("configuration reload", "err", err)
			} else {
				reload(data)
			}
		} else {
			watcher.Reload()
		}
	}
	srv.SetReady(false)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown grace ran out; remaining clients closed", "err", err)
	}
	if services != nil {
		services.Stop()
	}
	logger.Info("stopped")
	return 0
}

// parseCores reads --cores: 0 for auto, else the fixed number.
func parseCores(v string) (int, error) {
	if v == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("--cores must be auto or a positive number, not %q", v)
	}
	return n, nil
}

// setCores fixes GOMAXPROCS at n, or returns the scaler that adapts it when
// n is 0 (auto) and neither the environment nor the cores available fix it.
func setCores(n int, logger *slog.Logger) *proxy.CoreScaler {
	available := runtime.GOMAXPROCS(0) // the machine's cores, or the container's CPU limit
	switch {
	case n > 0:
		runtime.GOMAXPROCS(n)
		logger.Info("cores fixed by --cores", "cores", n)
	case os.Getenv("GOMAXPROCS") != "":
		logger.Info("cores fixed by GOMAXPROCS", "cores", available)
	case available == 1:
		logger.Info("one core available", "cores", 1)
	default:
		logger.Info("cores scale with the load", "min", 1, "max", available)
		return &proxy.CoreScaler{Max: available, Logger: logger}
	}
	return nil
}

// watchedServer is a proxy.Server and the discovery that feeds it: the
// Services' EndpointSlices, the Sentinel-watched and role groups, the Redis
// Cluster maps. The proxy and `shardproxy locate` build it alike.
type watchedServer struct {
	srv       *proxy.Server
	services  *discovery.Services // nil when no pool uses Kubernetes
	sentinels *sentinelWatch
	roles     *roleWatch
	clusters  *clusterWatch

	mu        sync.Mutex                    // guards delivered
	delivered map[discovery.ServiceKey]bool // Services whose endpoints were handed to srv
}

// newWatchedServer builds the Server for cfg, wired to the watches that
// its groups and clusters ask to look again; nothing is watched until
// startDiscovery.
func newWatchedServer(cfg *config.Config, o options, logger *slog.Logger) (*watchedServer, error) {
	ws := &watchedServer{sentinels: newSentinelWatch(logger), roles: newRoleWatch(logger), clusters: newClusterWatch(logger)}
	resolveGroup := func(pool, server string) {
		ws.sentinels.resolve(pool, server)
		ws.roles.resolve(pool, server)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Logger: logger, Namespace: namespace(o.namespace), ResolveGroup: resolveGroup, ResolveCluster: ws.clusters.resolve, MaxClients: o.maxClients})
	if err != nil {
		return nil, err
	}
	ws.srv = srv
	return ws, nil
}

// startDiscovery watches the pools' Services, Sentinels, role groups and
// clusters, and waits (each up to --discovery-sync-timeout) for their
// first answers. Once it returned nil, stop ends the watches.
func (ws *watchedServer) startDiscovery(ctx context.Context, o options, logger *slog.Logger) error {
	services, err := startDiscovery(ctx, o, ws.srv, func(svc proxy.Service, eps map[string]discovery.Endpoint) {
		ws.sentinels.endpointsChanged(svc, eps)
		ws.roles.endpointsChanged(svc, eps)
		ws.clusters.endpointsChanged(svc, eps)
		ws.mu.Lock()
		if ws.delivered == nil {
			ws.delivered = map[discovery.ServiceKey]bool{}
		}
		ws.delivered[discovery.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}] = true
		ws.mu.Unlock()
	}, logger)
	if err != nil {
		return err
	}
	ws.services = services
	ws.update(ctx)
	ws.sentinels.waitFirst(ctx, o.syncTimeout)
	ws.roles.waitFirst(ctx, o.syncTimeout)
	ws.clusters.waitFirst(ctx, o.syncTimeout)
	return nil
}

// update makes the group and cluster watches those of the Server's
// current pools, after a reload.
func (ws *watchedServer) update(ctx context.Context) {
	ws.sentinels.update(ctx, ws.srv)
	ws.roles.update(ctx, ws.srv)
	ws.clusters.update(ctx, ws.srv)
}

// stop ends the group and cluster watches; the Services' watch is the
// caller's to stop (after Shutdown).
func (ws *watchedServer) stop() {
	ws.clusters.stop()
	ws.roles.stop()
	ws.sentinels.stop()
}

// startDiscovery watches the EndpointSlices of every Service the pools
// name, feeds pod addresses to srv and every Service's endpoints to
// onEndpoints (the groups' watchers), and waits (bounded) for the first
// lists. It returns nil when no pool uses Kubernetes.
func startDiscovery(ctx context.Context, o options, srv *proxy.Server, onEndpoints func(proxy.Service, map[string]discovery.Endpoint), logger *slog.Logger) (*discovery.Services, error) {
	if len(serviceKeys(srv)) == 0 {
		return nil, nil
	}
	client, err := discovery.NewClient(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	services := discovery.NewServices(client, logger, func(k discovery.ServiceKey, eps map[string]discovery.Endpoint) {
		srv.SetPodAddresses(k.Namespace, k.Name, podAddresses(eps))
		onEndpoints(proxy.Service{Namespace: k.Namespace, Name: k.Name}, eps)
	})
	srv.SetServiceStatus(func() []stats.ServiceStatus {
		var out []stats.ServiceStatus
		for k, st := range services.Status() {
			out = append(out, stats.ServiceStatus{
				Namespace: k.Namespace, Name: k.Name,
				Synced: st.Synced, Healthy: st.Healthy, LastError: st.LastError,
				LastErrorAt: st.LastErrorAt, LastChangeAt: st.LastChangeAt, Endpoints: st.Endpoints,
			})
		}
		return out
	})
	if err := services.Set(ctx, serviceKeys(srv)); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.syncTimeout)
	defer cancel()
	if !services.WaitForSync(wctx) {
		logger.Warn("EndpointSlices not listed yet; serving anyway, /readyz stays false until they are", "waited", o.syncTimeout)
	}
	return services, nil
}

// serviceKeys are the Services whose EndpointSlices are watched: the pools'
// kubernetes_service and sentinel_service.
func serviceKeys(srv *proxy.Server) []discovery.ServiceKey {
	var keys []discovery.ServiceKey
	for _, s := range append(srv.Services(), sentinelServices(srv)...) {
		k := discovery.ServiceKey{Namespace: s.Namespace, Name: s.Name}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// podAddresses turns discovery's endpoints into what the proxy needs.
func podAddresses(eps map[string]discovery.Endpoint) map[string]proxy.PodAddress {
	out := make(map[string]proxy.PodAddress, len(eps))
	for pod, ep := range eps {
		pa := proxy.PodAddress{IP: ep.Address, Usable: ep.Usable(), Slice: ep.Slice}
		switch {
		case ep.Terminating:
			pa.Reason = "terminating"
		case !ep.Ready:
			pa.Reason = "not ready"
		case !ep.Serving:
			pa.Reason = "not serving"
		}
		out[pod] = pa
	}
	return out
}

// namespace is the namespace for pools that name none: the flag, else the
// pod's own (from its service account), else "default".
func namespace(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	return "default"
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
