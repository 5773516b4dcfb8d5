package proxy

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// The registry keeps what outlives a config: each upstream (one Redis
// server as the proxy connects to it) with its shared connections, its
// dedicated ones, its health and its counters. A pool that a config (or a
// Kubernetes membership change) builds takes its servers' upstreams from
// the registry, so a server that a reload keeps keeps its connections, its
// failure count and its ejection. An upstream that no pool uses any more is
// closed once its connections are idle.
//
// Upstreams are keyed by what makes a connection reusable (network,
// address, AUTH and SELECT), scoped to their pool: nutcracker counts and
// ejects per pool, and the pool's settings (timeout, server_failure_limit)
// apply to what its upstreams do.

// upstreamKey says which connections a server of a pool can reuse.
type upstreamKey struct {
	pool    string
	network string // "tcp" or "unix"
	addr    string // the configured address; a pod server dials where its pod is
	service string // "namespace/name" of a pod server's Service, else ""
	auth    string // sent as AUTH on every new connection; "" for none
	db      int    // sent as SELECT on every new connection when > 0
	// nth tells apart servers of one pool at the same address (a server
	// listed twice under two names), which nutcracker connects to apart.
	nth int
	// TLS (server name, certificates) joins the key once pools speak TLS.
}

// upstreamConfig is what a pool hands the upstreams it uses: its settings
// and counters, which a reload may change without the connections
// changing. It is replaced whole when a new pool takes the upstream.
type upstreamConfig struct {
	timeout      time.Duration // the pool's timeout; 0: none
	autoEject    bool
	failureLimit int32         // server_failure_limit, >= 1
	retryTimeout time.Duration // server_retry_timeout
	errPrefix    string        // "ERR server name (addr): ", for error replies
	logger       *slog.Logger  // With("pool", ..., "server", ...)

	// Counters of the pool and the Server that the upstream adds to.
	forwardErrors    *atomic.Int64
	ejects           *atomic.Int64
	totalConnections *atomic.Int64

	// ringChanged rebuilds the ring of the pool that uses the upstream now,
	// after the upstream was ejected or its ejection ran out.
	ringChanged func()
}

// upstream is one server as the proxy connects to it, across configs.
type upstream struct {
	key     upstreamKey
	dialer  dialer
	config  atomic.Pointer[upstreamConfig]
	stats   stats.Server
	health  serverHealth
	address serverAddress

	// conns are the shared connections; a pool with server_connections n
	// uses the first n. held lists the n of each pool holding the upstream.
	mu    sync.Mutex // guards conns and held
	conns []*backendConn
	held  []int

	dedicated dedicatedPool
	retired   atomic.Bool // no pool uses it any more
}

// serverHealth is an upstream's failure count and ejection, for
// auto_eject_hosts.
type serverHealth struct {
	failures     atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when live
	ejectedAt    atomic.Int64 // unix microseconds of the last ejection, as nutcracker reports it

	mu    sync.Mutex  // guards timer
	timer *time.Timer // brings the upstream back at ejectedUntil
}

// registry holds the upstreams of a Server.
type registry struct {
	mu        sync.Mutex // guards upstreams, retired and closed; taken before an upstream's mu
	upstreams map[upstreamKey]*upstream
	// retired are upstreams out of use whose pinned connections are still
	// open, so that Shutdown closes them too.
	retired map[*upstream]struct{}
	// unused are shared connections that no pool holds any more, closed
	// once idle (closeUnused), or at Shutdown.
	unused map[*backendConn]struct{}
	closed bool
}

// acquire returns the upstream for key, made if there is none, with its
// first n shared connections, and counts the caller as one of its users
// until release. created says whether the upstream is new, so the caller
// can set its address; a new one takes cfg until a pool activates its own.
func (r *registry) acquire(key upstreamKey, n int, cfg *upstreamConfig) (u *upstream, conns []*backendConn, created bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.upstreams == nil {
		r.upstreams = map[upstreamKey]*upstream{}
	}
	u = r.upstreams[key]
	if u == nil {
		u = &upstream{key: key, dialer: dialer{network: key.network, auth: key.auth, db: key.db}}
		u.config.Store(cfg)
		if r.closed {
			u.retired.Store(true)
			u.dedicated.closed = true
		}
		r.upstreams[key] = u
		created = true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.conns) < n {
		u.conns = append(u.conns, &backendConn{up: u, closed: r.closed})
	}
	u.held = append(u.held, n)
	return u, slices.Clone(u.conns[:n]), created
}

// release ends one use of u, by a pool that held n connections, and
// returns the shared connections no remaining user holds, for closeUnused.
// An upstream left without users is retired: it leaves the registry and its
// idle dedicated connections close.
func (r *registry) release(u *upstream, n int) []*backendConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	u.mu.Lock()
	if i := slices.Index(u.held, n); i >= 0 {
		u.held = slices.Delete(u.held, i, i+1)
	}
	need := 0
	for _, h := range u.held {
		need = max(need, h)
	}
	var unused []*backendConn
	if need < len(u.conns) {
		unused = slices.Clone(u.conns[need:])
		clear(u.conns[need:])
		u.conns = u.conns[:need]
	}
	if len(unused) > 0 && r.unused == nil {
		r.unused = map[*backendConn]struct{}{}
	}
	for _, b := range unused {
		r.unused[b] = struct{}{}
	}
	unheld := len(u.held) == 0
	u.mu.Unlock()
	if unheld && r.upstreams[u.key] == u {
		delete(r.upstreams, u.key)
		u.retire()
		if u.dedicated.numPinned() > 0 {
			if r.retired == nil {
				r.retired = map[*upstream]struct{}{}
			}
			r.retired[u] = struct{}{}
		}
	}
	for old := range r.retired {
		if old.dedicated.numPinned() == 0 {
			delete(r.retired, old)
		}
	}
	return unused
}

