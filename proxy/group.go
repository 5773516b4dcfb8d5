package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/resp"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// A pool with sentinels is a ring of groups: each server is a master with
// replicas, which Redis Sentinel watches and fails over. The server's name
// keeps its place on the ring, so a failover moves no key; its address is
// where discovery (SetGroupMasters) says the master is, once ROLE on that
// node confirmed it. Until a master is confirmed the group's requests fail
// at once with an error naming it. A request its master refused because it
// is no master any more (-READONLY, -MASTERDOWN, -LOADING, -UNBLOCKED: the
// command did not run) waits for the next master and is sent again there,
// up to failover_hold.

// GroupMaster is what discovery says of one group's master.
type GroupMaster struct {
	Addr     string // host:port of the master discovery agrees on; "" when none
	Epoch    int64
	Replicas []string
	Source   string // e.g. "sentinel", for logs and /discovery
	// Agree is how many Sentinels agree on Addr, Reachable how many
	// answered.
	Agree, Reachable int
	// Unavailable is why Addr takes no requests although discovery names
	// it (its pod is not ready or terminating), or why discovery names no
	// master; "" when it may. While it is set the group's requests fail
	// at once with it.
	Unavailable string
}

// SentinelPool is a pool whose servers are groups that Sentinels watch:
// what a watcher needs to follow them.
type SentinelPool struct {
	Pool               string
	Sentinels          []string
	Username, Password string
	Masters            map[string]string // server name -> Sentinel master name
	// SentinelService is the Service whose endpoints are the Sentinels
	// (sentinel_service), on SentinelPort when its EndpointSlices name no
	// port (0: 26379); zero when Sentinels lists them.
	SentinelService Service
	SentinelPort    int
	// GroupService is the groups' pods' Service (kubernetes_service); zero
	// for none.
	GroupService Service
	// TLS is how the Sentinels are spoken to: the pool's server_tls_*
	// settings.
	TLS ServerTLS
}

// SentinelPools lists the current pools that have sentinels.
func (s *Server) SentinelPools() []SentinelPool {
	var out []SentinelPool
	for _, p := range s.poolList() {
		if !p.cfg.HasSentinels() {
			continue
		}
		sp := SentinelPool{Pool: p.cfg.Name, Sentinels: p.cfg.Sentinels, Username: p.cfg.SentinelUsername, Password: p.cfg.SentinelAuth, Masters: map[string]string{}, TLS: serverTLSOf(p.cfg)}
		if p.cfg.SentinelService != "" {
			sp.SentinelService = Service{Namespace: s.namespace(p.cfg), Name: p.cfg.SentinelService}
			sp.SentinelPort = p.cfg.SentinelPort
		}
		if p.cfg.KubernetesService != "" {
			sp.GroupService = Service{Namespace: s.namespace(p.cfg), Name: p.cfg.KubernetesService}
		}
		for _, srv := range p.servers {
			sp.Masters[srv.cfg.Name] = p.cfg.SentinelMaster(srv.cfg.Name)
		}
		out = append(out, sp)
	}
	return out
}

// SetGroupMasters tells the pool's groups (servers, keyed by server name)
// where discovery says their masters are now. A group whose master moved
// is dialled at the new address once ROLE there says master, and its
// connections to the old one are closed; until then, and whenever no
// master is confirmed, its requests fail at once with an error naming the
// group. Requests waiting for a new master are sent to it once it is
// confirmed. The snapshot is kept for pools a later Reload builds.
func (s *Server) SetGroupMasters(pool string, groups map[string]GroupMaster) {
	s.groupsMu.Lock()
	if s.groupMasters == nil {
		s.groupMasters = map[string]map[string]GroupMaster{}
	}
	s.groupMasters[pool] = groups
	s.groupsMu.Unlock()
	for _, p := range s.poolList() {
		if p.cfg.Name != pool || !p.cfg.HasGroups() {
			continue
		}
		var wg sync.WaitGroup
		for _, srv := range p.servers {
			gm, ok := groups[srv.cfg.Name]
			if !ok {
				continue
			}
			wg.Add(1)
			go srv.group.updateAndDone(gm, &wg)
		}
		wg.Wait()
	}
}

