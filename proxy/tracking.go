package proxy

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Client-side caching. A client that turns CLIENT TRACKING on gets server
// connections of its own, one per server it sends anything to, each opened
// with CLIENT TRACKING ON and the client's options, and from then on every
// command it sends goes on them. Each server therefore tracks exactly the
// keys this client read from it, in whatever mode the client chose
// (default, BCAST with prefixes, OPTIN, OPTOUT, NOLOOP), with Redis' own
// tracking table and its tracking-table-max-keys bound, and the
// invalidations it pushes on those connections concern this client alone:
// they are passed on as they came. The price is a server connection per
// tracking client and server, instead of the shared ones.
//
// An invalidation is written after the replies the client already had
// coming when it arrived: a key's invalidation is never seen before the
// reply that read the key. Whenever the client can no longer rely on a
// server's tracking, it is told to drop everything (an invalidate message
// with a null key list, as Redis sends for FLUSHALL): when a tracking
// connection is lost, and when the pool's servers or ring change, since a
// key may then live on a server that never saw the client read it.
//
// CLIENT CACHING YES|NO applies to the next command, as in Redis: the
// proxy sends it on each of that command's connections right before it (for
// MULTI, before MULTI, so it covers the whole transaction). Transactions of
// a tracking client run on its tracking connection to their server, so
// what they read is tracked too. REDIRECT is refused: its invalidations
// would arrive on another client's connections to each server; RESP3
// clients, which every client-side cache of today's libraries requires,
// get them on their own connection.

// trackingState is a client's CLIENT TRACKING while it is on.
type trackingState struct {
	c     *client
	proto int          // what its connections speak: the client's protocol
	setup [][][]byte   // CLIENT TRACKING ON and the options, sent on each connection
	sink  *trackedSink // where its connections' pushes go

	bcast, optin, optout, noloop bool
	prefixes                     [][]byte

	conns map[*backend.Upstream]*backend.Conn
	// pending is the CLIENT CACHING request for the next command; armed
	// is that request while the command is dispatched, which staged
	// sends before it on each of the command's connections.
	pending, armed []byte
}

// trackedSink passes a tracking client's pushes on to it.
type trackedSink struct {
	c   *client
	off atomic.Bool // tracking ended: these connections are being closed
}

// Push queues an invalidation for the client.
func (s *trackedSink) Push(msg []byte) {
	if !s.off.Load() {
		s.c.subs.push(s.c, msg)
	}
}

// Lost tells the client to drop its whole cache: the server forgot what
// it tracked for the connection that ended.
func (s *trackedSink) Lost() {
	if !s.off.Load() && s.c.proto == backend.RESP3 {
		s.c.subs.push(s.c, invalidateAll)
	}
}

// invalidateAll is the invalidation of every key, as Redis pushes it on a
// flush.
var invalidateAll = []byte(">2\r\n$10\r\ninvalidate\r\n_\r\n")

// cachingYes and cachingNo are the CLIENT CACHING requests a command may
// carry.
var (
	cachingYes = resp.AppendCommand(nil, []byte("CLIENT"), []byte("CACHING"), []byte("yes"))
	cachingNo  = resp.AppendCommand(nil, []byte("CLIENT"), []byte("CACHING"), []byte("no"))
)

// clientTracking answers CLIENT TRACKING ON|OFF [options], checking the
// options and the switches between modes as Redis 7.0 does, with Redis'
// texts.
func (c *client) clientTracking(mode []byte, opts [][]byte) {
	var (
		bcast, optin, optout, noloop bool
		prefixes                     [][]byte
	)
	for i := 0; i < len(opts); i++ {
		more := i+1 < len(opts)
		switch strings.ToLower(string(opts[i])) {
		case "bcast":
			bcast = true
		case "optin":
			optin = true
		case "optout":
			optout = true
		case "noloop":
			noloop = true
		case "prefix":
			if !more {
				c.replyError(msgSyntax)
				return
			}
			i++
			prefixes = append(prefixes, opts[i])
		case "redirect":
			if !more {
				c.replyError(msgSyntax)
				return
			}
			i++
			id, err := strconv.ParseInt(string(opts[i]), 10, 64)
			if err != nil {
				c.replyError(msgNotInteger)
				return
			}
			if !c.srv.hasClient(id) {
				c.replyError(msgNoRedirectID)
				return
			}
			c.replyError(refusal("client|tracking", whyTrackingRedirect))
			return
		default:
			c.replyError(msgSyntax)
			return
		}
	}
	switch {
	case bytes.EqualFold(mode, []byte("off")):
		c.trackingOff()
		c.reply(replyOK)
		return
	case !bytes.EqualFold(mode, []byte("on")):
		c.replyError(msgSyntax)
		return
	}
	t := c.tracking
	switch {
	case !bcast && len(prefixes) > 0:
		c.replyError(msgPrefixNeedsBcast)
	case t != nil && t.bcast != bcast:
		c.replyError(msgTrackingSwitchBcast)
	case bcast && (optin || optout):
		c.replyError(msgBcastOptInOut)
	case optin && optout:
		c.replyError(msgOptInAndOut)
	case t != nil && (optin && t.optout || optout && t.optin):
		c.replyError(msgTrackingSwitchOpt)
	case bcast && prefixCollision(prefixes, t) != "":
		c.replyError(prefixCollision(prefixes, t))
	default:
		c.trackingOn(bcast, optin, optout, noloop, prefixes)
		c.reply(replyOK)
	}
}

