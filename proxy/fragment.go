package proxy

import (
	"slices"
	"sync"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// fragment is a multi-key command split per server: one sub-request per
// server in ascending server order, each with that server's keys in the
// client's order, and what is needed to merge the replies as one Redis
// server would have answered.
type fragment struct {
	kind   command.Merge
	nkeys  int
	subs   []*replySlot
	subSrv []int    // server index of each sub-request
	keySub []int32  // MGET: the sub-request of each key, in client order
	counts []int    // keys per sub-request, while building
	elems  []int    // MGET: element end offsets of every sub reply, while merging
	cursor []int    // MGET: next element of each sub reply, while merging
	starts []int    // MGET: first element offset of each sub reply
	first  int      // RANDOMKEY: the sub reply looked at first
	scan   scanStep // SCAN: where the walk is

	// INFO with a Keyspace section, merged by mergeKeyspace.
	keyspace bool
	strict   bool   // the section was asked for by name: a server's error is the reply
	verbatim bool   // the client speaks RESP3: INFO is a verbatim string
	info     []byte // the proxy's sections, ending in the Keyspace header
	db       int    // the pool's redis_db, whose keyspace lines are summed

	// subKey is what sub-requests are grouped by: the server index, or in
	// a Redis Cluster pool the slot, as a node takes the keys of one slot
	// only in one command.
	subKey []int
	// byKey holds the argument index of every key grouped by sub-request,
	// sub-request j's from subStart[j] on, while building.
	byKey    []int32
	subStart []int
}

// subIndexes are tables from a server index or a slot to 1 + its
// sub-request in the fragment being built, 0 for none, lent to a split of
// many keys so that it finds each key's sub-request at once rather than
// by a search over the sub-requests made so far, which an MGET of
// thousands of keys over thousands of slots makes quadratic. A split
// leaves the table all zero again.
var subIndexes = sync.Pool{New: func() any { return new([hashring.SlotCount]int32) }}

// indexedSplit is how many keys a split has before it looks sub-requests
// up in a table: below it a search over the few made so far is cheaper.
const indexedSplit = 16

func (c *client) newFragment(kind command.Merge) *fragment {
	if c.nfrags == len(c.frags) {
		c.frags = append(c.frags, &fragment{})
	}
	f := c.frags[c.nfrags]
	c.nfrags++
	f.kind, f.nkeys, f.keyspace = kind, 0, false
	f.subs, f.subSrv, f.keySub, f.counts = f.subs[:0], f.subSrv[:0], f.keySub[:0], f.counts[:0]
	f.subKey = f.subKey[:0]
	return f
}

// split routes MGET, DEL, UNLINK, EXISTS, TOUCH and MSET. When every key is
// on one server the command goes there unchanged; otherwise each server gets
// the same command with its own keys.
func (c *client) split(def *command.Spec, cmd *resp.Command) {
	args := cmd.Args
	step := def.Step
	if step == 2 && (len(args)-1)%2 != 0 {
		c.replyError(wrongArity(def.Name))
		return
	}
	f := c.newFragment(def.Merge)
	slots, clustered := c.layout.Placement.(*placement.Slots)
	var index *[hashring.SlotCount]int32
	if (len(args)-1)/step > indexedSplit && (clustered || len(c.layout.servers) <= hashring.SlotCount) {
		index = subIndexes.Get().(*[hashring.SlotCount]int32)
	}
	unowned := -1 // the argument of a key no server owns
	for i := 1; i < len(args); i += step {
		idx := c.layout.Lookup(args[i])
		if idx < 0 {
			unowned = i
			break
		}
		key := idx
		if clustered {
			key = int(slots.Slot(args[i]))
		}
		sub := -1
		if index != nil {
			sub = int(index[key]) - 1
		} else {
			for j, k := range f.subKey {
				if k == key {
					sub = j
					break
				}
			}
		}
		if sub < 0 {
			sub = len(f.subSrv)
			f.subSrv = append(f.subSrv, idx)
			f.subKey = append(f.subKey, key)
			f.counts = append(f.counts, 0)
			if index != nil {
				index[key] = int32(sub + 1)
			}
		}
		f.counts[sub]++
		f.keySub = append(f.keySub, int32(sub))
		f.nkeys++
	}
	if index != nil {
		for _, k := range f.subKey {
			index[k] = 0
		}
		subIndexes.Put(index)
	}
	if unowned >= 0 {
		c.nfrags--
		c.replyError(c.layout.noOwnerOf(args[unowned]))
		return
	}
	if len(f.subSrv) == 1 {
		c.nfrags--
		c.route(f.subSrv[0], cmd)
		return
	}
	c.pool.stats.Fragments.Add(int64(len(f.subSrv)))
	// Emit sub-requests in ascending server order, like nutcracker.
	order := c.keys[:0]
	for j := range f.subSrv {
		order = append(order, j)
	}
	slices.SortStableFunc(order, func(a, b int) int { return f.subSrv[a] - f.subSrv[b] })
	c.keys = order
	for len(f.subs) < len(f.subSrv) {
		f.subs = append(f.subs, nil)
	}
	// Each key's argument index, grouped by sub-request in client order,
	// so that every sub-request reads its own keys only.
	f.subStart = f.subStart[:0]
	n := 0
	for _, cnt := range f.counts {
		f.subStart = append(f.subStart, n)
		n += cnt
	}
	f.byKey = slices.Grow(f.byKey[:0], n)[:n]
	for k, sub := range f.keySub {
		f.byKey[f.subStart[sub]] = int32(1 + k*step)
		f.subStart[sub]++
	}
	for j, cnt := range f.counts {
		f.subStart[j] -= cnt
	}
	for _, j := range order {
		st := c.stageFor(c.layout.servers[f.subSrv[j]])
		start := len(st.buf)
		st.buf = resp.AppendArray(st.buf, 1+f.counts[j]*step)
		st.buf = resp.AppendBulk(st.buf, args[0])
		for _, i := range f.byKey[f.subStart[j] : f.subStart[j]+f.counts[j]] {
			for s := 0; s < step; s++ {
				st.buf = resp.AppendBulk(st.buf, args[int(i)+s])
			}
		}
		f.subs[j] = c.staged(st, start)
		if clustered {
			f.subs[j].readOnly = def.ReadOnly() // cluster_tryagain.go
		}
	}
	c.calls = append(c.calls, call{frag: f})
}

// merge appends the combined reply. An error from any server is the reply
// (the first in server order); nothing is half-merged.
func (f *fragment) merge(out []byte) []byte {
	if f.keyspace {
		return f.mergeKeyspace(out)
	}
	for _, s := range f.subs {
		if resp.IsError(s.buf) {
			return append(out, s.buf...)
		}
	}
	switch f.kind {
	case command.MergeSum:
		var sum int64
		for _, s := range f.subs {
			n, ok := resp.ParseInteger(s.buf)
			if !ok {
				return resp.AppendError(out, msgSplitBadReply)
			}
			sum += n
		}
		return resp.AppendInt(out, sum)
	case command.MergeOK:
		return resp.AppendOK(out)
	case command.MergeSame:
		return f.mergeSame(out)
	case command.MergeAnd:
		return f.mergeAnd(out)
	case command.MergeConcat:
		return f.mergeConcat(out)
	case command.MergeAnyKey:
		return f.mergeAnyKey(out)
	case command.MergeScan:
		return f.mergeScan(out)
	case command.MergeUnion:
		return f.mergeUnion(out)
	case command.MergeMax:
		return f.mergeMax(out)
	}
	return f.mergeArray(out)
}

// mergeArray puts MGET's per-server arrays back into the client's key order.
func (f *fragment) mergeArray(out []byte) []byte {
	f.elems, f.starts, f.cursor = f.elems[:0], f.starts[:0], f.cursor[:0]
	for j, s := range f.subs {
		b := s.buf
		line, n := resp.ReadLine(b, 0)
		if n < 0 || len(line) == 0 || line[0] != '*' {
			return resp.AppendError(out, msgSplitBadReply)
		}
		count, _ := resp.ParseLength(line[1:])
		if count != f.counts[j] {
			return resp.AppendError(out, msgSplitBadReply)
		}
		f.starts = append(f.starts, len(f.elems))
		f.cursor = append(f.cursor, len(f.elems))
		f.elems = append(f.elems, n)
		for i := 0; i < count; i++ {
			m := resp.ReplyLen(b[n:])
			if m == 0 {
				return resp.AppendError(out, msgSplitBadReply)
			}
			n += m
			f.elems = append(f.elems, n)
		}
	}
	out = resp.AppendArray(out, f.nkeys)
	for _, sub := range f.keySub {
		cur := f.cursor[sub]
		b := f.subs[sub].buf
		out = append(out, b[f.elems[cur]:f.elems[cur+1]]...)
		f.cursor[sub] = cur + 1
	}
	return out
}
