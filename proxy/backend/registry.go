package backend

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/internal/tlsfiles"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Key says which connections a server of a pool can reuse: the registry
// keeps one Upstream per Key. Upstreams are keyed by what makes a
// connection reusable (network, address, AUTH and SELECT), scoped to their
// pool: nutcracker counts and ejects per pool, and the pool's settings
// (timeout, server_failure_limit) apply to what its upstreams do.
type Key struct {
	Pool    string
	Network string // "tcp" or "unix"
	Addr    string // the configured address; a pod server dials where its pod is
	Service string // "namespace/name" of a pod server's Service, else ""
	Auth    string // sent as AUTH on every new connection; "" for none
	User    string // AUTH's user with Auth (server_auth_user); "" for default
	DB      int    // sent as SELECT on every new connection when > 0
	// Nth tells apart servers of one pool at the same address (a server
	// listed twice under two names), which nutcracker connects to apart.
	Nth int
	// Group is the name of a group's server, whose connections all check
	// with ROLE that the node is a master (group.go); "" for a plain server.
	Group string
	// Replica, with Group, makes it one of the group's replicas, whose
	// connections check with ROLE that the node is a replica with its
	// master link up (replica.go).
	Replica bool
	// TLS is how its connections speak TLS; the zero TLS for plain TCP.
	TLS TLS

	// ReadOnly makes every connection send READONLY in its handshake, so
	// that a Redis Cluster replica serves reads of its master's slots on
	// it rather than answering -MOVED (cluster_replicas.go in proxy).
	ReadOnly bool
}

// Config is what a pool hands the upstreams it uses: its settings and
// counters, which a reload may change without the connections changing.
// It is replaced whole (SetConfig) when a new pool takes the upstream, and
// not changed after.
type Config struct {
	Timeout      time.Duration // the pool's timeout; 0: none
	AutoEject    bool
	FailureLimit int32         // server_failure_limit, >= 1
	RetryTimeout time.Duration // server_retry_timeout
	ErrPrefix    string        // "ERR server name (addr): ", for error replies
	Logger       *slog.Logger  // With("pool", ..., "server", ...)

	// Counters of the pool and the Server that the upstream adds to.
	ForwardErrors    *atomic.Int64
	Ejects           *atomic.Int64
	TotalConnections *atomic.Int64

	// HealthChanged runs after the upstream was ejected or its ejection ran
	// out: the pool that uses the upstream now rebuilds its ring.
	HealthChanged func()
	// MasterDoubt, for a group, runs when a sign says its master may have
	// moved: a connection lost or refused, or ROLE not master. It must
	// not block. nil for a plain server.
	MasterDoubt func()
}

// Upstream is one server as the proxy connects to it, across configs:
// its shared and dedicated connections, health, address and counters.
type Upstream struct {
	key     Key
	dialer  dialer
	config  atomic.Pointer[Config]
	stats   stats.Server
	health  Health
	address Address

	// conns are the shared connections, RESP2, each with its RESP3 twin
	// for clients that said HELLO 3 (dialled at its first request, closed
	// with it); a pool with server_connections n uses the first n. held
	// lists the n of each pool holding the upstream.
	mu    sync.Mutex // guards conns and held
	conns []*Conn
	held  []int

	private    map[*Conn]struct{} // guarded by mu: connections of one client each (NewPrivateConn)
	dedicated  dedicatedPool      // RESP2
	dedicated3 dedicatedPool      // RESP3
	retired    atomic.Bool        // no pool uses it any more

	// resp3 is what the last RESP3 handshake said of the server: resp3Unknown
	// until one completed or was refused. nextProbe is when ProbeRESP3 may
	// dial again after a probe that showed nothing.
	resp3     atomic.Int32
	probeMu   sync.Mutex // one ProbeRESP3 dials at a time; guards nextProbe
	nextProbe time.Time
	// onPush, when set, gets every push message (RESP3's >) the server
	// sends on a shared connection, which answers no request; unset, they
	// are dropped and counted in pushesDropped.
	onPush        atomic.Pointer[PushHandler]
	pushesDropped atomic.Int64
	blocked       atomic.Int32 // clients blocked on it now (Blocked)
}

// What an upstream's RESP3 handshakes showed.
const (
	resp3Unknown int32 = iota
	resp3Yes
	resp3No
)

// PushHandler gets a push message a server sent on a shared connection:
// the whole message, valid only during the call, which runs on the
// connection's reader and must not block.
type PushHandler func(push []byte)

// SetPushHandler makes h receive the push messages of u's shared
// connections from now on; nil drops them.
func (u *Upstream) SetPushHandler(h PushHandler) {
	if h == nil {
		u.onPush.Store(nil)
		return
	}
	u.onPush.Store(&h)
}

