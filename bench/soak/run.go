package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// restartGrace is how long after a restarted server answers PING its keys'
// failures still count as unavailable: the proxy's timeout (4 s) plus a
// margin for requests that were waiting on the old connection.
const restartGrace = 5 * time.Second

// sample is one report.
type sample struct {
	at               time.Duration
	rss              int64
	goroutines       int
	fds              int
	clients          int
	requests, errors uint64
	unavailable      uint64
	misrouted, lost  uint64
	p50, p99, p999   time.Duration
	heap             int64 // go_memstats_heap_inuse_bytes
}

// soak is one run.
type soak struct {
	opts    *options
	out     io.Writer
	dir     string
	servers []*redisServer
	conf    *configFile
	ring    *ring
	proxy   *proxyProcess
	env     *loadEnv

	idleOpen atomic.Int64
	reloads  atomic.Int64
	restarts atomic.Int64

	failMu   sync.Mutex
	failures []string
	abort    context.CancelFunc // ends the load early on a fatal failure
}

func (s *soak) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.failMu.Lock()
	s.failures = append(s.failures, msg)
	s.failMu.Unlock()
	fmt.Fprintf(s.out, "%s failure: %s\n", time.Now().UTC().Format("15:04:05"), msg)
}

func (s *soak) fatal(format string, args ...any) {
	s.fail(format, args...)
	s.abort()
}

func (s *soak) logf(format string, args ...any) {
	fmt.Fprintf(s.out, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// raiseFDLimit raises RLIMIT_NOFILE to at least want (the hard limit too
// when allowed, as root), for this process and the ones it starts.
func raiseFDLimit(out io.Writer, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintf(out, "RLIMIT_NOFILE: %v\n", err)
		return
	}
	before := lim
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	fmt.Fprintf(out, "RLIMIT_NOFILE: soft %d hard %d (was %d/%d, wanted %d)\n", lim.Cur, lim.Max, before.Cur, before.Max, want)
	if lim.Cur < want {
		fmt.Fprintf(out, "warning: the open file limit is below the %d this run may need\n", want)
	}
}

// lockedWriter serialises the lines the run's goroutines print.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func run(ctx context.Context, o *options, w io.Writer) error {
	out := &lockedWriter{w: w}
	s := &soak{opts: o, out: out}
	fmt.Fprintf(out, "soak: %v, %d idle connections (PING every %v), churn %g/s, %d req/s over %d workers, reload every %v, restart every %v, warm-up %v\n",
		o.duration, o.connections, o.idlePing, o.churn, o.rate, o.workers, o.reloadEvery, o.restartEvery, o.warmup)
	// Each side of the loopback connections (this process and the proxy,
	// which inherits the limit) holds the idle ones, the workers', up to
	// 1000 churn connections in flight, and some to spare.
	raiseFDLimit(out, uint64(o.connections+o.workers+1000+1024))
	if cpr, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Fprintf(out, "ephemeral ports: %s over %d source addresses\n", strings.Join(strings.Fields(string(cpr)), "-"), o.sourceAddrs)
	}
	dir, err := os.MkdirTemp("", "shardproxy-soak-")
	if err != nil {
		return err
	}
	s.dir = dir
	if o.keep {
		fmt.Fprintf(out, "working directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := s.setUp(); err != nil {
		s.tearDown()
		return err
	}
	err = s.load(ctx)
	s.tearDown()
	if err != nil {
		return err
	}
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if len(s.failures) > 0 {
		return fmt.Errorf("%d failure(s):\n  %s", len(s.failures), strings.Join(s.failures, "\n  "))
	}
	fmt.Fprintln(out, "PASS")
	return nil
}

func (s *soak) setUp() error {
	for i := range 3 {
		port, err := freePort(reopenHost)
		if err != nil {
			return err
		}
		r := &redisServer{name: "shard" + strconv.Itoa(i), port: port, dir: filepath.Join(s.dir, strconv.Itoa(i))}
		s.servers = append(s.servers, r)
		if err := r.start(s.opts.redisServer); err != nil {
			return err
		}
	}
	listenPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	extraPort, err := freePort(reopenHost)
	if err != nil {
		return err
	}
	statsPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	s.conf = &configFile{path: filepath.Join(s.dir, "nutcracker.yml"), listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(listenPort)), extraPort: extraPort, servers: s.servers}
	if err := s.conf.write(); err != nil {
		return err
	}
	if s.ring, err = s.conf.ring(); err != nil {
		return err
	}
	if s.proxy, err = startProxy(s.opts.shardproxy, s.conf.path, statsPort, filepath.Join(s.dir, "shardproxy.log")); err != nil {
		return err
	}
	s.logf("shardproxy pid %d listening on %s, stats on %s; redis-servers %s, %s, %s", s.proxy.pid(), s.conf.listen, s.proxy.statsAddr,
		s.servers[0].addr(), s.servers[1].addr(), s.servers[2].addr())

	o := s.opts
	env := &loadEnv{opts: o, proxy: s.conf.listen, hist: new(histogram), count: new(counters), probs: new(problems), avail: newAvailability(len(s.servers))}
	for i := range o.sourceAddrs {
		env.sources = append(env.sources, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))})
	}
	perServer := make([]int, len(s.servers))
	env.keys = make([][]keyState, o.workers)
	for w := range env.keys {
		env.keys[w] = make([]keyState, o.keysPerWorker)
		for k := range env.keys[w] {
			name := fmt.Sprintf("soak:{w%d:k%d}", w, k)
			owner := s.ring.serverOf(name)
			perServer[owner]++
			env.keys[w][k] = keyState{name: name, owner: owner}
			env.names = append(env.names, name)
			env.owners = append(env.owners, owner)
		}
	}
	s.logf("%d keys, per server %v", len(env.names), perServer)
	s.env = env
	return nil
}

