package proxy

import (
	"slices"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
)

// A redis_cluster pool with read_from prefer_replica or replica sends the
// read-only commands of a slot to a replica of the slot's master, with the
// meanings read_from has for groups (replicas.go): the same commands, the
// same exceptions (scripts, blocking and split commands, a read after a
// write to the master in the same batch, MULTI, WATCH, CLIENT TRACKING),
// and with prefer_replica a read a replica could not serve goes to the
// master. The replicas are the slot map's (ClusterMap.Replicas): those the
// cluster lists under each master, less those it says failed. Each is an
// upstream of its own, keyed apart from the node as a master
// (backend.Key.ReadOnly), whose connections send READONLY in their
// handshake: no connection, a reconnected one included, carries a read
// before the replica acknowledged READONLY, and no other connection is
// in READONLY mode. A replica that answers -MOVED (the slot moved, or the
// node left READONLY mode) has the read followed to the node named, a
// master, on a master's connection (redirect in cluster.go).
//
// The slot map says nothing of replication lag or of a replica's link to
// its master: a poller per pool asks ROLE of each replica, and with
// replica_max_lag of its master, every replicaPollInterval, and a replica
// takes reads while its link is connected and, with replica_max_lag, its
// offset is within that many bytes of its master's, as in a group.

// clusterReplicas makes s's replicas those m lists for it, with upstreams
// from the registry, held until the pool is released. A replica prev, the
// pool p replaces, had takes reads as it did there; a new one does from
// the start without replica_max_lag, else once a poll says so.
func (p *pool) clusterReplicas(s *server, m *ClusterMap, prev *pool) {
	var addrs []string
	if s.index < len(m.Replicas) {
		addrs = m.Replicas[s.index]
	}
	n := max(p.cfg.ServerConnections, 1)
	for _, addr := range addrs {
		r := &replica{addr: addr, key: clusterReplicaKey(p, addr)}
		r.reads.Store(p.cfg.ReplicaMaxLag == 0)
		if was := prev.clusterReplica(addr); was != nil {
			r.reads.Store(was.reads.Load())
		}
		var created bool
		r.up, r.conns, created = p.srv.registry.Acquire(r.key, n, clusterReplicaConfig(s, addr))
		if created {
			initAddress(r.up.Address(), clusterServer(addr), "")
		}
		r.resp3 = backend.RESP3Conns(r.conns)
		s.replicas = append(s.replicas, r)
	}
	s.noReplica = noClusterReplica(s.cfg.Name)
}

// replicasChanged reports whether m lists other replicas than the map p
// was built from, in a pool that reads from them.
func (p *pool) replicasChanged(m *ClusterMap) bool {
	return p.readsReplicas && !slices.EqualFunc(p.clusterMap.Replicas, m.Replicas, slices.Equal[[]string])
}

// clusterReplicaKey is the key of the upstream of p's replica at addr.
func clusterReplicaKey(p *pool, addr string) backend.Key {
	key := backend.Key{Pool: p.cfg.Name, Network: "tcp", Addr: addr, ReadOnly: true}
	key.User, key.Auth = p.cfg.ServerAuth()
	return key
}

// clusterReplicaConfig is what s's pool hands the upstream of s's replica
// at addr: the node's settings, with errors naming the master and the
// replica, and no ejection, which would change nothing in a cluster pool.
func clusterReplicaConfig(s *server, addr string) *backend.Config {
	cfg := *s.pool.configFor(clusterServer(addr))
	cfg.ErrPrefix = "ERR server " + s.cfg.Name + " (replica " + addr + "): "
	cfg.AutoEject = false
	cfg.HealthChanged = func() {}
	return &cfg
}

// activateReplicas makes s's pool the one its replicas' upstreams report
// to, as activate does for its masters.
func (s *server) activateReplicas() {
	for _, r := range s.replicas {
		r.up.SetConfig(clusterReplicaConfig(s, r.addr))
	}
}

