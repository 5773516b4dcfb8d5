package proxy

import (
	"sync/atomic"
	"time"
)

// Counters are atomic fields on the objects they count, so the request path
// never looks anything up by name. Field names follow nutcracker's stats.

type serverStats struct {
	serverEOF      atomic.Int64
	serverErr      atomic.Int64
	serverTimedout atomic.Int64
	connections    atomic.Int64
	requests       atomic.Int64
	requestBytes   atomic.Int64
	responses      atomic.Int64
	responseBytes  atomic.Int64
	outQueue       atomic.Int64 // requests submitted and not yet answered

	// inQueue and inQueueBytes count the requests (bytes) of outQueue
	// (outQueueBytes) not yet written to the server. nutcracker's in_queue
	// and out_queue are disjoint, so the stats report in_queue = inQueue and
	// out_queue = outQueue - inQueue, and the same for the bytes.
	inQueue       atomic.Int64
	inQueueBytes  atomic.Int64
	outQueueBytes atomic.Int64 // bytes of the requests in outQueue

	// latency is the time from submitting a request to the server's
	// connection to reading its reply (waiting behind other clients'
	// requests included). /metrics shows it per server and, summed, per pool.
	latency latencyHistogram
}

// unqueue takes answered or failed requests out of outQueue and
// outQueueBytes.
func (s *serverStats) unqueue(slots []*replySlot) {
	n := 0
	for _, slot := range slots {
		n += slot.size
	}
	s.outQueue.Add(-int64(len(slots)))
	s.outQueueBytes.Add(-int64(n))
}

// queues returns nutcracker's in_queue, in_queue_bytes, out_queue and
// out_queue_bytes. The counters are read one after the other while requests
// move, so a difference can dip below 0 for a moment; it is reported as 0.
func (s *serverStats) queues() (inQueue, inQueueBytes, outQueue, outQueueBytes int64) {
	inQueue, inQueueBytes = s.inQueue.Load(), s.inQueueBytes.Load()
	outQueue = max(s.outQueue.Load()-inQueue, 0)
	outQueueBytes = max(s.outQueueBytes.Load()-inQueueBytes, 0)
	return inQueue, inQueueBytes, outQueue, outQueueBytes
}

type poolStats struct {
	clientEOF         atomic.Int64
	clientErr         atomic.Int64
	clientConnections atomic.Int64
	serverEjects      atomic.Int64
	forwardError      atomic.Int64
	fragments         atomic.Int64
	clientOutputLimit atomic.Int64 // clients closed for client_output_buffer_limit, also in clientErr
}

type globalStats struct {
	totalConnections atomic.Int64
	currConnections  atomic.Int64

	// ready is SetReady's flag: /readyz answers 200 only while it is set,
	// every pool listens and the Server is not shutting down.
	ready atomic.Bool
}

// latencyBounds are the upper bounds (Prometheus "le", inclusive) of the
// latency buckets: 1, 2.5, 5 steps from 50µs, below a local Redis round
// trip, to 10s, past any sensible server timeout. Slower requests land in
// the last, unbounded bucket.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// latencyHistogram is a fixed-bucket histogram cheap enough for every
// request: observe is a short scan and two atomic adds, with no lock and no
// allocation. Buckets are not cumulative here; the count is their sum, so a
// scrape never sees a count that disagrees with its buckets.
type latencyHistogram struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64 // the last one is +Inf
	sum     atomic.Uint64                         // nanoseconds
}

// observe records one request that took d. A negative d (a clock step
// between two wall-clock readings) counts as 0.
func (h *latencyHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(uint64(d))
}

// latencySnapshot is a latencyHistogram read at one moment.
type latencySnapshot struct {
	buckets [len(latencyBounds) + 1]uint64
	sum     uint64 // nanoseconds
}

func (h *latencyHistogram) snapshot() latencySnapshot {
	var s latencySnapshot
	for i := range h.buckets {
		s.buckets[i] = h.buckets[i].Load()
	}
	s.sum = h.sum.Load()
	return s
}

// add adds o's observations to s, to sum a pool's servers.
func (s *latencySnapshot) add(o *latencySnapshot) {
	for i := range s.buckets {
		s.buckets[i] += o.buckets[i]
	}
	s.sum += o.sum
}

func (s *latencySnapshot) count() uint64 {
	var n uint64
	for _, b := range s.buckets {
		n += b
	}
	return n
}
