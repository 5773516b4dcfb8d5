package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/config"
)

// Options are the parts of a Server that do not come from nutcracker.yml.
type Options struct {
	// Logger receives start, connection state and error logs. nil discards.
	Logger *slog.Logger
	// Namespace is the Kubernetes namespace of a pool's kubernetes_service
	// when the pool does not name one; "" means "default".
	Namespace string
	// ResolveGroup, when set, is called when the proxy sees a sign that a
	// group's master moved (-READONLY, -MASTERDOWN, ..., a connection to
	// it lost, ROLE not master): discovery should look again. It must not
	// block. nil: the proxy waits for the next SetGroupMasters.
	ResolveGroup func(pool, server string)
	// ResolveCluster, when set, is called when a node of the redis_cluster
	// pool answered -MOVED or a request to one failed, at most every
	// 100 ms per pool: discovery should read the slot map again. It must
	// not block. nil: the proxy waits for the next SetClusterMap.
	ResolveCluster func(pool string)
	// MaxClients is the most client connections the Server serves at once
	// over all pools; the next is answered -ERR max number of clients
	// reached and closed. 0: what the open file limit leaves beside the
	// pools' listeners and server connections, computed again at every
	// Reload (limits.go).
	MaxClients int
}

// Server serves every pool of a Config, each on its own listen address.
// Reload swaps in a new Config without dropping clients.
type Server struct {
	logger           *slog.Logger
	defaultNamespace string
	stats            globalStats
	started          time.Time
	ids              atomic.Int64 // client ids for CLIENT ID
	trackingClients  atomic.Int64 // clients with CLIENT TRACKING on (tracking.go)
	authLimit        authLimiter  // failed AUTHs by client address (authlimit.go)

	pools    atomic.Pointer[[]*pool] // the current pools, in config order
	reloadMu sync.Mutex              // serialises Start, Reload and Shutdown's pool changes
	reloads  atomic.Int64            // successful reloads
	failed   atomic.Int64            // rejected reloads
	// lastRejected is set by a rejected reload and cleared by one applied:
	// the configuration file is not what runs while it is set.
	lastRejected atomic.Bool

	// registry keeps server connections, health and counters across
	// configs.
	registry backend.Registry
	// pubsub are the hubs of subscriptions, one per upstream (pubsub.go).
	pubsub hubs

	discovery discoveryState
	podsMu    sync.Mutex // guards pods
	pods      map[Service]map[string]PodAddress

	resolveGroup func(pool, server string) // Options.ResolveGroup
	groupsMu     sync.Mutex                // guards groups and groupMasters
	groups       map[groupID]*group        // every group a pool has had, by pool and server (group.go)
	groupMasters map[string]map[string]GroupMaster

	resolveCluster   func(pool string)      // Options.ResolveCluster
	clusterMu        sync.Mutex             // guards clusterMaps
	clusterMaps      map[string]*ClusterMap // the last map of each redis_cluster pool (cluster.go)
	clusterRedirects atomic.Int64           // MOVED and ASK replies followed

	mu        sync.Mutex // guards listeners, clients, closing, running
	listeners map[string]*listener
	clients   map[*client]struct{}
	closing   bool
	running   bool
	wg        sync.WaitGroup // accept loops and clients

	// clusterStatus reports what discovery did for each redis_cluster
	// pool (SetClusterStatus); nil without discovery.
	clusterStatus atomic.Pointer[clusterStatusSource]

	// sweepStop ends sweepIdle at Shutdown; sweepScratch is its list of
	// clients, kept between sweeps (idle.go).
	sweepStop    chan struct{}
	sweepScratch []*client
	memory       memoryReturn
	// maxClients is the client limit in force (limits.go);
	// fixedMaxClients is Options.MaxClients.
	maxClients      atomic.Int64
	fixedMaxClients int64
}

// listener is a pool's listening socket. Its pool is replaced on reload;
// each client picks up the current one at its next batch.
type listener struct {
	listen string // the listen value it was opened for
	ln     net.Listener
	pool   atomic.Pointer[pool]
}

// NewServer builds the pools of cfg. Nothing listens or dials until Start.
func NewServer(cfg *config.Config, opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{logger: logger, listeners: map[string]*listener{}, clients: make(map[*client]struct{}), started: time.Now(), defaultNamespace: opts.Namespace}
	s.resolveGroup = opts.ResolveGroup
	s.resolveCluster = opts.ResolveCluster
	s.sweepStop = make(chan struct{})
	s.fixedMaxClients = int64(opts.MaxClients)
	if s.defaultNamespace == "" {
		s.defaultNamespace = "default"
	}
	pools, err := s.buildPools(cfg, nil)
	if err != nil {
		return nil, err
	}
	for _, p := range pools {
		p.activate()
	}
	s.setClientLimit(pools)
	s.pools.Store(&pools)
	return s, nil
}

// poolList returns the current pools.
func (s *Server) poolList() []*pool { return *s.pools.Load() }

