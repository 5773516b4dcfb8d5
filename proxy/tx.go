package proxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// txState is a client's transaction: MULTI/EXEC and WATCH need a server
// connection of their own, because Redis keeps that state per connection
// and the shared connections carry every client's requests. The client is
// pinned to a dedicated connection to the server of its first key until
// EXEC, DISCARD, UNWATCH or the end of the connection. Keys of other servers
// are refused with CROSSSLOT, as Redis Cluster does, and EXEC then fails.
type txState struct {
	inMulti  bool
	aborted  bool
	pinned   *dedicatedConn
	preamble []byte // keyless commands queued in MULTI before a key picked the server
	queued   int    // how many commands preamble holds
}

func (t *txState) active() bool { return t.inMulti || t.pinned != nil }

// reset forgets the transaction and closes a pinned connection whose server
// side state is unknown.
func (t *txState) reset() {
	if t.pinned != nil {
		t.pinned.close()
	}
	*t = txState{preamble: t.preamble[:0]}
}

// release returns a pinned connection whose server state is clean.
func (t *txState) release() {
	if t.pinned != nil {
		t.pinned.release()
	}
	t.pinned = nil
	t.inMulti, t.aborted, t.queued = false, false, 0
	t.preamble = t.preamble[:0]
}

// rejectInTx marks a transaction whose command was refused, as Redis does
// for a command it could not queue.
func (c *client) rejectInTx() {
	if c.tx.inMulti {
		c.tx.aborted = true
	}
}

// transaction handles MULTI, EXEC, DISCARD, WATCH and UNWATCH.
func (c *client) transaction(def *command, cmd *parsedCommand) {
	t := &c.tx
	switch def.name {
	case "multi":
		if t.inMulti {
			c.replyError("ERR MULTI calls can not be nested")
			return
		}
		t.inMulti, t.aborted = true, false
		if t.pinned != nil {
			c.pinnedCall(cmd.raw, cmd)
			return
		}
		c.reply([]byte("+OK\r\n"))
	case "exec":
		if !t.inMulti {
			c.replyError("ERR EXEC without MULTI")
			return
		}
		if t.aborted {
			if t.pinned != nil {
				c.settle()
				if _, err := t.pinned.do(appendCommand(nil, []byte("DISCARD")), 1); err != nil {
					t.reset()
				}
			}
			t.release()
			c.replyError(msgExecAbort)
			return
		}
		if t.pinned == nil {
			if t.queued == 0 {
				c.reply([]byte("*0\r\n"))
				t.release()
				return
			}
			if !c.pin(c.ring.Lookup([]byte("placeholder"))) {
				return
			}
		}
		if c.pinnedCall(cmd.raw, cmd) {
			t.release()
		}
	case "discard":
		if !t.inMulti {
			c.replyError("ERR DISCARD without MULTI")
			return
		}
		if t.pinned != nil {
			if c.pinnedCall(cmd.raw, cmd) {
				t.release()
			}
			return
		}
		t.release()
		c.reply([]byte("+OK\r\n"))
	case "watch":
		if t.inMulti {
			c.replyError("ERR WATCH inside MULTI is not allowed")
			return
		}
		idx, msg := c.owner(def, cmd.args)
		if msg == "" && t.pinned != nil && t.pinned.srv.index != idx {
			msg = msgCrossSlot
		}
		if msg != "" {
			c.replyError(msg)
			return
		}
		if t.pinned == nil && !c.pin(idx) {
			return
		}
		c.pinnedCall(cmd.raw, cmd)
	case "unwatch":
		if t.inMulti {
			c.txQueue(cmd)
			return
		}
		if t.pinned == nil {
			c.reply([]byte("+OK\r\n"))
			return
		}
		if c.pinnedCall(cmd.raw, cmd) {
			t.release()
		}
	}
}

// txCommand handles a command while the client is pinned or in MULTI.
func (c *client) txCommand(def *command, cmd *parsedCommand) {
	t := &c.tx
	if !t.inMulti {
		// WATCH pinned the client but no MULTI yet: commands go their usual way.
		c.dispatchKind(def, cmd)
		return
	}
	switch def.kind {
	case local:
		if def.name == "ping" || def.name == "echo" {
			c.txQueue(cmd)
			return
		}
		c.rejectInTx()
		c.replyError("ERR '" + def.name + "' is not allowed inside MULTI by shardproxy")
	case unsupported:
		c.rejectInTx()
		c.replyError(unsupportedCommand(def))
	case fanOut:
		c.rejectInTx()
		c.replyError(fanOutInMulti(def))
	case routePlaceholder:
		c.txQueue(cmd)
	default:
		if keylessScript(def, cmd.args) {
			c.txQueue(cmd) // runs on the transaction's server, like other keyless commands
			return
		}
		idx, msg := c.txOwner(def, cmd.args)
		if msg == "" && t.pinned != nil && t.pinned.srv.index != idx {
			msg = msgCrossSlot
		}
		if msg != "" {
			c.rejectInTx()
			c.replyError(msg)
			return
		}
		if t.pinned == nil && !c.pin(idx) {
			return
		}
		c.pinnedCall(cmd.raw, cmd)
	}
}

