package statsport

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// fixedSource is a Source whose snapshot is always snap.
type fixedSource struct{ snap stats.Snapshot }

func (f *fixedSource) Snapshot(dst *stats.Snapshot) { *dst = f.snap }

// clusterTestSnapshot has a redis_cluster pool, alpha, with a master and
// a node dialled for a redirect, and a plain pool, beta.
func clusterTestSnapshot() *stats.Snapshot {
	snap := &stats.Snapshot{Version: "test", Time: time.Unix(1700000000, 0)}
	alpha := snap.AddPool("alpha")
	alpha.Cluster = &stats.ClusterStatus{Epoch: 7, Refreshes: 40, Changes: 3, LastChange: time.Unix(1700000100, 0), SlotsServed: 16000, SlotsUnserved: 384}
	m := alpha.AddServer("127.0.0.1:7000")
	m.Values[stats.Requests] = 11
	m.Cluster = &stats.ClusterNodeStatus{ID: strings.Repeat("a", 40), Addr: "127.0.0.1:7000", Role: stats.RoleMaster, Moved: 5, Ask: 2, TryAgain: 1}
	x := alpha.AddServer("127.0.0.1:7001")
	x.Cluster = &stats.ClusterNodeStatus{Addr: "127.0.0.1:7001", Moved: 1}
	beta := snap.AddPool("beta")
	beta.AddServer("127.0.0.1:7100")
	return snap
}

