package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy"
)

// clusterWatch feeds the proxy's redis_cluster pools: a ClusterWatcher
// per pool, seeded with the pool's servers, hands each new slot map to
// SetClusterMap, and reads the map again when the proxy saw a MOVED.
type clusterWatch struct {
	logger *slog.Logger

	mu      sync.Mutex // guards running
	running map[string]*runningCluster
}

// runningCluster is one pool's watcher.
type runningCluster struct {
	watcher  *discovery.ClusterWatcher
	password string
	username string
	seeds    []string
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned
	first    chan struct{} // closed at the first map
	once     sync.Once
}

func newClusterWatch(logger *slog.Logger) *clusterWatch {
	return &clusterWatch{logger: logger, running: map[string]*runningCluster{}}
}

// resolve is the proxy's ResolveCluster: read the pool's map now.
func (w *clusterWatch) resolve(pool string) {
	w.mu.Lock()
	r := w.running[pool]
	w.mu.Unlock()
	if r != nil {
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
// pool whose password changed gets a new watcher, one whose seeds changed
// its new seeds. srv's stats report what they did.
func (w *clusterWatch) update(ctx context.Context, srv *proxy.Server) {
	srv.SetClusterStatus(w.status)
	pools := map[string]proxy.ClusterPool{}
	for _, p := range srv.ClusterPools() {
		pools[p.Pool] = p
	}
	w.mu.Lock()
	var stale, started []*runningCluster
	for name, r := range w.running {
		if p, ok := pools[name]; !ok || p.Password != r.password || p.Username != r.username {
			stale = append(stale, r)
			delete(w.running, name)
		}
	}
	for name, p := range pools {
		if r := w.running[name]; r != nil {
			if !slices.Equal(r.seeds, p.Seeds) {
				r.seeds = p.Seeds
				r.watcher.SetSeeds(p.Seeds)
			}
			continue
		}
		r := &runningCluster{password: p.Password, username: p.Username, seeds: p.Seeds, done: make(chan struct{}), first: make(chan struct{})}
		pool := name
		cw, err := discovery.NewClusterWatcher(discovery.ClusterOptions{
			Seeds:    p.Seeds,
			Username: p.Username,
			Password: p.Password,
			Logger:   w.logger.With("pool", pool),
			OnChange: func(m discovery.ClusterMap) {
				srv.SetClusterMap(pool, clusterMapOf(m))
				r.once.Do(func() { close(r.first) })
			},
		})
		if err != nil {
			w.logger.Error("cluster watch", "pool", name, "err", err)
			continue
		}
		r.watcher = cw
		w.running[name] = r
		started = append(started, r)
	}
	w.mu.Unlock()
	for _, r := range stale {
		r.stop()
	}
	for _, r := range started {
		rctx, cancel := context.WithCancel(ctx)
		r.cancel = cancel
		go r.run(rctx)
	}
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

// clusterMapOf is the proxy's view of m: its masters with their IDs,
// and the slots of each.
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
	return out
}
