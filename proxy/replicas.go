package proxy

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/resp"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// A pool with read_from prefer_replica or replica sends its groups'
// read-only commands to their replicas. Each replica discovery lists is
// an upstream of its own (backend.Key with Replica set, so that reloads and
// new snapshots reuse it), whose connections check with ROLE that the node
// is a replica with its master link connected. A poller per group asks
// ROLE of the master and of each replica every replicaPollInterval and
// keeps the list of replicas that take reads: those whose link is
// connected and, with replica_max_lag, whose offset is within that many
// bytes of the master's. It polls the replicas of every group, whatever
// read_from says, since their links and lag are in the stats
// (ReplicaLinks): with read_from master none takes reads. A read goes
// round robin to one of them, unless the same batch of the client already
// sent the group anything on the master (a write it must read back), or
// the client is in MULTI, WATCH or CLIENT TRACKING. Scripts, blocking commands and split commands (MGET)
// always go to the master. With prefer_replica, a read that finds no
// replica, or that a replica refused (-LOADING, -MASTERDOWN) or could not
// answer, goes to the master; with replica it fails.

// How often a group's replicas are polled, and how long a poll waits for
// ROLE's replies.
const (
	replicaPollInterval = 500 * time.Millisecond
	replicaPollTimeout  = time.Second
)

// replicaReads is a group's replicas as reads use them.
type replicaReads struct {
	// server is the server of the pool that uses the group now, whose
	// read_from says whether replicas take reads; nil once none does.
	server atomic.Pointer[server]
	// eligible are the replicas that take reads now, nil for none.
	eligible atomic.Pointer[[]*replica]
	next     atomic.Uint32 // round robin over eligible
	sent     atomic.Int64  // reads sent to replicas
	// links is every known replica as the last poll saw it, for stats.
	links atomic.Pointer[[]stats.ReplicaLink]

	mu      sync.Mutex // guards the fields below
	polling bool       // the poller runs
	known   []*replica // every replica discovery lists, with its upstream
}

// replica is one replica of a group, as the poller last saw it.
type replica struct {
	g     *group
	addr  string
	key   backend.Key
	up    *backend.Upstream
	conns []*backend.Conn // the shared connections, RESP2
	resp3 []*backend.Conn // their RESP3 twins
	next  atomic.Uint32   // round robin over conns
	// link is what the last poll saw of it, and why in full why it takes
	// no reads ("" when it may): the poller's only.
	link stats.ReplicaLink
	why  string
	// reads says whether a Redis Cluster replica takes reads now, as
	// its pool's poller last saw it (cluster_replicas.go).
	reads atomic.Bool
}

// pick returns the connection a client of protocol proto reads from r on.
func (r *replica) pick(proto int) *backend.Conn {
	conns := r.conns
	if proto == backend.RESP3 {
		conns = r.resp3
	}
	if len(conns) == 1 {
		return conns[0]
	}
	return conns[int(r.next.Add(1))%len(conns)]
}

// useReads makes s, a server of the pool that starts to serve, the one
// whose reads the group's replicas take, if that pool reads from replicas,
// and starts the poller, which polls them for the stats in any case.
func (g *group) useReads(s *server) {
	rr := &g.reads
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.server.Store(s)
	if !rr.polling {
		rr.polling = true
		go g.pollReplicas()
	}
}

// stopReads ends reads from replicas for s's pool, which serves no more.
func (g *group) stopReads(s *server) { g.reads.server.CompareAndSwap(s, nil) }

// pickReplica returns an eligible replica, round robin, or nil.
func (rr *replicaReads) pick() *replica {
	e := rr.eligible.Load()
	if e == nil || len(*e) == 0 {
		return nil
	}
	l := *e
	if len(l) == 1 {
		return l[0]
	}
	return l[int(rr.next.Add(1))%len(l)]
}

// pollReplicas polls the group's replicas until no pool reads from them.
func (g *group) pollReplicas() {
	rr := &g.reads
	t := time.NewTicker(replicaPollInterval)
	defer t.Stop()
	for {
		rr.mu.Lock()
		s := rr.server.Load()
		if s == nil || g.srv.isClosing() {
			rr.polling = false
			g.reconcileLocked(nil, nil)
			rr.mu.Unlock()
			return
		}
		g.mu.Lock()
		addrs := slices.Clone(g.want.Replicas)
		g.mu.Unlock()
		known := g.reconcileLocked(s, addrs)
		rr.mu.Unlock()
		g.poll(s, known)
		<-t.C
	}
}

