//go:build !unix

package proxy

import "syscall"

// canRawSyscall is false where sockets are used through net.Conn only.
const canRawSyscall = false

func rawRead(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.EINVAL }
func rawWrite(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }
