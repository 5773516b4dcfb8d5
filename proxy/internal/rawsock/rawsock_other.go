//go:build !unix

package rawsock

import (
	"net"
	"syscall"
)

// canRawSyscall is false where sockets are used through net.Conn only.
const canRawSyscall = false

func rawRead(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

// PeerCheck cannot peek at a socket here; a closed connection is found
// when its request fails.
type PeerCheck struct{}

// NewPeerCheck returns a check that never finds a closed connection.
func NewPeerCheck(net.Conn) *PeerCheck { return &PeerCheck{} }

// PeerClosed reports false: the peek is not available here.
func (*PeerCheck) PeerClosed() bool { return false }
