package discovery

import (
	"fmt"
	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// NewClient returns a clientset from kubeconfig, or the in-cluster config
// (the pod's service account) when kubeconfig is "".
func NewClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("discovery: in-cluster Kubernetes config: %w", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("discovery: kubeconfig %q: %w", kubeconfig, err)
		}
	}
	cfg = rest.AddUserAgent(cfg, "shardproxy")
	// Built-in types such as EndpointSlice travel smaller and decode faster
	// as protobuf; JSON stays acceptable for anything else.
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: Kubernetes client: %w", err)
	}
	return client, nil
}

// RouteKlog sends client-go's klog output to logger, so the reflector's
// messages share the proxy's handler and format. klog is process-global:
// cmd calls this once at start-up. klog's V(n) messages go out at slog level
// -n, so an Info handler drops them. A nil logger discards klog output.
func RouteKlog(logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	klog.SetSlogLogger(logger.With("component", "client-go"))
}
