package proxy

import (
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/internal/rawsock"
)

// Idle clients. A proxy in front of a fleet holds every application pod's
// connections, and most of them are idle most of the time. While a client
// is busy its goroutine keeps its session (buffers, batch state); once it
// has sent nothing for parkAfter, it gives its session up and parks: its
// socket waits in the process's rawsock.Lot and its goroutine ends, so an
// idle client costs its client struct and its socket, not a stack and
// buffers. Its next bytes start a new goroutine with a new session that
// carries on where the old one stopped. A client is parked from its accept
// until its first bytes, too.
//
// Whether the client has been idle long enough is found without touching
// the request path: the goroutine sets a read deadline parkAfter ahead when
// it starts waiting for the client and leaves it set while the client is
// busy; when it fires, the batch count says whether anything happened since
// it was set (reads counts the reads that brought bytes). So a busy client
// pays one deadline a second, not one per request.
//
// The same watch enforces client_timeout: a client that has sent nothing
// for that long is closed and counted (client_idle_timeouts). A parked
// client has no goroutine to see its deadline, so the Server's sweeper
// closes parked clients past their timeout.

// parkAfter is how long a client sends nothing before it parks.
const parkAfter = time.Second

// testHookParkAfter, when not 0, replaces parkAfter, for tests.
var testHookParkAfter atomic.Int64

func parkDelay() time.Duration {
	if d := testHookParkAfter.Load(); d != 0 {
		return time.Duration(d)
	}
	return parkAfter
}

// testHookPark, when set, parks sockets in place of the lot, for tests of
// a lot that refuses them.
var testHookPark atomic.Pointer[func(fd int, w rawsock.Waker) error]

// errParked ends a client's goroutine with the client parked: nothing of
// the client may be touched after it.
var errParked = errors.New("parked")

// errIdleTimeout ends a client that was idle past client_timeout.
var errIdleTimeout = errors.New("idle past client_timeout")

// idleState is a client's watch for idleness.
type idleState struct {
	// armed says whether the read deadline of the watch is set; since is
	// when the watch began and reads the client's count of reads then:
	// while it is unchanged, the client has sent nothing since.
	armed bool
	since time.Time
	reads uint64
	// fd is the client's socket, -1 when it cannot be parked; it does not
	// change. refused is set when the lot refused it once.
	fd      int
	refused bool
	// mu orders parking with what wakes a parked client from elsewhere
	// (stopWhenIdle, CLIENT KILL, the sweeper): parked is set while the
	// client waits in the lot, with timeoutAt (0 for none) when its
	// client_timeout closes it.
	mu        sync.Mutex
	parked    bool
	timeoutAt time.Time
	// timedOut is set by the sweeper when it woke the client to close it.
	timedOut atomic.Bool
}

// lot is the process's parking lot, nil where parking is not available.
var lot = sync.OnceValue(func() *rawsock.Lot {
	l, err := rawsock.DefaultLot()
	if err != nil {
		return nil
	}
	return l
})

// spareReadBuffers keeps a few read buffers that parked clients gave
// back, for the next clients that wake. It is small on purpose: the point
// of parking is that the memory of idle clients goes back to the OS, and a
// sync.Pool would keep every buffer until two collections later, which an
// idle proxy may not run for minutes.
var spareReadBuffers = make(chan *[readBufferSize]byte, 64)

// takeReadBuffer gives the client a read buffer if it has none.
func (c *client) takeReadBuffer() {
	if c.rbuf != nil {
		return
	}
	select {
	case b := <-spareReadBuffers:
		c.rbuf = b[:]
	default:
		c.rbuf = make([]byte, readBufferSize)
	}
}

// giveBackReadBuffer drops the client's read buffer, keeping it as a spare
// when there is room, and reports the bytes left to the collector.
func (c *client) giveBackReadBuffer() int {
	n := cap(c.rbuf)
	if n == readBufferSize {
		select {
		case spareReadBuffers <- (*[readBufferSize]byte)(c.rbuf):
			n = 0
		default:
		}
	}
	c.rbuf, c.rstart, c.rend = nil, 0, 0
	return n
}

