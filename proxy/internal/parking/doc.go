// Package parking holds idle client sockets without a goroutine each.
//
// A goroutine blocked on a read costs its stack, which a request's deep
// call chain has grown to several kilobytes and which the runtime shrinks
// only by halves; a proxy holding tens of thousands of idle connections
// spends most of its memory there. A socket that has been idle for a while
// is instead parked: its descriptor is registered, one-shot, in an epoll
// set of the package's own, and its goroutine ends. When the socket becomes
// readable (or hangs up, or fails) the Lot calls the wake function it was
// parked with, which starts a goroutine to serve it again.
//
// The socket stays registered with the Go runtime's poller as well; the two
// do not interfere, since nothing waits on the runtime's side while the
// socket is parked. Wake functions may be called spuriously (a descriptor
// number closed and reused while an event for it was on its way), so a
// woken socket must tolerate finding nothing to read.
//
// Parking is available on Linux; elsewhere Park reports ErrUnsupported and
// sockets are served by a goroutine for their whole life.
package parking
