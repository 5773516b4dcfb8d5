package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// locateOne is where key lives in the pool alpha, Locate's only answer.
func locateOne(t *testing.T, srv *Server, key string) stats.Location {
	t.Helper()
	locs, err := srv.Locate([]byte(key), "alpha")
	if err != nil || len(locs) != 1 {
		t.Fatalf("Locate(%q, alpha) = %v, %v; want one location", key, locs, err)
	}
	return locs[0]
}

// holders returns the servers among rs on which key exists, asking each
// directly.
func holders(t *testing.T, rs []*proxytest.Redis, key string) []*proxytest.Redis {
	t.Helper()
	var out []*proxytest.Redis
	for _, r := range rs {
		c := r.Client(t)
		if got := do(t, c, "EXISTS", key); got == ":1\r\n" {
			out = append(out, r)
		}
		c.Close()
	}
	return out
}

// checkLocated writes keys through the proxy at addr and checks that each
// is on exactly one of rs, the one Locate names, at the address it gives.
// ringName is the ring name of r.
func checkLocated(t *testing.T, srv *Server, addr string, rs []*proxytest.Redis, ringName func(*proxytest.Redis) string, keys []string) {
	t.Helper()
	c := proxytest.Dial(t, addr)
	defer c.Close()
	for _, k := range keys {
		if got := do(t, c, "SET", k, "v"); got != "+OK\r\n" {
			t.Fatalf("SET %s = %q", k, got)
		}
	}
	for _, k := range keys {
		h := holders(t, rs, k)
		if len(h) != 1 {
			t.Fatalf("%s is on %d servers, want 1", k, len(h))
		}
		l := locateOne(t, srv, k)
		if l.Server != ringName(h[0]) || l.Addr != h[0].Addr || !l.Usable || l.Error != "" {
			t.Fatalf("Locate(%q) = server %q at %q (usable %v, error %q); the key is on %s at %s", k, l.Server, l.Addr, l.Usable, l.Error, ringName(h[0]), h[0].Addr)
		}
	}
}

func numberedKeys(format string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(format, i)
	}
	return keys
}

// Locate names the server that a key written through a ring pool is on,
// and its address: with and without server names, with a hash_tag.
func TestLocateRingPool(t *testing.T) {
	for _, tc := range []struct {
		name   string
		named  bool
		extra  string
		keyFmt string
	}{
		{"named", true, "", "user:%d"},
		{"unnamed", false, "", "user:%d"},
		{"hash_tag", true, "  hash_tag: \"{}\"\n", "cart{%d}:items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs []*proxytest.Redis
			var servers []string
			names := map[*proxytest.Redis]string{}
			for i := range 3 {
				r := proxytest.StartRedis(t)
				rs = append(rs, r)
				line, name := r.Addr+":1", r.Addr
				if tc.named {
					name = fmt.Sprintf("shard%d", i)
					line += " " + name
				}
				names[r] = name
				servers = append(servers, line)
			}
			listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
			srv := startServer(t, poolYAML(listen, "  hash: fnv1a_64\n  distribution: ketama\n"+tc.extra, servers...), Options{})
			keys := numberedKeys(tc.keyFmt, 500)
			checkLocated(t, srv, listen, rs, func(r *proxytest.Redis) string { return names[r] }, keys)
			l := locateOne(t, srv, keys[7])
			if l.Pool != "alpha" || l.Listen != listen || l.Key != keys[7] || l.Source != "config" || l.Configured != l.Addr || l.Slot != nil {
				t.Errorf("Locate(%q) = %+v", keys[7], l)
			}
			if want := map[bool]string{true: "7", false: ""}[tc.extra != ""]; l.HashTag != want {
				t.Errorf("Locate(%q).HashTag = %q, want %q", keys[7], l.HashTag, want)
			}
		})
	}
}

// With auto_eject_hosts, once a server is ejected Locate follows the ring
// rebuilt without it: no key is located there, and new writes land where
// Locate says.
func TestLocateAfterEjection(t *testing.T) {
	tp := startProxy(t, 3, "  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n")
	name := func(r *proxytest.Redis) string {
		for i, x := range tp.redises {
			if x == r {
				return fmt.Sprintf("server%d", i)
			}
		}
		return ""
	}
	down := tp.redises[1]
	key := tp.keyOn(t, down, "gone")
	if l := locateOne(t, tp.srv, key); l.Server != "server1" || l.Addr != down.Addr {
		t.Fatalf("Locate(%q) before the ejection = %s at %s, want server1 at %s", key, l.Server, l.Addr, down.Addr)
	}
	down.Stop()
	c := tp.client(t)
	waitFor(t, "server1 ejected", func() bool { return do(t, c, "SET", key, "v") == "+OK\r\n" })
	l := locateOne(t, tp.srv, key)
	if l.Server == "server1" || !l.Usable {
		t.Fatalf("Locate(%q) after server1's ejection = %+v, want another server", key, l)
	}
	live := []*proxytest.Redis{tp.redises[0], tp.redises[2]}
	if h := holders(t, live, key); len(h) != 1 || name(h[0]) != l.Server {
		t.Fatalf("%s is on %d servers after the ejection, Locate says %s", key, len(h), l.Server)
	}
	checkLocated(t, tp.srv, tp.addr, live, name, numberedKeys("after:%d", 300))
}

