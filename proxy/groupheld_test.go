package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// waitHeld waits until n requests of group i wait for its next master.
func (gp *groupPool) waitHeld(t *testing.T, i, n int) {
	t.Helper()
	g := gp.srv.poolList()[0].servers[i].group
	deadline := time.Now().Add(20 * time.Second)
	for int(g.nwaiting.Load()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("group %d holds %d requests, want %d", i, g.nwaiting.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readSkippingFlush returns c's next message that is not an invalidation
// of every key (which a tracking client gets when a connection of its
// ends, as on a failover).
func readSkippingFlush(c *rawConn) string {
	c.t.Helper()
	for {
		if r := c.read(); r != string(invalidateAll) {
			return r
		}
	}
}

// holdTrackedRead has a tracking client (OPTIN) send SET a, CLIENT
// CACHING yes and GET b in one write to a group whose master is failed
// over meanwhile, and waits until the SET and the GET are held for the
// new master. One write, so that the proxy reads it as one batch: the
// read is answered by the old master while the write before it waits,
// and waits behind it.
func holdTrackedRead(t *testing.T) (*groupPool, *rawConn) {
	t.Helper()
	gp := startGroups(t, 1, "  failover_hold: 10000\n")
	gp.tellAll()
	do(t, proxytest.Dial(t, gp.addr), "SET", "b", "v1")
	c := trackingClient(t, gp.addr, "OPTIN")
	paused := pauseWrites(t, gp.masters[0])
	var batch []byte
	for _, cmd := range [][]string{{"SET", "a", "1"}, {"CLIENT", "CACHING", "yes"}, {"GET", "b"}} {
		batch = proxytest.AppendCommand(batch, cmd...)
	}
	if _, err := c.nc.Write(batch); err != nil {
		t.Fatal(err)
	}
	failover(t, gp.masters[0], gp.replicas[0], paused)
	gp.waitHeld(t, 0, 2)
	return gp, c
}

// A tracking client's read that waited for the new master is tracked
// there: its CLIENT CACHING yes is sent again right before it.
func TestGroupResentReadKeepsClientCaching(t *testing.T) {
	gp, c := holdTrackedRead(t)
	gp.tell(0, gp.replicas[0])
	for i, want := range []string{"+OK\r\n", "+OK\r\n", "$2\r\nv1\r\n"} {
		if r := readSkippingFlush(c); r != want {
			t.Fatalf("reply %d of the held batch = %q, want %q", i, r, want)
		}
	}
	// m is read, and tracked, on the new master after the failover; an
	// invalidation of b must come before m's.
	for i, want := range []string{"+OK\r\n", "_\r\n"} {
		if i == 0 {
			c.send("CLIENT", "CACHING", "yes")
		} else {
			c.send("GET", "m")
		}
		if r := readSkippingFlush(c); r != want {
			t.Fatalf("reply %d after the failover = %q, want %q", i, r, want)
		}
	}
	nc := gp.replicas[0].Client(t)
	do(t, nc, "SET", "b", "v2")
	do(t, nc, "SET", "m", "x")
	if r := readSkippingFlush(c); r != invalidation("b") {
		t.Fatalf("after SET b on the new master: %q, want %q: the resent GET b was not tracked", r, invalidation("b"))
	}
}

// A reload that keeps a group keeps its held requests waiting: they are
// sent to its next master, through the new pool's upstream when the
// reload gave the group another one.
func TestGroupHeldRequestSurvivesReload(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		db          int
	}{
		{"same upstream", "  failover_hold: 10000\n  timeout: 5000\n", 0},
		{"new upstream", "  failover_hold: 10000\n  redis_db: 1\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gp := startGroups(t, 1, "  failover_hold: 10000\n")
			gp.tellAll()
			c := proxytest.Dial(t, gp.addr)
			paused := pauseWrites(t, gp.masters[0])
			if err := c.Send("SET", "a", "1"); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			failover(t, gp.masters[0], gp.replicas[0], paused)
			gp.waitHeld(t, 0, 1)
			if err := gp.srv.Reload(mustParse(t, fmt.Sprintf(gp.yaml, tc.extra))); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			// Past drainDelay, when the replaced pool gives back its
			// upstreams and their idle connections close.
			time.Sleep(drainDelay + 500*time.Millisecond)
			gp.tell(0, gp.replicas[0])
			r, err := c.Read()
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Raw()) != "+OK\r\n" {
				t.Fatalf("held SET across the reload = %q, want +OK", r.Raw())
			}
			nc := gp.replicas[0].Client(t)
			do(t, nc, "SELECT", fmt.Sprint(tc.db))
			if got := do(t, nc, "GET", "a"); got != "$1\r\n1\r\n" {
				t.Errorf("GET a in db %d of the new master = %q, want 1", tc.db, got)
			}
		})
	}
}

// A held request of a group that a reload removes, with its pool or
// alone, gets an error naming the group at once, not the old master's
// error after failover_hold.
func TestGroupHeldRequestOfRemovedGroupFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		// next is the config the reload installs.
		next func(gp *groupPool) string
	}{
		{"group removed", func(gp *groupPool) string {
			yaml := strings.Replace(gp.yaml, fmt.Sprintf("    - %s:1 g1\n", gp.masters[1].Addr), "", 1)
			return fmt.Sprintf(yaml, "  failover_hold: 30000\n")
		}},
		{"pool removed", func(gp *groupPool) string {
			return poolYAML(fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t)), "", gp.masters[0].Addr+":1 s0")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gp := startGroups(t, 2, "  failover_hold: 30000\n")
			gp.tellAll()
			c := proxytest.Dial(t, gp.addr)
			key := gp.keyOn(t, 1, "k")
			paused := pauseWrites(t, gp.masters[1])
			if err := c.Send("SET", key, "1"); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			failover(t, gp.masters[1], gp.replicas[1], paused)
			gp.waitHeld(t, 1, 1)
			cfg, err := config.Parse([]byte(tc.next(gp)))
			if err != nil {
				t.Fatal(err)
			}
			if err := gp.srv.Reload(cfg); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			c.Timeout = 10 * time.Second // well within failover_hold
			r, err := c.Read()
			if err != nil {
				t.Fatalf("the held SET got no reply after its group was removed: %v", err)
			}
			want := fmt.Sprintf("-ERR server g1 (%s): group g1 was removed from the configuration while the request waited for its master\r\n", gp.masters[1].Addr)
			if string(r.Raw()) != want {
				t.Errorf("held SET of the removed group = %q, want %q", r.Raw(), want)
			}
		})
	}
}

// A tracking client's read held across a reload that gives its group
// another upstream cannot be resent where it would be tracked (its own
// tracking connection belongs to the old one): it gets an error, not a
// value that no invalidation would ever follow.
func TestGroupHeldTrackedReadAcrossReloadFails(t *testing.T) {
	gp, c := holdTrackedRead(t)
	if err := gp.srv.Reload(mustParse(t, fmt.Sprintf(gp.yaml, "  failover_hold: 10000\n  redis_db: 1\n"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	gp.tell(0, gp.replicas[0])
	if r := readSkippingFlush(c); r != "+OK\r\n" {
		t.Fatalf("held SET = %q, want +OK", r)
	}
	if r := readSkippingFlush(c); r != "+OK\r\n" {
		t.Fatalf("CLIENT CACHING yes = %q, want +OK", r)
	}
	r := readSkippingFlush(c)
	if !strings.HasPrefix(r, "-ERR server g0 (") || !strings.Contains(r, "would not be tracked") {
		t.Fatalf("held tracked GET across the reload = %q, want the error that it would not be tracked", r)
	}
}
