package stats

// Kind is what a field's number is.
type Kind uint8

const (
	// Counter only grows (nutcracker's counters are cumulative since the
	// start).
	Counter Kind = iota
	// Gauge is a current value that goes up and down.
	Gauge
	// Histogram is a latency distribution, read from the snapshot's
	// LatencySnapshot rather than from its values.
	Histogram
)

// Scope is what a field is counted on.
type Scope uint8

const (
	PerProcess Scope = iota // the whole proxy: the top of nutcracker's document
	PerPool                 // each pool: a labelled series per pool
	PerServer               // each server of a pool
)

// Field is one number the proxy reports. Fields drives all three outputs:
// nutcracker's stats JSON writes the fields that have a Nutcracker name, in
// the table's order, which is nutcracker's; /metrics writes the fields that
// have a Metric; -D describes them all.
type Field struct {
	// Nutcracker is the field's name in nutcracker's stats JSON and -D;
	// "" for a number only shardproxy reports.
	Nutcracker string
	// Metric is the Prometheus metric's name without the "shardproxy_"
	// prefix; "" for a field /metrics leaves out.
	Metric string
	// Help says what the field counts, for -D and the metric's help.
	Help  string
	Kind  Kind
	Scope Scope
	// Index is the field's place in its scope's values: ProcessValues,
	// PoolValues or ServerValues. Histograms have none.
	Index int
	// Scale converts the value to the metric's unit; 0 means 1.
	Scale float64
}

// The places of the process fields in ProcessValues.
const (
	Uptime = iota
	Timestamp
	TotalConnections
	CurrConnections
	Ready
	Cores
	ParkedConnections
	MemoryReturns
	RejectedConnections
	OpenFilesLimit
	MaxClientConnections
	LastReloadSuccessful
	numProcess
)

// The places of the pool fields in PoolValues.
const (
	ClientEOF = iota
	ClientErr
	ClientConnections
	ServerEjects
	ForwardError
	Fragments
	ClientOutputLimitCloses
	PubSubMessages
	AuthFailures
	ClientIdleTimeouts
	ClientConnectionsLimit
	numPool
)

// The places of the server fields in ServerValues.
const (
	ServerEOF = iota
	ServerErr
	ServerTimedout
	ServerConnections
	ServerEjectedAt
	Requests
	RequestBytes
	Responses
	ResponseBytes
	InQueue
	InQueueBytes
	OutQueue
	OutQueueBytes
	ServerEjected
	ServerUp
	numServer
)

