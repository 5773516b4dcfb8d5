package hashring

import (
	"crypto/md5"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

const (
	// ketamaPointsPerServer is nutcracker's KETAMA_POINTS_PER_SERVER: what
	// one server of n equal ones gets, before float32 rounding.
	ketamaPointsPerServer = 160
	// ketamaPointsPerHash is how many points one MD5 digest yields.
	ketamaPointsPerHash = 4
	// ketamaMaxPointLen is the longest point string nutcracker hashes:
	// snprintf into a 273-byte buffer (KETAMA_MAX_HOSTLEN in 0.5.0) keeps
	// 272 bytes of "<name>-<i>".
	ketamaMaxPointLen = 272
)

// ketamaPoints is how many continuum points a live server of the given
// weight gets when nlive servers of total weight total are live. It repeats
// nutcracker's expression step by step in float32, the type C evaluates it
// in, with the 1e-10 added in float64 as C does; every explicit conversion
// also stops the compiler from fusing a multiply and an add. The rounding
// makes equal servers get 156 points instead of 160 for some counts
// (25, 47, 50, ...) and a server far lighter than the rest get none.
func ketamaPoints(weight, total, nlive uint32) uint32 {
	pct := float32(weight) / float32(total)
	x := float32(pct * ketamaPointsPerServer)
	x = float32(x / ketamaPointsPerHash)
	x = float32(x * float32(nlive))
	x = float32(float64(x) + 0.0000000001)
	return uint32(float32(math.Floor(float64(x))) * ketamaPointsPerHash)
}

// buildKetama returns the continuum over the live nodes: point values in
// ascending order and, in parallel, the node index owning each point.
// Equal values stay in the order they were made (lower node index, then
// lower point number, then digest slice), as glibc's merge-sort qsort
// leaves them in nutcracker.
func buildKetama(names []string, weights []uint32, live []bool, nlive, total uint32) ([]uint32, []int32) {
	n := 0
	for i, w := range weights {
		if live[i] {
			n += int(ketamaPoints(w, total, nlive))
		}
	}
	// Each point is packed as value<<32 | sequence number, so a plain sort
	// of the integers is the stable sort by value.
	packed := make([]uint64, 0, n)
	seqOwner := make([]int32, 0, n)
	var buf []byte
	for i, w := range weights {
		if !live[i] {
			continue
		}
		hashes := ketamaPoints(w, total, nlive) / ketamaPointsPerHash
		for p := range hashes {
			buf = append(buf[:0], names[i]...)
			buf = append(buf, '-')
			buf = strconv.AppendUint(buf, uint64(p), 10)
			if len(buf) > ketamaMaxPointLen {
				buf = buf[:ketamaMaxPointLen]
			}
			d := md5.Sum(buf)
			for x := range ketamaPointsPerHash {
				v := binary.LittleEndian.Uint32(d[4*x:])
				packed = append(packed, uint64(v)<<32|uint64(len(seqOwner)))
				seqOwner = append(seqOwner, int32(i))
			}
		}
	}
	slices.Sort(packed)
	values := make([]uint32, len(packed))
	owners := make([]int32, len(packed))
	for k, pv := range packed {
		values[k] = uint32(pv >> 32)
		owners[k] = seqOwner[uint32(pv)]
	}
	return values, owners
}

// ketamaIndexMaxBits caps the bucket index of a continuum at 2^16 buckets
// (256 KiB), reached at 65536 points, about 410 servers.
const ketamaIndexMaxBits = 16

// continuum is the ketama ring: sorted point values, the node owning each
// point, and a bucket index over the top bits of the values so that a
// lookup scans a bucket of one or two points instead of binary-searching
// the whole continuum (the search's mispredicted branches cost more than
// fnv1a_64 itself).
type continuum struct {
	values []uint32
	owners []int32
	// start[t] is the position of the first value whose top bits are >= t;
	// start has 2^bits + 1 entries, the last being len(values).
	start []uint32
	shift uint8 // 32 - bits
}

func newContinuum(values []uint32, owners []int32) continuum {
	c := continuum{values: values, owners: owners}
	if len(values) == 0 {
		return c
	}
	b := min(bits.Len(uint(len(values))), ketamaIndexMaxBits)
	c.shift = uint8(32 - b)
	c.start = make([]uint32, 1<<b+1)
	p := 0
	for t := range c.start {
		for p < len(values) && uint64(values[p])>>c.shift < uint64(t) {
			p++
		}
		c.start[t] = uint32(p)
	}
	return c
}

// search returns the position of the first value >= h, or 0 when h is above
// every value (the continuum wraps), like nutcracker's ketama_dispatch. The
// continuum must not be empty.
func (c *continuum) search(h uint32) int {
	t := h >> c.shift
	// Every value before start[t] has smaller top bits, so is below h; the
	// value at start[t+1] has larger ones, so is above h.
	lo, hi := int(c.start[t]), int(c.start[t+1])
	for lo < hi && c.values[lo] < h {
		lo++
	}
	if lo == len(c.values) {
		return 0
	}
	return lo
}
