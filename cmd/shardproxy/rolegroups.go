package main

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
)

// roleWatch feeds the proxy's groups without Sentinel (group_members): a
// ROLE watcher per pool asks every member of its groups what it is, and
// the master the members agree on becomes the group's master. On
// Kubernetes, pod members are the endpoints of the pool's
// kubernetes_service, and the master address a replica reports (a pod
// hostname or an IP) is matched to them, never looked up in DNS.
type roleWatch struct {
	logger *slog.Logger
	// feedMu makes one SetGroupMasters at a time, so an older view cannot
	// overwrite a newer one.
	feedMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	ctx       context.Context
	srv       *proxy.Server
	pools     map[string]proxy.RolePool // by pool, as of the last update
	endpoints map[proxy.Service]map[string]discovery.Endpoint
	running   map[string]*runningRoles // by pool
}

// runningRoles is one pool's watcher.
type runningRoles struct {
	watcher  *discovery.RoleGroupWatcher
	password string
	username string
	service  proxy.Service
	tls      proxy.ServerTLS
	ctx      context.Context // the watcher's, cancelled by stop
	cancel   context.CancelFunc
	done     chan struct{}
}

func newRoleWatch(logger *slog.Logger) *roleWatch {
	return &roleWatch{logger: logger, running: map[string]*runningRoles{}}
}

// resolve is the proxy's ResolveGroup for these groups: ask the members
// now.
func (w *roleWatch) resolve(pool, server string) {
	w.mu.Lock()
	r := w.running[pool]
	w.mu.Unlock()
	if r != nil {
		r.watcher.Poke(server)
	}
}

// update makes the watchers those of srv's current pools: a pool whose
// password or Service changed gets a new watcher, the others their new
// members.
func (w *roleWatch) update(ctx context.Context, srv *proxy.Server) {
	pools := map[string]proxy.RolePool{}
	for _, p := range srv.RolePools() {
		pools[p.Pool] = p
	}
	w.mu.Lock()
	w.ctx, w.srv, w.pools = ctx, srv, pools
	var stale []*runningRoles
	for name, r := range w.running {
		p, ok := pools[name]
		if !ok || p.Password != r.password || p.Username != r.username || p.GroupService != r.service || p.TLS != r.tls {
			stale = append(stale, r)
			delete(w.running, name)
		}
	}
	type start struct {
		pool string
		r    *runningRoles
	}
	var started []start
	for name, p := range pools {
		if r := w.running[name]; r != nil {
			r.watcher.SetGroups(w.membersLocked(p))
			continue
		}
		r, err := w.startLocked(ctx, p)
		if err != nil {
			w.logger.Error("group ROLE watch", "pool", name, "err", err)
			continue
		}
		w.running[name] = r
		started = append(started, start{name, r})
	}
	w.mu.Unlock()
	for _, r := range stale {
		r.stop()
	}
	for _, s := range started {
		go s.r.run(ctx, w.logger.With("pool", s.pool))
	}
}

// startLocked makes pool p's watcher; run starts it.
func (w *roleWatch) startLocked(ctx context.Context, p proxy.RolePool) (*runningRoles, error) {
	pool := p.Pool
	opts := discovery.RoleGroupOptions{
		Groups:   w.membersLocked(p),
		Username: p.Username,
		Password: p.Password,
		Logger:   w.logger.With("pool", pool),
		OnChange: func(views map[string]discovery.RoleGroup) { w.feed(pool, views) },
	}
	if p.GroupService != (proxy.Service{}) {
		opts.MapAddr = func(addr string) (string, bool) { return w.mapAddr(pool, addr) }
	}
	opts.TLS = p.TLS.Configs(opts.Logger)
	rw, err := discovery.NewRoleGroupWatcher(opts)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	return &runningRoles{watcher: rw, password: p.Password, username: p.Username, service: p.GroupService, tls: p.TLS, ctx: rctx, cancel: cancel, done: make(chan struct{})}, nil
}

// membersLocked is the host:port of every member of each of p's groups
// now: addresses as configured, pods at their endpoints' addresses on the
// server's port. A pod that is no endpoint of the Service is no member
// until it is one.
func (w *roleWatch) membersLocked(p proxy.RolePool) map[string][]string {
	eps := w.endpoints[p.GroupService]
	out := make(map[string][]string, len(p.Groups))
	for server, g := range p.Groups {
		var addrs []string
		add := func(ep discovery.Endpoint) {
			if ep.Address != "" {
				addrs = append(addrs, net.JoinHostPort(ep.Address, strconv.Itoa(g.Port)))
			}
		}
		for _, m := range g.Members {
			switch {
			case m.Addr != "":
				addrs = append(addrs, m.Addr)
			case m.StatefulSet:
				for _, pod := range statefulSetPods(eps, m.Pod) {
					add(eps[pod])
				}
			default:
				if ep, ok := eps[m.Pod]; ok {
					add(ep)
				}
			}
		}
		slices.Sort(addrs)
		out[server] = slices.Compact(addrs)
	}
	return out
}

