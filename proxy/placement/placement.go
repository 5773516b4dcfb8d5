package placement

import "github.com/shardproxy/shardproxy/hashring"

// Placement places keys on the servers of the list published with it. See
// the package documentation for the contract.
type Placement interface {
	// Lookup returns the index of the server that owns key, or -1 when no
	// server is live. It allocates nothing.
	Lookup(key []byte) int
	// Len returns the number of servers, live or not.
	Len() int
	// Live reports whether server i owns keys now.
	Live(i int) bool
	// Tag returns the part of key that places it, and true, when key has a
	// hash tag; else key and false. It allocates nothing.
	Tag(key []byte) ([]byte, bool)
}

// Ring is a nutcracker pool's placement: a hashring.Ring (ketama, modula or
// random over the pool's servers in config order, with its hash and
// hash_tag). It is the hashring.Ring itself, so a lookup costs what the
// ring's does.
type Ring hashring.Ring

// NewRing builds the ring of a pool whose servers are nodes, all live.
func NewRing(nodes []hashring.Node, opts hashring.Options) (*Ring, error) {
	r, err := hashring.New(nodes, opts)
	if err != nil {
		return nil, err
	}
	return (*Ring)(r), nil
}

func (r *Ring) ring() *hashring.Ring { return (*hashring.Ring)(r) }

// Lookup returns the index of the server that owns key, or -1 when none is
// live, as nutcracker places it.
func (r *Ring) Lookup(key []byte) int { return r.ring().Lookup(key) }

// Len returns the number of servers, live or not.
func (r *Ring) Len() int { return r.ring().Len() }

// Live reports whether server i is live, that is not left out by Without.
func (r *Ring) Live(i int) bool { return r.ring().Live(i) }

// Tag returns the part of key inside the pool's hash_tag, and true, when
// key has one; without a hash_tag every key is placed whole.
func (r *Ring) Tag(key []byte) ([]byte, bool) {
	tag := r.ring().Options().HashTag
	if len(tag) != 2 {
		return key, false
	}
	part := hashring.TagKey(key, tag)
	return part, len(part) != len(key)
}

// Without returns the ring in which the servers with ejected[i] == true own
// nothing, rebuilt as nutcracker rebuilds a pool with auto_eject_hosts (see
// hashring.Ring.Without). ejected describes every server; all false gives
// the full ring again.
func (r *Ring) Without(ejected []bool) *Ring { return (*Ring)(r.ring().Without(ejected)) }
