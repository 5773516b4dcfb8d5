package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/internal/rawsock"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

const (
	// maxBatch bounds the commands one client has in flight, so a client
	// that pipelines a million commands is served in slices. A client's
	// own limit is lower while its replies are large (output.go).
	maxBatch = 512
	// readBufferSize is a client's read buffer; it grows for a larger
	// request and shrinks back once the request is done.
	readBufferSize = 16 << 10
	// maxKeptBuffer is the largest buffer kept for reuse after a request.
	maxKeptBuffer = 64 << 10
	// maxRequestLen bounds one request; together with resp.MaxBulkLen it bounds
	// what a single client can make the proxy hold.
	maxRequestLen = resp.MaxBulkLen + 16<<20
)

// client is one client connection. Its goroutine reads a batch of complete
// commands, routes them, submits each touched server's share at once, waits
// for the replies and writes them back in request order with one write.
//
// What a client needs only while it is served is its session, which it
// holds from the moment its goroutine starts until it parks (idle.go): an
// idle client is the fields below and its socket, not its buffers.
type client struct {
	*session

	srv  *Server
	l    *listener
	pool *pool // the listener's pool as of the current batch
	conn net.Conn
	id   int64

	limit int // commands the next batch may hold (output.go)
	proto int // 2 or 3: the RESP version the client chose with HELLO

	// user is who the client is (acl.go): the user it authenticated as,
	// or the default user when it needs no AUTH; nil until it does.
	// users are the pool's users that user is one of, and authed says
	// whether user is set; userNow is user for other goroutines.
	user    *acl.User
	userNow atomic.Pointer[acl.User]
	users   *acl.Users
	authed  bool

	name     []byte
	libName  []byte         // CLIENT SETINFO LIB-NAME
	libVer   []byte         // CLIENT SETINFO LIB-VER
	subs     *subState      // made at the first subscription (pubsub.go)
	tracking *trackingState // while CLIENT TRACKING is on (tracking.go)
	// hasTracking is whether tracking is on and trackingStale whether the
	// pool's layout changed since, for the Server (tracking.go).
	hasTracking, trackingStale atomic.Bool
	quit                       bool
	stopping                   atomic.Bool
	killed                     atomic.Bool // by CLIENT KILL, and on its way out

	limitClosed atomic.Bool // closed for its output buffer limit

	subscriptions atomic.Int32 // channels, patterns and shard channels subscribed to now

	// reads counts the reads that brought bytes, for the idle watch.
	reads uint64
	idle  idleState // idle.go
}

// session is the state of a client that is being served: its buffers, its
// batch and the modes that last across batches but keep it from parking
// (a transaction). Other goroutines reach it only through a batch in
// flight (reply slots, a direct reply), which a parked client never has.
type session struct {
	sock         *rawsock.Socket // reads and writes conn
	rbuf         []byte
	rstart, rend int
	parser       resp.Parser
	cmd          resp.Command
	out          []byte
	overSoft     bool // the replies being written are over the soft limit (output.go)

	layout *layout // the pool's, loaded once per batch
	calls  []call
	slots  []*replySlot // reusable slots; the first nslots are in use
	nslots int
	frags  []*fragment
	nfrags int
	stages []stage
	batch  batch
	direct directReply
	keys   []int

	aclScratch acl.Scratch
	tx         txState
	blocked    blockedState
}

// newSession returns the state a client on conn starts or resumes with.
func newSession(conn net.Conn) *session {
	s := &session{sock: rawsock.New(conn)}
	s.batch.done = make(chan struct{}, 1)
	s.direct.wake = make(chan struct{}, 1)
	return s
}

// call is one command of a batch and where its reply will be.
type call struct {
	slot *replySlot // the reply, for every command that is not split
	frag *fragment  // the parts, for a split command
}

// stage collects a batch's requests for one server.
type stage struct {
	srv  *server
	conn *backend.Conn
	// replica, when set, is the replica of srv's group that the stage
	// reads from (replicas.go); nil for srv's master.
	replica *replica
	buf     []byte
	slots   []backend.ReplySink // the replySlot of each request
	sizes   []int               // the size of each request in buf
}

