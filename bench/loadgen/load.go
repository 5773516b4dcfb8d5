package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// warmupBatch is how many SETs a worker pipelines per round trip while it
// fills the key space.
const warmupBatch = 100

// options returns go-redis options that work through a twemproxy-compatible
// proxy: RESP2, no CLIENT SETINFO or SETNAME, no HELLO (see hello.go), no
// maintenance notifications, and no retries, so every failure is counted.
func (c *config) options() *redis.Options {
	return &redis.Options{
		Addr:            c.Addr,
		Password:        c.Password,
		Dialer:          dialSkippingHello(c.Timeout),
		Protocol:        2,
		DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
		MaxRetries:     -1,
		DialerRetries:  1,
		DialTimeout:    c.Timeout,
		ReadTimeout:    c.Timeout,
		WriteTimeout:   c.Timeout,
		PoolTimeout:    c.Timeout,
		PoolSize:       c.Connections,
		MaxActiveConns: c.Connections,
		// Pipelines use the main pool, so there are exactly --connections
		// connections (by default go-redis keeps a separate pool for them).
		PipelinePoolSize: -1,
	}
}

// clusterOptions returns go-redis options for --cluster: a ClusterClient
// seeded with --addr that learns the slots with CLUSTER SLOTS and sends
// each key to its node, with the connection start and retry policy of
// options. PoolSize is per node: each worker holds at most one connection
// to each node at a time, and a pipeline goes to its nodes in parallel.
func (c *config) clusterOptions() *redis.ClusterOptions {
	o := c.options()
	return &redis.ClusterOptions{
		Addrs:                    []string{c.Addr},
		Password:                 o.Password,
		Dialer:                   o.Dialer,
		Protocol:                 o.Protocol,
		DisableIdentity:          o.DisableIdentity,
		MaintNotificationsConfig: o.MaintNotificationsConfig,
		MaxRetries:               o.MaxRetries,
		DialTimeout:              o.DialTimeout,
		ReadTimeout:              o.ReadTimeout,
		WriteTimeout:             o.WriteTimeout,
		PoolTimeout:              o.PoolTimeout,
		PoolSize:                 o.PoolSize,
		MaxActiveConns:           o.MaxActiveConns,
	}
}

// newClient is the client of a run: one redis.Client with a pool of
// --connections, or with --cluster a ClusterClient.
func (c *config) newClient() redis.UniversalClient {
	if c.Cluster {
		return redis.NewClusterClient(c.clusterOptions())
	}
	return redis.NewClient(c.options())
}

// counters are read by the progress reporter while the worker runs. The
// padding keeps each worker's counters on its own cache line.
type counters struct {
	requests atomic.Int64 // sent, answered or failed
	errors   atomic.Int64
	_        [48]byte
}

// worker drives one connection: it sends a request or a pipeline, waits for
// the replies, records the round trip, and starts again.
type worker struct {
	counters

	client    redis.UniversalClient
	keys      keyGen
	rng       *rand.Rand
	readRatio float64
	depth     int
	prefix    string
	value     []byte
	keyBuf    []byte

	stop   *atomic.Bool  // set when the run is over
	pacer  pacer         // --rate: sleeps until the next unit is due
	budget *atomic.Int64 // requests left in --requests mode, nil otherwise

	// With --rate, the worker's schedule (see runPaced): its unit k is due at
	// start+offset+k*interval, and none is due at or after end (zero in
	// --requests mode).
	start    time.Time
	end      time.Time
	offset   time.Duration
	interval float64 // ns; a float, so that k*interval does not drift

	// Owned by the worker; read after it has finished.
	hist     histogram
	lag      histogram // --rate: how late each unit was sent after it was due
	behind   int64     // --rate: requests sent more than one interval late
	misses   int64     // GETs answered with nil
	firstErr error
}

// key returns the name of key i.
func (w *worker) key(i uint64) string {
	w.keyBuf = strconv.AppendUint(append(w.keyBuf[:0], w.prefix...), i, 10)
	return string(w.keyBuf)
}

