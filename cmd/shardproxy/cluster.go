package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// clusterWatch feeds the proxy's redis_cluster pools: a ClusterWatcher
// per pool, seeded with the pool's servers, hands each new slot map to
// SetClusterMap, and reads the map again when the proxy saw a MOVED.
//
// On Kubernetes (a pool with kubernetes_service) the seeds are the
// Service's ready pods, and each node is dialled at its pod's current IP:
// the pod its announced hostname names, or the pod with its announced IP,
// or the pod that had that IP before, so a pod that came back on a new IP
// is reached while the other nodes still gossip its old one.
type clusterWatch struct {
	logger *slog.Logger

	mu        sync.Mutex // guards the fields below
	ctx       context.Context
	srv       *proxy.Server
	running   map[string]*runningCluster // by pool
	pools     map[string]proxy.ClusterPool
	endpoints map[proxy.Service]map[string]discovery.Endpoint
	// earlier holds, per Service and pod, the IPs the pod had before its
	// current one, the newest last.
	earlier map[proxy.Service]map[string][]string
}

// runningCluster is one pool's watcher. On Kubernetes it is made once the
// pool has a seed.
type runningCluster struct {
	watcher  *discovery.ClusterWatcher // nil until the pool has seeds
	password string
	username string
	service  proxy.Service
	tls      proxy.ServerTLS
	seeds    []string
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned
	first    chan struct{} // closed at the first map
	once     sync.Once
}

// Bounds of clusterWatch.earlier: the IPs kept per pod, and the pods kept
// per Service (pods that are gone are forgotten first).
const (
	earlierIPs  = 4
	earlierPods = 1024
)

func newClusterWatch(logger *slog.Logger) *clusterWatch {
	return &clusterWatch{logger: logger, running: map[string]*runningCluster{}}
}

// resolve is the proxy's ResolveCluster: read the pool's map now.
func (w *clusterWatch) resolve(pool string) {
	w.mu.Lock()
	r := w.running[pool]
	w.mu.Unlock()
	if r != nil && r.watcher != nil {
		r.watcher.Poke()
	}
}

// status is the proxy's SetClusterStatus: what the pool's watcher did.
func (w *clusterWatch) status(pool string) (proxy.ClusterStatus, bool) {
	w.mu.Lock()
	r := w.running[pool]
	w.mu.Unlock()
	if r == nil {
		return proxy.ClusterStatus{}, false
	}
	st := r.watcher.Stats()
	return proxy.ClusterStatus{Epoch: st.Epoch, Refreshes: st.Refreshes, Changes: st.Changes, LastChange: st.LastChange}, true
}

// update makes the watchers those of srv's current redis_cluster pools: a
// pool whose credentials or Service changed gets a new watcher, one whose
// seeds changed its new seeds. srv's stats report what they did.
func (w *clusterWatch) update(ctx context.Context, srv *proxy.Server) {
	srv.SetClusterStatus(w.status)
	pools := map[string]proxy.ClusterPool{}
	for _, p := range srv.ClusterPools() {
		pools[p.Pool] = p
	}
	w.mu.Lock()
	w.ctx, w.srv, w.pools = ctx, srv, pools
	var stale []*runningCluster
	for name, r := range w.running {
		if p, ok := pools[name]; !ok || p.Password != r.password || p.Username != r.username || p.Service != r.service || p.TLS != r.tls {
			stale = append(stale, r)
			delete(w.running, name)
		}
	}
	for name, p := range pools {
		r := w.running[name]
		if r == nil {
			r = &runningCluster{password: p.Password, username: p.Username, service: p.Service, tls: p.TLS, done: make(chan struct{}), first: make(chan struct{})}
			w.running[name] = r
		}
		w.seedLocked(name, r)
	}
	w.mu.Unlock()
	for _, r := range stale {
		r.stop()
	}
}

