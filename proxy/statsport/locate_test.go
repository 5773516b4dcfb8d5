package statsport

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

var _ Locator = (*proxy.Server)(nil)

// getLocate asks h for path and returns the status, the body and, for a
// 200, the locations it lists.
func getLocate(t *testing.T, ss *Server, path string) (int, string, []stats.Location) {
	t.Helper()
	rec := httptest.NewRecorder()
	ss.http.Handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var locs []stats.Location
	if rec.Code == 200 {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &locs); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
		}
	}
	return rec.Code, rec.Body.String(), locs
}

// /locate names, for each key asked and each pool, the server that really
// holds the key once it is written through the proxy, and its address.
func TestLocateOnStatsPort(t *testing.T) {
	tp := startProxy(t,
		poolSpec{name: "alpha", servers: []string{"a0", "a1", "a2"}},
		poolSpec{name: "beta", extra: "  hash_tag: \"{}\"\n", servers: []string{"", ""}})
	ss := New(tp.srv, Options{})
	keys := []string{"user:1", "user:2", "cart{42}:items", "x"}
	for _, pool := range []string{"alpha", "beta"} {
		c := tp.client(t, pool)
		for _, k := range keys {
			if r, err := c.Do("SET", k, "v"); err != nil || r.String() != "+OK" {
				t.Fatalf("SET %s through %s = %v, %v", k, pool, r, err)
			}
		}
	}
	path := "/locate?key=" + strings.Join(keys, "&key=")
	path = strings.ReplaceAll(strings.ReplaceAll(path, "{", "%7B"), "}", "%7D")
	code, body, locs := getLocate(t, ss, path)
	if code != 200 || len(locs) != 2*len(keys) {
		t.Fatalf("GET %s = %d, %d locations, want 200 and %d:\n%s", path, code, len(locs), 2*len(keys), body)
	}
	// Key by key, each in every pool in the configuration's order, which
	// is nutcracker's: the shorter name first.
	pools := []string{"beta", "alpha"}
	for i, l := range locs {
		key, pool := keys[i/2], pools[i%2]
		if l.Key != key || l.Pool != pool || l.Listen != tp.listen[pool] {
			t.Fatalf("location %d is %s in %s (listen %s), want %s in %s (listen %s)", i, l.Key, l.Pool, l.Listen, key, pool, tp.listen[pool])
		}
		r := tp.redis[pool+"/"+l.Server]
		if r == nil {
			t.Fatalf("%s in %s: server %q is none of the pool's", key, pool, l.Server)
		}
		if l.Addr != r.Addr || l.Source != "config" || !l.Usable {
			t.Errorf("%s in %s: addr %q source %q usable %v, want %s from config, usable", key, pool, l.Addr, l.Source, l.Usable, r.Addr)
		}
		rc := r.Client(t)
		if rep, err := rc.Do("EXISTS", key); err != nil || string(rep.Raw()) != ":1\r\n" {
			t.Errorf("%s in %s: /locate says %s, which does not hold it (EXISTS = %q, %v)", key, pool, l.Server, rep.Raw(), err)
		}
		rc.Close()
	}
	if tag := locs[4].HashTag; tag != "42" {
		t.Errorf("cart{42}:items in beta: hash_tag %q, want 42", tag)
	}
	if tag := locs[5].HashTag; tag != "" {
		t.Errorf("cart{42}:items in alpha, which has no hash_tag: hash_tag %q", tag)
	}

	if code, body, locs := getLocate(t, ss, "/locate?key=x&pool=beta"); code != 200 || len(locs) != 1 || locs[0].Pool != "beta" {
		t.Errorf("GET /locate?key=x&pool=beta = %d, %v\n%s", code, locs, body)
	}
	for _, tc := range []struct{ path, want string }{
		{"/locate", "no key"},
		{"/locate?pool=alpha", "no key"},
		{"/locate?key=x&pool=gamma", `no pool "gamma"`},
	} {
		if code, body, _ := getLocate(t, ss, tc.path); code != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %q, want 400 and %q", tc.path, code, body, tc.want)
		}
	}
}

// A Source that cannot locate keys answers /locate with 501.
func TestLocateNotImplemented(t *testing.T) {
	ss := New(&fixedSource{}, Options{})
	if code, body, _ := getLocate(t, ss, "/locate?key=x"); code != 501 || !strings.Contains(body, "cannot locate") {
		t.Errorf("GET /locate from a plain Source = %d %q, want 501", code, body)
	}
}

// /locate gives a pod server's IP from its EndpointSlice, and says why a
// pod that is not ready takes no requests.
func TestLocatePodAddress(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	cfg, err := config.Parse([]byte("alpha:\n  listen: " + listen + "\n  redis: true\n  kubernetes_service: redis\n  servers:\n    - redis-0:6379:1 server0\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	ss := New(srv, Options{})
	srv.SetPodAddresses("shop", "redis", map[string]proxy.PodAddress{"redis-0": {IP: "198.18.0.2", Usable: true, Slice: "redis-x"}})
	_, body, locs := getLocate(t, ss, "/locate?key=k")
	if len(locs) != 1 || locs[0].Server != "server0" || locs[0].Configured != "redis-0:6379" || locs[0].Addr != "198.18.0.2:6379" || locs[0].Source != "endpointslice/redis-x" || !locs[0].Usable {
		t.Fatalf("/locate?key=k with the pod ready:\n%s", body)
	}
	srv.SetPodAddresses("shop", "redis", map[string]proxy.PodAddress{"redis-0": {IP: "198.18.0.3", Reason: "not ready", Slice: "redis-x"}})
	_, body, locs = getLocate(t, ss, "/locate?key=k")
	if len(locs) != 1 || locs[0].Addr != "198.18.0.3:6379" || locs[0].Usable || locs[0].Reason != "pod redis-0 is not ready" {
		t.Fatalf("/locate?key=k with the pod not ready:\n%s", body)
	}
}
