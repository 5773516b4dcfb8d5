package proxy

import (
	"bytes"
	"cmp"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// A redis_cluster pool's servers are the masters of a Redis Cluster, its
// placement the cluster's slot table (placement.Slots), both from the map
// discovery hands SetClusterMap. A new map rebuilds the pool the way a
// reload does: servers that stay keep their connections (the registry's),
// clients take the new layout at their next batch, and the request path
// is the one every pool has, with no lookup or lock of its own. A map
// changes at a reshard or a failover, a rare event next to requests, so
// the rebuild costs nothing where it matters.
//
// A node that answers -MOVED or -ASK for a request did not run it: the
// request is sent again to the node named, and its reply is the client's,
// up to maxRedirects times. MOVED, and a request to a node that failed,
// also ask discovery for the new map. One answered -TRYAGAIN is sent
// again a little later (cluster_tryagain.go).

// ClusterMap is what discovery says of a Redis Cluster: Slots[s] is the
// index in Masters of the master serving slot s, or -1 when none does.
// Masters are host:port to dial.
type ClusterMap struct {
	Slots   [hashring.SlotCount]int32
	Masters []string
	// IDs are the node IDs of Masters, at the same index; "" (or none)
	// where unknown. They are for the stats port only.
	IDs []string

	// Replicas[i] lists the replicas of Masters[i] (host:port to dial)
	// that may serve reads: none the cluster says failed. It may be
	// shorter than Masters, nil for none. Only a pool with read_from
	// prefer_replica or replica uses it (cluster_replicas.go).
	Replicas [][]string

	// Remapped lists the nodes, masters and replicas, dialled at another
	// address than the one the cluster announces for them (cluster_kube.go).
	Remapped []stats.ClusterNodeAddress
}

// ClusterPool is a redis_cluster pool: what a watcher of its cluster
// needs.
type ClusterPool struct {
	Pool     string
	Seeds    []string // host:port of the configured seed nodes
	Password string   // redis_auth, or server_auth_password; "" for none
	Username string   // server_auth_user, "" for the default user

	// Service is the pool's kubernetes_service, zero for none: its
	// EndpointSlices say where each node is dialled, and without a servers
	// list its pods are the seeds, on Port.
	Service Service
	Port    int       // kubernetes_port, or 6379; for a pool without servers
	Pods    []string  // beside Seeds: the pod a seed's host names, "" for an IP
	TLS     ServerTLS // how the nodes are spoken to: server_tls_*
}

// ClusterPools lists the current redis_cluster pools.
func (s *Server) ClusterPools() []ClusterPool {
	var out []ClusterPool
	for _, p := range s.poolList() {
		if p.seeds == nil {
			continue
		}
		cp := ClusterPool{Pool: p.cfg.Name, TLS: serverTLSOf(p.seeds)}
		cp.Username, cp.Password = p.seeds.ServerAuth()
		for _, sc := range p.seeds.Servers {
			cp.Seeds = append(cp.Seeds, sc.DialAddr)
		}
		if p.seeds.KubernetesService != "" {
			cp.Service = Service{Namespace: s.namespace(p.seeds), Name: p.seeds.KubernetesService}
			cp.Port = cmp.Or(p.seeds.KubernetesPort, 6379)
			for _, sc := range p.seeds.Servers {
				cp.Pods = append(cp.Pods, sc.Pod)
			}
		}
		out = append(out, cp)
	}
	return out
}

// SetClusterMap tells the redis_cluster pool which master serves each
// slot now. A pool whose masters or slots changed is rebuilt over them;
// clients move to it at their next batch. The map is kept for pools a
// later Reload builds.
func (s *Server) SetClusterMap(pool string, m ClusterMap) {
	m.Masters = slices.Clone(m.Masters)
	m.IDs = slices.Clone(m.IDs)
	m.Replicas = slices.Clone(m.Replicas)
	for i := range m.Replicas {
		m.Replicas[i] = slices.Clone(m.Replicas[i])
	}
	m.Remapped = slices.Clone(m.Remapped)
	s.clusterMu.Lock()
	if s.clusterMaps == nil {
		s.clusterMaps = map[string]*ClusterMap{}
	}
	s.clusterMaps[pool] = &m
	s.clusterMu.Unlock()

	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	for _, p := range s.poolList() {
		if p.cfg.Name != pool || p.seeds == nil || p.clusterMap.Slots == m.Slots && slices.Equal(p.clusterMap.Masters, m.Masters) && !p.replicasChanged(&m) {
			continue
		}
		next, err := newPool(s, p.seeds, p)
		if err != nil {
			s.logger.Error("cluster slot map", "pool", pool, "err", err)
			continue
		}
		next.activate()
		s.replacePool(p, next)
		s.logger.Info("cluster slot map changed", "pool", pool, "masters", len(next.servers))
	}
}

// clusterMapFor returns the last map of pool, or one where no slot is
// served.
func (s *Server) clusterMapFor(pool string) *ClusterMap {
	s.clusterMu.Lock()
	defer s.clusterMu.Unlock()
	if m := s.clusterMaps[pool]; m != nil {
		return m
	}
	m := &ClusterMap{}
	for i := range m.Slots {
		m.Slots[i] = -1
	}
	return m
}

// clusterConfig is cfg, whose servers are seeds, with m's masters as its
// servers, named by address.
func clusterConfig(cfg *config.Pool, m *ClusterMap) *config.Pool {
	next := *cfg
	next.Servers = make([]config.Server, len(m.Masters))
	for i, addr := range m.Masters {
		next.Servers[i] = clusterServer(addr)
	}
	return &next
}

// clusterServer is the server of a cluster node at addr (host:port).
func clusterServer(addr string) config.Server {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return config.Server{Name: addr, Addr: addr, Network: "tcp", DialAddr: addr, Weight: 1, ExplicitName: true, Port: n}
}

// clusterPlacement is the placement of m, whose masters are the pool's
// servers in order. A slot whose owner is out of range is served by none.
func clusterPlacement(m *ClusterMap) *placement.Slots {
	owner := m.Slots
	for i, o := range owner {
		if o < -1 || int(o) >= len(m.Masters) {
			owner[i] = -1
		}
	}
	return placement.NewSlots(owner, len(m.Masters))
}

// noOwner is the error for a key no server of l owns: in a Redis Cluster
// pool, a key whose slot no master serves.
func (l *layout) noOwner() string {
	if _, ok := l.Placement.(*placement.Slots); ok {
		return msgSlotNotServed
	}
	return msgNoServer
}

// noOwnerOf is noOwner for key, naming in a Redis Cluster pool the slot
// that no master serves after Redis' own text, which clients match on.
func (l *layout) noOwnerOf(key []byte) string {
	if _, ok := l.Placement.(*placement.Slots); ok {
		return msgSlotNotServed + " (slot " + strconv.Itoa(int(hashring.KeySlot(key))) + ")"
	}
	return msgNoServer
}

// maxRedirects bounds how often one request follows MOVED or ASK; the
// reply after that is the client's.
const maxRedirects = 5

// askingCommand is ASKING, sent right before a request that -ASK sent to
// a node importing its slot.
var askingCommand = []byte("*1\r\n$6\r\nASKING\r\n")

// isRedirect reports whether reply is -MOVED or -ASK.
func isRedirect(reply []byte) bool {
	return bytes.HasPrefix(reply, []byte("-MOVED ")) || bytes.HasPrefix(reply, []byte("-ASK "))
}

// parseRedirect reads "-MOVED slot host:port" and "-ASK slot host:port".
func parseRedirect(reply []byte) (ask bool, addr string, ok bool) {
	var rest []byte
	switch {
	case bytes.HasPrefix(reply, []byte("-MOVED ")):
		rest = reply[len("-MOVED "):]
	case bytes.HasPrefix(reply, []byte("-ASK ")):
		rest, ask = reply[len("-ASK "):], true
	default:
		return false, "", false
	}
	rest = bytes.TrimRight(rest, "\r\n")
	sp := bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return false, "", false
	}
	hp := string(rest[sp+1:])
	// Redis writes an IPv6 host without brackets: the port follows the
	// last colon.
	c := bytes.LastIndexByte(rest[sp+1:], ':')
	if c <= 0 {
		return false, "", false
	}
	host, port := hp[:c], hp[c+1:]
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return ask, net.JoinHostPort(host, port), true
}

