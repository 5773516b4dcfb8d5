package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

const sentinelE2ENamespace = "sentinel-e2e"

// groupE2EObjects are a group in namespace: StatefulSet shard0 of pods
// behind the headless Service shard0, and the proxy's RBAC.
func groupE2EObjects(namespace string, pods int) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: shard0, namespace: %[1]s}
spec:
  clusterIP: None
  selector: {app: shard0}
  ports: [{name: redis, port: 6379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: shard0, namespace: %[1]s}
spec:
  serviceName: shard0
  replicas: %[2]d
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: shard0}}
  template:
    metadata: {labels: {app: shard0}}
    spec: {containers: [{name: redis, image: redis:7.0}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: shardproxy-endpointslices, namespace: %[1]s}
rules:
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: shardproxy-endpointslices, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: shardproxy-endpointslices}
subjects: [{kind: ServiceAccount, name: shardproxy}]
`, namespace, pods)
}

// sentinelE2EObjects are a group of two pods and three Sentinels as pods
// of the StatefulSet and Service sentinel (a Deployment needs the
// ReplicaSet controller, which does not run).
var sentinelE2EObjects = groupE2EObjects(sentinelE2ENamespace, 2) + `
---
apiVersion: v1
kind: Service
metadata: {name: sentinel, namespace: sentinel-e2e}
spec:
  selector: {app: sentinel}
  ports: [{name: sentinel, port: 26379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sentinel, namespace: sentinel-e2e}
spec:
  serviceName: sentinel
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: sentinel}}
  template:
    metadata: {labels: {app: sentinel}}
    spec: {containers: [{name: sentinel, image: redis:7.0}]}
