//go:build !linux

package rawsock

// Lot parks nothing where the platform has no epoll.
type Lot struct{}

// NewLot returns a Lot whose Park always fails.
func NewLot() (*Lot, error) { return &Lot{}, nil }

// Park reports ErrUnsupported.
func (*Lot) Park(int, Waker) error { return ErrUnsupported }

// Unpark reports false: nothing is ever parked.
func (*Lot) Unpark(int, Waker) bool { return false }

// Len returns 0.
func (*Lot) Len() int { return 0 }

// Close does nothing.
func (*Lot) Close() {}
