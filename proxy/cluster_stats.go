package proxy

import (
	"bytes"
	"cmp"
	"slices"
	"time"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// The stats of a redis_cluster pool: per node, the nutcracker counters of
// its server and the redirects it answered, which live on the node's
// upstream (stats.Server) and so outlive the pool rebuilds of map
// changes; per pool, what discovery did (SetClusterStatus) and how much
// of the map is served. Nothing here runs for a request that a node runs
// where it was sent.

// ClusterStatus is what discovery did for a redis_cluster pool.
type ClusterStatus struct {
	// Epoch is the cluster's current epoch (CLUSTER INFO
	// cluster_current_epoch) at the last read of the map.
	Epoch uint64
	// Refreshes counts reads of the map, Changes the maps handed to
	// SetClusterMap because the slots or nodes changed, LastChange when
	// the last was (zero before the first).
	Refreshes, Changes int64
	LastChange         time.Time
}

// clusterStatusSource is SetClusterStatus's function.
type clusterStatusSource func(pool string) (ClusterStatus, bool)

// SetClusterStatus gives the Server the function that reports what
// discovery did for a redis_cluster pool, false for a pool it does not
// watch, for the stats port. It is called for each snapshot, outside the
// Server's locks, and must not call the Server.
func (s *Server) SetClusterStatus(fn func(pool string) (ClusterStatus, bool)) {
	src := clusterStatusSource(fn)
	s.clusterStatus.Store(&src)
}

// countRedirect counts reply, an error reply of srv, a node of a
// redis_cluster pool, when it is -MOVED, -ASK or -TRYAGAIN.
func (srv *server) countRedirect(reply []byte) {
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		srv.stats.Moved.Add(1)
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		srv.stats.Ask.Add(1)
	case bytes.HasPrefix(reply, []byte("-TRYAGAIN")):
		srv.stats.TryAgain.Add(1)
	}
}

// snapshotServers are the servers of p the stats port reports: its
// servers, then for a redis_cluster pool the nodes it dialled for
// redirects, by address.
func (p *pool) snapshotServers() []*server {
	if p.seeds == nil {
		return p.servers
	}
	p.extraMu.Lock()
	out := slices.Clone(p.servers)
	n := len(out)
	for _, srv := range p.extra {
		out = append(out, srv)
	}
	p.extraMu.Unlock()
	slices.SortFunc(out[n:], func(a, b *server) int { return cmp.Compare(a.cfg.DialAddr, b.cfg.DialAddr) })
	return out
}

// clusterSnapshot is the state of p's slot map for the stats port.
func (s *Server) clusterSnapshot(p *pool) *stats.ClusterStatus {
	st := &stats.ClusterStatus{}
	if fn := s.clusterStatus.Load(); fn != nil {
		if cs, ok := (*fn)(p.cfg.Name); ok {
			st.Epoch, st.Refreshes, st.Changes, st.LastChange = cs.Epoch, cs.Refreshes, cs.Changes, cs.LastChange
		}
	}
	// The pool's map, which its placement was built from, out-of-range
	// owners serving nothing as there.
	m := p.clusterMap
	for _, o := range m.Slots {
		if o >= 0 && int(o) < len(m.Masters) {
			st.SlotsServed++
		}
	}
	st.SlotsUnserved = len(m.Slots) - st.SlotsServed
	return st
}

// clusterNodeStatus is srv, a node of a redis_cluster pool whose last map
// is m, for the stats port.
func (srv *server) clusterNodeStatus(m *ClusterMap) *stats.ClusterNodeStatus {
	st := &stats.ClusterNodeStatus{Addr: srv.cfg.DialAddr, Moved: srv.stats.Moved.Load(), Ask: srv.stats.Ask.Load(), TryAgain: srv.stats.TryAgain.Load()}
	if i := slices.Index(m.Masters, srv.cfg.DialAddr); i >= 0 {
		st.Role = stats.RoleMaster
		if i < len(m.IDs) {
			st.ID = m.IDs[i]
		}
	}
	return st
}
