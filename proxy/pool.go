package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// pool is one configured pool while it serves: its servers, its ring, and
// the counters nutcracker reports for it.
type pool struct {
	srv     *Server
	cfg     *config.Pool
	servers []*server // in ring index order
	full    *hashring.Ring
	ring    atomic.Pointer[hashring.Ring] // full, or rebuilt without ejected servers
	stats   *stats.Pool                   // shared with the same pool before and after a reload

	ejectMu sync.Mutex // serialises ring rebuilds after ejections
}

// server is one configured server while it serves: its connections, its
// health and its counters. config.Server is what the file says; this is what
// is live.
type server struct {
	pool  *pool
	cfg   config.Server
	index int
	conns []*backendConn
	next  atomic.Uint32 // round robin over conns

	// stats and health outlive a reload that keeps the server (same pool,
	// name and address), so counters and ejections carry over.
	stats   *stats.Server
	health  *serverHealth
	address serverAddress
	txConns dedicatedPool
}

// serverHealth is a server's failure count and ejection, for auto_eject_hosts.
type serverHealth struct {
	failures     atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when live
	ejectedAt    atomic.Int64 // unix microseconds of the last ejection, as nutcracker reports it
}

// newPool builds a pool. prev is the pool of the same name in the config
// it replaces, or nil; servers it shares with prev keep their counters and
// health.
func newPool(srv *Server, cfg *config.Pool, prev *pool) (*pool, error) {
	nodes := make([]hashring.Node, len(cfg.Servers))
	for i, s := range cfg.Servers {
		nodes[i] = s.Node()
	}
	dist, err := hashring.ParseDistribution(cfg.Distribution)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", cfg.Name, err)
	}
	ring, err := hashring.New(nodes, hashring.Options{Hash: cfg.Hash, Distribution: dist, HashTag: cfg.HashTag})
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", cfg.Name, err)
	}
	p := &pool{srv: srv, cfg: cfg, full: ring, stats: new(stats.Pool)}
	if prev != nil {
		p.stats = prev.stats
	}
	p.ring.Store(ring)
	for i, sc := range cfg.Servers {
		s := &server{pool: p, cfg: sc, index: i, stats: new(stats.Server), health: new(serverHealth)}
		if old := prev.server(sc); old != nil {
			s.stats, s.health = old.stats, old.health
		}
		s.address.init(sc, cfg.KubernetesService)
		n := cfg.ServerConnections
		if n < 1 {
			n = 1
		}
		s.conns = make([]*backendConn, n)
		for j := range s.conns {
			s.conns[j] = &backendConn{srv: s}
		}
		p.servers = append(p.servers, s)
	}
	p.rebuildRing()
	return p, nil
}

// server returns p's server with the same name and address as sc, or nil.
func (p *pool) server(sc config.Server) *server {
	if p == nil {
		return nil
	}
	for _, s := range p.servers {
		if s.cfg.Name == sc.Name && s.cfg.Addr == sc.Addr && s.cfg.Network == sc.Network {
			return s
		}
	}
	return nil
}

// connectAll dials every server connection now (the preconnect option);
// failures are only logged, as in nutcracker.
func (p *pool) connectAll() {
	for _, s := range p.servers {
		for _, b := range s.conns {
			b.mu.Lock()
			if b.state == connIdle {
				b.startDialLocked()
			}
			b.mu.Unlock()
		}
	}
}

func (p *pool) close() {
	for _, s := range p.servers {
		for _, b := range s.conns {
			b.close()
		}
		s.txConns.mu.Lock()
		idle := s.txConns.idle
		s.txConns.idle = nil
		s.txConns.mu.Unlock()
		for _, d := range idle {
			d.close()
		}
	}
}

// idle reports whether no request waits on any of the pool's connections.
func (p *pool) idle() bool {
	for _, s := range p.servers {
		if s.stats.OutQueue.Load() > 0 {
			for _, b := range s.conns {
				b.mu.Lock()
				n := b.queue.len()
				b.mu.Unlock()
				if n > 0 {
					return false
				}
			}
		}
	}
	return true
}

// pick returns the connection a client uses for this server in one batch.
func (s *server) pick() *backendConn {
	if len(s.conns) == 1 {
		return s.conns[0]
	}
	return s.conns[int(s.next.Add(1))%len(s.conns)]
}

// errText is the error reply for a request this server could not answer.
func (s *server) errText(cause string) string {
	if s.cfg.Name == s.cfg.Addr {
		return fmt.Sprintf("ERR server %s: %s", s.cfg.Name, cause)
	}
	return fmt.Sprintf("ERR server %s (%s): %s", s.cfg.Name, s.cfg.Addr, cause)
}

// ok records that the server answered, which resets its failure count.
func (s *server) ok() {
	if s.health.failures.Load() != 0 {
		s.health.failures.Store(0)
	}
}

// failed records a failed connection. With auto_eject_hosts, the
// server_failure_limit'th consecutive failure takes the server out of the
// ring for server_retry_timeout; it comes back without a health check, as in
// nutcracker.
func (s *server) failed() {
	cfg := s.pool.cfg
	if !cfg.AutoEjectHosts {
		return
	}
	limit := int32(cfg.ServerFailureLimit)
	if limit < 1 {
		limit = 1
	}
	if s.health.failures.Add(1) < limit {
		return
	}
	s.health.failures.Store(0)
	now := time.Now()
	s.health.ejectedUntil.Store(now.Add(cfg.ServerRetryTimeout).UnixNano())
	s.health.ejectedAt.Store(now.UnixMicro())
	s.pool.stats.ServerEjects.Add(1)
	s.pool.srv.logger.Warn("server ejected", "pool", cfg.Name, "server", s.cfg.Name, "retry_in", cfg.ServerRetryTimeout)
	s.pool.rebuildRing()
	time.AfterFunc(cfg.ServerRetryTimeout, s.pool.rebuildRing)
}

// rebuildRing stores a ring over the servers that are not ejected now.
// With auto_eject_hosts, a server without a usable address (its pod is not
// ready, or gone) is left out too, as nutcracker leaves out a failing one.
func (p *pool) rebuildRing() {
	p.ejectMu.Lock()
	defer p.ejectMu.Unlock()
	now := time.Now().UnixNano()
	ejected := make([]bool, len(p.servers))
	any := false
	for i, s := range p.servers {
		if until := s.health.ejectedUntil.Load(); until != 0 {
			if until > now {
				ejected[i], any = true, true
			} else {
				s.health.ejectedUntil.Store(0)
				p.srv.logger.Info("server returns", "pool", p.cfg.Name, "server", s.cfg.Name)
			}
		}
		if p.cfg.AutoEjectHosts && s.address.unavailable() != "" {
			ejected[i], any = true, true
		}
	}
	if !any {
		p.ring.Store(p.full)
		return
	}
	p.ring.Store(p.full.Without(ejected))
}