// add records that the request at buf[start:] has its reply go to s.
func (st *stage) add(s *replySlot, start int) {
	st.slots = append(st.slots, s)
	st.sizes = append(st.sizes, len(st.buf)-start)
}

// replySlot receives one reply from a server: it is the client's
// backend.ReplySink. The client that owns it waits for its batch; the server
// connection's reader fills it and counts it done.
type replySlot struct {
	buf   []byte
	batch *batch
	// to, when set, is the client the reply is written to directly: the
	// slot is its whole batch and the client is not waiting for it.
	to *client
	// req is the request the reply answers, for a forwarded one.
	req request
	// group is req's server's group when it is one (group.go), else nil:
	// a reply saying the command did not run is then held and the request
	// sent again, on conn, the connection it went out on, until holdUntil.
	// readOnly says whether the command only reads, so that it may be
	// sent again even when its outcome is unknown.
	group     *group
	conn      *backend.Conn
	readOnly  bool
	holdUntil time.Time
	// replica is the replica of req's group that a read went to, which
	// may send it on to the master (replicas.go); else nil.
	replica *replica
	// caching is the CLIENT CACHING request sent right before req, which
	// must precede it again if it is sent again (tracking.go); else nil.
	caching []byte
	// redirects counts the -MOVED and -ASK replies req followed to
	// another node of its cluster (cluster.go); conn is then where it
	// went last.
	redirects int8
	// again is what req keeps for -TRYAGAIN retries (cluster_tryagain.go).
	again tryAgainState
	// tracked is where the pushes of req's tracking client go, when req
	// went out on one of its tracking connections to a cluster node: a
	// redirect then reads on a shared connection, which tracks nothing,
	// and tells the client to drop its cache (cluster.go); else nil.
	tracked *trackedSink
}

// request is a forwarded request as it went out: the server it was sent to
// and its bytes, the range of the batch's stage buffer for that server that
// it occupies. Both stay valid until the request's reply, or its final
// error, is delivered to its slot, so that the request can be sent again to
// another server or dropped: a stage buffer is reused only by the client's
// next batch, which starts once every reply of this one is in (a direct
// reply too: the client waits for it before it stages anything), and a
// stage buffer that grows moves to a new array, leaving the old one, and
// the requests in it, as they were.
type request struct {
	srv   *server
	bytes []byte
}

// testHookDeliver, when set, sees every reply as it reaches its slot, before the
// slot takes it; tests use it to see requests as their replies arrive.
var testHookDeliver atomic.Pointer[func(s *replySlot, reply []byte)]

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
	// retries is the batch's request that a cluster node answered
	// -TRYAGAIN, sent again later, and those held behind it
	// (cluster_tryagain.go).
	retries tryAgainQueue
}

func (s *replySlot) complete() {
	if s.batch.pending.Add(-1) == 0 {
		s.batch.done <- struct{}{}
	}
}

// Deliver copies the reply into the slot, or writes a direct reply.
func (s *replySlot) Deliver(reply []byte) {
	if f := testHookDeliver.Load(); f != nil {
		(*f)(s, reply)
	}
	if s.replica != nil && s.fromReplica(reply) {
		return
	}
	if g := s.group; g != nil && g.held(s, reply) {
		return
	}
	if (len(reply) > 0 && reply[0] == '-' || s.batch.retries.active.Load()) && s.req.srv != nil && s.req.srv.pool.seeds != nil && s.clusterHeld(reply) {
		return
	}
	if s.to != nil {
		s.to.deliver(reply)
		return
	}
	if len(reply) >= largeReply && !s.batch.hold(len(reply)) {
		s.buf = s.buf[:0] // the client is over its hard limit and will be closed
	} else {
		s.buf = append(s.buf[:0], reply...)
	}
	s.complete()
}

// Fail completes the slot with an error reply.
func (s *replySlot) Fail(msg string) {
	s.buf = resp.AppendError(s.buf[:0], msg)
	s.clusterFailed()
	if s.batch.retries.active.Load() {
		s.tryAgainFailed()
	}
	if s.replica != nil && s.toMaster() {
		return
	}
	if g := s.group; g != nil && g.heldFailure(s) {
		return
	}
	if s.to != nil {
		s.to.deliver(s.buf)
		return
	}
	s.complete()
}