// prefixCollision is Redis' refusal of BCAST prefixes of which one is a
// prefix of another, or of one tracked already (the same one included),
// or "".
func prefixCollision(prefixes [][]byte, t *trackingState) string {
	for i, p := range prefixes {
		if t != nil {
			for _, q := range t.prefixes {
				if bytes.HasPrefix(p, q) || bytes.HasPrefix(q, p) {
					return prefixOverlapsExisting(p, q)
				}
			}
		}
		for _, q := range prefixes[i+1:] {
			if bytes.HasPrefix(p, q) || bytes.HasPrefix(q, p) {
				return prefixOverlapsProvided(p, q)
			}
		}
	}
	return ""
}

// trackingOn turns tracking on, or, when it is on already, changes its
// options as Redis does (the flags are the new ones, the prefixes add up):
// the client's connections are opened anew with them, and the client drops
// its cache, since their servers forget what the old ones tracked.
func (c *client) trackingOn(bcast, optin, optout, noloop bool, prefixes [][]byte) {
	old := c.tracking
	t := &trackingState{c: c, proto: c.proto, conns: map[*backend.Upstream]*backend.Conn{}}
	t.bcast, t.optin, t.optout, t.noloop = bcast, optin, optout, noloop
	if old != nil {
		t.prefixes = append(t.prefixes, old.prefixes...)
	}
	if bcast && len(prefixes) == 0 {
		prefixes = [][]byte{{}} // every key, as Redis' empty prefix
	}
	for _, p := range prefixes {
		t.prefixes = append(t.prefixes, bytes.Clone(p))
	}
	args := [][]byte{[]byte("CLIENT"), []byte("TRACKING"), []byte("ON")}
	for _, o := range []struct {
		on   bool
		name string
	}{{t.bcast, "BCAST"}, {t.optin, "OPTIN"}, {t.optout, "OPTOUT"}, {t.noloop, "NOLOOP"}} {
		if o.on {
			args = append(args, []byte(o.name))
		}
	}
	for _, p := range t.prefixes {
		args = append(args, []byte("PREFIX"), p)
	}
	t.setup = [][][]byte{args}
	c.startPubSub() // the queue and writer of the client's pushes
	t.sink = &trackedSink{c: c}
	if old != nil {
		c.settle()
		old.close()
		if msg := c.invalidateAllFor(); msg != nil {
			c.subs.push(c, msg)
		}
	} else {
		c.srv.trackingClients.Add(1)
	}
	c.tracking = t
	c.hasTracking.Store(true)
	t.connectBcast(c.pool)
}

// connectBcast opens a BCAST client's connection to every server of p
// before CLIENT TRACKING answers: broadcasts come from every server, read
// from or not, from the moment tracking is on.
func (t *trackingState) connectBcast(p *pool) {
	if !t.bcast {
		return
	}
	pins := make([]*privatePin, 0, len(p.servers))
	for _, s := range p.servers {
		b := t.conns[s.up]
		if b == nil {
			b = s.up.NewPrivateConn(t.proto, t.setup, t.sink)
			t.conns[s.up] = b
		}
		pin := &privatePin{t: t, up: s.up, b: b}
		pin.submit(replyPing, 1)
		pins = append(pins, pin)
	}
	for _, pin := range pins {
		// A server that cannot be reached now tracks from the client's
		// first request to it, which dials again.
		pin.wait()
	}
}

// replyPing is the PING request that opens a BCAST connection.
var replyPing = resp.AppendCommand(nil, []byte("PING"))

// layoutChanged closes the client's tracking connections after its pool's
// servers or ring changed (flushTracking told the client to drop its
// cache): connections to servers that are gone must not linger, and the
// others open again at their next use.
func (c *client) layoutChanged() {
	t := c.tracking
	if t == nil || !c.trackingStale.Swap(false) {
		return
	}
	t.sink.off.Store(true)
	for up, b := range t.conns {
		b.Close()
		delete(t.conns, up)
	}
	t.sink = &trackedSink{c: c}
	t.connectBcast(c.pool)
}

