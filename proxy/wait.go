package proxy

import (
	"strconv"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// WAIT numreplicas timeout asks that the client's writes so far be on
// numreplicas replicas. The client's writes are on every server of the
// pool, each with its own replicas, so the proxy asks every server and
// answers the least count: the number of replicas every one of the
// client's writes is known to have reached.
//
// A server counts the replicas that acknowledged the replication offset of
// the connection WAIT comes on: redis-server's waitCommand compares the
// replicas' acknowledged offsets with the client's woff, the server's
// master_repl_offset as of that connection's last command (Redis 7.0 sets
// it after every command; 7.2 and later only after one that was
// propagated). The client's writes went over other connections, shared
// ones among them, so before WAIT the proxy sends PUBLISH on the same
// connection: PUBLISH is always propagated to replicas (publishCommand
// calls forceCommandPropagation with PROPAGATE_REPL outside Redis
// Cluster), so that connection's woff is then an offset at or past every
// write the server had carried out, and every write the client was
// answered for is among those. The channel is the proxy's own, and what
// it publishes is empty.
//
// WAIT blocks its server connection for up to its timeout, so, as a
// blocking command, it runs on a dedicated connection per server, counted
// against blocking_connections, with the client's socket watched for a
// client that goes away; all servers wait at once. Inside MULTI it is
// queued on the transaction's server, which answers it without blocking
// at EXEC, as Redis does.

// waitChannel is the channel the proxy publishes to before WAIT.
const waitChannel = "__shardproxy:wait__"

// publishBeforeWait is the request that moves a connection's replication
// offset past everything its server has carried out.
var publishBeforeWait = resp.AppendCommand(nil, []byte("PUBLISH"), []byte(waitChannel), nil)

// serverWait is WAIT on one server.
type serverWait struct {
	srv   *server
	d     *backend.Dedicated
	req   []byte        // WAIT as the client sent it
	block time.Duration // WAIT's timeout; -1 for none
	reply []byte        // the server's reply to WAIT, or to PUBLISH when that failed
	err   error         // the connection failed
}

// run sends PUBLISH then WAIT on the server's dedicated connection.
func (w *serverWait) run(wg *sync.WaitGroup) {
	defer wg.Done()
	reply, err := w.d.Do(publishBeforeWait, 1)
	if err == nil && !resp.IsError(reply) {
		reply, err = w.d.DoBlocking(w.req, w.block)
	}
	w.err = err
	if err == nil {
		w.reply = append(w.reply[:0], reply...)
	}
}

// wait answers WAIT numreplicas timeout with the least count the servers
// of the pool give, once what the client sent before it is answered. The
// arguments are checked as Redis checks them; a server that fails, or
// refuses (a replica does), makes the reply its error, the first in server
// order.
func (c *client) wait(cmd *resp.Command) {
	args := cmd.Args
	if _, err := strconv.ParseInt(string(args[1]), 10, 64); err != nil {
		c.replyError(msgNotInteger)
		return
	}
	ms, err := strconv.ParseInt(string(args[2]), 10, 64)
	switch {
	case err != nil:
		c.replyError(msgTimeoutNotInteger)
		return
	case ms < 0:
		c.replyError(msgTimeoutNegative)
		return
	}
	block := time.Duration(-1)
	if ms > 0 && ms < int64(maxBlock/time.Millisecond) {
		block = time.Duration(ms) * time.Millisecond
	}
	servers := c.layout.servers
	limit := c.pool.cfg.BlockingLimit()
	for i, srv := range servers {
		if int(srv.blocked.Add(1)) > limit {
			for _, s := range servers[:i+1] {
				s.blocked.Add(-1)
			}
			c.replyError(tooManyBlocked(srv.cfg.Name, limit))
			return
		}
	}
	defer func() {
		for _, s := range servers {
			s.blocked.Add(-1)
		}
	}()
	c.settle()
	b := &c.blocked
	b.req = appendRequest(b.req[:0], cmd)
	waits := make([]serverWait, len(servers))
	conns := make([]*backend.Dedicated, 0, len(servers))
	for i, srv := range servers {
		d, err := srv.up.TakeDedicated()
		if err != nil {
			for _, d := range conns {
				d.Release()
			}
			c.replyError(srv.up.ErrorText(err))
			return
		}
		conns = append(conns, d)
		waits[i] = serverWait{srv: srv, d: d, req: b.req, block: block}
	}
	c.watchBlocked(conns...)
	var wg sync.WaitGroup
	wg.Add(len(waits))
	for i := range waits {
		go waits[i].run(&wg)
	}
	wg.Wait()
	if gone := c.unwatchBlocked(); gone != nil {
		c.quit = true // the client is gone, as for a blocked command
	}
	if cap(b.req) > maxKeptBuffer {
		b.req = nil
	}
	var failed string
	least := int64(-1)
	for i := range waits {
		w := &waits[i]
		if w.err != nil {
			w.d.Close()
			if failed == "" {
				failed = w.srv.up.ErrorText(w.err)
			}
			continue
		}
		w.d.Release()
		if failed != "" {
			continue
		}
		n, ok := resp.ParseInteger(w.reply)
		switch {
		case resp.IsError(w.reply):
			failed = string(w.reply[1 : len(w.reply)-2])
		case !ok:
			failed = msgFanOutBadReply
		case least < 0 || n < least:
			least = n
		}
	}
	if failed != "" {
		c.replyError(failed)
		return
	}
	c.reply(resp.AppendInt(nil, least))
}
