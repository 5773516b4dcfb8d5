package hashring

import (
	"fmt"
	"testing"
)

// benchKeys returns 1024 distinct keys of size bytes, so the ketama search
// does not always walk the same path.
func benchKeys(size int) [][]byte {
	keys := make([][]byte, 1024)
	for i := range keys {
		k := fmt.Appendf(nil, "user:%08d:", i*7919)
		for len(k) < size {
			k = append(k, byte('a'+len(k)%26))
		}
		keys[i] = k[:size]
	}
	return keys
}

// BenchmarkHash/<name>/<size>B hashes one key per op.
func BenchmarkHash(b *testing.B) {
	for _, name := range HashNames() {
		h, _ := Hash(name)
		for _, size := range []int{16, 128} {
			key := benchKeys(size)[0]
			b.Run(fmt.Sprintf("%s/%dB", name, size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				var sink uint32
				for b.Loop() {
					sink += h(key)
				}
				_ = sink
			})
		}
	}
}

// BenchmarkLookup/<distribution>/<hash>/<servers> looks up one 16-byte key
// per op.
func BenchmarkLookup(b *testing.B) {
	keys := benchKeys(16)
	for _, tc := range []struct {
		dist    Distribution
		hash    string
		servers int
	}{
		{Ketama, "fnv1a_64", 3},
		{Ketama, "fnv1a_64", 64},
		{Ketama, "fnv1a_64", 1000},
		{Ketama, "murmur", 64},
		{Ketama, "md5", 64},
		{Modula, "fnv1a_64", 3},
		{Modula, "fnv1a_64", 64},
		{Random, "fnv1a_64", 64},
	} {
		r, err := New(equalNodes(tc.servers), Options{Hash: tc.hash, Distribution: tc.dist})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%v/%s/%d", tc.dist, tc.hash, tc.servers), func(b *testing.B) {
			b.ReportAllocs()
			i, sink := 0, 0
			for b.Loop() {
				sink += r.Lookup(keys[i&1023])
				i++
			}
			_ = sink
		})
	}
	r, _ := New(equalNodes(64), Options{HashTag: "{}"})
	tagged := make([][]byte, len(keys))
	for i, k := range keys {
		tagged[i] = fmt.Appendf(nil, "{%s}:field", k)
	}
	b.Run("ketama/fnv1a_64/64/hash_tag", func(b *testing.B) {
		b.ReportAllocs()
		i, sink := 0, 0
		for b.Loop() {
			sink += r.Lookup(tagged[i&1023])
			i++
		}
		_ = sink
	})
}

// BenchmarkNew builds a ketama ring: what a reload or an ejection costs.
func BenchmarkNew(b *testing.B) {
	for _, n := range []int{3, 64, 1000} {
		nodes := equalNodes(n)
		b.Run(fmt.Sprintf("ketama/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(nodes, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
