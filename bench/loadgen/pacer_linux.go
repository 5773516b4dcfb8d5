package main

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// timerfdPacer sleeps on a Linux timerfd that the Go runtime polls like a
// socket: the kernel wakes epoll_wait when the timer expires, to the
// microsecond rather than the millisecond of a Go timer on an idle process,
// and that lateness is in every --rate latency.
type timerfdPacer struct {
	file *os.File
	conn syscallConn
	spec itimerspec
	buf  [8]byte // the expiration count a read returns

	// arm and expired are the method values given to conn, made once so that
	// sleep does not allocate.
	arm     func(fd uintptr)
	expired func(fd uintptr) bool
	err     error
}

// syscallConn is the part of syscall.RawConn the pacer uses.
type syscallConn interface {
	Control(f func(fd uintptr)) error
	Read(f func(fd uintptr) (done bool)) error
}

// itimerspec is struct itimerspec of timerfd_settime(2).
type itimerspec struct {
	interval syscall.Timespec
	value    syscall.Timespec
}

const clockMonotonic = 1 // CLOCK_MONOTONIC

// newPacer returns a timerfdPacer, or a timerPacer if the kernel refuses a
// timerfd.
func newPacer() pacer {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic,
		syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return newTimerPacer()
	}
	// A non-blocking descriptor given to os.NewFile is polled by the runtime.
	file := os.NewFile(fd, "timerfd")
	conn, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return newTimerPacer()
	}
	p := &timerfdPacer{file: file, conn: conn}
	p.arm = p.armFd
	p.expired = p.readFd
	return p
}

func (p *timerfdPacer) armFd(fd uintptr) {
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0,
		uintptr(unsafe.Pointer(&p.spec)), 0, 0, 0); errno != 0 {
		p.err = errno
	}
}

// readFd reads the expiration count; it returns false, to wait for the
// descriptor to be readable, while the timer has not expired.
func (p *timerfdPacer) readFd(fd uintptr) bool {
	_, err := syscall.Read(int(fd), p.buf[:])
	return !errors.Is(err, syscall.EAGAIN)
}

func (p *timerfdPacer) sleep(d time.Duration) bool {
	p.spec.value = syscall.NsecToTimespec(max(int64(d), 1)) // zero would disarm it
	p.err = nil
	if err := p.conn.Control(p.arm); err != nil || p.err != nil {
		return false // closed by halt
	}
	return p.conn.Read(p.expired) == nil
}

// halt closes the timerfd, which wakes a sleep in Read with an error.
func (p *timerfdPacer) halt() {
	p.file.Close()
}
