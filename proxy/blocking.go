package proxy

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// blockedState is what a client needs while a blocking command (BLPOP,
// BZPOPMIN, XREAD BLOCK, ...) waits on its server. Such a command would
// hold up every other request on a shared connection, so it runs on a
// dedicated one, taken for as long as it blocks. Meanwhile the client's
// goroutine waits in that connection's Do, and a watcher goroutine reads
// the client's socket: what the client pipelines behind the command is
// kept for after it, and a client that goes away closes the dedicated
// connection, since nothing else would unblock the server side.
type blockedState struct {
	req   []byte               // the request as the server is sent it
	conns []*backend.Dedicated // the connections the command blocks on (WAIT: one per server)
	stop  atomic.Bool          // the command is done: the watcher's read timeout is its end
	done  chan error           // the watcher's end: nil when stopped, else why the client is gone
}

// maxBlock is the longest block that gets a deadline; a longer one, like
// a timeout of 0, blocks for as long as the server does.
const maxBlock = 100 * 365 * 24 * time.Hour

// blockingCommand runs a command that may block on server idx, on a
// connection of its own, once what the client sent before it is answered.
// After a reply the connection is kept for reuse; after an error, or when
// the client went away, it is closed, as the server side's state is
// unknown. In a cluster pool a -MOVED or -ASK reply, which says the
// command did not run, sends it to the node named (cluster_pinned.go).
func (c *client) blockingCommand(def *command.Spec, idx int, cmd *resp.Command) {
	if idx < 0 {
		c.replyError(c.layout.noOwner())
		return
	}
	b := &c.blocked
	b.req = appendRequest(b.req[:0], cmd)
	block := blockTimeout(def, cmd.Args)
	srv, asking := c.layout.servers[idx], false
	for redirects := 0; ; redirects++ {
		d, reply, msg := c.blockOn(srv, asking, block)
		if msg != "" {
			c.replyError(msg)
			break
		}
		if redirects < maxRedirects && !c.quit {
			if next, ask := c.redirectTarget(reply); next != nil {
				d.Release() // the command did not run: the connection is clean
				srv, asking = next, ask
				continue
			}
		}
		c.reply(reply) // before release: reply is in the connection's buffer
		d.Release()
		break
	}
	if cap(b.req) > maxKeptBuffer {
		b.req = nil
	}
}

// blockOn sends the client's blocking command, b.req, to srv (after
// ASKING when asking) on a dedicated connection and returns it with the
// reply, or the error for the client.
func (c *client) blockOn(srv *server, asking bool, block time.Duration) (*backend.Dedicated, []byte, string) {
	limit := c.pool.cfg.BlockingLimit()
	if int(srv.blocked.Add(1)) > limit {
		srv.blocked.Add(-1)
		return nil, nil, tooManyBlocked(srv.cfg.Name, limit)
	}
	defer srv.blocked.Add(-1)
	c.settle()
	b := &c.blocked
	up := srv.up
	d, err := up.TakeDedicatedProto(c.proto)
	if err != nil {
		return nil, nil, up.ErrorText(err)
	}
	if asking {
		if _, err = d.Do(askingCommand, 1); err != nil {
			d.Close()
			return nil, nil, up.ErrorText(err)
		}
	}
	c.watchBlocked(d)
	reply, err := d.DoBlocking(b.req, block)
	if gone := c.unwatchBlocked(); gone != nil {
		c.quit = true // the client is gone: Redis drops it and its blocked command
	}
	if err != nil {
		d.Close()
		return nil, nil, up.ErrorText(err)
	}
	return d, reply, ""
}

// watchBlocked starts the watcher of the client's socket while its
// command blocks on conns.
func (c *client) watchBlocked(conns ...*backend.Dedicated) {
	b := &c.blocked
	if b.done == nil {
		b.done = make(chan error, 1)
	}
	b.conns = append(b.conns[:0], conns...)
	c.disarmIdle()
	go c.watchWhileBlocked()
}

// watchWhileBlocked reads the client's socket until told to stop or the
// client is gone (its end of the connection closed, CLIENT KILL,
// shutdown); then it closes the dedicated connections, which ends the
// blocked command's Do.
func (c *client) watchWhileBlocked() {
	b := &c.blocked
	for {
		err := c.readWhileBlocked()
		if err == nil {
			continue
		}
		if b.stop.Load() && isTimeout(err) {
			b.done <- nil
			return
		}
		for _, d := range b.conns {
			d.Close()
		}
		b.done <- err
		return
	}
}

// unwatchBlocked stops the watcher once the blocked command is done and
// reports why the client is gone, or nil if it is still there.
func (c *client) unwatchBlocked() error {
	b := &c.blocked
	b.stop.Store(true)
	c.conn.SetReadDeadline(time.Now())
	err := <-b.done
	b.stop.Store(false)
	clear(b.conns)
	b.conns = b.conns[:0]
	if c.stopping.Load() {
		c.conn.SetReadDeadline(time.Now().Add(stopReadGrace))
	} else {
		c.conn.SetReadDeadline(time.Time{})
	}
	return err
}

// readWhileBlocked reads what the client sends while its command blocks,
// after the bytes already read. Unlike fill it never moves bytes within
// the buffer, because the blocked command's arguments are there; it moves
// the unread bytes to a new buffer when it needs room.
func (c *client) readWhileBlocked() error {
	if c.rend == len(c.rbuf) {
		unread := c.rend - c.rstart
		if unread >= maxRequestLen {
			return errRequestTooLarge
		}
		nb := make([]byte, min(max(2*unread, readBufferSize), maxRequestLen))
		c.rend = copy(nb, c.rbuf[c.rstart:c.rend])
		c.rstart = 0
		c.rbuf = nb
	}
	n, err := c.sock.Read(c.rbuf[c.rend:])
	c.rend += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// blockTimeout is how long the command in args may block, parsed as Redis
// parses it: seconds as a double, the last argument or, for BLMPOP and
// BZMPOP, the first; XREAD's BLOCK milliseconds as an integer. It is -1
// for a timeout of 0, which blocks forever. A timeout Redis refuses is 0:
// the server answers its error at once.
func blockTimeout(def *command.Spec, args [][]byte) time.Duration {
	switch def.Name {
	case "xread", "xreadgroup":
		// The options before STREAMS, as command.Spec.Blocks reads them.
		for i := 1; i+1 < len(args); i++ {
			switch a := args[i]; {
			case bytes.EqualFold(a, []byte("block")):
				ms, err := strconv.ParseInt(string(args[i+1]), 10, 64)
				return blockFor(float64(ms), err, time.Millisecond)
			case bytes.EqualFold(a, []byte("count")):
				i++
			case bytes.EqualFold(a, []byte("group")):
				i += 2
			case bytes.EqualFold(a, []byte("noack")):
			default:
				return 0
			}
		}
		return 0
	case "blmpop", "bzmpop":
		secs, err := strconv.ParseFloat(string(args[1]), 64)
		return blockFor(secs, err, time.Second)
	}
	secs, err := strconv.ParseFloat(string(args[len(args)-1]), 64)
	return blockFor(secs, err, time.Second)
}

// blockFor converts a parsed timeout of n units to a duration for
// blockTimeout.
func blockFor(n float64, err error, unit time.Duration) time.Duration {
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange), math.IsNaN(n), n < 0:
		return 0
	case n == 0, math.IsInf(n, 1), n*float64(unit) >= float64(maxBlock):
		return -1
	}
	return time.Duration(n * float64(unit))
}
