package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// StartTimeout bounds how long Start waits for each component to come up.
const StartTimeout = 60 * time.Second

// WaitTimeout bounds the waits of the pod and EndpointSlice helpers.
const WaitTimeout = 30 * time.Second

// ServiceCIDR is the kube-apiserver's --service-cluster-ip-range. Nothing
// routes it: no kube-proxy runs.
const ServiceCIDR = "198.19.0.0/24"

// ControlPlane is etcd, kube-apiserver and kube-controller-manager started by
// Start. The API server listens on loopback only.
type ControlPlane struct {
	// Client is an admin client (group system:masters).
	Client kubernetes.Interface
	// Config is the admin client's configuration, for other clients
	// (dynamic, discovery). Copy it with rest.CopyConfig before changing it.
	Config *rest.Config
	// AdminKubeconfig is the path of a kubeconfig file for the admin, with
	// insecure-skip-tls-verify and a bearer token; kubectl takes it too.
	AdminKubeconfig string
	Host            string // "https://127.0.0.1:port" of kube-apiserver
	EtcdURL         string // "http://127.0.0.1:port" of etcd's client listener
	Dir             string // data, certificates, kubeconfigs and logs, under t.TempDir()

	adminToken string

	mu    sync.Mutex // guards procs
	procs []*process
}

