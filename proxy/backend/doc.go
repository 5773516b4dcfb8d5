// Package backend is the proxy's side of its Redis servers: the shared
// pipelined connections (Conn), the connections pinned to one client for a
// transaction (Dedicated), the subscription connections (Subscriber), the
// one dialer all of them use, and the Registry of
// upstreams that keeps all of it, with each server's health, across
// reloads. It knows no client and no pool: a pool hands each upstream a
// Config (settings, counters, a logger built once for the pool and server,
// and a callback for when the server's health changes), and replies go to
// a ReplySink, which the client's reply slot implements.
//
//	conn.go      shared connections: write queue, one reader, reconnect backoff
//	dedicated.go connections pinned to one client at a time, idle ones kept
//	private.go   connections of one client, with its own setup commands,
//	             whose pushes go to a PushSink (CLIENT TRACKING)
//	dialer.go    the one dialer: connect (TCP or unix), AUTH or HELLO 3, SELECT
//	tls.go       the dialer's TLS: files read again when they change, the name
//	             a server's certificate must hold
//	subscriber.go
//	             a subscription connection: SUBSCRIBE and UNSUBSCRIBE
//	             confirmed in order, messages handed to a MessageSink
//	registry.go  upstreams by Key; health and ejection; where each is dialled
//
// A shared connection carries the requests of every client of the pools
// that use its server. A client hands it a whole batch in one Submit: the
// request bytes and one ReplySink per request. Whoever finds no write in
// progress writes everything queued so far, so under load many clients'
// requests leave in one syscall. One reader goroutine per connection scans
// replies (resp.ReplyScanner) and matches them to the queue of sinks in
// the order the requests were queued, which is the order they were written
// and the order Redis answers; a reply with no request left to match ends
// the connection. Nothing on this path allocates, starts a goroutine or
// sends on a channel per request, and nothing in it blocks on a client:
// a sink must return without waiting (the client's slot copies the reply,
// or writes it to the client's socket without blocking), because the
// reader serves every client of the connection. When a connection fails
// or times out, every request queued on it gets an error naming the
// server and the cause, the failure counts towards ejection before the
// errors are delivered (so a client's next request sees the rebuilt
// ring), and the next request dials again, after a backoff once a dial
// has failed.
//
// Connections speak the protocol of the clients they carry: every shared
// connection (RESP2) has a RESP3 twin, dialled at its first request with
// HELLO 3 (AUTH inside it) and closed with it, and dedicated connections
// are kept per protocol, so replies are forwarded as the server wrote them.
// A RESP3 handshake that the server refuses as an unknown command or with
// NOPROTO marks the upstream as not speaking RESP3 (SpeaksRESP3,
// ProbeRESP3) and counts as no failure. A push message (RESP3's >) on a
// shared connection answers no request: the reader hands it to the
// upstream's PushHandler, or drops and counts it when none is set.
//
// What outlives a config is the Registry's: one Upstream per Key (pool,
// network, address, pod Service, redis_auth, redis_db, TLS, and which of the
// pool's servers at that address), because those are what make a
// connection reusable: an address reached with another password or
// database is another connection. An Upstream holds its shared and
// dedicated connections, pinned ones tracked, its failure count, its
// ejection and the timer that ends it, where it is dialled now and its
// counters. A pool built by a reload takes its servers' upstreams from the
// Registry, so a server the reload keeps keeps its connections (no new
// dial, no lost pipeline) and its health (a failing server does not get a
// fresh failure count, an ejected one stays out until its time is up, and
// comes back in the ring of whichever pool serves then). An upstream that
// no pool uses any more is retired, and its connections close once idle;
// Close, at Shutdown, closes all of them, pinned ones included, so no
// client waits on a server that stopped answering.
//
// The package imports resp and stats of the proxy's packages, and the
// internal raw socket code it shares with the client side; it imports
// neither proxy nor placement.
package backend