// close closes every upstream, pinned connections included, for Shutdown:
// requests still waiting fail, so every client returns.
func (r *registry) close() {
	r.mu.Lock()
	r.closed = true
	all := make([]*upstream, 0, len(r.upstreams)+len(r.retired))
	for _, u := range r.upstreams {
		all = append(all, u)
	}
	for u := range r.retired {
		all = append(all, u)
	}
	var conns []*backendConn
	for _, u := range all {
		u.mu.Lock()
		conns = append(conns, u.conns...)
		u.mu.Unlock()
	}
	for b := range r.unused {
		conns = append(conns, b)
	}
	clear(r.unused)
	r.mu.Unlock()
	for _, u := range all {
		u.retire()
		u.dedicated.closeAll()
	}
	for _, b := range conns {
		b.close()
	}
}

// closeUnused closes connections that release returned as soon as no
// request waits on them, or at deadline.
func (r *registry) closeUnused(conns []*backendConn, deadline time.Time) {
	for _, b := range conns {
		for !b.idle() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		b.close()
		r.mu.Lock()
		delete(r.unused, b)
		r.mu.Unlock()
	}
}

// retire marks u out of use: its ejection timer stops and its idle
// dedicated connections close; pinned ones close when their clients let go.
func (u *upstream) retire() {
	u.retired.Store(true)
	u.health.mu.Lock()
	if u.health.timer != nil {
		u.health.timer.Stop()
		u.health.timer = nil
	}
	u.health.mu.Unlock()
	u.dedicated.retire()
}

// errText is the error reply for a request the upstream could not answer.
func (u *upstream) errText(cause string) string { return u.config.Load().errPrefix + cause }

// ok records that the server answered, which resets its failure count.
func (u *upstream) ok() {
	if u.health.failures.Load() != 0 {
		u.health.failures.Store(0)
	}
}

// failed records a failed connection. With auto_eject_hosts, the
// server_failure_limit'th consecutive failure takes the server out of the
// ring for server_retry_timeout; it comes back without a health check, as in
// nutcracker, in the ring of whichever pool uses the upstream by then.
func (u *upstream) failed() {
	cfg := u.config.Load()
	if !cfg.autoEject {
		return
	}
	h := &u.health
	if h.failures.Add(1) < cfg.failureLimit {
		return
	}
	h.failures.Store(0)
	now := time.Now()
	h.ejectedUntil.Store(now.Add(cfg.retryTimeout).UnixNano())
	h.ejectedAt.Store(now.UnixMicro())
	cfg.ejects.Add(1)
	cfg.logger.Warn("server ejected", "retry_in", cfg.retryTimeout)
	h.mu.Lock()
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timer = nil
	if !u.retired.Load() {
		h.timer = time.AfterFunc(cfg.retryTimeout, u.ejectionOver)
	}
	h.mu.Unlock()
	cfg.ringChanged()
}

// ejectionOver runs when an ejection's server_retry_timeout has passed:
// the pool that uses the upstream now rebuilds its ring with it.
func (u *upstream) ejectionOver() {
	if u.retired.Load() {
		return
	}
	u.config.Load().ringChanged()
}

// forgive clears the failure count and any ejection, for a pool without
// auto_eject_hosts.
func (h *serverHealth) forgive() {
	h.mu.Lock()
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	h.mu.Unlock()
	h.failures.Store(0)
	h.ejectedUntil.Store(0)
}

// reset closes the upstream's connections, shared and idle dedicated ones,
// without counting a failure: the server moved, so the next request dials
// its new address at once.
func (u *upstream) reset(why string) {
	u.mu.Lock()
	conns := slices.Clone(u.conns)
	u.mu.Unlock()
	for _, b := range conns {
		b.reset(why)
	}
	u.dedicated.closeIdle()
}

// serverAddress is where an upstream is dialled now, and whether it may
// take requests: the configured address, or wherever discovery last saw
// its pod (address.go).
type serverAddress struct {
	// unusable is why requests cannot go to the server now (no address
	// yet, pod not ready or terminating), nil when they can. The request
	// path reads it with one atomic load.
	unusable atomic.Pointer[string]

	mu        sync.Mutex // guards the fields below
	dial      string
	source    string // "config" or "endpointslice/<name>"
	changedAt time.Time
}

// set points the address at dial (unless it is ""), says where that came
// from (unless source is "") and why the server cannot take requests
// ("" when it can), and reports whether the dial address and the
// usability changed.
func (a *serverAddress) set(dial, source, reason string) (moved, usableChanged bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	wasUsable := a.unusable.Load() == nil
	if reason == "" {
		a.unusable.Store(nil)
	} else {
		a.unusable.Store(&reason)
	}
	if source != "" {
		a.source = source
	}
	moved = dial != "" && dial != a.dial
	if moved {
		a.dial = dial
	}
	usableChanged = wasUsable != (reason == "")
	if moved || usableChanged || a.changedAt.IsZero() {
		a.changedAt = time.Now()
	}
	return moved, usableChanged
}

// unavailable returns why the server cannot take requests now, or "".
func (a *serverAddress) unavailable() string {
	if r := a.unusable.Load(); r != nil {
		return *r
	}
	return ""
}

func (a *serverAddress) dialAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dial
}

func (a *serverAddress) status() (addr, source string, changedAt time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dial, a.source, a.changedAt
}