// testHookClientProto, when not 0, is the RESP version new clients start
// with, for tests of RESP3 replies.
var testHookClientProto atomic.Int32

func newClient(s *Server, l *listener, p *pool, conn net.Conn) *client {
	c := &client{srv: s, l: l, pool: p, conn: conn, id: s.ids.Add(1), proto: 2, limit: initialBatch}
	if v := testHookClientProto.Load(); v != 0 {
		c.proto = int(v)
	}
	c.idle.fd = -1
	if lot() != nil {
		c.idle.fd = rawsock.Fd(conn)
	}
	return c
}

// stopReadGrace is how long a stopping client still reads: a request that
// was already on its way when shutdown began is served, not dropped.
const stopReadGrace = 100 * time.Millisecond

// stopWhenIdle asks the client to close after the batch it is serving.
func (c *client) stopWhenIdle() {
	c.stopping.Store(true)
	c.conn.SetReadDeadline(time.Now().Add(stopReadGrace))
	c.unpark()
}

// serve is the client's goroutine from its accept.
func (c *client) serve() {
	c.session = newSession(c.conn)
	if tc, ok := c.conn.(*tls.Conn); ok {
		if err := c.handshakeTLS(tc); err != nil {
			c.pool.stats.ClientErr.Add(1)
			c.close()
			c.srv.removeClient(c)
			return
		}
	}
	c.run()
}

// run serves the client until it leaves, or parks (idle.go).
func (c *client) run() {
	if c.serveBatches() {
		return // parked: the client is no longer this goroutine's
	}
	c.close()
	c.srv.removeClient(c)
}

// serveBatches serves batch after batch until the client leaves, or until
// it parks, which it reports.
func (c *client) serveBatches() (parked bool) {
	for {
		if err := c.beginBatch(); err != nil {
			c.pool.stats.ClientErr.Add(1)
			return
		}
		var perr error
		for len(c.calls) < c.limit && !c.quit {
			n, err := c.parser.Next(c.rbuf[c.rstart:c.rend], &c.cmd)
			if err != nil {
				perr = err
				break
			}
			if n == 0 {
				break
			}
			c.rstart += n
			if len(c.cmd.Args) > 0 {
				c.dispatch(&c.cmd)
			}
		}
		full := len(c.calls) >= c.limit
		if len(c.calls) > 0 {
			err := c.finishBatch()
			c.releaseWrites()
			if err != nil {
				c.pool.stats.ClientErr.Add(1)
				return
			}
		}
		if perr != nil {
			c.write(resp.AppendError(c.out[:0], protocolErrorReply(perr)))
			c.pool.stats.ClientErr.Add(1)
			return
		}
		if c.quit {
			return
		}
		if full {
			continue // more complete commands may be waiting in the buffer
		}
		if c.stopping.Load() {
			return
		}
		if err := c.fill(); err != nil {
			var ne net.Error
			switch {
			case err == errParked:
				return true
			case err == errIdleTimeout:
				c.pool.stats.ClientIdleTimeouts.Add(1)
			case errors.Is(err, io.EOF):
				c.pool.stats.ClientEOF.Add(1)
			case c.stopping.Load() && (errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed)):
				// Stopped by shutdown or CLIENT KILL: not the client's error.
			case errors.Is(err, errRequestTooLarge):
				c.write(resp.AppendError(c.out[:0], protocolErrorReply(err)))
				c.pool.stats.ClientErr.Add(1)
			default:
				c.pool.stats.ClientErr.Add(1)
			}
			return
		}
	}
}

