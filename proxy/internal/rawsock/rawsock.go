package rawsock

import (
	"io"
	"net"
	"syscall"
)

// Socket reads and writes a socket with raw, non-blocking syscalls and
// waits for readiness through the runtime's poller, as net.Conn does. The
// difference is that a raw syscall does not tell the scheduler it might
// block. A socket in non-blocking mode never does, and telling it is what
// wakes the runtime's monitor thread each time the proxy turns from idle to
// busy: thousands of times a second under a request-reply load, each a
// futex call and a context switch. Deadlines set on the connection apply.
//
// Where the connection has no descriptor to use this way, reads and writes
// go through the net.Conn, and TryWrite is not available (Raw reports it).
//
// One goroutine may read while another writes; writes come from one
// goroutine at a time (the client's ordering of replies sees to that).
type Socket struct {
	conn    net.Conn
	rc      syscall.RawConn // nil: use conn
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
	r, w    rawCall
}

// rawCall is the state of a read or a write in progress.
type rawCall struct {
	p    []byte
	n    int
	err  error
	wait bool // for a write: wait while the socket is full
}

// finish returns the call's outcome; err is the RawConn's own.
func (c *rawCall) finish(err error) (int, error) {
	if err == nil {
		err = c.err
	}
	n := c.n
	*c = rawCall{}
	return n, err
}

// New returns the Socket of conn, raw when conn has a descriptor and the
// platform allows raw syscalls.
func New(conn net.Conn) *Socket {
	s := &Socket{conn: conn}
	if sc, ok := conn.(syscall.Conn); ok && canRawSyscall {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
			s.readFn, s.writeFn = s.readOnce, s.writeSome // bound once: calls do not allocate
		}
	}
	return s
}

// Raw reports whether the socket is used through raw syscalls, which
// TryWrite needs.
func (s *Socket) Raw() bool { return s.rc != nil }

// Read reads what is there, waiting until something is; io.EOF at the end.
func (s *Socket) Read(p []byte) (int, error) {
	if s.rc == nil {
		return s.conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.r = rawCall{p: p}
	return s.r.finish(s.rc.Read(s.readFn))
}

func (s *Socket) readOnce(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, s.r.p)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return false // wait until readable
		case errno != 0:
			s.r.err = errno
		case n == 0:
			s.r.err = io.EOF
		default:
			s.r.n = n
		}
		return true
	}
}

// Write writes all of p, waiting while the socket is full.
func (s *Socket) Write(p []byte) (int, error) {
	if s.rc == nil {
		return s.conn.Write(p)
	}
	s.w = rawCall{p: p, wait: true}
	return s.w.finish(s.rc.Write(s.writeFn))
}

// TryWrite writes what the socket takes at once and never waits; only for
// a raw socket.
func (s *Socket) TryWrite(p []byte) (int, error) {
	s.w = rawCall{p: p}
	return s.w.finish(s.rc.Write(s.writeFn))
}

func (s *Socket) writeSome(fd uintptr) bool {
	for s.w.n < len(s.w.p) {
		n, errno := rawWrite(fd, s.w.p[s.w.n:])
		switch errno {
		case 0:
			s.w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return !s.w.wait // false: wait until writable
		default:
			s.w.err = errno
			return true
		}
	}
	return true
}

// Fd returns the descriptor of conn when New would use it raw, else -1.
// It is only a number: the caller must not use it once conn may be closed.
func Fd(conn net.Conn) int {
	fd := -1
	if sc, ok := conn.(syscall.Conn); ok && canRawSyscall {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(f uintptr) { fd = int(f) })
		}
	}
	return fd
}