// seedLocked hands r the pool's seeds as they are now, and starts its
// watcher at the first.
func (w *clusterWatch) seedLocked(pool string, r *runningCluster) {
	p, srv := w.pools[pool], w.srv
	seeds := w.seedsLocked(p)
	if r.watcher != nil {
		// No ready pod keeps the last seeds: the watcher asks the nodes
		// it knows as well.
		if !slices.Equal(r.seeds, seeds) && len(seeds) > 0 {
			r.seeds = seeds
			r.watcher.SetSeeds(seeds)
		}
		return
	}
	if len(seeds) == 0 {
		return
	}
	opts := discovery.ClusterOptions{
		Seeds:    seeds,
		Username: p.Username,
		Password: p.Password,
		Logger:   w.logger.With("pool", pool),
		OnChange: func(m discovery.ClusterMap) {
			srv.SetClusterMap(pool, w.clusterMapOf(pool, m))
			r.once.Do(func() { close(r.first) })
		},
	}
	if p.Service != (proxy.Service{}) {
		opts.MapAddr = func(addr string) (string, bool) { return w.mapAddr(pool, addr) }
	}
	if configs := p.TLS.Configs(opts.Logger); configs != nil {
		opts.TLS = func(addr string) (*tls.Config, error) { return configs("", addr) }
	}
	cw, err := discovery.NewClusterWatcher(opts)
	if err != nil {
		w.logger.Error("cluster watch", "pool", pool, "err", err)
		return
	}
	r.watcher, r.seeds = cw, seeds
	rctx, cancel := context.WithCancel(w.ctx)
	r.cancel = cancel
	go r.run(rctx)
}

// seedsLocked is where p's seeds are now: as configured, a pod's at its
// endpoint's address on the configured port, and for a pool without
// servers every ready pod of its Service on its port. A pod that is no
// ready endpoint is no seed until it is one.
func (w *clusterWatch) seedsLocked(p proxy.ClusterPool) []string {
	if p.Service == (proxy.Service{}) {
		return p.Seeds
	}
	eps := w.endpoints[p.Service]
	var seeds []string
	if len(p.Seeds) == 0 {
		for _, ep := range eps {
			if ep.Usable() && ep.Address != "" {
				seeds = append(seeds, net.JoinHostPort(ep.Address, strconv.Itoa(p.Port)))
			}
		}
	}
	for i, seed := range p.Seeds {
		if i >= len(p.Pods) || p.Pods[i] == "" {
			seeds = append(seeds, seed)
			continue
		}
		ep, ok := eps[p.Pods[i]]
		_, port, err := net.SplitHostPort(seed)
		if ok && err == nil && ep.Usable() && ep.Address != "" {
			seeds = append(seeds, net.JoinHostPort(ep.Address, port))
		}
	}
	slices.Sort(seeds)
	return slices.Compact(seeds)
}

// endpointsChanged takes a watched Service's new endpoints: the IPs its
// pods had before, the seeds of the pools it serves, and a new map for
// them, since where their nodes are dialled may have changed.
func (w *clusterWatch) endpointsChanged(svc proxy.Service, eps map[string]discovery.Endpoint) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.endpoints == nil {
		w.endpoints = map[proxy.Service]map[string]discovery.Endpoint{}
		w.earlier = map[proxy.Service]map[string][]string{}
	}
	w.rememberLocked(svc, eps)
	w.endpoints[svc] = eps
	for name, p := range w.pools {
		r := w.running[name]
		if p.Service != svc || r == nil {
			continue
		}
		w.seedLocked(name, r)
		if r.watcher != nil {
			r.watcher.Poke()
		}
	}
}

// rememberLocked notes the address each pod of svc had before eps, when
// eps gives it another or none.
func (w *clusterWatch) rememberLocked(svc proxy.Service, eps map[string]discovery.Endpoint) {
	earlier := w.earlier[svc]
	if earlier == nil {
		earlier = map[string][]string{}
		w.earlier[svc] = earlier
	}
	for pod, old := range w.endpoints[svc] {
		if cur, ok := eps[pod]; old.Address == "" || ok && cur.Address == old.Address {
			continue
		}
		ips := slices.DeleteFunc(earlier[pod], func(ip string) bool { return ip == old.Address })
		ips = append(ips, old.Address)
		if len(ips) > earlierIPs {
			ips = ips[len(ips)-earlierIPs:]
		}
		earlier[pod] = ips
	}
	for pod := range earlier {
		if len(earlier) <= earlierPods {
			break
		}
		if _, ok := eps[pod]; !ok {
			delete(earlier, pod)
		}
	}
}

// mapAddr is the MapAddr of a pool with kubernetes_service: addr, the
// host:port a node is announced at, is dialled at the current address of
// the pod its host names (a pod hostname, or an endpoint's IP), else of
// the pod that had that IP before; false when no pod has it.
func (w *clusterWatch) mapAddr(pool, addr string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	svc := w.pools[pool].Service
	eps := w.endpoints[svc]
	if mapped, ok := podAddr(svc, eps, addr); ok {
		return mapped, true
	}
	host, port, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil {
		return "", false
	}
	if pod, ok := w.earlierPodLocked(svc, ip); ok {
		return net.JoinHostPort(eps[pod].Address, port), true
	}
	return "", false
}

