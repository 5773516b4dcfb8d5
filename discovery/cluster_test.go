package discovery

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// clusterWait bounds every wait for the watcher to see a change; a
// failover takes a few node timeouts.
const clusterWait = 60 * time.Second

// clusterRun is a running ClusterWatcher with its OnChange calls and logs.
type clusterRun struct {
	watchRun[ClusterMap]
	w *ClusterWatcher
}

// startClusterWatcher runs a watcher with opts, logging at Debug into a
// buffer that is dumped if the test fails, and stops it in t's cleanup.
func startClusterWatcher(t *testing.T, opts ClusterOptions) *clusterRun {
	t.Helper()
	r := &clusterRun{}
	opts.Logger = r.logger()
	opts.OnChange = r.record
	w, err := NewClusterWatcher(opts)
	if err != nil {
		t.Fatalf("NewClusterWatcher: %v", err)
	}
	r.w = w
	r.start(t, w.Run)
	return r
}

// waitMap pokes and polls Snapshot until ok accepts the map, and returns
// it. It fails t after clusterWait, with the last map.
func (r *clusterRun) waitMap(t *testing.T, what string, ok func(*ClusterMap) bool) ClusterMap {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		m := r.w.Snapshot()
		if ok(&m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no map where %s after %v; last: %s", what, clusterWait, describeMap(&m))
		}
		r.w.Poke()
		time.Sleep(20 * time.Millisecond)
	}
}