// reconcileLocked makes rr.known the replicas at addrs, with upstreams
// keyed for s's pool, and gives back those no longer listed; s nil gives
// back all.
func (g *group) reconcileLocked(s *server, addrs []string) []*replica {
	rr := &g.reads
	var keep []*replica
	var unused []*backend.Conn
	for _, r := range rr.known {
		if s != nil && slices.Contains(addrs, r.addr) && r.key == replicaKey(s, r.addr) {
			keep = append(keep, r)
			continue
		}
		unused = append(unused, g.srv.registry.Release(r.up, len(r.conns))...)
	}
	if s != nil {
		for _, addr := range addrs {
			if slices.ContainsFunc(keep, func(r *replica) bool { return r.addr == addr }) {
				continue
			}
			r := &replica{g: g, addr: addr, key: replicaKey(s, addr), why: "not polled yet"}
			r.link = stats.ReplicaLink{Addr: addr, Link: "down", LagBytes: -1, Reason: stats.ReasonNotPolled}
			var created bool
			r.up, r.conns, created = g.srv.registry.Acquire(r.key, max(s.pool.cfg.ServerConnections, 1), replicaConfig(s, addr))
			if created {
				r.up.Address().Set(addr, g.source(), "")
			}
			r.resp3 = backend.RESP3Conns(r.conns)
			keep = append(keep, r)
		}
		for _, r := range keep {
			r.up.SetConfig(replicaConfig(s, r.addr))
		}
	}
	if len(keep) != len(rr.known) || s == nil {
		// Readers that loaded the old list may still use a replica
		// given back: its connections close once idle.
		g.setEligible(keep, s)
	}
	rr.known = keep
	if len(unused) > 0 {
		go g.srv.registry.CloseUnused(unused, time.Now().Add(drainTimeout))
	}
	return keep
}

// replicaKey is the key of the upstream of s's replica at addr.
func replicaKey(s *server, addr string) backend.Key {
	p := s.pool.cfg
	key := backend.Key{Pool: p.Name, Network: "tcp", Addr: addr, DB: p.RedisDB, Group: s.cfg.Name, Replica: true,
		TLS: serverTLS(p, config.Server{Name: s.cfg.Name, Addr: addr, DialAddr: addr, Network: "tcp"})}
	key.User, key.Auth = p.ServerAuth()
	return key
}

// replicaConfig is what s's pool hands the upstream of its replica at
// addr: the server's settings, with errors naming the replica.
func replicaConfig(s *server, addr string) *backend.Config {
	cfg := *s.upCfg
	cfg.ErrPrefix = "ERR server " + s.cfg.Name + " (replica " + addr + "): "
	cfg.AutoEject = false
	cfg.MasterDoubt = nil
	cfg.HealthChanged = func() {}
	return &cfg
}

// roleProbe is one ROLE request of a poll: its reply, or nil if none came.
type roleProbe struct {
	done  chan []byte
	reply []byte
}

func (p *roleProbe) Deliver(reply []byte) { p.done <- append([]byte(nil), reply...) }
func (p *roleProbe) Fail(msg string)      { p.done <- resp.AppendError(nil, msg) }

// submitRole sends ROLE on conn.
func submitRole(conn *backend.Conn) *roleProbe {
	p := &roleProbe{done: make(chan []byte, 1)}
	conn.Submit(roleRequest, []backend.ReplySink{p}, []int{len(roleRequest)}, time.Now())
	return p
}

var roleRequest = resp.AppendCommand(nil, []byte("ROLE"))

// poll asks ROLE of the group's master and of each replica in known, and
// makes the replicas that pass eligible. The master's offset gives each
// replica's lag, in the stats and for replica_max_lag.
func (g *group) poll(s *server, known []*replica) {
	maxLag, reads := s.pool.cfg.ReplicaMaxLag, s.pool.cfg.ReadsReplicas()
	var master *roleProbe
	if len(known) > 0 {
		master = submitRole(s.conns[0])
	}
	probes := make([]*roleProbe, len(known))
	for i, r := range known {
		probes[i] = submitRole(r.conns[0])
	}
	timeout := time.NewTimer(replicaPollTimeout)
	defer timeout.Stop()
	wait := func(p *roleProbe) {
		select {
		case p.reply = <-p.done:
			return // in already: a master slow to answer costs it nothing
		default:
		}
		select {
		case p.reply = <-p.done:
		case <-timeout.C:
			timeout.Reset(0) // the others that are not in yet time out too
		}
	}
	if master != nil {
		wait(master)
	}
	for _, p := range probes {
		wait(p)
	}
	masterOffset := int64(-1)
	if master != nil {
		if role, err := backend.ParseRole(master.reply); err == nil && role.Role == "master" {
			masterOffset = role.Offset
		}
	}
	for i, r := range known {
		r.link, r.why = replicaState(r.addr, probes[i].reply, maxLag, masterOffset, reads)
	}
	g.probeRefused(known, probes)
	g.setEligible(known, s)
}