// earlierPodLocked finds the pod of svc that had ip before and has an
// address now.
func (w *clusterWatch) earlierPodLocked(svc proxy.Service, ip net.IP) (string, bool) {
	eps := w.endpoints[svc]
	for pod, ips := range w.earlier[svc] {
		if ep, ok := eps[pod]; !ok || ep.Address == "" {
			continue
		}
		for _, old := range ips {
			if oldIP := net.ParseIP(old); oldIP != nil && oldIP.Equal(ip) {
				return pod, true
			}
		}
	}
	return "", false
}

func (r *runningCluster) run(ctx context.Context) {
	defer close(r.done)
	r.watcher.Run(ctx)
}

func (r *runningCluster) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}

// waitFirst waits until every watcher handed the proxy its first map, or
// timeout passed: a pool serves before that, but every key gets an error.
func (w *clusterWatch) waitFirst(ctx context.Context, timeout time.Duration) {
	w.mu.Lock()
	var firsts []chan struct{}
	for _, r := range w.running {
		firsts = append(firsts, r.first)
	}
	w.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, f := range firsts {
		select {
		case <-f:
		case <-deadline.C:
			w.logger.Warn("serving before every Redis Cluster's slot map is known", "timeout", timeout)
			return
		case <-ctx.Done():
			return
		}
	}
}

// stop ends every watcher.
func (w *clusterWatch) stop() {
	w.mu.Lock()
	running := w.running
	w.running = map[string]*runningCluster{}
	w.mu.Unlock()
	for _, r := range running {
		r.stop()
	}
}

// clusterMapOf is the proxy's view of pool's map m: its masters with
// their IDs, the slots of each, their replicas, and the nodes dialled at
// another address than announced.
func (w *clusterWatch) clusterMapOf(pool string, m discovery.ClusterMap) proxy.ClusterMap {
	out := clusterMapOf(m)
	w.mu.Lock()
	defer w.mu.Unlock()
	svc := w.pools[pool].Service
	for _, n := range m.Nodes {
		if n.Addr == "" || n.Addr == n.Announced {
			continue
		}
		rn := stats.ClusterNodeAddress{ID: n.ID, Announced: n.Announced, Dialled: n.Addr, Master: n.Master}
		rn.Pod, rn.Stale = w.podOfLocked(svc, n.Announced, n.Addr)
		out.Remapped = append(out.Remapped, rn)
	}
	return out
}

// podOfLocked names the pod of svc a node announced at announced is
// dialled in, at dialled: the one its hostname names, else the one with
// that IP. stale is whether announced is an IP, one the pod had before.
func (w *clusterWatch) podOfLocked(svc proxy.Service, announced, dialled string) (pod string, stale bool) {
	eps := w.endpoints[svc]
	if host, _, err := net.SplitHostPort(announced); err == nil && net.ParseIP(host) == nil {
		if ep, ok := eps[strings.Split(host, ".")[0]]; ok {
			return ep.Pod, false
		}
		return "", false
	}
	if host, _, err := net.SplitHostPort(dialled); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			if ep, ok := endpointWithIP(eps, ip); ok {
				return ep.Pod, true
			}
		}
	}
	return "", true
}

// clusterMapOf is the proxy's view of m: its masters with their IDs, the
// slots of each, and their replicas.
func clusterMapOf(m discovery.ClusterMap) proxy.ClusterMap {
	var out proxy.ClusterMap
	index := make([]int32, len(m.Nodes))
	for i, n := range m.Nodes {
		index[i] = -1
		if n.Master {
			index[i] = int32(len(out.Masters))
			out.Masters = append(out.Masters, n.Addr)
			out.IDs = append(out.IDs, n.ID)
		}
	}
	for s, o := range m.Slots {
		out.Slots[s] = -1
		if o >= 0 && int(o) < len(index) {
			out.Slots[s] = index[o]
		}
	}
	// A replica takes reads while the cluster says it is online (or says
	// nothing, as CLUSTER SLOTS does not), under a master the map lists.
	out.Replicas = make([][]string, len(out.Masters))
	master := map[string]int32{}
	for i, n := range m.Nodes {
		if n.Master {
			master[n.ID] = index[i]
		}
	}
	for _, n := range m.Nodes {
		i, ok := master[n.MasterID]
		if n.Master || !ok || n.Health != "" && n.Health != "online" {
			continue
		}
		out.Replicas[i] = append(out.Replicas[i], n.Addr)
	}
	return out
}
