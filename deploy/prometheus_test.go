package deploy_test

// The alert rules and the dashboard against a real Prometheus scraping a
// real shardproxy in front of real redis-servers, a Sentinel-watched group
// and a Service of a real kube-apiserver: promtool accepts the rules, every
// metric they and the dashboard name has series, every alert's signal and
// every panel's query returns series, and stopping a server fires
// ShardproxyServerDown, which resolves once the server is back.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/shardproxy/shardproxy/discovery/kubetest"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

const (
	alertRulesPath = "monitoring/prometheusrule.yaml"
	dashboardPath  = "monitoring/dashboards/shardproxy.json"
	promNamespace  = "monitoring-e2e"
)

// alertRule is one alert of the PrometheusRule.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// loadAlertRules writes the PrometheusRule's spec to dir as a Prometheus
// rules file and returns its path and the alerts.
func loadAlertRules(t *testing.T, dir string) (string, []alertRule) {
	t.Helper()
	data, err := os.ReadFile(alertRulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		APIVersion string    `yaml:"apiVersion"`
		Kind       string    `yaml:"kind"`
		Spec       yaml.Node `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", alertRulesPath, err)
	}
	if doc.APIVersion != "monitoring.coreos.com/v1" || doc.Kind != "PrometheusRule" {
		t.Fatalf("%s is %s %s, want monitoring.coreos.com/v1 PrometheusRule", alertRulesPath, doc.APIVersion, doc.Kind)
	}
	spec, err := yaml.Marshal(&doc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shardproxy.rules.yml")
	if err := os.WriteFile(path, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	var groups struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := doc.Spec.Decode(&groups); err != nil {
		t.Fatal(err)
	}
	var alerts []alertRule
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r)
			}
		}
	}
	return path, alerts
}

// dashboardQueries returns the expr of every panel target of the dashboard
// and the label_values queries of its template variables.
func dashboardQueries(t *testing.T) (exprs, variables []string) {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		SchemaVersion int               `json:"schemaVersion"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: %v", dashboardPath, err)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q has a target without an expr", p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	names := map[string]bool{}
	for _, v := range dash.Templating.List {
		names[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		variables = append(variables, q.Query)
	}
	for _, n := range []string{"datasource", "pool", "server"} {
		if !names[n] {
			t.Errorf("the dashboard has no %s variable", n)
		}
	}
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return exprs, variables
}

// grafanaVariables are what the test puts for the dashboard's variables:
// every pool, server and replica, and a window that holds many 1s scrapes.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "30s", "$pool", ".*", "$server", ".*", "$instance", ".*")

// metricNameRE matches the metric names a query selects: the proxy's,
// Go's and the process', and Prometheus' up.
var metricNameRE = regexp.MustCompile(`\b(?:shardproxy|go|process)_[a-z0-9_]+\b|\bup\b`)

// splitTopLevel splits expr at the first operator of ops outside
// parentheses, brackets, braces and strings; ok is false if there is none.
// Word operators (and, or, unless) match only as whole words.
func splitTopLevel(expr string, ops []string) (left, op, right string, ok bool) {
	depth := 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			quote = c
			continue
		case c == '(' || c == '[' || c == '{':
			depth++
			continue
		case c == ')' || c == ']' || c == '}':
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		for _, o := range ops {
			if !strings.HasPrefix(expr[i:], o) {
				continue
			}
			if isWord(o[0]) && ((i > 0 && isWord(expr[i-1])) || (i+len(o) < len(expr) && isWord(expr[i+len(o)]))) {
				continue
			}
			return strings.TrimSpace(expr[:i]), o, strings.TrimSpace(expr[i+len(o):]), true
		}
	}
	return expr, "", "", false
}

func isWord(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// alertClauses splits an alert's expr into its conditions, each
// <signal> <comparison> <threshold>.
func alertClauses(t *testing.T, a alertRule) [][2]string {
	t.Helper()
	var clauses [][2]string
	rest := a.Expr
	for {
		clause, _, after, more := splitTopLevel(rest, []string{"and", "unless", "or"})
		signal, _, threshold, ok := splitTopLevel(clause, []string{"==", "!=", ">=", "<=", ">", "<"})
		if !ok {
			t.Errorf("alert %s: %q is not <signal> <comparison> <threshold>", a.Alert, clause)
		}
		clauses = append(clauses, [2]string{signal, threshold})
		if !more {
			return clauses
		}
		rest = matchingRE.ReplaceAllString(after, "")
	}
}

// matchingRE is the vector matching that may follow and, unless or or.
var matchingRE = regexp.MustCompile(`^(?:on|ignoring)\s*\([^)]*\)\s*`)

// promAPI talks to Prometheus' HTTP API.
type promAPI struct{ base string }

type promSeries struct {
	Metric map[string]string `json:"metric"`
}

// query runs an instant query and returns its series, or the error
// Prometheus answered.
func (p promAPI) query(q string) ([]promSeries, error) {
	var res struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &res); err != nil {
		return nil, err
	}
	if res.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", res.ResultType)
	}
	var series []promSeries
	err := json.Unmarshal(res.Result, &series)
	return series, err
}