func (s *soak) tearDown() {
	if s.proxy != nil && !s.proxy.exited() {
		s.proxy.stop()
	}
	for _, r := range s.servers {
		r.stop(30 * time.Second)
	}
}

// load runs the load, reloads, restarts and reports for the duration, then
// checks every key.
func (s *soak) load(parent context.Context) error {
	o := s.opts
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.abort = cancel
	env := s.env

	var loadWG, ready sync.WaitGroup
	groups := min(8, max(1, o.connections/500))
	if o.connections == 0 {
		groups = 0
	}
	opening := time.Now()
	for g := range groups {
		n := o.connections / groups
		if g < o.connections%groups {
			n++
		}
		ready.Add(1)
		loadWG.Add(1)
		go env.idleGroup(ctx, n, &s.idleOpen, &ready, &loadWG)
	}
	ready.Wait()
	s.logf("%d idle connections open in %v", s.idleOpen.Load(), time.Since(opening).Round(time.Millisecond))
	start := time.Now()
	for w := range o.workers {
		loadWG.Add(1)
		go env.worker(ctx, w, &loadWG)
	}
	loadWG.Add(1)
	go env.churn(ctx, &loadWG)

	var ctlWG sync.WaitGroup
	ctlWG.Add(3)
	go s.reloader(ctx, &ctlWG)
	go s.restarter(ctx, &ctlWG)
	go s.watchProxy(ctx, &ctlWG)

	samples := s.report(ctx, start)
	cancel()
	loadWG.Wait()
	ctlWG.Wait()
	if parent.Err() != nil {
		return errors.New("interrupted")
	}
	if !s.proxy.exited() {
		s.verify()
	}
	s.summary(samples)
	return nil
}

// watchProxy fails the run if the proxy exits.
func (s *soak) watchProxy(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	select {
	case <-ctx.Done():
	case <-s.proxy.done:
		s.fatal("shardproxy exited: %s", s.proxy.logTail())
	}
}

// reloader replaces the config file every --reload-every and checks that
// the proxy counted one more ok reload and no rejected one.
func (s *soak) reloader(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	if s.opts.reloadEvery <= 0 {
		return
	}
	tick := time.NewTicker(s.opts.reloadEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		before, err := s.proxy.metrics()
		if err != nil {
			s.fail("reload: /metrics: %v", err)
			continue
		}
		okKey, rejKey := `shardproxy_config_reloads_total{result="ok"}`, `shardproxy_config_reloads_total{result="rejected"}`
		s.conf.variant++
		if err := s.conf.write(); err != nil {
			s.fatal("reload: write config: %v", err)
			return
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			time.Sleep(100 * time.Millisecond)
			after, err := s.proxy.metrics()
			if err == nil && after[rejKey] > before[rejKey] {
				s.fail("reload %d rejected: %s", s.conf.variant, s.proxy.logTail())
				break
			}
			if err == nil && after[okKey] > before[okKey] {
				s.reloads.Add(1)
				break
			}
			if time.Now().After(deadline) {
				s.fail("reload %d not applied within 15s (ok reloads still %v)", s.conf.variant, before[okKey])
				break
			}
		}
	}
}

// restarter restarts one redis-server every --restart-every, round robin,
// half an interval out of step with the start, so that no restart falls on
// the end of the run.
func (s *soak) restarter(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	every := s.opts.restartEvery
	if every <= 0 {
		return
	}
	next := time.Now().Add(every / 2)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(every)
		i := n % len(s.servers)
		r := s.servers[i]
		avail := s.env.avail
		avail.down[i].Store(true)
		began := time.Now()
		if err := r.stop(30 * time.Second); err != nil {
			s.fail("restart: %v", err)
		}
		if err := r.start(s.opts.redisServer); err != nil {
			s.fatal("restart: start %s again: %v", r.name, err)
			return
		}
		avail.until[i].Store(time.Now().Add(restartGrace).UnixNano())
		avail.down[i].Store(false)
		s.restarts.Add(1)
		s.logf("restarted %s (%s) in %v", r.name, r.addr(), time.Since(began).Round(time.Millisecond))
	}
}

