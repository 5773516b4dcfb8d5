package proxy

import (
	"sync/atomic"
	"time"
)

// Direct replies: a batch of one forwarded request is answered by the
// server connection's reader, which writes the reply straight from its read
// buffer to the client's socket. The client's goroutine goes back to
// reading as soon as the request is submitted instead of sleeping until the
// reply arrives, so an unpipelined request costs one goroutine wake-up
// rather than two, and the reply is not copied on its way.
//
// The reader must never block on a client: it writes only what the socket
// takes at once, and a goroutine writes the rest of a reply to a slow
// client. A client has at most one direct reply outstanding and waits for
// it before it writes or submits anything else, so replies keep their order.

// directReply is the state of a client's outstanding direct reply.
type directReply struct {
	// state is directIdle, directOutstanding while a reply is on its way,
	// or directAwaited once the client sleeps on wake for it. Only a
	// client that has to wait costs a channel operation.
	state atomic.Int32
	wake  chan struct{}
	err   error  // the outcome of the last direct reply
	spill []byte // the rest of a reply the socket did not take at once
	size  int    // the length of the last direct reply, for the batch limit
}

const (
	directIdle int32 = iota
	directOutstanding
	directAwaited
)

// canAnswerDirect reports whether the batch is one forwarded request whose
// reply the reader can write as it is.
func (c *client) canAnswerDirect() bool {
	return c.sock.Raw() && c.subs == nil && len(c.calls) == 1 && c.calls[0].frag == nil &&
		len(c.stages) == 1 && len(c.stages[0].slots) == 1
}

// submitDirect hands the batch's single request, whose reply goes to slot,
// to its server connection, whose reader will answer the client.
func (c *client) submitDirect(slot *replySlot) {
	st := &c.stages[0]
	slot.to = c
	c.direct.size = 0
	c.direct.state.Store(directOutstanding)
	st.send(time.Now())
	c.releaseStages()
}

// awaitDirect waits until an outstanding direct reply has been written and
// returns the error writing it, if any.
func (c *client) awaitDirect() error {
	d := &c.direct
	if d.state.Load() == directOutstanding && d.state.CompareAndSwap(directOutstanding, directAwaited) {
		<-d.wake
	}
	err := d.err // nil when nothing was outstanding
	d.err = nil
	return err
}

// deliver writes a direct reply. It runs on the reader (or wherever the
// request failed) and never blocks: what the socket does not take at once
// is written by a goroutine of its own, unless it is at the client's hard
// output buffer limit, which closes the client.
func (c *client) deliver(reply []byte) {
	d := &c.direct
	d.size = len(reply)
	n, err := c.sock.TryWrite(reply)
	if err == nil && n < len(reply) {
		if hard := c.pool.cfg.ClientOutputBufferLimit.Hard; hard > 0 && int64(len(reply)-n) >= hard {
			c.delivered(c.closeOverLimit("hard", int64(len(reply)-n)))
			return
		}
		d.spill = append(d.spill[:0], reply[n:]...)
		go c.writeSpill()
		return
	}
	c.delivered(err)
}

// writeSpill finishes a direct reply that a slow client's socket could not
// take at once, within the client's soft output buffer limit.
func (c *client) writeSpill() {
	d := &c.direct
	err := c.writeOut(d.spill, 0)
	if cap(d.spill) > maxKeptBuffer {
		d.spill = nil
	}
	c.delivered(err)
}

// delivered records the outcome of a direct reply and wakes the client if
// it is waiting for it.
func (c *client) delivered(err error) {
	d := &c.direct
	d.err = err
	if d.state.Swap(directIdle) == directAwaited {
		d.wake <- struct{}{}
	}
}
