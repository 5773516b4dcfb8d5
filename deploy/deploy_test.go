package deploy_test

// These tests render every kustomization under deploy/ in process, with the
// kustomize library kubectl embeds, and check what the manifests promise:
// the objects each one makes, the least RBAC that discovery needs, a proxy
// pod that runs as a numeric non-root user on a read-only root, probes on
// the stats port, a drain before SIGTERM, a config directory that follows
// ConfigMap edits, and a nutcracker.yml that shardproxy parses and whose
// servers are the StatefulSet's pods. A real API server's dry run is the
// end-to-end test's job; here every object is decoded strictly into its
// client-go type, so a misspelt or misplaced field fails already.

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// The kustomizations, relative to this directory.
const (
	baseDir       = "base"
	productionDir = "overlays/production"
	benchDir      = "bench"
)

// object is one rendered object.
type object struct {
	Kind, Name, Namespace string
	YAML                  []byte
}

func (o object) key() string { return o.Kind + "/" + o.Name }

// render runs the kustomization in dir as `kubectl kustomize dir` does,
// with the default options (files only from inside the kustomization's
// root, builtin plugins only).
func render(t *testing.T, dir string) []object {
	t.Helper()
	objs, _ := renderYAML(t, dir)
	return objs
}

// renderYAML is render, also returning the whole stream as kustomize
// prints it.
func renderYAML(t *testing.T, dir string) ([]object, []byte) {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("kustomize build %s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
		objs = append(objs, object{Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace(), YAML: y})
	}
	all, err := m.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return objs, all
}

// find returns the object with that kind and name.
func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			return o
		}
	}
	t.Fatalf("no %s/%s among the rendered objects", kind, name)
	return object{}
}

// decode decodes o strictly into out: an unknown or duplicated field is an
// error, as it is for `kubectl apply --validate=strict`.
func decode(t *testing.T, o object, out any) {
	t.Helper()
	if err := k8syaml.UnmarshalStrict(o.YAML, out); err != nil {
		t.Fatalf("%s: %v\n%s", o.key(), err, o.YAML)
	}
}

// typed returns an empty value of the client-go type of each kind the
// kustomizations may make.
var typed = map[string]func() any{
	"Namespace":           func() any { return new(corev1.Namespace) },
	"ConfigMap":           func() any { return new(corev1.ConfigMap) },
	"Secret":              func() any { return new(corev1.Secret) },
	"Service":             func() any { return new(corev1.Service) },
	"ServiceAccount":      func() any { return new(corev1.ServiceAccount) },
	"Role":                func() any { return new(rbacv1.Role) },
	"RoleBinding":         func() any { return new(rbacv1.RoleBinding) },
	"Deployment":          func() any { return new(appsv1.Deployment) },
	"StatefulSet":         func() any { return new(appsv1.StatefulSet) },
	"PodDisruptionBudget": func() any { return new(policyv1.PodDisruptionBudget) },
	"Job":                 func() any { return new(batchv1.Job) },
	// The Prometheus Operator's, in monitoring_test.go.
	"PodMonitor":     func() any { return new(podMonitor) },
	"PrometheusRule": func() any { return new(prometheusRule) },
}

// baseObjects are the objects deploy/base makes.
var baseObjects = []string{
	"ConfigMap/shardproxy-config",
	"Deployment/shardproxy",
	"PodDisruptionBudget/redis",
	"PodDisruptionBudget/shardproxy",
	"Role/shardproxy-endpointslices",
	"RoleBinding/shardproxy-endpointslices",
	"Secret/redis-auth",
	"Service/redis",
	"Service/svc-proxy",
	"ServiceAccount/shardproxy",
	"StatefulSet/redis",
}

