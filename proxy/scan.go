package proxy

import (
	"hash/fnv"
	"math"
	"strconv"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// SCAN walks the pool's servers one after the other, in placement order,
// each with its own SCAN; the cursor the client sees says which server the
// walk is on and that server's cursor:
//
//	cursor = (serverCursor*nservers + serverIndex)*scanTagSpace + tag
//
// tag is a fingerprint of the pool's server list, so that a cursor from
// before a reload that changed the list is refused rather than read
// against the wrong servers. 0 starts the walk and 0 ends it. A server's
// cursor of 0 moves the walk to the next live server; ejected servers own
// no keys and are passed over. The cursor is one unsigned 64-bit number,
// as go-redis, redis-py and redis-cli expect: it holds server cursors up to
// (2^64-1)/(scanTagSpace*nservers), far above what a Redis keyspace of
// fewer than that many hash buckets returns.

// scanTagSpace is the number of server list fingerprints a cursor tells
// apart.
const scanTagSpace = 1 << 10

// scanStep is where a SCAN's walk is: the server it asked and the live
// server after it, or -1.
type scanStep struct {
	server, next, nservers int
	tag                    uint64
}

// scanTag is the fingerprint of a pool's server list that its SCAN cursors
// carry.
func scanTag(servers []config.Server) uint64 {
	h := fnv.New64a()
	for _, s := range servers {
		h.Write([]byte(s.Name))
		h.Write([]byte{0})
		h.Write([]byte(s.Addr))
		h.Write([]byte{0})
	}
	return h.Sum64() % scanTagSpace
}

// encodeScanCursor is the client's cursor for server's cursor cur; ok is
// false when it does not fit.
func encodeScanCursor(cur uint64, server, nservers int, tag uint64) (_ uint64, ok bool) {
	limit := (math.MaxUint64 - tag) / scanTagSpace // largest serverCursor*n + index
	if cur > (limit-uint64(server))/uint64(nservers) {
		return 0, false
	}
	return (cur*uint64(nservers)+uint64(server))*scanTagSpace + tag, true
}

// decodeScanCursor splits the client's cursor c into a server index and
// that server's cursor. ok is false when c is from another server list.
func decodeScanCursor(c uint64, nservers int, tag uint64) (server int, cur uint64, ok bool) {
	if c == 0 {
		return 0, 0, true
	}
	if c%scanTagSpace != tag {
		return 0, 0, false
	}
	rest := c / scanTagSpace
	return int(rest % uint64(nservers)), rest / uint64(nservers), true
}

// parseCursor parses a cursor as Redis' SCAN does: an unsigned decimal.
func parseCursor(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// scan sends SCAN, with the server's own cursor in place of the client's,
// to the server the client's cursor names; MATCH, COUNT and TYPE go along
// unchanged, and the server checks them.
func (c *client) scan(cmd *resp.Command) {
	servers, tag := c.layout.servers, c.pool.scanTag
	n := len(servers)
	clientCur, ok := parseCursor(cmd.Args[1])
	if !ok {
		c.replyError(msgInvalidCursor)
		return
	}
	idx, cur, ok := decodeScanCursor(clientCur, n, tag)
	if !ok {
		c.replyError(msgStaleCursor)
		return
	}
	for idx < n && !c.layout.Live(idx) {
		idx, cur = idx+1, 0
	}
	if idx == n {
		s := c.newSlot()
		s.buf = append(s.buf, "*2\r\n$1\r\n0\r\n*0\r\n"...)
		c.calls = append(c.calls, call{slot: s})
		return
	}
	next := idx + 1
	for next < n && !c.layout.Live(next) {
		next++
	}
	if next == n {
		next = -1
	}
	f := c.newFragment(command.MergeScan)
	f.scan = scanStep{server: idx, next: next, nservers: n, tag: tag}
	f.subSrv = append(f.subSrv, idx)
	st := c.stageFor(servers[idx])
	start := len(st.buf)
	var num [20]byte
	st.buf = resp.AppendArray(st.buf, len(cmd.Args))
	st.buf = resp.AppendBulk(st.buf, cmd.Args[0])
	st.buf = resp.AppendBulk(st.buf, strconv.AppendUint(num[:0], cur, 10))
	for _, a := range cmd.Args[2:] {
		st.buf = resp.AppendBulk(st.buf, a)
	}
	f.subs = append(f.subs, c.staged(st, start))
	c.calls = append(c.calls, call{frag: f})
}

// mergeScan is the server's SCAN reply with the client's cursor in place
// of the server's.
func (f *fragment) mergeScan(out []byte) []byte {
	b := f.subs[0].buf
	line, n := resp.ReadLine(b, 0)
	if n < 0 || string(line) != "*2" {
		return resp.AppendError(out, msgFanOutBadReply)
	}
	line, n = resp.ReadLine(b, n)
	if n < 0 || len(line) == 0 || line[0] != '$' {
		return resp.AppendError(out, msgFanOutBadReply)
	}
	line, n = resp.ReadLine(b, n)
	cur, ok := parseCursor(line)
	if n < 0 || !ok || n >= len(b) || b[n] != '*' {
		return resp.AppendError(out, msgFanOutBadReply)
	}
	st := f.scan
	var next uint64
	switch {
	case cur != 0:
		if next, ok = encodeScanCursor(cur, st.server, st.nservers, st.tag); !ok {
			return resp.AppendError(out, msgScanCursorRange)
		}
	case st.next >= 0:
		next, _ = encodeScanCursor(0, st.next, st.nservers, st.tag)
	}
	var num [20]byte
	out = resp.AppendArray(out, 2)
	out = resp.AppendBulk(out, strconv.AppendUint(num[:0], next, 10))
	return append(out, b[n:]...)
}