// Blocked is the count of clients blocked on u now, each on a dedicated
// connection, which the proxy bounds by blocking_connections; it lives
// with u, so a reload that keeps the server keeps the count.
func (u *Upstream) Blocked() *atomic.Int32 { return &u.blocked }

// PushesDropped reports how many push messages arrived with no handler set.
func (u *Upstream) PushesDropped() int64 { return u.pushesDropped.Load() }

// push hands a push message to the handler, or drops it.
func (u *Upstream) push(msg []byte) {
	if h := u.onPush.Load(); h != nil {
		(*h)(msg)
		return
	}
	u.pushesDropped.Add(1)
	u.config.Load().Logger.Debug("push message dropped", "bytes", len(msg))
}

// learnProto records what a handshake for proto, which ended in err, shows
// of the server's RESP3: a completed one that it speaks it, one refused
// with ErrNoRESP3 that it does not. Any other failure shows nothing.
func (u *Upstream) learnProto(proto int, err error) {
	switch {
	case proto != RESP3:
	case err == nil:
		u.resp3.Store(resp3Yes)
	case errors.Is(err, ErrNoRESP3):
		u.resp3.Store(resp3No)
	}
}

// SpeaksRESP3 reports whether the server speaks RESP3 (HELLO 3), as far as
// its RESP3 handshakes showed; known is false before one has completed or
// been refused.
func (u *Upstream) SpeaksRESP3() (yes, known bool) {
	switch u.resp3.Load() {
	case resp3Yes:
		return true, true
	case resp3No:
		return false, true
	}
	return false, false
}

// probeInterval is how often ProbeRESP3 dials a server whose RESP3 is
// still unknown, so that clients saying HELLO 3 to a pool whose server is
// down do not make the proxy dial it for each of them.
const probeInterval = time.Second

// ProbeRESP3 finds out whether the server speaks RESP3 if no handshake has
// shown it yet, by opening a RESP3 dedicated connection, which it keeps for
// reuse. It reports what is known then; a server that cannot be reached
// leaves it unknown, and is dialled again at most once per probeInterval.
func (u *Upstream) ProbeRESP3() (yes, known bool) {
	if yes, known = u.SpeaksRESP3(); known {
		return yes, known
	}
	// Clients that ask together wait for one probe and share its answer.
	u.probeMu.Lock()
	defer u.probeMu.Unlock()
	if yes, known = u.SpeaksRESP3(); known || time.Now().Before(u.nextProbe) {
		return yes, known
	}
	if d, err := u.DialDedicatedProto(RESP3); err == nil {
		d.Release()
	}
	if yes, known = u.SpeaksRESP3(); !known {
		u.nextProbe = time.Now().Add(probeInterval)
	}
	return yes, known
}

// dedicatedFor returns u's dedicated connections of protocol proto.
func (u *Upstream) dedicatedFor(proto int) *dedicatedPool {
	if proto == RESP3 {
		return &u.dedicated3
	}
	return &u.dedicated
}

// Health is an upstream's failure count and ejection, for
// auto_eject_hosts.
type Health struct {
	failures     atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when live
	ejectedAt    atomic.Int64 // unix microseconds of the last ejection, as nutcracker reports it
	// down is set by a failed connect or connection and cleared by a
	// connect that succeeds, with or without auto_eject_hosts.
	down atomic.Bool

	mu    sync.Mutex  // guards timer
	timer *time.Timer // brings the upstream back at ejectedUntil
}

// Registry holds the upstreams of a Server, keyed by Key. A pool that a
// config (or a Kubernetes membership change) builds takes its servers'
// upstreams from it (Acquire), so a server that a reload keeps keeps its
// connections, its failure count and its ejection; an upstream that no pool
// uses any more (Release) is closed once its connections are idle. The zero
// Registry is empty and ready to use.
type Registry struct {
	mu        sync.Mutex // guards upstreams, retired and closed; taken before an upstream's mu
	upstreams map[Key]*Upstream
	// retired are upstreams out of use whose pinned connections are still
	// open, so that Shutdown closes them too.
	retired map[*Upstream]struct{}
	// unused are shared connections that no pool holds any more, closed
	// once idle (CloseUnused), or at Shutdown.
	unused map[*Conn]struct{}
	closed bool
	// tls are the server TLS files of every upstream, by their paths,
	// without the server name (tls.go).
	tls map[TLS]*tlsfiles.Files
}