// A redis_cluster pool's object in the stats document has its slot map's
// state after nutcracker's members and before its servers, and each
// server its node's ID, address, role and redirects after nutcracker's
// members; a plain pool's document stays nutcracker's.
func TestClusterStatsJSON(t *testing.T) {
	addr := startStatsPort(t, &fixedSource{*clusterTestSnapshot()}, time.Minute)
	_, doc := httpGet(t, "http://"+addr+"/")
	keys := jsonKeys(t, doc)
	var want []string
	want = append(want, "alpha")
	for _, f := range nutcrackerPoolFields {
		want = append(want, "alpha/"+f)
	}
	want = append(want, "alpha/cluster_epoch", "alpha/cluster_map_refreshes", "alpha/cluster_map_changes",
		"alpha/cluster_map_last_change", "alpha/cluster_slots_served", "alpha/cluster_slots_unserved")
	for _, s := range []string{"127.0.0.1:7000", "127.0.0.1:7001"} {
		want = append(want, "alpha/"+s)
		for _, f := range nutcrackerServerFields {
			want = append(want, "alpha/"+s+"/"+f)
		}
		for _, f := range []string{"cluster_node_id", "cluster_addr", "cluster_role", "cluster_moved", "cluster_ask", "cluster_tryagain"} {
			want = append(want, "alpha/"+s+"/"+f)
		}
	}
	var got []string
	for _, k := range keys {
		if strings.HasPrefix(k, "alpha") && !slices.Contains([]string{"alpha/client_output_limit_closes", "alpha/pubsub_messages"}, k) {
			got = append(got, k)
		}
		if strings.HasPrefix(k, "beta") && strings.Contains(k, "cluster_") {
			t.Errorf("the plain pool's document has %s", k)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the cluster pool's keys:\n%q\nwant\n%q", got, want)
	}
	flat := flattenStats(t, doc)
	for key, v := range map[string]any{
		"alpha/cluster_epoch":                     float64(7),
		"alpha/cluster_map_refreshes":             float64(40),
		"alpha/cluster_map_changes":               float64(3),
		"alpha/cluster_map_last_change":           float64(1700000100),
		"alpha/cluster_slots_served":              float64(16000),
		"alpha/cluster_slots_unserved":            float64(384),
		"alpha/127.0.0.1:7000/requests":           float64(11),
		"alpha/127.0.0.1:7000/cluster_node_id":    strings.Repeat("a", 40),
		"alpha/127.0.0.1:7000/cluster_addr":       "127.0.0.1:7000",
		"alpha/127.0.0.1:7000/cluster_role":       "master",
		"alpha/127.0.0.1:7000/cluster_moved":      float64(5),
		"alpha/127.0.0.1:7000/cluster_ask":        float64(2),
		"alpha/127.0.0.1:7000/cluster_tryagain":   float64(1),
		"alpha/127.0.0.1:7001/cluster_node_id":    "",
		"alpha/127.0.0.1:7001/cluster_role":       "",
		"alpha/127.0.0.1:7001/cluster_moved":      float64(1),
		"alpha/127.0.0.1:7001/cluster_tryagain":   float64(0),
		"alpha/127.0.0.1:7001/server_connections": float64(0),
	} {
		if flat[key] != v {
			t.Errorf("stats %s = %#v, want %#v", key, flat[key], v)
		}
	}
}

// /metrics has a redis_cluster pool's slot map state per pool and each
// node's redirects per kind, labelled with its node ID, and the series
// pass Prometheus' lint.
func TestClusterMetrics(t *testing.T) {
	addr := startStatsPort(t, &fixedSource{*clusterTestSnapshot()}, time.Minute)
	families := scrapeMetrics(t, addr)
	id := strings.Repeat("a", 40)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"shardproxy_cluster_map_epoch", map[string]string{"pool": "alpha"}, 7},
		{"shardproxy_cluster_map_refreshes_total", map[string]string{"pool": "alpha"}, 40},
		{"shardproxy_cluster_map_changes_total", map[string]string{"pool": "alpha"}, 3},
		{"shardproxy_cluster_map_last_change_timestamp_seconds", map[string]string{"pool": "alpha"}, 1700000100},
		{"shardproxy_cluster_slots_unserved", map[string]string{"pool": "alpha"}, 384},
		{"shardproxy_cluster_node_info", map[string]string{"pool": "alpha", "server": "127.0.0.1:7000", "node_id": id, "role": "master"}, 1},
		{"shardproxy_cluster_node_info", map[string]string{"pool": "alpha", "server": "127.0.0.1:7001", "node_id": "", "role": ""}, 1},
		{"shardproxy_cluster_redirects_total", map[string]string{"pool": "alpha", "server": "127.0.0.1:7000", "node_id": id, "kind": "moved"}, 5},
		{"shardproxy_cluster_redirects_total", map[string]string{"pool": "alpha", "server": "127.0.0.1:7000", "node_id": id, "kind": "ask"}, 2},
		{"shardproxy_cluster_redirects_total", map[string]string{"pool": "alpha", "server": "127.0.0.1:7000", "node_id": id, "kind": "tryagain"}, 1},
		{"shardproxy_cluster_redirects_total", map[string]string{"pool": "alpha", "server": "127.0.0.1:7001", "node_id": "", "kind": "moved"}, 1},
	} {
		if got := metricValue(metricWith(t, families, c.name, c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if mf := families["shardproxy_cluster_map_epoch"]; len(mf.Metric) != 1 {
		t.Errorf("shardproxy_cluster_map_epoch has %d series, want 1 (the plain pool has none)", len(mf.Metric))
	}
	var cluster []*dto.MetricFamily
	for name, mf := range families {
		if strings.HasPrefix(name, "shardproxy_cluster_") {
			cluster = append(cluster, mf)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(cluster).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if len(cluster) != len(clusterDescs) {
		t.Errorf("%d cluster metric families, want %d", len(cluster), len(clusterDescs))
	}
}

// clusterProxy is a proxy serving one redis_cluster pool, alpha, over c,
// fed by a ClusterWatcher as cmd/shardproxy feeds it, with its stats
// port.
type clusterProxy struct {
	srv   *proxy.Server
	addr  string // the pool's listen address
	stats string // the stats port's
}

func startClusterProxy(t *testing.T, c *proxytest.Cluster) *clusterProxy {
	t.Helper()
	cp := &clusterProxy{addr: fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))}
	var w *discovery.ClusterWatcher
	yaml := "alpha:\n  listen: " + cp.addr + "\n  redis: true\n  redis_cluster: true\n  servers:\n"
	for _, s := range c.Seeds() {
		yaml += "    - " + s + ":1\n"
	}
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cp.srv, err = proxy.NewServer(cfg, proxy.Options{ResolveCluster: func(string) { w.Poke() }})
	if err != nil {
		t.Fatal(err)
	}
	w, err = discovery.NewClusterWatcher(discovery.ClusterOptions{
		Seeds:    c.Seeds(),
		Poll:     500 * time.Millisecond,
		OnChange: func(m discovery.ClusterMap) { cp.srv.SetClusterMap("alpha", proxyClusterMap(m)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	cp.srv.SetClusterStatus(func(string) (proxy.ClusterStatus, bool) {
		st := w.Stats()
		return proxy.ClusterStatus{Epoch: st.Epoch, Refreshes: st.Refreshes, Changes: st.Changes, LastChange: st.LastChange}, true
	})
	if err := cp.srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		cp.srv.Shutdown(sctx)
	})
	cp.stats = startStatsPort(t, cp.srv, time.Minute)
	return cp
}

// proxyClusterMap is what cmd/shardproxy hands SetClusterMap for m.
func proxyClusterMap(m discovery.ClusterMap) proxy.ClusterMap {
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
		if o >= 0 {
			out.Slots[s] = index[o]
		}
	}
	return out
}

// waitStats polls the stats document at addr until ok accepts it, and
// fails t after proxytest.ClusterTimeout with what was last seen.
func waitStats(t *testing.T, addr, what string, ok func(doc map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(proxytest.ClusterTimeout)
	for {
		doc := statsDoc(t, addr)
		if ok(doc) {
			return doc
		}
		if time.Now().After(deadline) {
			var cluster []string
			for k, v := range doc {
				if strings.Contains(k, "cluster_") {
					cluster = append(cluster, fmt.Sprintf("%s=%v", k, v))
				}
			}
			slices.Sort(cluster)
			t.Fatalf("no stats document where %s: %s", what, strings.Join(cluster, " "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// currentEpoch is the highest cluster_current_epoch the nodes of c give
// in CLUSTER INFO.
func currentEpoch(t *testing.T, c *proxytest.Cluster) uint64 {
	t.Helper()
	var top uint64
	for _, n := range c.Nodes {
		r, err := n.Client(t).Do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(r.Str), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_current_epoch:"); ok {
				e, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					t.Fatalf("CLUSTER INFO on %s: cluster_current_epoch:%s", n.Addr, v)
				}
				top = max(top, e)
			}
		}
	}
	return top
}

// sumRedirects adds up kind over the pool's servers in the stats document
// and in /metrics.
func sumRedirects(t *testing.T, cp *clusterProxy, kind string) (inJSON, inMetrics float64) {
	t.Helper()
	for k, v := range statsDoc(t, cp.stats) {
		if strings.HasPrefix(k, "alpha/") && strings.HasSuffix(k, "/cluster_"+kind) {
			inJSON += v.(float64)
		}
	}
	for _, m := range scrapeMetrics(t, cp.stats)["shardproxy_cluster_redirects_total"].GetMetric() {
		for _, lp := range m.Label {
			if lp.GetName() == "kind" && lp.GetValue() == kind {
				inMetrics += metricValue(m)
			}
		}
	}
	return inJSON, inMetrics
}

// Against a real cluster: each master shows in the stats document under
// its address with the node ID the cluster gives it; a reshard through
// live traffic counts MOVED replies on the nodes that sent them, in the
// document and in /metrics; the pool's epoch is the cluster's current
// epoch once the reshard settled; and an ASK and a TRYAGAIN provoked by
// hand on a migrating slot are counted on the node that answered them.
func TestClusterStatsThroughReshard(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	masters := c.Masters()
	waitStats(t, cp.stats, "every master has its node ID", func(doc map[string]any) bool {
		for _, m := range masters {
			if doc["alpha/"+m.Addr+"/cluster_node_id"] != m.ID || doc["alpha/"+m.Addr+"/cluster_role"] != "master" {
				return false
			}
		}
		return doc["alpha/cluster_slots_served"] == float64(hashring.SlotCount)
	})

	// Writers over keys in every slot, while slots move.
	keys := make([]string, hashring.SlotCount)
	for i, left := 0, len(keys); left > 0; i++ {
		k := "k" + strconv.Itoa(i)
		if s := hashring.KeySlot([]byte(k)); keys[s] == "" {
			keys[s] = k
			left--
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := proxytest.Dial(t, cp.addr)
			for !stop.Load() {
				for from := w * 128; from < len(keys) && !stop.Load(); from += 256 {
					chunk := keys[from:min(from+128, len(keys))]
					for _, k := range chunk {
						cl.Send("SET", k, "v")
					}
					if err := cl.Flush(); err != nil {
						errs <- err.Error()
						return
					}
					for _, k := range chunk {
						if r, err := cl.Read(); err != nil || r.String() != "+OK" {
							select {
							case errs <- fmt.Sprintf("SET %s = %v, %v", k, r, err):
							default:
							}
							return
						}
					}
				}
			}
		}()
	}
	c.Reshard(t, masters[0].ID, masters[1].ID, 1000)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if inJSON, inMetrics := sumRedirects(t, cp, "moved"); inJSON == 0 || inMetrics != inJSON {
		t.Errorf("MOVED counted %v times in the stats document and %v in /metrics, want the same, more than 0", inJSON, inMetrics)
	} else {
		t.Logf("%v MOVED replies during the reshard", inJSON)
	}

	epoch := currentEpoch(t, c)
	doc := waitStats(t, cp.stats, fmt.Sprintf("cluster_epoch is CLUSTER INFO's cluster_current_epoch %d", epoch), func(doc map[string]any) bool {
		return doc["alpha/cluster_epoch"] == float64(epoch)
	})
	if n, _ := doc["alpha/cluster_map_changes"].(float64); n < 2 {
		t.Errorf("cluster_map_changes = %v after the first map and a reshard, want at least 2", doc["alpha/cluster_map_changes"])
	}
	if r, ch := doc["alpha/cluster_map_refreshes"].(float64), doc["alpha/cluster_map_changes"].(float64); r < ch {
		t.Errorf("cluster_map_refreshes = %v, fewer than the %v changes", r, ch)
	}
	if at, _ := doc["alpha/cluster_map_last_change"].(float64); at < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("cluster_map_last_change = %v, want about now", doc["alpha/cluster_map_last_change"])
	}
	families := scrapeMetrics(t, cp.stats)
	if got := metricValue(metricWith(t, families, "shardproxy_cluster_map_epoch", map[string]string{"pool": "alpha"})); got != float64(epoch) {
		t.Errorf("shardproxy_cluster_map_epoch = %v, want %d", got, epoch)
	}
	if got := metricValue(metricWith(t, families, "shardproxy_cluster_slots_unserved", map[string]string{"pool": "alpha"})); got != 0 {
		t.Errorf("shardproxy_cluster_slots_unserved = %v, want 0", got)
	}

	// A slot of masters[2] migrating to masters[0], with one of two keys
	// of one tag moved: a key not on the source is answered ASK, and a
	// command on both keys TRYAGAIN.
	source, target := masters[2], masters[0]
	var slot int
	for s := range hashring.SlotCount {
		if c.Owner(t, s).ID == source.ID {
			slot = s
			break
		}
	}
	tag := "{" + keys[slot] + "}"
	cl := proxytest.Dial(t, cp.addr)
	for _, k := range []string{tag + "a", tag + "b"} {
		if r, err := cl.Do("SET", k, "v"+k[len(k)-1:]); err != nil || r.String() != "+OK" {
			t.Fatalf("SET %s = %v, %v", k, r, err)
		}
	}
	sc, tc := source.Client(t), target.Client(t)
	for _, step := range []struct {
		conn *proxytest.Conn
		args []string
	}{
		{tc, []string{"CLUSTER", "SETSLOT", strconv.Itoa(slot), "IMPORTING", source.ID}},
		{sc, []string{"CLUSTER", "SETSLOT", strconv.Itoa(slot), "MIGRATING", target.ID}},
		{sc, []string{"MIGRATE", "127.0.0.1", strconv.Itoa(target.Port), tag + "a", "0", "5000"}},
	} {
		if r, err := step.conn.Do(step.args...); err != nil || r.String() != "+OK" {
			t.Fatalf("%v = %v, %v", step.args, r, err)
		}
	}
	askBefore, _ := statsDoc(t, cp.stats)["alpha/"+source.Addr+"/cluster_ask"].(float64)
	if r, err := cl.Do("GET", tag+"a"); err != nil || string(r.Str) != "va" {
		t.Errorf("GET %sa, moved to the importing node = %v, %v, want va", tag, r, err)
	}
	// The retry of TRYAGAIN may give the client the values or, while the
	// slot stays half moved, the error; either way the node said it.
	if r, err := cl.Do("MGET", tag+"a", tag+"b"); err != nil || !strings.HasPrefix(string(r.Raw()), "-TRYAGAIN") && string(r.Raw()) != "*2\r\n$2\r\nva\r\n$2\r\nvb\r\n" {
		t.Errorf("MGET %sa %sb = %q, %v, want -TRYAGAIN or [va vb]", tag, tag, r.Raw(), err)
	}
	doc = statsDoc(t, cp.stats)
	if n, _ := doc["alpha/"+source.Addr+"/cluster_ask"].(float64); n <= askBefore {
		t.Errorf("cluster_ask of %s = %v, want more than the %v before", source.Addr, n, askBefore)
	}
	if n, _ := doc["alpha/"+source.Addr+"/cluster_tryagain"].(float64); n < 1 {
		t.Errorf("cluster_tryagain of %s = %v, want at least 1", source.Addr, n)
	}
	if inJSON, inMetrics := sumRedirects(t, cp, "tryagain"); inMetrics != inJSON {
		t.Errorf("TRYAGAIN counted %v times in the stats document and %v in /metrics, want the same", inJSON, inMetrics)
	}
	// Leave the slot whole on the source for the cluster's shutdown.
	tc.Do("MIGRATE", "127.0.0.1", strconv.Itoa(source.Port), tag+"a", "0", "5000")
	sc.Do("CLUSTER", "SETSLOT", strconv.Itoa(slot), "STABLE")
	tc.Do("CLUSTER", "SETSLOT", strconv.Itoa(slot), "STABLE")
}