func TestRender(t *testing.T) {
	production := slices.DeleteFunc(slices.Clone(baseObjects), func(k string) bool {
		return k == "Secret/redis-auth" // created outside the repository
	})
	production = append(production, "Namespace/shardproxy-production",
		// The monitoring component.
		"PodMonitor/shardproxy", "PrometheusRule/shardproxy", "ConfigMap/shardproxy-dashboard")
	tests := []struct {
		dir       string
		want      []string
		namespace string // of every namespaced object; "" leaves it to kubectl -n
	}{
		{baseDir, baseObjects, ""},
		{productionDir, production, "shardproxy-production"},
		{benchDir, []string{"Job/loadgen"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, tc.dir)
			var got []string
			for _, o := range objs {
				got = append(got, o.key())
				newObj, ok := typed[o.Kind]
				if !ok {
					t.Errorf("%s: unexpected kind", o.key())
					continue
				}
				decode(t, o, newObj())
				ns := tc.namespace
				if o.Kind == "Namespace" {
					ns = ""
				}
				if o.Namespace != ns {
					t.Errorf("%s: namespace %q, want %q", o.key(), o.Namespace, ns)
				}
				var meta struct {
					Metadata metav1.ObjectMeta `json:"metadata"`
				}
				decodeLoose(t, o, &meta)
				if o.Kind != "Namespace" && meta.Metadata.Labels["app.kubernetes.io/part-of"] != "shardproxy" {
					t.Errorf("%s: labels %v, want app.kubernetes.io/part-of=shardproxy", o.key(), meta.Metadata.Labels)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("objects = %v, want %v", got, want)
			}
		})
	}
}

// decodeLoose decodes o into out, ignoring fields out does not have.
func decodeLoose(t *testing.T, o object, out any) {
	t.Helper()
	if err := k8syaml.Unmarshal(o.YAML, out); err != nil {
		t.Fatalf("%s: %v", o.key(), err)
	}
}

// stack is what base and its overlays deploy: shardproxy in front of a
// Redis StatefulSet.
type stack struct {
	configMap  corev1.ConfigMap
	deployment appsv1.Deployment
	proxySvc   corev1.Service
	proxyPDB   policyv1.PodDisruptionBudget
	account    corev1.ServiceAccount
	role       rbacv1.Role
	binding    rbacv1.RoleBinding
	redis      appsv1.StatefulSet
	redisSvc   corev1.Service
	redisPDB   policyv1.PodDisruptionBudget
}

func loadStack(t *testing.T, dir string) *stack {
	t.Helper()
	objs := render(t, dir)
	s := new(stack)
	decode(t, find(t, objs, "ConfigMap", "shardproxy-config"), &s.configMap)
	decode(t, find(t, objs, "Deployment", "shardproxy"), &s.deployment)
	decode(t, find(t, objs, "Service", "svc-proxy"), &s.proxySvc)
	decode(t, find(t, objs, "PodDisruptionBudget", "shardproxy"), &s.proxyPDB)
	decode(t, find(t, objs, "ServiceAccount", "shardproxy"), &s.account)
	decode(t, find(t, objs, "Role", "shardproxy-endpointslices"), &s.role)
	decode(t, find(t, objs, "RoleBinding", "shardproxy-endpointslices"), &s.binding)
	decode(t, find(t, objs, "StatefulSet", "redis"), &s.redis)
	decode(t, find(t, objs, "Service", "redis"), &s.redisSvc)
	decode(t, find(t, objs, "PodDisruptionBudget", "redis"), &s.redisPDB)
	return s
}

