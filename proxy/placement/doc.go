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
//     placement, of the server that owns key, or -1 when no server is live.
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
// with Without. Other kinds fit behind the same interface: Redis Cluster's
// slots (the CRC16 slot of the key's hash tag, the node that serves it, and a
// new value when MOVED reports a new owner), or a migration, an old and a
// new placement whose Lookup answers where a key lives while it moves.
package placement