// buildPools builds the pools of cfg; prev are the pools it replaces. On
// error the pools built so far give their upstreams back.
func (s *Server) buildPools(cfg *config.Config, prev []*pool) (pools []*pool, err error) {
	byName := map[string]*pool{}
	for _, p := range prev {
		byName[p.cfg.Name] = p
	}
	defer func() {
		if err != nil {
			s.discard(pools)
			pools = nil
		}
	}()
	for i := range cfg.Pools {
		pc := &cfg.Pools[i]
		if !pc.Redis {
			return pools, fmt.Errorf("pool %q: only redis pools (redis: true) are supported", pc.Name)
		}
		if pc.KubernetesService != "" && !pc.IsCluster() {
			if pods := s.podsFor(pc); pods != nil {
				if pc.KubernetesMembers {
					pc = membersConfig(pc, pods)
				}
				p, err := newPool(s, pc, byName[pc.Name])
				if err != nil {
					return pools, err
				}
				s.applyPods(p, pods, false)
				pools = append(pools, p)
				continue
			}
		}
		p, err := newPool(s, pc, byName[pc.Name])
		if err != nil {
			return pools, err
		}
		pools = append(pools, p)
	}
	return pools, nil
}

// discard gives back the upstreams of pools that never served.
func (s *Server) discard(pools []*pool) {
	for _, p := range pools {
		s.registry.CloseUnused(p.release(), time.Now())
	}
}

// Start listens on every pool's address and starts accepting clients. On
// error nothing is left listening.
func (s *Server) Start() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	pools := s.poolList()
	opened, err := s.openListeners(pools)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !s.running {
		s.wg.Add(1)
		go s.sweepIdle()
	}
	s.running = true
	s.mu.Unlock()
	s.switchListeners(pools, opened)
	return nil
}

// openListeners opens the listeners pools need that are not open yet. On
// error it closes what it opened.
func (s *Server) openListeners(pools []*pool) (map[string]*listener, error) {
	opened := map[string]*listener{}
	s.mu.Lock()
	current := s.listeners
	s.mu.Unlock()
	for _, p := range pools {
		if l := current[p.cfg.Name]; l != nil && l.listen == p.cfg.Listen {
			continue
		}
		ln, err := listen(p.cfg)
		if err != nil {
			for _, l := range opened {
				l.ln.Close()
			}
			return nil, fmt.Errorf("pool %q: listen %s: %w", p.cfg.Name, p.cfg.Listen, err)
		}
		opened[p.cfg.Name] = &listener{listen: p.cfg.Listen, ln: ln}
	}
	return opened, nil
}

// switchListeners makes pools current: every listener serves its pool's
// new version, newly opened listeners start accepting, and listeners of
// pools that are gone (or moved) close, their clients leaving after the
// batch they are in.
func (s *Server) switchListeners(pools []*pool, opened map[string]*listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]*listener{}
	for _, p := range pools {
		l := opened[p.cfg.Name]
		if l == nil {
			l = s.listeners[p.cfg.Name]
		}
		// The pool first: a new listener's first client may be accepted
		// as soon as its loop runs.
		l.pool.Store(p)
		if opened[p.cfg.Name] != nil {
			s.wg.Add(1)
			go s.acceptLoop(l)
			if p.seeds != nil {
				s.logger.Info("pool listening", "pool", p.cfg.Name, "listen", l.ln.Addr().String(), "masters", len(p.servers), "redis_cluster", true)
			} else {
				s.logger.Info("pool listening", "pool", p.cfg.Name, "listen", l.ln.Addr().String(), "servers", len(p.servers), "hash", p.cfg.Hash, "distribution", p.cfg.Distribution)
			}
		}
		next[p.cfg.Name] = l
		if p.cfg.Preconnect {
			p.connectAll()
		}
	}
	for name, l := range s.listeners {
		if next[name] != l {
			l.ln.Close()
			for c := range s.clients {
				if c.l == l {
					c.stopWhenIdle()
				}
			}
		}
	}
	s.listeners = next
	s.flushTrackingLocked()
}

// Reload replaces the configuration without dropping clients: pools,
// servers, weights, auth and timeouts change; a pool whose listen address
// changed moves to a new listener. Each client switches at its next batch,
// so requests in flight finish on their old servers. A server the new
// config keeps (the same address in the same pool, with the same
// redis_auth, redis_db and server TLS settings) keeps its connections,
// failure count, ejection and counters; connections no pool uses any more
// are closed once they are idle. A listener's TLS settings apply to the
// clients it accepts next. A cfg that cannot be served
// (a listener that does not open, an invalid pool) is rejected whole and
// the old configuration keeps serving.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.poolList()
	pools, err := s.buildPools(cfg, old)
	if err != nil {
		s.RejectReload()
		return err
	}
	s.mu.Lock()
	running, closing := s.running, s.closing
	s.mu.Unlock()
	if closing {
		s.discard(pools)
		s.RejectReload()
		return errors.New("shutting down")
	}
	var opened map[string]*listener
	if running {
		if opened, err = s.openListeners(pools); err != nil {
			s.discard(pools)
			s.RejectReload()
			return err
		}
	}
	for _, p := range pools {
		p.activate()
	}
	s.setClientLimit(pools)
	s.pools.Store(&pools)
	s.retireGroups(pools)
	if running {
		s.switchListeners(pools, opened)
	}
	s.reloads.Add(1)
	s.lastRejected.Store(false)
	s.checkSubscriptions()
	go s.drain(old)
	return nil
}