// releaseReplicas gives s's replicas' upstreams back to the registry.
func (s *server) releaseReplicas() []*backend.Conn {
	var unused []*backend.Conn
	for _, r := range s.replicas {
		unused = append(unused, s.pool.srv.registry.Release(r.up, len(r.conns))...)
	}
	return unused
}

// pickReplica returns the replica a read of s goes to, round robin, or nil
// when none takes reads: one of a group's eligible replicas, or of a
// cluster master's that take reads.
func (s *server) pickReplica() *replica {
	if s.group != nil {
		return s.group.reads.pick()
	}
	n := len(s.replicas)
	if n == 0 {
		return nil
	}
	first := 0
	if n > 1 {
		first = int(s.nextReplica.Add(1) % uint32(n))
	}
	for i := range n {
		if r := s.replicas[(first+i)%n]; r.reads.Load() {
			return r
		}
	}
	return nil
}

// clusterReplica returns p's replica at addr, or nil; p may be nil.
func (p *pool) clusterReplica(addr string) *replica {
	if p == nil {
		return nil
	}
	for _, s := range p.servers {
		for _, r := range s.replicas {
			if r.addr == addr {
				return r
			}
		}
	}
	return nil
}

// pollClusterReplicas polls p's replicas until p is released.
func (p *pool) pollClusterReplicas() {
	t := time.NewTicker(replicaPollInterval)
	defer t.Stop()
	for !p.isReleased() && !p.srv.isClosing() {
		p.pollClusterReplicasOnce()
		<-t.C
	}
}

// isReleased reports whether p serves no more.
func (p *pool) isReleased() bool {
	p.extraMu.Lock()
	defer p.extraMu.Unlock()
	return p.released
}

// clusterProbes are the ROLE requests of one poll of a master and its
// replicas.
type clusterProbes struct {
	s        *server
	master   *roleProbe // nil without replica_max_lag
	replicas []*roleProbe
}

// pollClusterReplicasOnce asks ROLE of every replica of p, and with
// replica_max_lag of its master, and has each take reads or not by the
// replies (replicaState).
func (p *pool) pollClusterReplicasOnce() {
	maxLag := p.cfg.ReplicaMaxLag
	var polls []clusterProbes
	for _, s := range p.servers {
		if len(s.replicas) == 0 {
			continue
		}
		cp := clusterProbes{s: s}
		if maxLag > 0 {
			cp.master = submitRole(s.conns[0])
		}
		for _, r := range s.replicas {
			cp.replicas = append(cp.replicas, submitRole(r.conns[0]))
		}
		polls = append(polls, cp)
	}
	timeout := time.NewTimer(replicaPollTimeout)
	defer timeout.Stop()
	for _, cp := range polls {
		masterOffset := int64(-1)
		if cp.master != nil && awaitProbe(cp.master, timeout) {
			if role, err := backend.ParseRole(cp.master.reply); err == nil && role.Role == "master" {
				masterOffset = role.Offset
			}
		}
		for i, r := range cp.s.replicas {
			awaitProbe(cp.replicas[i], timeout)
			_, why := replicaState(r.addr, cp.replicas[i].reply, maxLag, masterOffset, true)
			if r.reads.Swap(why == "") == (why == "") {
				continue
			}
			if why == "" {
				p.srv.logger.Info("replica takes reads", "pool", p.cfg.Name, "server", cp.s.cfg.Name, "replica", r.addr)
			} else {
				p.srv.logger.Info("replica takes no reads", "pool", p.cfg.Name, "server", cp.s.cfg.Name, "replica", r.addr, "reason", why)
			}
		}
	}
}

// awaitProbe waits for pr's reply until timeout fires, after which the
// probes not in yet time out at once; it reports whether a reply came.
func awaitProbe(pr *roleProbe, timeout *time.Timer) bool {
	select {
	case pr.reply = <-pr.done:
		return true
	default:
	}
	select {
	case pr.reply = <-pr.done:
		return true
	case <-timeout.C:
		timeout.Reset(0)
		return false
	}
}
