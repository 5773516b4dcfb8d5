package hashring

import (
	"fmt"
	"testing"
)

// referenceKeySlot is Redis Cluster's slot written the plain way, to check
// KeySlot against: find the tag with index loops, then CRC-16/XMODEM one
// bit at a time, without the table.
func referenceKeySlot(key []byte) uint16 {
	part := key
	for open := 0; open < len(key); open++ {
		if key[open] != '{' {
			continue
		}
		for end := open + 1; end < len(key); end++ {
			if key[end] == '}' {
				if end > open+1 {
					part = key[open+1 : end]
				}
				break
			}
		}
		break
	}
	var crc uint16
	for _, b := range part {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func TestKeySlot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		slot uint16
	}{
		{"", 0},
		{"123456789", 0x31c3}, // CRC-16/XMODEM's check value, below 16384
		{"foo", 12182},
		{"bar", 5061},
		{"{foo}", 12182},
		{"x{foo}y", 12182},
		{"{foo}{bar}", 12182},
		{"{bar}{foo}", 5061},
		{"{}foo", referenceKeySlot([]byte("{}foo"))},
		{"{{foo}}", referenceKeySlot([]byte("{foo"))},
		{"foo{}{bar}", referenceKeySlot([]byte("foo{}{bar}"))},
		{"}foo{", referenceKeySlot([]byte("}foo{"))},
	} {
		if got := KeySlot([]byte(tc.key)); got != tc.slot {
			t.Errorf("KeySlot(%q) = %d, want %d", tc.key, got, tc.slot)
		}
	}
}

func TestClusterTag(t *testing.T) {
	for _, tc := range []struct {
		key, tag string
		ok       bool
	}{
		{"", "", false},
		{"plain", "plain", false},
		{"user{1000}:following", "1000", true},
		{"{user1000}.followers", "user1000", true},
		{"a{}{b}", "a{}{b}", false},    // an empty first tag: the whole key
		{"{{bar}}", "{bar", true},      // the first '{' opens, the first '}' closes
		{"foo{bar}{zap}", "bar", true}, // only the first tag counts
		{"}x{y", "}x{y", false},        // no '}' after the '{'
		{"{", "{", false},
		{"{}", "{}", false},
		{"a{\x00\xff}b", "\x00\xff", true}, // tags are bytes
	} {
		tag, ok := ClusterTag([]byte(tc.key))
		if string(tag) != tc.tag || ok != tc.ok {
			t.Errorf("ClusterTag(%q) = %q, %v, want %q, %v", tc.key, tag, ok, tc.tag, tc.ok)
		}
	}
}

// KeySlot and ClusterTag allocate nothing: the proxy calls them per key.
func TestKeySlotAllocatesNothing(t *testing.T) {
	key := []byte("user{42}:profile")
	if n := testing.AllocsPerRun(100, func() { KeySlot(key) }); n != 0 {
		t.Errorf("KeySlot: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { ClusterTag(key) }); n != 0 {
		t.Errorf("ClusterTag: %v allocations, want 0", n)
	}
}

// FuzzKeySlot checks KeySlot against the bitwise reference and ClusterTag
// against the slot it gives.
func FuzzKeySlot(f *testing.F) {
	for _, seed := range []string{
		"", "foo", "123456789", "{", "}", "{}", "}{", "{}{}", "{{}}", "{a}", "a{b}c", "a{}{b}",
		"{{a}}", "a{b{c}d}e", "}a{b}", "{\x00}", "\xff{\x80}\x7f", "user:{1000}:x",
		string(make([]byte, 300)), "{" + string(make([]byte, 70)) + "}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		got, want := KeySlot(key), referenceKeySlot(key)
		if got != want {
			t.Fatalf("KeySlot(%q) = %d, reference %d", key, got, want)
		}
		if got >= SlotCount {
			t.Fatalf("KeySlot(%q) = %d, want < %d", key, got, SlotCount)
		}
		// A tag holds no '}', so hashed as a key it is hashed whole.
		tag, ok := ClusterTag(key)
		if ok != (len(tag) < len(key)) || ok && KeySlot(tag) != got {
			t.Fatalf("ClusterTag(%q) = %q, %v; KeySlot %d", key, tag, ok, got)
		}
	})
}

// BenchmarkKeySlot/<size>B computes one key's slot per op, with the tag
// at the start of the key or none.
func BenchmarkKeySlot(b *testing.B) {
	for _, size := range []int{16, 128} {
		keys := benchKeys(size)
		tagged := make([][]byte, len(keys))
		for i, k := range keys {
			tagged[i] = fmt.Appendf(nil, "{%d}%s", i, k[:size-6])
		}
		for _, kind := range []struct {
			name string
			keys [][]byte
		}{{"plain", keys}, {"tagged", tagged}} {
			b.Run(fmt.Sprintf("%s/%dB", kind.name, size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				var sink uint16
				i := 0
				for b.Loop() {
					sink += KeySlot(kind.keys[i&1023])
					i++
				}
				_ = sink
			})
		}
	}
}
