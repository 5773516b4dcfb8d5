package deploy_test

import (
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const sentinelDir = "overlays/sentinel"

// The Sentinel overlay: a StatefulSet per group behind the headless
// Service redis, Sentinels behind the Service sentinel, and a
// nutcracker.yml that finds both through EndpointSlices, which the proxy's
// Role lets it read.
func TestSentinelOverlay(t *testing.T) {
	objs := render(t, sentinelDir)
	var got []string
	for _, o := range objs {
		got = append(got, o.key())
		newObj, ok := typed[o.Kind]
		if !ok {
			t.Errorf("%s: unexpected kind", o.key())
			continue
		}
		decode(t, o, newObj())
	}
	want := slices.DeleteFunc(slices.Clone(baseObjects), func(k string) bool { return k == "StatefulSet/redis" })
	want = append(want, "ConfigMap/redis-scripts", "Deployment/sentinel", "PodDisruptionBudget/sentinel",
		"Service/sentinel", "StatefulSet/shard0", "StatefulSet/shard1", "StatefulSet/shard2")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("objects = %v, want %v", got, want)
	}

	s := new(stack)
	decode(t, find(t, objs, "ConfigMap", "shardproxy-config"), &s.configMap)
	decode(t, find(t, objs, "Deployment", "shardproxy"), &s.deployment)
	decode(t, find(t, objs, "ServiceAccount", "shardproxy"), &s.account)
	decode(t, find(t, objs, "Role", "shardproxy-endpointslices"), &s.role)
	decode(t, find(t, objs, "RoleBinding", "shardproxy-endpointslices"), &s.binding)
	decode(t, find(t, objs, "Service", "redis"), &s.redisSvc)
	s.checkRBAC(t)
	s.checkProxyConfig(t)

	t.Setenv("REDIS_PASSWORD", "deploy-test-password")
	c := s.proxyContainer(t)
	cfg := parseConfig(t, []byte(s.configMap.Data[path.Base(flagValue(t, c.Args, "-c", "--conf-file"))]))
	if len(cfg.Pools) != 1 {
		t.Fatalf("pools = %d, want 1", len(cfg.Pools))
	}
	pool := cfg.Pools[0]
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
		var sts appsv1.StatefulSet
		decode(t, find(t, objs, "StatefulSet", master), &sts)
		if sts.Spec.ServiceName != s.redisSvc.Name {
			t.Errorf("StatefulSet %s: serviceName %q, want %q", sts.Name, sts.Spec.ServiceName, s.redisSvc.Name)
		}
		if r := sts.Spec.Replicas; r == nil || *r < 2 {
			t.Errorf("StatefulSet %s: replicas %v, want a master and at least one replica", sts.Name, r)
		}
		pod := labels.Set(sts.Spec.Template.Labels)
		if !selects(t, sts.Spec.Selector, pod) {
			t.Errorf("StatefulSet %s: selector %v does not select its pods %v", sts.Name, sts.Spec.Selector, pod)
		}
		if !labels.SelectorFromSet(s.redisSvc.Spec.Selector).Matches(pod) {
			t.Errorf("Service %s does not select the pods of StatefulSet %s", s.redisSvc.Name, sts.Name)
		}
		host, _, _ := strings.Cut(srv.Addr, ":")
		if want := sts.Name + "-0." + s.redisSvc.Name; host != want {
			t.Errorf("server %s: address %q, want pod 0 of its group, %s", srv.Name, srv.Addr, want)
		}
		rc := container(t, &sts.Spec.Template.Spec, "redis")
		if containerPort(t, rc, intstr.FromString("redis")) != int32(srv.Port) {
			t.Errorf("server %s: port %d, the pods' redis port is another", srv.Name, srv.Port)
		}
		checkRestricted(t, &sts.Spec.Template.Spec)
	}
	if len(groups) != len(pool.Servers) {
		t.Errorf("the Sentinels monitor %v, the pool has %d groups", groups, len(pool.Servers))
	}
}
