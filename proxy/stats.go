package proxy

import (
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Counters are atomic fields on the objects they count (stats.Pool on a
// pool, stats.Server on a server, globalStats on the Server), so the
// request path never looks anything up by name. Snapshot reads them all
// for the stats port.

type globalStats struct {
	stats.Process

	// ready is SetReady's flag: the Server is ready only while it is set,
	// every pool listens and the Server is not shutting down.
	ready atomic.Bool
}

// Snapshot fills dst with the counters and state of this moment, for the
// stats port (proxy/statsport), reusing dst's storage.
func (s *Server) Snapshot(dst *stats.Snapshot) {
	dst.Reset()
	now := time.Now()
	dst.Version, dst.Time = Version, now
	v := &dst.Process
	s.stats.Read(v)
	// Whole seconds of both clocks, as nutcracker subtracts two time(NULL).
	v[stats.Uptime] = now.Unix() - s.started.Unix()
	v[stats.Timestamp] = now.Unix()
	v[stats.Cores] = int64(runtime.GOMAXPROCS(0))
	v[stats.OpenFilesLimit] = openFilesLimit()
	if n := s.maxClients.Load(); n != math.MaxInt64 {
		v[stats.MaxClientConnections] = n
	}

	services := s.serviceStatus()
	dst.NotReady = s.notReady(services)
	if dst.NotReady == "" {
		v[stats.Ready] = 1
	}
	_, dst.Warning = discoveryNotReady(services)
	dst.Services = services
	dst.Reloads, dst.ReloadsRejected = s.reloads.Load(), s.failed.Load()
	if !s.lastRejected.Load() {
		v[stats.LastReloadSuccessful] = 1
	}
	if h := s.discovery.configHash.Load(); h != nil {
		dst.ConfigSHA256 = *h
	}

	nowNanos := now.UnixNano()
	for _, p := range s.poolList() {
		ps := dst.AddPool(p.cfg.Name)
		p.stats.Read(&ps.Values)
		ps.Values[stats.ClientConnectionsLimit] = int64(p.cfg.ClientConnections)
		var clusterMap *ClusterMap
		if p.seeds != nil {
			ps.Cluster, clusterMap = s.clusterSnapshot(p), s.clusterMapFor(p.cfg.Name)
		}
		for _, srv := range p.snapshotServers() {
			ss := ps.AddServer(srv.cfg.Name)
			srv.stats.Read(&ss.Values)
			ss.Values[stats.ServerEjectedAt] = srv.health.EjectedAt()
			if srv.health.EjectedUntil() > nowNanos {
				ss.Values[stats.ServerEjected] = 1
			}
			if srv.health.Up() {
				ss.Values[stats.ServerUp] = 1
			}
			ss.Latency = srv.stats.Latency.Snapshot()
			ps.Latency.Add(&ss.Latency)
			addr, source, at := srv.address.Status()
			why := srv.address.Unavailable()
			ss.Address = stats.AddressStatus{Pool: p.cfg.Name, Server: srv.cfg.Name, Addr: addr, Source: source, Usable: why == "", Reason: why, ChangedAt: at}
			if srv.group != nil {
				ss.Group = srv.group.snapshot(why)
			}
			if clusterMap != nil {
				ss.Cluster = srv.clusterNodeStatus(clusterMap)
			}
		}
	}
	dst.ClusterAddresses = s.clusterAddresses(dst.ClusterAddresses)
}

// SetReady sets the flag that readiness (/readyz on the stats port) also
// requires. It starts false: call SetReady(true) once the servers are known
// (after Start for a static config, after discovery has synced or given up
// waiting), and SetReady(false) at the start of a graceful shutdown so that
// load balancers stop sending clients before the listeners close.
func (s *Server) SetReady(ready bool) { s.stats.ready.Store(ready) }

// notReady returns why the Server should get no clients, or "" when it
// should: SetReady(true) was called, every pool listens, Shutdown has not
// begun and discovery has listed every Service (services).
func (s *Server) notReady(services []stats.ServiceStatus) string {
	if !s.stats.ready.Load() {
		return "not ready"
	}
	s.mu.Lock()
	closing, listening := s.closing, len(s.listeners)
	s.mu.Unlock()
	switch {
	case closing:
		return "shutting down"
	case listening < len(s.poolList()):
		return "not listening"
	}
	blocking, _ := discoveryNotReady(services)
	return blocking
}