// watchIdle arms the idle watch, if the client can park or has a
// client_timeout, as it starts waiting for the client.
func (c *client) watchIdle() {
	if c.idle.armed {
		return
	}
	next := c.nextIdleCheck(0)
	if next < 0 {
		return
	}
	now := time.Now()
	c.idle.armed, c.idle.since, c.idle.reads = true, now, c.reads
	c.conn.SetReadDeadline(now.Add(next))
	c.keepStopGrace()
}

// disarmIdle clears the idle watch's deadline before something else reads
// the socket (the watcher of a blocked command).
func (c *client) disarmIdle() {
	if c.idle.armed {
		c.idle.armed = false
		c.conn.SetReadDeadline(time.Time{})
		c.keepStopGrace()
	}
}

// mayPark reports whether the client is in no mode that keeps it from
// parking for good: it has a socket the lot can take, and no pub/sub or
// tracking state, which other goroutines write to it.
func (c *client) mayPark() bool {
	return c.idle.fd >= 0 && !c.idle.refused && c.subs == nil && c.tracking == nil
}

// nextIdleCheck returns how long after being idle for idleFor the watch
// should look again, to park the client or to close it at its
// client_timeout; -1 when there is nothing to look for.
func (c *client) nextIdleCheck(idleFor time.Duration) time.Duration {
	next := time.Duration(-1)
	if p := parkDelay(); idleFor < p && c.mayPark() {
		next = p - idleFor
	}
	if t := c.pool.cfg.ClientTimeout; t > 0 && idleFor < t && !c.inPubSub() && (next < 0 || t-idleFor < next) {
		next = t - idleFor
	}
	return next
}

// idleDeadline handles the watch's deadline firing while the client's
// goroutine waited for it: it returns nil to read on, errParked once the
// client is parked, or errIdleTimeout.
func (c *client) idleDeadline() error {
	now := time.Now()
	if c.reads != c.idle.reads {
		// Busy since the watch began: watch again from now.
		c.idle.since, c.idle.reads = now, c.reads
	}
	idleFor := now.Sub(c.idle.since)
	timeout := c.pool.cfg.ClientTimeout
	if timeout > 0 && idleFor >= timeout && !c.inPubSub() {
		return errIdleTimeout
	}
	if idleFor >= parkDelay() && c.canPark() {
		c.idle.armed = false
		c.conn.SetReadDeadline(time.Time{})
		if c.stopping.Load() {
			c.keepStopGrace()
			return nil // stopWhenIdle's deadline was just replaced: read and stop at once
		}
		if c.park(timeout) {
			return errParked
		}
	}
	if next := c.nextIdleCheck(idleFor); next >= 0 {
		c.idle.armed = true
		c.conn.SetReadDeadline(now.Add(next))
	} else {
		c.idle.armed = false
		c.conn.SetReadDeadline(time.Time{})
	}
	c.keepStopGrace()
	return nil
}

// keepStopGrace puts back stopWhenIdle's deadline if the idle watch may
// have just replaced it.
func (c *client) keepStopGrace() {
	if c.stopping.Load() {
		c.conn.SetReadDeadline(time.Now().Add(stopReadGrace))
	}
}

// canPark reports whether the client can wait without its goroutine now:
// it may park, it is between batches with nothing read and no reply owed,
// and it holds no server connection (a transaction).
func (c *client) canPark() bool {
	return c.mayPark() && c.rstart == c.rend && c.direct.state.Load() == directIdle &&
		!c.tx.active() && !c.quit && !c.stopping.Load()
}

// park hands the client's socket to the lot. Before it does, the client
// gives back its read buffer and its session, which its next batch makes
// again. It returns false if the client is stopping or the lot refused
// the socket; once it returns true, the client belongs to the lot and its
// goroutine must end without touching it.
func (c *client) park(timeout time.Duration) bool {
	c.srv.memory.given.Add(int64(c.giveBackReadBuffer() + cap(c.out) + stackEstimate))
	kept := c.session
	c.session = nil
	if c.parkSocket(c.idle.since, timeout) {
		return true
	}
	c.session = kept
	c.takeReadBuffer()
	return false
}

// start serves a client just accepted. A plain one waits for its first
// bytes parked, since most connections are opened well before they are
// used (a client library's pool); a TLS one needs its goroutine for the
// handshake.
func (c *client) start() {
	if c.idle.fd >= 0 && c.parkSocket(time.Now(), c.pool.cfg.ClientTimeout) {
		return
	}
	go c.serve()
}