// proxyContainer returns the shardproxy container of the Deployment.
func (s *stack) proxyContainer(t *testing.T) *corev1.Container {
	t.Helper()
	return container(t, &s.deployment.Spec.Template.Spec, "shardproxy")
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// flagValue returns the value of a "-name value" or "--name value" argument.
func flagValue(t *testing.T, args []string, names ...string) string {
	t.Helper()
	for i, a := range args {
		if slices.Contains(names, a) && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatalf("args %q: no %s", args, strings.Join(names, " or "))
	return ""
}

// containerPort resolves a port given by number or by name to a number.
func containerPort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %q has no port named %q", c.Name, p.StrVal)
	return 0
}

func TestStack(t *testing.T) {
	for _, dir := range []string{baseDir, productionDir} {
		t.Run(dir, func(t *testing.T) {
			s := loadStack(t, dir)
			t.Run("rbac", s.checkRBAC)
			t.Run("proxy-security", s.checkProxySecurity)
			t.Run("proxy-probes", s.checkProxyProbes)
			t.Run("proxy-shutdown", s.checkProxyShutdown)
			t.Run("proxy-config", s.checkProxyConfig)
			t.Run("services", s.checkServices)
			t.Run("servers", s.checkServers)
			t.Run("disruption-budgets", s.checkPDBs)
			t.Run("restricted", func(t *testing.T) {
				checkRestricted(t, &s.deployment.Spec.Template.Spec)
				checkRestricted(t, &s.redis.Spec.Template.Spec)
			})
		})
	}
}

// Discovery may read EndpointSlices and nothing else.
func (s *stack) checkRBAC(t *testing.T) {
	want := []rbacv1.PolicyRule{{
		APIGroups: []string{"discovery.k8s.io"},
		Resources: []string{"endpointslices"},
		Verbs:     []string{"get", "list", "watch"},
	}}
	if !reflect.DeepEqual(s.role.Rules, want) {
		t.Errorf("Role %s rules = %+v, want %+v", s.role.Name, s.role.Rules, want)
	}
	ref := s.binding.RoleRef
	if ref.APIGroup != rbacv1.GroupName || ref.Kind != "Role" || ref.Name != s.role.Name {
		t.Errorf("RoleBinding roleRef = %+v, want Role %s", ref, s.role.Name)
	}
	if len(s.binding.Subjects) != 1 {
		t.Fatalf("RoleBinding subjects = %+v, want one", s.binding.Subjects)
	}
	sub := s.binding.Subjects[0]
	// An empty namespace is the RoleBinding's own.
	if sub.Kind != rbacv1.ServiceAccountKind || sub.Name != s.account.Name ||
		sub.Namespace != "" && sub.Namespace != s.binding.Namespace {
		t.Errorf("RoleBinding subject = %+v, want ServiceAccount %s of namespace %q", sub, s.account.Name, s.binding.Namespace)
	}
	if got := s.deployment.Spec.Template.Spec.ServiceAccountName; got != s.account.Name {
		t.Errorf("Deployment serviceAccountName = %q, want %q", got, s.account.Name)
	}
	if a := s.deployment.Spec.Template.Spec.AutomountServiceAccountToken; a != nil && !*a {
		t.Error("Deployment automountServiceAccountToken is false: the in-cluster config needs the token")
	}
}

// The proxy runs as a numeric non-root user, which the kubelet can check
// without reading the image, on a read-only root with no privileges; the
// user is the image's.
func (s *stack) checkProxySecurity(t *testing.T) {
	pod := s.deployment.Spec.Template.Spec.SecurityContext
	c := s.proxyContainer(t)
	sc := c.SecurityContext
	if pod == nil || sc == nil {
		t.Fatal("Deployment: pod or container securityContext missing")
	}
	runAsNonRoot := firstNonNil(sc.RunAsNonRoot, pod.RunAsNonRoot)
	if runAsNonRoot == nil || !*runAsNonRoot {
		t.Error("runAsNonRoot is not true")
	}
	user := firstNonNil(sc.RunAsUser, pod.RunAsUser)
	if user == nil || *user == 0 {
		t.Fatalf("runAsUser = %v, want a numeric non-root user", user)
	}
	if want := dockerfileUser(t); *user != want {
		t.Errorf("runAsUser = %d, want %d, the Dockerfile's USER", *user, want)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities = %+v, want drop ALL and add nothing", sc.Capabilities)
	}
	seccomp := firstNonNil(sc.SeccompProfile, pod.SeccompProfile)
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile = %+v, want RuntimeDefault", seccomp)
	}
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := r.Requests[name]; !ok {
			t.Errorf("no %s request", name)
		}
	}
	if _, ok := r.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
}

