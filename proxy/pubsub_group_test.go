package proxy

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// groupSubscriber is a client of a group pool that subscribes, speaking
// RESP2 or, after HELLO 3, RESP3.
type groupSubscriber struct {
	t     *testing.T
	proto int
	nc    net.Conn
	br    *bufio.Reader
}

func dialGroupSubscriber(t *testing.T, addr string, proto int) *groupSubscriber {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	s := &groupSubscriber{t: t, proto: proto, nc: nc, br: bufio.NewReader(nc)}
	if proto == 3 {
		if r := s.do(1, "HELLO", "3")[0]; !strings.HasPrefix(r, "%") {
			t.Fatalf("HELLO 3 = %q", r)
		}
	}
	return s
}

// do sends args and returns the n replies that follow.
func (s *groupSubscriber) do(n int, args ...string) []string {
	s.t.Helper()
	return exchange3(s.t, s.nc, s.br, []psStep{ps(n, args...)})
}

// read returns the next reply, or the error reading it.
func (s *groupSubscriber) read() (string, error) {
	s.nc.SetDeadline(time.Now().Add(10 * time.Second))
	return readResp3(s.br)
}

// push is what the client gets for raw, a RESP2 array the server sends:
// a push in RESP3.
func (s *groupSubscriber) push(raw string) string {
	if s.proto == 3 {
		return ">" + raw[1:]
	}
	return raw
}

// confirmation is a (un)subscribe confirmation in the client's protocol.
func (s *groupSubscriber) confirmation(what, name string, count int) string {
	return s.push(fmt.Sprintf("*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:%d\r\n", len(what), what, len(name), name, count))
}

// pong is PING's reply to a subscribed client.
func (s *groupSubscriber) pong() string {
	if s.proto == 3 {
		return "+PONG\r\n"
	}
	return "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
}

// expect reads the next replies and compares them with want, in order.
func (s *groupSubscriber) expect(what string, want ...string) {
	s.t.Helper()
	for i, w := range want {
		got, err := s.read()
		if err != nil {
			s.t.Fatalf("%s: reply %d: %v, want %q", what, i, err, w)
		}
		if got != w {
			s.t.Fatalf("%s: reply %d = %q, want %q", what, i, got, w)
		}
	}
}