// report prints a line every --report-every, and one at the end of
// --duration, and returns the samples; it returns early when ctx ends.
func (s *soak) report(ctx context.Context, start time.Time) []sample {
	o := s.opts
	fmt.Fprintf(s.out, "%8s %9s %9s %10s %6s %7s %8s %6s %6s %5s %5s %8s %8s %8s\n",
		"elapsed", "rss_MiB", "heap_MiB", "goroutines", "fds", "clients", "requests", "errors", "unavail", "misr", "lost", "p50", "p99", "p99.9")
	var samples []sample
	prevHist := s.env.hist.snapshot()
	prevCount := s.env.count.snapshot()
	end := start.Add(o.duration)
	for k := 1; ; k++ {
		at := start.Add(time.Duration(k) * o.reportEvery)
		if at.After(end) {
			at = end
		}
		select {
		case <-ctx.Done():
			return samples
		case <-time.After(time.Until(at)):
		}
		sm := sample{at: time.Since(start).Round(time.Second)}
		pid := s.proxy.pid()
		var err error
		if sm.rss, err = rssBytes(pid); err != nil {
			s.fail("report: RSS: %v", err)
		}
		if sm.fds, err = openFDs(pid); err != nil {
			s.fail("report: fds: %v", err)
		}
		if m, err := s.proxy.metrics(); err != nil {
			s.fail("report: /metrics: %v", err)
		} else {
			sm.goroutines = int(m["go_goroutines"])
			sm.heap = int64(m["go_memstats_heap_inuse_bytes"])
			sm.clients = int(m["shardproxy_curr_connections"])
		}
		h := s.env.hist.snapshot()
		qs, _ := quantiles(&h, &prevHist, 0.5, 0.99, 0.999)
		sm.p50, sm.p99, sm.p999 = qs[0], qs[1], qs[2]
		c := s.env.count.snapshot()
		sm.requests, sm.errors, sm.unavailable, sm.misrouted, sm.lost = c[0]-prevCount[0], c[1]-prevCount[1], c[2]-prevCount[2], c[3]-prevCount[3], c[4]-prevCount[4]
		prevHist, prevCount = h, c
		samples = append(samples, sm)
		fmt.Fprintf(s.out, "%8s %9.1f %9.1f %10d %6d %7d %8d %6d %6d %5d %5d %8s %8s %8s\n",
			sm.at, float64(sm.rss)/(1<<20), float64(sm.heap)/(1<<20), sm.goroutines, sm.fds, sm.clients, sm.requests, sm.errors, sm.unavailable,
			sm.misrouted, sm.lost, fmtLatency(sm.p50), fmtLatency(sm.p99), fmtLatency(sm.p999))
		if !at.Before(end) {
			return samples
		}
	}
}

func fmtLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dus", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// verify reads back every key written, through the proxy and from each
// server, once the load has stopped.
func (s *soak) verify() {
	env := s.env
	var all []*keyState
	for w := range env.keys {
		for k := range env.keys[w] {
			if env.keys[w][k].attempted > 0 {
				all = append(all, &env.keys[w][k])
			}
		}
	}
	names := make([]string, len(all))
	for i, st := range all {
		names[i] = st.name
	}
	viaProxy, err := getAll(s.conf.listen, names)
	if err != nil {
		s.fail("final check through the proxy: %v", err)
		return
	}
	direct := make([][]reply, len(s.servers))
	for j, r := range s.servers {
		if direct[j], err = getAll(r.addr(), names); err != nil {
			s.fail("final check on %s: %v", r.name, err)
			return
		}
	}
	var lost, misrouted, elsewhere int
	for i, st := range all {
		p := viaProxy[i]
		if v := st.check(p.str, p.null); v != valueOK {
			s.env.wrong(v, st.name, p.str, p.null, st)
			if v == valueLost {
				lost++
			} else {
				misrouted++
			}
		}
		for j := range s.servers {
			d := direct[j][i]
			if j != st.owner {
				if !d.null {
					elsewhere++
					s.env.probs.add("misrouted", fmt.Sprintf("%s is on %s, which the ring does not place it on", st.name, s.servers[j].name))
				}
				continue
			}
			if d.null != p.null || string(d.str) != string(p.str) {
				misrouted++
				s.env.probs.add("misrouted", fmt.Sprintf("%s: the proxy answered %q, its server %s holds %q", st.name, p.str, s.servers[j].name, d.str))
			}
		}
	}
	s.logf("final check: %d keys read through the proxy and from %d servers: %d lost, %d misrouted, %d on another server",
		len(all), len(s.servers), lost, misrouted, elsewhere)
	if lost+misrouted+elsewhere > 0 {
		s.fail("final check: %d lost, %d misrouted, %d on a server the ring does not place them on", lost, misrouted, elsewhere)
	}
}

