package stats

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds (Prometheus "le", inclusive) of the
// latency buckets: 1, 2.5, 5 steps from 50µs, below a local Redis round
// trip, to 10s, past any sensible server timeout. Slower requests land in
// the last, unbounded bucket.
var LatencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Latency is a fixed-bucket histogram cheap enough for every request:
// Observe is a short scan and two atomic adds, with no lock and no
// allocation. Buckets are not cumulative here; the count is their sum, so a
// scrape never sees a count that disagrees with its buckets.
type Latency struct {
	buckets [len(LatencyBounds) + 1]atomic.Uint64 // the last one is +Inf
	sum     atomic.Uint64                         // nanoseconds
}

// Observe records one request that took d. A negative d (a clock step
// between two wall-clock readings) counts as 0.
func (h *Latency) Observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(uint64(d))
}

// LatencySnapshot is a Latency read at one moment.
type LatencySnapshot struct {
	Buckets [len(LatencyBounds) + 1]uint64 // per bucket, not cumulative; the last is +Inf
	Sum     uint64                         // nanoseconds
}

// Snapshot reads the histogram.
func (h *Latency) Snapshot() LatencySnapshot {
	var s LatencySnapshot
	for i := range h.buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	s.Sum = h.sum.Load()
	return s
}

// Add adds o's observations to s, to sum a pool's servers.
func (s *LatencySnapshot) Add(o *LatencySnapshot) {
	for i := range s.Buckets {
		s.Buckets[i] += o.Buckets[i]
	}
	s.Sum += o.Sum
}

// Count is the number of observations.
func (s *LatencySnapshot) Count() uint64 {
	var n uint64
	for _, b := range s.Buckets {
		n += b
	}
	return n
}
