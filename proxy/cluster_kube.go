package proxy

import "github.com/shardproxy/shardproxy/proxy/stats"

// On Kubernetes a Redis Cluster's nodes can announce addresses the proxy
// does not dial: a pod's hostname, which no DNS the proxy asks may know,
// or the IP a pod had before it came back on a new one, which the other
// nodes gossip until the pod meets them again. Discovery dials each node
// at its pod's current IP and says so in ClusterMap.Remapped: a redirect
// that names the announced address goes to the dialled one, and the stats
// port lists them.

// clusterDialAddr is where the proxy dials the node of pool's cluster
// announced at addr: the address Remapped gives it, else addr. It runs on
// a redirect, not on every request.
func (s *Server) clusterDialAddr(pool, addr string) string {
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	if m := s.clusterMaps[pool]; m != nil {
		for _, n := range m.Remapped {
			if n.Announced == addr {
				return n.Dialled
			}
		}
	}
	return addr
}

// clusterAddresses appends, for each current redis_cluster pool, the
// nodes of its last map dialled at another address than announced.
func (s *Server) clusterAddresses(dst []stats.ClusterAddresses) []stats.ClusterAddresses {
	pools := s.poolList()
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	for _, p := range pools {
		if p.seeds == nil {
			continue
		}
		ca := stats.ClusterAddresses{Pool: p.cfg.Name, Nodes: []stats.ClusterNodeAddress{}}
		if m := s.clusterMaps[p.cfg.Name]; m != nil {
			ca.Nodes = append(ca.Nodes, m.Remapped...)
		}
		dst = append(dst, ca)
	}
	return dst
}