// get fetches an API path into data, the "data" of Prometheus' answer.
func (p promAPI) get(path string, data any) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", resp.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// alertState is the state (pending, firing) of the alert name whose labels
// include labels, "" if it is not active.
func (p promAPI) alertState(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", &data); err != nil {
		t.Fatalf("GET /api/v1/alerts: %v", err)
	}
	for _, a := range data.Alerts {
		match := a.Labels["alertname"] == name
		for k, v := range labels {
			match = match && a.Labels[k] == v
		}
		if match {
			return a.State
		}
	}
	return ""
}

// startPrometheus runs prometheus scraping the stats port statsAddr as job
// shardproxy, evaluating rules, every second; Cleanup stops it.
func startPrometheus(t *testing.T, statsAddr, rules string) promAPI {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("no prometheus binary: .ci/deps.sh installs it (Debian package prometheus)")
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: shardproxy
    static_configs:
      - targets: [%q]
`, rules, statsAddr)
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	startProcess(t, "prometheus", exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn"))
	api := promAPI{base: "http://" + addr}
	waitHTTPOK(t, "prometheus to be ready", api.base+"/-/ready", 30*time.Second)
	return api
}

// startProcess starts cmd, named name in the test's log, and kills it in
// t's cleanup, logging its output when t failed.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, logs.String())
		}
	})
}

// waitHTTPOK waits until a GET of url answers 200.
func waitHTTPOK(t *testing.T, what, url string, timeout time.Duration) {
	t.Helper()
	waitFor(t, what, timeout, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// syncBuffer collects a process's output for the test's log.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond every 100ms until it holds, failing t after timeout,
// a bound that only keeps a broken run from hanging.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %v for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promKubeObjects are the Service the kube pool watches, which has no
// pods, and the proxy's RBAC.
const promKubeObjects = `
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: monitoring-e2e}
spec:
  clusterIP: None
  selector: {app: redis}
  ports: [{name: redis, port: 6379}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: shardproxy-endpointslices, namespace: monitoring-e2e}
rules:
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: shardproxy-endpointslices, namespace: monitoring-e2e}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: shardproxy-endpointslices}
subjects: [{kind: ServiceAccount, name: shardproxy}]
`

// startMonitoredProxy builds and runs shardproxy over a ring pool with
// auto_eject_hosts over ring, a pool of one Sentinel-watched group, a pool
// of a Kubernetes Service and a redis_cluster pool over cluster, and
// returns its pools' and stats port's addresses.
func startMonitoredProxy(t *testing.T, ring []*proxytest.Redis, master *proxytest.Redis, sentinel *proxytest.Sentinel, kubeconfig string, cluster *proxytest.Cluster) (ringAddr, groupAddr, clusterAddr, statsAddr string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "shardproxy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shardproxy/shardproxy/cmd/shardproxy").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ringAddr = fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	groupAddr = fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	kubeAddr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	clusterAddr = fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	statsPort := proxytest.FreePort(t)
	statsAddr = fmt.Sprintf("127.0.0.1:%d", statsPort)
	conf := fmt.Sprintf(`ring:
  listen: %s
  hash: fnv1a_64
  distribution: ketama
  redis: true
  timeout: 1000
  auto_eject_hosts: true
  server_failure_limit: 1
  server_retry_timeout: 1000
  client_connections: 1000
  servers:
    - %s:1 s0
    - %s:1 s1
    - %s:1 s2
group:
  listen: %s
  redis: true
  timeout: 1000
  sentinels:
    - %s
  servers:
    - %s:1 g0
kube:
  listen: %s
  redis: true
  kubernetes_service: redis
  kubernetes_namespace: %s
  servers:
    - redis-0:6379:1 k0
cluster:
  listen: %s
  redis: true
  redis_cluster: true
  servers:
    - %s:1
