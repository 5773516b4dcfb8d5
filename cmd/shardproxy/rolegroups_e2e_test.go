package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

const roleE2ENamespace = "role-e2e"

// roleE2EObjects are a group without Sentinel (StatefulSet shard0 of three
// pods behind the headless Service shard0, pod 0 made the master) and the
// proxy's RBAC.
const roleE2EObjects = `
apiVersion: v1
kind: Service
metadata: {name: shard0, namespace: role-e2e}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: shard0}
  ports: [{name: redis, port: 6379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: shard0, namespace: role-e2e}
spec:
  serviceName: shard0
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: shard0}}
  template:
    metadata: {labels: {app: shard0}}
    spec: {containers: [{name: redis, image: redis:7.0}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: shardproxy-endpointslices, namespace: role-e2e}
rules:
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: shardproxy-endpointslices, namespace: role-e2e}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: shardproxy-endpointslices}
subjects: [{kind: ServiceAccount, name: shardproxy}]
`

// A group without Sentinel on Kubernetes: its members are the StatefulSet's
// pods, found through the EndpointSlices. The proxy writes to pod 0 while
// ROLE and the replicas say it is the master; when that pod is deleted the
// group fails fast, and when an operator promotes a replica and points the
// other at it, the proxy follows and every key stays readable.
func TestKubernetesRoleGroupEndToEnd(t *testing.T) {
	began := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("%5.1fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	bin := buildBinary(t)
	cp := kubetest.Start(t)
	cp.CreateNamespace(t, roleE2ENamespace)
	cp.CreateNode(t, e2eNode)
	cp.Apply(t, []byte(roleE2EObjects))
	step("control plane up, objects applied")

	master := cp.StartRedisPod(t, roleE2ENamespace, "shard0-0", e2eNode)
	var replicas []*kubetest.Pod
	for i := 1; i <= 2; i++ {
		r := cp.StartRedisPod(t, roleE2ENamespace, fmt.Sprintf("shard0-%d", i), e2eNode, "--replicaof", master.IP.String(), fmt.Sprint(kubetest.RedisPort))
		waitRole(t, r, "slave", "connected")
		replicas = append(replicas, r)
	}
	cp.WaitEndpointSlices(t, roleE2ENamespace, "shard0", func(s []discoveryv1.EndpointSlice) bool { return len(kubetest.ReadyAddresses(s)) == 3 })
	step("shard0-0 at %s, its replicas at %s and %s", master.IP, replicas[0].IP, replicas[1].IP)

	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	conf := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  timeout: 1000\n  read_from: prefer_replica\n"+
		"  kubernetes_service: shard0\n  group_members:\n    - shard0 shard0-*\n  servers:\n    - shard0-0.shard0:6379:1 shard0\n", listen)
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := cp.Kubeconfig(t, roleE2ENamespace, "shardproxy")
	proxy := startProxy(t, bin, listen, proxytest.FreePort(t), nil,
		"-c", path, "--kubeconfig", kubeconfig, "--kubernetes-namespace", roleE2ENamespace)
	c := proxytest.Dial(t, listen)
	waitReply(t, c, "+OK", "SET", "probe", "1")
	step("the proxy confirmed shard0's master")

	const keys = 300
	for i := range keys {
		if r, err := c.Do("SET", e2eKey(i), e2eValue(e2eKey(i))); err != nil || r.String() != "+OK" {
			t.Fatalf("SET %s = %v, %v", e2eKey(i), r, err)
		}
	}
	mc := proxytest.Dial(t, master.Addr(kubetest.RedisPort))
	if r, err := mc.Do("WAIT", "2", "10000"); err != nil || r.Int != 2 {
		t.Fatalf("WAIT 2 on the master = %v, %v: the replicas do not have every key", r, err)
	}
	step("%d keys written and replicated", keys)

	master.Delete(t)
	step("master pod deleted")
	waitReplyContains(t, c, "group shard0 has no confirmed master", "SET", "after", "delete")
	step("writes fail fast, naming the group")

	if r, err := proxytest.Dial(t, replicas[0].Addr(kubetest.RedisPort)).Do("REPLICAOF", "NO", "ONE"); err != nil || r.String() != "+OK" {
		t.Fatalf("REPLICAOF NO ONE on shard0-1 = %v, %v", r, err)
	}
	if r, err := proxytest.Dial(t, replicas[1].Addr(kubetest.RedisPort)).Do("REPLICAOF", replicas[0].IP.String(), fmt.Sprint(kubetest.RedisPort)); err != nil || r.String() != "+OK" {
		t.Fatalf("REPLICAOF shard0-1 on shard0-2 = %v, %v", r, err)
	}
	waitRole(t, replicas[1], "slave", "connected")
	step("shard0-1 promoted, shard0-2 follows it")
	waitReply(t, c, "+OK", "SET", "after", "promotion")
	step("writes work again")

	for i := range keys {
		want := "\"" + e2eValue(e2eKey(i)) + "\""
		if r, err := c.Do("GET", e2eKey(i)); err != nil || r.String() != want {
			t.Fatalf("GET %s after the promotion = %v, %v, want %s", e2eKey(i), r, err, want)
		}
	}
	if r, err := proxytest.Dial(t, replicas[0].Addr(kubetest.RedisPort)).Do("GET", "after"); err != nil || r.String() != "\"promotion\"" {
		t.Errorf("the new master has after = %v, %v, want the write sent through the proxy", r, err)
	}
	var doc struct {
		Groups []stats.GroupStatus `json:"groups"`
	}
	if code, body, err := proxy.get("/discovery"); err != nil || code != http.StatusOK || json.Unmarshal(body, &doc) != nil {
		t.Errorf("GET /discovery = %d %q, %v", code, body, err)
	} else if len(doc.Groups) != 1 || doc.Groups[0].Master != replicas[0].Addr(kubetest.RedisPort) {
		t.Errorf("/discovery groups = %+v, want shard0's master at %s", doc.Groups, replicas[0].Addr(kubetest.RedisPort))
	}
	step("every key readable through the proxy, shard0-1 the master")
}

// waitReplyContains sends args until the reply contains want.
func waitReplyContains(t *testing.T, c *proxytest.Conn, want string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(kubetest.WaitTimeout)
	for {
		r, err := c.Do(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if strings.Contains(r.String(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v = %v after %v, want a reply containing %q", args, r, kubetest.WaitTimeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
