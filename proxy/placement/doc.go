// Package placement says which server owns a key. A Placement is a value:
// built once, never changed, safe for concurrent use. A pool publishes it
// together with the server list its indexes name, in one atomic swap, and a
// client loads that pair once per batch, so every key of a batch is placed
// by the same value and a change (an ejection, a reload, a new topology)
// never shows a placement with another placement's servers.
//
// The contract:
//
//   - Lookup(key) is the index, in the server list published with the
//     placement, of the server that owns key, or -1 when no server is live
//     (for Slots: when no server serves the key's slot).
//     It takes no lock and allocates nothing.
//   - Len is the length of that list; Live(i) says whether server i owns
//     any keys now. An ejected server keeps its index and owns nothing.
//   - Tag(key) is the part of key that places it when key has a hash tag,
//     so that callers can tell whether keys formed later (SORT's BY and GET
//     patterns) are placed with it.
//
// A change builds a new value and publishes it; a value in use is never
// changed. Ring is nutcracker's placement (ketama, modula or random over
// hashring, bit-exact with nutcracker); ejecting servers builds a new Ring
// with Without.
//
// Slots is a Redis Cluster's placement: a table of the 16384 slots, each
// naming the server (a node of the cluster, by its index in the list) that
// serves it, or -1 while none is known to. Lookup is the owner of the key's
// slot, hashring.KeySlot: the CRC16 of the key's hash tag, or of the whole
// key without one, so Tag is Redis Cluster's rule for every key (the part
// between the first '{' and the first '}' after it, when not empty). Live(i)
// says whether server i owns a slot; a node that owns none (a replica, or a
// master whose slots moved away) keeps its index. A new topology (CLUSTER
// SLOTS, or a MOVED naming a new owner) builds a new Slots; Lookup gives -1
// for a slot no node serves, and the caller answers as Redis Cluster does
// for it.
//
// Other kinds fit behind the same interface, such as a migration: an old
// and a new placement whose Lookup answers where a key lives while it
// moves.
package placement