// probeRefused finds out, for each replica in known whose connection
// failed (its probe in probes got an error), what the node says to a new
// one: a replica whose master link is down refuses connections (their
// ROLE check fails), and its link state then comes from that refusal
// rather than showing it unreachable.
func (g *group) probeRefused(known []*replica, probes []*roleProbe) {
	var wg sync.WaitGroup
	for i, r := range known {
		if r.link.Reason != stats.ReasonUnreachable || probes[i].reply == nil {
			continue // answered, or timed out: a dial would wait as long
		}
		wg.Add(1)
		go r.probe(&wg)
	}
	wg.Wait()
}

// probe dials the replica once to learn its link state (probeRefused).
func (r *replica) probe(wg *sync.WaitGroup) {
	defer wg.Done()
	role, err := r.up.ProbeReplica(replicaPollTimeout)
	switch {
	case err == nil:
		// Connected again: the next poll on its connections tells.
	case role.Role == "slave":
		r.link.State, r.link.Reason, r.link.Error = role.State, stats.ReasonLinkDown, err.Error()
		r.why = "its master link is " + role.State
	case role.Role != "":
		r.link.Reason, r.link.Error = stats.ReasonNotReplica, err.Error()
		r.why = "ROLE says " + role.Role
	}
}

// replicaState is what a replica's ROLE reply says of its link, and in
// full why it takes no reads, "" when it does; masterOffset is the
// master's, -1 if unknown; reads says whether the pool reads from
// replicas.
func replicaState(addr string, reply []byte, maxLag, masterOffset int64, reads bool) (stats.ReplicaLink, string) {
	l := stats.ReplicaLink{Addr: addr, Link: "down", LagBytes: -1}
	if reply == nil {
		l.Reason, l.Error = stats.ReasonUnreachable, "no reply to ROLE"
		return l, l.Error
	}
	if resp.IsError(reply) {
		l.Reason, l.Error = stats.ReasonUnreachable, string(reply[1:len(reply)-2])
		return l, l.Error
	}
	role, err := backend.ParseRole(reply)
	if err != nil {
		l.Reason, l.Error = stats.ReasonUnreachable, err.Error()
		return l, l.Error
	}
	if role.Role != "slave" {
		l.Reason, l.Error = stats.ReasonNotReplica, "ROLE says "+role.Role
		return l, l.Error
	}
	l.State = role.State
	lag := int64(-1)
	if masterOffset >= 0 {
		lag = max(masterOffset-role.Offset, 0) // the master was asked first
		l.LagBytes = lag
	}
	if role.State != "connected" {
		l.Reason = stats.ReasonLinkDown
		return l, "its master link is " + role.State
	}
	l.Link = "up"
	switch {
	case !reads:
		l.Reason = stats.ReasonReadFromMaster
		return l, "read_from is master"
	case maxLag == 0:
		return l, ""
	case lag < 0:
		l.Reason = stats.ReasonLagUnknown
		return l, "the master's offset is unknown"
	case lag > maxLag:
		l.Reason = stats.ReasonLagOverMax
		return l, "it lags its master by more than replica_max_lag"
	}
	return l, ""
}

// setEligible publishes the replicas of known that take reads, logging
// those that start or stop to, and the state of all for the stats.
func (g *group) setEligible(known []*replica, s *server) {
	rr := &g.reads
	var now []*replica
	links := make([]stats.ReplicaLink, 0, len(known))
	for _, r := range known {
		l := r.link
		if l.Reads = r.why == "" && s != nil; l.Reads {
			now = append(now, r)
		}
		links = append(links, l)
	}
	slices.SortFunc(links, func(a, b stats.ReplicaLink) int { return strings.Compare(a.Addr, b.Addr) })
	rr.links.Store(&links)
	var was []*replica
	if e := rr.eligible.Load(); e != nil {
		was = *e
	}
	for _, r := range now {
		if !slices.Contains(was, r) {
			g.srv.logger.Info("replica takes reads", "pool", g.id.pool, "server", g.id.server, "replica", r.addr)
		}
	}
	for _, r := range was {
		if !slices.Contains(now, r) {
			g.srv.logger.Info("replica takes no reads", "pool", g.id.pool, "server", g.id.server, "replica", r.addr, "reason", r.why)
		}
	}
	if len(now) == 0 {
		rr.eligible.Store(nil)
		return
	}
	rr.eligible.Store(&now)
}

