package proxy

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
)

// A node of a Redis Cluster answers -TRYAGAIN to a command on several keys
// of a slot that is being migrated when the keys are split between the
// migrating node and the importing one: the command did not run, and will
// once the keys are together. The proxy keeps the reply from the client and
// sends the command again, whole, to the node it last went to (after ASKING
// when -ASK sent it there), 20 ms later, then after twice as long each
// time up to 200 ms, until it gets another answer or the retries' time is
// up: the pool's timeout when it has one, the longest its clients mean to
// wait on a server, else 2 s, from the first -TRYAGAIN. The client then
// gets the last -TRYAGAIN as Redis wrote it. A retry that gets -MOVED or
// -ASK follows it, within the request's maxRedirects, which retries do
// not count and do not reset. Requests on connections of their own
// (transactions, blocking commands, WAIT) never come here.
//
// The client's requests after it must not run before it. Its next batch
// waits for its reply anyway; those of the same batch to a node that
// answered -TRYAGAIN reach the node before the retry does, so their
// replies are held instead: one that did not run (-TRYAGAIN, -MOVED,
// -ASK) or only read (its reply dropped) waits behind the retried request
// and is sent again once that has its reply, in the order they came. A
// write that such a node ran meanwhile (its keys were all there) is not
// undone: it ran before the retried command, as it would have from a
// cluster client pipelining the same commands.
//
// This costs the request path one atomic load per reply: the batch's
// tryAgainQueue, which holds the state, is idle unless a reply of the
// batch said -TRYAGAIN. Its one timer is made at the client's first
// -TRYAGAIN and reused.

// Bounds of the retries after -TRYAGAIN.
const (
	tryAgainFirst      = 20 * time.Millisecond  // the wait before the first retry
	tryAgainMaxBackoff = 200 * time.Millisecond // the longest wait between two
	tryAgainBound      = 2 * time.Second        // how long retries go on in a pool without timeout
)

// tryAgainPrefix starts Redis' "-TRYAGAIN Multiple keys request during
// rehashing of slot".
var tryAgainPrefix = []byte("-TRYAGAIN ")

// tryAgainState is what a request to a cluster node keeps for -TRYAGAIN.
type tryAgainState struct {
	until  time.Time // when its retries stop; zero before its first -TRYAGAIN
	asking bool      // -ASK sent it to its node, so ASKING goes before it again
}

// tryAgainQueue is a batch's request that is retried after -TRYAGAIN, the
// head, and the batch's requests held behind it.
type tryAgainQueue struct {
	active atomic.Bool // head is set; read by every reply without the lock

	mu      sync.Mutex // guards the fields below
	head    *replySlot
	waiting bool         // head waits for timer; else it is out on a connection
	behind  []*replySlot // held while head is retried, in the order they came
	// nodes answered -TRYAGAIN to a request of the batch: their replies to
	// its other requests are held behind head.
	nodes   []*server
	backoff time.Duration
	timer   *time.Timer
}

// clusterHeld decides about reply to s, a request to a node of a cluster
// pool: it returns true when the reply is not the client's because the
// request is sent again, later after -TRYAGAIN (tryAgain) or behind a
// request of its batch that is (hold), or at once to the node that -MOVED
// or -ASK names (redirect). It runs on the connection's reader and does
// not block. Every error reply of a cluster node to a request on a shared
// connection comes here first, and is counted on the node
// (cluster_stats.go).
func (s *replySlot) clusterHeld(reply []byte) bool {
	if len(reply) > 0 && reply[0] == '-' {
		s.req.srv.countRedirect(reply)
	}
	if bytes.HasPrefix(reply, tryAgainPrefix) {
		return s.tryAgain()
	}
	if q := &s.batch.retries; q.active.Load() {
		if held, decided := q.hold(s, reply); decided {
			return held
		}
	}
	return len(reply) > 0 && reply[0] == '-' && s.redirect(reply)
}