`, ringAddr, ring[0].Addr, ring[1].Addr, ring[2].Addr, groupAddr, sentinel.Addr, master.Addr, kubeAddr, promNamespace, clusterAddr, cluster.Nodes[0].Addr)
	confPath := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "shardproxy", exec.Command(bin, "-c", confPath, "-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "--kubeconfig", kubeconfig))
	waitHTTPOK(t, "shardproxy to be ready", "http://"+statsAddr+"/readyz", 60*time.Second)
	return ringAddr, groupAddr, clusterAddr, statsAddr
}

// runTraffic sends SETs and GETs to each address until ctx ends, errors
// included: a stopped server's keys fail, which is what the alerts watch.
func runTraffic(ctx context.Context, wg *sync.WaitGroup, addrs ...string) {
	for _, addr := range addrs {
		wg.Add(1)
		go trafficLoop(ctx, wg, addr)
	}
}

func trafficLoop(ctx context.Context, wg *sync.WaitGroup, addr string) {
	defer wg.Done()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
	defer rdb.Close()
	for i := 0; ctx.Err() == nil; i++ {
		key := fmt.Sprintf("key:%d", i%300)
		rdb.Set(ctx, key, i, 0)
		rdb.Get(ctx, key)
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPrometheusAlertsAndDashboard(t *testing.T) {
	began := time.Now()
	step := func(format string, args ...any) {
		t.Helper()
		t.Logf("%5.1fs  %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("no promtool binary: .ci/deps.sh installs it (Debian package prometheus)")
	}
	rulesFile, alerts := loadAlertRules(t, t.TempDir())
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	exprs, variables := dashboardQueries(t)
	byName := map[string]alertRule{}
	for _, a := range alerts {
		byName[a.Alert] = a
		if a.For == "" || a.Labels["severity"] == "" || a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("alert %s: want for, a severity label, a summary and a description", a.Alert)
		}
		if u := a.Annotations["runbook_url"]; !strings.HasSuffix(u, "deploy/README.md#"+strings.ToLower(a.Alert)) {
			t.Errorf("alert %s: runbook_url %q, want deploy/README.md#%s", a.Alert, u, strings.ToLower(a.Alert))
		}
	}
	checkRunbook(t, alerts)

	// A ring of three servers, a group of a master, its replica and a
	// Sentinel, a Service of a real API server and a Redis Cluster of
	// three masters.
	var ring []*proxytest.Redis
	for range 3 {
		ring = append(ring, proxytest.StartRedis(t))
	}
	master := proxytest.StartRedis(t)
	proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.Port)))
	sentinel := proxytest.StartSentinel(t, "g0", master.Addr, 1)
	proxytest.WaitForSentinels(t, "g0", 1, 30*time.Second, sentinel)
	cp := kubetest.Start(t)
	cp.CreateNamespace(t, promNamespace)
	cp.Apply(t, []byte(promKubeObjects))
	kubeconfig := cp.Kubeconfig(t, promNamespace, "shardproxy")
	cluster := proxytest.StartCluster(t, 3, 0)
	step("redis-servers, Sentinel, API server and cluster up")

	ringAddr, groupAddr, clusterAddr, statsAddr := startMonitoredProxy(t, ring, master, sentinel, kubeconfig, cluster)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	runTraffic(ctx, &wg, ringAddr, groupAddr, clusterAddr)
	prom := startPrometheus(t, statsAddr, rulesFile)
	step("shardproxy and prometheus up")

	// Enough scrapes for rate() over the dashboard's window.
	waitFor(t, "25 scrapes", 90*time.Second, func() bool {
		s, err := prom.query(`count_over_time(shardproxy_uptime_seconds[1m]) >= 25`)
		return err == nil && len(s) > 0
	})
	step("scraped")

	// Every metric named anywhere has series.
	names := map[string]bool{}
	for _, q := range exprs {
		for _, n := range metricNameRE.FindAllString(q, -1) {
			names[n] = true
		}
	}
	for _, v := range variables {
		for _, n := range metricNameRE.FindAllString(v, -1) {
			names[n] = true
		}
	}
	for _, a := range alerts {
		for _, n := range metricNameRE.FindAllString(a.Expr, -1) {
			names[n] = true
		}
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if s, err := prom.query(fmt.Sprintf("count(%s)", n)); err != nil || len(s) == 0 {
			t.Errorf("metric %s has no series (%v)", n, err)
		}
	}

	// Every alert evaluates, and each of its conditions' signal (and a
	// threshold that is a query) returns series that carry every label the
	// annotations name.
	labelRE := regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	for _, a := range alerts {
		if _, err := prom.query(a.Expr); err != nil {
			t.Errorf("alert %s: %q: %v", a.Alert, a.Expr, err)
		}
		var want []string
		for _, text := range a.Annotations {
			for _, m := range labelRE.FindAllStringSubmatch(text, -1) {
				want = append(want, m[1])
			}
		}
		for i, c := range alertClauses(t, a) {
			for j, q := range c {
				if _, err := strconv.ParseFloat(q, 64); err == nil && j == 1 {
					continue
				}
				s, err := prom.query(q)
				if err != nil || len(s) == 0 {
					t.Errorf("alert %s: %q returns no series (%v): the alert could never fire", a.Alert, q, err)
					continue
				}
				if i > 0 || j > 0 {
					continue
				}
				for _, l := range want {
					if _, ok := s[0].Metric[l]; !ok {
						t.Errorf("alert %s: its annotations name $labels.%s, which %q's series %v lack", a.Alert, l, q, s[0].Metric)
					}
				}
			}
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	waitFor(t, "every rule to be evaluated", 30*time.Second, func() bool {
		if err := prom.get("/api/v1/rules", &rules); err != nil {
			t.Fatalf("GET /api/v1/rules: %v", err)
		}
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if r.Health == "unknown" {
					return false
				}
				n++
			}
		}
		return n == len(alerts)
	})
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Health != "ok" {
				t.Errorf("Prometheus evaluates %s with health %s: %s", r.Name, r.Health, r.LastError)
			}
		}
	}

	// Every panel's query and every variable's values, with the variables
	// at All.
	for _, q := range exprs {
		expr := grafanaVariables.Replace(q)
		if s, err := prom.query(expr); err != nil || len(s) == 0 {
			t.Errorf("dashboard query %q returns no series (%v)", expr, err)
		}
	}
	labelValuesRE := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range variables {
		m := labelValuesRE.FindStringSubmatch(grafanaVariables.Replace(v))
		if m == nil {
			t.Errorf("variable query %q is not label_values(selector, label)", v)
			continue
		}
		s, err := prom.query(fmt.Sprintf("count by (%s) (%s)", m[2], m[1]))
		if err != nil || len(s) == 0 || s[0].Metric[m[2]] == "" {
			t.Errorf("variable query %q finds no values (%v)", v, err)
		}
	}
	step("every query checked")
	if t.Failed() {
		return
	}

	// A stopped server: ShardproxyServerDown goes pending, then fires.
	down, ok := byName["ShardproxyServerDown"]
	if !ok {
		t.Fatal("no alert ShardproxyServerDown")
	}
	forWindow, err := time.ParseDuration(down.For)
	if err != nil {
		t.Fatalf("ShardproxyServerDown for %q: %v", down.For, err)
	}
	labels := map[string]string{"pool": "ring", "server": "s1"}
	if st := prom.alertState(t, down.Alert, labels); st != "" {
		t.Fatalf("%s is %s before the server stopped", down.Alert, st)
	}
	ring[1].Stop()
	step("s1 stopped")
	slack := forWindow + time.Minute
	waitFor(t, down.Alert+" pending", slack, func() bool { return prom.alertState(t, down.Alert, labels) == "pending" })
	step("%s pending", down.Alert)
	waitFor(t, down.Alert+" firing", slack, func() bool { return prom.alertState(t, down.Alert, labels) == "firing" })
	step("%s firing", down.Alert)

	ring[1].Restart(t)
	step("s1 restarted")
	waitFor(t, down.Alert+" resolved", slack, func() bool { return prom.alertState(t, down.Alert, labels) == "" })
	step("%s resolved", down.Alert)
}

// checkRunbook checks that deploy/README.md has a "### Alerts and runbook"
// section with a ##### heading per alert.
func checkRunbook(t *testing.T, alerts []alertRule) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### Alerts and runbook\n")
	if !ok {
		t.Fatal("deploy/README.md has no section ### Alerts and runbook")
	}
	for _, a := range alerts {
		if !strings.Contains(section, "\n##### "+a.Alert+"\n") {
			t.Errorf("deploy/README.md's runbook has no ##### %s", a.Alert)
		}
	}
}

// alertClauses finds the signal of an alert at the comparison outside any
// parentheses, braces or strings, so the test queries the right half.
func TestAlertClauses(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want [][2]string
	}{
		{`shardproxy_server_up == 0`, [][2]string{{"shardproxy_server_up", "0"}}},
		{`up{job="a>b"} == 0`, [][2]string{{`up{job="a>b"}`, "0"}}},
		{`x > 0.9 * (y > 0)`, [][2]string{{"x", "0.9 * (y > 0)"}}},
		{`sum by (pool) (rate(a[5m])) / (sum by (pool) (rate(b[5m])) + 1) >= 0.01`, [][2]string{{"sum by (pool) (rate(a[5m])) / (sum by (pool) (rate(b[5m])) + 1)", "0.01"}}},
		{`a{l!="x"} != 1 and on (pool) b < 2`, [][2]string{{`a{l!="x"}`, "1"}, {"b", "2"}}},
		{`operand > 1 unless other_metric == 0`, [][2]string{{"operand", "1"}, {"other_metric", "0"}}},
	} {
		if got := alertClauses(t, alertRule{Alert: "A", Expr: tc.expr}); !slices.Equal(got, tc.want) {
			t.Errorf("alertClauses(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}
