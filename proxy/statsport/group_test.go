package statsport

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A group's state shows in the stats JSON (as extra members of its server),
// in /metrics and in /discovery: its master, whether it is confirmed, its
// replicas, the failovers seen and the Sentinels' view.
func TestGroupStateOnStatsPort(t *testing.T) {
	first, second := proxytest.StartRedis(t), proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	cfg, err := config.Parse([]byte("alpha:\n  listen: " + listen + "\n  redis: true\n  sentinels:\n    - 127.0.0.1:26379\n  servers:\n    - " + first.Addr + ":1 g0\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	h := New(srv, Options{}).http.Handler
	get := func(path string) string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Body.String()
	}
	if body := get("/metrics"); !strings.Contains(body, `shardproxy_group_confirmed{pool="alpha",server="g0"} 0`) {
		t.Errorf("/metrics before discovery lacks group_confirmed 0:\n%s", grepLines(body, "group_"))
	}
	srv.SetGroupMasters("alpha", map[string]proxy.GroupMaster{"g0": {Addr: first.Addr, Source: "sentinel", Agree: 2, Reachable: 3, Replicas: []string{second.Addr}}})
	srv.SetGroupMasters("alpha", map[string]proxy.GroupMaster{"g0": {Addr: second.Addr, Source: "sentinel", Agree: 3, Reachable: 3, Replicas: []string{first.Addr}}})
	doc := flattenStats(t, []byte(get("/")))
	for key, want := range map[string]any{
		"alpha/g0/group_master":              second.Addr,
		"alpha/g0/group_confirmed":           float64(1),
		"alpha/g0/group_failovers":           float64(1),
		"alpha/g0/group_replicas":            float64(1),
		"alpha/g0/group_sentinels_agree":     float64(3),
		"alpha/g0/group_sentinels_reachable": float64(3),
	} {
		if doc[key] != want {
			t.Errorf("stats %s = %v, want %v", key, doc[key], want)
		}
	}
	if at, _ := doc["alpha/g0/group_last_switch"].(float64); at < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("stats group_last_switch = %v, want about now", doc["alpha/g0/group_last_switch"])
	}
	body := get("/metrics")
	for _, want := range []string{
		`shardproxy_group_master_info{addr="` + second.Addr + `",pool="alpha",server="g0"} 1`,
		`shardproxy_group_confirmed{pool="alpha",server="g0"} 1`,
		`shardproxy_group_failovers_total{pool="alpha",server="g0"} 1`,
		`shardproxy_group_sentinels_reachable{pool="alpha",server="g0"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "group_"))
		}
	}
	body = get("/discovery")
	for _, want := range []string{`"groups": [`, `"master": "` + second.Addr + `"`, `"confirmed": true`, `"failovers": 1`, `"sentinels_agree": 3`} {
		if !strings.Contains(body, want) {
			t.Errorf("/discovery lacks %s:\n%s", want, body)
		}
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