// Acquire returns the upstream for key, made if there is none, with its
// first n shared connections, and counts the caller as one of its users
// until Release. created says whether the upstream is new, so the caller
// can set its address; a new one takes cfg until a pool activates its own.
func (r *Registry) Acquire(key Key, n int, cfg *Config) (u *Upstream, conns []*Conn, created bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.upstreams == nil {
		r.upstreams = map[Key]*Upstream{}
	}
	u = r.upstreams[key]
	if u == nil {
		u = &Upstream{key: key, dialer: dialer{network: key.Network, auth: key.Auth, user: key.User, db: key.DB, group: key.Group, replica: key.Replica, readOnly: key.ReadOnly}}
		if key.Group != "" && !key.Replica {
			u.dialer.doubt = u.doubt
		}
		if key.TLS.CAFile != "" {
			u.dialer.tls = &tlsDial{files: r.tlsFilesLocked(key.TLS), serverName: key.TLS.ServerName, reloadFailed: u.tlsReloadFailed}
		}
		u.dedicated.proto, u.dedicated3.proto = RESP2, RESP3
		u.config.Store(cfg)
		if r.closed {
			u.retired.Store(true)
			u.dedicated.closed = true
			u.dedicated3.closed = true
		}
		r.upstreams[key] = u
		created = true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.conns) < n {
		twin := &Conn{up: u, proto: RESP3, closed: r.closed}
		u.conns = append(u.conns, &Conn{up: u, proto: RESP2, closed: r.closed, twin: twin})
	}
	u.held = append(u.held, n)
	return u, slices.Clone(u.conns[:n]), created
}

// RESP3Conns returns the RESP3 twins of conns, shared connections of u.
func RESP3Conns(conns []*Conn) []*Conn {
	twins := make([]*Conn, len(conns))
	for i, b := range conns {
		twins[i] = b.twin
	}
	return twins
}

// Release ends one use of u, by a pool that held n connections, and
// returns the shared connections no remaining user holds, for CloseUnused.
// An upstream left without users is retired: it leaves the registry and its
// idle dedicated connections close.
func (r *Registry) Release(u *Upstream, n int) []*Conn {
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
	var unused []*Conn
	if need < len(u.conns) {
		unused = slices.Clone(u.conns[need:])
		clear(u.conns[need:])
		u.conns = u.conns[:need]
	}
	if len(unused) > 0 && r.unused == nil {
		r.unused = map[*Conn]struct{}{}
	}
	for _, b := range unused {
		r.unused[b] = struct{}{}
	}
	unheld := len(u.held) == 0
	u.mu.Unlock()
	if unheld && r.upstreams[u.key] == u {
		delete(r.upstreams, u.key)
		u.retire()
		if u.numPinned() > 0 {
			if r.retired == nil {
				r.retired = map[*Upstream]struct{}{}
			}
			r.retired[u] = struct{}{}
		}
	}
	for old := range r.retired {
		if old.numPinned() == 0 {
			delete(r.retired, old)
		}
	}
	return unused
}

// Close closes every upstream, pinned connections included, for Shutdown:
// requests still waiting fail, so every client returns.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	all := make([]*Upstream, 0, len(r.upstreams)+len(r.retired))
	for _, u := range r.upstreams {
		all = append(all, u)
	}
	for u := range r.retired {
		all = append(all, u)
	}
	var conns []*Conn
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
		u.dedicated3.closeAll()
		conns = append(conns, u.privateConns()...)
	}
	for _, b := range conns {
		b.close()
	}
}

// CloseUnused closes connections that Release returned as soon as no
// request waits on them, or at deadline.
func (r *Registry) CloseUnused(conns []*Conn, deadline time.Time) {
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

// Len reports how many upstreams are in use, and how many out of use
// still have pinned connections open.
func (r *Registry) Len() (inUse, retired int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.upstreams), len(r.retired)
}

// retire marks u out of use: its ejection timer stops and its idle
// dedicated connections close; pinned ones close when their clients let go.
func (u *Upstream) retire() {
	u.retired.Store(true)
	u.health.mu.Lock()
	if u.health.timer != nil {
		u.health.timer.Stop()
		u.health.timer = nil
	}
	u.health.mu.Unlock()
	u.dedicated.retire()
	u.dedicated3.retire()
}

// numPinned reports how many dedicated connections are pinned now.
func (u *Upstream) numPinned() int { return u.dedicated.numPinned() + u.dedicated3.numPinned() }

// errText is the error reply for a request the upstream could not answer.
func (u *Upstream) errText(cause string) string { return u.config.Load().ErrPrefix + cause }

// ErrorText is the error reply's message for a request to u that failed
// with err: the server's name and address, and the short cause.
func (u *Upstream) ErrorText(err error) string { return u.errText(describe(err)) }

// SetConfig makes cfg what u uses from now on: its pool's settings,
// counters and ring. A pool calls it as it starts to serve.
func (u *Upstream) SetConfig(cfg *Config) { u.config.Store(cfg) }

// Stats returns u's counters.
func (u *Upstream) Stats() *stats.Server { return &u.stats }

