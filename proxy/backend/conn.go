package backend

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/proxy/internal/rawsock"
	"github.com/shardproxy/shardproxy/proxy/resp"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// ReplySink receives the reply to one request from the server connection
// that sent it; each request gets exactly one call. Deliver gets the
// reply's bytes, which are valid only during the call; Fail gets an error
// reply's message ("ERR ...") when the request got no reply. Either runs on
// the connection's reader or on whoever submitted the request, and must not
// block: a slow sink would hold up every client of the connection.
type ReplySink interface {
	Deliver(reply []byte)
	Fail(msg string)
}

// maxKeptBuffer is the largest buffer a connection keeps for reuse, as
// the client does for its own.
const maxKeptBuffer = 64 << 10

// waiter is a request a server connection owes a reply: where the reply
// goes, when the request was submitted, for the latency histogram, and its
// size, for out_queue_bytes.
type waiter struct {
	to   ReplySink
	sent time.Time
	size int
}

// connState is where a server connection is in its life.
type connState uint8

const (
	connIdle       connState = iota // not connected; the next request dials
	connConnecting                  // dialling; requests queue up
	connConnected
	connBackoff // the last dial failed; requests fail until retryAt
)

// Bounds on reconnecting to a server whose dial failed.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Conn is one connection to an upstream, shared by every client of the
// pools that use it. Clients append whole batches of requests; whoever
// finds no write in progress writes everything queued so far, so under load
// many clients' requests leave in one syscall. A single reader matches
// replies to the queue of waiters in order. It knows no client and no
// pool: its upstream gives it the dialer, the address, the settings, the
// counters and the health it reports to.
type Conn struct {
	up    *Upstream
	proto int   // RESP2 or RESP3, set at its making
	twin  *Conn // a RESP2 connection's RESP3 twin, which lives and closes with it; else nil
	// A private connection (NewPrivateConn) sends setup after its
	// handshake and hands its pushes and its ends to sink; nil for the
	// shared ones.
	setup [][][]byte
	sink  PushSink

	mu       sync.Mutex // guards everything below
	state    connState
	conn     net.Conn
	sock     *rawsock.Socket // reads and writes conn
	addr     string          // the address conn was dialled at
	gen      uint64          // bumped on every new connection, so stale failures are ignored
	wbuf     []byte          // requests not yet written
	spare    []byte
	queue    waiterQueue // every request submitted and not yet answered, in order
	flushing bool
	unsent   int64 // requests in wbuf
	unsentB  int64 // their bytes
	retryAt  time.Time
	backoff  time.Duration
	lastErr  string
	closed   bool // no pool uses it any more: fail everything, dial nothing
}

// Submit queues requests (their bytes, and where each reply goes) and
// makes sure they get written; sizes are the requests' sizes in reqs, and
// sent is when the client submitted them.
func (b *Conn) Submit(reqs []byte, to []ReplySink, sizes []int, sent time.Time) {
	up := b.up
	if why := up.address.Unavailable(); why != "" {
		msg := up.errText(why)
		up.config.Load().ForwardErrors.Add(int64(len(to)))
		for _, s := range to {
			s.Fail(msg)
		}
		return
	}
	b.mu.Lock()
	switch b.state {
	case connBackoff:
		if time.Now().Before(b.retryAt) || b.closed {
			msg := b.lastErr
			b.mu.Unlock()
			for _, s := range to {
				s.Fail(msg)
			}
			return
		}
		b.startDialLocked()
	case connIdle:
		if b.closed {
			b.mu.Unlock()
			msg := up.errText("connection closed")
			for _, s := range to {
				s.Fail(msg)
			}
			return
		}
		b.startDialLocked()
	}
	wasEmpty := b.queue.len() == 0
	b.wbuf = append(b.wbuf, reqs...)
	b.queue.push(to, sizes, sent)
	b.unsent += int64(len(to))
	b.unsentB += int64(len(reqs))
	st := &up.stats
	st.OutQueue.Add(int64(len(to)))
	st.OutQueueBytes.Add(int64(len(reqs)))
	st.InQueue.Add(int64(len(to)))
	st.InQueueBytes.Add(int64(len(reqs)))
	if b.state == connConnected {
		if wasEmpty {
			if t := up.config.Load().Timeout; t > 0 {
				b.conn.SetReadDeadline(time.Now().Add(t))
			}
		}
		if !b.flushing {
			b.flushLocked()
		}
	}
	b.mu.Unlock()
}

