package proxy

import (
	"errors"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// Backpressure and output buffer limits: what one client can make the
// proxy hold.
//
// A batch's replies are held until the last one has arrived and then
// written, and the client reads no more requests until they are. So what a
// client holds is its batch's replies, and a client that does not read holds
// one batch. The batch's command limit follows the size of the client's
// replies: it starts at initialBatch, shrinks in proportion when a batch's
// replies exceed the reply budget, and doubles, up to maxBatch, after a full
// batch whose replies took at most half of it. A client of small replies
// keeps maxBatch; one of 1 MB replies gets three commands a batch.
//
// The budget cannot know a reply before it arrives, so the pool's
// client_output_buffer_limit (config.OutputBufferLimit) bounds the rest, as Redis'
// client-output-buffer-limit does: the server connection's reader stops
// keeping a batch's large replies once they reach the hard limit (it still
// reads them: it serves every client of the server and never waits for
// one), and the client is closed without being sent the batch. A client
// whose unwritten replies stay over the soft limit for the soft time is
// closed by a write deadline. A direct reply's remainder that the socket did
// not take at once (direct.go) counts the same way.
//
// Replies of writeInPlace bytes or more are written from the slot they
// arrived in rather than copied next to the small ones first.

const (
	// initialBatch is a new client's batch limit, low because its first
	// batch comes before any of its replies was seen: 16 replies of 1 MB,
	// not 512. Pipelines of small replies reach maxBatch in five batches.
	initialBatch = 16
	// replyBudget is what a client's batch should hold at most, in reply
	// bytes; it is lowered to a quarter of the hard limit and half the
	// soft limit when those are smaller, so that a client that reads
	// keeps clear of them and one that does not sits below the soft limit.
	replyBudget = 4 << 20
	// largeReply is the size from which the reader counts a reply against
	// the hard limit as it copies it. Smaller ones are counted by the
	// client once the batch is complete: 512 of them hold under 8 MB.
	largeReply = 16 << 10
	// writeInPlace is the size from which a reply is written from its slot
	// instead of being copied into the client's output buffer.
	writeInPlace = maxKeptBuffer
)

var errOutputLimit = errors.New("client output buffer limit reached")

// batchBudget is the reply budget of a batch under l.
func batchBudget(l *config.OutputBufferLimit) int64 {
	b := int64(replyBudget)
	if l.Hard > 0 {
		b = min(b, l.Hard/4)
	}
	if l.Soft > 0 {
		b = min(b, l.Soft/2)
	}
	return b
}

// adapt sets the next batch's command limit from the n commands of the
// batch just served and their total reply bytes.
func (c *client) adapt(n int, total int64) {
	budget := batchBudget(&c.pool.cfg.ClientOutputBufferLimit)
	switch {
	case total > budget:
		c.limit = max(1, min(c.limit, int(int64(n)*budget/total)))
	case c.limit < maxBatch && n >= c.limit && 2*total <= budget:
		c.limit = min(maxBatch, 2*c.limit)
	}
}

// hold counts n bytes of a large reply that the batch is about to keep. It
// returns false, and the reply must be dropped, once the batch's large
// replies reach the hard limit: the client is then closed.
func (b *batch) hold(n int) bool {
	held := b.held.Add(int64(n))
	return b.hard == 0 || held < b.hard
}

// size is the reply bytes a call holds.
func (cl *call) size() int64 {
	if cl.frag == nil {
		return int64(len(cl.slot.buf))
	}
	n := 0
	for _, s := range cl.frag.subs {
		n += len(s.buf)
	}
	return int64(n)
}

// writeReplies writes a batch's replies, all of them in p, within the
// client's output buffer limit.
func (c *client) writeReplies(p []byte) error {
	if hard := c.pool.cfg.ClientOutputBufferLimit.Hard; hard > 0 && int64(len(p)) >= hard {
		return c.closeOverLimit("hard", int64(len(p)))
	}
	if soft := c.pool.cfg.ClientOutputBufferLimit.Soft; soft > 0 && int64(len(p)) >= soft {
		return c.writeOut(p, 0)
	}
	_, err := c.write(p)
	return err
}

// writeLargeReplies writes a batch that holds large replies: small replies
// are gathered in c.out, large ones written from their slots, each slot let
// go once written.
func (c *client) writeLargeReplies() error {
	held := c.batch.held.Load()
	c.batch.held.Store(0)
	var total int64
	for i := range c.calls {
		total += c.calls[i].size()
	}
	if hard := c.pool.cfg.ClientOutputBufferLimit.Hard; hard > 0 && max(held, total) >= hard {
		c.endBatch()
		return c.closeOverLimit("hard", max(held, total))
	}
	c.adapt(len(c.calls), total)
	rest := total // what the calls after the current one hold
	out := c.out[:0]
	var err error
	for i := range c.calls {
		cl := &c.calls[i]
		rest -= cl.size()
		if cl.frag != nil {
			out = cl.frag.merge(out)
		} else if b := cl.slot.buf; len(b) >= writeInPlace {
			if len(out) > 0 {
				if err = c.writeOut(out, rest+int64(len(b))); err != nil {
					break
				}
				out = out[:0]
			}
			if err = c.writeOut(b, rest); err != nil {
				break
			}
			cl.slot.buf = nil
			continue
		} else {
			out = append(out, b...)
		}
		if len(out) >= maxKeptBuffer {
			if err = c.writeOut(out, rest); err != nil {
				break
			}
			out = out[:0]
		}
	}
	if err == nil && len(out) > 0 {
		err = c.writeOut(out, 0)
	}
	c.endBatch()
	if cap(out) > maxKeptBuffer {
		out = nil
	}
	c.out = out[:0]
	if err == nil && c.overSoft {
		c.underSoft()
	}
	return err
}

// writeOut writes p, after which rest more bytes of replies are still to be
// written. While p and rest together are at the soft limit or over it, the
// write has a deadline at the end of the soft time, counted from when they
// first were; the part of p that takes them back under is written without.
// It runs on the client's goroutine, or for a direct reply on the goroutine
// that finishes it while the client waits.
func (c *client) writeOut(p []byte, rest int64) error {
	c.lockWrites()
	defer c.unlockWrites()
	lim := &c.pool.cfg.ClientOutputBufferLimit
	if unwritten := int64(len(p)) + rest; lim.Soft > 0 && unwritten >= lim.Soft {
		if !c.overSoft {
			c.overSoft = true
			c.conn.SetWriteDeadline(time.Now().Add(lim.SoftTime))
		}
		k := min(int64(len(p)), unwritten-lim.Soft+1)
		n, err := c.sock.Write(p[:k])
		if err != nil {
			if isTimeout(err) {
				return c.closeOverLimit("soft", unwritten-int64(n))
			}
			return err
		}
		p = p[k:]
		if int64(len(p))+rest >= lim.Soft {
			return nil // p is all written; the rest is still over
		}
		c.underSoft()
	}
	if len(p) == 0 {
		return nil
	}
	_, err := c.sock.Write(p)
	return err
}

// underSoft ends the soft time: what is left to write is under the limit.
func (c *client) underSoft() {
	c.overSoft = false
	c.conn.SetWriteDeadline(time.Time{})
}

// closeOverLimit closes a client whose unwritten replies (n bytes) are over
// its output buffer limit, once, and returns errOutputLimit. It may run on a
// server connection's reader, for a direct reply.
func (c *client) closeOverLimit(which string, n int64) error {
	if c.limitClosed.CompareAndSwap(false, true) {
		lim := &c.pool.cfg.ClientOutputBufferLimit
		c.pool.stats.ClientOutputLimitCloses.Add(1)
		c.srv.logger.Warn("client closed for overcoming its output buffer limit",
			"pool", c.pool.cfg.Name, "client", c.conn.RemoteAddr().String(), "limit", which,
			"unwritten_bytes", n, "hard_limit_bytes", lim.Hard, "soft_limit_bytes", lim.Soft,
			"soft_seconds", int64(lim.SoftTime/time.Second))
		closeNow(c.conn)
	}
	return errOutputLimit
}
