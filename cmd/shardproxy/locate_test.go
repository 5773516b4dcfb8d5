package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
	"github.com/shardproxy/shardproxy/proxy/statsport"
)

// writeConf writes yaml to a nutcracker.yml of its own and returns its path.
func writeConf(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCmd runs the command with args and returns its exit status and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// locateJSON runs `shardproxy locate --json` with args, which must succeed.
func locateJSON(t *testing.T, args ...string) []stats.Location {
	t.Helper()
	code, out, errOut := runCmd(t, append([]string{"locate", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("locate %v: exit %d\n%s%s", args, code, out, errOut)
	}
	var locs []stats.Location
	if err := json.Unmarshal([]byte(out), &locs); err != nil {
		t.Fatalf("locate %v: %v\n%s", args, err, out)
	}
	return locs
}

// startConfProxy serves the configuration at path in this process, with
// its stats port, and returns the stats port's address.
func startConfProxy(t *testing.T, path string) (*proxy.Server, string) {
	t.Helper()
	data, err := config.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss := statsport.New(srv, statsport.Options{})
	go ss.Serve(ln)
	t.Cleanup(func() { ss.Close() })
	return srv, ln.Addr().String()
}

// exists reports whether key is on r.
func exists(t *testing.T, r *proxytest.Redis, key string) bool {
	t.Helper()
	c := r.Client(t)
	defer c.Close()
	rep, err := c.Do("EXISTS", key)
	if err != nil {
		t.Fatalf("EXISTS %s on %s: %v", key, r.Addr, err)
	}
	return string(rep.Raw()) == ":1\r\n"
}

// `shardproxy locate` names, for each key and pool, the server that holds
// the key once written through the proxy, and the address it is on; the
// table, --json and --stats (a running proxy's /locate) agree.
func TestLocateCommand(t *testing.T) {
	var rs []*proxytest.Redis
	for range 3 {
		rs = append(rs, proxytest.StartRedis(t))
	}
	listenA, listenB := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	path := writeConf(t, fmt.Sprintf(`alpha:
  listen: %s
  redis: true
  hash: fnv1a_64
  distribution: ketama
  hash_tag: "{}"
  servers:
    - %s:1 shard0
    - %s:1 shard1
    - %s:1 shard2
beta:
  listen: %s
  redis: true
  servers:
    - %s:1
    - %s:1
`, listenA, rs[0].Addr, rs[1].Addr, rs[2].Addr, listenB, rs[0].Addr, rs[2].Addr))
	_, statsAddr := startConfProxy(t, path)
	names := map[string]map[string]string{
		"alpha": {"shard0": rs[0].Addr, "shard1": rs[1].Addr, "shard2": rs[2].Addr},
		"beta":  {rs[0].Addr: rs[0].Addr, rs[2].Addr: rs[2].Addr},
	}
	byAddr := map[string]*proxytest.Redis{}
	for _, r := range rs {
		byAddr[r.Addr] = r
	}
	var keys []string
	for i := range 60 {
		keys = append(keys, fmt.Sprintf("user:%d", i), fmt.Sprintf("cart{%d}:items", i))
	}
	for pool, listen := range map[string]string{"alpha": listenA, "beta": listenB} {
		c := proxytest.Dial(t, listen)
		for _, k := range keys {
			// A pool's own prefix keeps the two pools' keys apart on
			// the servers they share.
			if r, err := c.Do("SET", pool+":"+k, "v"); err != nil || r.String() != "+OK" {
				t.Fatalf("SET through %s = %v, %v", pool, r, err)
			}
		}
		c.Close()
	}
	var args []string
	for _, k := range keys {
		args = append(args, "alpha:"+k, "beta:"+k)
	}

	code, table, errOut := runCmd(t, append([]string{"locate", "-c", path}, args...)...)
	if code != 0 {
		t.Fatalf("locate: exit %d\n%s%s", code, table, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 1+2*len(args) || !strings.HasPrefix(lines[0], "KEY ") {
		t.Fatalf("locate printed %d lines, want a header and %d:\n%s", len(lines), 2*len(args), table)
	}
	checked := 0
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 4 {
			t.Fatalf("line %q has no server and address", line)
		}
		key, pool, server, addr := f[0], f[1], f[2], f[3]
		if names[pool][server] != addr {
			t.Fatalf("line %q: %s is not %s's server at %s", line, server, pool, addr)
		}
		if !strings.HasPrefix(key, pool+":") {
			continue // written through the other pool
		}
		if !exists(t, byAddr[addr], key) {
			t.Errorf("line %q: %s is not on %s", line, key, addr)
		}
		for _, r := range rs {
			if r.Addr != addr && exists(t, r, key) {
				t.Errorf("line %q: %s is on %s too", line, key, r.Addr)
			}
		}
		if tag := strings.Contains(key, "{"); tag != strings.Contains(line, "hash tag") && pool == "alpha" {
			t.Errorf("line %q: the hash tag is missing or wrong", line)
		}
		checked++
	}
	if checked != len(args) {
		t.Errorf("checked %d keys, want %d", checked, len(args))
	}

	local := locateJSON(t, append([]string{"-c", path}, args...)...)
	remote := locateJSON(t, append([]string{"--stats", statsAddr}, args...)...)
	if !reflect.DeepEqual(local, remote) || len(local) != 2*len(args) {
		t.Errorf("--json and --stats differ:\n%+v\n%+v", local, remote)
	}
	if code, remoteTable, errOut := runCmd(t, append([]string{"locate", "--stats", statsAddr}, args...)...); code != 0 || remoteTable != table {
		t.Errorf("locate --stats: exit %d, %s\n%s\nwant\n%s", code, errOut, remoteTable, table)
	}
	// Flags may follow keys; one pool only.
	if locs := locateJSON(t, "alpha:user:1", "-c", path, "--pool", "beta"); len(locs) != 1 || locs[0].Pool != "beta" {
		t.Errorf("locate --pool beta = %+v", locs)
	}
}

// Bad input gets a clear message and exit status 2 (usage) or 1.
func TestLocateCommandErrors(t *testing.T) {
	r := proxytest.StartRedis(t)
	path := writeConf(t, fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  servers:\n    - %s:1 s0\n", proxytest.FreePort(t), r.Addr))
	bad := writeConf(t, "alpha:\n  listen: 127.0.0.1:1\n  servers:\n    - nonsense\n")
	// A redis_cluster pool whose seed does not answer has no slot map:
	// no key has an address.
	noMap := writeConf(t, fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  redis_cluster: true\n  servers:\n    - 127.0.0.1:%d:1\n", proxytest.FreePort(t), proxytest.FreePort(t)))
	_, statsAddr := startConfProxy(t, path)
	deadStats := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no key", []string{"-c", path}, 2, "no key given"},
		{"bad flag", []string{"--bogus", "k"}, 2, "flag provided but not defined: -bogus"},
		{"unknown pool", []string{"-c", path, "--pool", "gamma", "k"}, 1, `no pool "gamma" in ` + path},
		{"bad config", []string{"-c", bad, "k"}, 1, "configuration file '" + bad + "' is invalid"},
		{"missing config", []string{"-c", path + ".missing", "k"}, 1, "no such file"},
		{"slot not served", []string{"-c", noMap, "--discovery-sync-timeout", "300ms", "k"}, 1, `"k" in pool alpha: CLUSTERDOWN Hash slot not served (slot 7629)`},
		{"unknown pool remote", []string{"--stats", statsAddr, "--pool", "gamma", "k"}, 1, `answers 400 Bad Request: no pool "gamma"`},
		{"stats down", []string{"--stats", deadStats, "k"}, 1, "asking the stats port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, append([]string{"locate"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("locate %v: exit %d, stderr %q; want exit %d and %q\n%s", tc.args, code, errOut, tc.code, tc.want, out)
			}
		})
	}
	code, _, errOut := runCmd(t, "locate", "-h")
	if code != 0 || !strings.Contains(errOut, "Usage: shardproxy locate") || !strings.Contains(errOut, "--stats") {
		t.Errorf("locate -h: exit %d\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "-h")
	if code != 0 || !strings.Contains(errOut, "shardproxy locate") {
		t.Errorf("-h does not mention locate: exit %d\n%s", code, errOut)
	}
}

// For a pool of Sentinel-watched groups, locate asks the Sentinels as the
// proxy does and gives each key's group master, which holds the key
// written through the proxy; after a failover, the new master, which holds
// a key written then.
func TestLocateCommandSentinel(t *testing.T) {
	g := startSentinelGroups(t)
	var sentinels []string
	for _, s := range g.sentinels {
		sentinels = append(sentinels, s.Addr)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	path := writeConf(t, fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  timeout: 1000\n  sentinels:\n    - %s\n  servers:\n    - %s:1 g0\n    - %s:1 g1\n",
		listen, strings.Join(sentinels, "\n    - "), g.masters[0].Addr, g.masters[1].Addr))
	addr, _ := startSentinelProxy(t, g)
	keys := keysOf(t, addr, g, 5)
	for i, ks := range keys {
		for _, l := range locateJSON(t, append([]string{"-c", path}, ks...)...) {
			if l.Server != fmt.Sprintf("g%d", i) || l.Addr != g.masters[i].Addr || l.Master != g.masters[i].Addr || !l.Usable {
				t.Fatalf("locate %s = %+v; the key is on g%d's master %s", l.Key, l, i, g.masters[i].Addr)
			}
		}
	}

	old, next := g.masters[0], g.replicas[0]
	sc := g.sentinels[0].Client(t)
	if r, err := sc.Do("SENTINEL", "FAILOVER", "g0"); err != nil || r.String() != "+OK" {
		t.Fatalf("SENTINEL FAILOVER g0 = %v, %v", r, err)
	}
	key := keys[0][0]
	deadline := time.Now().Add(60 * time.Second)
	for {
		// While Sentinel fails over, g0 may have no confirmed master:
		// locate says so and exits 1.
		code, out, errOut := runCmd(t, "locate", "--json", "-c", path, "--pool", "alpha", "--discovery-sync-timeout", "2s", key)
		var locs []stats.Location
		if err := json.Unmarshal([]byte(out), &locs); err != nil || len(locs) != 1 || code != 0 && code != 1 {
			t.Fatalf("locate %s: exit %d, %v\n%s%s", key, code, err, out, errOut)
		}
		if code == 0 && locs[0].Addr == next.Addr && locs[0].Usable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("locate %s after the failover = %+v, want g0's new master %s (old %s)", key, locs[0], next.Addr, old.Addr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	c := proxytest.Dial(t, addr)
	deadline = time.Now().Add(60 * time.Second)
	for {
		r, err := c.Do("SET", key, "after")
		if err == nil && r.String() == "+OK" {
			break
		}
		if err != nil {
			c = proxytest.Dial(t, addr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET %s through the proxy after the failover = %v, %v", key, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	nc := next.Client(t)
	if r, err := nc.Do("GET", key); err != nil || r.String() != `"after"` {
		t.Fatalf("GET %s on the new master %s = %v, %v; want the value written after the failover", key, next.Addr, r, err)
	}
}

// For a redis_cluster pool, locate reads the cluster's map as the proxy
// does and gives each key's slot and the node that serves it.
func TestLocateCommandCluster(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	path := writeConf(t, fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  redis_cluster: true\n  servers:\n    - %s:1\n", proxytest.FreePort(t), c.Nodes[0].Addr))
	var keys []string
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	for _, l := range locateJSON(t, append([]string{"-c", path}, keys...)...) {
		slot := int(hashring.KeySlot([]byte(l.Key)))
		owner := c.Owner(t, slot)
		if l.Slot == nil || *l.Slot != slot || l.Server != owner.Addr || l.Addr != owner.Addr || l.NodeID != owner.ID {
			t.Fatalf("locate %s = %+v, want slot %d on %s (%s)", l.Key, l, slot, owner.Addr, owner.ID)
		}
	}
	code, table, _ := runCmd(t, "locate", "-c", path, "k1")
	owner := c.Owner(t, int(hashring.KeySlot([]byte("k1"))))
	if code != 0 || !strings.Contains(table, fmt.Sprintf("slot %d, node %s", hashring.KeySlot([]byte("k1")), owner.ID)) {
		t.Errorf("locate k1: exit %d\n%s", code, table)
	}
}

// For a pool with kubernetes_service, locate watches the EndpointSlices
// (of a real kube-apiserver) as the proxy does and gives the pod's IP
// (one nothing listens at: locate dials no ring server). It guards against
// locating before the first list was handed on: a watch says it synced just
// before it hands the list to the proxy.
func TestLocateCommandKubernetes(t *testing.T) {
	cp := kubetest.Start(t)
	const ns = "locate"
	cp.CreateNamespace(t, ns)
	ready := true
	port, portName, pod := int32(6379), "redis", "redis-0"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "redis-abc", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: "redis"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"198.18.0.7"},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: ns},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cp.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := writeConf(t, fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  kubernetes_service: redis\n  servers:\n    - redis-0.redis:6379:1 shard0\n", proxytest.FreePort(t)))
	locs := locateJSON(t, "-c", path, "--kubeconfig", cp.AdminKubeconfig, "--kubernetes-namespace", ns, "k")
	if len(locs) != 1 || locs[0].Server != "shard0" || locs[0].Addr != "198.18.0.7:6379" || locs[0].Source != "endpointslice/redis-abc" || locs[0].Configured != "redis-0.redis:6379" {
		t.Fatalf("locate k = %+v, want shard0 at its pod's 198.18.0.7:6379", locs)
	}
	code, table, _ := runCmd(t, "locate", "-c", path, "--kubeconfig", cp.AdminKubeconfig, "--kubernetes-namespace", ns, "k")
	if code != 0 || !strings.Contains(table, "198.18.0.7:6379") || !strings.Contains(table, "configured redis-0.redis:6379, from endpointslice/redis-abc") {
		t.Errorf("locate k: exit %d\n%s", code, table)
	}
}
