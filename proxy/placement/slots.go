package placement

import (
	"fmt"

	"github.com/shardproxy/shardproxy/hashring"
)

// Slots is a Redis Cluster pool's placement: each of the 16384 slots is
// owned by one server of the list published with it, or by none while no
// node is known to serve it. A key is placed by its slot
// (hashring.KeySlot), so keys with the same hash tag are placed together.
type Slots struct {
	owner [hashring.SlotCount]int32
	live  []bool // live[i]: server i owns at least one slot
}

// NewSlots builds the placement in which slot s is owned by server
// owner[s], an index below n, or by none when owner[s] is -1. n is the
// length of the server list; a server may own no slot. It panics on an
// owner outside [-1, n), a mistake of the caller's.
func NewSlots(owner [hashring.SlotCount]int32, n int) *Slots {
	s := &Slots{owner: owner, live: make([]bool, n)}
	for slot, i := range owner {
		switch {
		case i == -1:
		case i < 0 || int(i) >= n:
			panic(fmt.Sprintf("placement: slot %d owned by server %d of %d", slot, i, n))
		default:
			s.live[i] = true
		}
	}
	return s
}

// Lookup returns the index of the server that owns key's slot, or -1 when
// no server does.
func (s *Slots) Lookup(key []byte) int { return int(s.owner[hashring.KeySlot(key)]) }

// Len returns the number of servers, owning slots or not.
func (s *Slots) Len() int { return len(s.live) }

// Live reports whether server i owns at least one slot.
func (s *Slots) Live(i int) bool { return i >= 0 && i < len(s.live) && s.live[i] }

// Tag returns key's Redis Cluster hash tag and true when it has one, else
// key and false (hashring.ClusterTag).
func (s *Slots) Tag(key []byte) ([]byte, bool) { return hashring.ClusterTag(key) }

// Slot returns key's slot, what CLUSTER KEYSLOT answers.
func (s *Slots) Slot(key []byte) uint16 { return hashring.KeySlot(key) }

// Owner returns the index of the server that owns slot, or -1 when none
// does or slot is not below 16384.
func (s *Slots) Owner(slot uint16) int {
	if int(slot) >= len(s.owner) {
		return -1
	}
	return int(s.owner[slot])
}
