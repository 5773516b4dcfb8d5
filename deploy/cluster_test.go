package deploy_test

import (
	"cmp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const clusterDir = "overlays/cluster"

// The cluster overlay: base's StatefulSet as cluster-enabled nodes that
// announce their pod names in the headless Service, and one redis_cluster
// pool whose seeds are that Service's pods on their redis port.
func TestClusterOverlay(t *testing.T) {
	objs := renderStrict(t, clusterDir, baseObjects)
	_, pool := loadGroupsStack(t, objs)
	s := loadStack(t, clusterDir)
	t.Run("services", s.checkServices)
	t.Run("disruption-budgets", s.checkPDBs)
	sts := s.redis
	if !pool.IsCluster() || pool.KubernetesService != sts.Spec.ServiceName || !pool.KubernetesMembers {
		t.Fatalf("pool %q: redis_cluster %v, kubernetes_service %q, servers %v; want a redis_cluster pool seeded by the pods of Service %q",
			pool.Name, pool.IsCluster(), pool.KubernetesService, pool.Servers, sts.Spec.ServiceName)
	}
	spec := &sts.Spec.Template.Spec
	rc := container(t, spec, "redis")
	if port := containerPort(t, rc, s.redisSvc.Spec.Ports[0].TargetPort); int(port) != cmp.Or(pool.KubernetesPort, 6379) {
		t.Errorf("kubernetes_port %d, the pods' redis port %d", pool.KubernetesPort, port)
	}
	if r := sts.Spec.Replicas; r == nil || *r < 6 {
		t.Errorf("StatefulSet redis: replicas %v, want six nodes: three masters and a replica each", r)
	}
	for _, flag := range [][2]string{
		{"--cluster-enabled", "yes"},
		{"--cluster-config-file", "/data/nodes.conf"},
		{"--cluster-announce-hostname", "$(POD_NAME)." + s.redisSvc.Name},
		{"--cluster-preferred-endpoint-type", "hostname"},
		{"--masterauth", "$(REDIS_PASSWORD)"},
	} {
		if got := flagValue(t, rc.Args, flag[0]); got != flag[1] {
			t.Errorf("redis %s %q, want %q", flag[0], got, flag[1])
		}
	}
	var podName bool
	for _, e := range rc.Env {
		podName = podName || e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}
	if !podName {
		t.Errorf("redis env %v: no POD_NAME from metadata.name for --cluster-announce-hostname", rc.Env)
	}
	if dir := flagValue(t, rc.Args, "--dir"); !slices.ContainsFunc(rc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir }) ||
		!strings.HasPrefix(flagValue(t, rc.Args, "--cluster-config-file"), dir+"/") {
		t.Errorf("nodes.conf is not on the volume mounted at --dir %s: a pod that comes back would be a new node", dir)
	}
	checkRestricted(t, spec)
}