// redirect decides about reply, an error to s's request to a cluster
// node: when it is -MOVED or -ASK, the request is sent to the node it
// names and reply is not delivered. It runs on the connection's reader
// and does not block. Requests of one client to a node go out on one
// connection and their replies come back in order, so the requests that
// follow one to its new node do so in the order the client sent them.
func (s *replySlot) redirect(reply []byte) bool {
	ask, addr, ok := parseRedirect(reply)
	if !ok {
		return false
	}
	p := s.req.srv.pool
	if !ask {
		p.pokeCluster()
	}
	if s.redirects >= maxRedirects {
		return false
	}
	target := p.srv.clusterNode(p.cfg.Name, addr)
	if target == nil {
		return false
	}
	s.redirects++
	p.srv.clusterRedirects.Add(1)
	conn := target.conns[0]
	if s.conn != nil && s.conn.Proto() == backend.RESP3 {
		conn = target.resp3[0]
	}
	// A read a replica answered -MOVED for goes to a master now, which
	// hands it to no replica again.
	s.req.srv, s.conn, s.replica = target, conn, nil
	s.again.asking = ask
	if s.tracked != nil {
		// A tracking client's request leaves its own connections: what
		// it reads there is not tracked, so the client drops its whole
		// cache after this reply (its pushes follow its batch's
		// replies), and a retry sends no CLIENT CACHING, which a shared
		// connection refuses.
		s.tracked.Lost()
		s.tracked, s.caching = nil, nil
	}
	target.stats.Requests.Add(1)
	target.stats.RequestBytes.Add(int64(len(s.req.bytes)))
	if ask {
		reqs := append(append(make([]byte, 0, len(askingCommand)+len(s.req.bytes)), askingCommand...), s.req.bytes...)
		conn.Submit(reqs, []backend.ReplySink{discardReply{}, s}, []int{len(askingCommand), len(s.req.bytes)}, time.Now())
		return true
	}
	conn.Submit(s.req.bytes, []backend.ReplySink{s}, []int{len(s.req.bytes)}, time.Now())
	return true
}