// waitChange waits until the last OnChange call had m.
func (r *clusterRun) waitChange(t *testing.T, m *ClusterMap) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		changes := r.changeList()
		if len(changes) > 0 && changes[len(changes)-1].routedEqual(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last of %d OnChange calls does not have the map %s", len(changes), describeMap(m))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// describeMap renders a map's slot ranges and nodes for a failure.
func describeMap(m *ClusterMap) string {
	var b strings.Builder
	fmt.Fprintf(&b, "epoch %d from %s; slots:", m.Epoch, m.From)
	for s := 0; s < hashring.SlotCount; {
		e := s
		for e+1 < hashring.SlotCount && m.Slots[e+1] == m.Slots[s] {
			e++
		}
		fmt.Fprintf(&b, " %d-%d:%d", s, e, m.Slots[s])
		s = e + 1
	}
	for i, n := range m.Nodes {
		fmt.Fprintf(&b, "\n  %d %+v", i, n)
	}
	return b.String()
}

// matches reports whether m gives every slot the owner view names, at
// that node's address.
func matches(c *proxytest.Cluster, m *ClusterMap, owners [hashring.SlotCount]string) bool {
	for s, id := range owners {
		n, ok := m.Owner(s)
		if !ok || n.ID != id || c.Node(id) == nil || n.Addr != c.Node(id).Addr {
			return false
		}
	}
	return true
}

// shardsOwners asks n CLUSTER SHARDS and returns who serves each slot.
func shardsOwners(t *testing.T, n *proxytest.ClusterNode) [hashring.SlotCount]string {
	t.Helper()
	rep, err := n.Client(t).Do("CLUSTER", "SHARDS")
	if err != nil {
		t.Fatalf("CLUSTER SHARDS on %s: %v", n.Addr, err)
	}
	v, err := readRESP(bufio.NewReader(bytes.NewReader(rep.Raw())))
	if err != nil {
		t.Fatalf("CLUSTER SHARDS on %s: %v", n.Addr, err)
	}
	l, err := parseClusterShards(v, false)
	if err != nil {
		t.Fatalf("CLUSTER SHARDS on %s: %v", n.Addr, err)
	}
	var owners [hashring.SlotCount]string
	for _, r := range l.ranges {
		for s := r.first; s <= r.last; s++ {
			owners[s] = r.id
		}
	}
	return owners
}

// slotsOf returns the slots owners gives id.
func slotsOf(owners [hashring.SlotCount]string, id string) []int {
	var out []int
	for s, o := range owners {
		if o == id {
			out = append(out, s)
		}
	}
	return out
}

func TestClusterWatcherFollowsCluster(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	r := startClusterWatcher(t, ClusterOptions{Seeds: c.Seeds()[:1], Poll: time.Hour, Asks: len(c.Nodes)})

	// The first map: what every node says in CLUSTER SHARDS and NODES.
	owners := c.View(t, c.Nodes[0]).Owners
	m := r.waitMap(t, "every slot is served as CLUSTER NODES says", func(m *ClusterMap) bool { return matches(c, m, owners) })
	for _, n := range c.Nodes {
		if got := shardsOwners(t, n); got != owners {
			t.Fatalf("%s's CLUSTER SHARDS disagrees with CLUSTER NODES", n.Addr)
		}
	}
	if len(m.Nodes) != 6 {
		t.Errorf("the map has %d nodes, want 6: %s", len(m.Nodes), describeMap(&m))
	}
	for i, n := range m.Nodes {
		if want := i < 3; n.Master != want {
			t.Errorf("Nodes[%d].Master = %v, want masters first: %s", i, n.Master, describeMap(&m))
		}
		if !n.Master && n.MasterID != m.Nodes[i-3].ID {
			t.Errorf("Nodes[%d] is a replica of %s, want %s (replicas in their masters' order)", i, n.MasterID, m.Nodes[i-3].ID)
		}
	}
	for i := range 20 {
		key := "key:" + strconv.Itoa(i)
		slot := c.KeySlot(t, key)
		owner, _ := m.Owner(slot)
		node := c.Node(owner.ID)
		if rep, err := node.Client(t).Do("SET", key, "v"); err != nil || rep.String() != "+OK" {
			t.Errorf("SET %s on %s, the map's owner of slot %d: %v %v", key, owner.Addr, slot, rep, err)
		}
	}

	// Resharding: the watcher follows when poked.
	from, _ := m.Owner(0)
	to, _ := m.Owner(hashring.SlotCount - 1)
	c.Reshard(t, from.ID, to.ID, 100)
	owners = c.View(t, c.Nodes[0]).Owners
	if got := len(slotsOf(owners, to.ID)) - len(slotsOf(ownerIDs(&m), to.ID)); got != 100 {
		t.Fatalf("Reshard moved %d slots, want 100", got)
	}
	r.waitMap(t, "the resharded slots follow", func(m *ClusterMap) bool { return matches(c, m, owners) })

	// Failover: the killed master's slots go to its promoted replica.
	victim := c.Node(to.ID)
	var replica string
	for id, master := range c.View(t, c.Nodes[0]).Master {
		if master == victim.ID {
			replica = id
		}
	}
	victim.Kill()
	c.WaitStable(t)
	owners = c.View(t, c.Node(replica)).Owners
	if got := slotsOf(owners, replica); len(got) == 0 {
		t.Fatalf("after the failover %s serves no slots", replica)
	}
	m = r.waitMap(t, "the promoted replica serves the killed master's slots", func(m *ClusterMap) bool { return matches(c, m, owners) })
	for _, n := range m.Nodes {
		if n.ID == victim.ID && (n.Health != "fail" || slices.Contains(m.Slots[:], int32(slices.Index(m.Nodes, n)))) {
			t.Errorf("the killed master is listed as %+v, want failed and serving nothing", n)
		}
	}
	r.waitChange(t, &m)
	if !strings.Contains(r.logs.String(), "cluster slot map changed") {
		t.Errorf("no slot map change logged")
	}
}

// ownerIDs returns the ID of each slot's owner in m, "" for none.
func ownerIDs(m *ClusterMap) [hashring.SlotCount]string {
	var out [hashring.SlotCount]string
	for s := range out {
		if n, ok := m.Owner(s); ok {
			out[s] = n.ID
		}
	}
	return out
}

// A master paused through its own failover that comes back stale (here:
// killed while paused and restarted from its nodes.conf while every other
// node is paused, so that it claims its slots at its old epoch and is the
// only node that answers) must not take them back.
func TestClusterWatcherPausedMasterStaysDemoted(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	r := startClusterWatcher(t, ClusterOptions{Seeds: c.Seeds(), Poll: 20 * time.Millisecond, Asks: len(c.Nodes), Timeout: 500 * time.Millisecond})
	owners := c.View(t, c.Nodes[0]).Owners
	r.waitMap(t, "the first map", func(m *ClusterMap) bool { return matches(c, m, owners) })
	old := c.Node(owners[0])
	var others []*proxytest.ClusterNode
	for _, n := range c.Nodes {
		if n != old {
			others = append(others, n)
		}
	}
	old.Pause()
	c.WaitStable(t) // the replica is promoted
	owners = c.View(t, others[0]).Owners
	if owners[0] == old.ID {
		t.Fatal("slot 0 was not failed over")
	}
	r.waitMap(t, "slot 0 is served by the promoted replica", func(m *ClusterMap) bool { return matches(c, m, owners) })

	// Now only the old master answers, and it has heard of no failover: a
	// resumed process would read the news the others queued on its
	// cluster bus while it was stopped, a restarted one has none.
	old.Kill()
	for _, n := range others {
		n.Pause()
	}
	stale := len(r.changeList())
	old.Restart(t)
	heard := old.Addr + " (current epoch"
	deadline := time.Now().Add(clusterWait)
	flipped := func() bool { m := r.w.Snapshot(); n, _ := m.Owner(0); return n.ID == old.ID }
	for !strings.Contains(r.logs.String(), heard) && !flipped() {
		if time.Now().After(deadline) {
			t.Fatalf("the old master's stale answer was never heard (no %q logged)", heard)
		}
		r.w.Poke()
		time.Sleep(20 * time.Millisecond)
	}
	m := r.w.Snapshot()
	if !matches(c, &m, owners) {
		t.Errorf("after the old master's stale answer the map is %s", describeMap(&m))
	}
	for i, m := range r.changeList()[stale:] {
		if n, _ := m.Owner(0); n.ID == old.ID {
			t.Errorf("OnChange call %d gives slot 0 back to the old master: %s", stale+i, describeMap(&m))
		}
	}

	// Everyone back: the watcher follows whatever the cluster settles on
	// (the pause may have cost another failover).
	for _, n := range others {
		n.Resume()
	}
	c.WaitStable(t)
	owners = c.View(t, others[0]).Owners
	r.waitMap(t, "the map follows the cluster again", func(m *ClusterMap) bool { return matches(c, m, owners) })
}

func TestClusterWatcherAuthSeedsAndStop(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0, proxytest.RedisPassword("s3cret"))
	owners := c.View(t, c.Nodes[0]).Owners

	t.Run("wrong password", func(t *testing.T) {
		r := startClusterWatcher(t, ClusterOptions{Seeds: c.Seeds(), Password: "wrong", Poll: 50 * time.Millisecond})
		deadline := time.Now().Add(clusterWait)
		for !strings.Contains(r.logs.String(), "WRONGPASS") {
			if time.Now().After(deadline) {
				t.Fatal("no WRONGPASS logged")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if m := r.w.Snapshot(); len(m.Nodes) != 0 || m.Slots[0] != -1 {
			t.Errorf("with a wrong password the map is %s, want empty", describeMap(&m))
		}
	})
	t.Run("no password", func(t *testing.T) {
		r := startClusterWatcher(t, ClusterOptions{Seeds: c.Seeds(), Poll: 50 * time.Millisecond})
		deadline := time.Now().Add(clusterWait)
		for !strings.Contains(r.logs.String(), "NOAUTH") {
			if time.Now().After(deadline) {
				t.Fatal("no NOAUTH logged")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("SetSeeds, Snapshot and stop", func(t *testing.T) {
		r := startClusterWatcher(t, ClusterOptions{Seeds: []string{"127.0.0.1:1"}, Password: "s3cret", Poll: time.Hour})
		if m := r.w.Snapshot(); len(m.Nodes) != 0 {
			t.Errorf("before any answer the map is %s, want empty", describeMap(&m))
		}
		r.w.SetSeeds([]string{"not an address", c.Nodes[1].Addr})
		m := r.waitMap(t, "the map from the new seed", func(m *ClusterMap) bool { return matches(c, m, owners) })
		if len(m.Nodes) != 3 || m.From == "" || m.Epoch == 0 {
			t.Errorf("the map is %s, want 3 nodes, From and Epoch", describeMap(&m))
		}
		// Snapshot is a copy.
		m.Nodes[0].Addr, m.Slots[0] = "changed", 7
		if again := r.w.Snapshot(); again.Nodes[0].Addr == "changed" || again.Slots[0] == 7 {
			t.Error("changing a Snapshot changed the watcher's map")
		}
		cl := c.Nodes[1].Client(t)
		waitClientsNamed(t, cl, clusterClientName, 1)
		r.stop(t)
		waitClientsNamed(t, cl, clusterClientName, 0)
		waitGoroutinesGone(t, "ClusterWatcher", "clusterConn")
		if err := r.w.Run(context.Background()); err == nil {
			t.Error("a second Run returned nil, want an error")
		}
	})
}

func TestNewClusterWatcherChecksOptions(t *testing.T) {
	tests := []struct {
		name string
		opts ClusterOptions
		err  string
	}{
		{"no seeds", ClusterOptions{}, "no Seeds"},
		{"bad seed", ClusterOptions{Seeds: []string{"127.0.0.1"}}, `Seeds[0]: "127.0.0.1"`},
		{"username alone", ClusterOptions{Seeds: []string{"127.0.0.1:1"}, Username: "u"}, "needs a Password"},
		{"negative asks", ClusterOptions{Seeds: []string{"127.0.0.1:1"}, Asks: -1}, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewClusterWatcher(tc.opts); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NewClusterWatcher = %v, want an error with %q", err, tc.err)
			}
		})
	}
	w, err := NewClusterWatcher(ClusterOptions{Seeds: []string{"127.0.0.1:1"}})
	if err != nil || w.opts.Poll != DefaultClusterPoll || w.opts.Timeout != DefaultClusterTimeout || w.opts.Asks != DefaultClusterAsks {
		t.Errorf("NewClusterWatcher = %+v, %v; want the defaults", w, err)
	}
}

// Fabricated answers for the merge: node IDs are 40 hex digits made from
// one letter.

func nodeID(c byte) string { return strings.Repeat(string(c), 40) }

type fakeNode struct {
	id     byte
	epoch  uint64
	master byte // for a replica
	failed bool
	slots  [][2]int
}

func fakeAnswer(from string, current uint64, nodes ...fakeNode) clusterAnswer {
	a := clusterAnswer{from: from, currentEpoch: current, nodes: make(map[string]clusterNodeInfo)}
	for _, n := range nodes {
		info := clusterNodeInfo{ClusterNode: ClusterNode{
			ID: nodeID(n.id), Addr: fmt.Sprintf("127.0.0.1:%d", 7000+int(n.id)), ConfigEpoch: n.epoch, Master: n.master == 0,
		}, failed: n.failed}
		info.Announced = info.Addr
		if n.master != 0 {
			info.MasterID = nodeID(n.master)
		}
		if n.failed {
			info.Health = "fail"
		}
		a.nodes[info.ID] = info
		for _, r := range n.slots {
			for s := r[0]; s <= r[1]; s++ {
				a.owner[s] = info.ID
			}
		}
	}
	return a
}

// TestMergeCluster covers the merge rule of ClusterWatcher's doc, one
// clause at a time.
func TestMergeCluster(t *testing.T) {
	all := [][2]int{{0, hashring.SlotCount - 1}}
	low := [][2]int{{0, 8191}}
	high := [][2]int{{8192, hashring.SlotCount - 1}}
	// The healthy cluster: a (epoch 1) serves low, b (epoch 2) high, c
	// replicates a.
	healthy := func(from string, current uint64) clusterAnswer {
		return fakeAnswer(from, current,
			fakeNode{id: 'a', epoch: 1, slots: low}, fakeNode{id: 'b', epoch: 2, slots: high}, fakeNode{id: 'c', epoch: 1, master: 'a'})
	}
	// After c took over from a at epoch 3.
	failedOver := func(from string, current uint64) clusterAnswer {
		return fakeAnswer(from, current,
			fakeNode{id: 'a', epoch: 1, failed: true}, fakeNode{id: 'b', epoch: 2, slots: high}, fakeNode{id: 'c', epoch: 3, slots: low})
	}
	// a, cut off, still claims low at epoch 1 and knows nothing newer.
	stale := func(from string) clusterAnswer {
		return fakeAnswer(from, 2, fakeNode{id: 'a', epoch: 1, slots: low}, fakeNode{id: 'b', epoch: 2, slots: high}, fakeNode{id: 'c', epoch: 1, master: 'a'})
	}
	type want struct {
		low, high byte // owner of slot 0 and of the last slot; 0 for none
		epoch     uint64
		dispute   bool
	}
	tests := []struct {
		name    string
		answers []clusterAnswer
		prev    *clusterAnswer
		want    want
		order   string // the nodes' IDs' letters, in order; "" to skip
	}{
		{"one answer", []clusterAnswer{healthy("n1", 2)}, nil, want{'a', 'b', 2, false}, ""},
		{"all agree", []clusterAnswer{healthy("n1", 2), healthy("n2", 2), healthy("n3", 2)}, nil, want{'a', 'b', 2, false}, "abc"},
		{"higher config epoch wins a slot at the same current epoch",
			[]clusterAnswer{healthy("n1", 3), failedOverUnflagged("n2", 3)}, nil, want{'c', 'b', 3, true}, ""},
		{"a lower current epoch cannot take a slot",
			[]clusterAnswer{failedOver("n1", 3), stale("a")}, nil, want{'c', 'b', 3, true}, "cba"},
		{"a stale answer first in the list changes nothing",
			[]clusterAnswer{stale("a"), failedOver("n1", 3), failedOver("n2", 3)}, nil, want{'c', 'b', 3, true}, ""},
		{"a lower current epoch loses a slot even at a higher config epoch",
			[]clusterAnswer{fakeAnswer("n1", 5, fakeNode{id: 'b', epoch: 2, slots: all}), fakeAnswer("n2", 4, fakeNode{id: 'd', epoch: 3, slots: high})},
			nil, want{'b', 'b', 5, true}, ""},
		{"a lower current epoch fills a gap",
			[]clusterAnswer{fakeAnswer("n1", 5, fakeNode{id: 'b', epoch: 2, slots: high}), fakeAnswer("n2", 4, fakeNode{id: 'a', epoch: 1, slots: all})},
			nil, want{'a', 'b', 5, true}, ""},
		{"a gap is not filled with a node the first tier calls a replica",
			[]clusterAnswer{fakeAnswer("n1", 5, fakeNode{id: 'b', epoch: 2, slots: high}, fakeNode{id: 'a', epoch: 1, master: 'b'}),
				fakeAnswer("n2", 4, fakeNode{id: 'a', epoch: 1, slots: all})},
			nil, want{0, 'b', 5, true}, ""},
		{"a failed master owns nothing", []clusterAnswer{fakeAnswer("n1", 3, fakeNode{id: 'a', epoch: 1, failed: true, slots: low}, fakeNode{id: 'b', epoch: 2, slots: high})},
			nil, want{0, 'b', 3, false}, ""},
		{"a master failed in one first-tier answer owns nothing by another",
			[]clusterAnswer{healthy("n1", 2), fakeAnswer("n2", 2, fakeNode{id: 'a', epoch: 1, failed: true}, fakeNode{id: 'b', epoch: 2, slots: high})},
			nil, want{0, 'b', 2, true}, ""},
		{"a failed master does not fill a gap",
			[]clusterAnswer{fakeAnswer("n1", 5, fakeNode{id: 'b', epoch: 2, slots: high}), fakeAnswer("n2", 4, fakeNode{id: 'a', epoch: 1, failed: true, slots: all})},
			nil, want{0, 'b', 5, false}, ""},
		{"the map held stands when only a node behind answers",
			[]clusterAnswer{stale("a")}, ptr(failedOver("n1", 3)), want{'c', 'b', 3, true}, ""},
		{"the map held is filled by a node behind",
			[]clusterAnswer{fakeAnswer("a", 2, fakeNode{id: 'a', epoch: 1, slots: all})},
			ptr(fakeAnswer("n1", 3, fakeNode{id: 'b', epoch: 2, slots: high}, fakeNode{id: 'x', epoch: 1, master: 'b'}, fakeNode{id: 'y', epoch: 1, master: 'b'}, fakeNode{id: 'z', epoch: 1, master: 'b'})),
			want{'a', 'b', 3, true}, ""},
		{"nodes behind that the map held knows cannot flip it, however many answer",
			[]clusterAnswer{healthy("n1", 2), healthy("n2", 2), healthy("n3", 2)}, ptr(failedOver("n1", 9)), want{'c', 'b', 9, true}, ""},
		{"a recreated cluster (new node IDs, epochs from the start) is followed",
			[]clusterAnswer{fakeAnswer("n1", 1, fakeNode{id: 'd', epoch: 1, slots: low}, fakeNode{id: 'e', epoch: 1, slots: high})},
			ptr(failedOver("n1", 9)), want{'d', 'e', 1, false}, ""},
		{"a node that has not joined yet cannot empty the map",
			[]clusterAnswer{fakeAnswer("n9", 0, fakeNode{id: 'f', epoch: 0})},
			ptr(failedOver("n1", 9)), want{'c', 'b', 9, false}, ""},
		{"the map held loses to a newer answer",
			[]clusterAnswer{failedOver("n1", 3)}, ptr(healthy("n1", 2)), want{'c', 'b', 3, false}, ""},
		{"a tie of config epochs goes to more answers",
			[]clusterAnswer{fakeAnswer("n1", 2, fakeNode{id: 'b', epoch: 2, slots: all}), fakeAnswer("n2", 2, fakeNode{id: 'a', epoch: 2, slots: all}), fakeAnswer("n3", 2, fakeNode{id: 'a', epoch: 2, slots: all})},
			nil, want{'a', 'a', 2, true}, ""},
		{"a tie of config epochs and answers goes to the lower ID",
			[]clusterAnswer{fakeAnswer("n1", 2, fakeNode{id: 'b', epoch: 2, slots: all}), fakeAnswer("n2", 2, fakeNode{id: 'a', epoch: 2, slots: all})},
			nil, want{'a', 'a', 2, true}, ""},
		{"an unmapped node owns nothing", []clusterAnswer{unmapped(healthy("n1", 2), 'a')}, nil, want{0, 'b', 2, false}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeCluster(slices.Clone(tc.answers), tc.prev)
			m := got.view
			owner := func(s int) byte {
				n, ok := m.Owner(s)
				if !ok {
					return 0
				}
				return n.ID[0]
			}
			if owner(0) != tc.want.low || owner(hashring.SlotCount-1) != tc.want.high || m.Epoch != tc.want.epoch || (got.dispute != "") != tc.want.dispute {
				t.Errorf("merge: slot 0 %q, last slot %q, epoch %d, dispute %q; want %q, %q, %d, dispute %v\n%s",
					owner(0), owner(hashring.SlotCount-1), m.Epoch, got.dispute, tc.want.low, tc.want.high, tc.want.epoch, tc.want.dispute, describeMap(&m))
			}
			checkMapShape(t, &m)
			if tc.order != "" {
				var order []byte
				for _, n := range m.Nodes {
					order = append(order, n.ID[0])
				}
				if string(order) != tc.order {
					t.Errorf("nodes in order %q, want %q: %s", order, tc.order, describeMap(&m))
				}
			}
		})
	}
}

// failedOverUnflagged is failedOver by a node that has not flagged a fail
// yet but has heard c's new epoch.
func failedOverUnflagged(from string, current uint64) clusterAnswer {
	return fakeAnswer(from, current, fakeNode{id: 'a', epoch: 1, slots: nil}, fakeNode{id: 'b', epoch: 2, slots: [][2]int{{8192, hashring.SlotCount - 1}}},
		fakeNode{id: 'c', epoch: 3, slots: [][2]int{{0, 8191}}})
}

func unmapped(a clusterAnswer, id byte) clusterAnswer {
	n := a.nodes[nodeID(id)]
	n.Addr = ""
	a.nodes[nodeID(id)] = n
	return a
}

// checkMapShape checks what every map must be: slots index masters,
// masters come first, owners ordered by first slot.
func checkMapShape(t *testing.T, m *ClusterMap) {
	t.Helper()
	firstSlot := make(map[int32]int)
	for s, i := range m.Slots {
		if i < -1 || int(i) >= len(m.Nodes) || (i >= 0 && !m.Nodes[i].Master) {
			t.Fatalf("Slots[%d] = %d, not a master's index: %s", s, i, describeMap(m))
		}
		if _, ok := firstSlot[i]; !ok && i >= 0 {
			firstSlot[i] = s
		}
	}
	seenReplica := false
	for i, n := range m.Nodes {
		if !n.Master {
			seenReplica = true
		} else if seenReplica {
			t.Fatalf("master %d after a replica: %s", i, describeMap(m))
		}
		if i > 0 {
			a, aok := firstSlot[int32(i-1)]
			b, bok := firstSlot[int32(i)]
			if bok && (!aok || a > b) {
				t.Fatalf("owners not ordered by first slot: %s", describeMap(m))
			}
		}
	}
}

// fuzzSeeds reads one fuzz target's seed corpus (testdata/fuzz/target):
// replies captured from redis-server 7.0, and garbage.
func fuzzSeeds(t testing.TB, target string) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, lit, ok := strings.Cut(string(b), "\n[]byte(")
		lit = strings.TrimSuffix(strings.TrimSpace(lit), ")")
		s, err := strconv.Unquote(lit)
		if !ok || err != nil {
			t.Fatalf("%s: not a corpus file: %v", e.Name(), err)
		}
		out[e.Name()] = []byte(s)
	}
	return out
}

func readSeed(t *testing.T, seeds map[string][]byte, name string) respValue {
	t.Helper()
	data, ok := seeds[name]
	if !ok {
		t.Fatalf("no seed %s", name)
	}
	v, err := readRESP(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("readRESP(%q): %v", data, err)
	}
	return v
}

// Guards that a watcher speaking TLS dials the nodes of a tls-cluster at
// their TLS ports, which CLUSTER SHARDS gives beside the plain ones.
func TestParseClusterShardsTLSPort(t *testing.T) {
	const id = "d9c393052ec35c695c9b87abf2590025b3d68964"
	node := func(fields ...string) string {
		out := fmt.Sprintf("*%d\r\n", len(fields)+6)
		for _, f := range append([]string{"id", id, "ip", "10.0.0.1", "role", "master"}, fields...) {
			out += fmt.Sprintf("$%d\r\n%s\r\n", len(f), f)
		}
		return out
	}
	for _, tc := range []struct {
		node    string
		overTLS bool
		want    string
	}{
		{node("port", "6379", "tls-port", "6380"), false, "10.0.0.1:6379"},
		{node("port", "6379", "tls-port", "6380"), true, "10.0.0.1:6380"},
		{node("tls-port", "6380"), false, "10.0.0.1:6380"},
		{node("port", "6379"), true, "10.0.0.1:6379"},
	} {
		data := "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n" + tc.node
		v, err := readRESP(bufio.NewReader(strings.NewReader(data)))
		if err != nil {
			t.Fatal(err)
		}
		l, err := parseClusterShards(v, tc.overTLS)
		if err != nil {
			t.Fatalf("parseClusterShards(%q, %v): %v", data, tc.overTLS, err)
		}
		if got := l.nodes[id].announced; got != tc.want {
			t.Errorf("parseClusterShards(%q, %v): node at %q, want %q", data, tc.overTLS, got, tc.want)
		}
	}
}

func TestParseClusterReplies(t *testing.T) {
	shards, slots, nodes := fuzzSeeds(t, "FuzzClusterShards"), fuzzSeeds(t, "FuzzClusterSlots"), fuzzSeeds(t, "FuzzClusterNodes")
	const m1, m2, m3 = "d9c393052ec35c695c9b87abf2590025b3d68964", "11bea70e8b7354841e68abef519a72fe85708bfb", "5688660bc58e1d561a5e3b6592060459e7ec858a"
	const promoted = "638b24d099e54cd98807934f0f1c8b69cab8747b"
	parseClusterShards := func(v respValue) (clusterLayout, error) { return parseClusterShards(v, false) }

	// The captured 3x1 cluster, with cluster-announce-hostname set.
	for _, tc := range []struct {
		seed  string
		parse func(respValue) (clusterLayout, error)
		owner map[int]string
	}{
		{"shards_3x1_hostnames", parseClusterShards, map[int]string{0: m1, 5460: m1, 5461: m2, 16383: m3}},
		{"slots_3x1_hostnames", parseClusterSlots, map[int]string{0: m1, 5460: m1, 5461: m2, 16383: m3}},
		{"shards_failed_over", parseClusterShards, map[int]string{0: m1, 5461: promoted, 16383: m3}},
		{"slots_failed_over", parseClusterSlots, map[int]string{0: m1, 5461: promoted, 16383: m3}},
	} {
		seeds := shards
		if strings.HasPrefix(tc.seed, "slots") {
			seeds = slots
		}
		l, err := tc.parse(readSeed(t, seeds, tc.seed))
		if err != nil {
			t.Fatalf("%s: %v", tc.seed, err)
		}
		nodeSeed := "nodes_3x1_hostnames"
		if strings.HasSuffix(tc.seed, "failed_over") {
			nodeSeed = "nodes_failed_over"
		}
		ns, err := parseClusterNodes(readSeed(t, nodes, nodeSeed))
		if err != nil {
			t.Fatalf("%s: %v", nodeSeed, err)
		}
		a := newClusterAnswer("x", clusterInfo{currentEpoch: 7}, ns, l)
		for s, id := range tc.owner {
			if a.owner[s] != id {
				t.Errorf("%s: slot %d served by %q, want %q", tc.seed, s, a.owner[s], id)
			}
		}
		n := a.nodes[m1]
		if n.Announced != "127.0.0.1:7201" || n.Hostname != "node-7201.redis" || !n.Master || n.ConfigEpoch != 1 {
			t.Errorf("%s: node %+v, want 127.0.0.1:7201, node-7201.redis, master, epoch 1", tc.seed, n)
		}
		if strings.HasPrefix(tc.seed, "shards") && n.Health != "online" {
			t.Errorf("%s: health %q, want online", tc.seed, n.Health)
		}
		if strings.HasSuffix(tc.seed, "failed_over") {
			if old := a.nodes[m2]; !old.failed || old.Health != "fail" {
				t.Errorf("%s: the killed master is %+v, want failed", tc.seed, old)
			}
			if p := a.nodes[promoted]; !p.Master || p.ConfigEpoch != 7 {
				t.Errorf("%s: the promoted replica is %+v, want master at epoch 7", tc.seed, p)
			}
		}
	}
	if ns, err := parseClusterNodes(readSeed(t, nodes, "nodes_migrating")); err != nil || len(ns) != 6 {
		t.Errorf("nodes_migrating: %d nodes, %v; want 6", len(ns), err)
	}
	if ns, err := parseClusterNodes(readSeed(t, nodes, "handshake_noaddr")); err != nil || len(ns) != 1 {
		t.Errorf("handshake_noaddr: %d nodes, %v; want the one with an address", len(ns), err)
	}
	if l, err := parseClusterSlots(readSeed(t, slots, "unknown_endpoint")); err != nil || len(l.ranges) != 1 || len(l.nodes) != 0 {
		t.Errorf("unknown_endpoint: %+v, %v; want the range and no address", l, err)
	}

	errs := []struct {
		target, seed, err string
		parse             func(respValue) (clusterLayout, error)
	}{
		{"FuzzClusterShards", "error_cluster_disabled", "cluster support disabled", parseClusterShards},
		{"FuzzClusterShards", "garbage_slot_out_of_range", "not a range of slots", parseClusterShards},
		{"FuzzClusterShards", "garbage_slots_reversed", "not a range of slots", parseClusterShards},
		{"FuzzClusterShards", "garbage_two_masters", "two masters", parseClusterShards},
		{"FuzzClusterShards", "garbage_no_master", "slots and no master", parseClusterShards},
		{"FuzzClusterShards", "garbage_bad_id", "node ID", parseClusterShards},
		{"FuzzClusterShards", "garbage_port_zero", "not an address", parseClusterShards},
		{"FuzzClusterShards", "garbage_odd_slots", "slots in pairs", parseClusterShards},
		{"FuzzClusterShards", "garbage_integer", "want an array", parseClusterShards},
		{"FuzzClusterSlots", "garbage_short_range", "want [first, last, master", parseClusterSlots},
		{"FuzzClusterSlots", "garbage_node_no_id", "want [ip, port, id", parseClusterSlots},
		{"FuzzClusterSlots", "garbage_out_of_range", "not a range of slots", parseClusterSlots},
		{"FuzzClusterSlots", "error_unknown_subcommand", "unknown subcommand", parseClusterSlots},
	}
	all := map[string]map[string][]byte{"FuzzClusterShards": shards, "FuzzClusterSlots": slots}
	for _, tc := range errs {
		if l, err := tc.parse(readSeed(t, all[tc.target], tc.seed)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %+v, %v; want an error with %q", tc.seed, l, err, tc.err)
		}
	}
	for seed, want := range map[string]string{
		"garbage_short_line": "want at least 8", "garbage_epoch": "config epoch", "garbage_bracket_addr": "address",
		"garbage_replica_of_nothing": "replica of", "error_noauth": "NOAUTH", "error_disabled": "disabled",
	} {
		if ns, err := parseClusterNodes(readSeed(t, nodes, seed)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, %v; want an error with %q", seed, ns, err, want)
		}
	}
	for _, v := range []respValue{{kind: '$', str: "cluster_state:ok\r\ncluster_current_epoch:x\r\n"}, {kind: '$', str: "cluster_state:ok\r\n"}, {kind: '-', str: "ERR x"}} {
		if _, err := parseClusterInfo(v); err == nil {
			t.Errorf("parseClusterInfo(%q) = nil error", v.str)
		}
	}
	if info, err := parseClusterInfo(respValue{kind: '$', str: "cluster_state:ok\r\ncluster_current_epoch:7\r\n"}); err != nil || info.currentEpoch != 7 || info.state != "ok" {
		t.Errorf("parseClusterInfo = %+v, %v", info, err)
	}
}

// fuzzNodes is a captured CLUSTER NODES that fuzzed layouts are joined
// with, so that the merge runs on whatever they claim.
func fuzzNodes(f *testing.F) map[string]clusterNodeInfo {
	v, err := readRESP(bufio.NewReader(bytes.NewReader(fuzzSeeds(f, "FuzzClusterNodes")["nodes_3x1_hostnames"])))
	if err != nil {
		f.Fatal(err)
	}
	ns, err := parseClusterNodes(v)
	if err != nil {
		f.Fatal(err)
	}
	return ns
}

// fuzzLayout checks what a parsed layout must be, and merges it.
func fuzzLayout(t *testing.T, data []byte, l clusterLayout, nodes map[string]clusterNodeInfo) {
	for _, r := range l.ranges {
		if r.first < 0 || r.last >= hashring.SlotCount || r.first > r.last || !validNodeID(r.id) {
			t.Fatalf("%q: range %+v", data, r)
		}
	}
	for id, n := range l.nodes {
		if !validNodeID(id) || checkHostPort(n.announced) != nil {
			t.Fatalf("%q: node %s %+v", data, id, n)
		}
	}
	ns := make(map[string]clusterNodeInfo, len(nodes))
	for id, n := range nodes {
		n.Addr = n.Announced
		ns[id] = n
	}
	a := newClusterAnswer("x", clusterInfo{currentEpoch: 1}, ns, l)
	m := mergeCluster([]clusterAnswer{a}, nil).view
	checkMapShape(t, &m)
}

// FuzzClusterShards feeds CLUSTER SHARDS' parser what a node, or something
// that is no Redis, may send: a layout or an error, never a panic.
func FuzzClusterShards(f *testing.F) {
	nodes := fuzzNodes(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := readRESP(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		l, err := parseClusterShards(v, false)
		if err != nil {
			return
		}
		fuzzLayout(t, data, l, nodes)
	})
}

// FuzzClusterSlots does the same for CLUSTER SLOTS.
func FuzzClusterSlots(f *testing.F) {
	nodes := fuzzNodes(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := readRESP(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		l, err := parseClusterSlots(v)
		if err != nil {
			return
		}
		fuzzLayout(t, data, l, nodes)
	})
}

// FuzzClusterNodes does the same for CLUSTER NODES.
func FuzzClusterNodes(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := readRESP(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		ns, err := parseClusterNodes(v)
		if err != nil {
			return
		}
		for id, n := range ns {
			if !validNodeID(id) || n.ID != id || checkHostPort(n.Announced) != nil || (!n.Master && !validNodeID(n.MasterID)) {
				t.Fatalf("%q: node %+v", data, n)
			}
		}
	})
}