// getAll GETs names from addr in pipelined batches, retrying errors for a
// while (a restarted server may still be coming back).
func getAll(addr string, names []string) ([]reply, error) {
	out := make([]reply, len(names))
	const batch = 200
	deadline := time.Now().Add(60 * time.Second)
	for lo := 0; lo < len(names); {
		hi := min(lo+batch, len(names))
		err := getBatch(addr, names[lo:hi], out[lo:hi])
		if err != nil {
			if time.Now().After(deadline) {
				return nil, err
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		lo = hi
	}
	return out, nil
}

func getBatch(addr string, names []string, out []reply) error {
	c, err := dial(addr, nil, 5*time.Second, 16384)
	if err != nil {
		return err
	}
	defer c.close()
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	for _, n := range names {
		c.send("GET", n)
	}
	if err := c.flush(); err != nil {
		return err
	}
	for i, n := range names {
		rep, err := c.read()
		if err != nil {
			return fmt.Errorf("GET %s: %w", n, err)
		}
		if rep.kind != '$' {
			return fmt.Errorf("GET %s: unexpected reply %c%q", n, rep.kind, rep.str)
		}
		out[i] = rep
	}
	return nil
}

// summary prints the drift verdicts, the problems seen, and the reports as
// a Markdown table, and fails the run on drift or on lost or misrouted
// replies.
func (s *soak) summary(samples []sample) {
	o := s.opts
	var rss, gor []point
	for _, sm := range samples {
		if sm.at >= o.warmup {
			rss = append(rss, point{sm.at, float64(sm.rss)})
			gor = append(gor, point{sm.at, float64(sm.goroutines)})
		}
	}
	rssRule := driftRule{Fraction: 0.10, Floor: float64(o.rssFloor), MinSamples: 3}
	gorRule := driftRule{Fraction: 0.10, Floor: float64(o.goroutineFloor), MinSamples: 3}
	rssRes, gorRes := rssRule.judge(rss), gorRule.judge(gor)
	c := s.env.count.snapshot()

	fmt.Fprintf(s.out, "\n## Soak summary\n\n")
	fmt.Fprintf(s.out, "%v, %d idle connections, churn %g/s, %d req/s over %d workers; %d reloads, %d restarts; warm-up %v.\n\n",
		o.duration, o.connections, o.churn, o.rate, o.workers, s.reloads.Load(), s.restarts.Load(), o.warmup)
	fmt.Fprintf(s.out, "Totals: %d requests, %d errors, %d unavailable, %d misrouted, %d lost; %d churn connections (%d ticks skipped), %d connections opened again.\n\n",
		c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
	fmt.Fprintf(s.out, "RSS drift: %s (MiB: %s).\n\n", rssRes, mib(rssRes))
	fmt.Fprintf(s.out, "Goroutine drift: %s.\n\n", gorRes)
	fmt.Fprintln(s.out, "| elapsed | RSS MiB | heap MiB | goroutines | fds | clients | requests | errors | unavailable | misrouted | lost | p50 | p99 | p99.9 |")
	fmt.Fprintln(s.out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, sm := range samples {
		fmt.Fprintf(s.out, "| %s | %.1f | %.1f | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n",
			sm.at, float64(sm.rss)/(1<<20), float64(sm.heap)/(1<<20), sm.goroutines, sm.fds, sm.clients, sm.requests, sm.errors, sm.unavailable,
			sm.misrouted, sm.lost, fmtLatency(sm.p50), fmtLatency(sm.p99), fmtLatency(sm.p999))
	}
	if probs := s.env.probs.list(); len(probs) > 0 {
		fmt.Fprintf(s.out, "\nProblems seen (first %d kinds):\n", maxProblemKinds)
		for _, p := range probs {
			fmt.Fprintf(s.out, "  %s\n", p)
		}
	}
	fmt.Fprintln(s.out)
	if rssRes.Drifts {
		s.fail("RSS drifts upward after the warm-up: %s", rssRes)
	}
	if gorRes.Drifts {
		s.fail("goroutines drift upward after the warm-up: %s", gorRes)
	}
	if c[3] > 0 || c[4] > 0 {
		s.fail("%d misrouted and %d lost replies", c[3], c[4])
	}
}

func mib(d driftResult) string {
	return fmt.Sprintf("trend %+.1f, allowance %.1f", d.Growth/(1<<20), d.Allowance/(1<<20))
}
