package placement

import (
	"fmt"
	"testing"

	"github.com/shardproxy/shardproxy/hashring"
)

var _ Placement = (*Slots)(nil)

// threeNodeSlots is the table redis-cli --cluster create makes for three
// masters, except that slots 16000 to 16383 have no owner, and a fourth
// server that owns nothing.
func threeNodeSlots() (owner [hashring.SlotCount]int32, n int) {
	for slot := range owner {
		switch {
		case slot <= 5460:
			owner[slot] = 0
		case slot <= 10922:
			owner[slot] = 1
		case slot < 16000:
			owner[slot] = 2
		default:
			owner[slot] = -1
		}
	}
	return owner, 4
}

// Every slot of the table maps back to its owner, through Owner and
// through Lookup of a key in that slot; an unowned slot gives -1.
func TestSlotsEverySlot(t *testing.T) {
	owner, n := threeNodeSlots()
	s := NewSlots(owner, n)
	for slot := range hashring.SlotCount {
		if got := s.Owner(uint16(slot)); got != int(owner[slot]) {
			t.Fatalf("Owner(%d) = %d, want %d", slot, got, owner[slot])
		}
	}
	covered, unowned := 0, 0
	var seen [hashring.SlotCount]bool
	for i := 0; covered < hashring.SlotCount; i++ {
		key := fmt.Appendf(nil, "key:%d", i)
		slot := s.Slot(key)
		if want := hashring.KeySlot(key); slot != want {
			t.Fatalf("Slot(%q) = %d, want %d", key, slot, want)
		}
		if got := s.Lookup(key); got != int(owner[slot]) {
			t.Fatalf("Lookup(%q) = %d, want %d (slot %d)", key, got, owner[slot], slot)
		}
		if !seen[slot] {
			seen[slot], covered = true, covered+1
			if owner[slot] == -1 {
				unowned++
			}
		}
	}
	if unowned != hashring.SlotCount-16000 {
		t.Errorf("%d unowned slots looked up, want %d", unowned, hashring.SlotCount-16000)
	}
	if got := s.Owner(hashring.SlotCount); got != -1 {
		t.Errorf("Owner(%d) = %d, want -1", hashring.SlotCount, got)
	}
}

// Live says which servers own slots; Len counts them all.
func TestSlotsLive(t *testing.T) {
	owner, n := threeNodeSlots()
	s := NewSlots(owner, n)
	if s.Len() != 4 {
		t.Errorf("Len() = %d, want 4", s.Len())
	}
	for i, want := range []bool{true, true, true, false} {
		if got := s.Live(i); got != want {
			t.Errorf("Live(%d) = %v, want %v", i, got, want)
		}
	}
	if s.Live(-1) || s.Live(4) {
		t.Errorf("Live(-1), Live(4) = %v, %v, want false", s.Live(-1), s.Live(4))
	}
	var none [hashring.SlotCount]int32
	for i := range none {
		none[i] = -1
	}
	empty := NewSlots(none, 2)
	if empty.Len() != 2 || empty.Live(0) || empty.Live(1) || empty.Lookup([]byte("foo")) != -1 {
		t.Errorf("no slot owned: Len %d, Live %v %v, Lookup %d", empty.Len(), empty.Live(0), empty.Live(1), empty.Lookup([]byte("foo")))
	}
}

// A table naming a server outside the list is the caller's mistake.
func TestNewSlotsPanics(t *testing.T) {
	for _, bad := range []int32{-2, 3} {
		owner, _ := threeNodeSlots()
		owner[7] = bad
		func() {
			defer func() {
				want := fmt.Sprintf("placement: slot 7 owned by server %d of 3", bad)
				if got := recover(); got != want {
					t.Errorf("NewSlots with owner %d of 3: panic %v, want %q", bad, got, want)
				}
			}()
			NewSlots(owner, 3)
		}()
	}
}

func TestSlotsTag(t *testing.T) {
	owner, n := threeNodeSlots()
	s := NewSlots(owner, n)
	for _, tc := range []struct {
		key, tag string
		ok       bool
	}{
		{"user{1}x", "1", true},
		{"a{}{b}", "a{}{b}", false},
		{"{{b}}", "{b", true},
		{"plain", "plain", false},
	} {
		tag, ok := s.Tag([]byte(tc.key))
		if string(tag) != tc.tag || ok != tc.ok {
			t.Errorf("Tag(%q) = %q, %v, want %q, %v", tc.key, tag, ok, tc.tag, tc.ok)
		}
	}
}

// Lookup, Tag and Slot allocate nothing: they run per key.
func TestSlotsAllocateNothing(t *testing.T) {
	owner, n := threeNodeSlots()
	var p Placement = NewSlots(owner, n)
	s := p.(*Slots)
	key := []byte("user{42}:profile")
	for name, f := range map[string]func(){
		"Lookup": func() { p.Lookup(key) },
		"Tag":    func() { p.Tag(key) },
		"Slot":   func() { s.Slot(key) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}

// BenchmarkSlotsLookup places one key per op through the Placement
// interface, as BenchmarkLookup does for rings.
func BenchmarkSlotsLookup(b *testing.B) {
	keys := testKeys()
	owner, n := threeNodeSlots()
	var p Placement = NewSlots(owner, n)
	b.ReportAllocs()
	i, sink := 0, 0
	for b.Loop() {
		sink += p.Lookup(keys[i&1023])
		i++
	}
	_ = sink
}
