package statsport

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// replicaLinks returns the group_replica_links of pool's server srv in
// the stats document at addr, by replica address.
func replicaLinks(t *testing.T, addr, pool, srv string) map[string]map[string]any {
	t.Helper()
	_, body := httpGet(t, "http://"+addr+"/")
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("stats document: %v\n%s", err, body)
	}
	p, _ := doc[pool].(map[string]any)
	s, _ := p[srv].(map[string]any)
	links, ok := s["group_replica_links"].([]any)
	if !ok {
		t.Fatalf("stats %s/%s has no group_replica_links array: %v", pool, srv, s)
	}
	out := map[string]map[string]any{}
	for _, l := range links {
		m := l.(map[string]any)
		out[m["addr"].(string)] = m
	}
	return out
}

// lagKnown, as a key of waitLink's want, asks for a known lag_bytes.
const lagKnown = "lag known"

// waitLink waits until the stats show replica in pool's group g0 with
// the members of want.

func waitLink(t *testing.T, addr, pool, replica string, want map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := replicaLinks(t, addr, pool, "g0")[replica]
		match := l != nil
		for k, v := range want {
			if k == lagKnown {
				lag, ok := l["lag_bytes"].(float64)
				match = match && ok && lag >= 0
				continue
			}
			match = match && l[k] == v
		}
		if match {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %s/g0 replica %s = %v, want %v", pool, replica, l, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReplicaSynced waits until replica's link to its master is up.
func waitReplicaSynced(t *testing.T, replica *proxytest.Redis) {
	t.Helper()
	c := replica.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r, err := c.Do("INFO", "replication")
		if err == nil && strings.Contains(string(r.Raw()), "master_link_status:up") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica %s did not connect to its master", replica.Addr)
}

// Every group's replicas show in the stats, /metrics and /discovery as the
// proxy's own ROLE poll sees them, with read_from master too: link up or
// down, ROLE's state, lag, and whether and why not they take reads.
func TestGroupReplicaLinksOnStatsPort(t *testing.T) {
	m := proxytest.StartRedis(t)
	r1 := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port)))
	r2 := proxytest.StartRedis(t, proxytest.RedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(m.Port)))
	waitReplicaSynced(t, r1)
	waitReplicaSynced(t, r2)
	pool := func(name, extra string) string {
		return fmt.Sprintf("%s:\n  listen: 127.0.0.1:%d\n  redis: true\n  sentinels:\n    - 127.0.0.1:26379\n%s  servers:\n    - %s:1 g0\n", name, proxytest.FreePort(t), extra, m.Addr)
	}
	srv := newServer(t, pool("alpha", "")+pool("beta", "  read_from: prefer_replica\n"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr := startStatsPort(t, srv, time.Minute)
	tell := func(replicas ...string) {
		for _, p := range []string{"alpha", "beta"} {
			srv.SetGroupMasters(p, map[string]proxy.GroupMaster{"g0": {Addr: m.Addr, Source: "test", Agree: 1, Reachable: 1, Replicas: replicas}})
		}
	}
	tell(r1.Addr, r2.Addr)

	// A poll whose ROLE of the master timed out on a loaded machine leaves
	// the lag unknown until the next one: wait for a poll that knew it.
	for _, r := range []string{r1.Addr, r2.Addr} {
		waitLink(t, addr, "alpha", r, map[string]any{"link": "up", "state": "connected", "reads": false, "reason": "read_from master", lagKnown: true})
		waitLink(t, addr, "beta", r, map[string]any{"link": "up", "state": "connected", "reads": true, "reason": ""})
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		families, bad := scrapeMetrics(t, addr), ""
		for _, p := range []string{"alpha", "beta"} {
			for _, r := range []string{r1.Addr, r2.Addr} {
				labels := map[string]string{"pool": p, "server": "g0", "replica": r}
				if v := metricValue(metricWith(t, families, "shardproxy_group_replica_link_up", labels)); v != 1 {
					t.Errorf("shardproxy_group_replica_link_up%v = %v, want 1", labels, v)
				}
				if m := findMetric(families, "shardproxy_group_replica_lag_bytes", labels); m == nil || metricValue(m) < 0 {
					bad = fmt.Sprintf("shardproxy_group_replica_lag_bytes%v = %v, want a known lag", labels, m)
				}
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, disc := httpGet(t, "http://"+addr+"/discovery")
	for _, want := range []string{`"replica_links": [`, `"addr": "` + r1.Addr + `"`, `"link": "up"`, `"state": "connected"`} {
		if !strings.Contains(string(disc), want) {
			t.Errorf("/discovery lacks %s:\n%s", want, disc)
		}
	}

	// r1's master link goes down: it points at a port nothing listens on.
	do := func(r *proxytest.Redis, args ...string) {
		if _, err := r.Client(t).Do(args...); err != nil {
			t.Fatalf("%v on %s: %v", args, r.Addr, err)
		}
	}
	do(r1, "REPLICAOF", "127.0.0.1", strconv.Itoa(proxytest.FreePort(t)))
	for _, p := range []string{"alpha", "beta"} {
		l := waitLink(t, addr, p, r1.Addr, map[string]any{"link": "down", "reads": false, "reason": "link down"})
		if l["state"] == "connected" || l["state"] == "" {
			t.Errorf("%s replica %s state = %v, want ROLE's state of a link that is down", p, r1.Addr, l["state"])
		}
	}
	// With its link down, r1 refuses the proxy's new connections (their
	// ROLE check fails): the link state still shows.
	do(r1, "CLIENT", "KILL", "TYPE", "normal")
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := replicaLinks(t, addr, "alpha", "g0")[r1.Addr]
		if e, _ := l["error"].(string); strings.Contains(e, "not a connected replica") {
			if l["link"] != "down" || l["reason"] != "link down" || l["state"] == "" || l["state"] == "connected" {
				t.Errorf("replica %s refusing connections with its link down = %v, want link down, with ROLE's state", r1.Addr, l)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s = %v, want the refusal of a new connection in error", r1.Addr, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	families := scrapeMetrics(t, addr)
	if v := metricValue(metricWith(t, families, "shardproxy_group_replica_link_up", map[string]string{"pool": "alpha", "server": "g0", "replica": r1.Addr})); v != 0 {
		t.Errorf("shardproxy_group_replica_link_up of %s with its link down = %v, want 0", r1.Addr, v)
	}

	// r2 stops.
	r2.Stop()
	for _, p := range []string{"alpha", "beta"} {
		waitLink(t, addr, p, r2.Addr, map[string]any{"link": "down", "reads": false, "reason": "unreachable"})
	}

	// r2 leaves discovery's list: its series go.
	tell(r1.Addr)
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, body := httpGet(t, "http://"+addr+"/metrics")
		if !strings.Contains(string(body), `replica="`+r2.Addr+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics still has series of %s, which left:\n%s", r2.Addr, grepLines(string(body), r2.Addr))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if links := replicaLinks(t, addr, "alpha", "g0"); len(links) != 1 || links[r1.Addr] == nil {
		t.Errorf("group_replica_links after %s left = %v, want %s only", r2.Addr, links, r1.Addr)
	}
}
