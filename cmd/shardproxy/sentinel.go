package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
)

// defaultSentinelPort is a sentinel_service's port when neither its
// EndpointSlices nor sentinel_port give one: Sentinel's own default.
const defaultSentinelPort = 26379

// sentinelWatch feeds the proxy's Sentinel-watched groups: a watcher per
// pool with sentinels (discovery.SentinelSet), whose views become the
// pool's group masters, and pokes from the proxy when it sees a sign that
// a master moved. On Kubernetes the Sentinels of a pool with
// sentinel_service are its Service's ready endpoints, and the addresses
// they report are matched to the endpoints of the groups' Service
// (kubernetes_service), never looked up in DNS.
type sentinelWatch struct {
	logger   *slog.Logger
	watchers *discovery.SentinelSet
	// masters is, per pool, the Sentinel master name of each server, as
	// of the last update.
	masters atomic.Pointer[map[string]map[string]string]

	// setMu makes one watchers.Set at a time, with the newest pools and
	// endpoints. It is never held by a watcher's OnChange, which Set may
	// wait for.
	setMu sync.Mutex
	// feedMu makes one SetGroupMasters at a time, so an older view cannot
	// overwrite a newer one.
	feedMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	ctx       context.Context
	srv       *proxy.Server
	pools     map[string]proxy.SentinelPool                   // by pool, as of the last update
	endpoints map[proxy.Service]map[string]discovery.Endpoint // each watched Service's last endpoints
	views     map[string]map[string]discovery.SentinelMaster  // by pool, then Sentinel master name
}

func newSentinelWatch(logger *slog.Logger) *sentinelWatch {
	return &sentinelWatch{logger: logger, watchers: discovery.NewSentinelSet(logger)}
}

// resolve is the proxy's ResolveGroup: ask the pool's Sentinels about the
// server's master now.
func (w *sentinelWatch) resolve(pool, server string) {
	if m := w.masters.Load(); m != nil {
		if master := (*m)[pool][server]; master != "" {
			w.watchers.Poke(pool, master)
		}
	}
}

// update makes the watchers those of srv's current pools.
func (w *sentinelWatch) update(ctx context.Context, srv *proxy.Server) {
	pools := srv.SentinelPools()
	masters := make(map[string]map[string]string, len(pools))
	byName := make(map[string]proxy.SentinelPool, len(pools))
	for _, p := range pools {
		masters[p.Pool] = p.Masters
		byName[p.Pool] = p
	}
	w.masters.Store(&masters)
	w.mu.Lock()
	w.ctx, w.srv, w.pools = ctx, srv, byName
	w.mu.Unlock()
	w.set()
}

// set hands the watcher set a spec per pool with Sentinels to watch: a
// pool whose Sentinel Service has no ready endpoint has none, and its
// groups keep what they last knew.
func (w *sentinelWatch) set() {
	w.setMu.Lock()
	defer w.setMu.Unlock()
	w.mu.Lock()
	ctx, names := w.ctx, make([]string, 0, len(w.pools))
	for name := range w.pools {
		names = append(names, name)
	}
	slices.Sort(names)
	specs := make([]discovery.SentinelSpec, 0, len(names))
	for _, pool := range names {
		p := w.pools[pool]
		sentinels := p.Sentinels
		if p.SentinelService != (proxy.Service{}) {
			sentinels = sentinelAddrs(p, w.endpoints[p.SentinelService])
			if len(sentinels) == 0 {
				w.logger.Warn("no ready Sentinel in the sentinel_service's EndpointSlices; the pool's groups keep their masters until there is",
					"pool", pool, "namespace", p.SentinelService.Namespace, "service", p.SentinelService.Name)
				continue
			}
		}
		var masterNames []string
		for _, m := range p.Masters {
			masterNames = append(masterNames, m)
		}
		slices.Sort(masterNames)
		opts := discovery.SentinelOptions{
			Sentinels: sentinels, Username: p.Username, Password: p.Password,
			Masters: slices.Compact(masterNames), Logger: w.logger.With("pool", pool),
			OnChange: func(views map[string]discovery.SentinelMaster) { w.viewsChanged(pool, views) },
		}
		if p.GroupService != (proxy.Service{}) {
			opts.MapAddr = func(addr string) (string, bool) { return w.mapAddr(pool, addr) }
		}
		if configs := p.TLS.Configs(opts.Logger); configs != nil {
			opts.TLS = func(addr string) (*tls.Config, error) { return configs("", addr) }
		}
		specs = append(specs, discovery.SentinelSpec{Key: pool, Options: opts, TLS: fmt.Sprintf("%+v", p.TLS)})
	}
	w.mu.Unlock()
	if ctx == nil {
		return
	}
	if err := w.watchers.Set(ctx, specs); err != nil {
		w.logger.Error("sentinel watch", "err", err)
	}
}