// statefulSetPods are the pods of eps named set-<ordinal>, in ordinal
// order.
func statefulSetPods(eps map[string]discovery.Endpoint, set string) []string {
	type pod struct {
		name    string
		ordinal int
	}
	var pods []pod
	for name := range eps {
		rest, ok := strings.CutPrefix(name, set+"-")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || strconv.Itoa(n) != rest {
			continue
		}
		pods = append(pods, pod{name, n})
	}
	slices.SortFunc(pods, func(a, b pod) int { return a.ordinal - b.ordinal })
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.name
	}
	return names
}

// endpointsChanged takes a watched Service's new endpoints: the members
// of the pools whose pods it has, and whether their masters' pods may take
// requests.
func (w *roleWatch) endpointsChanged(svc proxy.Service, eps map[string]discovery.Endpoint) {
	w.mu.Lock()
	if w.endpoints == nil {
		w.endpoints = map[proxy.Service]map[string]discovery.Endpoint{}
	}
	w.endpoints[svc] = eps
	var pools []string
	for name, p := range w.pools {
		if p.GroupService != svc {
			continue
		}
		if r := w.running[name]; r != nil {
			r.watcher.SetGroups(w.membersLocked(p))
			pools = append(pools, name)
		}
	}
	w.mu.Unlock()
	for _, pool := range pools {
		w.feed(pool, nil)
	}
}

// feed hands the pool's groups what its watcher says now (views, or its
// snapshot when nil) and whether the EndpointSlices let their masters take
// requests.
func (w *roleWatch) feed(pool string, views map[string]discovery.RoleGroup) {
	w.feedMu.Lock()
	defer w.feedMu.Unlock()
	w.mu.Lock()
	srv, r, p := w.srv, w.running[pool], w.pools[pool]
	eps := w.endpoints[p.GroupService]
	w.mu.Unlock()
	if srv == nil || r == nil {
		return
	}
	if views == nil {
		views = r.watcher.Snapshot()
	}
	groups := make(map[string]proxy.GroupMaster, len(views))
	for server, v := range views {
		gm := proxy.GroupMaster{Addr: v.Master, Replicas: v.Replicas, Source: "role", Reachable: v.Reachable}
		switch {
		case v.Master == "":
			gm.Unavailable = v.Reason
		default:
			gm.Agree = 1 + len(v.Replicas)
			gm.Unavailable = masterUnavailable(p.GroupService, eps, v.Master)
		}
		groups[server] = gm
	}
	srv.SetGroupMasters(pool, groups)
}

// mapAddr is a watcher's MapAddr for a pool with pod members: a pod
// hostname or an IP that an endpoint of the Service has.
func (w *roleWatch) mapAddr(pool, addr string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	svc := w.pools[pool].GroupService
	return podAddr(svc, w.endpoints[svc], addr)
}

// waitFirst waits, up to timeout, until every group has a master, so that
// the proxy starts with them known.
func (w *roleWatch) waitFirst(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		missing, why := "", ""
		w.mu.Lock()
		for pool, r := range w.running {
			for server, v := range r.watcher.Snapshot() {
				if v.Master == "" {
					missing, why = pool+"/"+server, v.Reason
				}
			}
		}
		w.mu.Unlock()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			w.logger.Warn("a group's members agree on no master yet; its requests fail until they do", "group", missing, "reason", why, "waited", timeout)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends every watcher and waits for them.
func (w *roleWatch) stop() {
	w.mu.Lock()
	running := w.running
	w.running = map[string]*runningRoles{}
	w.mu.Unlock()
	for _, r := range running {
		r.stop()
	}
}

func (r *runningRoles) run(ctx context.Context, logger *slog.Logger) {
	defer close(r.done)
	if err := r.watcher.Run(r.ctx); err != nil && ctx.Err() == nil {
		logger.Error("group ROLE watch stopped", "err", err)
	}
}

func (r *runningRoles) stop() {
	r.cancel()
	<-r.done
}