// linkStatus is the state of every known replica as last polled, for
// stats.
func (rr *replicaReads) linkStatus() []stats.ReplicaLink {
	if l := rr.links.Load(); l != nil {
		return slices.Clone(*l)
	}
	return []stats.ReplicaLink{}
}

// eligibleAddrs lists the addresses of the replicas that take reads, for
// stats.
func (rr *replicaReads) eligibleAddrs() []string {
	out := []string{}
	if e := rr.eligible.Load(); e != nil {
		for _, r := range *e {
			out = append(out, r.addr)
		}
	}
	return out
}

// routeRead stages a read-only command of server idx's group on one of its
// replicas, or on the master: see the top of this file; in a cluster pool,
// on one of the master's replicas (cluster_replicas.go).
func (c *client) routeRead(idx int, def *command.Spec, cmd *resp.Command) {
	if idx < 0 {
		c.replyError(c.layout.noOwner())
		return
	}
	srv := c.layout.servers[idx]
	var r *replica
	if c.tracking == nil && !c.sentToMaster(srv) {
		if r = srv.pickReplica(); r == nil && srv.pool.cfg.ReadFrom == config.ReadFromReplica {
			c.replyError(srv.noReplica)
			return
		}
	}
	if r == nil {
		c.route(idx, cmd)
		c.markRead(def)
		return
	}
	st := c.stageForReplica(srv, r)
	start := len(st.buf)
	if cmd.Inline {
		st.buf = resp.AppendCommand(st.buf, cmd.Args...)
	} else {
		st.buf = append(st.buf, cmd.Raw...)
	}
	s := c.newSlot()
	end := len(st.buf)
	s.req = request{srv: srv, bytes: st.buf[start:end:end]}
	s.replica, s.conn, s.redirects = r, st.conn, 0
	st.add(s, start)
	c.calls = append(c.calls, call{slot: s})
}

// sentToMaster reports whether the batch sends anything to srv's master:
// a read that follows must see it.
func (c *client) sentToMaster(srv *server) bool {
	for i := range c.stages {
		if c.stages[i].srv == srv && c.stages[i].replica == nil {
			return true
		}
	}
	return false
}

// stageForReplica returns the batch's stage for r, making one if needed.
func (c *client) stageForReplica(srv *server, r *replica) *stage {
	for i := range c.stages {
		if c.stages[i].replica == r {
			return &c.stages[i]
		}
	}
	if len(c.stages) < cap(c.stages) {
		c.stages = c.stages[:len(c.stages)+1]
	} else {
		c.stages = append(c.stages, stage{})
	}
	st := &c.stages[len(c.stages)-1]
	st.srv, st.replica, st.conn = srv, r, r.pick(c.proto)
	st.buf, st.slots, st.sizes = st.buf[:0], st.slots[:0], st.sizes[:0]
	return st
}

// fromReplica decides about reply, the reply to s, a read a replica
// answered: with prefer_replica, one saying the replica cannot serve it
// now (-LOADING, -MASTERDOWN) is sent to the master instead, and true
// returned.
func (s *replySlot) fromReplica(reply []byte) bool {
	if !replicaRefused(reply) {
		return false
	}
	return s.toMaster()
}

// replicaRefused reports whether reply says the replica served nothing.
func replicaRefused(reply []byte) bool {
	if len(reply) < 2 || reply[0] != '-' {
		return false
	}
	e := reply[1:]
	return hasPrefix(e, "LOADING ") || hasPrefix(e, "MASTERDOWN ")
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// toMaster sends s, a read that its replica did not serve, to the
// group's master, with prefer_replica; it reports whether it did.
func (s *replySlot) toMaster() bool {
	srv := s.req.srv
	if srv.pool.cfg.ReadFrom != config.ReadFromPreferReplica {
		return false
	}
	conn := srv.pick(s.conn.Proto())
	s.replica, s.group, s.conn, s.readOnly, s.holdUntil = nil, srv.group, conn, true, time.Time{}
	srv.stats.Requests.Add(1)
	srv.stats.RequestBytes.Add(int64(len(s.req.bytes)))
	conn.Submit(s.req.bytes, []backend.ReplySink{s}, []int{len(s.req.bytes)}, time.Now())
	return true
}
