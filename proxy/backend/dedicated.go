package backend

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/internal/rawsock"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Dedicated is a connection owned by one client at a time, for
// transactions: pinned to the client until the transaction ends, then idle
// in its upstream's dedicated pool for reuse. Like a shared connection it
// knows no client and no pool.
type Dedicated struct {
	up     *Upstream
	pool   *dedicatedPool // of its protocol: where it is pinned and kept
	conn   net.Conn
	check  *rawsock.PeerCheck // whether the server closed it while idle
	buf    []byte
	reused bool // taken from the idle pool rather than dialled
	at     int  // its index in the pool's pinned list while pinned, else -1
	closed atomic.Bool
}

// MaxIdleDedicated bounds the idle dedicated connections kept per upstream.
const MaxIdleDedicated = 8

// dedicatedPool is an upstream's dedicated connections: the idle ones, and
// the pinned ones, tracked so that Shutdown can close a connection whose
// client waits on a server that stopped answering.
type dedicatedPool struct {
	proto  int        // what its connections speak, RESP2 or RESP3
	mu     sync.Mutex // guards idle, pinned and closed
	idle   []*Dedicated
	pinned []*Dedicated
	closed bool // its upstream is retired: keep nothing, dial nothing
}

// errUpstreamRetired is why a server that no pool uses any more gets no
// new transaction connection.
var errUpstreamRetired = errors.New("connection closed")

// TestHookIdleConnClosed, when set, replaces the check that an idle
// dedicated connection was not closed by its server. It is only for tests:
// turning the check off shows that a caller's redial after a failed Do on
// a reused connection copes on its own.
var TestHookIdleConnClosed func(net.Conn) bool

// peerClosed reports whether the server closed the idle connection d.
func (d *Dedicated) peerClosed() bool {
	if TestHookIdleConnClosed != nil {
		return TestHookIdleConnClosed(d.conn)
	}
	return d.check.PeerClosed()
}

// TakeDedicated returns an idle RESP2 connection to u that is still open,
// or dials one. The connection is pinned until Release or Close.
func (u *Upstream) TakeDedicated() (*Dedicated, error) { return u.TakeDedicatedProto(RESP2) }

// TakeDedicatedProto is TakeDedicated for a connection that speaks proto
// (RESP2 or RESP3), for a client that said HELLO proto.
func (u *Upstream) TakeDedicatedProto(proto int) (*Dedicated, error) {
	if why := u.address.Unavailable(); why != "" {
		return nil, errors.New(why)
	}
	p := u.dedicatedFor(proto)
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errUpstreamRetired
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		d := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.pinLocked(d)
		p.mu.Unlock()
		if d.peerClosed() {
			d.Close()
			continue
		}
		d.reused = true
		return d, nil
	}
	return u.DialDedicatedProto(proto)
}

// DialDedicated opens a new dedicated RESP2 connection to u, pinned.
func (u *Upstream) DialDedicated() (*Dedicated, error) { return u.DialDedicatedProto(RESP2) }

// DialDedicatedProto is DialDedicated for a connection that speaks proto.
func (u *Upstream) DialDedicatedProto(proto int) (*Dedicated, error) {
	if why := u.address.Unavailable(); why != "" {
		return nil, errors.New(why)
	}
	conn, err := u.dialer.dialProto(u.address.DialAddr(), u.config.Load().Timeout, proto)
	u.learnProto(proto, err)
	if err != nil {
		return nil, err
	}
	p := u.dedicatedFor(proto)
	d := &Dedicated{up: u, pool: p, conn: conn, check: rawsock.NewPeerCheck(conn)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		conn.Close()
		return nil, errUpstreamRetired
	}
	p.pinLocked(d)
	p.mu.Unlock()
	u.stats.Connections.Add(1)
	return d, nil
}

func (p *dedicatedPool) pinLocked(d *Dedicated) {
	d.at = len(p.pinned)
	p.pinned = append(p.pinned, d)
}

func (p *dedicatedPool) unpinLocked(d *Dedicated) {
	i := d.at
	if i < 0 || i >= len(p.pinned) || p.pinned[i] != d {
		return
	}
	last := len(p.pinned) - 1
	p.pinned[i] = p.pinned[last]
	p.pinned[i].at = i
	p.pinned[last] = nil
	p.pinned = p.pinned[:last]
	d.at = -1
}

// Reused reports whether d was taken from the idle pool rather than
// dialled: a failure may then be the server having closed it while idle,
// and a new connection (DialDedicated) is worth one more try.
func (d *Dedicated) Reused() bool { return d.reused }

// ErrorText is the client's error reply for an error of Do: the cause,
// naming the server.
func (d *Dedicated) ErrorText(err error) string { return d.up.ErrorText(err) }

// Upstream returns the upstream d is a connection to.
func (d *Dedicated) Upstream() *Upstream { return d.up }

// IdleDedicated reports how many dedicated connections u keeps for reuse
// now.
func (u *Upstream) IdleDedicated() int { return u.dedicated.numIdle() + u.dedicated3.numIdle() }

func (p *dedicatedPool) numIdle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Proto reports the protocol d speaks now, RESP2 or RESP3.
func (d *Dedicated) Proto() int { return d.pool.proto }