// waitSubscribed waits until r counts one subscriber (the proxy) of the
// channel ch, one pattern and one subscriber of the shard channel sch.
func waitSubscribed(t *testing.T, r *proxytest.Redis, ch, sch string) {
	t.Helper()
	c := r.Client(t)
	want := []string{
		fmt.Sprintf("*2\r\n$%d\r\n%s\r\n:1\r\n", len(ch), ch),
		":1\r\n",
		fmt.Sprintf("*2\r\n$%d\r\n%s\r\n:1\r\n", len(sch), sch),
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := []string{do(t, c, "PUBSUB", "NUMSUB", ch), do(t, c, "PUBSUB", "NUMPAT"), do(t, c, "PUBSUB", "SHARDNUMSUB", sch)}
		if strings.Join(got, "") == strings.Join(want, "") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: NUMSUB, NUMPAT, SHARDNUMSUB = %q, want %q: the proxy did not subscribe there", r.Addr, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNoSubscriber waits until r has no client with a subscription.
func waitNoSubscriber(t *testing.T, r *proxytest.Redis) {
	t.Helper()
	c := r.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		list := do(t, c, "CLIENT", "LIST")
		subscribed := ""
		for _, line := range strings.Split(list, "\n") {
			for _, f := range strings.Fields(line) {
				if k, v, _ := strings.Cut(f, "="); (k == "sub" || k == "psub" || k == "ssub") && v != "0" {
					subscribed = line
				}
			}
		}
		if subscribed == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has a subscription connection: %s", r.Addr, subscribed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSubscriptionLost waits until the proxy saw the subscription
// connection of gp's group end.
func waitSubscriptionLost(t *testing.T, gp *groupPool) {
	t.Helper()
	up := gp.srv.poolList()[0].servers[0].up
	deadline := time.Now().Add(20 * time.Second)
	for {
		hs := &gp.srv.pubsub
		hs.mu.Lock()
		h := hs.byUp[up]
		hs.mu.Unlock()
		h.mu.Lock()
		lost := h.conn == nil
		h.mu.Unlock()
		if lost {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not notice its subscription connection end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupSubscribers subscribes two clients of gp in protocol proto: one to
// ch, a pattern and the shard channel sch, the other to ch.
func groupSubscribers(t *testing.T, gp *groupPool, proto int, ch, sch string) (all, other *groupSubscriber) {
	t.Helper()
	all = dialGroupSubscriber(t, gp.addr, proto)
	all.do(1, "SUBSCRIBE", ch)
	all.do(1, "PSUBSCRIBE", "fo*")
	if got, want := all.do(1, "SSUBSCRIBE", sch)[0], all.confirmation("ssubscribe", sch, 1); got != want {
		t.Fatalf("SSUBSCRIBE = %q, want %q", got, want)
	}
	other = dialGroupSubscriber(t, gp.addr, proto)
	other.do(1, "SUBSCRIBE", ch)
	return all, other
}

// hearMaster publishes on m, the group's master now, and checks that
// the subscribers of groupSubscribers get the messages, and nothing else,
// with their subscriptions as they were.
func hearMaster(t *testing.T, m *proxytest.Redis, all, other *groupSubscriber, ch, sch string) {
	t.Helper()
	mc := m.Client(t)
	if got := do(t, mc, "PUBLISH", ch, "after"); got != ":2\r\n" {
		t.Errorf("PUBLISH on the new master = %q, want :2 (the proxy's channel and pattern)", got)
	}
	if got := do(t, mc, "SPUBLISH", sch, "shard"); got != ":1\r\n" {
		t.Errorf("SPUBLISH on the new master = %q, want :1", got)
	}
	all.expect("messages from the new master", all.push(message(ch, "after")), all.push(pmessage("fo*", ch, "after")), all.push(smessage(sch, "shard")))
	other.expect("message from the new master", other.push(message(ch, "after")))
	all.do(0, "PING")
	all.expect("PING after the move", all.pong())
	all.do(0, "UNSUBSCRIBE")
	all.expect("UNSUBSCRIBE after the move", all.confirmation("unsubscribe", ch, 1))
	all.do(0, "PUNSUBSCRIBE")
	all.expect("PUNSUBSCRIBE after the move", all.confirmation("punsubscribe", "fo*", 0))
	all.do(0, "SUNSUBSCRIBE")
	all.expect("SUNSUBSCRIBE after the move", all.confirmation("sunsubscribe", sch, 0))
	other.do(0, "PING")
	other.expect("PING after the move", other.pong())
}

// A group's subscription connection follows its master: after a failover
// the proxy's subscriptions are on the new master, once, and none is left
// on the old one, and the clients notice nothing.
func TestPubSubFollowsGroupFailover(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			gp := startGroups(t, 1, "")
			gp.tellAll()
			ch, sch := "foo", "shardfoo"
			all, other := groupSubscribers(t, gp, proto, ch, sch)
			waitSubscribed(t, gp.masters[0], ch, sch)
			failover(t, gp.masters[0], gp.replicas[0], nil)
			gp.tell(0, gp.replicas[0])
			waitSubscribed(t, gp.replicas[0], ch, sch)
			waitNoSubscriber(t, gp.masters[0])
			hearMaster(t, gp.replicas[0], all, other, ch, sch)
		})
	}
}

// A group's master killed: its subscribers stay connected and subscribed,
// a subscription while no master is confirmed gets the group's error, and
// once the next master is confirmed the subscriptions are there.
func TestPubSubGroupMasterKilled(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			gp := startGroups(t, 1, "")
			gp.tellAll()
			ch, sch := "foo", "shardfoo"
			all, other := groupSubscribers(t, gp, proto, ch, sch)
			waitSubscribed(t, gp.masters[0], ch, sch)
			gp.masters[0].Kill()
			waitSubscriptionLost(t, gp)
			for _, s := range []*groupSubscriber{all, other} {
				s.do(0, "PING")
				s.expect("PING after the master died", s.pong())
			}
			gp.srv.SetGroupMasters("alpha", map[string]GroupMaster{"g0": {Source: "test"}})
			late := dialGroupSubscriber(t, gp.addr, proto)
			set := late.do(1, "SET", "k", "v")[0]
			if !strings.Contains(set, "group g0 has no confirmed master") {
				t.Fatalf("SET without a master = %q, want the group's error", set)
			}
			for _, cmd := range [][]string{{"SUBSCRIBE", ch}, {"SUBSCRIBE", "other"}, {"PSUBSCRIBE", "x*"}} {
				if got := late.do(1, cmd...)[0]; got != set {
					t.Errorf("%q without a master = %q, want %q as SET gets", cmd, got, set)
				}
			}
			if got := late.do(1, "PING")[0]; got != "+PONG\r\n" {
				t.Errorf("PING after the refused subscriptions = %q, want +PONG: not subscribed", got)
			}
			do(t, gp.replicas[0].Client(t), "REPLICAOF", "NO", "ONE")
			gp.tell(0, gp.replicas[0])
			waitSubscribed(t, gp.replicas[0], ch, sch)
			hearMaster(t, gp.replicas[0], all, other, ch, sch)
		})
	}
}

// A group's subscription connection lost while its master stays (killed
// on the master): the proxy subscribes again there, after the group's
// backoff, and its clients stay subscribed.
func TestPubSubGroupSubscriptionReconnects(t *testing.T) {
	gp := startGroups(t, 1, "")
	gp.tellAll()
	ch, sch := "foo", "shardfoo"
	all, other := groupSubscribers(t, gp, 2, ch, sch)
	waitSubscribed(t, gp.masters[0], ch, sch)
	if got := do(t, gp.masters[0].Client(t), "CLIENT", "KILL", "TYPE", "pubsub"); got != ":1\r\n" {
		t.Fatalf("CLIENT KILL TYPE pubsub on the master = %q, want :1", got)
	}
	waitSubscribed(t, gp.masters[0], ch, sch)
	hearMaster(t, gp.masters[0], all, other, ch, sch)
}