// claim takes up to n requests from the budget and returns how many it got.
func (w *worker) claim(n int) int {
	if w.budget == nil {
		return n
	}
	left := w.budget.Add(-int64(n))
	switch {
	case left >= 0:
		return n
	case left > -int64(n):
		return n + int(left)
	default:
		return 0
	}
}

func (w *worker) fail(err error) {
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// run sends requests until the run is stopped or the budget is spent.
func (w *worker) run(wg *sync.WaitGroup) {
	defer wg.Done()
	ctx := context.Background() // the stop flag ends the run, not a context, so no request is cut short
	var pipe redis.Pipeliner
	if w.depth > 1 {
		pipe = w.client.Pipeline()
	}
	for !w.stop.Load() {
		n := w.claim(w.depth)
		if n == 0 {
			return
		}
		if pipe == nil {
			w.one(ctx, time.Time{})
		} else {
			w.pipelined(ctx, pipe, n, time.Time{})
		}
	}
}

// runPaced is run for --rate: it sends a request, or a pipeline, when each
// is due, whatever the replies do. A unit that is due while the one before
// is still waiting for its reply is sent as soon as that reply is in, and
// any overdue units after it at once, back to back; each one's latency is
// still measured from when it was due, so a stall counts for every request
// it held up and not only for the one that met it.
func (w *worker) runPaced(wg *sync.WaitGroup) {
	defer wg.Done()
	ctx := context.Background()
	var pipe redis.Pipeliner
	if w.depth > 1 {
		pipe = w.client.Pipeline()
	}
	for k := 0; !w.stop.Load(); k++ {
		due := w.start.Add(w.offset + time.Duration(float64(k)*w.interval))
		if !w.end.IsZero() && !due.Before(w.end) {
			return
		}
		if wait := time.Until(due); wait > 0 && !w.pacer.sleep(wait) {
			return
		}
		n := w.claim(w.depth)
		if n == 0 {
			return
		}
		late := time.Since(due)
		w.lag.record(late)
		if late > time.Duration(w.interval) {
			w.behind += int64(n)
		}
		if pipe == nil {
			w.one(ctx, due)
		} else {
			w.pipelined(ctx, pipe, n, due)
		}
	}
}

// one sends a single GET or SET. Its latency is measured from due, when it
// was scheduled (--rate), or from when it is sent if due is zero.
func (w *worker) one(ctx context.Context, due time.Time) {
	key := w.key(w.keys.next())
	read := w.rng.Float64() < w.readRatio
	start := due
	if start.IsZero() {
		start = time.Now()
	}
	var err error
	if read {
		err = w.client.Get(ctx, key).Err()
	} else {
		err = w.client.Set(ctx, key, w.value, 0).Err()
	}
	d := time.Since(start)
	switch {
	case err == nil:
		w.hist.record(d)
	case errors.Is(err, redis.Nil):
		w.misses++
		w.hist.record(d)
	default:
		w.fail(err)
		w.errors.Add(1)
	}
	w.requests.Add(1)
}

// pipelined sends n GETs and SETs in one pipeline. Each request that
// succeeded is recorded with the latency of the whole round trip, measured
// from due as in one.
func (w *worker) pipelined(ctx context.Context, pipe redis.Pipeliner, n int, due time.Time) {
	for range n {
		key := w.key(w.keys.next())
		if w.rng.Float64() < w.readRatio {
			pipe.Get(ctx, key)
		} else {
			pipe.Set(ctx, key, w.value, 0)
		}
	}
	start := due
	if start.IsZero() {
		start = time.Now()
	}
	cmds, _ := pipe.Exec(ctx) // the first error is in cmds too
	d := time.Since(start)
	var failed int
	for _, cmd := range cmds {
		switch err := cmd.Err(); {
		case err == nil:
		case errors.Is(err, redis.Nil):
			w.misses++
		default:
			w.fail(err)
			failed++
		}
	}
	w.hist.recordN(d, uint64(n-failed))
	if failed > 0 {
		w.errors.Add(int64(failed))
	}
	w.requests.Add(int64(n))
}

// warm SETs keys lo..hi-1 in pipelines of warmupBatch and adds the number
// that failed to failed.
func (w *worker) warm(lo, hi uint64, failed *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx := context.Background()
	pipe := w.client.Pipeline()
	for i := lo; i < hi; {
		for ; i < hi && pipe.Len() < warmupBatch; i++ {
			pipe.Set(ctx, w.key(i), w.value, 0)
		}
		cmds, _ := pipe.Exec(ctx)
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				w.fail(err)
				failed.Add(1)
			}
		}
	}
}

