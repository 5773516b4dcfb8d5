package kubetest_test

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// TestBuild builds the control plane if it is not cached yet; make runs it
// first, with a long -timeout, so that the other tests find the binaries.
func TestBuild(t *testing.T) {
	p := kubetest.Binaries(t)
	for _, tc := range []struct {
		bin, want string
	}{
		{p.Etcd, "etcd Version: " + strings.TrimPrefix(kubetest.EtcdVersion, "v")},
		{p.KubeAPIServer, "Kubernetes " + kubetest.KubernetesVersion},
		{p.KubeControllerManager, "Kubernetes " + kubetest.KubernetesVersion},
	} {
		out, err := exec.Command(tc.bin, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s --version = %q, %v; want %q in it", tc.bin, out, err, tc.want)
		}
	}
}

const (
	namespace = "shard"
	node      = "node-a"
	service   = "redis"
)

// manifests are what a shardproxy deployment looks like to the API server:
// the redis shards as a StatefulSet behind a headless Service, and an
// account that may watch their EndpointSlices and nothing else.
var manifests = []byte(`
apiVersion: v1
kind: Service
metadata:
  name: redis
  namespace: shard
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app: redis
  ports:
  - name: redis
    port: 6379
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: redis
  namespace: shard
spec:
  serviceName: redis
  replicas: 2
  selector:
    matchLabels:
      app: redis
  template:
    metadata:
      labels:
        app: redis
    spec:
      containers:
      - name: redis
        image: redis:7.0 # never pulled: the test plays the kubelet
        ports:
        - name: redis
          containerPort: 6379
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: shardproxy
  namespace: shard
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: shardproxy
  namespace: shard
rules:
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: shardproxy
  namespace: shard
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: shardproxy
subjects:
- kind: ServiceAccount
  name: shardproxy
  namespace: shard
`)

func TestControlPlane(t *testing.T) {
	start := time.Now()
	cp := kubetest.Start(t)
	cp.CreateNamespace(t, namespace)
	cp.CreateNode(t, node)

	dry := cp.ServerDryRun(t, manifests)
	if len(dry) != 5 {
		t.Fatalf("ServerDryRun returned %d objects, want 5", len(dry))
	}
	if _, err := cp.Client.CoreV1().Services(namespace).Get(t.Context(), service, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after ServerDryRun, get Service: %v, want NotFound", err)
	}
	// A typo is an error, not a field the server drops.
	typo := strings.Replace(string(manifests), "replicas: 2", "replica: 2", 1)
	if _, err := kubetest.ServerDryRunErr(cp, t.Context(), []byte(typo)); err == nil || !strings.Contains(err.Error(), ".spec.replica: field not declared in schema") {
		t.Errorf("ServerDryRun with spec.replica: %v, want .spec.replica: field not declared in schema", err)
	}
	cp.Apply(t, manifests)

	var pods [2]*kubetest.Pod
	for i := range pods {
		pods[i] = cp.StartRedisPod(t, namespace, fmt.Sprintf("redis-%d", i), node)
	}
	if pods[0].IP == pods[1].IP {
		t.Fatalf("both pods have address %v", pods[0].IP)
	}
	waitReady(t, cp, map[netip.Addr]string{pods[0].IP: "redis-0", pods[1].IP: "redis-1"})

	for i, p := range pods {
		c := proxytest.Dial(t, p.Addr(kubetest.RedisPort))
		expect(t, c, "+PONG\r\n", "PING")
		expect(t, c, "+OK\r\n", "SET", "key", fmt.Sprint("value-", i))
	}

	// The ServiceAccount may watch EndpointSlices in its namespace, and the
	// API server refuses it anything else.
	sa := clientFor(t, cp.Kubeconfig(t, namespace, "shardproxy"))
	if list, err := sa.DiscoveryV1().EndpointSlices(namespace).List(t.Context(), metav1.ListOptions{}); err != nil || len(list.Items) == 0 {
		t.Errorf("as shardproxy: list EndpointSlices = %v, %v; want some", list, err)
	}
	if _, err := sa.CoreV1().Pods(namespace).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("as shardproxy: list pods: %v, want Forbidden", err)
	}
	if _, err := sa.DiscoveryV1().EndpointSlices("default").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("as shardproxy: list EndpointSlices in default: %v, want Forbidden", err)
	}

	old := pods[0]
	old.Delete(t)
	// Traffic to a deleted pod's address must not leave the machine.
	if c, err := net.DialTimeout("tcp", old.Addr(kubetest.RedisPort), 2*time.Second); !errors.Is(err, syscall.EHOSTUNREACH) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial deleted pod at %s: %v, want no route to host", old.Addr(kubetest.RedisPort), err)
	}

	back := cp.StartRedisPod(t, namespace, "redis-0", node)
	returned := time.Now()
	if back.IP == old.IP || back.IP == pods[1].IP || back.UID == old.UID || back.Dir != old.Dir {
		t.Errorf("redis-0 came back with IP %v UID %v Dir %s; had IP %v UID %v Dir %s (redis-1 has %v)",
			back.IP, back.UID, back.Dir, old.IP, old.UID, old.Dir, pods[1].IP)
	}
	seen := cp.WaitEndpointReady(t, namespace, service, "redis-0", back.IP)
	t.Logf("the EndpointSlice listed redis-0 at %v %v after StartRedisPod returned", back.IP, seen.Sub(returned))
	waitReady(t, cp, map[netip.Addr]string{back.IP: "redis-0", pods[1].IP: "redis-1"})
	expect(t, proxytest.Dial(t, back.Addr(kubetest.RedisPort)), "$7\r\nvalue-0\r\n", "GET", "key")

	t.Logf("TestControlPlane took %v", time.Since(start).Round(time.Millisecond))
}

// waitReady waits until the Service's EndpointSlices list exactly want as
// ready addresses, with their pods.
func waitReady(t *testing.T, cp *kubetest.ControlPlane, want map[netip.Addr]string) {
	t.Helper()
	cp.WaitEndpointSlices(t, namespace, service, func(s []discoveryv1.EndpointSlice) bool {
		return maps.Equal(kubetest.ReadyAddresses(s), want)
	})
}

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func expect(t *testing.T, c *proxytest.Conn, raw string, args ...string) {
	t.Helper()
	rep, err := c.Do(args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if got := string(rep.Raw()); got != raw {
		t.Fatalf("%q = %q, want %q", args, got, raw)
	}
}