// txOwner is owner for any keyed command, split ones included: inside a
// transaction every key must be on the pinned server.
func (c *client) txOwner(def *command, args [][]byte) (int, string) {
	if def.kind == splitKeys || def.kind == splitPairs {
		if def.step == 2 && (len(args)-1)%2 != 0 {
			return -1, wrongArity(def.name)
		}
		idx := -1
		for i := 1; i < len(args); i += def.step {
			j := c.ring.Lookup(args[i])
			if j < 0 {
				return -1, msgNoServer
			}
			if idx >= 0 && j != idx {
				return -1, msgCrossSlot
			}
			idx = j
		}
		return idx, ""
	}
	return c.owner(def, args)
}

// txQueue queues a keyless command in MULTI: on the pinned connection, or
// held back until a key picks the server.
func (c *client) txQueue(cmd *parsedCommand) {
	if c.tx.pinned != nil {
		c.pinnedCall(cmd.raw, cmd)
		return
	}
	if cmd.inline {
		c.tx.preamble = appendCommand(c.tx.preamble, cmd.args...)
	} else {
		c.tx.preamble = append(c.tx.preamble, cmd.raw...)
	}
	c.tx.queued++
	c.reply([]byte("+QUEUED\r\n"))
}

// pin takes a dedicated connection to server idx. In MULTI it opens the
// transaction there and replays the commands queued so far.
func (c *client) pin(idx int) bool {
	if idx < 0 {
		c.rejectInTx()
		c.replyError(msgNoServer)
		return false
	}
	c.settle()
	srv := c.pool.servers[idx]
	d, err := srv.dedicated()
	if err != nil {
		c.rejectInTx()
		c.replyError(srv.errText(describe(err)))
		return false
	}
	c.tx.pinned = d
	if c.tx.inMulti {
		req := appendCommand(nil, []byte("MULTI"))
		req = append(req, c.tx.preamble...)
		if _, err := d.do(req, 1+c.tx.queued); err != nil {
			c.tx.pinned = nil
			d.close()
			c.rejectInTx()
			c.replyError(srv.errText(describe(err)))
			return false
		}
		c.tx.preamble, c.tx.queued = c.tx.preamble[:0], 0
	}
	return true
}

// pinnedCall sends one command on the pinned connection and records its
// reply. It reports whether the connection is still good.
func (c *client) pinnedCall(raw []byte, cmd *parsedCommand) bool {
	c.settle()
	req := raw
	if cmd.inline {
		req = appendCommand(nil, cmd.args...)
	}
	d := c.tx.pinned
	reply, err := d.do(req, 1)
	if err != nil {
		c.tx.pinned = nil
		d.close()
		c.rejectInTx()
		c.replyError(d.srv.errText(describe(err)))
		return false
	}
	c.reply(reply)
	return true
}

// settle submits what the batch staged so far and waits for it, so a
// command on the pinned connection runs after the commands sent before it.
func (c *client) settle() { c.submit() }

// dedicatedConn is a connection owned by one client at a time, for
// transactions. Idle ones are kept per server for reuse.
type dedicatedConn struct {
	srv  *server
	conn net.Conn
	buf  []byte
}

// maxIdleDedicated bounds the idle dedicated connections kept per server.
const maxIdleDedicated = 8

type dedicatedPool struct {
	mu   sync.Mutex // guards idle
	idle []*dedicatedConn
}

func (s *server) dedicated() (*dedicatedConn, error) {
	if why := s.address.unavailable(); why != "" {
		return nil, errors.New(why)
	}
	s.txConns.mu.Lock()
	if n := len(s.txConns.idle); n > 0 {
		d := s.txConns.idle[n-1]
		s.txConns.idle = s.txConns.idle[:n-1]
		s.txConns.mu.Unlock()
		return d, nil
	}
	s.txConns.mu.Unlock()
	cfg := s.pool.cfg
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	conn, err := net.DialTimeout(s.cfg.Network, s.address.dialAddr(), timeout)
	if err != nil {
		return nil, err
	}
	if err := handshake(conn, cfg, timeout); err != nil {
		conn.Close()
		return nil, err
	}
	s.stats.connections.Add(1)
	return &dedicatedConn{srv: s, conn: conn}, nil
}

// do writes req and reads n replies, returning the last.
func (d *dedicatedConn) do(req []byte, n int) ([]byte, error) {
	if t := d.srv.pool.cfg.Timeout; t > 0 {
		d.conn.SetDeadline(time.Now().Add(t))
	}
	began := time.Now()
	d.srv.stats.requests.Add(int64(n))
	d.srv.stats.requestBytes.Add(int64(len(req)))
	if _, err := d.conn.Write(req); err != nil {
		return nil, err
	}
	var scanner replyScanner
	start, end := 0, 0
	last := 0
	for got := 0; got < n; {
		m, err := scanner.scan(d.buf[start:end])
		if err != nil {
			return nil, err
		}
		if m > 0 {
			last = start
			start += m
			got++
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
	d.srv.stats.latency.observe(time.Since(began))
	d.srv.stats.responses.Add(int64(n))
	d.srv.stats.responseBytes.Add(int64(end))
	d.conn.SetDeadline(time.Time{})
	if start != end {
		return nil, errBadReply
	}
	return d.buf[last:start], nil
}

func (d *dedicatedConn) close() {
	d.conn.Close()
	d.srv.stats.connections.Add(-1)
}

func (d *dedicatedConn) release() {
	p := &d.srv.txConns
	p.mu.Lock()
	if len(p.idle) < maxIdleDedicated && cap(d.buf) <= maxKeptBuffer {
		p.idle = append(p.idle, d)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	d.close()
}
