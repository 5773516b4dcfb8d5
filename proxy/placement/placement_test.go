package placement

import (
	"fmt"
	"testing"

	"github.com/shardproxy/shardproxy/hashring"
)

var _ Placement = (*Ring)(nil)

func testNodes(n int) []hashring.Node {
	nodes := make([]hashring.Node, n)
	for i := range nodes {
		nodes[i] = hashring.Node{Addr: fmt.Sprintf("10.0.0.%d:6379", i+1), Weight: 1}
	}
	return nodes
}

func testKeys() [][]byte {
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%08d:profile", i*7919)
	}
	return keys
}

// A Ring places every key where the hashring it wraps does, with every
// distribution, before and after an ejection.
func TestRingIsTheHashring(t *testing.T) {
	for _, dist := range []hashring.Distribution{hashring.Ketama, hashring.Modula} {
		opts := hashring.Options{Hash: "murmur", Distribution: dist, HashTag: "{}"}
		want, err := hashring.New(testNodes(5), opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := NewRing(testNodes(5), opts)
		if err != nil {
			t.Fatal(err)
		}
		ejected := []bool{false, true, false, false, true}
		wantWithout, gotWithout := want.Without(ejected), got.Without(ejected)
		for _, key := range testKeys() {
			if g, w := got.Lookup(key), want.Lookup(key); g != w {
				t.Fatalf("%v: Lookup(%q) = %d, hashring says %d", dist, key, g, w)
			}
			if g, w := gotWithout.Lookup(key), wantWithout.Lookup(key); g != w {
				t.Fatalf("%v, ejected: Lookup(%q) = %d, hashring says %d", dist, key, g, w)
			}
		}
		for i, e := range ejected {
			if got.Len() != 5 || !got.Live(i) || gotWithout.Live(i) == e {
				t.Fatalf("%v: Len %d, Live(%d) %v, after ejection %v", dist, got.Len(), i, got.Live(i), gotWithout.Live(i))
			}
		}
	}
}

func TestRingTag(t *testing.T) {
	tagged, _ := NewRing(testNodes(3), hashring.Options{HashTag: "{}"})
	untagged, _ := NewRing(testNodes(3), hashring.Options{})
	for _, tc := range []struct {
		ring *Ring
		key  string
		tag  string
		ok   bool
	}{
		{tagged, "user{1}x", "1", true},
		{tagged, "a{}{b}", "a{}{b}", false},
		{tagged, "plain", "plain", false},
		{untagged, "user{1}x", "user{1}x", false},
	} {
		tag, ok := tc.ring.Tag([]byte(tc.key))
		if string(tag) != tc.tag || ok != tc.ok {
			t.Errorf("Tag(%q) = %q, %v, want %q, %v", tc.key, tag, ok, tc.tag, tc.ok)
		}
	}
}

// Lookup through the interface allocates nothing.
func TestLookupAllocatesNothing(t *testing.T) {
	r, _ := NewRing(testNodes(3), hashring.Options{HashTag: "{}"})
	var p Placement = r
	key := []byte("user{42}:profile")
	if n := testing.AllocsPerRun(100, func() { p.Lookup(key) }); n != 0 {
		t.Fatalf("Lookup: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { p.Tag(key) }); n != 0 {
		t.Fatalf("Tag: %v allocations, want 0", n)
	}
}

// BenchmarkLookup/<kind>/<servers> places one key per op through the
// Placement interface; hashring is the same ring called directly.
func BenchmarkLookup(b *testing.B) {
	keys := testKeys()
	for _, n := range []int{3, 10} {
		ring, _ := hashring.New(testNodes(n), hashring.Options{})
		b.Run(fmt.Sprintf("hashring/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i, sink := 0, 0
			for b.Loop() {
				sink += ring.Lookup(keys[i&1023])
				i++
			}
			_ = sink
		})
		var p Placement = (*Ring)(ring)
		b.Run(fmt.Sprintf("placement/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i, sink := 0, 0
			for b.Loop() {
				sink += p.Lookup(keys[i&1023])
				i++
			}
			_ = sink
		})
	}
}