// groupID names a group across configs.
type groupID struct{ pool, server string }

// group is one group's live state, kept across reloads by the Server.
type group struct {
	srv  *Server
	id   groupID
	hold atomic.Int64                     // failover_hold of the pool that uses it now, in nanoseconds
	up   atomic.Pointer[backend.Upstream] // the upstream of the pool that uses it now
	// server is the server of the pool that uses it now, through which
	// held requests are sent again.
	server atomic.Pointer[server]
	// nwaiting is len(waiting), read without the lock by replies that
	// may have to wait behind them.
	nwaiting atomic.Int32
	// checkMu makes one ROLE check and its outcome at a time, so that a
	// slow check of an address discovery has since left cannot switch
	// the group back to it.
	checkMu sync.Mutex

	mu         sync.Mutex // guards the fields below
	want       GroupMaster
	master     string // the confirmed master's address; "" when none is
	failovers  int64
	lastSwitch time.Time
	waiting    []*replySlot // requests waiting for a master, in arrival order
	timer      *time.Timer  // the next tick, while armed
	backoff    time.Duration
	// removed is set once a reload left the group out: requests that
	// would wait for its master get an error instead.
	removed bool

	reads replicaReads // the replicas reads go to (replicas.go)
}

// Bounds on how often a group without a confirmed master, or with
// requests waiting, checks again.
const (
	groupRetryMin = 100 * time.Millisecond
	groupRetryMax = 2 * time.Second
)

// groupFor returns the Server's group of pool's server, made if new.
func (s *Server) groupFor(pool, server string) *group {
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	id := groupID{pool, server}
	if s.groups == nil {
		s.groups = map[groupID]*group{}
	}
	g := s.groups[id]
	if g == nil {
		g = &group{srv: s, id: id}
		s.groups[id] = g
	}
	return g
}

// lastGroupMaster returns what discovery last said of the group, if
// anything.
func (s *Server) lastGroupMaster(id groupID) (GroupMaster, bool) {
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	gm, ok := s.groupMasters[id.pool][id.server]
	return gm, ok
}

// initGroupAddress sets where a new upstream of the group sc is dialled:
// at its confirmed master, or, before one is confirmed, nowhere usable.
func (g *group) initAddress(a *backend.Address, sc config.Server) {
	g.mu.Lock()
	master := g.master
	g.mu.Unlock()
	if master != "" {
		a.Set(master, g.source(), "")
		return
	}
	a.Set(sc.DialAddr, "config", g.unconfirmed("discovery has not named its master yet"))
}

// use makes s, the server of the pool that starts to serve, and its
// upstream the group's; a group that is not confirmed yet starts from what
// discovery said last.
func (g *group) use(s *server) {
	g.hold.Store(int64(s.pool.cfg.Hold()))
	g.up.Store(s.up)
	g.server.Store(s)
	g.mu.Lock()
	g.removed = false
	confirmed := g.master != ""
	g.mu.Unlock()
	if gm, ok := g.srv.lastGroupMaster(g.id); ok && !confirmed {
		go g.update(gm)
	}
}

// source is where the group's master address comes from, for /discovery.
func (g *group) source() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return cmp.Or(g.want.Source, "sentinel")
}

// unconfirmed is the reason requests to the group fail while no master is
// confirmed.
func (g *group) unconfirmed(why string) string {
	return "group " + g.id.server + " has no confirmed master: " + why
}

func (g *group) updateAndDone(gm GroupMaster, wg *sync.WaitGroup) {
	defer wg.Done()
	g.update(gm)
}

