package hashring

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Distribution is nutcracker's distribution option: how hashes map to
// servers.
type Distribution int

const (
	// Ketama is consistent hashing on an MD5 continuum, nutcracker's
	// default.
	Ketama Distribution = iota
	// Modula is hash modulo the sum of the live servers' weights.
	Modula
	// Random picks a live server at random for every key; keys are not
	// hashed and weights are ignored.
	Random
)

var distributionNames = [...]string{
	Ketama: "ketama",
	Modula: "modula",
	Random: "random",
}

// ParseDistribution returns the distribution nutcracker calls name:
// "ketama", "modula" or "random". Names are case-sensitive.
func ParseDistribution(name string) (Distribution, error) {
	for d, n := range distributionNames {
		if n == name {
			return Distribution(d), nil
		}
	}
	return 0, fmt.Errorf("unknown distribution %q", name)
}

// String returns nutcracker's name for d.
func (d Distribution) String() string {
	if d >= 0 && int(d) < len(distributionNames) {
		return distributionNames[d]
	}
	return fmt.Sprintf("Distribution(%d)", int(d))
}

// Options are a pool's placement options.
type Options struct {
	// Hash is nutcracker's hash option, one of HashNames. "" means
	// fnv1a_64, nutcracker's default.
	Hash string
	// Distribution is nutcracker's distribution option. The zero value is
	// Ketama, nutcracker's default.
	Distribution Distribution
	// HashTag is nutcracker's hash_tag option: "" for none, else exactly
	// two bytes, the opening and closing character (see TagKey).
	HashTag string
}

// modulaMaxSlots bounds the slot table of a modula ring: up to this total
// weight, Lookup indexes a table; above it (nutcracker's README has a pool
// weighted 100000 and 1), it searches cumulative weights instead.
const modulaMaxSlots = 1 << 16

// Ring places keys on nodes as a nutcracker pool does. It is immutable and
// safe for concurrent use; reload and ejection build a new Ring.
type Ring struct {
	nodes   []Node
	names   []string // ring names, in node order
	weights []uint32
	live    []bool
	nlive   int
	opts    Options

	hash          HashFunc
	dist          Distribution
	tagged        bool
	open, closing byte // the hash_tag bytes when tagged

	// none is set when no node can be returned: no node is live.
	none bool

	ketama continuum

	// modula: slot s in [0, total) belongs to slots[s] when slots is set,
	// else to liveIdx[i] for the first i with s < ends[i].
	total uint32
	slots []int32
	ends  []uint32

	// liveIdx lists the live node indexes in order (random, modula).
	liveIdx []int32
}

// New builds an immutable ring over nodes in the given order; Lookup returns
// indexes into nodes. nutcracker orders servers by ring name, so a caller
// that wants nutcracker's placement sorts nodes with SortNodes first. All
// nodes start live. An empty nodes gives a ring whose Lookup returns -1.
//
// New does not reject two nodes with the same ring name (nutcracker's config
// check does); their ketama points would coincide and the first would own
// them all.
func New(nodes []Node, opts Options) (*Ring, error) {
	hash := fnv1a64 // nutcracker's default
	if opts.Hash != "" {
		h, err := Hash(opts.Hash)
		if err != nil {
			return nil, err
		}
		hash = h
	}
	if opts.Distribution < 0 || int(opts.Distribution) >= len(distributionNames) {
		return nil, fmt.Errorf("unknown distribution %d", int(opts.Distribution))
	}
	if opts.HashTag != "" && len(opts.HashTag) != 2 {
		return nil, fmt.Errorf("hash_tag %q is not exactly 2 bytes long", opts.HashTag)
	}
	r := &Ring{
		nodes:   append([]Node(nil), nodes...),
		names:   make([]string, len(nodes)),
		weights: make([]uint32, len(nodes)),
		opts:    opts,
		hash:    hash,
		dist:    opts.Distribution,
	}
	if len(opts.HashTag) == 2 {
		r.tagged, r.open, r.closing = true, opts.HashTag[0], opts.HashTag[1]
	}
	var total uint64
	for i, n := range nodes {
		if n.Weight < 1 {
			return nil, fmt.Errorf("server %d (%q): weight %d is less than 1", i, n.Addr, n.Weight)
		}
		total += uint64(n.Weight)
		if total > math.MaxUint32 {
			return nil, fmt.Errorf("server %d (%q): total weight exceeds %d", i, n.Addr, uint32(math.MaxUint32))
		}
		r.names[i] = n.RingName()
		r.weights[i] = uint32(n.Weight)
	}
	live := make([]bool, len(nodes))
	for i := range live {
		live[i] = true
	}
	r.build(live)
	return r, nil
}

