package hashring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// equalNodes returns n unnamed nodes of weight 1 in nutcracker's order.
func equalNodes(n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{Addr: fmt.Sprintf("10.0.%d.%d:6379", i/250, i%250+1), Weight: 1}
	}
	SortNodes(nodes)
	return nodes
}

func weightedNodes(weights ...int) []Node {
	nodes := make([]Node, len(weights))
	for i, w := range weights {
		nodes[i] = Node{Addr: fmt.Sprintf("127.0.0.1:%d", 7101+i), Weight: w}
	}
	return nodes
}

// pointsPerNode counts the continuum points each node owns.
func pointsPerNode(r *Ring) []int {
	counts := make([]int, r.Len())
	for _, o := range r.ketama.owners {
		counts[o]++
	}
	return counts
}

// short156 lists the server counts up to 1024 for which nutcracker's float32
// arithmetic gives every one of n equal servers 156 points instead of 160
// (reference §2.4).
var short156 = []int{
	25, 47, 50, 55, 61, 71, 94, 100, 107, 109, 110, 115, 122, 142, 159, 163, 188,
	193, 200, 209, 214, 218, 219, 220, 230, 237, 243, 244, 279, 284, 293, 299, 301, 305, 313, 318, 319, 326, 376,
	386, 397, 400, 418, 425, 428, 431, 436, 438, 440, 460, 474, 486, 488, 497, 525, 558, 561, 567, 568, 571, 586, 597,
	598, 599, 602, 610, 625, 626, 627, 636, 638, 652, 661, 677, 685, 741, 752, 772, 794, 800, 836, 837, 850, 851, 856,
	862, 872, 876, 879, 880, 919, 920, 933, 948, 951, 953, 957, 972, 975, 976, 977, 991, 994, 1001, 1011,
}

func TestKetamaPointsEqualWeights(t *testing.T) {
	short := make(map[int]bool)
	for _, n := range short156 {
		short[n] = true
	}
	for n := 1; n <= 1024; n++ {
		want := uint32(160)
		if short[n] {
			want = 156
		}
		if got := ketamaPoints(1, uint32(n), uint32(n)); got != want {
			t.Errorf("ketamaPoints(1, %d, %d) = %d, want %d", n, n, got, want)
		}
	}
}

func TestKetamaPointsPerNode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights []int
		want    []int
	}{
		{"3 equal", []int{1, 1, 1}, []int{160, 160, 160}},
		{"1,2,3", []int{1, 2, 3}, []int{80, 160, 240}},
		{"1,2", []int{1, 2}, []int{104, 212}},
		{"1,1,2", []int{1, 1, 2}, []int{120, 120, 240}},
		{"omega pool", []int{100000, 1}, []int{316, 0}},
		{"equal but not 1", []int{7, 7}, []int{160, 160}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(weightedNodes(tc.weights...), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := pointsPerNode(r)
			total := 0
			for i := range got {
				total += tc.want[i]
				if got[i] != tc.want[i] {
					t.Errorf("node %d (weight %d) has %d points, want %d", i, tc.weights[i], got[i], tc.want[i])
				}
			}
			if r.Points() != total {
				t.Errorf("Points() = %d, want %d", r.Points(), total)
			}
		})
	}
	t.Run("25 equal", func(t *testing.T) {
		r, err := New(equalNodes(25), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i, got := range pointsPerNode(r) {
			if got != 156 {
				t.Errorf("node %d has %d points, want 156", i, got)
			}
		}
	})
}

