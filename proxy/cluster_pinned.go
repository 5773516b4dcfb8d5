package proxy

import (
	"bytes"
	"errors"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Redirects on connections of a client's own. In a redis_cluster pool a
// blocking command and a transaction run on a dedicated connection, not
// on the shared ones whose reader follows -MOVED and -ASK (cluster.go);
// the client's goroutine follows them here instead, with the same bound.
//
// A blocking command answered -MOVED or -ASK did not run (Redis also
// unblocks a client whose slot moved away with -MOVED): it is sent again
// on a dedicated connection to the node named, after ASKING for -ASK.
//
// A transaction follows Redis 7.0's rules (processCommand and
// getNodeByQuery in cluster.c). Each command queued in MULTI is checked on
// its own: a redirect flags the transaction, whose EXEC then answers
// EXECABORT, and nothing has run. EXEC checks the keys of the whole
// transaction and, when they moved, discards it and answers the redirect:
// again nothing ran. The ASKING flag is kept from before MULTI to EXEC,
// while an ASKING inside MULTI would only be queued. So the proxy replays
// the transaction on the node named: MULTI (after ASKING for -ASK) and
// every command queued so far, then the redirected command, and DISCARDs
// the old node's transaction. The client has had QUEUED for each command
// and gets the new node's replies from then on. A transaction a node
// refused a command of is doomed wherever it runs, and is not replayed.
//
// Watches cannot move: the version of a watched key is on the node the
// client watched it on. A watched transaction that a redirect reaches is
// answered as one whose watched key was touched (MIGRATE deleting the key
// from the old node does touch it): the command is answered QUEUED, EXEC
// answers a null reply, and nothing runs. The client's usual retry, WATCH
// again, finds the key on its new node.

// redirectTarget returns the node that reply, a reply from a node of the
// client's cluster pool, sends its request to, and whether it is -ASK;
// nil when reply is no redirect, or names no node the pool can reach.
// -MOVED asks discovery for the new map.
func (c *client) redirectTarget(reply []byte) (*server, bool) {
	p := c.pool
	if p.seeds == nil || len(reply) == 0 || reply[0] != '-' {
		return nil, false
	}
	ask, addr, ok := parseRedirect(reply)
	if !ok {
		return nil, false
	}
	if !ask {
		p.pokeCluster()
	}
	target := p.srv.clusterNode(p.cfg.Name, addr)
	if target == nil {
		return nil, false
	}
	p.srv.clusterRedirects.Add(1)
	return target, ask
}

var (
	multiRequest   = resp.AppendCommand(nil, []byte("MULTI"))
	askingMulti    = append(append([]byte(nil), askingCommand...), multiRequest...)
	execRequest    = resp.AppendCommand(nil, []byte("EXEC"))
	discardRequest = resp.AppendCommand(nil, []byte("DISCARD"))
	replyExecAbort = []byte("-" + msgExecAbort + "\r\n")
)

// pinnedOwner is the index in the client's layout of the server that a
// command of its pinned transaction must be on. In a cluster pool that is
// whichever master the layout says serves the slot of the key that
// pinned it, since a new map may have moved the slot and a redirect the
// transaction; elsewhere the pinned server.
func (c *client) pinnedOwner() int {
	t := &c.tx
	if t.slot > 0 {
		if s, ok := c.layout.Placement.(*placement.Slots); ok {
			return s.Owner(uint16(t.slot - 1))
		}
	}
	return t.pinnedIdx
}

// notePinnedSlot remembers, in a cluster pool, the slot of the command
// about to pin the transaction, whose keys owner or txOwner just checked.
func (c *client) notePinnedSlot(def *command.Spec, args [][]byte) {
	t := &c.tx
	t.slot = 0
	if c.pool.seeds == nil {
		return
	}
	switch {
	case def.Kind == command.SplitKeys || def.Kind == command.SplitPairs:
		t.slot = 1 + int(hashring.KeySlot(args[1]))
	case len(c.keys) > 0:
		t.slot = 1 + int(hashring.KeySlot(args[c.keys[0]]))
	}
}

// keepEnds empties ends for reuse, or drops it if a long transaction
// grew it.
func keepEnds(ends []int) []int {
	if cap(ends) > maxKeptBuffer/8 {
		return nil
	}
	return ends[:0]
}

// logQueued keeps cmd, which a cluster pool's transaction queued, for a
// replay elsewhere.
func (c *client) logQueued(cmd *resp.Command) {
	t := &c.tx
	if c.pool.seeds == nil {
		return
	}
	t.log = appendRequest(t.log, cmd)
	t.ends = append(t.ends, len(t.log))
}

// clusterQueued takes in reply, the pinned node's answer to cmd in MULTI,
// and returns the client's: after a redirect, the answer of the node the
// transaction was replayed on.
func (c *client) clusterQueued(cmd *resp.Command, reply []byte) ([]byte, error) {
	t := &c.tx
	if isRedirect(reply) {
		if t.watched {
			t.watchLost = true
			return replyQueued, nil
		}
		if !t.refused {
			var err error
			t.req = appendRequest(t.req[:0], cmd)
			if reply, err = c.txFollow(reply, t.req, false); err != nil {
				return nil, err
			}
		}
	}
	if bytes.Equal(reply, replyQueued) {
		c.logQueued(cmd)
	} else {
		t.refused = true
	}
	return reply, nil
}

// clusterExec takes in reply, the pinned node's answer to EXEC, and
// returns the client's.
func (c *client) clusterExec(reply []byte) ([]byte, error) {
	t := &c.tx
	switch {
	case !isRedirect(reply):
		return reply, nil
	case t.watched:
		return c.nullArray(), nil
	case t.refused:
		return replyExecAbort, nil // the redirect discarded it there
	}
	return c.txFollow(reply, execRequest, true)
}

// txFollow follows reply, a redirect of the pinned node for last (the
// command being queued, or EXEC when exec), replaying the transaction on
// the node named, up to maxRedirects times, and returns the reply to last
// there. The transaction is pinned to that node from then on: a tracking
// client's on its tracking connection there, so what the transaction
// reads is tracked where it runs.
func (c *client) txFollow(reply, last []byte, exec bool) ([]byte, error) {
	t := &c.tx
	for redirects := 0; redirects < maxRedirects && !t.refused; redirects++ {
		srv, ask := c.redirectTarget(reply)
		if srv == nil {
			break
		}
		d, err := c.pinTo(srv)
		if err != nil {
			return nil, err
		}
		if reply, err = c.txReplay(d, ask, last); err != nil {
			d.Close()
			return nil, errors.New(d.ErrorText(err))
		}
		c.txRepin(d, exec)
	}
	return reply, nil
}

// pinTo returns a connection to srv for the client's transaction: a
// dedicated one, or a tracking client's tracking connection there.
func (c *client) pinTo(srv *server) (pinnedConn, error) {
	if c.tracking != nil {
		return &privatePin{t: c.tracking, up: srv.up, b: c.tracking.connFor(srv.up)}, nil
	}
	d, err := srv.up.TakeDedicatedProto(c.proto)
	if err != nil {
		return nil, errors.New(srv.up.ErrorText(err))
	}
	return d, nil
}

// txReplay sends the transaction on d, a connection to another node:
// MULTI (after ASKING when ask), the commands queued so far, then last,
// and returns the reply to last. A queued command that d's node does not
// queue marks the transaction refused: its EXEC answers EXECABORT there.
func (c *client) txReplay(d pinnedConn, ask bool, last []byte) ([]byte, error) {
	t := &c.tx
	begin, n := multiRequest, 1
	if ask {
		begin, n = askingMulti, 2
	}
	if _, err := d.Do(begin, n); err != nil {
		return nil, err
	}
	start := 0
	for _, end := range t.ends {
		reply, err := d.Do(t.log[start:end], 1)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(reply, replyQueued) {
			t.refused = true
		}
		start = end
	}
	return d.Do(last, 1)
}

// txRepin pins the transaction to d and lets go of the connection it was
// pinned to: after a redirected EXEC, which ended the transaction there,
// as it is; after a redirected queued command, once DISCARD ended the
// transaction Redis flagged.
func (c *client) txRepin(d pinnedConn, exec bool) {
	t := &c.tx
	old := t.pinned
	t.pinned, t.pinnedIdx = d, -1
	if !exec {
		if _, err := old.Do(discardRequest, 1); err != nil {
			old.Close()
			return
		}
	}
	old.Release()
}

// clusterWatched takes in reply, the pinned node's answer to the client's
// WATCH, cmd, and returns the client's. A redirect of the first WATCH,
// with nothing watched yet, sends WATCH to the node named, where the
// client is then pinned; after -ASK, ASKING goes before each WATCH and
// MULTI there (pinnedAsking), as the slot is that node's only to a client
// that asks. A redirect of a later WATCH is the client's: the watches
// already made stay where they are.
func (c *client) clusterWatched(cmd *resp.Command, reply []byte, first bool) ([]byte, error) {
	t := &c.tx
	if !first {
		return reply, nil
	}
	for redirects := 0; redirects < maxRedirects && t.pinned != nil; redirects++ {
		old := t.pinned
		srv, ask := c.redirectTarget(reply)
		if srv == nil {
			break
		}
		d, err := c.pinTo(srv)
		if err != nil {
			t.release()
			return nil, err
		}
		req, n := t.req[:0], 1
		if ask {
			req, n = append(req, askingCommand...), 2
		}
		t.req = appendRequest(req, cmd)
		if reply, err = d.Do(t.req, n); err != nil {
			d.Close()
			t.release()
			return nil, errors.New(d.ErrorText(err))
		}
		old.Release() // nothing was watched there
		t.pinned, t.pinnedIdx, t.asking = d, -1, ask
	}
	return reply, nil
}

// pinnedAsking sends ASKING on the pinned connection, before a WATCH or
// MULTI, when the client was pinned there by -ASK. When that fails, the
// connection is closed and unpinned, and the error is the client's reply.
func (c *client) pinnedAsking() error {
	t := &c.tx
	if !t.asking || t.pinned == nil {
		return nil
	}
	c.settle()
	d := t.pinned
	if _, err := d.Do(askingCommand, 1); err != nil {
		t.pinned = nil
		d.Close()
		return errors.New(d.ErrorText(err))
	}
	return nil
}