// flushLocked writes wbuf until it stays empty. It drops the lock while
// writing, so other clients can keep appending.
func (b *Conn) flushLocked() {
	b.flushing = true
	// Let clients that are already runnable append their requests first:
	// under load this turns many small writes into one, and when nothing
	// else is runnable it costs next to nothing.
	b.mu.Unlock()
	runtime.Gosched()
	b.mu.Lock()
	for len(b.wbuf) > 0 && b.state == connConnected {
		out, conn, sock, gen := b.wbuf, b.conn, b.sock, b.gen
		b.wbuf = b.spare[:0]
		b.spare = nil
		b.dropUnsentLocked()
		b.mu.Unlock()
		if t := b.up.config.Load().Timeout; t > 0 {
			conn.SetWriteDeadline(time.Now().Add(t))
		}
		_, err := sock.Write(out)
		b.mu.Lock()
		if cap(out) <= maxKeptBuffer {
			b.spare = out[:0]
		}
		if err != nil {
			b.failLocked(gen, err)
			break
		}
	}
	b.flushing = false
}

// Connect dials the connection now if it is not connected or dialling,
// rather than at its first request (the preconnect option); a failure is
// only logged and counted.
func (b *Conn) Connect() {
	b.mu.Lock()
	if b.state == connIdle {
		b.startDialLocked()
	}
	b.mu.Unlock()
}

func (b *Conn) startDialLocked() {
	b.state = connConnecting
	go b.dial()
}

// dial connects (the dialer authenticates and selects the database)
// before any client request is written.
func (b *Conn) dial() {
	up := b.up
	cfg := up.config.Load()
	addr := up.address.DialAddr()
	conn, err := up.dialer.dialSetup(addr, cfg.Timeout, b.proto, b.setup)
	up.learnProto(b.proto, err)

	b.mu.Lock()
	if err == nil && b.closed {
		conn.Close()
		err = errors.New("connection closed")
	}
	if err != nil {
		b.state = connBackoff
		if b.backoff == 0 {
			b.backoff = minBackoff
		} else if b.backoff < maxBackoff {
			b.backoff *= 2
		}
		b.retryAt = time.Now().Add(b.backoff)
		b.lastErr = up.errText(describe(err))
		waiters := b.queue.drain()
		b.wbuf = b.wbuf[:0]
		b.dropUnsentLocked()
		msg := b.lastErr
		b.mu.Unlock()
		unqueue(&up.stats, waiters)
		up.stats.ServerErr.Add(1)
		cfg.Logger.Warn("server connect failed", "addr", addr, "err", err)
		cfg.ForwardErrors.Add(int64(len(waiters)))
		// Count the failure (and eject) before answering, so a client's
		// next request already sees the rebuilt ring. A server that only
		// lacks RESP3 still serves RESP2 clients: that is no failure.
		if !errors.Is(err, ErrNoRESP3) {
			up.failed()
		}
		if !errors.Is(err, ErrNotMaster) && !errors.Is(err, ErrNoRESP3) {
			up.doubt() // ROLE's refusal already did
		}
		for _, w := range waiters {
			w.to.Fail(msg)
		}
		return
	}
	if b.backoff > 0 {
		cfg.Logger.Info("server reachable again", "addr", addr)
	} else {
		cfg.Logger.Debug("server connected", "addr", addr)
	}
	b.state = connConnected
	b.conn, b.addr = conn, addr
	b.sock = rawsock.New(conn)
	b.gen++
	b.backoff = 0
	up.health.connected()
	up.stats.Connections.Add(1)
	cfg.TotalConnections.Add(1)
	go b.readLoop(conn, b.sock, b.gen)
	if b.queue.len() > 0 && cfg.Timeout > 0 {
		conn.SetReadDeadline(time.Now().Add(cfg.Timeout))
	}
	if !b.flushing {
		b.flushLocked()
	}
	b.mu.Unlock()
}