// parkSocket puts the client's socket in the lot, to be closed by the
// sweeper at since+timeout if it sends nothing (timeout 0: never).
func (c *client) parkSocket(since time.Time, timeout time.Duration) bool {
	c.idle.mu.Lock()
	defer c.idle.mu.Unlock()
	if c.stopping.Load() {
		return false
	}
	c.idle.timeoutAt = time.Time{}
	if timeout > 0 {
		c.idle.timeoutAt = since.Add(timeout)
	}
	park := lot().Park
	if f := testHookPark.Load(); f != nil {
		park = *f
	}
	if err := park(c.idle.fd, c); err != nil {
		c.idle.refused = true
		c.srv.logger.Warn("client cannot park", "id", c.id, "err", err)
		return false
	}
	c.idle.parked = true
	c.srv.stats.ParkedConnections.Add(1)
	return true
}

// Wake is the lot's call when a parked client's socket is ready: a new
// goroutine serves it.
func (c *client) Wake() {
	go c.resume()
}

// unpark takes the client back from the lot if it is parked there and
// starts its goroutine, which finds out why (stopping, killed); callers
// set what it is to find first.
func (c *client) unpark() {
	c.idle.mu.Lock()
	if c.idle.parked && lot().Unpark(c.idle.fd, c) {
		go c.resume()
	}
	c.idle.mu.Unlock()
}

// resume serves a client that was parked.
func (c *client) resume() {
	c.idle.mu.Lock()
	c.idle.parked = false
	c.idle.mu.Unlock()
	c.srv.stats.ParkedConnections.Add(-1)
	c.session = newSession(c.conn)
	c.run()
}

// timeOutParked closes the client if it is parked past its
// client_timeout.
func (c *client) timeOutParked(now time.Time) {
	c.idle.mu.Lock()
	defer c.idle.mu.Unlock()
	if c.idle.parked && !c.idle.timeoutAt.IsZero() && !now.Before(c.idle.timeoutAt) && lot().Unpark(c.idle.fd, c) {
		c.idle.timedOut.Store(true)
		go c.resume()
	}
}

// memoryReturn hands memory back to the OS after clients gave much of it
// up at once: a burst of clients that park or leave frees their buffers
// and stacks, but the runtime returns freed memory only after a collection
// that an idle proxy may not run for minutes, and then gradually; until
// then the pod's RSS stays at its peak.
type memoryReturn struct {
	given atomic.Int64 // bytes that parked and departed clients gave up since the last return
	last  time.Time    // the last return; sweepIdle's
}

const (
	// returnAfter is how much must have been given up for a return.
	returnAfter = 32 << 20
	// returnEvery bounds how often memory is returned: each return is a
	// full collection.
	returnEvery = 2 * time.Second
	// stackEstimate is what a client's goroutine stack is taken to be
	// when it ends, for memoryReturn's count.
	stackEstimate = 8 << 10
)

// returnMemory returns freed memory to the OS if clients gave up enough
// of it since the last return.
func (s *Server) returnMemory(now time.Time) {
	m := &s.memory
	if m.given.Load() < returnAfter || now.Sub(m.last) < returnEvery {
		return
	}
	m.given.Store(0)
	m.last = now
	debug.FreeOSMemory()
	s.stats.MemoryReturns.Add(1)
}

// sweepIdle runs sweepParked while some pool has a client_timeout, often
// enough to close a parked client within a tenth of its timeout, and at
// most ten times a second; and returnMemory every second.
func (s *Server) sweepIdle() {
	defer s.wg.Done()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.sweepStop:
			return
		case now := <-t.C:
			every, timeouts := time.Second, false
			for _, p := range s.poolList() {
				if to := p.cfg.ClientTimeout; to > 0 {
					every, timeouts = min(every, max(to/10, 100*time.Millisecond)), true
				}
			}
			if timeouts {
				s.sweepParked(now)
			}
			s.returnMemory(now)
			t.Reset(every)
		}
	}
}

// sweepParked closes the parked clients past their client_timeout. It
// runs every sweepEvery while a pool has one.
func (s *Server) sweepParked(now time.Time) {
	s.mu.Lock()
	clients := s.sweepScratch[:0]
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	for _, c := range clients {
		c.timeOutParked(now)
	}
	clear(clients)
	s.sweepScratch = clients[:0]
}

// clientCount returns the number of clients connected now.
func (s *Server) clientCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}
