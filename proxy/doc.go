// Package proxy serves nutcracker's Redis pools: given a config.Config (a
// parsed nutcracker.yml), it listens on every pool's address, routes each
// request to the server that its placement says owns its key, and counts
// what nutcracker's stats report. It serves no HTTP: the stats port
// (package statsport) renders the Server's Snapshot.
//
// A request travels top to bottom through these files:
//
//	server.go    listeners, accept, Reload, Shutdown
//	limits.go    the client limit over all pools, from the open file
//	             limit as nutcracker computes it, or Options.MaxClients
//	client.go    read a batch of complete commands, reply in order
//	route.go     look the command up; answer, refuse, or pick the server
//	             by the keys (and by SORT's patterns; keyless EVAL goes to
//	             the placeholder's server)
//	acl.go       who the client is (AUTH, HELLO AUTH, the pool's users
//	             after a reload), the check of every command against its
//	             user's permissions, and ACL WHOAMI, CAT, LIST, USERS, DRYRUN
//	authlimit.go failed AUTHs limited per client address
//	fragment.go  split MGET/DEL/UNLINK/EXISTS/TOUCH/MSET per server, merge
//	fanout.go    SCRIPT, FUNCTION, DBSIZE, KEYS, FLUSHDB, FLUSHALL,
//	             RANDOMKEY to every server, merge
//	scan.go      SCAN one server after the other, the cursor saying which
//	local.go     PING, ECHO, QUIT, SELECT, AUTH, HELLO, CLIENT, INFO (its
//	             Keyspace section from every server, summed)
//	cluster_local.go
//	             CLUSTER SLOTS, SHARDS, NODES, INFO, MYID, KEYSLOT: the pool
//	             as a Redis Cluster of one node, itself, for cluster clients
//	proto.go     RESP2 or RESP3: replies in the client's protocol, the
//	             switch, and whether the pool's servers speak RESP3
//	tx.go        MULTI/EXEC/WATCH on a connection pinned to one server
//	blocking.go  BLPOP, XREAD BLOCK, ... on a connection of their own while
//	             they block, the client's socket watched meanwhile
//	wait.go      WAIT on every server at once, each on a connection of its
//	             own, after a PUBLISH that covers the client's writes
//	pubsub.go    PUBLISH routed by channel; SUBSCRIBE and PSUBSCRIBE counted
//	             by a hub per upstream on one shared subscription
//	             connection, messages queued per client within
//	             client_output_buffer_limit_pubsub
//	tracking.go  CLIENT TRACKING: a tracking client's commands on server
//	             connections of its own, opened with its tracking options,
//	             whose invalidations go to it alone
//	errors.go    the error replies the proxy writes itself, in Redis'
//	             wording where Redis has one
//	direct.go    a lone request's reply written by the server's reader
//	idle.go      idle clients parked without a goroutine or buffers
//	             (a rawsock.Lot), client_timeout, memory handed back
//	             to the OS after a burst
//	tls.go       TLS listeners: the handshake on the client's goroutine;
//	             the server TLS settings a pool hands its upstreams, and
//	             discovery's watchers (ServerTLS)
//	output.go    backpressure and client_output_buffer_limit
//	pool.go      servers, ring, ejection; the layout (placement and
//	             servers) clients load once per batch
//	cluster.go   a redis_cluster pool: its masters and slots from discovery's
//	             map, MOVED and ASK followed to the node they name
//	cluster_kube.go
//	             nodes dialled elsewhere than the cluster announces them
//	             (a pod's hostname or old IP): redirects and the stats port
//	cluster_pinned.go
//	             MOVED and ASK for blocking commands and transactions, on
//	             connections of their own: sent again, or replayed, there
//	cluster_replicas.go
//	             read_from in a redis_cluster pool: the masters' replicas
//	             on READONLY connections, polled with ROLE
//	cluster_tryagain.go
//	             TRYAGAIN: the command sent again, whole, with a backoff,
//	             and the client's later requests to that node held behind it
//	address.go   where a server is dialled: configured, or its pod's IP
//	stats.go     Snapshot: every counter (package stats) and readiness,
//	             for the stats port (package statsport)
//	cluster_stats.go
//	             a redis_cluster pool's stats: MOVED, ASK and TRYAGAIN per
//	             node, node IDs, and what discovery did of its slot map
//	discoverystate.go
//	             what discovery reports and the config's hash, for readiness
//	             and the stats port
//
// and the packages beneath it, which import nothing of proxy:
//
//	config       nutcracker.yml, parsed as nutcracker 0.5.0 does
//	resp         the wire format: parse requests (bounded, resumable), find
//	             where RESP2 and RESP3 replies end, encode requests and
//	             replies
//	command      the command table: what redis-server says of each command
//	             (generated from its COMMAND INFO), how the proxy handles
//	             it, and where its keys are (Redis' key specs and key finders)
//	placement    which server owns a key: the Placement interface and the
//	             nutcracker ring over hashring, immutable values
//	backend      server connections, shared (write queue, one reply reader),
//	             dedicated (pinned to one client), both per protocol, and
//	             for subscriptions (one per upstream, delivering to a sink);
//	             the one dialer (connect, TLS, AUTH or HELLO 3, SELECT); the
//	             registry of upstreams with their health, ejection and
//	             counters, which outlives a config
//	internal/rawsock
//	             the I/O layer: socket reads and writes as raw non-blocking
//	             syscalls, for the client connections and the server
//	             connections alike, the peek at an idle connection, and the
//	             epoll set idle clients park in
//	internal/tlsfiles
//	             TLS certificates, keys and CA files, read again when they
//	             change on disk
//	internal/boundedfile
//	             the bounded read of a file an operator names (config,
//	             passwords, users, certificates): regular, size-limited
//	stats        counters, latency histograms, snapshots and the field table
//	             of the stats JSON, /metrics and -D
//	statsport    the stats port, rendering a Snapshot (cmd serves it)
//
// Reload builds the new pools (and any new listener) before it swaps
// anything; each client picks up its listener's current pool at the start
// of its next batch, so a batch in flight finishes on the servers it
// started with. What outlives a config lives in the Server's registry of
// upstreams (package backend), one per server connection target (pool,
// network, address, redis_auth, redis_db): shared and dedicated
// connections, pinned ones
// tracked, the failure count, the ejection and the timer that ends it, and
// the counters. A new pool takes its servers' upstreams from the registry,
// so a server that a reload or a Kubernetes membership change keeps keeps
// its connections and health, and an ejection ends in the ring of whichever
// pool serves then. Upstreams and connections no pool uses any more close
// once idle; Shutdown closes all of them, pinned ones included, so no
// client is left waiting on a server that stopped answering. A server
// connection knows no client and no pool: its upstream hands it the
// dialer, the address, the pool's settings, counters and a logger, and it
// hands each reply to a backend.ReplySink, which is the client's reply
// slot.
//
// A pool with kubernetes_service dials each pod server at the address
// SetPodAddresses last gave; its ring keeps hashing the configured names,
// so a pod that moves keeps its keys.
//
// The hot path has no goroutine, channel send or lock per request. A client
// parses every complete command in its buffer, stages each server's share
// (the client's raw bytes when no rewrite is needed), hands each share to
// the server connection in one call, waits once for the whole batch and
// writes all replies with one write. A server connection is shared by all
// clients of the pool: whoever finds no write in progress writes everything
// queued, so under load many clients' requests leave in one syscall, and
// one reader goroutine per connection matches replies to requests in order,
// copying each reply as a raw byte range into the waiting slot.
//
// The commonest batch, one request from a client that waits for each reply,
// skips the client's goroutine on the way back: the server connection's
// reader writes the reply straight from its read buffer to the client's
// socket (without blocking; a slow client's remainder is written by a
// goroutine of its own), while the client's goroutine is already reading
// again. A client waits for such a reply before anything else it writes,
// so replies stay in order.
//
// A client that has sent nothing for a second parks: its session (buffers
// and batch state) is dropped, its socket waits in an epoll set of the
// proxy's own and its goroutine ends, until its next bytes start a new one
// (idle.go). So an idle connection costs a small struct and its socket.
//
// A transaction (WATCH, MULTI ... EXEC) runs on a dedicated connection to
// the server of its keys, pinned to the client until it ends; idle ones are
// kept per server and checked before reuse. When the pinned connection
// fails, the transaction ends with it: EXEC or DISCARD answers the error
// and the client leaves MULTI, a command that cannot be queued makes EXEC
// answer EXECABORT, and a lost WATCH makes EXEC answer a null reply, as
// for a touched key, so that nothing runs unwatched.
//
// A client speaks RESP2 until HELLO 3 (proto.go). Its protocol picks its
// server connections: each shared connection has a RESP3 twin, dialled
// with HELLO 3 at its first request, and dedicated connections are kept
// per protocol, so a RESP3 server's replies reach a RESP3 client as they
// are, never converted. What the proxy writes itself, and the frames of
// merged replies, follow the client's protocol. A switch inside a batch
// first sends what the batch staged. A push message on a shared
// connection answers no request: the reader hands it to the upstream's
// push handler, if one is set, and drops it otherwise. A server whose
// HELLO 3 is unknown (Redis 5, HELLO renamed) or refused with NOPROTO is
// marked as not speaking RESP3; a server not yet known is asked at a
// client's HELLO 3, and HELLO 3 in a pool with a marked server gets Redis
// 5's unknown command error, on which clients fall back to RESP2.
//
// Sockets are read and written with raw non-blocking syscalls, waiting for
// readiness in the runtime's poller: an ordinary syscall tells the
// scheduler it may block, and under a request-reply load that wakes the
// runtime's monitor thread thousands of times a second. A TLS connection
// has no descriptor to use this way: it is read and written through
// crypto/tls, and its lone requests get no direct reply. CoreScaler keeps
// GOMAXPROCS at the cores the load keeps busy, because idle Ps cost thread
// wake-ups too.
//
// Limits: a bulk string may be at most resp.MaxBulkLen (512 MB, Redis'
// default proto-max-bulk-len), a request at most resp.MaxArgs arguments, an
// inline request at most resp.MaxInlineLen bytes. Declared lengths are
// checked before anything is allocated; buffers grow only with bytes that
// arrived. A malformed request gets Redis' "-ERR Protocol error: ..." reply
// after the replies to the commands before it, and that connection closes;
// every other client goes on. What a client makes the proxy hold is its batch's
// replies: the client reads no more commands while they are written, its
// batch limit shrinks so that they stay within a reply budget (4 MB, less
// under a small client_output_buffer_limit) and grows back to maxBatch when
// they are small, and client_output_buffer_limit closes a client whose
// unwritten replies reach the hard limit, or stay over the soft one for
// its time, as Redis' client-output-buffer-limit does (output.go).
//
// Publish/subscribe routes a channel like a key: PUBLISH is an ordinary
// request to the channel's server, SUBSCRIBE listens there and PSUBSCRIBE
// on every server of the pool. Subscriptions share one subscription
// connection per upstream (backend.Subscriber, RESP2, knowing no client),
// whose hub counts the proxy's clients per channel, pattern and shard
// channel: the first sends SUBSCRIBE and waits for the server's
// confirmation, the last sends UNSUBSCRIBE, so a server counts the proxy
// once in PUBLISH's reply and PUBSUB NUMSUB. The proxy confirms each
// client's subscriptions itself with the client's own counts, as one
// redis-server does. The hub never waits for a client: it appends each
// message to the client's queue, which the client's writer goroutine
// writes under the lock that the client's replies are written under (a
// subscribed client's replies are never written by a server connection's
// reader), and a batch that subscribes holds that lock until its replies
// are out, so messages follow their confirmation. The queue is bounded by
// client_output_buffer_limit_pubsub. A failed subscription connection
// closes its subscribers; hubs are kept by upstream, so a reload that
// keeps a server keeps its subscriptions, and one that moves a channel
// closes its subscribers. A group's hub follows its master instead: when
// the group confirms a master elsewhere the hub subscribes everything
// there on a new connection and closes the old one, ignoring its messages,
// and when its connection fails it keeps the subscriptions and subscribes
// them again on the next confirmed master, retrying with the group's
// backoff; its clients see neither. The request path of a client that
// never subscribed pays a nil check.
//
// In a pool with sentinels or group_members every server is a group, a
// master with replicas (group.go): with sentinels discovery follows it
// through Sentinel, with group_members through its members' own ROLE
// answers (rolegroups.go), and the proxy treats both alike. Its name keeps
// its place on the ring, and its upstream is
// dialled where discovery (SetGroupMasters) says the master is, once ROLE
// there said master; every new connection to it checks ROLE in its
// handshake too, and until a master is confirmed the group's requests fail
// at once with an error naming it. A reply saying the command did not run
// because the node is no master (-READONLY, -MASTERDOWN, -LOADING,
// -UNBLOCKED) is kept from its slot: the reader hands the slot, which keeps
// the request's bytes, to the group's queue and returns; Options.ResolveGroup
// asks discovery to look again, and once a master is confirmed the queue is
// sent to it in arrival order, with the same client's later reads queued
// behind it, for up to failover_hold, after which each gets the error it
// got. A tracking client's request is sent again with the CLIENT CACHING
// that preceded it. Groups outlive reloads: a reload that keeps one keeps
// its queue, sent through the new pool's server (except a tracking
// client's read, which would not be tracked there and gets an error); one
// that removes it fails the queue with an error naming it. A request whose
// connection failed after it was written is sent again only if its
// command only reads. Dedicated connections (MULTI, blocking commands) are
// never replayed. The request path of a pool
// without sentinels pays a nil check on the slot. A GroupMaster with
// Unavailable set (its pod is not ready or terminating, or discovery names
// no master and says why) unconfirms the group without a ROLE check, so
// its requests fail at once with that reason until discovery names a
// master that may take them.
//
// A pool with read_from prefer_replica or replica sends a group's
// read-only commands to its replicas (replicas.go): each replica discovery
// lists is an upstream of its own, keyed by its address with Replica set,
// whose connections check with ROLE that it is a replica with its master
// link connected. A poller per group asks ROLE of the replicas and of the
// master every 500 ms and publishes the replicas that take reads in an
// atomic pointer, which the request path loads once per read and picks
// from round robin. It polls the groups of every pool, read_from master
// too, for the replicas' link state and lag in the stats; those take no
// reads. A read is staged on the replica's own
// stage of the batch, unless the batch already has a stage for the group's
// master (the client's write comes first), or the client is tracking; MULTI
// and WATCH never get there. A replica's -LOADING or -MASTERDOWN, or a
// failed connection, sends the read on to the master with prefer_replica.
// Split commands (MGET) read from masters. A pool without read_from pays
// one bool test per keyed command and a nil check on the slot. A
// redis_cluster pool reads the same way from the replicas its slot map
// lists under each master (cluster_replicas.go), on upstreams keyed with
// ReadOnly, whose handshake sends READONLY, polled by one poller per pool.
package proxy
