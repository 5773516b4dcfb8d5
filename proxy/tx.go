package proxy

import (
	"errors"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// txState is a client's transaction: MULTI/EXEC and WATCH need a server
// connection of their own, because Redis keeps that state per connection
// and the shared connections carry every client's requests. The client is
// pinned to a dedicated connection to the server of its first key until
// EXEC, DISCARD, UNWATCH or the end of the connection. Keys of other servers
// are refused with CROSSSLOT, as Redis Cluster does, and EXEC then fails.
//
// A failure of the pinned connection (a timeout, a server that closed it)
// ends what the connection carried, and the connection is closed. Before
// MULTI that is the client's watches: the transaction that follows is
// answered as Redis answers one whose watched key was touched (MULTI and
// the commands are accepted, EXEC returns a null reply and runs nothing),
// since the proxy cannot tell whether one was. In MULTI a command that
// cannot be queued aborts the transaction, as Redis does, and EXEC answers
// EXECABORT. A failed EXEC or DISCARD answers the error naming the server
// and leaves the client outside MULTI; UNWATCH answers +OK, as the watches
// are gone either way.
type txState struct {
	inMulti   bool
	aborted   bool // a command could not be queued: EXEC answers EXECABORT
	watchLost bool // a WATCH died with its connection: EXEC answers null
	pinned    pinnedConn
	pinnedIdx int    // the index in the pool of pinned's server
	preamble  []byte // keyless commands queued in MULTI before a key picked the server
	queued    int    // how many commands preamble holds
	req       []byte // scratch for the request that pins a connection
	// caching is the CLIENT CACHING request that MULTI carried, sent
	// before MULTI on a tracking connection (tracking.go).
	caching []byte
	// In a cluster pool, what following a redirect takes
	// (cluster_pinned.go): slot is 1 + the slot of the key that pinned
	// the transaction, 0 for none; log holds the commands queued in MULTI
	// so far, each ending at its entry in ends; watched says the pinned
	// connection has watches; refused that a node refused to queue a
	// command of the transaction.
	slot             int
	log              []byte
	ends             []int
	watched, refused bool
	asking           bool // -ASK pinned it: ASKING goes before WATCH and MULTI
}

// pinnedConn is the connection a transaction is pinned to: a dedicated
// one (backend.Dedicated), or a tracking client's own (privatePin).
type pinnedConn interface {
	// Do sends req, n requests, and returns the last reply.
	Do(req []byte, n int) ([]byte, error)
	Close()   // the server state is unknown
	Release() // the server state is clean
	Reused() bool
	Upstream() *backend.Upstream
	// ErrorText is the client's error reply for an error of Do.
	ErrorText(err error) string
	// Switch makes it speak proto from now on.
	Switch(proto int) error
}

func (t *txState) active() bool { return t.inMulti || t.pinned != nil }

// doomed reports whether EXEC will run nothing, so that commands in MULTI
// need not reach a server.
func (t *txState) doomed() bool { return t.aborted || t.watchLost }

// reset forgets the transaction and closes a pinned connection whose server
// side state is unknown.
func (t *txState) reset() {
	if t.pinned != nil {
		t.pinned.Close()
	}
	*t = txState{preamble: keepBuffer(t.preamble), req: keepBuffer(t.req), log: keepBuffer(t.log), ends: keepEnds(t.ends)}
}

// release returns a pinned connection whose server state is clean.
func (t *txState) release() {
	if t.pinned != nil {
		t.pinned.Release()
	}
	*t = txState{preamble: keepBuffer(t.preamble), req: keepBuffer(t.req), log: keepBuffer(t.log), ends: keepEnds(t.ends)}
}

// keepBuffer empties b for reuse, or drops it if a large request grew it.
func keepBuffer(b []byte) []byte {
	if cap(b) > maxKeptBuffer {
		return nil
	}
	return b[:0]
}

// rejectInTx marks a transaction whose command was refused, as Redis does
// for a command it could not queue.
func (c *client) rejectInTx() {
	if c.tx.inMulti {
		c.tx.aborted = true
	}
}

var (
	replyOK     = []byte("+OK\r\n")
	replyQueued = []byte("+QUEUED\r\n")
	// replyNullArray is EXEC's answer when a watched key was touched.
	replyNullArray = []byte("*-1\r\n")
)

// transaction handles MULTI, EXEC, DISCARD, WATCH and UNWATCH.
func (c *client) transaction(def *command.Spec, cmd *resp.Command) {
	t := &c.tx
	switch def.Name {
	case "multi":
		if t.inMulti {
			c.replyError(msgNestedMulti)
			return
		}
		t.inMulti, t.aborted = true, false
		if c.tracking != nil {
			t.caching = c.tracking.armed
		}
		if t.pinned != nil {
			err := c.pinnedAsking()
			var reply []byte
			if err == nil {
				reply, err = c.pinnedDo(cmd)
			}
			if err != nil {
				// MULTI itself needs no server: the transaction goes on
				// unpinned, and the lost watches fail its EXEC.
				t.watchLost = true
				reply = replyOK
			}
			c.reply(reply)
			return
		}
		c.reply(replyOK)
	case "exec":
		if !t.inMulti {
			c.replyError(msgExecWithoutMulti)
			return
		}
		c.exec(cmd)
	case "discard":
		if !t.inMulti {
			c.replyError(msgDiscardWithoutMulti)
			return
		}
		if t.pinned == nil {
			t.release()
			c.reply(replyOK)
			return
		}
		reply, err := c.pinnedDo(cmd)
		if err != nil {
			// Nothing ran: the transaction ended with its connection.
			t.reset()
			c.replyError(err.Error())
			return
		}
		c.reply(reply) // before release: reply is in the connection's buffer
		t.release()
	case "watch":
		if t.inMulti {
			c.replyError(msgWatchInMulti)
			return
		}
		idx, msg := c.owner(def, cmd.Args)
		if msg == "" && t.pinned != nil && c.pinnedOwner() != idx {
			msg = msgCrossSlot
		}
		if msg != "" {
			c.replyError(msg)
			return
		}
		var reply []byte
		var err error
		first := t.pinned == nil
		if first {
			c.notePinnedSlot(def, cmd.Args)
			reply, err = c.pin(idx, cmd)
		} else if err = c.pinnedAsking(); err == nil {
			reply, err = c.pinnedDo(cmd)
		}
		if err != nil && !first {
			t.watchLost = true // the watches of the connection that failed
		}
		if err == nil && c.pool.seeds != nil {
			reply, err = c.clusterWatched(cmd, reply, first)
		}
		if err != nil {
			c.replyError(err.Error())
			return
		}
		if !resp.IsError(reply) {
			t.watched = true
		}
		c.reply(reply)
	case "unwatch":
		if t.inMulti {
			c.txQueue(cmd)
			return
		}
		if t.pinned == nil {
			t.watchLost = false
			c.reply(replyOK)
			return
		}
		if _, err := c.pinnedDo(cmd); err != nil {
			// The watches went with the connection: UNWATCH's work is done.
			t.reset()
		} else {
			t.release()
		}
		c.reply(replyOK)
	}
}

// exec answers EXEC. However it ends, the client is outside MULTI after it.
func (c *client) exec(cmd *resp.Command) {
	t := &c.tx
	switch {
	case t.aborted:
		c.discardOnServer()
		c.replyError(msgExecAbort)
		return
	case t.watchLost:
		c.discardOnServer()
		c.reply(c.nullArray())
		return
	case t.pinned == nil && t.queued == 0:
		t.release()
		c.reply([]byte("*0\r\n"))
		return
	case t.pinned == nil:
		if _, err := c.pin(c.layout.Lookup(placeholderKey), nil); err != nil {
			t.reset()
			c.replyError(err.Error())
			return
		}
	}
	reply, err := c.pinnedDo(cmd)
	if err == nil && c.pool.seeds != nil {
		reply, err = c.clusterExec(reply)
	}
	if err != nil {
		// The transaction may or may not have run: the error says what
		// failed, and the connection whose state is unknown is closed.
		t.reset()
		c.replyError(err.Error())
		return
	}
	c.reply(reply) // before release: reply is in the connection's buffer
	t.release()
}

// discardOnServer ends a transaction that must not run: DISCARD on the
// pinned connection, if there is one, and the client leaves MULTI.
func (c *client) discardOnServer() {
	t := &c.tx
	if t.pinned != nil {
		c.settle()
		if _, err := t.pinned.Do(resp.AppendCommand(t.req[:0], []byte("DISCARD")), 1); err != nil {
			t.reset()
			return
		}
	}
	t.release()
}

// txCommand handles a command while the client is pinned or in MULTI.
func (c *client) txCommand(def *command.Spec, cmd *resp.Command) {
	t := &c.tx
	if !t.inMulti {
		// WATCH pinned the client but no MULTI yet: commands go their usual way.
		c.dispatchKind(def, cmd)
		return
	}
	switch def.Kind {
	case command.Local:
		if def.Name == "ping" || def.Name == "echo" || def.Name == "wait" || def.Name == "select" && c.isPoolDB(cmd.Args[1]) {
			c.txQueue(cmd)
			return
		}
		c.rejectInTx()
		if def.Name == "select" {
			c.selectDB(cmd.Args[1])
			return
		}
		c.replyError(notInMulti(def.Name))
	case command.Unsupported:
		c.rejectInTx()
		c.replyError(unsupportedCommand(def))
	case command.FanOut:
		c.rejectInTx()
		c.replyError(fanOutInMulti(def.Name))
	case command.PubSub:
		c.rejectInTx()
		c.replyError(notInMulti(def.Name))
	case command.RoutePlaceholder:
		c.txQueue(cmd)
	default:
		if def.OmitsKeys(cmd.Args) {
			c.txQueue(cmd) // runs on the transaction's server, like other keyless commands
			return
		}
		idx, msg := c.txOwner(def, cmd.Args)
		if msg == "" && t.pinned != nil && c.pinnedOwner() != idx {
			msg = msgCrossSlot
		}
		if msg != "" {
			c.rejectInTx()
			c.replyError(msg)
			return
		}
		if t.doomed() {
			c.reply(replyQueued)
			return
		}
		var reply []byte
		var err error
		if t.pinned == nil {
			c.notePinnedSlot(def, cmd.Args)
			reply, err = c.pin(idx, cmd)
		} else {
			reply, err = c.pinnedDo(cmd)
		}
		if err == nil && c.pool.seeds != nil {
			reply, err = c.clusterQueued(cmd, reply)
		}
		if err != nil {
			c.rejectInTx()
			c.replyError(err.Error())
			return
		}
		c.reply(reply)
	}
}

// txOwner is owner for any keyed command, split ones included: inside a
// transaction every key must be on the pinned server.
func (c *client) txOwner(def *command.Spec, args [][]byte) (int, string) {
	if def.Kind == command.SplitKeys || def.Kind == command.SplitPairs {
		if def.Step == 2 && (len(args)-1)%2 != 0 {
			return -1, wrongArity(def.Name)
		}
		idx := -1
		for i := 1; i < len(args); i += def.Step {
			j := c.layout.Lookup(args[i])
			if j < 0 {
				return -1, c.layout.noOwnerOf(args[i])
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
func (c *client) txQueue(cmd *resp.Command) {
	t := &c.tx
	switch {
	case t.doomed():
		c.reply(replyQueued)
	case t.pinned != nil:
		reply, err := c.pinnedDo(cmd)
		if err == nil && c.pool.seeds != nil {
			reply, err = c.clusterQueued(cmd, reply)
		}
		if err != nil {
			c.rejectInTx()
			c.replyError(err.Error())
			return
		}
		c.reply(reply)
	default:
		t.preamble = appendRequest(t.preamble, cmd)
		t.queued++
		c.logQueued(cmd)
		c.reply(replyQueued)
	}
}

// appendRequest appends cmd as the server is sent it: the client's bytes,
// or, for an inline command, the command in RESP.
func appendRequest(dst []byte, cmd *resp.Command) []byte {
	if cmd.Inline {
		return resp.AppendCommand(dst, cmd.Args...)
	}
	return append(dst, cmd.Raw...)
}

// pin takes a dedicated connection to server idx and sends cmd (if not
// nil) as its first request; in MULTI, MULTI and the commands queued so far
// go first. It returns the last reply. All of it may be sent again: WATCH,
// MULTI and queued commands live and die with their connection, and none
// runs before EXEC. So when a connection taken from the idle pool fails
// (the server restarted or its timeout setting closed the connection just
// as it was taken), the request goes again on a newly dialled one. A
// timeout is not retried: that server is slow, not gone.
func (c *client) pin(idx int, cmd *resp.Command) ([]byte, error) {
	t := &c.tx
	if idx < 0 {
		return nil, errors.New(msgNoServer)
	}
	c.settle()
	srv := c.layout.servers[idx]
	req, n := t.req[:0], 0
	if t.inMulti && t.caching != nil {
		req = append(req, t.caching...)
		n++
		t.caching = nil
	}
	if t.inMulti {
		req = resp.AppendCommand(req, []byte("MULTI"))
		req = append(req, t.preamble...)
		n += 1 + t.queued
	}
	if cmd != nil {
		req = appendRequest(req, cmd)
		n++
	}
	t.req = req
	up := srv.up
	if c.tracking != nil {
		p := &privatePin{t: c.tracking, up: up, b: c.tracking.connFor(up)}
		reply, err := p.Do(req, n)
		if err != nil {
			p.Close()
			return nil, errors.New(p.ErrorText(err))
		}
		t.pinned, t.pinnedIdx = p, idx
		t.preamble, t.queued = t.preamble[:0], 0
		return reply, nil
	}
	d, err := up.TakeDedicatedProto(c.proto)
	if err != nil {
		return nil, errors.New(up.ErrorText(err))
	}
	reply, err := d.Do(req, n)
	if err != nil && d.Reused() && !isTimeout(err) {
		d.Close()
		if d, err = up.DialDedicatedProto(c.proto); err == nil {
			reply, err = d.Do(req, n)
		}
	}
	if err != nil {
		if d != nil {
			d.Close()
		}
		return nil, errors.New(up.ErrorText(err))
	}
	t.pinned, t.pinnedIdx = d, idx
	t.preamble, t.queued = t.preamble[:0], 0
	return reply, nil
}

// pinnedDo sends one command on the pinned connection and returns its
// reply. When that fails, the connection is closed and unpinned, and the
// error is the reply for the client, naming the server and the cause.
func (c *client) pinnedDo(cmd *resp.Command) ([]byte, error) {
	c.settle()
	t := &c.tx
	d := t.pinned
	n := 1
	t.req = t.req[:0]
	if t.caching != nil {
		t.req = append(t.req, t.caching...)
		t.caching, n = nil, 2
	}
	t.req = appendRequest(t.req, cmd)
	reply, err := d.Do(t.req, n)
	if err != nil {
		t.pinned = nil
		d.Close()
		return nil, errors.New(d.ErrorText(err))
	}
	return reply, nil
}

// settle submits what the batch staged so far and waits for it, so a
// command on the pinned connection runs after the commands sent before it.
func (c *client) settle() { c.submit() }