// update takes in what discovery says of the group's master: the group
// switches to it once ROLE there says master.
func (g *group) update(gm GroupMaster) {
	g.mu.Lock()
	g.want = gm
	same := gm.Addr != "" && gm.Addr == g.master && len(g.waiting) == 0 && gm.Unavailable == ""
	g.mu.Unlock()
	if same {
		return
	}
	g.check()
}

// check confirms discovery's master with ROLE and switches to it, or
// leaves the group unconfirmed and checks again later.
func (g *group) check() {
	up := g.up.Load()
	if up == nil {
		return
	}
	g.checkMu.Lock()
	defer g.checkMu.Unlock()
	g.mu.Lock()
	addr, unavailable, removed := g.want.Addr, g.want.Unavailable, g.removed
	g.mu.Unlock()
	if removed {
		return
	}
	if addr == "" {
		g.unconfirm(cmp.Or(unavailable, "discovery knows no master"))
		return
	}
	if unavailable != "" {
		g.unconfirm(unavailable)
		return
	}
	if err := up.CheckMaster(addr, roleCheckTimeout); err != nil {
		why := addr + ": " + err.Error()
		if !errors.Is(err, backend.ErrNotMaster) {
			why = addr + " cannot be reached: " + err.Error()
		}
		g.unconfirm(why)
		return
	}
	g.confirm(addr)
}

// roleCheckTimeout bounds one ROLE check, dial included.
const roleCheckTimeout = time.Second

// unconfirm makes the group's requests fail at once, asks discovery to
// look again and arms a later check.
func (g *group) unconfirm(why string) {
	up := g.up.Load()
	g.mu.Lock()
	was := g.master
	g.master = ""
	g.armLocked()
	g.mu.Unlock()
	up.Address().Set("", "", g.unconfirmed(why))
	if was != "" {
		g.srv.logger.Warn("group has no confirmed master", "pool", g.id.pool, "server", g.id.server, "reason", why)
	}
	g.resolve()
}

// confirm makes addr, where ROLE just said master, the group's master,
// and sends it the requests that waited for one.
func (g *group) confirm(addr string) {
	up := g.up.Load()
	a := up.Address()
	prev := a.DialAddr()
	g.mu.Lock()
	if g.want.Addr != addr || g.want.Unavailable != "" {
		// Discovery named another master, or said this one takes no
		// requests, during the check; the check that follows acts on it.
		g.mu.Unlock()
		return
	}
	moved, _ := a.Set(addr, cmp.Or(g.want.Source, "sentinel"), "")
	if moved {
		g.failovers++
		g.lastSwitch = time.Now()
	}
	had := g.master
	g.master = addr
	g.backoff = 0
	waiting := g.waiting
	g.waiting = nil
	g.nwaiting.Store(0)
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.mu.Unlock()
	if moved {
		g.srv.logger.Info("group master changed", "pool", g.id.pool, "server", g.id.server, "from", prev, "to", addr)
		up.ResetGroup("group master moved to " + addr)
	} else if had == "" {
		g.srv.logger.Info("group master confirmed", "pool", g.id.pool, "server", g.id.server, "addr", addr)
	}
	g.resend(waiting)
	g.srv.groupMasterConfirmed(up) // subscriptions follow the master (pubsub.go)
}

// resend sends requests that waited for a master again, in the order they
// arrived, each on the connection it first went out on, which dials the
// master now; or, when a reload gave the group another upstream since
// (another redis_auth or redis_db), on a connection of that one, since the
// old one's close once the replaced pool drains. A request that carried a
// tracking client's CLIENT CACHING carries it again: the new connection
// would not track what it reads otherwise.
func (g *group) resend(waiting []*replySlot) {
	now := time.Now()
	cur := g.server.Load()
	for _, s := range waiting {
		if cur != nil && s.req.srv.up != cur.up {
			if s.caching != nil {
				// Its client's tracking connection is the old
				// upstream's; on a shared one the read would not be
				// tracked, and its value never invalidated.
				s.untracked()
				continue
			}
			s.req.srv, s.conn = cur, cur.pick(s.conn.Proto())
		}
		srv := s.req.srv
		srv.stats.Requests.Add(1)
		srv.stats.RequestBytes.Add(int64(len(s.req.bytes)))
		if s.caching != nil {
			reqs := append(append([]byte(nil), s.caching...), s.req.bytes...)
			s.conn.Submit(reqs, []backend.ReplySink{discardReply{}, s}, []int{len(s.caching), len(s.req.bytes)}, now)
			continue
		}
		s.conn.Submit(s.req.bytes, []backend.ReplySink{s}, []int{len(s.req.bytes)}, now)
	}
}

