// Package stats holds the numbers shardproxy reports: counters as atomic
// fields on the objects they count (Process, Pool, Server), request latency
// histograms (Latency), and Snapshot, all of them read at one moment.
//
// Fields is the one table of every number: its name in nutcracker's stats
// JSON, its Prometheus metric, its help text, whether it is a counter, a
// gauge or a histogram, and whether it is counted per process, per pool or
// per server. The stats port's JSON document and /metrics are rendered from
// a Snapshot by walking that table, and -D (Describe) lists it, so the
// three cannot drift apart.
//
// The request path only adds to atomics: no lookup by name, no label, no
// lock and no allocation. Reading a Snapshot is for the stats port, where a
// few microseconds per server do not matter; it reuses the storage of the
// previous one.
package stats