// Fields is every number the proxy reports, each scope in nutcracker's
// order (src/nc_stats.h), with shardproxy's own numbers after nutcracker's.
var Fields = [...]Field{
	{Nutcracker: "uptime", Metric: "uptime_seconds", Kind: Gauge, Scope: PerProcess, Index: Uptime,
		Help: "seconds since the proxy started"},
	// Prometheus stamps each scrape itself: timestamp has no metric.
	{Nutcracker: "timestamp", Kind: Gauge, Scope: PerProcess, Index: Timestamp,
		Help: "when the stats were taken, in seconds since the epoch"},
	{Nutcracker: "total_connections", Metric: "connections_total", Kind: Counter, Scope: PerProcess, Index: TotalConnections,
		Help: "connections opened since the start"},
	{Nutcracker: "curr_connections", Metric: "curr_connections", Kind: Gauge, Scope: PerProcess, Index: CurrConnections,
		Help: "connections open now"},
	{Metric: "ready", Kind: Gauge, Scope: PerProcess, Index: Ready,
		Help: "1 while /readyz answers 200, else 0"},
	{Metric: "cores", Kind: Gauge, Scope: PerProcess, Index: Cores,
		Help: "cores the proxy runs on now (GOMAXPROCS; see --cores)"},
	{Metric: "parked_connections", Kind: Gauge, Scope: PerProcess, Index: ParkedConnections,
		Help: "client connections that were idle long enough to park: they hold no read buffer and no goroutine until they send again"},
	{Metric: "memory_returns_total", Kind: Counter, Scope: PerProcess, Index: MemoryReturns,
		Help: "times freed memory was handed back to the OS at once because clients that parked or left gave up more than 32 MiB"},
	{Metric: "rejected_connections_total", Kind: Counter, Scope: PerProcess, Index: RejectedConnections,
		Help: "client connections closed as soon as they were accepted, with -ERR max number of clients reached: the proxy had max_client_connections clients, or their pool client_connections"},
	{Metric: "open_files_limit", Kind: Gauge, Scope: PerProcess, Index: OpenFilesLimit,
		Help: "the open file limit of the process (soft RLIMIT_NOFILE), 0 if unknown"},
	{Metric: "max_client_connections", Kind: Gauge, Scope: PerProcess, Index: MaxClientConnections,
		Help: "client connections the proxy serves at once over all pools: --max-clients, else what the open file limit leaves beside the pools' server connections; 0 for no limit"},
	{Metric: "config_last_reload_successful", Kind: Gauge, Scope: PerProcess, Index: LastReloadSuccessful,
		Help: "0 from a rejected reload of the configuration until a reload is applied, else 1"},

	{Nutcracker: "client_eof", Metric: "client_eof_total", Kind: Counter, Scope: PerPool, Index: ClientEOF,
		Help: "client connections closed by the client"},
	{Nutcracker: "client_err", Metric: "client_errors_total", Kind: Counter, Scope: PerPool, Index: ClientErr,
		Help: "client connections closed on an error, protocol errors included"},
	{Nutcracker: "client_connections", Metric: "client_connections", Kind: Gauge, Scope: PerPool, Index: ClientConnections,
		Help: "client connections open now"},
	{Nutcracker: "server_ejects", Metric: "server_ejects_total", Kind: Counter, Scope: PerPool, Index: ServerEjects,
		Help: "times a server of the pool was taken out of the ring by auto_eject_hosts"},
	{Nutcracker: "forward_error", Metric: "forward_errors_total", Kind: Counter, Scope: PerPool, Index: ForwardError,
		Help: "requests answered with an error because a server could not be used"},
	{Nutcracker: "fragments", Metric: "fragments_total", Kind: Counter, Scope: PerPool, Index: Fragments,
		Help: "sub-requests made by splitting multi-key commands"},
	{Metric: "client_output_limit_closes_total", Kind: Counter, Scope: PerPool, Index: ClientOutputLimitCloses,
		Help: "client connections closed because their unwritten replies went over client_output_buffer_limit, or their unwritten messages over client_output_buffer_limit_pubsub; also counted as client errors"},
	{Metric: "pubsub_messages_total", Kind: Counter, Scope: PerPool, Index: PubSubMessages,
		Help: "messages queued for the pool's subscribed clients, one for each client that receives it"},
	{Metric: "auth_failures_total", Kind: Counter, Scope: PerPool, Index: AuthFailures,
		Help: "AUTH and HELLO AUTH attempts refused: a wrong user or password, a user that is off, or an address over the failed-AUTH limit"},
	{Metric: "client_idle_timeouts_total", Kind: Counter, Scope: PerPool, Index: ClientIdleTimeouts,
		Help: "client connections closed because they sent nothing for the pool's client_timeout"},
	{Metric: "pool_request_duration_seconds", Kind: Histogram, Scope: PerPool,
		Help: "time from submitting a request to a server of the pool to reading its reply: the pool's server_request_duration_seconds summed"},
	{Metric: "client_connections_limit", Kind: Gauge, Scope: PerPool, Index: ClientConnectionsLimit,
		Help: "the pool's client_connections: client connections it serves at once, 0 for no limit"},

	{Nutcracker: "server_eof", Metric: "server_eof_total", Kind: Counter, Scope: PerServer, Index: ServerEOF,
		Help: "server connections closed by the server"},
	{Nutcracker: "server_err", Metric: "server_errors_total", Kind: Counter, Scope: PerServer, Index: ServerErr,
		Help: "server connections that failed otherwise, connect errors included"},
	{Nutcracker: "server_timedout", Metric: "server_timeouts_total", Kind: Counter, Scope: PerServer, Index: ServerTimedout,
		Help: "server connections closed because a reply took longer than the pool's timeout"},
	{Nutcracker: "server_connections", Metric: "server_connections", Kind: Gauge, Scope: PerServer, Index: ServerConnections,
		Help: "server connections open now"},
	{Nutcracker: "server_ejected_at", Metric: "server_ejected_timestamp_seconds", Kind: Gauge, Scope: PerServer, Index: ServerEjectedAt, Scale: 1e-6,
		Help: "when the server was last ejected, 0 if never: microseconds since the epoch in the stats JSON, seconds in /metrics"},
	{Nutcracker: "requests", Metric: "server_requests_total", Kind: Counter, Scope: PerServer, Index: Requests,
		Help: "requests sent to the server, each fragment counted"},
	{Nutcracker: "request_bytes", Metric: "server_request_bytes_total", Kind: Counter, Scope: PerServer, Index: RequestBytes,
		Help: "bytes of requests sent to the server"},
	{Nutcracker: "responses", Metric: "server_responses_total", Kind: Counter, Scope: PerServer, Index: Responses,
		Help: "replies received from the server"},
	{Nutcracker: "response_bytes", Metric: "server_response_bytes_total", Kind: Counter, Scope: PerServer, Index: ResponseBytes,
		Help: "bytes of replies received from the server"},
	{Nutcracker: "in_queue", Metric: "server_in_queue", Kind: Gauge, Scope: PerServer, Index: InQueue,
		Help: "requests waiting to be written to the server"},
	{Nutcracker: "in_queue_bytes", Metric: "server_in_queue_bytes", Kind: Gauge, Scope: PerServer, Index: InQueueBytes,
		Help: "bytes of requests waiting to be written to the server"},
	{Nutcracker: "out_queue", Metric: "server_out_queue", Kind: Gauge, Scope: PerServer, Index: OutQueue,
		Help: "requests written to the server and waiting for their reply"},
	{Nutcracker: "out_queue_bytes", Metric: "server_out_queue_bytes", Kind: Gauge, Scope: PerServer, Index: OutQueueBytes,
		Help: "bytes of requests written to the server and waiting for their reply"},
	{Metric: "server_ejected", Kind: Gauge, Scope: PerServer, Index: ServerEjected,
		Help: "1 while the server is out of the ring, else 0"},
	{Metric: "server_request_duration_seconds", Kind: Histogram, Scope: PerServer,
		Help: "time from submitting a request to the server's connection to reading its reply"},
	{Metric: "server_up", Kind: Gauge, Scope: PerServer, Index: ServerUp,
		Help: "0 from a failed connect or a failed connection to the server until a connect succeeds again, else 1; with or without auto_eject_hosts"},
}

// MetricHelp is the help text of f's metric: its Help, and the nutcracker
// field it mirrors.
func (f *Field) MetricHelp() string {
	h := f.Help
	if h != "" && h[0] >= 'a' && h[0] <= 'z' {
		h = string(h[0]-'a'+'A') + h[1:]
	}
	if f.Nutcracker != "" {
		return h + " (nutcracker " + f.Nutcracker + ")."
	}
	return h + "."
}

// MetricValue is v in the metric's unit.
func (f *Field) MetricValue(v int64) float64 {
	if f.Scale != 0 {
		return float64(v) * f.Scale
	}
	return float64(v)
}