// pokeCluster asks discovery to read p's cluster map again, at most
// every pokeInterval: requests failing together, or redirected together,
// are one sign.
func (p *pool) pokeCluster() {
	f := p.srv.resolveCluster
	now := time.Now().UnixNano()
	if last := p.lastPoke.Load(); f == nil || now-last < int64(pokeInterval) || !p.lastPoke.CompareAndSwap(last, now) {
		return
	}
	f(p.cfg.Name)
}

// pokeInterval bounds how often a pool asks for its cluster map again.
const pokeInterval = 100 * time.Millisecond

// clusterFailed takes in that a request to a node of a cluster pool
// failed: the node may be down, and the cluster failing it over.
func (s *replySlot) clusterFailed() {
	if s.req.srv != nil && s.req.srv.pool.seeds != nil {
		s.req.srv.pool.pokeCluster()
	}
}

// clusterNode returns the server of the current redis_cluster pool named
// pool at addr: one of its masters, or a node the map does not name yet,
// dialled through the registry and kept until the pool is released; nil
// when there is no such pool.
func (s *Server) clusterNode(pool, addr string) *server {
	for _, p := range s.poolList() {
		if p.cfg.Name == pool && p.seeds != nil {
			return p.node(s.clusterDialAddr(pool, addr))
		}
	}
	return nil
}

// node returns p's server at addr, made if it is none of p's masters.
func (p *pool) node(addr string) *server {
	for _, srv := range p.servers {
		if srv.cfg.DialAddr == addr {
			return srv
		}
	}
	p.extraMu.Lock()
	defer p.extraMu.Unlock()
	if srv := p.extra[addr]; srv != nil || p.released {
		return srv
	}
	sc := clusterServer(addr)
	srv := &server{pool: p, cfg: sc, index: -1, upCfg: p.configFor(sc)}
	var created bool
	srv.up, srv.conns, created = p.srv.registry.Acquire(p.keyFor(sc), max(p.cfg.ServerConnections, 1), srv.upCfg)
	srv.resp3 = backend.RESP3Conns(srv.conns)
	if created {
		initAddress(srv.up.Address(), sc, "")
	}
	srv.stats, srv.health, srv.address = srv.up.Stats(), srv.up.Health(), srv.up.Address()
	srv.blocked = srv.up.Blocked()
	if p.extra == nil {
		p.extra = map[string]*server{}
	}
	p.extra[addr] = srv
	return srv
}

// releaseExtra gives back the upstreams of nodes p dialled for redirects,
// and keeps it from dialling more.
func (p *pool) releaseExtra() []*backend.Conn {
	p.extraMu.Lock()
	defer p.extraMu.Unlock()
	p.released = true
	var unused []*backend.Conn
	for _, srv := range p.extra {
		unused = append(unused, p.srv.registry.Release(srv.up, len(srv.conns))...)
	}
	p.extra = nil
	return unused
}
