//go:build !unix

package proxy

import (
	"net"
	"syscall"
)

// canRawSyscall is false where sockets are used through net.Conn only.
const canRawSyscall = false

func rawRead(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

// peerCheck cannot peek at a socket here; a closed connection is found
// when its request fails.
type peerCheck struct{}

func newPeerCheck(net.Conn) *peerCheck { return &peerCheck{} }

func (*peerCheck) peerClosed() bool { return false }