// result is what a run reports. Latencies are of answered requests only.
type result struct {
	Addr        string  `json:"addr"`
	Cluster     bool    `json:"cluster,omitempty"`
	Connections int     `json:"connections"`
	Pipeline    int     `json:"pipeline"`
	Keys        int     `json:"keys"`
	Dist        string  `json:"dist"`
	ZipfS       float64 `json:"zipf_s,omitempty"`
	ReadRatio   float64 `json:"read_ratio"`
	ValueSize   int     `json:"value_size"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	ErrorRate   float64 `json:"error_rate"`
	Misses      int64   `json:"misses"` // GETs answered with nil: not errors
	Seconds     float64 `json:"seconds"`
	RPS         int64   `json:"rps"`
	P50us       float64 `json:"p50_us"`
	P90us       float64 `json:"p90_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
	MaxUs       float64 `json:"max_us"`
	MeanUs      float64 `json:"mean_us"`
	FirstError  string  `json:"first_error,omitempty"`
	WarmupKeys  int     `json:"warmup_keys,omitempty"`
	WarmupErr   int64   `json:"warmup_errors,omitempty"`
	WarmupFirst string  `json:"warmup_first_error,omitempty"`
	MaxErrRate  float64 `json:"max_error_rate"`
	Passed      bool    `json:"passed"`
	Failure     string  `json:"failure,omitempty"` // why Passed is false

	// --rate: the requests per second asked for and sent; how many requests
	// were sent more than one interval after they were due; whether the
	// achieved rate is more than belowTargetBy short of the target, so
	// that the target (or loadgen) could not keep up; and how late units
	// were sent after they were due, which the latencies include.
	TargetRate   float64 `json:"target_rate,omitempty"`
	AchievedRate float64 `json:"achieved_rate,omitempty"`
	Behind       *int64  `json:"behind,omitempty"`
	BelowTarget  bool    `json:"below_target,omitempty"`
	SendLagP50us float64 `json:"send_lag_p50_us,omitempty"`
	SendLagP99us float64 `json:"send_lag_p99_us,omitempty"`

	// --blocked: the connections held in BLPOP, and how many of them were
	// answered, which they must not be.
	Blocked         int    `json:"blocked,omitempty"`
	BlockedAnswered int    `json:"blocked_answered,omitempty"`
	BlockedFirst    string `json:"blocked_first_answer,omitempty"`
}

// belowTargetBy is how far short of --rate the achieved rate may fall
// before the result says the target could not keep up.
const belowTargetBy = 0.05

// failure says why the run failed, or returns "" if it passed: nothing was
// sent, or more than the allowed fraction of requests or warmup SETs failed.
func (r *result) failure() string {
	switch {
	case r.Requests == 0:
		return "no requests were sent"
	case r.ErrorRate > r.MaxErrRate:
		return fmt.Sprintf("%d of %d requests failed, more than --max-error-rate %g", r.Errors, r.Requests, r.MaxErrRate)
	case r.WarmupKeys > 0 && float64(r.WarmupErr)/float64(r.WarmupKeys) > r.MaxErrRate:
		return fmt.Sprintf("warmup: %d of %d SETs failed, more than --max-error-rate %g", r.WarmupErr, r.WarmupKeys, r.MaxErrRate)
	case r.BlockedAnswered > 0:
		return fmt.Sprintf("%d of %d blocked connections were answered; the first: %s", r.BlockedAnswered, r.Blocked, r.BlockedFirst)
	}
	return ""
}