// The omega pool's light server has no points, so nothing lands on it
// (as with the nutcracker 0.5.0 binary: 2000 keys, all on the heavy one).
func TestKetamaZeroPointNode(t *testing.T) {
	r, err := New(weightedNodes(100000, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		key := fmt.Appendf(nil, "key:%d", i)
		if got := r.Lookup(key); got != 0 {
			t.Fatalf("Lookup(%q) = %d, want 0", key, got)
		}
	}
}

// The reference's sample: servers 127.0.0.1:7101..7103 weight 1 (a, b, c).
func TestKetamaSampleContinuum(t *testing.T) {
	r, err := New(weightedNodes(1, 1, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ketama.values) != 480 || r.Points() != 480 {
		t.Fatalf("continuum has %d points (Points() = %d), want 480", len(r.ketama.values), r.Points())
	}
	type point struct {
		value uint32
		owner string
	}
	name := func(k int) point { return point{r.ketama.values[k], string(rune('a' + r.ketama.owners[k]))} }
	first := []point{
		{25329105, "c"}, {26263821, "b"}, {31726602, "a"}, {54765862, "b"},
		{55770510, "a"}, {63820719, "b"}, {66315925, "b"}, {72654510, "b"},
	}
	for k, want := range first {
		if got := name(k); got != want {
			t.Errorf("point %d = %v, want %v", k, got, want)
		}
	}
	last := []point{{4286298980, "b"}, {4291229605, "c"}, {4294424378, "a"}}
	for k, want := range last {
		at := len(r.ketama.values) - len(last) + k
		if got := name(at); got != want {
			t.Errorf("point %d = %v, want %v", at, got, want)
		}
	}
	// md5("127.0.0.1:7101-0") gives these four points, all a's.
	for _, v := range []uint32{1080265137, 3882808976, 4045001945, 2030119652} {
		k := ketamaSearch(r.ketama.values, v)
		if r.ketama.values[k] != v || r.ketama.owners[k] != 0 {
			t.Errorf("point %d: found value %d owned by %d, want owner 0", v, r.ketama.values[k], r.ketama.owners[k])
		}
	}
	for k := 1; k < len(r.ketama.values); k++ {
		if r.ketama.values[k-1] > r.ketama.values[k] {
			t.Fatalf("continuum not sorted at %d", k)
		}
	}
}

// Lookup takes the first point >= hash and wraps past the last point.
func TestKetamaSearch(t *testing.T) {
	values := []uint32{10, 20, 20, 30}
	for _, tc := range []struct {
		h    uint32
		want int
	}{
		{0, 0}, {10, 0}, {11, 1}, {20, 1}, {21, 3}, {30, 3}, {31, 0}, {1<<32 - 1, 0},
	} {
		if got := ketamaSearch(values, tc.h); got != tc.want {
			t.Errorf("ketamaSearch(%v, %d) = %d, want %d", values, tc.h, got, tc.want)
		}
		c := newContinuum(values, make([]int32, len(values)))
		if got := c.search(tc.h); got != tc.want {
			t.Errorf("continuum%v.search(%d) = %d, want %d", values, tc.h, got, tc.want)
		}
	}
}

// The bucket index must find what nutcracker's binary search finds, also at
// bucket edges, on ties, and for continuums of every size up to the cap.
func TestContinuumSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 2, 3, 4, 5, 100, 480, 4096, 65535, 65536, 65537, 160000}
	for _, n := range sizes {
		values := make([]uint32, n)
		for i := range values {
			values[i] = rng.Uint32()
		}
		// Ties, and points at both ends of the hash space.
		values[0] = 0
		values[n-1] = math.MaxUint32
		if n > 4 {
			values[2] = values[3]
		}
		slices.Sort(values)
		c := newContinuum(values, make([]int32, n))
		probe := []uint32{0, 1, math.MaxUint32, math.MaxUint32 - 1}
		for _, v := range values[:min(n, 1000)] {
			probe = append(probe, v, v-1, v+1)
		}
		for t := uint64(0); t < 1<<(32-c.shift); t += 1 + t/64 {
			probe = append(probe, uint32(t<<c.shift), uint32(t<<c.shift-1))
		}
		for range 10000 {
			probe = append(probe, rng.Uint32())
		}
		for _, h := range probe {
			if got, want := c.search(h), ketamaSearch(values, h); got != want {
				t.Fatalf("%d points: search(%d) = %d, want %d", n, h, got, want)
			}
		}
	}
}

