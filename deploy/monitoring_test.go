package deploy_test

// The monitoring component: a PodMonitor that scrapes the stats port of
// exactly the proxy pods, with whichever base or overlay it is added to,
// the alert rules, and the Grafana dashboard ConfigMap. The Prometheus
// Operator's kinds are not client-go types: they are decoded strictly into
// the local types below, which follow the operator's CRDs (the end-to-end
// test has the API server check them against the real ones).

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const monitoringDir = "monitoring"

// podMonitor is a monitoring.coreos.com/v1 PodMonitor, with the fields the
// component uses.
type podMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		JobLabel            string               `json:"jobLabel,omitempty"`
		PodTargetLabels     []string             `json:"podTargetLabels,omitempty"`
		PodMetricsEndpoints []podMetricsEndpoint `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type podMetricsEndpoint struct {
	Port              string        `json:"port,omitempty"`
	Path              string        `json:"path,omitempty"`
	Interval          string        `json:"interval,omitempty"`
	ScrapeTimeout     string        `json:"scrapeTimeout,omitempty"`
	HonorLabels       *bool         `json:"honorLabels,omitempty"`
	Relabelings       []relabelRule `json:"relabelings,omitempty"`
	MetricRelabelings []relabelRule `json:"metricRelabelings,omitempty"`
}

// relabelRule is a Prometheus relabel_config as the operator spells it.
type relabelRule struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      int64    `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// prometheusRule is a monitoring.coreos.com/v1 PrometheusRule, with every
// field its CRD gives a rule group and a rule.
type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name                    string            `json:"name"`
			Interval                string            `json:"interval,omitempty"`
			QueryOffset             string            `json:"query_offset,omitempty"`
			Limit                   *int              `json:"limit,omitempty"`
			PartialResponseStrategy string            `json:"partial_response_strategy,omitempty"`
			Labels                  map[string]string `json:"labels,omitempty"`
			Rules                   []struct {
				Alert         string             `json:"alert,omitempty"`
				Record        string             `json:"record,omitempty"`
				Expr          intstr.IntOrString `json:"expr"`
				For           string             `json:"for,omitempty"`
				KeepFiringFor string             `json:"keep_firing_for,omitempty"`
				Labels        map[string]string  `json:"labels,omitempty"`
				Annotations   map[string]string  `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestMonitoring checks the component with base and with every overlay:
// where the overlay does not add it, a kustomization made for the test adds
// it on top, as a user's overlay would.
func TestMonitoring(t *testing.T) {
	overlays, err := filepath.Glob(filepath.Join("overlays", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range append([]string{baseDir}, overlays...) {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			if !slices.ContainsFunc(objs, func(o object) bool { return o.Kind == "PodMonitor" }) {
				objs = render(t, withMonitoring(t, dir))
			}
			checkMonitoring(t, objs)
		})
	}
}

// The overlays that add the component themselves.
func TestMonitoringEnabled(t *testing.T) {
	for _, dir := range []string{productionDir} {
		objs := render(t, dir)
		for _, key := range []string{"PodMonitor/shardproxy", "PrometheusRule/shardproxy", "ConfigMap/shardproxy-dashboard"} {
			if !slices.ContainsFunc(objs, func(o object) bool { return o.key() == key }) {
				t.Errorf("%s makes no %s", dir, key)
			}
		}
	}
}

// withMonitoring writes a kustomization that adds the component to dir and
// returns its directory. Kustomize takes only relative paths.
func withMonitoring(t *testing.T, dir string) string {
	t.Helper()
	tmp := t.TempDir()
	rel := func(p string) string {
		a, err := filepath.Abs(p)
		if err == nil {
			a, err = filepath.Rel(tmp, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
		"resources:\n  - " + rel(dir) + "\ncomponents:\n  - " + rel(monitoringDir) + "\n"
	if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return tmp
}

func checkMonitoring(t *testing.T, objs []object) {
	t.Helper()
	var deployment struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	dep := find(t, objs, "Deployment", "shardproxy")
	decodeLoose(t, dep, &deployment)
	pod := deployment.Spec.Template
	proxy := container(t, &pod.Spec, "shardproxy")

	t.Run("podmonitor", func(t *testing.T) {
		o := find(t, objs, "PodMonitor", "shardproxy")
		var pm podMonitor
		decode(t, o, &pm)
		checkPodMonitor(t, objs, &pm, o.Namespace, dep.Namespace, pod, proxy)
	})
	t.Run("prometheusrule", func(t *testing.T) {
		o := find(t, objs, "PrometheusRule", "shardproxy")
		var rule prometheusRule
		decode(t, o, &rule)
		checkPrometheusRule(t, &rule)
	})
	t.Run("dashboard", func(t *testing.T) {
		o := find(t, objs, "ConfigMap", "shardproxy-dashboard")
		var cm corev1.ConfigMap
		decode(t, o, &cm)
		checkDashboard(t, &cm)
	})
}

// The PodMonitor selects the proxy pods and no other workload's, in its own
// namespace, and scrapes /metrics on the stats port the proxy opens, keeping
// the labels the proxy exports.
func checkPodMonitor(t *testing.T, objs []object, pm *podMonitor, namespace, deploymentNamespace string, pod corev1.PodTemplateSpec, proxy *corev1.Container) {
	if pm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("apiVersion = %q, want monitoring.coreos.com/v1", pm.APIVersion)
	}
	if namespace != deploymentNamespace {
		t.Errorf("namespace %q, the Deployment's %q", namespace, deploymentNamespace)
	}
	if ns := pm.Spec.NamespaceSelector; ns != nil && (ns.Any || len(ns.MatchNames) > 0) {
		t.Errorf("namespaceSelector = %+v, want none: the PodMonitor's own namespace", *ns)
	}
	if !selects(t, &pm.Spec.Selector, pod.Labels) {
		t.Errorf("selector %v does not match the proxy pods %v", pm.Spec.Selector, pod.Labels)
	}
	// No other workload's pods.
	for _, o := range objs {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" || o.key() == "Deployment/shardproxy" {
			continue
		}
		var w struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		decodeLoose(t, o, &w)
		if selects(t, &pm.Spec.Selector, w.Spec.Template.Labels) {
			t.Errorf("selector %v matches the pods of %s %v", pm.Spec.Selector, o.key(), w.Spec.Template.Labels)
		}
	}
	if l := pm.Spec.JobLabel; l != "" && pod.Labels[l] == "" {
		t.Errorf("jobLabel %q: the proxy pods have no such label (%v)", l, pod.Labels)
	}

	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("podMetricsEndpoints = %+v, want one", pm.Spec.PodMetricsEndpoints)
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	stats, err := strconv.Atoi(flagValue(t, proxy.Args, "-s", "--stats-port"))
	if err != nil {
		t.Fatal(err)
	}
	if ep.Port == "" {
		t.Error("endpoint has no port name")
	} else if p := containerPort(t, proxy, intstr.FromString(ep.Port)); int(p) != stats {
		t.Errorf("endpoint port %q is %d, want the stats port %d (-s)", ep.Port, p, stats)
	}
	if want := pod.Annotations["prometheus.io/path"]; ep.Path != "/metrics" || ep.Path != want {
		t.Errorf("endpoint path = %q, want /metrics, as the prometheus.io/path annotation %q", ep.Path, want)
	}
	interval, err := time.ParseDuration(ep.Interval)
	if err != nil || interval < 10*time.Second || interval > time.Minute {
		t.Errorf("interval = %q, want 10s to 1m", ep.Interval)
	}
	if ep.ScrapeTimeout != "" {
		if d, err := time.ParseDuration(ep.ScrapeTimeout); err != nil || d > interval {
			t.Errorf("scrapeTimeout = %q, want at most the interval %q", ep.ScrapeTimeout, ep.Interval)
		}
	}

	// The proxy's pool and server labels reach Prometheus as they are.
	if ep.HonorLabels != nil && *ep.HonorLabels {
		t.Error("honorLabels: true lets a scraped label overwrite the target's")
	}
	for _, l := range pm.Spec.PodTargetLabels {
		if l == "pool" || l == "server" {
			t.Errorf("podTargetLabels has %q, which would clash with the proxy's", l)
		}
	}
	for _, r := range slices.Concat(ep.Relabelings, ep.MetricRelabelings) {
		if r.TargetLabel == "pool" || r.TargetLabel == "server" {
			t.Errorf("relabeling %+v writes %s", r, r.TargetLabel)
		}
		switch strings.ToLower(r.Action) {
		case "labeldrop", "labelkeep", "labelmap":
			re, err := regexp.Compile("^(?:" + r.Regex + ")$")
			if err != nil {
				t.Errorf("relabeling %+v: %v", r, err)
				continue
			}
			for _, l := range []string{"pool", "server"} {
				// labelkeep drops what does not match; the others change what does.
				if re.MatchString(l) != (strings.ToLower(r.Action) == "labelkeep") {
					t.Errorf("relabeling %+v changes label %s", r, l)
				}
			}
		}
	}
}

var durationRE = regexp.MustCompile(`^(\d+(ms|s|m|h|d|w|y))+$`)

// Every rule is an alert or a recording rule; every alert says what is
// wrong and what to do.
func checkPrometheusRule(t *testing.T, rule *prometheusRule) {
	if rule.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("apiVersion = %q, want monitoring.coreos.com/v1", rule.APIVersion)
	}
	if len(rule.Spec.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	groups := map[string]bool{}
	alerts := 0
	for _, g := range rule.Spec.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q is empty or repeated", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %q has no rules", g.Name)
		}
		for i, r := range g.Rules {
			name := r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("group %q rule %d: want exactly one of alert and record", g.Name, i)
			}
			if r.Expr.Type != intstr.String || strings.TrimSpace(r.Expr.StrVal) == "" {
				t.Errorf("group %q rule %s: expr %v, want a PromQL expression", g.Name, name, r.Expr)
			}
			for _, d := range []string{r.For, r.KeepFiringFor} {
				if d != "" && !durationRE.MatchString(d) {
					t.Errorf("group %q rule %s: duration %q", g.Name, name, d)
				}
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
		}
	}
	if alerts == 0 {
		t.Error("no alerts")
	}
}

// The dashboard ConfigMap carries the label Grafana's sidecar looks for,
// keeps its name, and holds one dashboard that parses, small enough for
// kubectl apply to record it in its last-applied annotation.
func checkDashboard(t *testing.T, cm *corev1.ConfigMap) {
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v, want grafana_dashboard: \"1\"", cm.Labels)
	}
	if len(cm.Data) != 1 || len(cm.BinaryData) != 0 {
		t.Fatalf("data has keys %v, want one dashboard", slices.Sorted(maps.Keys(cm.Data)))
	}
	for key, data := range cm.Data {
		if !strings.HasSuffix(key, ".json") {
			t.Errorf("key %q: want a .json file", key)
		}
		var dashboard struct {
			Title  string            `json:"title"`
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal([]byte(data), &dashboard); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if dashboard.Title == "" || len(dashboard.Panels) == 0 {
			t.Errorf("%s: title %q and %d panels, want a title and panels", key, dashboard.Title, len(dashboard.Panels))
		}
	}
	// The API server caps all annotations at 256 KiB; the last-applied one
	// is the object as JSON.
	obj, err := json.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	if len(obj) > 256<<10-1<<10 {
		t.Errorf("ConfigMap is %d bytes as JSON: too big for kubectl apply's last-applied annotation (256 KiB)", len(obj))
	}
}
