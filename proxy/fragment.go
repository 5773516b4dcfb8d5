package proxy

import (
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
}

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
	for i := 1; i < len(args); i += step {
		idx := c.layout.Lookup(args[i])
		if idx < 0 {
			c.nfrags--
			c.replyError(c.layout.noOwner())
			return
		}
		key := idx
		if clustered {
			key = int(slots.Slot(args[i]))
		}
		sub := -1
		for j, k := range f.subKey {
			if k == key {
				sub = j
				break
			}
		}
		if sub < 0 {
			sub = len(f.subSrv)
			f.subSrv = append(f.subSrv, idx)
			f.subKey = append(f.subKey, key)
			f.counts = append(f.counts, 0)
		}
		f.counts[sub]++
		f.keySub = append(f.keySub, int32(sub))
		f.nkeys++
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
	for a := 1; a < len(order); a++ {
		for b := a; b > 0 && f.subSrv[order[b]] < f.subSrv[order[b-1]]; b-- {
			order[b], order[b-1] = order[b-1], order[b]
		}
	}
	c.keys = order
	for len(f.subs) < len(f.subSrv) {
		f.subs = append(f.subs, nil)
	}
	for _, j := range order {
		st := c.stageFor(c.layout.servers[f.subSrv[j]])
		start := len(st.buf)
		st.buf = resp.AppendArray(st.buf, 1+f.counts[j]*step)
		st.buf = resp.AppendBulk(st.buf, args[0])
		k := 0
		for i := 1; i < len(args); i += step {
			if int(f.keySub[k]) == j {
				for s := 0; s < step; s++ {
					st.buf = resp.AppendBulk(st.buf, args[i+s])
				}
			}
			k++
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
