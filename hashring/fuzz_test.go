package hashring

import (
	"fmt"
	"testing"
)

// FuzzLookup checks that Lookup never panics, returns a live node (or -1
// exactly when none is live), and agrees with a plain reading of
// nutcracker's rules: a linear scan of the ketama continuum, or the modula
// slot computed from the weights.
func FuzzLookup(f *testing.F) {
	for _, seed := range []struct {
		key    string
		tag    string
		n      uint8
		dist   uint8
		hash   uint8
		eject  uint8
		weight uint16
	}{
		{"foo", "", 3, 0, 6, 0, 0},
		{"", "", 3, 0, 11, 0, 0},
		{"", "{}", 3, 1, 11, 0, 0},
		{"user{1000}:x", "{}", 5, 0, 0, 0b00100, 0x0123},
		{"a{}{b}", "{}", 4, 1, 9, 0, 0xffff},
		{"x$y$", "$$", 2, 1, 3, 0, 0},
		{"\x80\xff", "", 8, 0, 6, 0b10101010, 0x5555},
		{"中文", "\xe4\xe6", 6, 0, 12, 0, 0},
		{"k", "", 1, 0, 0, 0, 0},
		{"k", "", 1, 0, 0, 1, 0},
		{"k", "", 3, 2, 0, 0b011, 0},
		{"k", "", 3, 0, 4, 0b111, 0},
		{"k", "{", 3, 0, 4, 0, 0},
		{string(make([]byte, 300)), "\x00\x00", 7, 0, 10, 0, 0xabcd},
	} {
		f.Add([]byte(seed.key), seed.tag, seed.n, seed.dist, seed.hash, seed.eject, seed.weight)
	}
	f.Fuzz(func(t *testing.T, key []byte, tag string, n, dist, hash, eject uint8, weight uint16) {
		n = n%8 + 1
		nodes := make([]Node, n)
		for i := range nodes {
			nodes[i] = Node{
				Addr:   fmt.Sprintf("10.0.0.%d:6379", i+1),
				Weight: 1 + int(weight>>(2*i)&3),
			}
		}
		opts := Options{
			Hash:         HashNames()[int(hash)%len(HashNames())],
			Distribution: Distribution(dist % 3),
		}
		if len(tag) == 2 {
			opts.HashTag = tag
		}
		r, err := New(nodes, opts)
		if err != nil {
			t.Fatalf("New(%+v, %+v): %v", nodes, opts, err)
		}
		ejected := make([]bool, n)
		live := 0
		for i := range ejected {
			ejected[i] = eject>>i&1 == 1
			if !ejected[i] {
				live++
			}
		}
		r = r.Without(ejected)

		got := r.Lookup(key)
		if live == 0 {
			if got != -1 {
				t.Fatalf("Lookup(%q) = %d with no live node, want -1", key, got)
			}
			return
		}
		if got < 0 || got >= int(n) || ejected[got] {
			t.Fatalf("Lookup(%q) = %d, want a live node of %d (ejected %v)", key, got, n, ejected)
		}
		if n == 1 {
			if got != 0 {
				t.Fatalf("Lookup(%q) = %d on a one-node ring, want 0", key, got)
			}
			return
		}
		// The same rules, written as plainly as possible.
		hashed := key
		if opts.HashTag != "" {
			hashed = TagKey(key, opts.HashTag)
		}
		var h uint32
		if len(hashed) > 0 {
			hf, _ := Hash(opts.Hash)
			h = hf(hashed)
		}
		want := got
		switch opts.Distribution {
		case Ketama:
			want = int(r.ketama.owners[0])
			for k, v := range r.ketama.values {
				if v >= h {
					want = int(r.ketama.owners[k])
					break
				}
			}
		case Modula:
			var slots []int
			for i, nd := range nodes {
				for range nd.Weight {
					if !ejected[i] {
						slots = append(slots, i)
					}
				}
			}
			want = slots[h%uint32(len(slots))]
		}
		if got != want {
			t.Fatalf("Lookup(%q) = %d, want %d (hash %d)", key, got, want, h)
		}
	})
}
