//go:build unix

package rawsock

import (
	"net"
	"syscall"
	"unsafe"
)

const canRawSyscall = true

func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}

// PeerCheck tells, without waiting, whether the peer of an idle
// connection has closed it or sent something unasked: either way the
// connection cannot carry a request. It is made once per connection, so
// that a check allocates nothing. The net package keeps sockets
// non-blocking, so the peek returns at once.
type PeerCheck struct {
	rc     syscall.RawConn // nil when the connection has no descriptor
	err    error           // why rc is missing, if it is
	buf    [1]byte
	closed bool
	peekFn func(fd uintptr) bool // peek, made once
}

// NewPeerCheck returns the check of conn.
func NewPeerCheck(conn net.Conn) *PeerCheck {
	pc := &PeerCheck{}
	if sc, ok := conn.(syscall.Conn); ok {
		pc.rc, pc.err = sc.SyscallConn()
	}
	pc.peekFn = pc.peek
	return pc
}

// PeerClosed reports whether the peer closed the connection, or sent
// something unasked.
func (pc *PeerCheck) PeerClosed() bool {
	if pc.err != nil {
		return true
	}
	if pc.rc == nil {
		return false
	}
	pc.closed = false
	err := pc.rc.Read(pc.peekFn)
	return pc.closed || err != nil
}

func (pc *PeerCheck) peek(fd uintptr) bool {
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&pc.buf[0])), 1, syscall.MSG_PEEK, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN: // nothing to read: open
		default: // data, the end of the stream, or an error
			pc.closed = true
		}
		return true
	}
}
