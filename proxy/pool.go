package proxy

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/internal/tlsfiles"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// pool is one configured pool while it serves: its servers, its ring, and
// the counters nutcracker reports for it.
type pool struct {
	srv     *Server
	cfg     *config.Pool
	servers []*server              // in ring index order
	ring    *placement.Ring        // over every server, all live
	full    *layout                // ring and servers
	layout  atomic.Pointer[layout] // full, or rebuilt without ejected servers
	stats   *stats.Pool            // shared with the same pool before and after a reload
	scanTag uint64                 // fingerprint of the server list in SCAN cursors
	// readsReplicas is whether read_from sends reads to replicas.
	readsReplicas bool
	// users are who the pool's clients authenticate as (acl.go).
	users *acl.Users

	ejectMu sync.Mutex // serialises ring rebuilds after ejections

	// For a redis_cluster pool (cluster.go): seeds is the configuration
	// as written, whose servers are seed nodes, and clusterMap the map
	// cfg's servers and the placement come from; else both are nil.
	seeds      *config.Pool
	clusterMap *ClusterMap
	extraMu    sync.Mutex         // guards extra and released
	extra      map[string]*server // nodes dialled for redirects, by address
	released   bool
	lastPoke   atomic.Int64 // when the pool last asked for its map, in Unix nanoseconds

	// tls is the listener's TLS config and tlsFiles its files, nil for
	// plain TCP (tls.go).
	tls      *tls.Config
	tlsFiles *tlsfiles.Files
}

// layout is what a pool's clients route by: a placement and the servers
// its indexes name, published together in one atomic swap so that no
// client sees one without the other. A client loads it once per batch.
// It is immutable; a change stores a new one.
type layout struct {
	placement.Placement
	servers []*server // servers[i] is the placement's server i
}

// server is one configured server while it serves: its place in the ring
// and the upstream it reaches. config.Server is what the file says; this is
// what is live. Its connections, health and counters are the upstream's,
// which the registry keeps across configs.
type server struct {
	pool  *pool
	cfg   config.Server
	index int
	up    *backend.Upstream
	upCfg *backend.Config // what the pool hands up once it serves
	conns []*backend.Conn // the first server_connections of up's
	resp3 []*backend.Conn // their RESP3 twins, for clients that said HELLO 3
	next  atomic.Uint32   // round robin over conns, or resp3
	// blocked counts the clients blocked on this server now, each on a
	// connection of its own, up to blocking_connections: up's count, so
	// that clients still blocked through the pool a reload replaced count
	// too.
	blocked *atomic.Int32

	stats   *stats.Server    // up's
	health  *backend.Health  // up's
	address *backend.Address // up's
	group   *group           // for a pool with sentinels, the group the server is; else nil
	// noReplica is the error for a read with read_from replica that finds
	// no replica to go to.
	noReplica string

	// replicas, in a redis_cluster pool that reads from replicas, are the
	// replicas of the master the server is, which take the reads of its
	// slots (cluster_replicas.go); else nil. nextReplica turns over them.
	replicas    []*replica
	nextReplica atomic.Uint32
}

// newPool builds a pool. prev is the pool of the same name in the config
// it replaces, or nil; the pool keeps its counters. Servers take their
// upstreams from the registry, so a server a reload keeps keeps its
// connections, health and counters; the pool holds them until release.
func newPool(srv *Server, cfg *config.Pool, prev *pool) (*pool, error) {
	var seeds *config.Pool
	var clusterMap *ClusterMap
	var pl placement.Placement
	var ring *placement.Ring
	if cfg.IsCluster() {
		// The seeds do not become a ring, where keys would land on nodes
		// that answer MOVED for them: the servers are the masters of
		// the last slot map (cluster.go).
		seeds, clusterMap = cfg, srv.clusterMapFor(cfg.Name)
		cfg = clusterConfig(cfg, clusterMap)
		pl = clusterPlacement(clusterMap)
	} else {
		nodes := make([]hashring.Node, len(cfg.Servers))
		for i, s := range cfg.Servers {
			nodes[i] = s.Node()
		}
		dist, err := hashring.ParseDistribution(cfg.Distribution)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", cfg.Name, err)
		}
		ring, err = placement.NewRing(nodes, hashring.Options{Hash: cfg.Hash, Distribution: dist, HashTag: cfg.HashTag})
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", cfg.Name, err)
		}
		pl = ring
	}
	p := &pool{srv: srv, cfg: cfg, ring: ring, stats: new(stats.Pool), scanTag: scanTag(cfg.Servers), readsReplicas: cfg.ReadsReplicas(), seeds: seeds, clusterMap: clusterMap}
	p.users = poolUsers(cfg)
	if prev != nil {
		p.stats = prev.stats
	}
	p.tls, p.tlsFiles = listenerTLS(p, prev)
	n := max(cfg.ServerConnections, 1)
	seen := map[backend.Key]int{}
	for i, sc := range cfg.Servers {
		s := &server{pool: p, cfg: sc, index: i}
		key := p.keyFor(sc)
		key.Nth = seen[key]
		seen[key]++
		s.upCfg = p.configFor(sc)
		if cfg.HasGroups() {
			s.group = srv.groupFor(cfg.Name, sc.Name)
			key.Group = sc.Name
			s.upCfg.MasterDoubt = s.group.doubt
			s.noReplica = noReplica(s.upCfg.ErrPrefix, sc.Name)
		}
		var created bool
		s.up, s.conns, created = srv.registry.Acquire(key, n, s.upCfg)
		s.resp3 = backend.RESP3Conns(s.conns)
		switch {
		case created && s.group != nil:
			s.group.initAddress(s.up.Address(), sc)
		case created:
			initAddress(s.up.Address(), sc, cfg.KubernetesService)
		}
		s.stats, s.health, s.address = s.up.Stats(), s.up.Health(), s.up.Address()
		s.blocked = s.up.Blocked()
		if seeds != nil && p.readsReplicas {
			p.clusterReplicas(s, clusterMap, prev)
		}
		p.servers = append(p.servers, s)
	}
	p.full = &layout{Placement: pl, servers: p.servers}
	p.layout.Store(p.full)
	p.rebuildRing()
	return p, nil
}

