// Package rawsock is the proxy's I/O layer under both of its sides, the
// client connections (package proxy) and the server connections (package
// backend): reading and writing sockets with raw non-blocking syscalls,
// peeking at idle ones, and parking idle client sockets without a
// goroutine. It is internal because it is plumbing, not an API: neither
// side owns the other's sockets, and nothing outside the proxy needs it.
//
// # Reads and writes
//
// A Socket reads and writes through the runtime's poller, as net.Conn
// does, but with raw syscalls, which do not tell the scheduler they might
// block (a non-blocking socket never does). Telling it is what wakes the
// runtime's monitor thread each time the proxy turns from idle to busy.
// Deadlines set on the connection apply. TryWrite writes what the socket
// takes at once and never waits, for a writer that must not block on a
// slow peer. PeerCheck tells, without waiting, whether the peer of an idle
// connection closed it or sent something unasked.
//
// # Parking
//
// A goroutine blocked on a read costs its stack, which a request's deep
// call chain has grown to several kilobytes and which the runtime shrinks
// only by halves; a proxy holding tens of thousands of idle connections
// spends most of its memory there. A socket that has been idle for a while
// is instead parked: its descriptor is registered, one-shot, in an epoll
// set of the package's own, a Lot, and its goroutine ends. When the socket
// becomes readable (or hangs up, or fails) the Lot calls the wake function
// it was parked with, which starts a goroutine to serve it again.
//
// The socket stays registered with the Go runtime's poller as well; the two
// do not interfere, since nothing waits on the runtime's side while the
// socket is parked. Wake functions may be called spuriously (a descriptor
// number closed and reused while an event for it was on its way), so a
// woken socket must tolerate finding nothing to read.
//
// Parking is available on Linux; elsewhere Park reports ErrUnsupported and
// sockets are served by a goroutine for their whole life.
package rawsock