// Switch makes the pinned d speak proto from now on, with HELLO, for a
// client that switched protocol while pinned; it goes back to the idle
// connections of that protocol. On an error d is in an unknown state and
// its caller closes it.
func (d *Dedicated) Switch(proto int) error {
	if d.pool.proto == proto {
		return nil
	}
	reply, err := d.Do(resp.AppendCommand(nil, []byte("HELLO"), strconv.AppendInt(nil, int64(proto), 10)), 1)
	if err != nil {
		return err
	}
	if resp.IsError(reply) {
		return fmt.Errorf("HELLO %d refused: %s", proto, strings.TrimRight(string(reply[1:]), "\r\n"))
	}
	to := d.up.dedicatedFor(proto)
	d.pool.mu.Lock()
	d.pool.unpinLocked(d)
	d.pool.mu.Unlock()
	to.mu.Lock()
	to.pinLocked(d)
	d.pool = to
	to.mu.Unlock()
	return nil
}

// numPinned reports how many connections are pinned now.
func (p *dedicatedPool) numPinned() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pinned)
}

// Do writes req and reads n replies, returning the last.
func (d *Dedicated) Do(req []byte, n int) ([]byte, error) {
	return d.do(req, n, 0)
}

// DoBlocking writes one command that may block on the server for up to
// block (forever when block is negative, as BLPOP's timeout 0) and reads
// its reply. The pool's timeout counts from the end of the block, so that
// it does not cut the command short and a server that hangs is still
// found out; with no pool timeout, or a block of forever, there is no
// deadline.
func (d *Dedicated) DoBlocking(req []byte, block time.Duration) ([]byte, error) {
	if block < 0 {
		d.conn.SetDeadline(time.Time{})
	}
	return d.do(req, 1, block)
}

func (d *Dedicated) do(req []byte, n int, block time.Duration) ([]byte, error) {
	up := d.up
	if t := up.config.Load().Timeout; t > 0 && block >= 0 {
		d.conn.SetDeadline(time.Now().Add(t + block))
	}
	began := time.Now()
	st := &up.stats
	st.Requests.Add(int64(n))
	st.RequestBytes.Add(int64(len(req)))
	// In flight until its replies are read or the connection fails, like
	// the requests on shared connections.
	st.OutQueue.Add(int64(n))
	st.OutQueueBytes.Add(int64(len(req)))
	defer func() {
		st.OutQueue.Add(-int64(n))
		st.OutQueueBytes.Add(-int64(len(req)))
	}()
	if _, err := d.conn.Write(req); err != nil {
		return nil, err
	}
	var scanner resp.ReplyScanner
	start, end := 0, 0
	last := 0
	for got := 0; got < n; {
		m, err := scanner.Scan(d.buf[start:end])
		if err != nil {
			return nil, err
		}
		if m > 0 {
			if !resp.IsPush(d.buf[start : start+m]) { // a push answers no request
				last = start
				got++
			}
			start += m
			continue
		}
		if end == len(d.buf) {
			nb := make([]byte, max(2*len(d.buf), 4096))
			copy(nb, d.buf[:end])
			d.buf = nb
		}
		k, err := d.conn.Read(d.buf[end:])
		end += k
		if k == 0 && err != nil {
			return nil, err
		}
	}
	up.stats.Latency.Observe(time.Since(began))
	up.stats.Responses.Add(int64(n))
	up.stats.ResponseBytes.Add(int64(end))
	d.conn.SetDeadline(time.Time{})
	if start != end {
		return nil, resp.ErrBadReply
	}
	return d.buf[last:start], nil
}

// Close closes the connection, whose server state is unknown. It may run
// more than once: at Shutdown and by its client.
func (d *Dedicated) Close() {
	p := d.pool
	p.mu.Lock()
	p.unpinLocked(d)
	p.mu.Unlock()
	d.closeConn()
}

func (d *Dedicated) closeConn() {
	if d.closed.CompareAndSwap(false, true) {
		d.conn.Close()
		d.up.stats.Connections.Add(-1)
	}
}

// Release returns a pinned connection whose server state is clean to the
// idle pool, or closes it if the pool keeps enough or is retired.
func (d *Dedicated) Release() {
	p := d.pool
	p.mu.Lock()
	p.unpinLocked(d)
	if !p.closed && !d.closed.Load() && len(p.idle) < MaxIdleDedicated && cap(d.buf) <= maxKeptBuffer {
		p.idle = append(p.idle, d)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	d.closeConn()
}

// closeIdle closes the idle connections: the server moved, and the next
// transaction dials its new address.
func (p *dedicatedPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, d := range idle {
		d.closeConn()
	}
}

// retire closes the idle connections and keeps none from now on; pinned
// ones close when their clients let go of them.
func (p *dedicatedPool) retire() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeIdle()
}

// closeAll closes every connection, pinned ones included, for Shutdown:
// a client waiting on one gets an error and goes on.
func (p *dedicatedPool) closeAll() {
	p.retire()
	p.mu.Lock()
	pinned := append([]*Dedicated(nil), p.pinned...)
	p.mu.Unlock()
	for _, d := range pinned {
		d.closeConn()
	}
}
