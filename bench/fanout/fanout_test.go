package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy"
	proxyconfig "github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startServers starts three redis-servers and returns them as --servers.
func startServers(t *testing.T) string {
	var s []string
	for i := 1; i <= 3; i++ {
		s = append(s, fmt.Sprintf("%s=redis%d", proxytest.StartRedis(t).Addr, i))
	}
	return strings.Join(s, ",")
}

// startProxy runs shardproxy in the test over the servers of --servers
// and returns its address.
func startProxy(t *testing.T, servers string) string {
	var lines strings.Builder
	for _, s := range strings.Split(servers, ",") {
		addr, name, _ := strings.Cut(s, "=")
		fmt.Fprintf(&lines, "    - %s:1 %s\n", addr, name)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	yaml := fmt.Sprintf("bench:\n  listen: %s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  servers:\n%s", addr, lines.String())
	cfg, err := proxyconfig.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return addr
}

func testConfig(t *testing.T, servers string, extra ...string) config {
	args := append([]string{"--servers", servers, "--subscribers", "40", "--duration", "300ms"}, extra...)
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	return cfg
}

func TestRunDirectAndThroughProxy(t *testing.T) {
	servers := startServers(t)
	proxyAddr := startProxy(t, servers)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"direct", nil},
		{"direct pipelined", []string{"--pipeline", "16"}},
		{"proxy", []string{"--proxy", proxyAddr}},
		{"proxy pipelined", []string{"--proxy", proxyAddr, "--pipeline", "16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, servers, tc.extra...)
			res := run(context.Background(), cfg, io.Discard)
			if !res.Passed {
				t.Fatalf("run failed: %s", res.Failure)
			}
			if res.Published == 0 || res.Delivered != res.Expected {
				t.Errorf("published %d, delivered %d of %d", res.Published, res.Delivered, res.Expected)
			}
			// 40 subscribers on 10 channels: each message reaches 4.
			if res.Expected != 4*res.Published {
				t.Errorf("expected deliveries %d, want 4 per message published (%d)", res.Expected, res.Published)
			}
			for i, n := range res.PerServer {
				if n == 0 {
					t.Errorf("server %d owns no channel: %v", i, res.PerServer)
				}
			}
			wantConns := 40 // directly, the 8 pattern subscribers have 3 each
			if cfg.Proxy == "" {
				wantConns = 32 + 8*3
			}
			if res.Connections != wantConns || res.PatternSubs != 8 {
				t.Errorf("%d connections, %d pattern subscribers; want %d and 8", res.Connections, res.PatternSubs, wantConns)
			}
		})
	}
}

// A subscriber short of a message, or with one too many, fails the run.
func TestCheckDeliveries(t *testing.T) {
	chans := []channel{{name: "fanout.0.ch", pattern: "fanout.0.*"}, {name: "fanout.1.ch", pattern: "fanout.1.*"}}
	perChannel := []int64{5, 7}
	subs := []*subscriber{{ch: 0}, {ch: 1, pattern: true}, {ch: 1}, {ch: 0}}
	for i, n := range []int64{5, 7, 7, 5} {
		subs[i].got.Store(n)
	}
	if short, first := checkDeliveries(subs, chans, perChannel); short != 0 {
		t.Errorf("all delivered: %d short (%s)", short, first)
	}
	subs[1].got.Store(6)
	subs[3].got.Store(6)
	short, first := checkDeliveries(subs, chans, perChannel)
	if want := "subscriber 1 (PSUBSCRIBE fanout.1.*) got 6 of 7 messages"; short != 2 || first != want {
		t.Errorf("checkDeliveries = %d, %q; want 2, %q", short, first, want)
	}
}

func TestPickChannelsCoversEveryServer(t *testing.T) {
	nodes := []hashring.Node{{Addr: "a:1", Name: "redis1", Weight: 1}, {Addr: "b:1", Name: "redis2", Weight: 1}, {Addr: "c:1", Name: "redis3", Weight: 1}}
	ring, err := hashring.New(nodes, hashring.Options{Hash: "fnv1a_64"})
	if err != nil {
		t.Fatal(err)
	}
	chans, err := pickChannels(ring, "fanout.", 10)
	if err != nil {
		t.Fatal(err)
	}
	per := make([]int, 3)
	for _, c := range chans {
		if ring.Lookup([]byte(c.name)) != c.owner {
			t.Errorf("%s: owner %d, ring says %d", c.name, c.owner, ring.Lookup([]byte(c.name)))
		}
		if !strings.HasSuffix(c.pattern, ".*") || !strings.HasPrefix(c.name, strings.TrimSuffix(c.pattern, "*")) {
			t.Errorf("%s: pattern %s", c.name, c.pattern)
		}
		per[c.owner]++
	}
	for i, n := range per {
		if n < 3 || n > 4 {
			t.Errorf("server %d owns %d of 10 channels: %v", i, n, per)
		}
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--servers", "127.0.0.1:1"},
		{"--servers", "127.0.0.1:1=a,127.0.0.1:2=b", "--channels", "1"},
		{"--servers", "127.0.0.1:1=a", "--payload-size", "8"},
		{"--servers", "127.0.0.1:1=a", "--payload-size", "70000"},
		{"--servers", "127.0.0.1:1=a", "--pattern-share", "2"},
		{"--servers", "127.0.0.1:1=a", "--server-pids", "x"},
		{"--servers", "127.0.0.1:1=a", "extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted it", args)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	b := appendPayload(nil, 3, 123456, 64)
	if len(b) != 64 {
		t.Fatalf("payload is %d bytes, want 64", len(b))
	}
	pub, seq, ok := parsePayload(b)
	if !ok || pub != 3 || seq != 123456 {
		t.Errorf("parsePayload(%q) = %d, %d, %v", b, pub, seq, ok)
	}
	if _, _, ok := parsePayload([]byte("x:1:")); ok {
		t.Error("parsePayload accepted a payload without a publisher number")
	}
}