// trackingOff turns tracking off: the client's connections close once
// what the batch sent on them is answered.
func (c *client) trackingOff() {
	t := c.tracking
	if t == nil {
		return
	}
	c.settle()
	if c.tx.pinned != nil {
		if _, private := c.tx.pinned.(*privatePin); private {
			c.tx.reset() // its watches were on a tracking connection
		}
	}
	t.close()
	c.tracking = nil
	c.hasTracking.Store(false)
	c.srv.trackingClients.Add(-1)
}

// close closes the client's tracking connections.
func (t *trackingState) close() {
	t.sink.off.Store(true)
	for up, b := range t.conns {
		b.Close()
		delete(t.conns, up)
	}
}

// invalidateAllFor is the client's invalidation of everything, in its
// protocol; RESP2 clients get none, as Redis sends them none without
// REDIRECT.
func (c *client) invalidateAllFor() []byte {
	if c.proto == backend.RESP3 {
		return invalidateAll
	}
	return nil
}

// connFor returns the client's tracking connection to up, made at its
// first use, and holds the client's socket for its batch, so that an
// invalidation arriving for what the batch reads follows its replies.
func (t *trackingState) connFor(up *backend.Upstream) *backend.Conn {
	b := t.conns[up]
	if b == nil {
		b = up.NewPrivateConn(t.proto, t.setup, t.sink)
		t.conns[up] = b
	}
	t.c.holdWrites()
	return b
}

// holdWrites makes the client's goroutine hold its socket until the
// batch's replies are written (releaseWrites): pushes queued meanwhile
// follow them.
func (c *client) holdWrites() {
	if s := c.subs; s != nil && !s.hold {
		s.wmu.Lock()
		s.hold = true
	}
}

// connFor returns the connection a batch of the client uses for srv: its
// tracking connection while tracking is on, else a shared one.
func (c *client) connFor(srv *server) *backend.Conn {
	if c.tracking != nil {
		return c.tracking.connFor(srv.up)
	}
	return srv.pick(c.proto)
}

// clientCaching answers CLIENT CACHING YES|NO, with Redis' checks and
// texts; the next command carries it.
func (c *client) clientCaching(arg []byte) {
	t := c.tracking
	if t == nil {
		c.replyError(msgCachingNotTracking)
		return
	}
	switch {
	case bytes.EqualFold(arg, []byte("yes")):
		if !t.optin {
			c.replyError(msgCachingYesNotOptIn)
			return
		}
		t.pending = cachingYes
	case bytes.EqualFold(arg, []byte("no")):
		if !t.optout {
			c.replyError(msgCachingNoNotOptOut)
			return
		}
		t.pending = cachingNo
	default:
		c.replyError(msgSyntax)
		return
	}
	c.reply(replyOK)
}

// armCaching makes a pending CLIENT CACHING the current command's, for
// every command but CLIENT's own subcommands, which Redis lets it pass.
// It returns whether the command carries one, for disarmCaching.
func (c *client) armCaching(name string) bool {
	t := c.tracking
	if t == nil || t.pending == nil || name == "client" || strings.HasPrefix(name, "client|") {
		return false
	}
	t.armed, t.pending = t.pending, nil
	return true
}

func (c *client) disarmCaching() { c.tracking.armed = nil }

// stageCaching puts the armed CLIENT CACHING request in st before the
// request st holds from start on, with a reply no one waits for, and
// returns where that request starts now.
func (c *client) stageCaching(st *stage, start int) int {
	req := c.tracking.armed
	n := len(st.buf) - start
	st.buf = append(st.buf, req...)
	copy(st.buf[start+len(req):], st.buf[start:start+n])
	copy(st.buf[start:], req)
	s := c.newSlot()
	end := start + len(req)
	s.req = request{srv: st.srv, bytes: st.buf[start:end:end]}
	st.slots = append(st.slots, s)
	st.sizes = append(st.sizes, len(req))
	return end
}

// clientGetRedir answers CLIENT GETREDIR: -1 when tracking is off, 0
// when on (the proxy never redirects).
func (c *client) clientGetRedir() {
	if c.tracking == nil {
		c.reply(resp.AppendInt(nil, -1))
		return
	}
	c.reply(resp.AppendInt(nil, 0))
}