// nutcracker hashes at most 272 bytes of "<name>-<i>" (snprintf into 273
// bytes). A 300-byte name makes all 40 point strings the same, so the node
// has 4 distinct values; with a 270-byte name "<name>-10" to "-19" become
// "<name>-1" and so on, leaving points 0..9 (40 values). Both placements
// matched the nutcracker 0.5.0 binary on 2000 keys; without the cut they
// differed on 1120 and 830.
func TestKetamaLongNameTruncated(t *testing.T) {
	for _, tc := range []struct {
		nameLen  int
		distinct int
	}{
		{300, 4},
		{270, 40},
		{268, 160}, // "<name>-39" is 271 bytes: nothing is cut
	} {
		nodes := []Node{
			{Name: strings.Repeat("n", tc.nameLen), Addr: "127.0.0.1:7101", Weight: 1},
			{Name: "short", Addr: "127.0.0.1:7102", Weight: 1},
		}
		r, err := New(nodes, Options{})
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[uint32]bool{}
		for k, o := range r.ketama.owners {
			if o == 0 {
				distinct[r.ketama.values[k]] = true
			}
		}
		if len(distinct) != tc.distinct {
			t.Errorf("node with a %d-byte name has %d distinct points, want %d", tc.nameLen, len(distinct), tc.distinct)
		}
		if got := pointsPerNode(r)[0]; got != 160 {
			t.Errorf("node with a %d-byte name has %d points, want 160", tc.nameLen, got)
		}
	}
}

// Equal point values keep node order: the lower index owns the tie.
func TestKetamaTiesStable(t *testing.T) {
	nodes := []Node{
		{Name: "same", Addr: "127.0.0.1:7101", Weight: 1},
		{Name: "same", Addr: "127.0.0.1:7102", Weight: 1},
	}
	r, err := New(nodes, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < len(r.ketama.values); k += 2 {
		if r.ketama.values[k] != r.ketama.values[k+1] || r.ketama.owners[k] != 0 || r.ketama.owners[k+1] != 1 {
			t.Fatalf("points %d,%d = (%d,%d) (%d,%d), want a tie owned by 0 then 1",
				k, k+1, r.ketama.values[k], r.ketama.owners[k], r.ketama.values[k+1], r.ketama.owners[k+1])
		}
	}
	for i := range 1000 {
		key := fmt.Appendf(nil, "k%d", i)
		if got := r.Lookup(key); got != 0 {
			t.Fatalf("Lookup(%q) = %d, want 0", key, got)
		}
	}
}

// arcShares returns the percentage of the 32-bit hash space each node owns:
// the arc that ends at each of its points.
func arcShares(r *Ring) []float64 {
	shares := make([]float64, r.Len())
	prev := uint64(r.ketama.values[len(r.ketama.values)-1])
	for k, v := range r.ketama.values {
		arc := uint64(v) - prev
		if k == 0 {
			arc = uint64(v) + 1<<32 - prev
		}
		shares[r.ketama.owners[k]] += 100 * float64(arc) / (1 << 32)
		prev = uint64(v)
	}
	return shares
}

// With 160 points per node, ketama itself leaves a node's share of the hash
// space some 5-15% off 1/n (three equal nodes own 28.8%, 35.0% and 36.3%);
// nutcracker has the same imbalance, since the points are the same. So the
// test checks that each share is within 20% of 1/n, and that keys follow
// the shares: 100k keys land within 1.5 percentage points of them.
func TestKetamaSpread(t *testing.T) {
	const keys = 100000
	for _, n := range []int{3, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r, err := New(equalNodes(n), Options{})
			if err != nil {
				t.Fatal(err)
			}
			counts := make([]int, n)
			for i := range keys {
				counts[r.Lookup(fmt.Appendf(nil, "key:%d", i))]++
			}
			want := 100.0 / float64(n)
			for i, arc := range arcShares(r) {
				if arc < 0.8*want || arc > 1.2*want {
					t.Errorf("node %d owns %.2f%% of the hash space, want %.2f%% ± 20%%", i, arc, want)
				}
				got := 100 * float64(counts[i]) / keys
				if got < arc-1.5 || got > arc+1.5 {
					t.Errorf("node %d has %.2f%% of keys, want its share %.2f%% ± 1.5", i, got, arc)
				}
			}
		})
	}
}

// ketamaSearch is nutcracker's ketama_dispatch as written: a binary search
// for the first value >= h, wrapping to 0. Tests hold the bucket index to it.
func ketamaSearch(values []uint32, h uint32) int {
	lo, hi := 0, len(values)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if values[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(values) {
		return 0
	}
	return lo
}