// keyFor is the key of sc's upstream, but for nth.
func (p *pool) keyFor(sc config.Server) backend.Key {
	key := backend.Key{Pool: p.cfg.Name, Network: sc.Network, Addr: cmp.Or(sc.DialAddr, sc.Addr), DB: p.cfg.RedisDB}
	key.User, key.Auth = p.cfg.ServerAuth()
	if sc.Pod != "" {
		key.Service = p.srv.namespace(p.cfg) + "/" + p.cfg.KubernetesService
	}
	key.TLS = serverTLS(p.cfg, sc)
	return key
}

// configFor is what the pool hands the upstream of sc.
func (p *pool) configFor(sc config.Server) *backend.Config {
	prefix := serverErrorPrefix(sc.Name, sc.Addr)
	return &backend.Config{
		Timeout:          p.cfg.Timeout,
		AutoEject:        p.cfg.AutoEjectHosts,
		FailureLimit:     int32(max(p.cfg.ServerFailureLimit, 1)),
		RetryTimeout:     p.cfg.ServerRetryTimeout,
		ErrPrefix:        prefix,
		Logger:           p.srv.logger.With("pool", p.cfg.Name, "server", sc.Name),
		ForwardErrors:    &p.stats.ForwardError,
		Ejects:           &p.stats.ServerEjects,
		TotalConnections: &p.srv.stats.TotalConnections,
		HealthChanged:    p.healthChanged,
	}
}

// activate makes p the pool its upstreams report to: from now on they use
// its settings and counters, and their ejections rebuild its ring. Called
// as p starts to serve, after which it is the upstreams' current pool.
func (p *pool) activate() {
	for _, s := range p.servers {
		s.up.SetConfig(s.upCfg)
		s.activateReplicas()
		if s.group != nil {
			s.group.use(s)
			s.group.useReads(s)
		}
		if !p.cfg.AutoEjectHosts {
			s.health.Forgive()
		}
	}
	if p.seeds != nil && p.readsReplicas {
		go p.pollClusterReplicas()
	}
}

// release gives p's upstreams back to the registry, once p no longer
// serves, and returns the shared connections no pool uses any more.
func (p *pool) release() []*backend.Conn {
	var unused []*backend.Conn
	for _, s := range p.servers {
		if s.group != nil {
			s.group.stopReads(s)
		}
		unused = append(unused, p.srv.registry.Release(s.up, len(s.conns))...)
		unused = append(unused, s.releaseReplicas()...)
	}
	return append(unused, p.releaseExtra()...)
}

// connectAll dials every server connection now (the preconnect option);
// failures are only logged, as in nutcracker.
func (p *pool) connectAll() {
	for _, s := range p.servers {
		for _, b := range s.conns {
			b.Connect()
		}
	}
}

// pick returns the connection a client of protocol proto uses for this
// server in one batch.
func (s *server) pick(proto int) *backend.Conn {
	conns := s.conns
	if proto == backend.RESP3 {
		conns = s.resp3
	}
	if len(conns) == 1 {
		return conns[0]
	}
	return conns[int(s.next.Add(1))%len(conns)]
}

// healthChanged rebuilds the ring after an ejection or its end; the
// channels that moved with it lose their subscribers (pubsub.go).
func (p *pool) healthChanged() {
	p.rebuildRing()
	go p.srv.checkSubscriptions()
}

// rebuildRing stores the layout of a ring over the servers that are not
// ejected now.
// With auto_eject_hosts, a server without a usable address (its pod is not
// ready, or gone) is left out too, as nutcracker leaves out a failing one.
func (p *pool) rebuildRing() {
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	now := time.Now().UnixNano()
	ejected := make([]bool, len(p.servers))
	any := false
	for i, s := range p.servers {
		if until := s.health.EjectedUntil(); until != 0 && p.cfg.AutoEjectHosts {
			if until > now {
				ejected[i], any = true, true
			} else {
				s.health.ClearEjection()
				p.srv.logger.Info("server returns", "pool", p.cfg.Name, "server", s.cfg.Name)
			}
		}
		if p.cfg.AutoEjectHosts && s.address.Unavailable() != "" {
			ejected[i], any = true, true
		}
	}
	next := p.full
	if any && p.ring != nil {
		next = &layout{Placement: p.ring.Without(ejected), servers: p.servers}
	}
	if old := p.layout.Swap(next); old != nil && old != next {
		p.srv.flushTracking()
	}
}
