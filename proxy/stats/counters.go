package stats

import "sync/atomic"

// Process holds the proxy's own counters.
type Process struct {
	TotalConnections atomic.Int64
	CurrConnections  atomic.Int64
	// ParkedConnections are the client connections parked now (idle long
	// enough to give back their buffers and goroutine).
	ParkedConnections atomic.Int64
	// MemoryReturns counts the times freed memory was handed back to the
	// OS after clients gave much of it up.
	MemoryReturns atomic.Int64
	// RejectedConnections counts the clients closed on accept for a
	// client limit.
	RejectedConnections atomic.Int64
}

// Read copies the counters into v. The fields Process does not hold are
// left as they are.
func (c *Process) Read(v *ProcessValues) {
	v[TotalConnections] = c.TotalConnections.Load()
	v[CurrConnections] = c.CurrConnections.Load()
	v[ParkedConnections] = c.ParkedConnections.Load()
	v[MemoryReturns] = c.MemoryReturns.Load()
	v[RejectedConnections] = c.RejectedConnections.Load()
}

// Pool holds a pool's counters.
type Pool struct {
	ClientEOF               atomic.Int64
	ClientErr               atomic.Int64
	ClientConnections       atomic.Int64
	ServerEjects            atomic.Int64
	ForwardError            atomic.Int64
	Fragments               atomic.Int64
	ClientOutputLimitCloses atomic.Int64 // also in ClientErr
	PubSubMessages          atomic.Int64
	AuthFailures            atomic.Int64
	ClientIdleTimeouts      atomic.Int64
}

// Read copies the counters into v.
func (c *Pool) Read(v *PoolValues) {
	v[ClientEOF] = c.ClientEOF.Load()
	v[ClientErr] = c.ClientErr.Load()
	v[ClientConnections] = c.ClientConnections.Load()
	v[ServerEjects] = c.ServerEjects.Load()
	v[ForwardError] = c.ForwardError.Load()
	v[Fragments] = c.Fragments.Load()
	v[ClientOutputLimitCloses] = c.ClientOutputLimitCloses.Load()
	v[PubSubMessages] = c.PubSubMessages.Load()
	v[AuthFailures] = c.AuthFailures.Load()
	v[ClientIdleTimeouts] = c.ClientIdleTimeouts.Load()
}

// Server holds a server's counters and its latency histogram.
type Server struct {
	ServerEOF      atomic.Int64
	ServerErr      atomic.Int64
	ServerTimedout atomic.Int64
	Connections    atomic.Int64
	Requests       atomic.Int64
	RequestBytes   atomic.Int64
	Responses      atomic.Int64
	ResponseBytes  atomic.Int64

	// OutQueue and OutQueueBytes count the requests (bytes) handed to the
	// server's connections and not yet answered; InQueue and InQueueBytes
	// those of them not yet written. nutcracker's in_queue and out_queue
	// are disjoint: Read reports in_queue = InQueue and out_queue =
	// OutQueue - InQueue, and the same for the bytes.
	OutQueue      atomic.Int64
	OutQueueBytes atomic.Int64
	InQueue       atomic.Int64
	InQueueBytes  atomic.Int64

	// Latency is the time from submitting a request to the server's
	// connection to reading its reply, waiting behind other clients'
	// requests included.
	Latency Latency

	// Moved, Ask and TryAgain count the -MOVED, -ASK and -TRYAGAIN
	// replies of a Redis Cluster node; only a redirect or a refusal
	// touches them, never a request that runs where it was sent.
	Moved, Ask, TryAgain atomic.Int64
}

// Read copies the counters into v. ServerEjectedAt and ServerEjected,
// which are the server's health rather than counters, are left as they
// are. The queue counters are read one after the other while requests
// move, so a difference can dip below 0 for a moment; it is reported as 0.
func (c *Server) Read(v *ServerValues) {
	v[ServerEOF] = c.ServerEOF.Load()
	v[ServerErr] = c.ServerErr.Load()
	v[ServerTimedout] = c.ServerTimedout.Load()
	v[ServerConnections] = c.Connections.Load()
	v[Requests] = c.Requests.Load()
	v[RequestBytes] = c.RequestBytes.Load()
	v[Responses] = c.Responses.Load()
	v[ResponseBytes] = c.ResponseBytes.Load()
	in, inBytes := c.InQueue.Load(), c.InQueueBytes.Load()
	v[InQueue], v[InQueueBytes] = in, inBytes
	v[OutQueue] = max(c.OutQueue.Load()-in, 0)
	v[OutQueueBytes] = max(c.OutQueueBytes.Load()-inBytes, 0)
}
