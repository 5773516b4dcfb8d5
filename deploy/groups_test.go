package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shardproxy/shardproxy/proxy/config"
)

const groupsDir = "overlays/groups"

// The groups overlay: the groups of components/groups without Sentinel,
// and a nutcracker.yml whose groups are all the pods of their StatefulSets,
// where the ring is the Sentinel overlay's.
func TestGroupsOverlay(t *testing.T) {
	want := slices.DeleteFunc(slices.Clone(baseObjects), func(k string) bool { return k == "StatefulSet/redis" })
	want = append(want, "ConfigMap/redis-scripts", "StatefulSet/shard0", "StatefulSet/shard1", "StatefulSet/shard2")
	objs := renderStrict(t, groupsDir, want)
	s, pool := loadGroupsStack(t, objs)
	if !pool.HasRoleGroups() || pool.HasSentinels() || pool.KubernetesService != s.redisSvc.Name {
		t.Fatalf("pool %q: group_members %v, sentinel_service %q, kubernetes_service %q; want group_members, no Sentinels and kubernetes_service %q",
			pool.Name, pool.GroupMembers, pool.SentinelService, pool.KubernetesService, s.redisSvc.Name)
	}
	if pool.ReadFrom != config.ReadFromPreferReplica {
		t.Errorf("pool %q: read_from %q, want %q", pool.Name, pool.ReadFrom, config.ReadFromPreferReplica)
	}

	groups := map[string]string{} // StatefulSet -> its server
	for _, srv := range pool.Servers {
		var sets []string
		for _, m := range pool.GroupMembers[srv.Name] {
			if m.StatefulSet {
				sets = append(sets, m.Pod)
			}
		}
		if len(sets) != 1 {
			t.Errorf("server %s: members %v, want the pods of one StatefulSet (name-*)", srv.Name, pool.GroupMembers[srv.Name])
			continue
		}
		set := sets[0]
		if other, ok := groups[set]; ok {
			t.Errorf("servers %s and %s are both StatefulSet %s", other, srv.Name, set)
		}
		groups[set] = srv.Name
		sts := s.checkGroup(t, objs, groupsDir, set, srv)
		if sts.Spec.Replicas == nil {
			continue // checkGroup said so
		}
		// redis-start.sh asks pods 0 to GROUP_SIZE-1 for the master.
		var size []string
		for _, e := range container(t, &sts.Spec.Template.Spec, "redis").Env {
			if e.Name == "GROUP_SIZE" {
				size = append(size, e.Value)
			}
		}
		if want := strconv.Itoa(int(*sts.Spec.Replicas)); !slices.Equal(size, []string{want}) {
			t.Errorf("StatefulSet %s: GROUP_SIZE %q, want %s, its replicas", sts.Name, size, want)
		}
	}
	for _, o := range objs {
		if _, ok := groups[o.Name]; o.Kind == "StatefulSet" && !ok {
			t.Errorf("StatefulSet %s is no server's group", o.Name)
		}
	}

	// Moving between the Sentinel overlay and this one moves no key.
	_, sentinelPool := loadGroupsStack(t, render(t, sentinelDir))
	if ring, sentinelRing := ringOf(pool), ringOf(sentinelPool); ring != sentinelRing {
		t.Errorf("ring %s, the Sentinel overlay's %s", ring, sentinelRing)
	}
}

// ringOf is what places a pool's keys: its hashing and its servers' names
// and weights.
func ringOf(p *config.Pool) string {
	ring := []string{p.Hash, p.HashTag, p.Distribution}
	for _, s := range p.Servers {
		ring = append(ring, s.Name+":"+strconv.Itoa(s.Weight))
	}
	return strings.Join(ring, " ")
}

// renderStrict renders dir, decodes every object strictly into its
// client-go type, and checks that the objects are want.
func renderStrict(t *testing.T, dir string, want []string) []object {
	t.Helper()
	objs := render(t, dir)
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
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("objects = %v, want %v", got, want)
	}
	return objs
}

// loadGroupsStack decodes what an overlay of groups keeps of base (all but
// the StatefulSet redis), checks the proxy's RBAC and config mount, and
// parses its nutcracker.yml, which must have one pool.
func loadGroupsStack(t *testing.T, objs []object) (*stack, *config.Pool) {
	t.Helper()
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
	return s, &cfg.Pools[0]
}

// checkGroup checks the StatefulSet named set, server srv's group: behind
// the headless Service, which selects its pods, a master and at least one
// replica, pod 0 the server's address and the pods' redis port its port,
// the restricted standard, and a start script that is overlay dir's
// redis-start.sh. It returns the StatefulSet.
func (s *stack) checkGroup(t *testing.T, objs []object, dir, set string, srv config.Server) *appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	decode(t, find(t, objs, "StatefulSet", set), &sts)
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
	spec := &sts.Spec.Template.Spec
	rc := container(t, spec, "redis")
	if containerPort(t, rc, intstr.FromString("redis")) != int32(srv.Port) {
		t.Errorf("server %s: port %d, the pods' redis port is another", srv.Name, srv.Port)
	}
	checkRestricted(t, spec)

	// The component's pods run the script the overlay puts in its ConfigMap.
	const script = "/scripts/redis-start.sh"
	if !slices.Equal(rc.Command, []string{"sh", script}) {
		t.Fatalf("StatefulSet %s: command %q, want sh %s", sts.Name, rc.Command, script)
	}
	var volume string
	for _, m := range rc.VolumeMounts {
		if m.MountPath == path.Dir(script) {
			volume = m.Name
		}
	}
	var configMap corev1.ConfigMap
	for _, v := range spec.Volumes {
		if v.Name == volume && v.ConfigMap != nil {
			decode(t, find(t, objs, "ConfigMap", v.ConfigMap.Name), &configMap)
		}
	}
	want, err := os.ReadFile(filepath.Join(dir, path.Base(script)))
	if err != nil {
		t.Fatal(err)
	}
	if got := configMap.Data[path.Base(script)]; got != string(want) {
		t.Errorf("StatefulSet %s: %s from ConfigMap %q is not %s/%s:\n%s", sts.Name, script, configMap.Name, dir, path.Base(script), got)
	}
	return &sts
}