// tryAgain takes in a -TRYAGAIN answered to s: s is sent again later, as
// the batch's head or behind it, unless its time for retries is up.
// Every -TRYAGAIN of a cluster node to a request on a shared connection
// comes here.
func (s *replySlot) tryAgain() bool {
	now := time.Now()
	if s.again.until.IsZero() {
		bound := s.req.srv.pool.cfg.Timeout
		if bound <= 0 {
			bound = tryAgainBound
		}
		s.again.until = now.Add(bound)
	}
	retry := now.Before(s.again.until)
	q := &s.batch.retries
	q.mu.Lock()
	switch {
	case q.head == s && !retry:
		q.mu.Unlock()
		q.end()
		return false
	case q.head == nil && !retry:
		q.mu.Unlock()
		return false
	case q.head == nil:
		q.head, q.backoff = s, 0
		q.active.Store(true)
		fallthrough
	case q.head == s:
		q.waitLocked(now)
	default:
		// Another request of the batch is retried: this one waits
		// behind it, its own time running.
		q.behind = append(q.behind, s)
	}
	if !slices.Contains(q.nodes, s.req.srv) {
		q.nodes = append(q.nodes, s.req.srv)
	}
	q.mu.Unlock()
	return true
}

// hold decides about reply to s while a request of s's batch is retried,
// unless reply is -TRYAGAIN: the head's reply ends the retries, unless it
// is a redirect that is followed; a reply from a node that answered
// -TRYAGAIN, to a request that did not run or only read, is held. decided
// is false when none of this applies.
func (q *tryAgainQueue) hold(s *replySlot, reply []byte) (held, decided bool) {
	q.mu.Lock()
	switch {
	case q.head == nil:
		q.mu.Unlock()
		return false, false
	case q.head == s:
		q.mu.Unlock()
		if len(reply) > 0 && reply[0] == '-' && s.redirect(reply) {
			return true, true
		}
		q.end()
		return false, true
	case slices.Contains(q.nodes, s.req.srv) && (s.readOnly || isRedirect(reply)):
		q.behind = append(q.behind, s)
		q.mu.Unlock()
		return true, true
	}
	q.mu.Unlock()
	return false, false
}

// waitLocked arms the timer for the head's next retry, backing off, and
// never past its time for retries.
func (q *tryAgainQueue) waitLocked(now time.Time) {
	q.waiting = true
	if q.backoff == 0 {
		q.backoff = tryAgainFirst
	} else {
		q.backoff = min(2*q.backoff, tryAgainMaxBackoff)
	}
	d := min(q.backoff, q.head.again.until.Sub(now))
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.retry)
		return
	}
	q.timer.Reset(d)
}

// retry sends the head again once its wait is over; it runs on the timer.
// It is the one place a request is sent again for a -TRYAGAIN.
func (q *tryAgainQueue) retry() {
	q.mu.Lock()
	s := q.head
	if s == nil || !q.waiting {
		q.mu.Unlock()
		return
	}
	q.waiting = false
	q.mu.Unlock()
	s.sendAgain(time.Now())
}

// end ends the retries once the head has its reply, and sends the requests
// held behind it again, in order.
func (q *tryAgainQueue) end() {
	q.mu.Lock()
	held := q.behind // a new head may hold more before these are sent
	q.head, q.behind, q.waiting = nil, nil, false
	clear(q.nodes)
	q.nodes = q.nodes[:0]
	q.active.Store(false)
	q.mu.Unlock()
	now := time.Now()
	for _, s := range held {
		s.sendAgain(now)
	}
}

// tryAgainFailed takes in that s's connection failed: when s is the head,
// the error is its reply and the retries end.
func (s *replySlot) tryAgainFailed() {
	q := &s.batch.retries
	q.mu.Lock()
	head := q.head == s
	q.mu.Unlock()
	if head {
		q.end()
	}
}

// sendAgain sends s's request again to the node it went to last, on the
// connection it went out on: after ASKING when -ASK sent it there, after
// the CLIENT CACHING that went before it for a tracking client.
func (s *replySlot) sendAgain(now time.Time) {
	srv := s.req.srv
	srv.stats.Requests.Add(1)
	srv.stats.RequestBytes.Add(int64(len(s.req.bytes)))
	first := s.caching
	if s.again.asking {
		first = askingCommand
	}
	if first == nil {
		s.conn.Submit(s.req.bytes, []backend.ReplySink{s}, []int{len(s.req.bytes)}, now)
		return
	}
	reqs := append(append(make([]byte, 0, len(first)+len(s.req.bytes)), first...), s.req.bytes...)
	s.conn.Submit(reqs, []backend.ReplySink{discardReply{}, s}, []int{len(first), len(s.req.bytes)}, now)
}
