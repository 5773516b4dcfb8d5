package rawsock

import (
	"errors"
	"sync"
)

// ErrUnsupported is Park's error where the platform cannot park sockets.
var ErrUnsupported = errors.New("rawsock: parking sockets is not supported on this platform")

// Waker is what a socket is parked for: Wake is called, on the Lot's
// goroutine, when the socket is ready. It must not block; it is usually a
// go statement. Wakers are compared, so they are pointers.
type Waker interface{ Wake() }

var (
	defaultOnce sync.Once
	defaultLot  *Lot
	defaultErr  error
)

// DefaultLot returns the process's Lot, started at its first use. It is never
// closed: like the runtime's poller it lives as long as the process, and
// one goroutine serves every parked socket of every listener.
func DefaultLot() (*Lot, error) {
	defaultOnce.Do(func() {
		defaultLot, defaultErr = NewLot()
	})
	return defaultLot, defaultErr
}
