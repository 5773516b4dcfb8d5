package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// replySlot receives one reply from a server. The client that owns it waits
// for its batch; the server connection's reader fills it and counts it done.
type replySlot struct {
	buf   []byte
	batch *batch
	sent  time.Time // when the request was submitted, for the latency histogram
	size  int       // the request's bytes, for out_queue_bytes
	// to, when set, is the client the reply is written to directly: the
	// slot is its whole batch and the client is not waiting for it.
	to *client
}

// batch counts the replies a client still waits for. The client holds one
// extra count while it submits, so done is signalled exactly once per batch
// and only after everything was submitted.
type batch struct {
	pending atomic.Int32
	done    chan struct{}
	// held counts the bytes of the batch's large replies, which readers
	// stop keeping once they reach hard, the client's hard output buffer
	// limit (0: none), set before the batch is submitted (output.go).
	held atomic.Int64
	hard int64
}

func (s *replySlot) complete() {
	if s.batch.pending.Add(-1) == 0 {
		s.batch.done <- struct{}{}
	}
}

// fail completes the slot with an error reply.
func (s *replySlot) fail(msg string) {
	s.buf = resp.AppendError(s.buf[:0], msg)
	if s.to != nil {
		s.to.deliver(s.buf)
		return
	}
	s.complete()
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
	// defaultDialTimeout bounds a dial when the pool sets no timeout.
	defaultDialTimeout = 5 * time.Second
)

// backendConn is one connection to a server, shared by every client of the
// pool. Clients append whole batches of requests; whoever finds no write in
// progress writes everything queued so far, so under load many clients'
// requests leave in one syscall. A single reader matches replies to the
// queue of slots in order.
type backendConn struct {
	srv *server

	mu       sync.Mutex // guards everything below
	state    connState
	conn     net.Conn
	sock     *rawSocket // reads and writes conn
	addr     string     // the address conn was dialled at
	gen      uint64     // bumped on every new connection, so stale failures are ignored
	wbuf     []byte     // requests not yet written
	spare    []byte
	queue    slotQueue // every slot submitted and not yet answered, in order
	flushing bool
	unsent   int64 // requests in wbuf
	unsentB  int64 // their bytes
	retryAt  time.Time
	backoff  time.Duration
	lastErr  string
	closed   bool // the pool is gone: fail everything, dial nothing
}

// submit queues requests (their bytes and one slot per request) and makes
// sure they get written.
func (b *backendConn) submit(reqs []byte, slots []*replySlot) {
	if why := b.srv.address.unavailable(); why != "" {
		msg := b.srv.errText(why)
		b.srv.pool.stats.ForwardError.Add(int64(len(slots)))
		for _, s := range slots {
			s.fail(msg)
		}
		return
	}
	b.mu.Lock()
	switch b.state {
	case connBackoff:
		if time.Now().Before(b.retryAt) || b.closed {
			msg := b.lastErr
			b.mu.Unlock()
			for _, s := range slots {
				s.fail(msg)
			}
			return
		}
		b.startDialLocked()
	case connIdle:
		if b.closed {
			b.mu.Unlock()
			for _, s := range slots {
				s.fail(b.srv.errText("connection closed"))
			}
			return
		}
		b.startDialLocked()
	}
	wasEmpty := b.queue.len() == 0
	b.wbuf = append(b.wbuf, reqs...)
	b.queue.push(slots)
	b.unsent += int64(len(slots))
	b.unsentB += int64(len(reqs))
	st := b.srv.stats
	st.OutQueue.Add(int64(len(slots)))
	st.OutQueueBytes.Add(int64(len(reqs)))
	st.InQueue.Add(int64(len(slots)))
	st.InQueueBytes.Add(int64(len(reqs)))
	if b.state == connConnected {
		if wasEmpty && b.srv.pool.cfg.Timeout > 0 {
			b.conn.SetReadDeadline(time.Now().Add(b.srv.pool.cfg.Timeout))
		}
		if !b.flushing {
			b.flushLocked()
		}
	}
	b.mu.Unlock()
}