// run generates load as cfg says, writes a progress line to progress every
// second, and returns the totals. Cancelling ctx ends the run early with the
// totals so far.
func run(ctx context.Context, cfg config, progress io.Writer) (res result) {
	client := cfg.newClient()
	defer client.Close()

	var stop atomic.Bool
	var workers []*worker
	halted := false
	stopAll := func() { // called from this goroutine only
		stop.Store(true)
		if !halted {
			halted = true
			for _, w := range workers {
				if w.pacer != nil {
					w.pacer.halt()
				}
			}
		}
	}
	var budget *atomic.Int64
	if cfg.Requests > 0 {
		budget = new(atomic.Int64)
		budget.Store(cfg.Requests)
	}
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	workers = make([]*worker, cfg.Connections)
	for i := range workers {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		keys, err := newKeyGen(cfg.Dist, cfg.Keys, cfg.ZipfS, rng)
		if err != nil {
			panic(err) // parseFlags has checked these
		}
		workers[i] = &worker{
			client:    client,
			keys:      keys,
			rng:       rng,
			readRatio: cfg.ReadRatio,
			depth:     cfg.Pipeline,
			prefix:    cfg.KeyPrefix,
			value:     value,
			keyBuf:    make([]byte, 0, len(cfg.KeyPrefix)+20),
			stop:      &stop,
			budget:    budget,
		}
		if cfg.Rate > 0 {
			// The connections share the rate evenly, and connection i's
			// schedule is shifted by i/connections of an interval, so that
			// the units are spread over time rather than sent together.
			interval := float64(cfg.Connections*cfg.Pipeline) * 1e9 / cfg.Rate
			workers[i].pacer = newPacer()
			workers[i].interval = interval
			workers[i].offset = time.Duration(interval * float64(i) / float64(cfg.Connections))
		}
	}

	res = result{
		Addr:        cfg.Addr,
		Cluster:     cfg.Cluster,
		Connections: cfg.Connections,
		Pipeline:    cfg.Pipeline,
		Keys:        cfg.Keys,
		Dist:        cfg.Dist,
		ReadRatio:   cfg.ReadRatio,
		ValueSize:   cfg.ValueSize,
		MaxErrRate:  cfg.MaxErrorRate,
	}
	if cfg.Dist == "zipf" {
		res.ZipfS = cfg.ZipfS
	}
	if cfg.Blocked > 0 {
		res.Blocked = cfg.Blocked
		blocked, err := openBlocked(cfg, cfg.Blocked)
		if err != nil {
			res.Failure = err.Error()
			return res
		}
		defer blocked.close()
		res.BlockedAnswered, res.BlockedFirst = blocked.answered(blockedSettle)
		if res.BlockedAnswered > 0 {
			res.Failure = fmt.Sprintf("%d of %d blocked connections were answered before the load began; the first: %s",
				res.BlockedAnswered, res.Blocked, res.BlockedFirst)
			return res
		}
		fmt.Fprintf(progress, "blocked: %d connections in BLPOP\n", cfg.Blocked)
		defer func() {
			if res.BlockedAnswered, res.BlockedFirst = blocked.answered(blockedRecheck); res.BlockedAnswered > 0 {
				res.Failure = res.failure()
				res.Passed = false
			}
		}()
	}
	if cfg.Warmup {
		res.WarmupKeys = cfg.Keys
		res.WarmupErr = warmup(workers, uint64(cfg.Keys), progress)
		for _, w := range workers {
			if res.WarmupFirst == "" && w.firstErr != nil {
				res.WarmupFirst = w.firstErr.Error()
			}
			w.firstErr = nil
		}
	}

	if cfg.Rate > 0 && !cfg.Warmup {
		connect(workers)
	}

	var wg sync.WaitGroup
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		if cfg.Rate > 0 {
			w.start = start
			if budget == nil {
				w.end = start.Add(cfg.Duration)
			}
			go w.runPaced(&wg)
		} else {
			go w.run(&wg)
		}
	}
	done := make(chan struct{})
	go closeWhenDone(&wg, done)

	var deadline <-chan time.Time
	if budget == nil {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastReq, lastErr int64
	last := start
wait:
	for {
		select {
		case now := <-tick.C:
			req, errs := sum(workers)
			rate := float64(req-lastReq) / now.Sub(last).Seconds()
			fmt.Fprintf(progress, "elapsed %3.0fs  req/s %9.0f  errors %d\n",
				now.Sub(start).Seconds(), rate, errs-lastErr)
			lastReq, lastErr, last = req, errs, now
		case <-deadline:
			stopAll()
		case <-ctx.Done():
			stopAll()
		case <-done:
			break wait
		}
	}
	elapsed := time.Since(start)
	stopAll() // frees the pacers

	var h, lag histogram
	var behind int64
	for _, w := range workers {
		h.merge(&w.hist)
		lag.merge(&w.lag)
		behind += w.behind
		res.Misses += w.misses
		if res.FirstError == "" && w.firstErr != nil {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.Requests, res.Errors = sum(workers)
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.RPS = int64(float64(res.Requests) / res.Seconds)
	}
	if res.Requests > 0 {
		res.ErrorRate = float64(res.Errors) / float64(res.Requests)
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	res.P50us = us(h.quantile(0.50))
	res.P90us = us(h.quantile(0.90))
	res.P99us = us(h.quantile(0.99))
	res.P999us = us(h.quantile(0.999))
	res.MaxUs = us(time.Duration(h.max))
	res.MeanUs = us(h.mean())
	if cfg.Rate > 0 {
		res.TargetRate = cfg.Rate
		if res.Seconds > 0 {
			res.AchievedRate = math.Round(float64(res.Requests)/res.Seconds*10) / 10
		}
		res.Behind = &behind
		res.BelowTarget = res.AchievedRate < res.TargetRate*(1-belowTargetBy)
		res.SendLagP50us = us(lag.quantile(0.50))
		res.SendLagP99us = us(lag.quantile(0.99))
	}
	res.Failure = res.failure()
	res.Passed = res.Failure == ""
	return res
}

// warmup SETs every key once, spread over all workers, and returns how many
// SETs failed.
func warmup(workers []*worker, keys uint64, progress io.Writer) int64 {
	start := time.Now()
	var failed atomic.Int64
	var wg sync.WaitGroup
	n := uint64(len(workers))
	for i, w := range workers {
		lo, hi := keys*uint64(i)/n, keys*uint64(i+1)/n
		wg.Add(1)
		go w.warm(lo, hi, &failed, &wg)
	}
	wg.Wait()
	fmt.Fprintf(progress, "warmup: set %d keys in %.2fs, %d errors\n",
		keys, time.Since(start).Seconds(), failed.Load())
	return failed.Load()
}

// connect has every worker send a PING at once, so that the client's
// connections are open before a --rate schedule starts and dialing them
// does not count in the first requests' latencies (warmup does the same).
// A failed PING is left for the run to report.
func connect(workers []*worker) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go w.ping(&wg)
	}
	wg.Wait()
}

func (w *worker) ping(wg *sync.WaitGroup) {
	defer wg.Done()
	w.client.Ping(context.Background())
}

func closeWhenDone(wg *sync.WaitGroup, done chan<- struct{}) {
	wg.Wait()
	close(done)
}

// sum adds up the workers' live counters.
func sum(workers []*worker) (requests, errors int64) {
	for _, w := range workers {
		requests += w.requests.Load()
		errors += w.errors.Load()
	}
	return requests, errors
}
