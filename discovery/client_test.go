package discovery

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

func TestNewClient(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	const cfg = `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
users:
- name: test
  user: {token: not-a-secret}
`
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Building a client does not connect.
	if c, err := NewClient(kubeconfig); err != nil || c == nil {
		t.Errorf("NewClient(%q) = %v, %v, want a client", kubeconfig, c, err)
	}

	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := NewClient(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("NewClient(%q) error = %v, want one naming the file", missing, err)
	}

	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := NewClient(""); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Errorf(`NewClient("") outside a cluster: error = %v, want an in-cluster config error`, err)
	}
}

func TestRouteKlog(t *testing.T) {
	var buf syncBuffer
	RouteKlog(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(klog.ClearLogger)
	klog.Info("hello from client-go")
	klog.V(4).Info("too verbose")
	out := buf.String()
	if !strings.Contains(out, "hello from client-go") || !strings.Contains(out, "component=client-go") {
		t.Errorf("slog output = %q, want the klog message with component=client-go", out)
	}
	if strings.Contains(out, "too verbose") {
		t.Errorf("slog output = %q, want V(4) dropped at Info level", out)
	}
}