func TestClusterMapAddr(t *testing.T) {
	w, err := NewClusterWatcher(ClusterOptions{Seeds: []string{"127.0.0.1:1"}, MapAddr: func(addr string) (string, bool) {
		switch addr {
		case "10.0.0.1:6379":
			return "10.1.1.1:6379", true
		case "redis-1.redis:6379":
			return "10.1.1.2:6379", true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := clusterAnswer{nodes: map[string]clusterNodeInfo{
		nodeID('a'): {ClusterNode: ClusterNode{ID: nodeID('a'), Announced: "10.0.0.1:6379", Master: true}},
		nodeID('b'): {ClusterNode: ClusterNode{ID: nodeID('b'), Announced: "10.0.0.2:6379", Hostname: "redis-1.redis", Master: true}},
		nodeID('c'): {ClusterNode: ClusterNode{ID: nodeID('c'), Announced: "10.0.0.3:6379", Hostname: "redis-9.redis", Master: true}},
	}}
	for i := range a.owner {
		a.owner[i] = nodeID(byte('a' + i%3))
	}
	a = w.mapAnswer(a)
	for id, want := range map[byte]string{'a': "10.1.1.1:6379", 'b': "10.1.1.2:6379", 'c': ""} {
		if got := a.nodes[nodeID(id)].Addr; got != want {
			t.Errorf("node %c: Addr %q, want %q (announced, then hostname, then none)", id, got, want)
		}
	}
	m := mergeCluster([]clusterAnswer{a}, nil).view
	if n, ok := m.Owner(2); ok {
		t.Errorf("slot 2 is served by %+v, want nobody: its node maps to no address", n)
	}
	if n, _ := m.Owner(1); n.Addr != "10.1.1.2:6379" {
		t.Errorf("slot 1 is served at %q, want the mapped hostname's address", n.Addr)
	}
}
