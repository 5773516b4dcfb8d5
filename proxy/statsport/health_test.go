package statsport

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// server_up follows a pool's server without auto_eject_hosts down and back
// up, and stays out of nutcracker's JSON document.
func TestServerUpMetric(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"s0"}})
	checkStats(t, tp.stats, []stat{{"alpha", "s0", "server_up", 1}}) // nothing tried yet
	c := tp.client(t, "alpha")
	if got, err := c.Do("SET", "k", "v"); err != nil || string(got.Raw()) != "+OK\r\n" {
		t.Fatalf("SET = %q, %v", got.Raw(), err)
	}
	checkStats(t, tp.stats, []stat{{"alpha", "s0", "server_up", 1}})

	r := tp.redis["alpha/s0"]
	r.Stop()
	if got, err := c.Do("GET", "k"); err != nil || !got.IsError() {
		t.Fatalf("GET with the server stopped = %q, %v; want an error", got.Raw(), err)
	}
	checkStats(t, tp.stats, []stat{{"alpha", "s0", "server_up", 0}})
	if _, ok := statsDoc(t, tp.stats)["alpha/s0/server_up"]; ok {
		t.Error("the stats JSON has server_up, which nutcracker's does not")
	}

	r.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := c.Do("GET", "k")
		if err != nil {
			t.Fatal(err)
		}
		if !got.IsError() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after the restart = %q", got.Raw())
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkStats(t, tp.stats, []stat{{"alpha", "s0", "server_up", 1}})
}

// client_connections_limit is each pool's client_connections, 0 without
// one, and stays out of nutcracker's JSON document.
func TestClientConnectionsLimitMetric(t *testing.T) {
	tp := startProxy(t,
		poolSpec{name: "alpha", servers: []string{"a0"}, extra: "  client_connections: 5\n"},
		poolSpec{name: "beta", servers: []string{"b0"}},
	)
	checkStats(t, tp.stats, []stat{
		{"alpha", "", "client_connections_limit", 5},
		{"beta", "", "client_connections_limit", 0},
	})
	for path := range statsDoc(t, tp.stats) {
		if strings.HasSuffix(path, "client_connections_limit") {
			t.Errorf("the stats JSON has %s, which nutcracker's does not", path)
		}
	}
}

// config_last_reload_successful is 0 from a rejected reload until one is
// applied, and stays out of nutcracker's JSON document.
func TestConfigLastReloadSuccessfulMetric(t *testing.T) {
	tp := startProxy(t, poolSpec{name: "alpha", servers: []string{"a0"}})
	checkStats(t, tp.stats, []stat{{field: "config_last_reload_successful", want: 1}})
	good := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1 a0\n", tp.listen["alpha"], tp.redis["alpha/a0"].Addr)
	tp.srv.RejectReload() // a file that did not parse
	checkStats(t, tp.stats, []stat{{field: "config_last_reload_successful", want: 0}})
	if _, ok := statsDoc(t, tp.stats)["config_last_reload_successful"]; ok {
		t.Error("the stats JSON has config_last_reload_successful, which nutcracker's does not")
	}
	cfg, err := config.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.srv.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	checkStats(t, tp.stats, []stat{{field: "config_last_reload_successful", want: 1}})

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad, err := config.Parse([]byte(good + fmt.Sprintf("beta:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1 b0\n", busy.Addr(), tp.redis["alpha/a0"].Addr)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.srv.Reload(bad); err == nil {
		t.Fatal("Reload with a listen address in use succeeded")
	}
	checkStats(t, tp.stats, []stat{{field: "config_last_reload_successful", want: 0}})
}