// beginBatch waits for the previous batch's direct reply, then picks up the
// listener's current pool, which a reload may have replaced, and whether the
// client's user is still one of the pool's, unchanged.
func (c *client) beginBatch() error {
	if err := c.awaitDirect(); err != nil {
		return err
	}
	if n := c.direct.size; n > 0 {
		c.direct.size = 0
		if c.limit < maxBatch {
			c.adapt(1, int64(n))
		}
	}
	p := c.l.pool.Load()
	if p != c.pool {
		c.pool.stats.ClientConnections.Add(-1)
		p.stats.ClientConnections.Add(1)
		c.pool = p
	}
	c.batch.hard = p.cfg.ClientOutputBufferLimit.Hard
	if c.tracking != nil {
		c.layoutChanged()
	}
	if p.users != c.users {
		c.rebindUser(p.users)
	}
	return nil
}

// fill reads more bytes, first making room: it moves an unfinished command
// to the front of the buffer, or grows the buffer for a large one.
func (c *client) fill() error {
	if c.idle.timedOut.Load() {
		return errIdleTimeout
	}
	if c.rstart == c.rend {
		c.rstart, c.rend = 0, 0
		if len(c.rbuf) > maxKeptBuffer {
			c.rbuf = nil
		}
	}
	c.takeReadBuffer()
	if c.rend == len(c.rbuf) {
		if c.rstart > 0 {
			c.rend = copy(c.rbuf, c.rbuf[c.rstart:c.rend])
			c.rstart = 0
		} else {
			if len(c.rbuf) >= maxRequestLen {
				return errRequestTooLarge
			}
			nb := make([]byte, min(2*len(c.rbuf), maxRequestLen))
			copy(nb, c.rbuf[:c.rend])
			c.rbuf = nb
		}
	}
	c.watchIdle()
	for {
		n, err := c.sock.Read(c.rbuf[c.rend:])
		c.rend += n
		if n > 0 {
			c.reads++
			return nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		if c.idle.armed && isTimeout(err) && !c.stopping.Load() {
			if err := c.idleDeadline(); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// write writes p after any direct reply still on its way.
func (c *client) write(p []byte) (int, error) {
	if err := c.awaitDirect(); err != nil {
		return 0, err
	}
	c.lockWrites()
	n, err := c.sock.Write(p)
	c.unlockWrites()
	return n, err
}

func (c *client) close() {
	c.awaitDirect()
	c.tx.reset()
	c.trackingOff()
	c.endPubSub()
	c.conn.Close()
}

// newSlot returns a reusable reply slot for this batch.
func (c *client) newSlot() *replySlot {
	if c.nslots == len(c.slots) {
		c.slots = append(c.slots, &replySlot{batch: &c.batch})
	}
	s := c.slots[c.nslots]
	c.nslots++
	s.buf, s.to, s.req, s.group, s.replica, s.caching = s.buf[:0], nil, request{}, nil, nil, nil
	return s
}

// reply records a reply the proxy produced itself, or that came on a
// pinned connection.
func (c *client) reply(b []byte) {
	s := c.newSlot()
	if len(b) < largeReply || c.batch.hold(len(b)) {
		s.buf = append(s.buf, b...)
	}
	c.calls = append(c.calls, call{slot: s})
}

// replyError records an error reply; msg starts with the error code.
func (c *client) replyError(msg string) {
	s := c.newSlot()
	s.buf = resp.AppendError(s.buf, msg)
	c.calls = append(c.calls, call{slot: s})
}

// stageFor returns the batch's stage for srv, making one if needed.
func (c *client) stageFor(srv *server) *stage {
	for i := range c.stages {
		if c.stages[i].srv == srv && c.stages[i].replica == nil {
			return &c.stages[i]
		}
	}
	if len(c.stages) < cap(c.stages) {
		c.stages = c.stages[:len(c.stages)+1]
	} else {
		c.stages = append(c.stages, stage{})
	}
	st := &c.stages[len(c.stages)-1]
	st.srv, st.conn, st.replica = srv, c.connFor(srv), nil
	st.buf, st.slots, st.sizes = st.buf[:0], st.slots[:0], st.sizes[:0]
	return st
}

// forward stages cmd for srv and returns the slot its reply will fill.
func (c *client) forward(srv *server, cmd *resp.Command) *replySlot {
	st := c.stageFor(srv)
	start := len(st.buf)
	if cmd.Inline {
		st.buf = resp.AppendCommand(st.buf, cmd.Args...)
	} else {
		st.buf = append(st.buf, cmd.Raw...)
	}
	return c.staged(st, start)
}

// staged returns the slot for the request that st's buffer holds from
// start on, the last one staged.
func (c *client) staged(st *stage, start int) *replySlot {
	var caching []byte
	if c.tracking != nil && c.tracking.armed != nil {
		start, caching = c.stageCaching(st, start), c.tracking.armed
	}
	s := c.newSlot()
	end := len(st.buf)
	s.req, s.caching = request{srv: st.srv, bytes: st.buf[start:end:end]}, caching
	if g := st.srv.group; g != nil {
		s.group, s.conn, s.readOnly, s.holdUntil = g, st.conn, false, time.Time{}
	}
	if st.srv.pool.seeds != nil {
		s.conn, s.redirects = st.conn, 0
		s.readOnly, s.again, s.tracked = false, tryAgainState{}, nil
		if c.tracking != nil {
			s.tracked = c.tracking.sink
		}
	}
	st.add(s, start)
	return s
}

// submit hands every stage to its server connection and waits for all the
// replies.
func (c *client) submit() {
	if len(c.stages) == 0 {
		return
	}
	n := int32(0)
	for i := range c.stages {
		n += int32(len(c.stages[i].slots))
	}
	c.batch.pending.Store(n + 1)
	now := time.Now()
	for i := range c.stages {
		c.stages[i].send(now)
	}
	if c.batch.pending.Add(-1) != 0 {
		<-c.batch.done
	}
	c.releaseStages()
}

// send hands the stage's requests to its server connection.
func (st *stage) send(now time.Time) {
	if r := st.replica; r != nil && r.g != nil {
		// The server's counters are its master's, whose connections
		// count the replies.
		r.g.reads.sent.Add(int64(len(st.slots)))
	} else if r != nil {
		// A cluster replica is a node of its own, counted as one.
		rs := r.up.Stats()
		rs.Requests.Add(int64(len(st.slots)))
		rs.RequestBytes.Add(int64(len(st.buf)))
	} else {
		st.srv.stats.Requests.Add(int64(len(st.slots)))
		st.srv.stats.RequestBytes.Add(int64(len(st.buf)))
	}
	st.conn.Submit(st.buf, st.slots, st.sizes, now)
}

// releaseStages empties the batch's stages for the next batch.
func (c *client) releaseStages() {
	for i := range c.stages {
		st := &c.stages[i]
		clear(st.slots)
		if cap(st.buf) > maxKeptBuffer {
			st.buf = nil
		}
		st.srv, st.conn, st.replica = nil, nil, nil
	}
	c.stages = c.stages[:0]
}

// finishBatch submits what was staged, waits for every reply and writes
// them to the client in request order.
func (c *client) finishBatch() error {
	if c.canAnswerDirect() {
		slot := c.calls[0].slot
		req := slot.req
		c.endBatch() // first: the slot belongs to the server's reader once submitted
		slot.req = req
		c.submitDirect(slot)
		return nil
	}
	c.submit()
	if c.batch.held.Load() > 0 {
		return c.writeLargeReplies()
	}
	n := len(c.calls)
	out := c.out[:0]
	for i := range c.calls {
		cl := &c.calls[i]
		if cl.frag != nil {
			out = cl.frag.merge(out)
			continue
		}
		out = append(out, cl.slot.buf...)
	}
	c.endBatch()
	c.adapt(n, int64(len(out)))
	err := c.writeReplies(out)
	if cap(out) > maxKeptBuffer {
		out = nil
	}
	c.out = out[:0]
	return err
}

// endBatch forgets the batch's calls once their replies are out of the
// slots, and their requests.
func (c *client) endBatch() {
	for i := 0; i < c.nslots; i++ {
		if cap(c.slots[i].buf) > maxKeptBuffer {
			c.slots[i].buf = nil
		}
		c.slots[i].req = request{}
	}
	clear(c.calls)
	c.calls = c.calls[:0]
	c.nslots = 0
	c.nfrags = 0
	c.layout = nil
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}
