package proxy

import (
	"slices"

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
// The slot map says nothing of replication lag, and no poller measures
// it, so replica_max_lag is taken and not applied in a cluster pool.

// clusterReplicas makes s's replicas those m lists for it, with upstreams
// from the registry, held until the pool is released.
func (p *pool) clusterReplicas(s *server, m *ClusterMap) {
	var addrs []string
	if s.index < len(m.Replicas) {
		addrs = m.Replicas[s.index]
	}
	n := max(p.cfg.ServerConnections, 1)
	for _, addr := range addrs {
		r := &replica{addr: addr, key: clusterReplicaKey(p, addr)}
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
	return backend.Key{Pool: p.cfg.Name, Network: "tcp", Addr: addr, Auth: p.cfg.RedisAuth, ReadOnly: true}
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
// when none takes reads: a group's eligible replicas, or a cluster
// master's.
func (s *server) pickReplica() *replica {
	if s.group != nil {
		return s.group.reads.pick()
	}
	switch len(s.replicas) {
	case 0:
		return nil
	case 1:
		return s.replicas[0]
	}
	return s.replicas[int(s.nextReplica.Add(1))%len(s.replicas)]
}
