package proxy

import (
	"strconv"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// A client speaks RESP2 until HELLO 3 and RESP3 after it (until HELLO 2 or
// RESET). The proxy converts no reply between the two: a RESP3 client's
// requests go on server connections that said HELLO 3 themselves (each
// server has a set of shared connections per protocol, and dedicated
// ones per protocol), so what the server answers is forwarded as it is.
// What the proxy writes itself, and the frames of the replies it merges,
// are written in the client's protocol by the helpers here.
//
// HELLO 3 is refused when a server of the pool does not speak RESP3. The
// proxy learns that from the servers' own answers: every RESP3 connection
// starts with HELLO 3, and a server that answers it with an unknown command
// error or NOPROTO is marked as not speaking RESP3; a server that has not
// had a RESP3 connection yet is asked at the first HELLO 3 of a client.
// The refusal is what Redis 5, which has no HELLO, answers, and on which
// every client library falls back to RESP2.

var (
	replyNull3    = []byte("_\r\n")
	replyNullBulk = []byte("$-1\r\n")
)

// nullBulk is the client's null for a missing string: $-1, or RESP3's _.
func (c *client) nullBulk() []byte {
	if c.proto == backend.RESP3 {
		return replyNull3
	}
	return replyNullBulk
}

// nullArray is the client's null for a missing array: *-1, or RESP3's _.
func (c *client) nullArray() []byte {
	if c.proto == backend.RESP3 {
		return replyNull3
	}
	return replyNullArray
}

// appendText appends s as Redis sends a text report (INFO, CLIENT INFO,
// CLIENT LIST): a bulk string, or in RESP3 a verbatim string of format txt.
func (c *client) appendText(dst []byte, s string) []byte {
	if c.proto == backend.RESP3 {
		return resp.AppendVerbatim(dst, "txt", s)
	}
	return resp.AppendBulkString(dst, s)
}

// appendMap appends the header of a map of n pairs: in RESP2 an array of
// 2n elements.
func (c *client) appendMap(dst []byte, n int) []byte {
	if c.proto == backend.RESP3 {
		return resp.AppendMap(dst, n)
	}
	return resp.AppendArray(dst, 2*n)
}

// poolSpeaksRESP3 reports whether every server of the pool speaks RESP3,
// asking those whose answer is not known yet. A server that cannot be
// reached does not count against it: its requests fail as they would in
// RESP2.
func (c *client) poolSpeaksRESP3() bool {
	for _, s := range c.pool.servers {
		if yes, known := s.up.ProbeRESP3(); known && !yes {
			return false
		}
	}
	return true
}

// switchProto makes the client speak proto from its next command on: what
// the batch staged so far goes to the servers first, on the connections of
// the protocol it was sent in, and a pinned connection switches with it.
func (c *client) switchProto(proto int) {
	if proto == c.proto {
		return
	}
	c.settle()
	if d := c.tx.pinned; d != nil {
		if err := d.Switch(proto); err != nil {
			// Its watches go with it, as for any failed pinned connection.
			c.tx.pinned = nil
			c.tx.watchLost = true
			d.Close()
		}
	}
	c.proto = proto
	if s := c.subs; s != nil {
		s.mu.Lock()
		s.proto = proto // messages from now on come in the new protocol
		s.mu.Unlock()
	}
	if t := c.tracking; t != nil {
		// Its connections speak the protocol tracking began in: open
		// them anew in this one.
		t.sink.off.Store(true)
		for up, b := range t.conns {
			b.Close()
			delete(t.conns, up)
		}
		t.proto, t.sink = proto, &trackedSink{c: c}
		t.connectBcast(c.pool)
	}
}

// parseRedisInt parses b as Redis parses an integer argument (string2ll):
// an optional '-' and decimal digits without a leading zero or '+', within
// 64 bits; "0" alone, and no "-0".
func parseRedisInt(b []byte) (int64, bool) {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] < '0' || digits[0] > '9' || digits[0] == '0' && len(b) > 1 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil
}