// replacePool swaps one pool for its new version, as Reload does for all:
// clients move at their next batch and old connections drain. The caller
// holds reloadMu.
func (s *Server) replacePool(old, next *pool) {
	pools := append([]*pool(nil), s.poolList()...)
	for i, p := range pools {
		if p == old {
			pools[i] = next
		}
	}
	s.setClientLimit(pools)
	s.pools.Store(&pools)
	s.mu.Lock()
	if l := s.listeners[next.cfg.Name]; l != nil {
		l.pool.Store(next)
	}
	s.mu.Unlock()
	s.flushTracking()
	s.checkSubscriptions()
	go s.drain([]*pool{old})
}

// drainDelay is how long replaced pools keep their connections before they
// are closed once idle: long enough for batches that started before the
// switch to submit their requests.
const (
	drainDelay   = time.Second
	drainTimeout = 30 * time.Second
)

// drain gives back the upstreams of replaced pools and closes the
// connections that no current pool uses once nothing waits on them, or
// after drainTimeout.
func (s *Server) drain(pools []*pool) {
	time.Sleep(drainDelay)
	var unused []*backend.Conn
	for _, p := range pools {
		unused = append(unused, p.release()...)
	}
	s.registry.CloseUnused(unused, time.Now().Add(drainTimeout))
}

// RejectReload counts a configuration that was refused before it reached
// Reload, such as one that does not parse; Reload counts its own.
func (s *Server) RejectReload() {
	s.failed.Add(1)
	s.lastRejected.Store(true)
}

// listen opens a pool's listener: TCP, or a unix socket whose stale file is
// removed first and whose permissions are set as configured.
func listen(cfg *config.Pool) (net.Listener, error) {
	if cfg.ListenNetwork == "unix" {
		if fi, err := os.Lstat(cfg.ListenAddr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(cfg.ListenAddr)
		}
		ln, err := net.Listen("unix", cfg.ListenAddr)
		if err != nil {
			return nil, err
		}
		if cfg.ListenPerm != 0 {
			if err := os.Chmod(cfg.ListenAddr, cfg.ListenPerm); err != nil {
				ln.Close()
				return nil, err
			}
		}
		return ln, nil
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = 512
	}
	return listenTCP(cfg.ListenAddr, backlog)
}

// Addrs returns the address each pool listens on, by pool name.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]net.Addr, len(s.listeners))
	for name, l := range s.listeners {
		out[name] = l.ln.Addr()
	}
	return out
}

func (s *Server) acceptLoop(l *listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			s.logger.Error("accept failed", "listen", l.listen, "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.stats.TotalConnections.Add(1)
		p := l.pool.Load()
		if s.overClientLimit(p) {
			s.refuseClient(p, conn)
			continue
		}
		// Client connections get TCP keepalive only with tcpkeepalive, as in
		// nutcracker.
		if tcp, ok := conn.(*net.TCPConn); ok {
			tcp.SetKeepAlive(p.cfg.TCPKeepalive)
		}
		if p.tls != nil {
			// The handshake runs on the client's goroutine (tls.go).
			conn = tls.Server(conn, p.tls)
		}
		c := newClient(s, l, p, conn)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.clients[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		p.stats.ClientConnections.Add(1)
		s.stats.CurrConnections.Add(1)
		c.start()
	}
}

func (s *Server) removeClient(c *client) {
	s.memory.given.Add(int64(cap(c.rbuf) + cap(c.out) + stackEstimate))
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
	c.pool.stats.ClientConnections.Add(-1)
	s.stats.CurrConnections.Add(-1)
	s.wg.Done()
}

// shutdownStragglers is how long Shutdown waits for clients after closing
// their connections and every server connection.
const shutdownStragglers = time.Second

// Shutdown stops accepting, lets every client finish the batch it is in,
// closes client connections as they go idle, and returns when all are gone
// or ctx ends (then it closes the rest).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		close(s.sweepStop)
	}
	s.closing = true
	for _, l := range s.listeners {
		l.ln.Close()
	}
	for c := range s.clients {
		c.stopWhenIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.clients {
			c.unpark()
			closeNow(c.conn)
		}
		s.mu.Unlock()
		// Closing every server connection, pinned ones included, fails
		// requests still waiting on a server, so their clients return.
		s.registry.Close()
		// Everything a client could wait on has failed; a client that still
		// does not return must not keep the process from exiting.
		select {
		case <-done:
		case <-time.After(shutdownStragglers):
			s.mu.Lock()
			n := len(s.clients)
			s.mu.Unlock()
			s.logger.Error("clients did not end after their connections were closed", "clients", n)
		}
	}
	s.closeHubs()
	s.registry.Close()
	return err
}
