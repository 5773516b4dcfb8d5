package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// The cluster watch gives the proxy's stats the masters' node IDs, the
// watcher's map reads and changes, and the cluster's current epoch.
func TestClusterWatchFeedsStats(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	yaml := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  redis_cluster: true\n  servers:\n    - %s:1\n", proxytest.FreePort(t), c.Nodes[0].Addr)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := newClusterWatch(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		w.stop()
		srv.Shutdown(context.Background())
	})
	w.update(ctx, srv)
	w.waitFirst(ctx, proxytest.ClusterTimeout)

	var epoch uint64
	for _, n := range c.Nodes {
		r, err := n.Client(t).Do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(r.Str), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_current_epoch:"); ok {
				e, _ := strconv.ParseUint(v, 10, 64)
				epoch = max(epoch, e)
			}
		}
	}
	var snap stats.Snapshot
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for {
		srv.Snapshot(&snap)
		p := &snap.Pools[0]
		ids := map[string]string{}
		for _, s := range p.Servers {
			if s.Cluster != nil {
				ids[s.Cluster.Addr] = s.Cluster.ID
			}
		}
		ok := p.Cluster != nil && p.Cluster.Epoch == epoch && p.Cluster.Refreshes >= 1 && p.Cluster.Changes >= 1 && !p.Cluster.LastChange.IsZero()
		for _, m := range c.Masters() {
			ok = ok && ids[m.Addr] == m.ID
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stats have %+v, nodes %v; want epoch %d, a read and a change, and the masters' IDs", p.Cluster, ids, epoch)
		}
		w.resolve("alpha")
		time.Sleep(50 * time.Millisecond)
	}
}