// Without returns a ring with the same nodes and options in which the nodes
// with ejected[i] == true own nothing, rebuilt as nutcracker rebuilds a pool
// with auto_eject_hosts: over the live nodes only, keeping their indexes;
// ketama recomputes every live node's points from the live count and live
// total weight, modula and random use the live nodes alone. ejected
// describes the whole pool (it is not added to r's own ejections), so
// Without(make([]bool, r.Len())) restores the full ring. It panics when
// len(ejected) != r.Len().
func (r *Ring) Without(ejected []bool) *Ring {
	if len(ejected) != len(r.nodes) {
		panic(fmt.Sprintf("hashring: Without got %d flags for %d nodes", len(ejected), len(r.nodes)))
	}
	nr := &Ring{
		nodes:   r.nodes,
		names:   r.names,
		weights: r.weights,
		opts:    r.opts,
		hash:    r.hash,
		dist:    r.dist,
		tagged:  r.tagged,
		open:    r.open,
		closing: r.closing,
	}
	live := make([]bool, len(ejected))
	for i, e := range ejected {
		live[i] = !e
	}
	nr.build(live)
	return nr
}

// build fills in the distribution over the nodes marked live.
func (r *Ring) build(live []bool) {
	r.live = live
	var total uint32
	for i, l := range live {
		if l {
			r.nlive++
			total += r.weights[i]
			r.liveIdx = append(r.liveIdx, int32(i))
		}
	}
	r.total = total
	if r.nlive == 0 {
		r.none = true
		return
	}
	switch r.dist {
	case Ketama:
		r.ketama = newContinuum(buildKetama(r.names, r.weights, live, uint32(r.nlive), total))
		// Cannot happen: the heaviest live node always gets points.
		r.none = len(r.ketama.values) == 0
	case Modula:
		if total <= modulaMaxSlots {
			r.slots = make([]int32, 0, total)
			for _, i := range r.liveIdx {
				for range r.weights[i] {
					r.slots = append(r.slots, i)
				}
			}
		} else {
			var end uint32
			for _, i := range r.liveIdx {
				end += r.weights[i]
				r.ends = append(r.ends, end)
			}
		}
	}
}

// Lookup returns the index of the node that owns key, or -1 when no node is
// live. As in nutcracker, a ring of exactly one node returns 0 without
// hashing, an empty key (after hash_tag) hashes to 0 without calling the
// hash function, and Random ignores the key. Lookup is safe for concurrent
// use and allocates nothing.
func (r *Ring) Lookup(key []byte) int {
	if r.none {
		return -1
	}
	if len(r.nodes) == 1 {
		return 0
	}
	switch r.dist {
	case Ketama:
		return int(r.ketama.owners[r.ketama.search(r.hashKey(key))])
	case Modula:
		s := r.hashKey(key) % r.total
		if r.slots != nil {
			return int(r.slots[s])
		}
		return int(r.liveIdx[modulaSearch(r.ends, s)])
	default: // Random
		return int(r.liveIdx[rand.IntN(len(r.liveIdx))])
	}
}

// hashKey is nutcracker's server_pool_hash after hash_tag.
func (r *Ring) hashKey(key []byte) uint32 {
	if r.tagged {
		key = tagPart(key, r.open, r.closing)
	}
	if len(key) == 0 {
		return 0
	}
	return r.hash(key)
}

// modulaSearch returns the first i with s < ends[i].
func modulaSearch(ends []uint32, s uint32) int {
	lo, hi := 0, len(ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ends[m] <= s {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Len returns the number of nodes, live or not.
func (r *Ring) Len() int { return len(r.nodes) }

// Node returns node i as given to New.
func (r *Ring) Node(i int) Node { return r.nodes[i] }

// Live reports whether node i is live, that is not ejected by Without.
func (r *Ring) Live(i int) bool { return r.live[i] }

// Options returns the options the ring was built with.
func (r *Ring) Options() Options { return r.opts }

// Points returns the size of the continuum: the number of ketama points,
// the number of modula slots (the live nodes' total weight) or the number
// of live nodes for random.
func (r *Ring) Points() int {
	switch {
	case r.none:
		return 0
	case r.dist == Ketama:
		return len(r.ketama.values)
	case r.dist == Modula:
		return int(r.total)
	default:
		return r.nlive
	}
}
