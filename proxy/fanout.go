package proxy

import (
	"bytes"
	"math/rand/v2"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Fan-out commands: SCRIPT LOAD, EXISTS and FLUSH and FUNCTION LOAD,
// DELETE, FLUSH and RESTORE change or ask every server's script cache,
// because EVALSHA and FCALL may go to any server; the command table takes
// which ones, and how their replies merge, from redis-server's
// request_policy and response_policy tips. The request goes unchanged to every server in
// the ring, in server order, as a fragment with one part per server; the
// replies are merged once all are in. An ejected server is out of the ring
// and owns no keys, so it is left out: scripts keep working on the servers
// its keys moved to, and a client that later meets NOSCRIPT there loads the
// script again, as Redis asks clients to.
//
// Whole-pool keyspace commands go the same way: DBSIZE (summed), KEYS
// (every server's keys, in server order), FLUSHDB and FLUSHALL (+OK once
// every server said OK) and RANDOMKEY (a key from some server that has
// one). The pool's keyspace is that of its live servers, which own every
// key a client can reach. SCAN walks the servers one at a time (scan.go).

// fanOut sends a SCRIPT or FUNCTION subcommand to every server of the
// ring, its replies merged as the command table says. The servers check
// the arguments.
func (c *client) fanOut(def *command.Spec, cmd *resp.Command) {
	if def.Merge == command.MergeScan {
		c.scan(cmd)
		return
	}
	f := c.newFragment(def.Merge)
	for i := range c.layout.servers {
		if c.layout.Live(i) {
			f.subSrv = append(f.subSrv, i)
		}
	}
	switch len(f.subSrv) {
	case 0:
		c.nfrags--
		c.replyError(msgNoServer)
		return
	case 1:
		c.nfrags--
		c.route(f.subSrv[0], cmd)
		return
	}
	if def.Merge == command.MergeAnyKey {
		f.first = rand.IntN(len(f.subSrv))
	}
	c.pool.stats.Fragments.Add(int64(len(f.subSrv)))
	for _, i := range f.subSrv {
		f.subs = append(f.subs, c.forward(c.layout.servers[i], cmd))
	}
	c.calls = append(c.calls, call{frag: f})
}

// mergeSame is the reply every server gave (SCRIPT LOAD's digest, FUNCTION
// LOAD's library name, +OK).
func (f *fragment) mergeSame(out []byte) []byte {
	first := f.subs[0].buf
	for _, s := range f.subs[1:] {
		if !bytes.Equal(s.buf, first) {
			return resp.AppendError(out, msgFanOutDiffer)
		}
	}
	return append(out, first...)
}

// mergeAnd is SCRIPT EXISTS: an array whose element i is 1 when every
// server answered 1 at i, else 0.
func (f *fragment) mergeAnd(out []byte) []byte {
	start := len(out)
	f.cursor = f.cursor[:0]
	count := -1
	for _, s := range f.subs {
		line, n := resp.ReadLine(s.buf, 0)
		if n < 0 || len(line) == 0 || line[0] != '*' {
			return resp.AppendError(out, msgFanOutBadReply)
		}
		m, ok := resp.ParseLength(line[1:])
		if !ok || m < 0 || count >= 0 && m != count {
			return resp.AppendError(out, msgFanOutBadReply)
		}
		count = m
		f.cursor = append(f.cursor, n)
	}
	out = resp.AppendArray(out, count)
	for range count {
		all := true
		for j, s := range f.subs {
			line, n := resp.ReadLine(s.buf, f.cursor[j])
			if n < 0 || len(line) != 2 || line[0] != ':' || line[1] != '0' && line[1] != '1' {
				return resp.AppendError(out[:start], msgFanOutBadReply)
			}
			all = all && line[1] == '1'
			f.cursor[j] = n
		}
		if all {
			out = append(out, ":1\r\n"...)
		} else {
			out = append(out, ":0\r\n"...)
		}
	}
	return out
}

// mergeConcat is KEYS: every server's array, one after the other in
// server order.
func (f *fragment) mergeConcat(out []byte) []byte {
	f.cursor = f.cursor[:0]
	total := 0
	for _, s := range f.subs {
		line, n := resp.ReadLine(s.buf, 0)
		if n < 0 || len(line) == 0 || line[0] != '*' {
			return resp.AppendError(out, msgFanOutBadReply)
		}
		m, ok := resp.ParseLength(line[1:])
		if !ok || m < 0 {
			return resp.AppendError(out, msgFanOutBadReply)
		}
		total += m
		f.cursor = append(f.cursor, n)
	}
	out = resp.AppendArray(out, total)
	for j, s := range f.subs {
		out = append(out, s.buf[f.cursor[j]:]...)
	}
	return out
}

// mergeAnyKey is RANDOMKEY: the first key in server order starting from
// the server fanOut picked at random, or the null reply when no server
// has a key.
func (f *fragment) mergeAnyKey(out []byte) []byte {
	for k := range f.subs {
		s := f.subs[(f.first+k)%len(f.subs)]
		if !isNullReply(s.buf) {
			return append(out, s.buf...)
		}
	}
	return append(out, f.subs[0].buf...)
}

// isNullReply reports whether reply is RESP2's null bulk string or RESP3's
// null.
func isNullReply(reply []byte) bool {
	return bytes.HasPrefix(reply, []byte("$-1\r\n")) || bytes.HasPrefix(reply, []byte("_\r\n"))
}
