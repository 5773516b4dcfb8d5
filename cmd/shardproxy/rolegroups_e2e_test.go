package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

const roleE2ENamespace = "role-e2e"

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
	cp.Apply(t, []byte(groupE2EObjects(roleE2ENamespace, 3))) // pod 0 is made the master
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

	proxy, c := startGroupE2EProxy(t, cp, bin, roleE2ENamespace,
		"  read_from: prefer_replica\n  kubernetes_service: shard0\n  group_members:\n    - shard0 shard0-*\n")
	step("the proxy confirmed shard0's master")
	writeE2EKeys(t, c, master, 2)
	step("%d keys written and replicated", e2eGroupKeys)

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

	checkE2EKeys(t, c, proxy, replicas[0], "after", "promotion")
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