// Health returns u's failure count and ejection.
func (u *Upstream) Health() *Health { return &u.health }

// Address returns where u is dialled and whether it takes requests.
func (u *Upstream) Address() *Address { return &u.address }

// ok records that the server answered, which resets its failure count.
func (u *Upstream) ok() {
	if u.health.failures.Load() != 0 {
		u.health.failures.Store(0)
	}
}

// failed records a failed connection. With auto_eject_hosts, the
// server_failure_limit'th consecutive failure takes the server out of the
// ring for server_retry_timeout; it comes back without a health check, as in
// nutcracker, in the ring of whichever pool uses the upstream by then.
func (u *Upstream) failed() {
	h := &u.health
	if !h.down.Load() {
		h.down.Store(true)
	}
	cfg := u.config.Load()
	if !cfg.AutoEject {
		return
	}
	if h.failures.Add(1) < cfg.FailureLimit {
		return
	}
	h.failures.Store(0)
	now := time.Now()
	h.ejectedUntil.Store(now.Add(cfg.RetryTimeout).UnixNano())
	h.ejectedAt.Store(now.UnixMicro())
	cfg.Ejects.Add(1)
	cfg.Logger.Warn("server ejected", "retry_in", cfg.RetryTimeout)
	h.mu.Lock()
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timer = nil
	if !u.retired.Load() {
		h.timer = time.AfterFunc(cfg.RetryTimeout, u.ejectionOver)
	}
	h.mu.Unlock()
	cfg.HealthChanged()
}

// ejectionOver runs when an ejection's server_retry_timeout has passed:
// the pool that uses the upstream now rebuilds its ring with it.
func (u *Upstream) ejectionOver() {
	if u.retired.Load() {
		return
	}
	u.config.Load().HealthChanged()
}

// Failures reports the consecutive failures counted since the last
// success or ejection.
func (h *Health) Failures() int32 { return h.failures.Load() }

// Up reports whether the server's last connect or connection did not
// fail: false from a failure until a connect succeeds again.
func (h *Health) Up() bool { return !h.down.Load() }

// connected records a connect that succeeded.
func (h *Health) connected() {
	if h.down.Load() {
		h.down.Store(false)
	}
}

// EjectedUntil reports when the ejection ends, in unix nanoseconds; 0 when
// the server is live.
func (h *Health) EjectedUntil() int64 { return h.ejectedUntil.Load() }

// EjectedAt reports when the server was last ejected, in unix
// microseconds, as nutcracker reports it; 0 if never.
func (h *Health) EjectedAt() int64 { return h.ejectedAt.Load() }

// ClearEjection marks the server live again, for a ring rebuilt after its
// ejection ran out.
func (h *Health) ClearEjection() { h.ejectedUntil.Store(0) }

// Forgive clears the failure count and any ejection, for a pool without
// auto_eject_hosts.
func (h *Health) Forgive() {
	h.mu.Lock()
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	h.mu.Unlock()
	h.failures.Store(0)
	h.ejectedUntil.Store(0)
}

// Reset closes the upstream's connections, shared and idle dedicated ones,
// without counting a failure: the server moved, so the next request dials
// its new address at once.
func (u *Upstream) Reset(why string) {
	u.mu.Lock()
	conns := slices.Clone(u.conns)
	u.mu.Unlock()
	for _, b := range conns {
		b.reset(why)
	}
	u.dedicated.closeIdle()
	u.dedicated3.closeIdle()
}

// Address is where an upstream is dialled now, and whether it may take
// requests: the configured address, or wherever discovery last saw its pod.
type Address struct {
	// unusable is why requests cannot go to the server now (no address
	// yet, pod not ready or terminating), nil when they can. The request
	// path reads it with one atomic load.
	unusable atomic.Pointer[string]

	mu        sync.Mutex // guards the fields below
	dial      string
	source    string // "config" or "endpointslice/<name>"
	changedAt time.Time
}

// Set points the address at dial (unless it is ""), says where that came
// from (unless source is "") and why the server cannot take requests
// ("" when it can), and reports whether the dial address and the
// usability changed.
func (a *Address) Set(dial, source, reason string) (moved, usableChanged bool) {
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

// Unavailable returns why the server cannot take requests now, or "".
func (a *Address) Unavailable() string {
	if r := a.unusable.Load(); r != nil {
		return *r
	}
	return ""
}

// DialAddr returns the address the server is dialled at now.
func (a *Address) DialAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dial
}

// Status returns the dial address, where it came from and when it or the
// usability last changed, for the stats port.
func (a *Address) Status() (addr, source string, changedAt time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dial, a.source, a.changedAt
}

// Retired reports whether no pool uses u any more.
func (u *Upstream) Retired() bool { return u.retired.Load() }