// Start starts etcd, kube-apiserver and kube-controller-manager (controllers
// statefulset, endpointslice and garbagecollector) on free loopback ports,
// waits until each answers its health check, and stops them in t's cleanup.
// It builds the binaries first if Binaries has not. When t fails, the tail
// of each component's log is logged.
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	bins := Binaries(t)
	started := time.Now()
	cp := &ControlPlane{Dir: t.TempDir()}
	t.Cleanup(cp.stop)
	t.Cleanup(func() {
		if t.Failed() {
			cp.dumpLogs(t)
		}
	})
	cp.adminToken = randomHex(t)
	if err := os.WriteFile(cp.path("tokens.csv"),
		[]byte(cp.adminToken+`,kubetest-admin,kubetest-admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	writeServiceAccountKey(t, cp.path("sa.key"))

	cp.startEtcd(t, bins.Etcd)
	cp.startAPIServer(t, bins.KubeAPIServer)
	cp.startControllerManager(t, bins.KubeControllerManager)
	t.Logf("kubetest: control plane at %s up in %v (logs in %s)", cp.Host, time.Since(started).Round(time.Millisecond), cp.Dir)
	return cp
}

func (cp *ControlPlane) path(name string) string { return filepath.Join(cp.Dir, name) }

// startComponent starts a component with its output in name.log, retrying
// when one of its free ports was taken between FreePort and bind. args
// returns the command line for new ports; ready reports whether it is up.
func (cp *ControlPlane) startComponent(t testing.TB, name, bin string, args func() []string, ready func() bool) {
	t.Helper()
	logPath := cp.path(name + ".log")
	for attempt := 1; ; attempt++ {
		before := readFile(logPath)
		cmd := exec.Command(bin, args()...)
		cmd.Dir = cp.Dir
		p, err := startProcess(name, cmd, logPath)
		if err != nil {
			t.Fatalf("kubetest: %v", err)
		}
		cp.mu.Lock()
		cp.procs = append(cp.procs, p)
		cp.mu.Unlock()
		err = p.WaitUntil(StartTimeout, ready)
		if err == nil {
			return
		}
		p.Kill()
		log := readFile(logPath)[len(before):]
		if attempt < 3 && strings.Contains(log, "address already in use") {
			continue
		}
		t.Fatalf("kubetest: %s: %v\n%s:\n%s", name, err, logPath, tail(log, 60))
	}
}

func (cp *ControlPlane) startEtcd(t testing.TB, bin string) {
	t.Helper()
	args := func() []string {
		client := fmt.Sprintf("http://127.0.0.1:%d", proxytest.FreePort(t))
		peer := fmt.Sprintf("http://127.0.0.1:%d", proxytest.FreePort(t))
		cp.EtcdURL = client
		return []string{
			"--name=kubetest",
			"--data-dir=" + cp.path("etcd"),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			"--unsafe-no-fsync", // the data lives as long as the test
		}
	}
	cp.startComponent(t, "etcd", bin, args, func() bool {
		body, code := get(nil, cp.EtcdURL+"/health", "")
		return code == http.StatusOK && strings.Contains(body, `"health":"true"`)
	})
}

func (cp *ControlPlane) startAPIServer(t testing.TB, bin string) {
	t.Helper()
	args := func() []string {
		port := proxytest.FreePort(t)
		cp.Host = fmt.Sprintf("https://127.0.0.1:%d", port)
		return []string{
			"--etcd-servers=" + cp.EtcdURL,
			// 127.0.0.1 is refused by the endpoint reconciler of the
			// "kubernetes" Service, which nothing here needs.
			"--advertise-address=127.0.0.1",
			"--endpoint-reconciler-type=none",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + cp.path("apiserver-certs"),
			"--token-auth-file=" + cp.path("tokens.csv"),
			"--authorization-mode=Node,RBAC",
			"--service-account-key-file=" + cp.path("sa.key"),
			"--service-account-signing-key-file=" + cp.path("sa.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=" + ServiceCIDR,
		}
	}
	cp.startComponent(t, "kube-apiserver", bin, args, func() bool {
		body, code := get(insecureClient, cp.Host+"/readyz", cp.adminToken)
		return code == http.StatusOK && body == "ok"
	})

	cp.Config = &rest.Config{
		Host:            cp.Host,
		BearerToken:     cp.adminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200,
		Burst:           400,
		UserAgent:       "kubetest",
	}
	client, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cp.Client = client
	cp.AdminKubeconfig = cp.path("admin.kubeconfig")
	writeKubeconfig(t, cp.AdminKubeconfig, cp.Host, "kubetest-admin", cp.adminToken, "")

	// The API server creates the namespace "default" shortly after it is
	// ready; objects without a namespace go there.
	cp.poll(t, "namespace default", func(ctx context.Context) (bool, error) {
		_, err := cp.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		return err == nil, ignoreNotFound(err)
	})
}

func (cp *ControlPlane) startControllerManager(t testing.TB, bin string) {
	t.Helper()
	var healthz string
	args := func() []string {
		port := proxytest.FreePort(t)
		healthz = fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
		return []string{
			"--kubeconfig=" + cp.AdminKubeconfig,
			"--authentication-kubeconfig=" + cp.AdminKubeconfig,
			"--authorization-kubeconfig=" + cp.AdminKubeconfig,
			"--controllers=statefulset,endpointslice,garbagecollector",
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + cp.path("controller-manager-certs"),
		}
	}
	cp.startComponent(t, "kube-controller-manager", bin, args, func() bool {
		body, code := get(insecureClient, healthz, "")
		return code == http.StatusOK && body == "ok"
	})
}

// stop kills the components, the last started first.
func (cp *ControlPlane) stop() {
	cp.mu.Lock()
	procs := cp.procs
	cp.procs = nil
	cp.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Kill() // no graceful shutdown: the data goes with the test
	}
}

func (cp *ControlPlane) dumpLogs(t testing.TB) {
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		p := cp.path(name + ".log")
		if log := readFile(p); log != "" {
			t.Logf("kubetest: %s:\n%s", p, tail(log, 40))
		}
	}
}

// Kubeconfig writes a kubeconfig file for the ServiceAccount serviceAccount
// in namespace, with a token from the TokenRequest API (valid for an hour)
// and namespace as its context's namespace, and returns its path. The API
// server checks that account's RBAC permissions on every request. The
// ServiceAccount is created if it does not exist.
func (cp *ControlPlane) Kubeconfig(t testing.TB, namespace, serviceAccount string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: namespace}}
	if _, err := cp.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create ServiceAccount %s/%s: %v", namespace, serviceAccount, err)
	}
	expiry := int64(time.Hour / time.Second)
	tr, err := cp.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: TokenRequest for %s/%s: %v", namespace, serviceAccount, err)
	}
	path := filepath.Join(t.TempDir(), namespace+"-"+serviceAccount+".kubeconfig")
	user := "system:serviceaccount:" + namespace + ":" + serviceAccount
	writeKubeconfig(t, path, cp.Host, user, tr.Status.Token, namespace)
	return path
}

// CreateNamespace creates the namespace name and its "default"
// ServiceAccount, which pods need to be admitted: no serviceaccount
// controller runs.
func (cp *ControlPlane) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: create Namespace %s: %v", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := cp.Client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: create ServiceAccount %s/default: %v", name, err)
	}
}

// CreateNode creates a Node called name with a Ready condition. The
// EndpointSlice controller skips pods bound to a node that does not exist.
func (cp *ControlPlane) CreateNode(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"},
	}}
	node, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create Node %s: %v", name, err)
	}
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "kubetest plays the kubelet",
		LastHeartbeatTime: now, LastTransitionTime: now,
	}}
	if _, err := cp.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubetest: update Node %s status: %v", name, err)
	}
}

// poll calls cond every 50 ms until it reports true or an error, failing t
// after WaitTimeout.
func (cp *ControlPlane) poll(t testing.TB, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			t.Fatalf("kubetest: waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubetest: waiting for %s: %v (last error: %v)", what, ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// insecureClient talks to the self-signed API server and controller
// manager. It never leaves loopback: the callers only pass 127.0.0.1 URLs.
var insecureClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
}

var plainClient = &http.Client{Timeout: 2 * time.Second}

// get returns the body and status code of a GET, or code 0 on an error.
func get(c *http.Client, url, token string) (string, int) {
	if c == nil {
		c = plainClient
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return string(body), resp.StatusCode
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeServiceAccountKey writes a new RSA private key in PEM form, which
// kube-apiserver uses both to sign and to verify ServiceAccount tokens.
func writeServiceAccountKey(t testing.TB, path string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

// writeKubeconfig writes a kubeconfig for server with a bearer token. The
// API server's certificate is self-signed, so TLS verification is off; the
// server is on loopback.
func writeKubeconfig(t testing.TB, path, server, user, token, namespace string) {
	t.Helper()
	ns := ""
	if namespace != "" {
		ns = "\n    namespace: " + strconv.Quote(namespace)
	}
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: %s
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: %s%s
current-context: kubetest
`, strconv.Quote(server), strconv.Quote(user), strconv.Quote(token), strconv.Quote(user), ns)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}