func firstNonNil[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// dockerfileUser returns the numeric user of the Dockerfile's final USER.
func dockerfileUser(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER\s+(\d+)(:\d+)?\s*$`).FindAllSubmatch(data, -1)
	if len(m) == 0 {
		t.Fatal("Dockerfile: no numeric USER")
	}
	uid, err := strconv.ParseInt(string(m[len(m)-1][1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// Startup, readiness and liveness are asked over HTTP on the stats port
// that -s opens.
func (s *stack) checkProxyProbes(t *testing.T) {
	c := s.proxyContainer(t)
	stats, err := strconv.Atoi(flagValue(t, c.Args, "-s", "--stats-port"))
	if err != nil {
		t.Fatal(err)
	}
	if stats != 22222 {
		t.Errorf("stats port (-s) = %d, want 22222", stats)
	}
	tests := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	}
	for _, tc := range tests {
		if tc.probe == nil || tc.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP GET of %s", tc.name, tc.path)
			continue
		}
		g := tc.probe.HTTPGet
		if g.Path != tc.path {
			t.Errorf("%s path = %q, want %q", tc.name, g.Path, tc.path)
		}
		if p := containerPort(t, c, g.Port); int(p) != stats {
			t.Errorf("%s port = %d, want %d", tc.name, p, stats)
		}
	}
	ann := s.deployment.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(stats) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations = %v, want prometheus.io scrape of :%d/metrics", ann, stats)
	}
}

// On deletion the pod keeps serving while it leaves the Service's
// endpoints, then drains for --shutdown-grace, all within the grace period.
func (s *stack) checkProxyShutdown(t *testing.T) {
	spec := s.deployment.Spec.Template.Spec
	c := s.proxyContainer(t)
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		// The distroless image has no shell, so an exec of sleep would fail.
		t.Fatalf("preStop = %+v, want a sleep action", c.Lifecycle)
	}
	if c.Lifecycle.PreStop.Exec != nil {
		t.Error("preStop runs a command: the distroless image has none to run")
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop <= 0 {
		t.Errorf("preStop sleeps %v", preStop)
	}
	grace, err := time.ParseDuration(flagValue(t, c.Args, "--shutdown-grace"))
	if err != nil {
		t.Fatal(err)
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if period := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; period <= preStop+grace {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than preStop %v + --shutdown-grace %v", period, preStop, grace)
	}
	st := s.deployment.Spec.Strategy
	if st.RollingUpdate == nil || st.RollingUpdate.MaxUnavailable == nil || st.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy = %+v, want rolling update with maxUnavailable 0", st)
	}
}

// The ConfigMap is mounted as the directory that -c names, without subPath
// (a subPath mount never sees an update), under a fixed name (a hash suffix
// would replace the ConfigMap on every edit instead of updating it).
func (s *stack) checkProxyConfig(t *testing.T) {
	spec := s.deployment.Spec.Template.Spec
	c := s.proxyContainer(t)
	conf := flagValue(t, c.Args, "-c", "--conf-file")
	if s.configMap.Name != "shardproxy-config" {
		t.Errorf("ConfigMap name = %q, want shardproxy-config without a hash suffix", s.configMap.Name)
	}
	if _, ok := s.configMap.Data[path.Base(conf)]; !ok {
		t.Errorf("ConfigMap %s has no key %q", s.configMap.Name, path.Base(conf))
	}
	var volume string
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == s.configMap.Name {
			volume = v.Name
			if len(v.ConfigMap.Items) > 0 {
				t.Errorf("volume %s lists items %v: keys added later would not appear", v.Name, v.ConfigMap.Items)
			}
		}
	}
	if volume == "" {
		t.Fatalf("no volume of ConfigMap %s", s.configMap.Name)
	}
	var mounts int
	for _, m := range c.VolumeMounts {
		if m.Name != volume {
			continue
		}
		mounts++
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("mount %s uses subPath %q or subPathExpr %q: it would never see an update", m.Name, m.SubPath, m.SubPathExpr)
		}
		if m.MountPath != path.Dir(conf) {
			t.Errorf("mount %s at %q, want %q, the directory of -c %s", m.Name, m.MountPath, path.Dir(conf), conf)
		}
	}
	if mounts != 1 {
		t.Errorf("volume %s is mounted %d times, want once", volume, mounts)
	}
}

// svc-proxy serves clients and stats; the headless redis Service publishes
// every shard pod, ready or not, for discovery.
func (s *stack) checkServices(t *testing.T) {
	c := s.proxyContainer(t)
	ports := map[int32]int32{}
	for _, p := range s.proxySvc.Spec.Ports {
		ports[p.Port] = containerPort(t, c, p.TargetPort)
	}
	if want := map[int32]int32{22121: 22121, 22222: 22222}; !reflect.DeepEqual(ports, want) {
		t.Errorf("Service %s ports (port: container port) = %v, want %v", s.proxySvc.Name, ports, want)
	}
	proxyPods := labels.Set(s.deployment.Spec.Template.Labels)
	redisPods := labels.Set(s.redis.Spec.Template.Labels)
	sel := labels.SelectorFromSet(s.proxySvc.Spec.Selector)
	if len(s.proxySvc.Spec.Selector) == 0 || !sel.Matches(proxyPods) || sel.Matches(redisPods) {
		t.Errorf("Service %s selector %v must match the proxy pods %v and not the redis pods %v", s.proxySvc.Name, sel, proxyPods, redisPods)
	}

	r := s.redisSvc.Spec
	if r.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s clusterIP = %q, want None (headless)", s.redisSvc.Name, r.ClusterIP)
	}
	if !r.PublishNotReadyAddresses {
		t.Errorf("Service %s publishNotReadyAddresses is false: shardproxy would lose sight of not-ready shards", s.redisSvc.Name)
	}
	if len(r.Ports) != 1 || r.Ports[0].Name != "redis" || r.Ports[0].Port != 6379 {
		t.Errorf("Service %s ports = %+v, want 6379 named redis", s.redisSvc.Name, r.Ports)
	}
	sel = labels.SelectorFromSet(r.Selector)
	if len(r.Selector) == 0 || !sel.Matches(redisPods) || sel.Matches(proxyPods) {
		t.Errorf("Service %s selector %v must match the redis pods %v and not the proxy pods %v", s.redisSvc.Name, sel, redisPods, proxyPods)
	}
	if s.redis.Spec.ServiceName != s.redisSvc.Name {
		t.Errorf("StatefulSet serviceName = %q, want %q", s.redis.Spec.ServiceName, s.redisSvc.Name)
	}
	for _, w := range []struct {
		name string
		sel  *metav1.LabelSelector
		pods labels.Set
	}{
		{"Deployment " + s.deployment.Name, s.deployment.Spec.Selector, proxyPods},
		{"StatefulSet " + s.redis.Name, s.redis.Spec.Selector, redisPods},
	} {
		if !selects(t, w.sel, w.pods) {
			t.Errorf("%s selector %v does not match its pod labels %v", w.name, w.sel, w.pods)
		}
	}
}

func selects(t *testing.T, ls *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatal(err)
	}
	return !sel.Empty() && sel.Matches(set)
}

// The nutcracker.yml in the ConfigMap is one shardproxy parses, with its
// password from the Secret-backed environment, and it lists exactly the
// StatefulSet's pods, by pod name, behind the headless Service.
func (s *stack) checkServers(t *testing.T) {
	c := s.proxyContainer(t)
	data := []byte(s.configMap.Data[path.Base(flagValue(t, c.Args, "-c", "--conf-file"))])

	// Which variable holds the password, and is it set from a Secret in
	// both the proxy and Redis?
	var pool map[string]map[string]any
	if err := yaml.Unmarshal(data, &pool); err != nil {
		t.Fatal(err)
	}
	if len(pool) != 1 {
		t.Fatalf("nutcracker.yml has %d pools, want 1", len(pool))
	}
	var settings map[string]any
	for _, settings = range pool { // the only one
		break
	}
	env, _ := settings["redis_auth_env"].(string)
	if env == "" {
		t.Fatalf("pool settings %v: no redis_auth_env; the password must not be in the ConfigMap", settings)
	}
	if _, ok := settings["redis_auth"]; ok {
		t.Error("redis_auth puts the password in the ConfigMap; use redis_auth_env")
	}
	proxyRef := secretEnv(t, c, env)
	redisRef := secretEnv(t, container(t, &s.redis.Spec.Template.Spec, "redis"), "REDIS_PASSWORD")
	if proxyRef.Name != redisRef.Name || proxyRef.Key != redisRef.Key {
		t.Errorf("proxy password from %s/%s, Redis password from %s/%s", proxyRef.Name, proxyRef.Key, redisRef.Name, redisRef.Key)
	}

	const password = "deploy-test-password"
	t.Setenv(env, password)
	cfg := parseConfig(t, data)
	if len(cfg.Pools) != 1 {
		t.Fatalf("ParseConfig: %d pools, want 1", len(cfg.Pools))
	}
	p := cfg.Pools[0]
	if p.KubernetesService != s.redisSvc.Name || p.KubernetesNamespace != "" {
		t.Errorf("pool %q: kubernetes_service %q, kubernetes_namespace %q; want %q, the headless Service, in the proxy's namespace",
			p.Name, p.KubernetesService, p.KubernetesNamespace, s.redisSvc.Name)
	}
	if p.RedisAuth != password {
		t.Errorf("pool %q: password %q, want %q from $%s", p.Name, p.RedisAuth, password, env)
	}
	_, port, _ := strings.Cut(p.ListenAddr, ":")
	if port != "22121" || !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == 22121 }) {
		t.Errorf("pool %q listens on %q, want port 22121, a container port", p.Name, p.ListenAddr)
	}

	replicas := int32(1)
	if s.redis.Spec.Replicas != nil {
		replicas = *s.redis.Spec.Replicas
	}
	if len(p.Servers) != int(replicas) {
		t.Errorf("pool %q has %d servers, the StatefulSet %d replicas", p.Name, len(p.Servers), replicas)
	}
	if len(s.redisSvc.Spec.Ports) != 1 {
		t.Fatalf("Service %s ports = %+v, want one", s.redisSvc.Name, s.redisSvc.Spec.Ports)
	}
	seen := map[string]bool{}
	for _, srv := range p.Servers {
		if seen[srv.Pod] {
			t.Errorf("pool %q: two servers on pod %q", p.Name, srv.Pod)
		}
		seen[srv.Pod] = true
		if srv.Port != int(s.redisSvc.Spec.Ports[0].Port) {
			t.Errorf("pool %q: server %s on port %d, want the redis port %d", p.Name, srv.Name, srv.Port, s.redisSvc.Spec.Ports[0].Port)
		}
	}
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", s.redis.Name, i)
		if !seen[pod] {
			t.Errorf("pool %q has no server on pod %s", p.Name, pod)
		}
		delete(seen, pod)
	}
	for pod := range seen {
		t.Errorf("pool %q has a server on %q, not a pod of StatefulSet %s", p.Name, pod, s.redis.Name)
	}
}

// secretEnv returns the Secret key the container's variable name comes
// from.
func secretEnv(t *testing.T, c *corev1.Container, name string) *corev1.SecretKeySelector {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Fatalf("container %s: $%s is not from a Secret", c.Name, name)
		}
		return e.ValueFrom.SecretKeyRef
	}
	t.Fatalf("container %s: no $%s", c.Name, name)
	return nil
}

// parseConfig parses a nutcracker.yml as shardproxy does.
func parseConfig(t *testing.T, data []byte) *config.Config {
	t.Helper()
	cfg, err := config.Parse(data)
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, data)
	}
	return cfg
}

// Each budget covers its pods and lets a node drain proceed.
func (s *stack) checkPDBs(t *testing.T) {
	for _, b := range []struct {
		pdb      *policyv1.PodDisruptionBudget
		pods     labels.Set
		replicas *int32
	}{
		{&s.proxyPDB, s.deployment.Spec.Template.Labels, s.deployment.Spec.Replicas},
		{&s.redisPDB, s.redis.Spec.Template.Labels, s.redis.Spec.Replicas},
	} {
		spec := b.pdb.Spec
		if !selects(t, spec.Selector, b.pods) {
			t.Errorf("PodDisruptionBudget %s selector %v does not match pods %v", b.pdb.Name, spec.Selector, b.pods)
		}
		replicas := 1
		if b.replicas != nil {
			replicas = int(*b.replicas)
		}
		switch {
		case (spec.MinAvailable == nil) == (spec.MaxUnavailable == nil):
			t.Errorf("PodDisruptionBudget %s: want one of minAvailable and maxUnavailable", b.pdb.Name)
		case spec.MinAvailable != nil && (spec.MinAvailable.Type != intstr.Int || spec.MinAvailable.IntValue() >= replicas):
			t.Errorf("PodDisruptionBudget %s: minAvailable %v with %d replicas blocks every eviction", b.pdb.Name, spec.MinAvailable, replicas)
		case spec.MaxUnavailable != nil && (spec.MaxUnavailable.Type != intstr.Int || spec.MaxUnavailable.IntValue() < 1):
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %v blocks every eviction", b.pdb.Name, spec.MaxUnavailable)
		}
	}
}

// checkRestricted checks the pod against the "restricted" Pod Security
// Standard, which the production namespace enforces: non-root, no
// privilege escalation, no capabilities but NET_BIND_SERVICE, a
// RuntimeDefault or Localhost seccomp profile, only the volume types it
// allows, and nothing of the host.
func checkRestricted(t *testing.T, spec *corev1.PodSpec) {
	t.Helper()
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("pod shares a host namespace")
	}
	for _, v := range spec.Volumes {
		s := v.VolumeSource
		if s.ConfigMap == nil && s.Secret == nil && s.EmptyDir == nil && s.PersistentVolumeClaim == nil &&
			s.Projected == nil && s.DownwardAPI == nil && s.CSI == nil && s.Ephemeral == nil {
			t.Errorf("volume %s: a type the restricted standard forbids", v.Name)
		}
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if v := firstNonNil(sc.RunAsNonRoot, pod.RunAsNonRoot); v == nil || !*v {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if v := firstNonNil(sc.RunAsUser, pod.RunAsUser); v != nil && *v == 0 {
			t.Errorf("container %s: runAsUser 0", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: capabilities do not drop ALL", c.Name)
		} else if slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
			t.Errorf("container %s: adds capabilities %v", c.Name, sc.Capabilities.Add)
		}
		if p := firstNonNil(sc.SeccompProfile, pod.SeccompProfile); p == nil ||
			p.Type != corev1.SeccompProfileTypeRuntimeDefault && p.Type != corev1.SeccompProfileTypeLocalhost {
			t.Errorf("container %s: seccompProfile %+v, want RuntimeDefault", c.Name, p)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("container %s: hostPort %d", c.Name, p.HostPort)
			}
		}
	}
}

// The bench Job runs loadgen from the proxy's image against svc-proxy with
// the namespace's password, once, as a non-root user.
func TestBench(t *testing.T) {
	var job batchv1.Job
	decode(t, find(t, render(t, benchDir), "Job", "loadgen"), &job)
	base := loadStack(t, baseDir)
	spec := job.Spec.Template.Spec
	c := container(t, &spec, "loadgen")

	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 {
		t.Errorf("backoffLimit = %v, want 0", job.Spec.BackoffLimit)
	}
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %q, want Never", spec.RestartPolicy)
	}
	if want := base.proxyContainer(t).Image; c.Image != want {
		t.Errorf("image = %q, want the proxy's %q", c.Image, want)
	}
	if !slices.Equal(c.Command, []string{"/usr/local/bin/loadgen"}) {
		t.Errorf("command = %q, want /usr/local/bin/loadgen", c.Command)
	}
	want := []string{"--addr", "svc-proxy:22121", "--password", "$(REDIS_PASSWORD)",
		"--connections", "50", "--pipeline", "16", "--duration", "60s", "--json"}
	if !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	host, port, _ := strings.Cut(flagValue(t, c.Args, "--addr"), ":")
	if host != base.proxySvc.Name || !slices.ContainsFunc(base.proxySvc.Spec.Ports, func(p corev1.ServicePort) bool {
		return strconv.Itoa(int(p.Port)) == port
	}) {
		t.Errorf("--addr %s:%s is not a port of Service %s", host, port, base.proxySvc.Name)
	}
	ref := secretEnv(t, c, "REDIS_PASSWORD")
	proxyRef := secretEnv(t, base.proxyContainer(t), "REDIS_PASSWORD")
	if *ref != *proxyRef {
		t.Errorf("password from %+v, the proxy's from %+v", *ref, *proxyRef)
	}
	checkRestricted(t, &spec)
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
}

// Every nutcracker.yml shown in README.md parses.
func TestREADMEConfigs(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllSubmatch(data, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no yaml block")
	}
	t.Setenv("REDIS_PASSWORD", "deploy-test-password")
	for i, b := range blocks {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			cfg := parseConfig(t, b[1])
			for _, p := range cfg.Pools {
				for _, s := range p.Servers {
					if p.KubernetesService != "" && s.Pod == "" {
						t.Errorf("pool %q: server %s is not a pod", p.Name, s.Name)
					}
				}
			}
		})
	}
}
