// Package statsport serves the stats port: nutcracker's stats JSON for the
// tools that read nutcracker's port 22222 today, and HTTP on the same port
// for Prometheus and Kubernetes probes. It renders what a Source (the
// proxy's Server) puts in a stats.Snapshot, and is the only package besides
// cmd/shardproxy that speaks HTTP or Prometheus.
//
// nutcracker (src/nc_stats.c) accepts a connection, writes the document and
// closes, without reading anything. A plain TCP client here gets the same
// once it has sent nothing for 200ms, or has sent something that cannot
// start an HTTP request. A client whose first byte could start an HTTP
// method (an upper-case letter) is handed to net/http with the bytes read
// so far replayed, and gets:
//
//	GET /           the same JSON document, Content-Type application/json
//	GET /metrics    Prometheus text: every field of stats.Fields that has a
//	                metric, discovery and reload state, groups' and Redis
//	                Cluster pools' state, the Go runtime
//	GET /healthz    200 "ok" while the process serves
//	GET /readyz     200 "ok" while the Source is ready, else 503 and the reason
//	GET /discovery  each server's address and where it came from, discovery's
//	                watches and the configuration's hash and reloads, as JSON
//	GET /locate     ?key=K (up to 1000 times) and optional pool=P: for each key and
//	                pool, the server that owns the key now and the address it
//	                is dialled at, as a JSON array; 400 without a key or for
//	                an unknown pool
//
// The JSON document and /metrics are rendered from stats.Fields, nutcracker's
// fields in nutcracker's order, so the document is nutcracker's byte for
// byte apart from the values. Every request takes a new snapshot of the live
// counters; nutcracker reports sums that lag by up to its -i interval (30s by
// default).
package statsport
