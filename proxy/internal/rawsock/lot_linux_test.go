package rawsock

import (
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection and the
// descriptor of the first.
func parkedPair(t *testing.T) (a, b net.Conn, fd int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	rc, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(f uintptr) { fd = int(f) })
	return a, b, fd
}

func newLot(t *testing.T) *Lot {
	t.Helper()
	l, err := NewLot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// wakeFunc is a Waker that runs a function.
type wakeFunc struct{ f func() }

func (w *wakeFunc) Wake() { w.f() }

func wakes(f func()) *wakeFunc { return &wakeFunc{f} }

func waitWake(t *testing.T, woken <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatalf("not woken by %s", what)
	}
}

func TestParkWakesWhenReadable(t *testing.T) {
	l := newLot(t)
	a, b, fd := parkedPair(t)
	woken := make(chan struct{}, 2)
	w := wakes(func() { woken <- struct{}{} })
	if err := l.Park(fd, w); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 1 {
		t.Fatalf("Len = %d, want 1", l.Len())
	}
	b.Write([]byte("PING\r\n"))
	waitWake(t, woken, "data")
	if l.Len() != 0 {
		t.Fatalf("Len = %d after the wake, want 0", l.Len())
	}
	if l.Unpark(fd, w) {
		t.Fatal("Unpark took back a socket already woken")
	}
	// The socket is served as before: the runtime's poller still has it.
	buf := make([]byte, 16)
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := a.Read(buf); err != nil || string(buf[:n]) != "PING\r\n" {
		t.Fatalf("read after the wake: %q, %v", buf[:n], err)
	}
	// Parked again, it wakes again: one-shot per Park, not per socket.
	if err := l.Park(fd, wakes(func() { woken <- struct{}{} })); err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("PING\r\n"))
	waitWake(t, woken, "data after parking again")
}

// A socket that has data before it is parked is woken at once: readiness
// is level-triggered, so nothing that arrived while its goroutine was
// giving up is missed.
func TestParkWithDataWaiting(t *testing.T) {
	l := newLot(t)
	_, b, fd := parkedPair(t)
	b.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond) // let the byte arrive; the wake is what is tested
	woken := make(chan struct{}, 1)
	if err := l.Park(fd, wakes(func() { woken <- struct{}{} })); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woken, "data already there")
}

func TestParkWakesOnHangUp(t *testing.T) {
	l := newLot(t)
	_, b, fd := parkedPair(t)
	woken := make(chan struct{}, 1)
	if err := l.Park(fd, wakes(func() { woken <- struct{}{} })); err != nil {
		t.Fatal(err)
	}
	b.Close()
	waitWake(t, woken, "the peer closing")
}

func TestUnpark(t *testing.T) {
	l := newLot(t)
	_, b, fd := parkedPair(t)
	woken := make(chan struct{}, 1)
	w := wakes(func() { woken <- struct{}{} })
	if err := l.Park(fd, w); err != nil {
		t.Fatal(err)
	}
	if l.Unpark(fd, wakes(func() {})) {
		t.Fatal("Unpark took back a socket another Waker parked")
	}
	if !l.Unpark(fd, w) {
		t.Fatal("Unpark did not find the parked socket")
	}
	if l.Unpark(fd, w) {
		t.Fatal("Unpark took back the same socket twice")
	}
	b.Write([]byte("x"))
	select {
	case <-woken:
		t.Fatal("a socket taken back was woken")
	case <-time.After(100 * time.Millisecond):
	}
}

func TestParkRefusesBadDescriptor(t *testing.T) {
	l := newLot(t)
	if err := l.Park(-5, wakes(func() {})); err == nil {
		t.Fatal("Park accepted a bad descriptor")
	}
	if l.Len() != 0 {
		t.Fatalf("Len = %d after a refused Park", l.Len())
	}
}

func TestCloseWakesParked(t *testing.T) {
	l, err := NewLot()
	if err != nil {
		t.Fatal(err)
	}
	_, _, fd := parkedPair(t)
	woken := make(chan struct{}, 1)
	if err := l.Park(fd, wakes(func() { woken <- struct{}{} })); err != nil {
		t.Fatal(err)
	}
	l.Close()
	waitWake(t, woken, "Close")
}