// discardReply takes the reply to a request sent for its effect alone,
// such as a resent CLIENT CACHING.
type discardReply struct{}

func (discardReply) Deliver([]byte) {}
func (discardReply) Fail(string)    {}

// resolve asks discovery to look for the group's master again.
func (g *group) resolve() {
	if f := g.srv.resolveGroup; f != nil {
		f(g.id.pool, g.id.server)
	}
}

// doubt is the upstream's sign that the master may have moved.
func (g *group) doubt() { g.resolve() }

// armLocked schedules the next tick, backing off while nothing changes.
func (g *group) armLocked() {
	if g.timer != nil || g.removed {
		return
	}
	if g.backoff == 0 {
		g.backoff = groupRetryMin
	} else {
		g.backoff = min(2*g.backoff, groupRetryMax)
	}
	d := g.backoff
	if len(g.waiting) > 0 {
		d = groupRetryMin
	}
	g.timer = time.AfterFunc(d, g.tick)
}

// tick fails the waiting requests past failover_hold (all of them once
// Shutdown has begun) with the error they got, then checks discovery's
// master again if requests still wait or no master is confirmed.
func (g *group) tick() {
	now := time.Now()
	closing := g.srv.isClosing()
	g.mu.Lock()
	g.timer = nil
	var expired []*replySlot
	kept := g.waiting[:0]
	for _, s := range g.waiting {
		if closing || now.After(s.holdUntil) {
			expired = append(expired, s)
		} else {
			kept = append(kept, s)
		}
	}
	clear(g.waiting[len(kept):])
	g.waiting = kept
	g.nwaiting.Store(int32(len(kept)))
	again := !g.removed && (len(kept) > 0 || g.master == "" && g.want.Addr != "")
	g.mu.Unlock()
	for _, s := range expired {
		s.giveUp()
	}
	if !again || closing {
		return
	}
	// Requests wait on a master that refused them, or none is confirmed:
	// ask discovery, which may know of a new one, and ROLE again.
	g.resolve()
	g.check()
}

// retryable reports whether reply is an error saying the command did not
// run because the node is no master now: it may be sent to the next one.
func retryable(reply []byte) bool {
	if len(reply) < 2 || reply[0] != '-' {
		return false
	}
	e := reply[1:]
	return bytes.HasPrefix(e, []byte("READONLY ")) || bytes.HasPrefix(e, []byte("MASTERDOWN ")) ||
		bytes.HasPrefix(e, []byte("LOADING ")) || bytes.HasPrefix(e, []byte("UNBLOCKED "))
}

// held decides about the reply to s, a request to the group: whether it
// waits for a master to be sent again rather than being delivered. It does
// for a reply that says the command did not run; and for a read answered
// while an earlier request of the same client waits, so that the client's
// requests to the group stay in order. It runs on the connection's reader
// and does not block.
func (g *group) held(s *replySlot, reply []byte) bool {
	if !retryable(reply) && !(s.readOnly && g.nwaiting.Load() > 0 && g.waitsFor(s.batch)) {
		return false
	}
	s.buf = append(s.buf[:0], reply...)
	return g.wait(s)
}

// heldFailure decides about s, a request to the group whose connection
// failed after it was written, so its outcome is unknown: only a read is
// sent again, once a master is confirmed.
func (g *group) heldFailure(s *replySlot) bool {
	if !s.readOnly || g.up.Load().Address().Unavailable() != "" {
		return false
	}
	return g.wait(s)
}