// flushLocked writes wbuf until it stays empty. It drops the lock while
// writing, so other clients can keep appending.
func (b *backendConn) flushLocked() {
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
		if t := b.srv.pool.cfg.Timeout; t > 0 {
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

func (b *backendConn) startDialLocked() {
	b.state = connConnecting
	go b.dial()
}

// dial connects, authenticates and selects the pool's database before any
// client request is written, so that AUTH always precedes SELECT (nutcracker
// sends SELECT first and loses it against a password-protected server).
func (b *backendConn) dial() {
	srv := b.srv
	cfg := srv.pool.cfg
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	addr := srv.address.dialAddr()
	conn, err := net.DialTimeout(srv.cfg.Network, addr, timeout)
	if err == nil {
		err = handshake(conn, cfg, timeout)
		if err != nil {
			conn.Close()
		}
	}

	b.mu.Lock()
	if err == nil && b.closed {
		conn.Close()
		err = errors.New("pool closed")
	}
	if err != nil {
		b.state = connBackoff
		if b.backoff == 0 {
			b.backoff = minBackoff
		} else if b.backoff < maxBackoff {
			b.backoff *= 2
		}
		b.retryAt = time.Now().Add(b.backoff)
		b.lastErr = srv.errText(describe(err))
		slots := b.queue.drain()
		b.wbuf = b.wbuf[:0]
		b.dropUnsentLocked()
		msg := b.lastErr
		b.mu.Unlock()
		unqueue(srv.stats, slots)
		srv.stats.ServerErr.Add(1)
		srv.pool.srv.logger.Warn("server connect failed", "pool", cfg.Name, "server", srv.cfg.Name, "addr", addr, "err", err)
		srv.pool.stats.ForwardError.Add(int64(len(slots)))
		// Count the failure (and eject) before answering, so a client's
		// next request already sees the rebuilt ring.
		srv.failed()
		for _, s := range slots {
			s.fail(msg)
		}
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	if b.backoff > 0 {
		srv.pool.srv.logger.Info("server reachable again", "pool", cfg.Name, "server", srv.cfg.Name, "addr", addr)
	} else {
		srv.pool.srv.logger.Debug("server connected", "pool", cfg.Name, "server", srv.cfg.Name, "addr", addr)
	}
	b.state = connConnected
	b.conn, b.addr = conn, addr
	b.sock = newRawSocket(conn)
	b.gen++
	b.backoff = 0
	srv.stats.Connections.Add(1)
	srv.pool.srv.stats.TotalConnections.Add(1)
	go b.readLoop(conn, b.sock, b.gen)
	if b.queue.len() > 0 && cfg.Timeout > 0 {
		conn.SetReadDeadline(time.Now().Add(cfg.Timeout))
	}
	if !b.flushing {
		b.flushLocked()
	}
	b.mu.Unlock()
}

// handshake authenticates and selects the database on a new connection.
func handshake(conn net.Conn, cfg *config.Pool, timeout time.Duration) error {
	var req []byte
	n := 0
	if cfg.RedisAuth != "" {
		req = resp.AppendCommand(req, []byte("AUTH"), []byte(cfg.RedisAuth))
		n++
	}
	if cfg.RedisDB > 0 {
		req = resp.AppendCommand(req, []byte("SELECT"), fmt.Appendf(nil, "%d", cfg.RedisDB))
		n++
	}
	if n == 0 {
		return nil
	}
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(req); err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	for i := 0; i < n; i++ {
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) > 0 && line[0] == '-' {
			what := "AUTH"
			if cfg.RedisAuth == "" || i == 1 {
				what = "SELECT"
			}
			return fmt.Errorf("%s refused: %s", what, trimCRLF(line[1:]))
		}
	}
	return nil
}

func trimCRLF(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// readLoop matches replies to the queue in order until the connection ends.
func (b *backendConn) readLoop(conn net.Conn, sock *rawSocket, gen uint64) {
	srv := b.srv
	buf := make([]byte, 16<<10)
	start, end := 0, 0
	var scanner resp.ReplyScanner
	var ends []int
	var slots []*replySlot
	for {
		n, err := sock.Read(buf[end:])
		end += n
		first := start
		ends = ends[:0]
		for start < end {
			m, perr := scanner.Scan(buf[start:end])
			if perr != nil {
				b.fail(gen, perr)
				return
			}
			if m == 0 {
				break
			}
			start += m
			ends = append(ends, start)
		}
		if len(ends) > 0 {
			b.mu.Lock()
			if gen != b.gen || b.state != connConnected || b.queue.len() < len(ends) {
				b.mu.Unlock()
				b.fail(gen, errors.New("reply without a request"))
				return
			}
			slots = b.queue.pop(slots[:0], len(ends))
			if t := srv.pool.cfg.Timeout; t > 0 {
				if b.queue.len() > 0 {
					conn.SetReadDeadline(time.Now().Add(t))
				} else {
					conn.SetReadDeadline(time.Time{})
				}
			}
			b.mu.Unlock()
			unqueue(srv.stats, slots)
			srv.stats.Responses.Add(int64(len(slots)))
			srv.stats.ResponseBytes.Add(int64(start - first))
			srv.ok()
			now := time.Now()
			from := first
			for i, s := range slots {
				reply := buf[from:ends[i]]
				from = ends[i]
				srv.stats.Latency.Observe(now.Sub(s.sent))
				if s.to != nil {
					s.to.deliver(reply)
					continue
				}
				if len(reply) >= largeReply && !s.batch.hold(len(reply)) {
					s.buf = s.buf[:0] // the client is over its hard limit and will be closed
				} else {
					s.buf = append(s.buf[:0], reply...)
				}
				s.complete()
			}
			clear(slots)
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

// dropUnsentLocked forgets the count of requests in wbuf, which was just
// written or dropped.
func (b *backendConn) dropUnsentLocked() {
	if b.unsent == 0 {
		return
	}
	b.srv.stats.InQueue.Add(-b.unsent)
	b.srv.stats.InQueueBytes.Add(-b.unsentB)
	b.unsent, b.unsentB = 0, 0
}

// fail ends connection gen: every queued request gets an error naming the
// server and the cause, and the next request dials again.
func (b *backendConn) fail(gen uint64, err error) {
	b.mu.Lock()
	b.failLocked(gen, err)
	b.mu.Unlock()
}

// failLocked ends connection gen on a failure of the server, which counts
// towards ejection.
func (b *backendConn) failLocked(gen uint64, err error) { b.endLocked(gen, err, true) }

// endLocked ends connection gen; failure says whether the server failed
// (rather than the proxy closing the connection on purpose).
func (b *backendConn) endLocked(gen uint64, err error, failure bool) {
	if gen != b.gen || b.state != connConnected {
		return
	}
	srv := b.srv
	b.conn.Close()
	b.conn, b.sock = nil, nil
	b.state = connIdle
	b.wbuf = b.wbuf[:0]
	b.dropUnsentLocked()
	slots := b.queue.drain()
	srv.stats.Connections.Add(-1)
	unqueue(srv.stats, slots)
	var ne net.Error
	switch {
	case !failure:
	case errors.As(err, &ne) && ne.Timeout():
		srv.stats.ServerTimedout.Add(1)
	case errors.Is(err, io.EOF):
		srv.stats.ServerEOF.Add(1)
	default:
		srv.stats.ServerErr.Add(1)
	}
	msg := srv.errText(describe(err))
	// Complete the slots without the lock: a client may be waiting on them
	// and the reader may be blocked on this mutex.
	b.mu.Unlock()
	if !b.closed {
		srv.pool.srv.logger.Warn("server connection lost", "pool", srv.pool.cfg.Name, "server", srv.cfg.Name, "addr", b.addr, "err", err, "failed_requests", len(slots))
	}
	srv.pool.stats.ForwardError.Add(int64(len(slots)))
	if failure {
		srv.failed() // before answering, as in dial
	}
	for _, s := range slots {
		s.fail(msg)
	}
	b.mu.Lock()
}

// close ends the connection for good: used when a reload or shutdown drops
// the server.
func (b *backendConn) close() {
	b.mu.Lock()
	b.closed = true
	if b.state == connConnected {
		b.endLocked(b.gen, errors.New("server removed"), false)
	}
	b.mu.Unlock()
}

// reset closes the connection, if any, without counting a failure, and
// forgets a dial backoff: the server moved, so the next request dials its
// new address at once.
func (b *backendConn) reset(why string) {
	b.mu.Lock()
	switch b.state {
	case connConnected:
		b.endLocked(b.gen, errors.New(why), false)
	case connBackoff:
		b.state, b.backoff = connIdle, 0
	}
	b.mu.Unlock()
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

// slotQueue is a FIFO of slots that reuses its storage.
type slotQueue struct {
	buf  []*replySlot
	head int
}

func (q *slotQueue) len() int { return len(q.buf) - q.head }

func (q *slotQueue) push(slots []*replySlot) {
	if q.head > 0 && q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, slots...)
}

// pop appends the n oldest slots to dst and removes them.
func (q *slotQueue) pop(dst []*replySlot, n int) []*replySlot {
	dst = append(dst, q.buf[q.head:q.head+n]...)
	clear(q.buf[q.head : q.head+n])
	q.head += n
	return dst
}

// drain removes and returns every slot.
func (q *slotQueue) drain() []*replySlot {
	out := append([]*replySlot(nil), q.buf[q.head:]...)
	clear(q.buf)
	q.buf, q.head = q.buf[:0], 0
	return out
}