// clientTrackingInfo answers CLIENT TRACKINGINFO as Redis does: flags,
// redirect and prefixes.
func (c *client) clientTrackingInfo() {
	t := c.tracking
	var flags []string
	redirect := int64(-1)
	var prefixes [][]byte
	if t == nil {
		flags = append(flags, "off")
	} else {
		flags = append(flags, "on")
		redirect = 0
		if t.bcast {
			flags = append(flags, "bcast")
		}
		if t.optin {
			flags = append(flags, "optin")
			if t.pending != nil {
				flags = append(flags, "caching-yes")
			}
		}
		if t.optout {
			flags = append(flags, "optout")
			if t.pending != nil {
				flags = append(flags, "caching-no")
			}
		}
		if t.noloop {
			flags = append(flags, "noloop")
		}
		prefixes = t.prefixes
	}
	b := c.appendMap(nil, 3)
	b = resp.AppendBulkString(b, "flags")
	b = c.appendSetHeader(b, len(flags))
	for _, f := range flags {
		b = resp.AppendBulkString(b, f)
	}
	b = resp.AppendBulkString(b, "redirect")
	b = resp.AppendInt(b, redirect)
	b = resp.AppendBulkString(b, "prefixes")
	b = resp.AppendArray(b, len(prefixes))
	for _, p := range prefixes {
		b = resp.AppendBulk(b, p)
	}
	c.reply(b)
}

// appendSetHeader appends the header of a set: an array in RESP2.
func (c *client) appendSetHeader(dst []byte, n int) []byte {
	if c.proto == backend.RESP3 {
		return resp.AppendSet(dst, n)
	}
	return resp.AppendArray(dst, n)
}

// flushTracking tells every tracking client to drop its cache, after the
// servers or the ring of a pool changed: a key may now be on a server
// that never saw the client read it. Their tracking connections close at
// their next batch (layoutChanged).
func (s *Server) flushTracking() {
	if s.trackingClients.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushTrackingLocked()
}

// flushTrackingLocked is flushTracking for a caller that holds s.mu.
func (s *Server) flushTrackingLocked() {
	if s.trackingClients.Load() == 0 {
		return
	}
	for c := range s.clients {
		if c.hasTracking.Load() {
			c.trackingStale.Store(true)
			if c.proto == backend.RESP3 {
				c.subs.push(c, invalidateAll)
			}
		}
	}
}

// privatePin is a tracking client's transaction on its tracking
// connection to the transaction's server: the connection is the client's
// alone, as a dedicated one is, and what the transaction reads is tracked.
type privatePin struct {
	t  *trackingState
	up *backend.Upstream
	b  *backend.Conn

	wg      sync.WaitGroup
	replies []pinReply
}

// pinReply receives one reply of a privatePin's request.
type pinReply struct {
	p     *privatePin
	reply []byte
	err   string
}

func (r *pinReply) Deliver(reply []byte) {
	r.reply = append(r.reply[:0], reply...)
	r.p.wg.Done()
}

func (r *pinReply) Fail(msg string) {
	r.err = msg
	r.p.wg.Done()
}

// errPinnedFailed carries the error reply of a request that failed on a
// tracking connection; it already names the server.
type errPinnedFailed string

func (e errPinnedFailed) Error() string { return string(e) }

// Do sends req, n requests, and returns the last reply.
func (p *privatePin) Do(req []byte, n int) ([]byte, error) {
	p.submit(req, n)
	return p.wait()
}

// submit sends req, n requests, whose replies wait collects.
func (p *privatePin) submit(req []byte, n int) {
	if cap(p.replies) < n {
		p.replies = make([]pinReply, n)
	}
	p.replies = p.replies[:n]
	sinks := make([]backend.ReplySink, n)
	sizes := make([]int, n)
	for i := range p.replies {
		p.replies[i] = pinReply{p: p, reply: p.replies[i].reply[:0]}
		sinks[i] = &p.replies[i]
	}
	sizes[0] = len(req)
	p.wg.Add(n)
	p.b.Submit(req, sinks, sizes, time.Now())
}

// wait waits for the replies to what submit sent and returns the last.
func (p *privatePin) wait() ([]byte, error) {
	p.wg.Wait()
	for _, r := range p.replies {
		if r.err != "" {
			return nil, errPinnedFailed(r.err)
		}
	}
	return p.replies[len(p.replies)-1].reply, nil
}

// Close ends the transaction with its connection's server state unknown:
// the connection closes, and the client's next request opens another.
func (p *privatePin) Close() {
	if p.t.conns[p.up] == p.b {
		delete(p.t.conns, p.up)
		p.b.Close()
	}
}

// Release ends the transaction with the connection in a clean state: it
// stays the client's tracking connection.
func (p *privatePin) Release() {}

func (p *privatePin) Reused() bool                { return false }
func (p *privatePin) Upstream() *backend.Upstream { return p.up }
func (p *privatePin) ErrorText(err error) string  { return pinnedErrorText(p.up, err) }

// Switch refuses: a tracking connection speaks the protocol tracking was
// turned on in, and switchProto opens new ones.
func (p *privatePin) Switch(proto int) error {
	return errors.New("a tracking connection keeps its protocol")
}

// pinnedErrorText is the client's error for err on a pinned connection to
// up.
func pinnedErrorText(up *backend.Upstream, err error) string {
	var failed errPinnedFailed
	if errors.As(err, &failed) {
		return string(failed)
	}
	return up.ErrorText(err)
}