// sentinelAddrs is the host:port of each ready endpoint of p's Sentinel
// Service, sorted: on the slice's port named "sentinel", else its only
// port, else sentinel_port, else 26379.
func sentinelAddrs(p proxy.SentinelPool, eps map[string]discovery.Endpoint) []string {
	var out []string
	for _, ep := range eps {
		if !ep.Usable() {
			continue
		}
		port := cmp.Or(ep.Port("sentinel"), p.SentinelPort, defaultSentinelPort)
		out = append(out, net.JoinHostPort(ep.Address, strconv.Itoa(port)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// endpointsChanged takes a watched Service's new endpoints: the Sentinels
// of the pools it is the sentinel_service of, and the pods of those it is
// the groups' Service of.
func (w *sentinelWatch) endpointsChanged(svc proxy.Service, eps map[string]discovery.Endpoint) {
	w.mu.Lock()
	if w.endpoints == nil {
		w.endpoints = map[proxy.Service]map[string]discovery.Endpoint{}
	}
	w.endpoints[svc] = eps
	sentinels := false
	var groups []string
	for name, p := range w.pools {
		sentinels = sentinels || p.SentinelService == svc
		if p.GroupService == svc {
			groups = append(groups, name)
		}
	}
	w.mu.Unlock()
	if sentinels {
		w.set()
	}
	for _, pool := range groups {
		// A master's pod may have turned not ready: tell the groups, and
		// ask the Sentinels now rather than at the next poll.
		w.feed(pool)
		for server := range w.poolMasters(pool) {
			w.resolve(pool, server)
		}
	}
}

// poolMasters is the pool's server -> Sentinel master name map.
func (w *sentinelWatch) poolMasters(pool string) map[string]string {
	if m := w.masters.Load(); m != nil {
		return (*m)[pool]
	}
	return nil
}

// viewsChanged is a watcher's OnChange. A master the watcher has no
// address for keeps the last one known: a watcher that replaces one whose
// Sentinels changed starts knowing nothing.
func (w *sentinelWatch) viewsChanged(pool string, views map[string]discovery.SentinelMaster) {
	w.mu.Lock()
	if w.views == nil {
		w.views = map[string]map[string]discovery.SentinelMaster{}
	}
	last := w.views[pool]
	next := make(map[string]discovery.SentinelMaster, len(views))
	for name, v := range views {
		if old, ok := last[name]; ok && v.Addr == "" && old.Addr != "" {
			v = old
		}
		next[name] = v
	}
	w.views[pool] = next
	w.mu.Unlock()
	w.feed(pool)
}

// feed hands the pool's groups what the watcher and the EndpointSlices
// say now.
func (w *sentinelWatch) feed(pool string) {
	w.feedMu.Lock()
	defer w.feedMu.Unlock()
	w.mu.Lock()
	srv, views := w.srv, w.views[pool]
	w.mu.Unlock()
	if srv == nil || views == nil {
		return
	}
	srv.SetGroupMasters(pool, w.groups(pool, views))
}

// groups turns the watcher's views, by Sentinel master name, into the
// pool's group masters, by server name.
func (w *sentinelWatch) groups(pool string, views map[string]discovery.SentinelMaster) map[string]proxy.GroupMaster {
	out := map[string]proxy.GroupMaster{}
	for server, master := range w.poolMasters(pool) {
		v := views[master]
		out[server] = proxy.GroupMaster{
			Addr: v.Addr, Epoch: v.Epoch, Replicas: v.Replicas, Source: "sentinel",
			Agree: v.Agree, Reachable: v.Reachable, Unavailable: w.unavailable(pool, v.Addr),
		}
	}
	return out
}

// mapAddr is a watcher's MapAddr for a pool with a groups' Service: a pod
// hostname ("redis-0", or "redis-0.redis.ns.svc.cluster.local", as Sentinel
// reports with announce-hostnames) becomes that pod's address in the
// Service's EndpointSlices, an IP stays as it is; either only if an
// endpoint of the Service has it.
func (w *sentinelWatch) mapAddr(pool, addr string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	svc := w.pools[pool].GroupService
	return podAddr(svc, w.endpoints[svc], addr)
}

// podAddr maps addr, a host:port whose host is an IP or a pod's hostname,
// to the address of the endpoint of svc (with endpoints eps) that it
// names; ok is false when no endpoint has it.
func podAddr(svc proxy.Service, eps map[string]discovery.Endpoint, addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil {
		if _, ok := endpointWithIP(eps, ip); ok {
			return addr, true
		}
		return "", false
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(labels) > 1 && labels[1] != svc.Name || len(labels) > 2 && labels[2] != svc.Namespace {
		return "", false // a pod of another Service
	}
	ep, ok := eps[labels[0]]
	if !ok || ep.Address == "" {
		return "", false
	}
	return net.JoinHostPort(ep.Address, port), true
}

// endpointWithIP finds the endpoint whose address is ip.
func endpointWithIP(eps map[string]discovery.Endpoint, ip net.IP) (discovery.Endpoint, bool) {
	for _, ep := range eps {
		if epIP := net.ParseIP(ep.Address); epIP != nil && epIP.Equal(ip) {
			return ep, true
		}
	}
	return discovery.Endpoint{}, false
}

// unavailable is why the master at addr, of a pool with a groups'
// Service, takes no requests (see masterUnavailable); "" when it may take
// them, or the pool has no groups' Service.
func (w *sentinelWatch) unavailable(pool, addr string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	svc := w.pools[pool].GroupService
	return masterUnavailable(svc, w.endpoints[svc], addr)
}

// masterUnavailable is why the master at addr takes no requests: it is no
// endpoint of svc (with endpoints eps), or its pod is not ready or
// terminating. "" when it may take them, or svc is zero.
func masterUnavailable(svc proxy.Service, eps map[string]discovery.Endpoint, addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || svc == (proxy.Service{}) {
		return ""
	}
	ep, ok := endpointWithIP(eps, net.ParseIP(host))
	switch {
	case !ok:
		return "its master " + addr + " is not an endpoint of Service " + svc.Namespace + "/" + svc.Name
	case ep.Terminating:
		return "its master's pod " + ep.Pod + " is terminating"
	case !ep.Ready:
		return "its master's pod " + ep.Pod + " is not ready"
	case !ep.Serving:
		return "its master's pod " + ep.Pod + " is not serving"
	}
	return ""
}

// waitFirst waits, up to timeout, until every watched master has an
// address, so that the proxy starts with its groups' masters known.
func (w *sentinelWatch) waitFirst(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	masters := w.masters.Load()
	if masters == nil {
		return
	}
	for {
		missing := ""
		views := w.watchers.Snapshot()
		for pool, servers := range *masters {
			for _, name := range servers {
				if views[pool][name].Addr == "" {
					missing = pool + "/" + name
				}
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			w.logger.Warn("no Sentinel majority yet for a group's master; its requests fail until there is", "master", missing, "waited", timeout)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// services are the Services the Sentinel pools need endpoints of besides
// the pools' kubernetes_service: their sentinel_service.
func sentinelServices(srv *proxy.Server) []proxy.Service {
	var out []proxy.Service
	for _, p := range srv.SentinelPools() {
		if p.SentinelService != (proxy.Service{}) && !slices.Contains(out, p.SentinelService) {
			out = append(out, p.SentinelService)
		}
	}
	return out
}

func (w *sentinelWatch) stop() { w.watchers.Stop() }
