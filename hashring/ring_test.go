package hashring

import (
	"fmt"
	"slices"
	"testing"
)

func mustNew(t testing.TB, nodes []Node, opts Options) *Ring {
	t.Helper()
	r, err := New(nodes, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func testKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%d:profile", i)
	}
	// Keys with bytes above 0x7f, an empty key and hash tags.
	return append(keys, []byte("\x80\xff"), []byte("中文"), []byte{}, []byte("{}"), []byte("a{b}c"))
}

func TestParseDistribution(t *testing.T) {
	for _, d := range []Distribution{Ketama, Modula, Random} {
		got, err := ParseDistribution(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDistribution(%q) = %v, %v, want %v", d.String(), got, err, d)
		}
	}
	for _, name := range []string{"", "Ketama", "MODULA", "consistent", "random "} {
		if _, err := ParseDistribution(name); err == nil {
			t.Errorf("ParseDistribution(%q) succeeded, want an error", name)
		}
	}
	if got := Distribution(7).String(); got != "Distribution(7)" {
		t.Errorf("Distribution(7).String() = %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	good := weightedNodes(1, 1)
	for _, tc := range []struct {
		name  string
		nodes []Node
		opts  Options
	}{
		{"unknown hash", good, Options{Hash: "FNV1A_64"}},
		{"unknown distribution", good, Options{Distribution: 3}},
		{"negative distribution", good, Options{Distribution: -1}},
		{"hash_tag of 1 byte", good, Options{HashTag: "{"}},
		{"hash_tag of 3 bytes", good, Options{HashTag: "{}}"}},
		{"zero weight", weightedNodes(1, 0), Options{}},
		{"negative weight", weightedNodes(-1), Options{}},
		{"total weight over 32 bits", weightedNodes(1<<31, 1<<31), Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := New(tc.nodes, tc.opts); err == nil {
				t.Errorf("New(%+v, %+v) = %v, want an error", tc.nodes, tc.opts, r)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	r := mustNew(t, weightedNodes(1, 1, 1), Options{})
	explicit := mustNew(t, weightedNodes(1, 1, 1), Options{Hash: "fnv1a_64", Distribution: Ketama})
	for _, key := range testKeys(1000) {
		if got, want := r.Lookup(key), explicit.Lookup(key); got != want {
			t.Fatalf("Lookup(%q) = %d with default options, %d with fnv1a_64/ketama", key, got, want)
		}
	}
}

// New copies the nodes: the caller may reuse its slice.
func TestNewCopiesNodes(t *testing.T) {
	nodes := weightedNodes(1, 1)
	r := mustNew(t, nodes, Options{})
	nodes[0].Addr = "changed:1"
	if got := r.Node(0).Addr; got != "127.0.0.1:7101" {
		t.Errorf("Node(0).Addr = %q after the caller changed its slice", got)
	}
	if r.Len() != 2 || !r.Live(0) || !r.Live(1) {
		t.Errorf("Len() = %d, Live = %v, %v", r.Len(), r.Live(0), r.Live(1))
	}
	if got := r.Options(); got != (Options{}) {
		t.Errorf("Options() = %+v, want the zero Options", got)
	}
}

func TestEmptyRing(t *testing.T) {
	for _, d := range []Distribution{Ketama, Modula, Random} {
		r := mustNew(t, nil, Options{Distribution: d})
		if got := r.Lookup([]byte("foo")); got != -1 {
			t.Errorf("%v: Lookup on an empty ring = %d, want -1", d, got)
		}
		if r.Len() != 0 || r.Points() != 0 {
			t.Errorf("%v: Len() = %d, Points() = %d, want 0, 0", d, r.Len(), r.Points())
		}
	}
}

// A one-node pool returns 0 without hashing, whatever the hash (even crc32,
// which otherwise maps keys below the first point), and -1 once ejected.
func TestSingleNode(t *testing.T) {
	for _, d := range []Distribution{Ketama, Modula, Random} {
		for _, h := range HashNames() {
			r := mustNew(t, []Node{{Addr: "127.0.0.1:6379", Weight: 5}}, Options{Hash: h, Distribution: d, HashTag: "{}"})
			for _, key := range testKeys(100) {
				if got := r.Lookup(key); got != 0 {
					t.Fatalf("%v/%s: Lookup(%q) = %d, want 0", d, h, key, got)
				}
			}
			if got := r.Without([]bool{true}).Lookup([]byte("foo")); got != -1 {
				t.Errorf("%v/%s: Lookup on an ejected single node = %d, want -1", d, h, got)
			}
		}
	}
}

// The empty key hashes to 0, so it goes to the first point (ketama) or slot 0
// (modula) for every hash, jenkins included (jenkins("") is not 0).
func TestEmptyKeyHashesToZero(t *testing.T) {
	nodes := equalNodes(5)
	for _, h := range HashNames() {
		k := mustNew(t, nodes, Options{Hash: h})
		if got, want := k.Lookup(nil), int(k.ketama.owners[0]); got != want {
			t.Errorf("%s ketama: Lookup(\"\") = %d, want %d (owner of the first point)", h, got, want)
		}
		m := mustNew(t, nodes, Options{Hash: h, Distribution: Modula})
		if got := m.Lookup([]byte{}); got != 0 {
			t.Errorf("%s modula: Lookup(\"\") = %d, want 0", h, got)
		}
		// An empty hash tag does not make the key empty; "{}" is hashed whole.
		tagged := mustNew(t, nodes, Options{Hash: h, Distribution: Modula, HashTag: "{}"})
		if got, want := tagged.Lookup([]byte("{}")), m.Lookup([]byte("{}")); got != want {
			t.Errorf("%s modula: Lookup(\"{}\") with hash_tag = %d, want %d", h, got, want)
		}
	}
}

func TestHashTagLookup(t *testing.T) {
	for _, d := range []Distribution{Ketama, Modula} {
		plain := mustNew(t, equalNodes(10), Options{Distribution: d})
		tagged := mustNew(t, equalNodes(10), Options{Distribution: d, HashTag: "{}"})
		for i := range 1000 {
			tag := fmt.Appendf(nil, "%d", i)
			want := plain.Lookup(tag)
			for _, key := range []string{"user{%d}", "{%d}:name", "a{%d}b{c}", "x{%d}}"} {
				k := fmt.Appendf(nil, key, i)
				if got := tagged.Lookup(k); got != want {
					t.Fatalf("%v: Lookup(%q) = %d, want %d (as %q)", d, k, got, want, tag)
				}
			}
			whole := fmt.Appendf(nil, "user{%d", i)
			if got, want := tagged.Lookup(whole), plain.Lookup(whole); got != want {
				t.Fatalf("%v: Lookup(%q) = %d, want %d (the whole key)", d, whole, got, want)
			}
		}
	}
}

func TestModulaSlots(t *testing.T) {
	// Weights 1, 2, 3 make the slots a, b, b, c, c, c.
	r := mustNew(t, weightedNodes(1, 2, 3), Options{Distribution: Modula})
	if r.Points() != 6 {
		t.Fatalf("Points() = %d, want 6", r.Points())
	}
	slots := []int{0, 1, 1, 2, 2, 2}
	for _, key := range testKeys(1000) {
		var h uint32
		if len(key) > 0 {
			h = fnv1a64(key)
		}
		if got, want := r.Lookup(key), slots[h%6]; got != want {
			t.Fatalf("Lookup(%q) = %d, want %d", key, got, want)
		}
	}
}

// Above modulaMaxSlots the ring searches cumulative weights instead of a
// table; it must place keys the same way.
func TestModulaLargeWeights(t *testing.T) {
	weights := []int{100000, 1, 70000, 3}
	r := mustNew(t, weightedNodes(weights...), Options{Distribution: Modula})
	if r.slots != nil {
		t.Fatal("ring with total weight 170004 built a slot table")
	}
	var ends []uint32
	var end uint32
	for _, w := range weights {
		end += uint32(w)
		ends = append(ends, end)
	}
	seen := make([]bool, len(weights))
	for i := range 200000 {
		key := fmt.Appendf(nil, "k%d", i)
		s := fnv1a64(key) % end
		want := 0
		for s >= ends[want] {
			want++
		}
		got := r.Lookup(key)
		if got != want {
			t.Fatalf("Lookup(%q) = %d, want %d (slot %d)", key, got, want, s)
		}
		seen[got] = true
	}
	if !slices.Equal(seen, []bool{true, true, true, true}) {
		t.Errorf("nodes seen: %v, want all", seen)
	}
	// Ejecting the light node shifts the slots of the nodes after it.
	w := r.Without([]bool{false, true, false, false})
	for i := range 10000 {
		key := fmt.Appendf(nil, "k%d", i)
		want := 0
		if s := fnv1a64(key) % 170003; s >= 170000 {
			want = 3
		} else if s >= 100000 {
			want = 2
		}
		if got := w.Lookup(key); got != want {
			t.Fatalf("after ejecting node 1: Lookup(%q) = %d, want %d", key, got, want)
		}
	}
}

// Without must give the ring nutcracker rebuilds over the live servers: the
// same as a fresh ring over just the live nodes, indexes mapped back.
func TestWithoutMatchesLiveRing(t *testing.T) {
	nodes := equalNodes(26)
	nodes[3].Weight = 2
	nodes[7].Weight = 3
	keys := testKeys(3000)
	for _, d := range []Distribution{Ketama, Modula} {
		for _, tc := range []struct {
			name    string
			ejected []int
		}{
			{"one", []int{5}},
			{"first and last", []int{0, 25}},
			{"weighted", []int{3, 7, 11}},
			{"all but one", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25}},
		} {
			t.Run(fmt.Sprintf("%v/%s", d, tc.name), func(t *testing.T) {
				full := mustNew(t, nodes, Options{Distribution: d, HashTag: "{}"})
				ejected := make([]bool, len(nodes))
				for _, i := range tc.ejected {
					ejected[i] = true
				}
				var liveNodes []Node
				var liveIdx []int
				for i, n := range nodes {
					if !ejected[i] {
						liveNodes = append(liveNodes, n)
						liveIdx = append(liveIdx, i)
					}
				}
				got := full.Without(ejected)
				want := mustNew(t, liveNodes, Options{Distribution: d, HashTag: "{}"})
				if got.Len() != len(nodes) {
					t.Errorf("Len() = %d, want %d", got.Len(), len(nodes))
				}
				if got.Points() != want.Points() {
					t.Errorf("Points() = %d, want %d", got.Points(), want.Points())
				}
				for i := range nodes {
					if got.Live(i) == ejected[i] {
						t.Errorf("Live(%d) = %v, ejected %v", i, got.Live(i), ejected[i])
					}
				}
				for _, key := range keys {
					g := got.Lookup(key)
					if ejected[g] {
						t.Fatalf("Lookup(%q) = %d, an ejected node", key, g)
					}
					w := want.Lookup(key)
					if len(liveNodes) > 1 {
						w = liveIdx[w]
					} else {
						// A one-node pool short-cuts to 0; a pool of 26 with
						// one live node still hashes, to that node.
						w = liveIdx[0]
					}
					if g != w {
						t.Fatalf("Lookup(%q) = %d, want %d", key, g, w)
					}
				}
			})
		}
	}
}

// After losing one of 26 equal servers, ketama's live servers get 156 points
// each (25 live servers), as nutcracker recomputes with the live count.
func TestWithoutKetamaRecomputesPoints(t *testing.T) {
	r := mustNew(t, equalNodes(26), Options{})
	for i, n := range pointsPerNode(r) {
		if n != 160 {
			t.Fatalf("node %d has %d points before ejection, want 160", i, n)
		}
	}
	ejected := make([]bool, 26)
	ejected[10] = true
	w := r.Without(ejected)
	for i, n := range pointsPerNode(w) {
		want := 156
		if i == 10 {
			want = 0
		}
		if n != want {
			t.Errorf("node %d has %d points after ejecting node 10, want %d", i, n, want)
		}
	}
	// The original ring is unchanged.
	if r.Points() != 26*160 || !r.Live(10) {
		t.Errorf("original ring changed: Points() = %d, Live(10) = %v", r.Points(), r.Live(10))
	}
	// Ejecting nothing restores the full ring.
	back := w.Without(make([]bool, 26))
	if !slices.Equal(back.ketama.values, r.ketama.values) || !slices.Equal(back.ketama.owners, r.ketama.owners) {
		t.Error("Without(nothing ejected) differs from the original ring")
	}
}

func TestWithoutAll(t *testing.T) {
	all := []bool{true, true, true}
	for _, d := range []Distribution{Ketama, Modula, Random} {
		r := mustNew(t, weightedNodes(1, 2, 3), Options{Distribution: d}).Without(all)
		for _, key := range testKeys(10) {
			if got := r.Lookup(key); got != -1 {
				t.Fatalf("%v: Lookup(%q) with every node ejected = %d, want -1", d, key, got)
			}
		}
		if r.Points() != 0 {
			t.Errorf("%v: Points() = %d with every node ejected, want 0", d, r.Points())
		}
	}
}

func TestWithoutPanicsOnWrongLength(t *testing.T) {
	r := mustNew(t, weightedNodes(1, 1), Options{})
	defer func() {
		if recover() == nil {
			t.Error("Without with 3 flags for 2 nodes did not panic")
		}
	}()
	r.Without([]bool{false, false, false})
}

func TestRandom(t *testing.T) {
	r := mustNew(t, weightedNodes(1, 5, 1, 1), Options{Distribution: Random})
	if r.Points() != 4 {
		t.Errorf("Points() = %d, want 4 (one slot per live node)", r.Points())
	}
	w := r.Without([]bool{false, true, false, true})
	counts := make([]int, 4)
	for range 10000 {
		counts[w.Lookup([]byte("same key"))]++
	}
	if counts[1] != 0 || counts[3] != 0 {
		t.Errorf("ejected nodes chosen: counts %v", counts)
	}
	// Weights are ignored: both live nodes get about half.
	if counts[0] < 4000 || counts[2] < 4000 {
		t.Errorf("counts %v, want about 5000 each for nodes 0 and 2", counts)
	}
}

func TestLookupAllocs(t *testing.T) {
	keys := testKeys(10)
	for _, d := range []Distribution{Ketama, Modula, Random} {
		for _, h := range HashNames() {
			r := mustNew(t, equalNodes(5), Options{Hash: h, Distribution: d, HashTag: "{}"})
			if n := testing.AllocsPerRun(10, func() {
				for _, key := range keys {
					r.Lookup(key)
				}
			}); n != 0 {
				t.Errorf("%v/%s: Lookup allocates %v times per %d keys", d, h, n, len(keys))
			}
		}
	}
}

func TestLookupConcurrent(t *testing.T) {
	r := mustNew(t, equalNodes(10), Options{})
	want := make([]int, 100)
	keys := testKeys(100)[:100]
	for i, key := range keys {
		want[i] = r.Lookup(key)
	}
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 100 {
				for i, key := range keys {
					ok = ok && r.Lookup(key) == want[i]
				}
			}
			done <- ok
		}()
	}
	for range 4 {
		if !<-done {
			t.Error("concurrent Lookup gave a different answer")
		}
	}
}
