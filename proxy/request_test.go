package proxy

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A forwarded request's server and bytes are in its slot, intact, when its
// reply arrives: so a request can be sent again or dropped until then. It
// covers every request of a pipeline long enough that the stage buffers
// grow while it is staged, the parts of a split MGET, and a lone request
// whose reply the server's reader writes directly.
func TestRequestOwnsItsBytesUntilItsReply(t *testing.T) {
	type arrival struct {
		addr, req, reply string
		direct           bool
	}
	var (
		mu       sync.Mutex
		arrivals []arrival
	)
	hook := func(s *replySlot, reply []byte) {
		a := arrival{req: string(s.req.bytes), reply: string(reply), direct: s.to != nil}
		if s.req.srv != nil {
			a.addr = s.req.srv.cfg.Addr
		}
		mu.Lock()
		arrivals = append(arrivals, a)
		mu.Unlock()
	}
	testHookDeliver.Store(&hook)
	t.Cleanup(func() { testHookDeliver.Store(nil) })
	tp := startProxy(t, 3, "")
	ours := map[string]bool{}
	for _, r := range tp.redises {
		ours[r.Addr] = true
	}
	// take returns the arrivals at this test's servers since the last call,
	// by request bytes; every reply it waits for has arrived by then.
	take := func() map[string]arrival {
		mu.Lock()
		defer mu.Unlock()
		got := map[string]arrival{}
		for _, a := range arrivals {
			if a.addr == "" || ours[a.addr] {
				if _, dup := got[a.req]; dup {
					t.Fatalf("request %q arrived twice", a.req)
				}
				got[a.req] = a
			}
		}
		arrivals = nil
		return got
	}
	check := func(got map[string]arrival, req []byte, addr, reply string) arrival {
		t.Helper()
		a, ok := got[string(req)]
		switch {
		case !ok:
			t.Fatalf("no reply arrived for request %q intact; arrivals: %+v", req, got)
		case a.addr != addr:
			t.Errorf("request %q: server %s, want %s", req, a.addr, addr)
		case a.reply != reply:
			t.Errorf("request %q: reply %q, want %q", req, a.reply, reply)
		}
		return a
	}
	c := tp.client(t)

	// A pipeline of SETs over every server.
	value := strings.Repeat("v", 200)
	var pipeline []byte
	for i := range 60 {
		pipeline = proxytest.AppendCommand(pipeline, "SET", fmt.Sprint("k", i), value)
	}
	if err := c.WriteRaw(pipeline); err != nil {
		t.Fatal(err)
	}
	for range 60 {
		if r, err := c.Read(); err != nil || string(r.Raw()) != "+OK\r\n" {
			t.Fatalf("SET: %q, %v", r.Raw(), err)
		}
	}
	got := take()
	for i := range 60 {
		key := fmt.Sprint("k", i)
		check(got, proxytest.AppendCommand(nil, "SET", key, value), tp.owner(t, key).Addr, "+OK\r\n")
	}

	// An MGET over all three servers, two keys on the first.
	var keys []string
	for i, r := range tp.redises {
		keys = append(keys, tp.keyOn(t, r, fmt.Sprint("m", i, ":")))
	}
	keys = append(keys, tp.keyOn(t, tp.redises[0], "n:"))
	for _, k := range keys {
		do(t, c, "SET", k, "val-"+k)
	}
	take()
	bulk := func(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
	var all string
	for _, k := range keys {
		all += bulk("val-" + k)
	}
	if got := do(t, c, append([]string{"MGET"}, keys...)...); got != fmt.Sprintf("*%d\r\n%s", len(keys), all) {
		t.Fatalf("MGET = %q", got)
	}
	got = take()
	check(got, proxytest.AppendCommand(nil, "MGET", keys[0], keys[3]), tp.redises[0].Addr, "*2\r\n"+bulk("val-"+keys[0])+bulk("val-"+keys[3]))
	check(got, proxytest.AppendCommand(nil, "MGET", keys[1]), tp.redises[1].Addr, "*1\r\n"+bulk("val-"+keys[1]))
	check(got, proxytest.AppendCommand(nil, "MGET", keys[2]), tp.redises[2].Addr, "*1\r\n"+bulk("val-"+keys[2]))
	if len(got) != 3 {
		t.Errorf("MGET arrived as %d parts, want 3: %+v", len(got), got)
	}

	// A lone GET, answered directly.
	if got := do(t, c, "GET", keys[1]); got != bulk("val-"+keys[1]) {
		t.Fatalf("GET = %q", got)
	}
	got = take()
	if a := check(got, proxytest.AppendCommand(nil, "GET", keys[1]), tp.redises[1].Addr, bulk("val-"+keys[1])); !a.direct {
		t.Errorf("GET was not answered directly")
	}
}
