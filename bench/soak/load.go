package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// counters are the run's totals; a report prints their growth.
type counters struct {
	requests    atomic.Uint64 // GET and SET by the workers, PING and GET by churn, idle PINGs
	errors      atomic.Uint64 // failures not explained by a server restart
	unavailable atomic.Uint64 // failures of keys whose server was restarting
	misrouted   atomic.Uint64
	lost        atomic.Uint64
	churned     atomic.Uint64 // churn connections completed
	churnSkip   atomic.Uint64 // churn ticks skipped because too many were still open
	redials     atomic.Uint64 // idle and worker connections opened again after a failure
}

func (c *counters) snapshot() [8]uint64 {
	return [8]uint64{c.requests.Load(), c.errors.Load(), c.unavailable.Load(), c.misrouted.Load(),
		c.lost.Load(), c.churned.Load(), c.churnSkip.Load(), c.redials.Load()}
}

// problems keeps the first messages of each kind, for the log and the
// final report, without growing without bound.
type problems struct {
	mu    sync.Mutex
	seen  map[string]int
	order []string
}

const maxProblemKinds = 50

func (p *problems) add(kind, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = make(map[string]int)
	}
	k := kind + ": " + msg
	if _, ok := p.seen[k]; !ok {
		if len(p.order) >= maxProblemKinds {
			return
		}
		p.order = append(p.order, k)
	}
	p.seen[k]++
}

func (p *problems) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.order))
	for _, k := range p.order {
		out = append(out, fmt.Sprintf("%s (x%d)", k, p.seen[k]))
	}
	return out
}

// availability says, per server, whether a failure of a key on it is
// explained by a restart: from just before SIGTERM until grace after the
// server answers again.
type availability struct {
	down  []atomic.Bool
	until []atomic.Int64 // unix nanoseconds
}

func newAvailability(n int) *availability {
	return &availability{down: make([]atomic.Bool, n), until: make([]atomic.Int64, n)}
}

func (a *availability) restarting(server int) bool {
	return a.down[server].Load() || time.Now().UnixNano() < a.until[server].Load()
}

// loadEnv is what the load goroutines share.
type loadEnv struct {
	opts    *options
	proxy   string // client address of the proxy
	sources []*net.TCPAddr
	hist    *histogram
	count   *counters
	probs   *problems
	avail   *availability
	keys    [][]keyState // per worker; only that worker writes its slice
	names   []string     // every key name, read-only, for churn
	owners  []int        // the server of names[i]
	nextSrc atomic.Uint32
}

func (e *loadEnv) source() *net.TCPAddr {
	if len(e.sources) == 0 {
		return nil
	}
	return e.sources[int(e.nextSrc.Add(1))%len(e.sources)]
}

// failure counts an error of a request on a key owned by server (-1 for no
// key): unavailable while that server restarts, else an error.
func (e *loadEnv) failure(server int, what string, err error) {
	if server >= 0 && e.avail.restarting(server) {
		e.count.unavailable.Add(1)
		e.probs.add("unavailable", what+": "+err.Error())
		return
	}
	e.count.errors.Add(1)
	e.probs.add("error", what+": "+err.Error())
}

// wrong counts a reply that failed the value check.
func (e *loadEnv) wrong(v verdict, key string, value []byte, null bool, st *keyState) {
	shown := fmt.Sprintf("%q", value)
	if null {
		shown = "nil"
	}
	detail := fmt.Sprintf("GET %s = %s", key, shown)
	if st != nil {
		detail += fmt.Sprintf(" (acknowledged #%d, unknown from #%d to #%d)", st.acked, st.unknownLo, st.attempted)
	}
	if v == valueMisrouted {
		e.count.misrouted.Add(1)
	} else {
		e.count.lost.Add(1)
	}
	e.probs.add(v.String(), detail)
}

const opTimeout = 10 * time.Second

// worker sends a paced mix of GET and SET of its own keys over one
// connection until ctx ends.
func (e *loadEnv) worker(ctx context.Context, id int, wg *sync.WaitGroup) {
	defer wg.Done()
	keys := e.keys[id]
	rng := rand.New(rand.NewPCG(uint64(id), 0x50a4))
	interval := time.Duration(float64(time.Second) * float64(e.opts.workers) / float64(e.opts.rate))
	next := time.Now().Add(time.Duration(rng.Int64N(int64(interval) + 1)))
	var c *conn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if -d > time.Second {
			next = time.Now() // far behind: do not burst to catch up
		}
		next = next.Add(interval)
		if c == nil {
			var err error
			c, err = dial(e.proxy, nil, 5*time.Second, 4096)
			if err != nil {
				e.failure(-1, "worker connect", err)
				continue
			}
		}
		st := &keys[rng.IntN(len(keys))]
		start := time.Now()
		var err error
		if rng.IntN(2) == 0 {
			seq := st.nextSeq()
			var rep reply
			rep, err = c.do(opTimeout, "SET", st.name, encodeValue(st.name, seq))
			ok := err == nil && rep.kind == '+' && string(rep.str) == "OK"
			st.setDone(seq, ok)
			if err == nil && !ok {
				err = fmt.Errorf("unexpected SET reply %c%q", rep.kind, rep.str)
			}
			if err != nil {
				e.failure(st.owner, "SET", err)
			}
		} else {
			var rep reply
			rep, err = c.do(opTimeout, "GET", st.name)
			switch {
			case err != nil:
				e.failure(st.owner, "GET", err)
			case rep.kind != '$':
				e.failure(st.owner, "GET", fmt.Errorf("unexpected reply %c%q", rep.kind, rep.str))
			default:
				if v := st.check(rep.str, rep.null); v != valueOK {
					e.wrong(v, st.name, rep.str, rep.null, st)
				}
			}
		}
		if err == nil {
			e.hist.record(time.Since(start))
		}
		e.count.requests.Add(1)
		if err != nil && !isReplyError(err) {
			c.close()
			c = nil
			e.count.redials.Add(1)
		}
	}
}

