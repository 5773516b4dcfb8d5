package main

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
)

// sentinelWatch feeds the proxy's Sentinel-watched groups: a watcher per
// pool with sentinels (discovery.SentinelSet), whose views become the
// pool's group masters, and pokes from the proxy when it sees a sign that
// a master moved.
type sentinelWatch struct {
	logger   *slog.Logger
	watchers *discovery.SentinelSet
	// masters is, per pool, the Sentinel master name of each server, as
	// of the last update.
	masters atomic.Pointer[map[string]map[string]string]
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
	specs := make([]discovery.SentinelSpec, 0, len(pools))
	for _, p := range pools {
		masters[p.Pool] = p.Masters
		var names []string
		for _, m := range p.Masters {
			names = append(names, m)
		}
		slices.Sort(names)
		pool := p.Pool
		specs = append(specs, discovery.SentinelSpec{Key: pool, Options: discovery.SentinelOptions{
			Sentinels: p.Sentinels, Username: p.Username, Password: p.Password,
			Masters: slices.Compact(names), Logger: w.logger.With("pool", pool),
			OnChange: func(views map[string]discovery.SentinelMaster) { srv.SetGroupMasters(pool, w.groups(pool, views)) },
		}})
	}
	w.masters.Store(&masters)
	if err := w.watchers.Set(ctx, specs); err != nil {
		w.logger.Error("sentinel watch", "err", err)
	}
}

// groups turns the watcher's views, by Sentinel master name, into the
// pool's group masters, by server name.
func (w *sentinelWatch) groups(pool string, views map[string]discovery.SentinelMaster) map[string]proxy.GroupMaster {
	out := map[string]proxy.GroupMaster{}
	m := w.masters.Load()
	if m == nil {
		return out
	}
	for server, master := range (*m)[pool] {
		v := views[master]
		out[server] = proxy.GroupMaster{
			Addr: v.Addr, Epoch: v.Epoch, Replicas: v.Replicas, Source: "sentinel",
			Agree: v.Agree, Reachable: v.Reachable,
		}
	}
	return out
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

func (w *sentinelWatch) stop() { w.watchers.Stop() }
