package deploy_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const sentinelDir = "overlays/sentinel"

// The Sentinel overlay: a StatefulSet per group behind the headless
// Service redis, Sentinels behind the Service sentinel, and a
// nutcracker.yml that finds both through EndpointSlices, which the proxy's
// Role lets it read.
func TestSentinelOverlay(t *testing.T) {
	want := slices.DeleteFunc(slices.Clone(baseObjects), func(k string) bool { return k == "StatefulSet/redis" })
	want = append(want, "ConfigMap/redis-scripts", "Deployment/sentinel", "PodDisruptionBudget/sentinel",
		"Service/sentinel", "StatefulSet/shard0", "StatefulSet/shard1", "StatefulSet/shard2")
	objs := renderStrict(t, sentinelDir, want)
	s, pool := loadGroupsStack(t, objs)
	if pool.SentinelService == "" || pool.KubernetesService != s.redisSvc.Name {
		t.Fatalf("pool %q: sentinel_service %q, kubernetes_service %q, want a sentinel_service and kubernetes_service %q",
			pool.Name, pool.SentinelService, pool.KubernetesService, s.redisSvc.Name)
	}

	var sentinelSvc corev1.Service
	var sentinels appsv1.Deployment
	decode(t, find(t, objs, "Service", pool.SentinelService), &sentinelSvc)
	decode(t, find(t, objs, "Deployment", "sentinel"), &sentinels)
	sentinelPod := labels.Set(sentinels.Spec.Template.Labels)
	if !labels.SelectorFromSet(sentinelSvc.Spec.Selector).Matches(sentinelPod) || len(sentinelSvc.Spec.Selector) == 0 {
		t.Errorf("Service %s selects %v, not the Sentinel pods %v", sentinelSvc.Name, sentinelSvc.Spec.Selector, sentinelPod)
	}
	sc := container(t, &sentinels.Spec.Template.Spec, "sentinel")
	named := false
	for _, p := range sentinelSvc.Spec.Ports {
		if p.Name == "sentinel" {
			named = true
			if containerPort(t, sc, p.TargetPort) != 26379 {
				t.Errorf("Service %s port sentinel targets %v, want the Sentinels' 26379", sentinelSvc.Name, p.TargetPort)
			}
		}
	}
	if !named {
		t.Errorf("Service %s has no port named sentinel, which shardproxy takes the Sentinels' port from", sentinelSvc.Name)
	}
	if r := sentinels.Spec.Replicas; r == nil || *r < 3 {
		t.Errorf("Sentinel replicas = %v, want at least 3 for a majority that survives one", r)
	}
	checkRestricted(t, &sentinels.Spec.Template.Spec)
	var groups []string
	for _, e := range sc.Env {
		if e.Name == "SENTINEL_GROUPS" {
			groups = strings.Fields(e.Value)
		}
	}

	for _, srv := range pool.Servers {
		master := pool.SentinelMaster(srv.Name)
		if !slices.Contains(groups, master) {
			t.Errorf("server %s: the Sentinels do not monitor %q (SENTINEL_GROUPS %v)", srv.Name, master, groups)
		}
		s.checkGroup(t, objs, sentinelDir, master, srv)
	}
	if len(groups) != len(pool.Servers) {
		t.Errorf("the Sentinels monitor %v, the pool has %d groups", groups, len(pool.Servers))
	}
}
