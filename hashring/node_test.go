package hashring

import (
	"slices"
	"testing"
)

func TestRingName(t *testing.T) {
	for _, tc := range []struct {
		name string
		node Node
		want string
	}{
		{"explicit name", Node{Name: "server1", Addr: "127.0.0.1:6380", Weight: 1}, "server1"},
		{"explicit name beats 11211", Node{Name: "mc", Addr: "10.0.0.1:11211", Weight: 1}, "mc"},
		{"explicit name on a socket", Node{Name: "sock", Addr: "/tmp/r.sock", Weight: 1}, "sock"},
		{"host:port", Node{Addr: "127.0.0.1:6379", Weight: 1}, "127.0.0.1:6379"},
		{"weight is not in the name", Node{Addr: "127.0.0.1:6379", Weight: 3}, "127.0.0.1:6379"},
		{"port as written", Node{Addr: "127.0.0.1:06379", Weight: 1}, "127.0.0.1:06379"},
		{"hostname", Node{Addr: "redis-0.redis:6379", Weight: 1}, "redis-0.redis:6379"},
		{"port 11211 drops the port", Node{Addr: "127.0.0.1:11211", Weight: 1}, "127.0.0.1"},
		{"port 011211 is 11211", Node{Addr: "cache:011211", Weight: 1}, "cache"},
		{"port 11212", Node{Addr: "127.0.0.1:11212", Weight: 1}, "127.0.0.1:11212"},
		{"port 111211", Node{Addr: "127.0.0.1:111211", Weight: 1}, "127.0.0.1:111211"},
		{"ipv6 without brackets", Node{Addr: "::1:6379", Weight: 1}, "::1:6379"},
		{"ipv6 with 11211", Node{Addr: "::1:11211", Weight: 1}, "::1"},
		{"unix socket", Node{Addr: "/tmp/r.sock", Weight: 1}, "/tmp/r.sock:"},
		{"unix socket ending in 11211", Node{Addr: "/tmp/x:11211", Weight: 1}, "/tmp/x:11211:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.node.RingName(); got != tc.want {
				t.Errorf("%+v.RingName() = %q, want %q", tc.node, got, tc.want)
			}
		})
	}
}

func TestSortNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"length first", []string{"zeta", "alpha", "mid", "b", "longername"}, []string{"b", "mid", "zeta", "alpha", "longername"}},
		{"addresses", []string{"127.0.0.1:7103", "127.0.0.1:7101", "10.0.0.1:7102", "127.0.0.1:7102"},
			[]string{"10.0.0.1:7102", "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"}},
		{"bytewise, not numeric", []string{"s10", "s9", "s1"}, []string{"s1", "s9", "s10"}},
		{"bytes above 0x7f after ascii", []string{"\xe4", "z", "A"}, []string{"A", "z", "\xe4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := make([]Node, len(tc.in))
			for i, n := range tc.in {
				nodes[i] = Node{Name: n, Addr: "127.0.0.1:6379", Weight: 1}
			}
			SortNodes(nodes)
			got := make([]string, len(nodes))
			for i, n := range nodes {
				got[i] = n.RingName()
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("SortNodes(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// Nodes that differ only in what is not in the ring name keep their order.
func TestSortNodesStable(t *testing.T) {
	nodes := []Node{
		{Addr: "h:11211", Weight: 1},
		{Addr: "g:1", Weight: 1},
		{Addr: "h:011211", Weight: 2},
		{Name: "h", Addr: "x:1", Weight: 3},
	}
	SortNodes(nodes)
	var weights []int
	for _, n := range nodes {
		weights = append(weights, n.Weight)
	}
	if want := []int{1, 2, 3, 1}; !slices.Equal(weights, want) {
		t.Errorf("weights after SortNodes = %v, want %v", weights, want)
	}
}