// readLoop matches replies to the queue in order until the connection ends.
func (b *Conn) readLoop(conn net.Conn, sock *rawsock.Socket, gen uint64) {
	up := b.up
	buf := make([]byte, 16<<10)
	start, end := 0, 0
	var scanner resp.ReplyScanner
	var ends []int
	var pushes []bool // whether the reply ending at ends[i] is a push
	var waiters []waiter
	for {
		n, err := sock.Read(buf[end:])
		end += n
		first := start
		ends, pushes = ends[:0], pushes[:0]
		npush := 0
		for start < end {
			m, perr := scanner.Scan(buf[start:end])
			if perr != nil {
				b.fail(gen, perr)
				return
			}
			if m == 0 {
				break
			}
			push := resp.IsPush(buf[start : start+m])
			if push {
				npush++
			}
			start += m
			ends = append(ends, start)
			pushes = append(pushes, push)
		}
		if npush == len(ends) && npush > 0 {
			b.pushAll(buf, first, ends) // no reply: the queue is not touched
		} else if len(ends) > 0 {
			nreplies := len(ends) - npush
			b.mu.Lock()
			if gen != b.gen || b.state != connConnected || b.queue.len() < nreplies {
				b.mu.Unlock()
				b.fail(gen, errors.New("reply without a request"))
				return
			}
			waiters = b.queue.pop(waiters[:0], nreplies)
			if t := up.config.Load().Timeout; t > 0 {
				if b.queue.len() > 0 {
					conn.SetReadDeadline(time.Now().Add(t))
				} else {
					conn.SetReadDeadline(time.Time{})
				}
			}
			b.mu.Unlock()
			unqueue(&up.stats, waiters)
			up.stats.Responses.Add(int64(len(waiters)))
			up.stats.ResponseBytes.Add(int64(start - first))
			up.ok()
			now := time.Now()
			from := first
			next := 0
			for i, e := range ends {
				reply := buf[from:e]
				from = e
				if pushes[i] {
					b.push(reply)
					continue
				}
				w := waiters[next]
				next++
				up.stats.Latency.Observe(now.Sub(w.sent))
				w.to.Deliver(reply)
			}
			clear(waiters)
		}
		if err != nil {
			b.fail(gen, err)
			return
		}
		// Keep the unread tail at the front; grow only for a reply larger
		// than the buffer.
		if start == end {
			start, end = 0, 0
			if cap(buf) > maxKeptBuffer {
				buf = make([]byte, 16<<10)
			}
		} else if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else {
				nb := make([]byte, 2*len(buf))
				copy(nb, buf[:end])
				buf = nb
			}
		}
	}
}

// pushAll hands the push messages in buf, which start at from and end at
// ends, to the connection's sink or its upstream's handler.
func (b *Conn) pushAll(buf []byte, from int, ends []int) {
	for _, e := range ends {
		b.push(buf[from:e])
		from = e
	}
}

// push hands a push message to the connection's sink, or, for a shared
// connection, to its upstream's handler.
func (b *Conn) push(msg []byte) {
	if b.sink != nil {
		b.sink.Push(msg)
		return
	}
	b.up.push(msg)
}

// unqueue takes answered or failed requests out of the server's out_queue.
func unqueue(st *stats.Server, waiters []waiter) {
	n := 0
	for _, w := range waiters {
		n += w.size
	}
	st.OutQueue.Add(-int64(len(waiters)))
	st.OutQueueBytes.Add(-int64(n))
}

// dropUnsentLocked forgets the count of requests in wbuf, which was just
// written or dropped.
func (b *Conn) dropUnsentLocked() {
	if b.unsent == 0 {
		return
	}
	b.up.stats.InQueue.Add(-b.unsent)
	b.up.stats.InQueueBytes.Add(-b.unsentB)
	b.unsent, b.unsentB = 0, 0
}

// fail ends connection gen: every queued request gets an error naming the
// server and the cause, and the next request dials again.
func (b *Conn) fail(gen uint64, err error) {
	b.mu.Lock()
	b.failLocked(gen, err)
	b.mu.Unlock()
}

