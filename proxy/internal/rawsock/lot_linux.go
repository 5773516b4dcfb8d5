package rawsock

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
)

// Lot is a set of parked sockets and the goroutine that waits on them.
type Lot struct {
	epfd   int
	mu     sync.Mutex
	parked map[int32]Waker // by descriptor
	n      atomic.Int64
	// stop is the pipe that Close writes to end wakeReady: closing the
	// epoll descriptor alone does not wake a thread waiting on it.
	stop [2]int
}

// stopMark is the descriptor reported for stop's read end, which no
// socket can have.
const stopMark = -1

// NewLot starts a Lot. Most callers want DefaultLot.
func NewLot() (*Lot, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("parking: epoll_create1: %w", err)
	}
	l := &Lot{epfd: epfd, parked: make(map[int32]Waker)}
	if err := syscall.Pipe2(l.stop[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("parking: pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: stopMark}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.stop[0], &ev); err != nil {
		l.closeFds()
		return nil, fmt.Errorf("parking: epoll_ctl add: %w", err)
	}
	go l.wakeReady()
	return l, nil
}

// Park registers fd and calls w.Wake, once, when fd is readable, hung up
// or failed, unless Unpark takes it back first. The caller must not use fd
// again until Wake runs or Unpark returns true, and must not close it
// before either.
func (l *Lot) Park(fd int, w Waker) error {
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(fd),
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("parking: epoll_ctl add %d: %w", fd, err)
	}
	l.parked[int32(fd)] = w
	l.n.Add(1)
	return nil
}

// Unpark takes fd back if w parked it and it is still parked, and reports
// whether it did; when it returns true, w.Wake will not be called and the
// caller owns fd again. Naming w as well as fd keeps a late Unpark from
// taking a descriptor number that was closed and parked again by another.
func (l *Lot) Unpark(fd int, w Waker) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.parked[int32(fd)] != w {
		return false
	}
	return l.removeLocked(int32(fd)) != nil
}

// Len returns the number of sockets parked now.
func (l *Lot) Len() int { return int(l.n.Load()) }

func (l *Lot) removeLocked(fd int32) Waker {
	w, ok := l.parked[fd]
	if !ok {
		return nil
	}
	delete(l.parked, fd)
	l.n.Add(-1)
	// A descriptor that is still open leaves the set; the error for one
	// closed under us does not matter, closing removed it already.
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	return w
}

// wakeReady waits for parked sockets to become ready and wakes them.
func (l *Lot) wakeReady() {
	var events [128]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(l.epfd, events[:], -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// Only a bad descriptor or buffer fails epoll_wait: neither
			// can happen while the Lot is open.
			panic(fmt.Sprintf("parking: epoll_wait: %v", err))
		}
		for i := range n {
			if events[i].Fd == stopMark {
				l.closeFds()
				return
			}
			l.mu.Lock()
			w := l.removeLocked(events[i].Fd)
			l.mu.Unlock()
			if w != nil {
				w.Wake()
			}
		}
	}
}

// Close wakes every socket still parked and stops the Lot; Park must not
// be called after it.
func (l *Lot) Close() {
	l.mu.Lock()
	var wakes []Waker
	for fd := range l.parked {
		wakes = append(wakes, l.removeLocked(fd))
	}
	l.mu.Unlock()
	for _, w := range wakes {
		w.Wake()
	}
	syscall.Write(l.stop[1], []byte{0})
}

func (l *Lot) closeFds() {
	syscall.Close(l.stop[0])
	syscall.Close(l.stop[1])
	syscall.Close(l.epfd)
}
