package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

const clusterE2ENamespace = "cluster-e2e"

// clusterE2EKeys is how many keys go through the proxy: hundreds on each
// master.
const clusterE2EKeys = 1500

// A Redis Cluster whose nodes are the pods of a StatefulSet, behind a
// redis_cluster pool with kubernetes_service and no servers: the proxy
// takes its seeds from the EndpointSlices. A pod restarts on a new IP
// while the cluster still announces the old one (the pod itself
// announces it, so the window stays open until the test closes it): the
// proxy dials the node at the pod's new IP, its keys are read and written
// through the proxy, and /discovery and /metrics report the mismatch
// until the cluster announces the new IP.
func TestKubernetesClusterEndToEnd(t *testing.T) {
	began := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("%5.1fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	redisCLI, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found in PATH (apt-get install redis-tools; .ci/run installs it)")
	}
	bin := buildBinary(t)
	cp := kubetest.Start(t)
	cp.CreateNamespace(t, clusterE2ENamespace)
	cp.CreateNode(t, e2eNode)
	cp.Apply(t, []byte(groupE2EObjects(clusterE2ENamespace, 3)))
	step("control plane up, objects applied")

	// The node timeout is long so that no node is failed while the
	// restarted one announces an address the others cannot reach it at.
	nodeArgs := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "600000"}
	var pods []*kubetest.Pod
	create := []string{"--cluster", "create"}
	for i := range 3 {
		p := cp.StartRedisPod(t, clusterE2ENamespace, fmt.Sprintf("shard0-%d", i), e2eNode, nodeArgs...)
		pods = append(pods, p)
		create = append(create, p.Addr(kubetest.RedisPort))
	}
	if out, err := exec.Command(redisCLI, append(create, "--cluster-yes")...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, p := range pods {
		waitClusterOK(t, p)
	}
	cp.WaitEndpointSlices(t, clusterE2ENamespace, "shard0", func(s []discoveryv1.EndpointSlice) bool { return len(kubetest.ReadyAddresses(s)) == 3 })
	step("cluster of pods at %s, %s and %s", pods[0].IP, pods[1].IP, pods[2].IP)

	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	conf := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  timeout: 1000\n  redis_cluster: true\n  kubernetes_service: shard0\n", listen)
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, bin, listen, proxytest.FreePort(t), nil,
		"-c", path, "--kubeconfig", cp.Kubeconfig(t, clusterE2ENamespace, "shardproxy"), "--kubernetes-namespace", clusterE2ENamespace)
	c := proxytest.Dial(t, listen)
	waitReply(t, c, "+OK", "SET", "probe", "1")
	for i := range clusterE2EKeys {
		if r, err := c.Do("SET", e2eKey(i), e2eValue(e2eKey(i))); err != nil || r.String() != "+OK" {
			t.Fatalf("SET %s = %v, %v", e2eKey(i), r, err)
		}
	}
	step("%d keys written through the proxy", clusterE2EKeys)

	victim := pods[1]
	oldIP := victim.IP.String()
	id := nodeID(t, victim)
	owners := slotOwners(t, victim)
	var victimKeys []string
	for i := 0; i < clusterE2EKeys && len(victimKeys) < 50; i++ {
		if owners[hashring.KeySlot([]byte(e2eKey(i)))] == id {
			victimKeys = append(victimKeys, e2eKey(i))
		}
	}
	if len(victimKeys) == 0 {
		t.Fatalf("no key of the %d is on %s", clusterE2EKeys, victim.Name)
	}
	victim.Delete(t)
	step("pod %s (node %s) deleted", victim.Name, id[:8])
	victim = cp.StartRedisPod(t, clusterE2ENamespace, victim.Name, e2eNode, append(nodeArgs, "--cluster-announce-ip", oldIP)...)
	pods[1] = victim
	cp.WaitEndpointSlices(t, clusterE2ENamespace, "shard0", func(s []discoveryv1.EndpointSlice) bool {
		return kubetest.ReadyAddresses(s)[victim.IP] == victim.Name
	})
	waitClusterOK(t, victim)
	for _, p := range []*kubetest.Pod{pods[0], pods[2]} {
		if got := nodeAddr(t, p, id); got != oldIP+":"+strconv.Itoa(kubetest.RedisPort) {
			t.Fatalf("%s announces node %s at %s, want its old address %s", p.Name, id[:8], got, oldIP)
		}
	}
	step("%s back at %s; the cluster still announces it at %s", victim.Name, victim.IP, oldIP)

	for _, k := range victimKeys {
		waitReply(t, c, strconv.Quote(e2eValue(k)), "GET", k)
		if r, err := c.Do("SET", k, "moved"); err != nil || r.String() != "+OK" {
			t.Fatalf("SET %s after the move = %v, %v", k, r, err)
		}
	}
	if r, err := proxytest.Dial(t, victim.Addr(kubetest.RedisPort)).Do("GET", victimKeys[0]); err != nil || r.String() != `"moved"` {
		t.Fatalf("GET %s on %s = %v, %v, want the write sent through the proxy", victimKeys[0], victim.Name, r, err)
	}
	step("%d keys of %s read and written through the proxy", len(victimKeys), victim.Name)

	want := stats.ClusterNodeAddress{ID: id, Announced: oldIP + ":6379", Dialled: victim.Addr(kubetest.RedisPort), Pod: victim.Name, Master: true, Stale: true}
	if got := clusterAddresses(t, proxy); len(got) != 1 || got[0] != want {
		t.Errorf("/discovery cluster_addresses = %+v, want %+v", got, want)
	}
	metric := fmt.Sprintf(`shardproxy_cluster_node_address_mismatch{announced="%s",dialled="%s",node_id="%s",pod="%s",pool="alpha"} 1`,
		want.Announced, want.Dialled, id, victim.Name)
	if body := metrics(t, proxy); !strings.Contains(body, metric) || !strings.Contains(body, `shardproxy_cluster_address_mismatches{pool="alpha"} 1`) {
		t.Errorf("/metrics lacks %s and a mismatch count of 1", metric)
	}
	step("/discovery and /metrics report the mismatch")

	if r, err := proxytest.Dial(t, victim.Addr(kubetest.RedisPort)).Do("CONFIG", "SET", "cluster-announce-ip", victim.IP.String()); err != nil || r.String() != "+OK" {
		t.Fatalf("CONFIG SET cluster-announce-ip on %s = %v, %v", victim.Name, r, err)
	}
	deadline := time.Now().Add(kubetest.WaitTimeout)
	for len(clusterAddresses(t, proxy)) != 0 || !strings.Contains(metrics(t, proxy), `shardproxy_cluster_address_mismatches{pool="alpha"} 0`) {
		if time.Now().After(deadline) {
			t.Fatalf("/discovery cluster_addresses = %+v after the cluster learnt %s's new address", clusterAddresses(t, proxy), victim.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, k := range victimKeys {
		if r, err := c.Do("GET", k); err != nil || r.String() != `"moved"` {
			t.Fatalf("GET %s = %v, %v, want moved", k, r, err)
		}
	}
	step("the cluster announces %s's new address; no mismatch is reported", victim.Name)
}

// waitClusterOK waits until the node in p says cluster_state:ok.
func waitClusterOK(t *testing.T, p *kubetest.Pod) {
	t.Helper()
	deadline := time.Now().Add(kubetest.WaitTimeout)
	for {
		r, err := proxytest.Dial(t, p.Addr(kubetest.RedisPort)).Do("CLUSTER", "INFO")
		if err == nil && strings.Contains(string(r.Raw()), "cluster_state:ok") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CLUSTER INFO on %s = %q, %v", p.Name, r.Raw(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterNodes is CLUSTER NODES on p, one line per node.
func clusterNodes(t *testing.T, p *kubetest.Pod) []string {
	t.Helper()
	r, err := proxytest.Dial(t, p.Addr(kubetest.RedisPort)).Do("CLUSTER", "NODES")
	if err != nil {
		t.Fatalf("CLUSTER NODES on %s: %v", p.Name, err)
	}
	return strings.Split(strings.TrimSpace(string(r.Str)), "\n")
}

// nodeID is the ID of the node in p.
func nodeID(t *testing.T, p *kubetest.Pod) string {
	t.Helper()
	for _, line := range clusterNodes(t, p) {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(f[2], "myself") {
			return f[0]
		}
	}
	t.Fatalf("CLUSTER NODES on %s names no myself", p.Name)
	return ""
}

// nodeAddr is the ip:port p's CLUSTER NODES gives node id.
func nodeAddr(t *testing.T, p *kubetest.Pod, id string) string {
	t.Helper()
	for _, line := range clusterNodes(t, p) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == id {
			addr, _, _ := strings.Cut(f[1], "@")
			return addr
		}
	}
	t.Fatalf("CLUSTER NODES on %s does not name %s", p.Name, id)
	return ""
}

// slotOwners is, per slot, the ID of the master p's CLUSTER NODES says
// serves it.
func slotOwners(t *testing.T, p *kubetest.Pod) (owners [hashring.SlotCount]string) {
	t.Helper()
	for _, line := range clusterNodes(t, p) {
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		for _, r := range f[8:] {
			first, last, ok := strings.Cut(r, "-")
			if !ok {
				last = first
			}
			lo, err1 := strconv.Atoi(first)
			hi, err2 := strconv.Atoi(last)
			for s := lo; err1 == nil && err2 == nil && s <= hi && s < hashring.SlotCount; s++ {
				owners[s] = f[0]
			}
		}
	}
	return owners
}

// clusterAddresses is alpha's cluster_addresses in the proxy's /discovery.
func clusterAddresses(t *testing.T, p *e2eProxy) []stats.ClusterNodeAddress {
	t.Helper()
	var doc struct {
		ClusterAddresses []stats.ClusterAddresses `json:"cluster_addresses"`
	}
	code, body, err := p.get("/discovery")
	if err != nil || code != http.StatusOK || json.Unmarshal(body, &doc) != nil {
		t.Fatalf("GET /discovery = %d %q, %v", code, body, err)
	}
	if len(doc.ClusterAddresses) != 1 || doc.ClusterAddresses[0].Pool != "alpha" {
		t.Fatalf("/discovery cluster_addresses = %+v, want alpha's", doc.ClusterAddresses)
	}
	return doc.ClusterAddresses[0].Nodes
}

// metrics is the proxy's /metrics.
func metrics(t *testing.T, p *e2eProxy) string {
	t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", code, err)
	}
	return string(body)
}