// failLocked ends connection gen on a failure of the server, which counts
// towards ejection.
func (b *Conn) failLocked(gen uint64, err error) { b.endLocked(gen, err, true) }

// endLocked ends connection gen; failure says whether the server failed
// (rather than the proxy closing the connection on purpose).
func (b *Conn) endLocked(gen uint64, err error, failure bool) {
	if gen != b.gen || b.state != connConnected {
		return
	}
	up := b.up
	b.conn.Close()
	b.conn, b.sock = nil, nil
	b.state = connIdle
	b.wbuf = b.wbuf[:0]
	b.dropUnsentLocked()
	waiters := b.queue.drain()
	up.stats.Connections.Add(-1)
	unqueue(&up.stats, waiters)
	var ne net.Error
	switch {
	case !failure:
	case errors.As(err, &ne) && ne.Timeout():
		up.stats.ServerTimedout.Add(1)
	case errors.Is(err, io.EOF):
		up.stats.ServerEOF.Add(1)
	default:
		up.stats.ServerErr.Add(1)
	}
	msg := up.errText(describe(err))
	cfg := up.config.Load()
	// Answer the waiters without the lock: a client may be waiting on them
	// and the reader may be blocked on this mutex.
	b.mu.Unlock()
	if !b.closed {
		cfg.Logger.Warn("server connection lost", "addr", b.addr, "err", err, "failed_requests", len(waiters))
	}
	cfg.ForwardErrors.Add(int64(len(waiters)))
	if failure {
		up.failed() // before answering, as in dial
		up.doubt()
	}
	if b.sink != nil {
		b.sink.Lost()
	}
	for _, w := range waiters {
		w.to.Fail(msg)
	}
	b.mu.Lock()
}

// close ends the connection for good: used when no pool uses it any more,
// and at shutdown.
func (b *Conn) close() {
	b.mu.Lock()
	b.closed = true
	if b.state == connConnected {
		b.endLocked(b.gen, errors.New("server removed"), false)
	}
	b.mu.Unlock()
	if b.twin != nil {
		b.twin.close()
	}
}

// idle reports whether no request waits on the connection, or its twin.
func (b *Conn) idle() bool {
	b.mu.Lock()
	idle := b.queue.len() == 0
	b.mu.Unlock()
	return idle && (b.twin == nil || b.twin.idle())
}

// reset closes the connection, if any, without counting a failure, and
// forgets a dial backoff: the server moved, so the next request dials its
// new address at once.
func (b *Conn) reset(why string) {
	b.mu.Lock()
	switch b.state {
	case connConnected:
		b.endLocked(b.gen, errors.New(why), false)
	case connBackoff:
		b.state, b.backoff = connIdle, 0
	}
	b.mu.Unlock()
	if b.twin != nil {
		b.twin.reset(why)
	}
}

// describe turns a connection error into the short cause clients see.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, io.EOF):
		return "connection closed by server"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		if se, ok := op.Err.(*os.SyscallError); ok {
			return se.Err.Error()
		}
		return op.Err.Error()
	}
	return err.Error()
}

// waiterQueue is a FIFO of waiters that reuses its storage.
type waiterQueue struct {
	buf  []waiter
	head int
}

func (q *waiterQueue) len() int { return len(q.buf) - q.head }

// push appends a waiter for each of to, of the size at the same index in
// sizes, all sent at sent.
func (q *waiterQueue) push(to []ReplySink, sizes []int, sent time.Time) {
	if q.head > 0 && q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	for i, s := range to {
		q.buf = append(q.buf, waiter{to: s, sent: sent, size: sizes[i]})
	}
}

// pop appends the n oldest waiters to dst and removes them.
func (q *waiterQueue) pop(dst []waiter, n int) []waiter {
	dst = append(dst, q.buf[q.head:q.head+n]...)
	clear(q.buf[q.head : q.head+n])
	q.head += n
	return dst
}

// drain removes and returns every waiter.
func (q *waiterQueue) drain() []waiter {
	out := append([]waiter(nil), q.buf[q.head:]...)
	clear(q.buf)
	q.buf, q.head = q.buf[:0], 0
	return out
}