// churn opens --churn connections a second until ctx ends; each sends PING
// and GET of a random key, checks the value is that key's, and closes.
func (e *loadEnv) churn(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	if e.opts.churn <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / e.opts.churn)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	inFlight := make(chan struct{}, 1000)
	var running sync.WaitGroup
	defer running.Wait()
	rng := rand.New(rand.NewPCG(7, 7))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case inFlight <- struct{}{}:
		default:
			e.count.churnSkip.Add(1)
			continue
		}
		i := rng.IntN(len(e.names))
		running.Add(1)
		go e.churnOne(i, inFlight, &running)
	}
}

func (e *loadEnv) churnOne(i int, inFlight chan struct{}, running *sync.WaitGroup) {
	defer running.Done()
	defer func() { <-inFlight }()
	c, err := dial(e.proxy, e.source(), 5*time.Second, 512)
	if err != nil {
		e.failure(-1, "churn connect", err)
		return
	}
	defer c.close()
	start := time.Now()
	rep, err := c.do(opTimeout, "PING")
	e.count.requests.Add(1)
	if err != nil || rep.kind != '+' {
		e.failure(-1, "churn PING", orUnexpected(err, rep))
		return
	}
	e.hist.record(time.Since(start))
	name, owner := e.names[i], e.owners[i]
	start = time.Now()
	rep, err = c.do(opTimeout, "GET", name)
	e.count.requests.Add(1)
	if err != nil || rep.kind != '$' {
		e.failure(owner, "churn GET", orUnexpected(err, rep))
		return
	}
	e.hist.record(time.Since(start))
	if !rep.null {
		if key, _, ok := decodeValue(rep.str); !ok || string(key) != name {
			e.wrong(valueMisrouted, name, rep.str, false, nil)
		}
	}
	e.count.churned.Add(1)
}

func orUnexpected(err error, rep reply) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected reply %c%q", rep.kind, rep.str)
}

var pingCmd = []byte("*1\r\n$4\r\nPING\r\n")

// idleGroup holds its share of the long-lived connections, and PINGs each
// once per --idle-ping, spread evenly, until ctx ends.
func (e *loadEnv) idleGroup(ctx context.Context, n int, opened *atomic.Int64, ready *sync.WaitGroup, wg *sync.WaitGroup) {
	defer wg.Done()
	conns := make([]net.Conn, n)
	d := net.Dialer{Timeout: 10 * time.Second}
	buf := make([]byte, 64)
	for i := range conns {
		for ctx.Err() == nil {
			d.LocalAddr = e.source()
			c, err := d.Dial("tcp", e.proxy)
			if err == nil {
				// One PING at once, so that the proxy has set up every
				// connection before the load starts.
				err = pingRaw(c, buf)
				e.count.requests.Add(1)
				if err == nil {
					conns[i] = c
					opened.Add(1)
					break
				}
				c.Close()
			}
			e.failure(-1, "idle connect", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	ready.Done()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if n == 0 {
		<-ctx.Done()
		return
	}
	gap := e.opts.idlePing / time.Duration(n)
	for i := 0; ; i = (i + 1) % n {
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		c := conns[i]
		if c == nil {
			d.LocalAddr = e.source()
			nc, err := d.Dial("tcp", e.proxy)
			if err != nil {
				e.failure(-1, "idle connect", err)
				continue
			}
			conns[i], c = nc, nc
			opened.Add(1)
			e.count.redials.Add(1)
		}
		start := time.Now()
		err := pingRaw(c, buf)
		e.count.requests.Add(1)
		if err != nil {
			e.failure(-1, "idle PING", err)
			c.Close()
			conns[i] = nil
			opened.Add(-1)
			continue
		}
		e.hist.record(time.Since(start))
	}
}

// pingRaw sends PING and expects +PONG on a bare connection.
func pingRaw(c net.Conn, buf []byte) error {
	c.SetDeadline(time.Now().Add(opTimeout))
	if _, err := c.Write(pingCmd); err != nil {
		return err
	}
	n := 0
	for n < 7 {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			return err
		}
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return errors.New("unexpected PING reply " + fmt.Sprintf("%q", buf[:n]))
	}
	return nil
}
