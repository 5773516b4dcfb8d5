package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A group's master SIGKILLed under subscribers: Sentinel fails over, the
// subscribers stay connected and hear what is published on the new master.
func TestSentinelFailoverKeepsSubscribers(t *testing.T) {
	g := startSentinelGroups(t)
	addr, _ := startSentinelProxy(t, g)
	ch := keysOf(t, addr, g, 1)[0][0] // a channel on g0, routed like a key
	sub := proxytest.Dial(t, addr)
	for _, cmd := range [][]string{{"SUBSCRIBE", ch}, {"PSUBSCRIBE", ch + "*"}} {
		if r, err := sub.Do(cmd...); err != nil || r.IsError() {
			t.Fatalf("%q: %q %v", cmd, r.Raw(), err)
		}
	}
	g.masters[0].Kill()
	nc := g.replicas[0].Client(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		// The proxy's channel and pattern, once it subscribed there.
		r, err := nc.Do("PUBLISH", ch, "after")
		if err == nil && string(r.Raw()) == ":2\r\n" {
			break
		}
		if err != nil {
			nc = g.replicas[0].Client(t) // the node closes its clients as it changes role
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUBLISH on the new master = %q %v: the proxy did not subscribe there", r.Raw(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sub.Timeout = 10 * time.Second
	for _, want := range []string{
		fmt.Sprintf("*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$5\r\nafter\r\n", len(ch), ch),
		fmt.Sprintf("*4\r\n$8\r\npmessage\r\n$%d\r\n%s*\r\n$%d\r\n%s\r\n$5\r\nafter\r\n", len(ch)+1, ch, len(ch), ch),
	} {
		r, err := sub.Read()
		if err != nil || string(r.Raw()) != want {
			t.Fatalf("subscriber read %q %v, want %q", r.Raw(), err, want)
		}
	}
}