// In a pool of groups Locate gives the confirmed master's address; after a
// failover, the new master's, and a key written then is on it.
func TestLocateGroupFailover(t *testing.T) {
	gp := startGroups(t, 2, "")
	key := gp.keyOn(t, 0, "k")
	if l := locateOne(t, gp.srv, key); l.Server != "g0" || l.Usable || !strings.Contains(l.Reason, "no confirmed master") {
		t.Fatalf("Locate(%q) before discovery named a master = %+v", key, l)
	}
	gp.tellAll()
	name := func(r *proxytest.Redis) string {
		for i, m := range gp.masters {
			if m == r {
				return fmt.Sprintf("g%d", i)
			}
		}
		return ""
	}
	checkLocated(t, gp.srv, gp.addr, gp.masters, name, numberedKeys("before:%d", 200))
	if l := locateOne(t, gp.srv, key); l.Master != gp.masters[0].Addr || l.Configured != gp.masters[0].Addr {
		t.Fatalf("Locate(%q) = %+v, want master %s", key, l, gp.masters[0].Addr)
	}

	old, next := gp.masters[0], gp.replicas[0]
	failover(t, old, next, nil)
	gp.srv.SetGroupMasters("alpha", map[string]GroupMaster{"g0": {Addr: next.Addr, Replicas: []string{old.Addr}, Source: "test", Agree: 1, Reachable: 1}})
	l := locateOne(t, gp.srv, key)
	if l.Server != "g0" || l.Addr != next.Addr || l.Master != next.Addr || !l.Usable || l.Source != "test" {
		t.Fatalf("Locate(%q) after the failover = %+v, want g0 at %s", key, l, next.Addr)
	}
	if len(l.Replicas) != 1 || l.Replicas[0] != old.Addr {
		t.Errorf("Locate(%q).Replicas = %v, want [%s]", key, l.Replicas, old.Addr)
	}
	c := proxytest.Dial(t, gp.addr)
	if got := do(t, c, "SET", key, "after"); got != "+OK\r\n" {
		t.Fatalf("SET %s after the failover = %q", key, got)
	}
	if got := do(t, next.Client(t), "GET", key); got != "$5\r\nafter\r\n" {
		t.Fatalf("GET %s on the new master %s = %q, want the value written after the failover", key, next.Addr, got)
	}
}

// In a redis_cluster pool Locate gives the key's slot and the node that
// serves it, which holds the key once written through the proxy; after a
// reshard, the node the slot moved to.
func TestLocateClusterPool(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	keys := numberedKeys("k%d", 500)
	check := func(t *testing.T) {
		t.Helper()
		cl := proxytest.Dial(t, cp.addr)
		defer cl.Close()
		for _, k := range keys {
			if got := do(t, cl, "SET", k, "v"); got != "+OK\r\n" {
				t.Fatalf("SET %s = %q", k, got)
			}
		}
		for _, k := range keys {
			slot := int(hashring.KeySlot([]byte(k)))
			owner := c.Owner(t, slot)
			l := locateOne(t, cp.srv, k)
			if l.Slot == nil || *l.Slot != slot || l.Server != owner.Addr || l.Addr != owner.Addr || !l.Usable {
				t.Fatalf("Locate(%q) = %+v, want slot %d on %s (%s)", k, l, slot, owner.Addr, owner.ID)
			}
			nc := owner.Client(t)
			if got := do(t, nc, "EXISTS", k); got != ":1\r\n" {
				t.Fatalf("EXISTS %s on %s, where Locate puts it = %q", k, owner.Addr, got)
			}
			nc.Close()
		}
	}
	check(t)
	masters := c.Masters()
	c.Reshard(t, masters[0].ID, masters[1].ID, 2000)
	// The proxy learns the new map at its watcher's next poll.
	waitFor(t, "the pool's map follows the reshard", func() bool {
		for _, k := range keys {
			if locateOne(t, cp.srv, k).Server != c.Owner(t, int(hashring.KeySlot([]byte(k)))).Addr {
				return false
			}
		}
		return true
	})
	moved := 0
	for _, k := range keys {
		if c.Owner(t, int(hashring.KeySlot([]byte(k)))) == masters[1] && locateOne(t, cp.srv, k).Server == masters[1].Addr {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key is located on the master the slots moved to")
	}
	check(t)
}

// Locate without a pool answers for every pool; an unknown pool is an
// error; a key no server owns says what a request for it gets.
func TestLocatePools(t *testing.T) {
	r := proxytest.StartRedis(t)
	a, b := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	yaml := poolYAML(a, "", r.Addr+":1 s0") + strings.Replace(poolYAML(b, "  redis_cluster: true\n", "127.0.0.1:1:1"), "alpha:", "beta:", 1)
	srv := startServer(t, yaml, Options{})
	locs, err := srv.Locate([]byte("k"), "")
	if err != nil || len(locs) != 2 || locs[0].Pool != "beta" || locs[1].Pool != "alpha" {
		t.Fatalf("Locate(k, \"\") = %+v, %v; want beta then alpha", locs, err)
	}
	if l := locs[0]; l.Slot == nil || *l.Slot != int(hashring.KeySlot([]byte("k"))) || l.Server != "" || !strings.HasPrefix(l.Error, "CLUSTERDOWN Hash slot not served") {
		t.Errorf("Locate(k) in a cluster pool with no map = %+v, want no server and CLUSTERDOWN", l)
	}
	if l := locs[1]; l.Server != "s0" || l.Addr != r.Addr {
		t.Errorf("Locate(k) in alpha = %+v, want s0 at %s", l, r.Addr)
	}
	if _, err := srv.Locate([]byte("k"), "gamma"); err == nil || err.Error() != `no pool "gamma"` {
		t.Errorf("Locate(k, gamma) error = %v, want no pool \"gamma\"", err)
	}
}