`

// The proxy finds the Sentinels and the group's pods through EndpointSlices;
// when the master pod is deleted, Sentinel fails over to the replica, the
// proxy follows, every key stays readable and writes work.
func TestKubernetesSentinelEndToEnd(t *testing.T) {
	began := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("%5.1fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	bin := buildBinary(t)
	cp := kubetest.Start(t)
	cp.CreateNamespace(t, sentinelE2ENamespace)
	cp.CreateNode(t, e2eNode)
	cp.Apply(t, []byte(sentinelE2EObjects))
	step("control plane up, objects applied")

	master := cp.StartRedisPod(t, sentinelE2ENamespace, "shard0-0", e2eNode)
	replica := cp.StartRedisPod(t, sentinelE2ENamespace, "shard0-1", e2eNode, "--replicaof", master.IP.String(), fmt.Sprint(kubetest.RedisPort))
	waitRole(t, replica, "slave", "connected")
	step("shard0-0 at %s, its replica shard0-1 at %s", master.IP, replica.IP)

	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	var sentinels []*kubetest.Pod
	for i := range 3 {
		p := cp.StartPod(t, sentinelE2ENamespace, fmt.Sprintf("sentinel-%d", i), e2eNode)
		conf := filepath.Join(p.Dir, "sentinel.conf")
		text := fmt.Sprintf("bind %s\nport 26379\nprotected-mode no\ndir %s\n"+
			"sentinel monitor shard0 %s %d 2\nsentinel down-after-milliseconds shard0 1000\n"+
			"sentinel failover-timeout shard0 5000\nsentinel parallel-syncs shard0 1\n",
			p.IP, p.Dir, master.IP, kubetest.RedisPort)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p.Run(t, p.Command(redisServer, conf, "--sentinel"), "sentinel.log")
		waitPing(t, p.Addr(26379))
		p.SetReady(t)
		sentinels = append(sentinels, p)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range sentinels {
				t.Logf("%s sentinel.log:\n%s", p.Name, p.Log("sentinel.log"))
			}
		}
	})
	for _, p := range sentinels {
		waitSentinelKnows(t, p)
	}
	ready := func(n int) func([]discoveryv1.EndpointSlice) bool {
		return func(s []discoveryv1.EndpointSlice) bool { return len(kubetest.ReadyAddresses(s)) == n }
	}
	cp.WaitEndpointSlices(t, sentinelE2ENamespace, "shard0", ready(2))
	cp.WaitEndpointSlices(t, sentinelE2ENamespace, "sentinel", ready(3))
	step("three Sentinels watch shard0, each knowing the replica and the others")

	proxy, c := startGroupE2EProxy(t, cp, bin, sentinelE2ENamespace, "  sentinel_service: sentinel\n  kubernetes_service: shard0\n")
	step("the proxy confirmed shard0's master")
	writeE2EKeys(t, c, master, 1)
	step("%d keys written and replicated", e2eGroupKeys)

	master.Delete(t)
	step("master pod deleted")
	sawFastError := false
	seen := map[string]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := c.Do("SET", "after", "failover")
		if err != nil {
			t.Fatalf("SET after the delete: %v", err)
		}
		if r.String() == "+OK" {
			break
		}
		sawFastError = sawFastError || strings.Contains(string(r.Str), "has no confirmed master")
		if !seen[string(r.Str)] {
			seen[string(r.Str)] = true
			step("SET during the failover: %v", r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET 60s after the master pod was deleted = %v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	step("writes work again")
	if !sawFastError {
		t.Log("no request fell between the delete and the failover")
	}
	if role := roleOf(t, replica); role != "master" {
		t.Fatalf("shard0-1 ROLE = %s after the failover, want master", role)
	}
	checkE2EKeys(t, c, proxy, replica, "after", "failover")
	step("every key readable through the proxy, served by the new master")
}

// e2eGroupKeys is how many keys writeE2EKeys writes.
const e2eGroupKeys = 300

// startGroupE2EProxy runs the proxy over the group shard0 in namespace,
// with the pool keys poolKeys besides listen, redis, timeout and the
// server line, and waits until a write through it works.
func startGroupE2EProxy(t *testing.T, cp *kubetest.ControlPlane, bin, namespace, poolKeys string) (*e2eProxy, *proxytest.Conn) {
	t.Helper()
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	conf := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  timeout: 1000\n%s  servers:\n    - shard0-0.shard0:6379:1 shard0\n", listen, poolKeys)
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := cp.Kubeconfig(t, namespace, "shardproxy")
	proxy := startProxy(t, bin, listen, proxytest.FreePort(t), nil,
		"-c", path, "--kubeconfig", kubeconfig, "--kubernetes-namespace", namespace)
	c := proxytest.Dial(t, listen)
	waitReply(t, c, "+OK", "SET", "probe", "1")
	return proxy, c
}

// writeE2EKeys writes e2eGroupKeys keys through c and waits until the
// master's replicas have them all.
func writeE2EKeys(t *testing.T, c *proxytest.Conn, master *kubetest.Pod, replicas int) {
	t.Helper()
	for i := range e2eGroupKeys {
		if r, err := c.Do("SET", e2eKey(i), e2eValue(e2eKey(i))); err != nil || r.String() != "+OK" {
			t.Fatalf("SET %s = %v, %v", e2eKey(i), r, err)
		}
	}
	mc := proxytest.Dial(t, master.Addr(kubetest.RedisPort))
	if r, err := mc.Do("WAIT", fmt.Sprint(replicas), "10000"); err != nil || r.Int != int64(replicas) {
		t.Fatalf("WAIT %d on the master = %v, %v: the replicas do not have every key", replicas, r, err)
	}
}

// checkE2EKeys checks, after a failover to newMaster, that every key
// writeE2EKeys wrote reads back through c, that newMaster has key set to
// value (written through the proxy after the failover), and that the
// proxy's /discovery names newMaster.
func checkE2EKeys(t *testing.T, c *proxytest.Conn, proxy *e2eProxy, newMaster *kubetest.Pod, key, value string) {
	t.Helper()
	for i := range e2eGroupKeys {
		want := "\"" + e2eValue(e2eKey(i)) + "\""
		if r, err := c.Do("GET", e2eKey(i)); err != nil || r.String() != want {
			t.Fatalf("GET %s after the failover = %v, %v, want %s", e2eKey(i), r, err, want)
		}
	}
	if r, err := proxytest.Dial(t, newMaster.Addr(kubetest.RedisPort)).Do("GET", key); err != nil || r.String() != "\""+value+"\"" {
		t.Errorf("the new master has %s = %v, %v, want the write sent through the proxy", key, r, err)
	}
	var doc struct {
		Groups []stats.GroupStatus `json:"groups"`
	}
	if code, body, err := proxy.get("/discovery"); err != nil || code != http.StatusOK || json.Unmarshal(body, &doc) != nil {
		t.Errorf("GET /discovery = %d %q, %v", code, body, err)
	} else if len(doc.Groups) != 1 || doc.Groups[0].Master != newMaster.Addr(kubetest.RedisPort) {
		t.Errorf("/discovery groups = %+v, want shard0's master at %s", doc.Groups, newMaster.Addr(kubetest.RedisPort))
	}
}

// waitPing waits until a Redis or Sentinel at addr answers PING.
func waitPing(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(kubetest.StartTimeout)
	for {
		if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			r, err := proxytest.NewConn(nc).Do("PING")
			nc.Close()
			if err == nil && r.String() == "+PONG" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer PING", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roleOf is the first element of ROLE on the pod's redis-server.
func roleOf(t *testing.T, p *kubetest.Pod) string {
	t.Helper()
	r, err := proxytest.Dial(t, p.Addr(kubetest.RedisPort)).Do("ROLE")
	if err != nil || len(r.Elems) == 0 {
		t.Fatalf("ROLE on %s = %v, %v", p.Name, r, err)
	}
	return string(r.Elems[0].Str)
}

// waitRole waits until the pod's ROLE is role with a link in state (for a
// replica: "connected").
func waitRole(t *testing.T, p *kubetest.Pod, role, state string) {
	t.Helper()
	deadline := time.Now().Add(kubetest.WaitTimeout)
	for {
		r, err := proxytest.Dial(t, p.Addr(kubetest.RedisPort)).Do("ROLE")
		if err == nil && len(r.Elems) >= 4 && string(r.Elems[0].Str) == role && string(r.Elems[3].Str) == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s ROLE = %v, %v, want %s %s", p.Name, r, err, role, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSentinelKnows waits until the Sentinel knows shard0's replica and
// the two other Sentinels, so that a failover can happen.
func waitSentinelKnows(t *testing.T, p *kubetest.Pod) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := proxytest.Dial(t, p.Addr(26379)).Do("SENTINEL", "MASTER", "shard0")
		fields := map[string]string{}
		for i := 0; err == nil && i+1 < len(r.Elems); i += 2 {
			fields[string(r.Elems[i].Str)] = string(r.Elems[i+1].Str)
		}
		if fields["num-slaves"] == "1" && fields["num-other-sentinels"] == "2" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel %s: SENTINEL MASTER shard0 = %v, want 1 replica and 2 other Sentinels", p.Name, fields)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReply sends args until the reply is want.
func waitReply(t *testing.T, c *proxytest.Conn, want string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(kubetest.WaitTimeout)
	for {
		r, err := c.Do(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if r.String() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v = %v after %v, want %s", args, r, kubetest.WaitTimeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