// wait puts s, whose error reply is in its buffer, in the queue of
// requests waiting for a master, unless it waited failover_hold already.
func (g *group) wait(s *replySlot) bool {
	now := time.Now()
	if s.holdUntil.IsZero() {
		s.holdUntil = now.Add(time.Duration(g.hold.Load()))
	}
	if now.After(s.holdUntil) {
		return false
	}
	g.mu.Lock()
	if g.removed {
		g.mu.Unlock()
		s.removedGroup(g)
		return true
	}
	g.waiting = append(g.waiting, s)
	g.nwaiting.Store(int32(len(g.waiting)))
	g.armLocked()
	g.mu.Unlock()
	g.resolve()
	return true
}

// retireGroups ends the groups that no pool of pools has: a reload
// removed them, or their pool. Their requests waiting for a master get an
// error naming the group, as do those whose master refuses them later.
func (s *Server) retireGroups(pools []*pool) {
	kept := map[*group]bool{}
	for _, p := range pools {
		for _, srv := range p.servers {
			if srv.group != nil {
				kept[srv.group] = true
			}
		}
	}
	s.groupsMu.Lock()
	var gone []*group
	for _, g := range s.groups {
		if !kept[g] {
			gone = append(gone, g)
		}
	}
	s.groupsMu.Unlock()
	for _, g := range gone {
		g.retire()
	}
}

// retire fails the requests waiting for the group's master, which no
// pool follows any more, and keeps later ones from waiting.
func (g *group) retire() {
	g.mu.Lock()
	g.removed = true
	waiting := g.waiting
	g.waiting = nil
	g.nwaiting.Store(0)
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	g.mu.Unlock()
	for _, s := range waiting {
		s.removedGroup(g)
	}
}

// untracked delivers the error of a tracking client's read that waited
// for the group's master while a reload gave the group other connections.
func (s *replySlot) untracked() {
	s.buf = resp.AppendError(s.buf[:0], s.req.srv.upCfg.ErrPrefix+"the read waited for the master while a reload changed the group's connections, and would not be tracked (CLIENT CACHING) there: send it again")
	s.giveUp()
}

// removedGroup delivers the error of a request that waited for the master
// of g, which a reload removed.
func (s *replySlot) removedGroup(g *group) {
	s.buf = resp.AppendError(s.buf[:0], s.req.srv.upCfg.ErrPrefix+"group "+g.id.server+" was removed from the configuration while the request waited for its master")
	s.giveUp()
}

// waitsFor reports whether a request of batch b waits for a master.
func (g *group) waitsFor(b *batch) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.waiting {
		if s.batch == b {
			return true
		}
	}
	return false
}

// giveUp delivers the error reply s holds, after failover_hold passed
// without a master taking it.
func (s *replySlot) giveUp() {
	if s.to != nil {
		s.to.deliver(s.buf)
		return
	}
	s.complete()
}

// isClosing reports whether Shutdown has begun.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// snapshot is the group's state for the stats port; why is why its
// server takes no requests now, "" when it does.
func (g *group) snapshot(why string) *stats.GroupStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := &stats.GroupStatus{
		Pool: g.id.pool, Server: g.id.server, Master: g.master, Confirmed: g.master != "",
		Replicas: g.want.Replicas, Failovers: g.failovers, LastSwitch: g.lastSwitch,
		Source: g.want.Source, Epoch: g.want.Epoch, Agree: g.want.Agree, Reachable: g.want.Reachable,
	}
	if st.Replicas == nil {
		st.Replicas = []string{}
	}
	st.ReadReplicas, st.ReplicaReads = g.reads.eligibleAddrs(), g.reads.sent.Load()
	st.ReplicaLinks = g.reads.linkStatus()
	if !st.Confirmed {
		st.Reason = why
	}
	return st
}
