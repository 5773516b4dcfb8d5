//go:build unix

package rawsock

import (
	"bytes"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// A read takes what is there and no more: a small buffer gets the bytes in
// parts, each at once, and the last part is the short one.
func TestReadPartial(t *testing.T) {
	a, b := tcpPair(t)
	sb := New(b)
	if _, err := a.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 4)
	for total := 0; total < 10; {
		n, err := sb.Read(buf)
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", total, err)
		}
		got = append(got, string(buf[:n]))
		total += n
	}
	// The bytes may arrive in more than one segment; what matters is that
	// no read returned more than the buffer or lost a byte.
	if s := bytes.Join(bytesOf(got), nil); string(s) != "0123456789" {
		t.Fatalf("reads %q, want the bytes written in order", got)
	}
	for _, p := range got {
		if len(p) > 4 {
			t.Fatalf("a read returned %d bytes into a 4-byte buffer", len(p))
		}
	}
	// An empty buffer reads nothing and does not wait.
	if n, err := sb.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

func bytesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// A read of a socket with nothing in it gets EAGAIN from the kernel and
// waits in the runtime's poller until the peer writes, without blocking a
// thread: other goroutines keep running meanwhile.
func TestReadWaitsAfterEAGAIN(t *testing.T) {
	a, b := tcpPair(t)
	sb := New(b)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 16)
		n, err := sb.Read(buf)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		t.Fatalf("Read of an empty socket returned %q before the peer wrote", s)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := a.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "late" {
			t.Fatalf("Read = %q, want late", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after the peer wrote")
	}
}

// A Write to a peer that stops reading waits while the socket is full, and
// a write deadline ends it with a timeout and the count of what went out.
func TestWriteDeadline(t *testing.T) {
	a, _ := tcpPair(t)
	sa := New(a)
	big := bytes.Repeat([]byte("x"), 64<<20)
	a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := sa.Write(big)
	if !isTimeout(err) {
		t.Fatalf("Write of 64 MiB to a peer that does not read = %d, %v; want a timeout", n, err)
	}
	if n == 0 || n >= len(big) {
		t.Fatalf("Write past its deadline reported %d bytes written, want part of %d", n, len(big))
	}
	// TryWrite never waits: on the same full socket it takes at most a
	// part, with no error, and returns at once.
	a.SetWriteDeadline(time.Time{})
	if n, err := sa.TryWrite(big); n >= len(big) || err != nil {
		t.Fatalf("TryWrite to a full socket = %d, %v; want part of %d, nil", n, err, len(big))
	}
}

// A peer that resets the connection (closes it with unread data, or with
// SO_LINGER 0) makes a read fail with ECONNRESET, not io.EOF, and a write
// fail rather than hang.
func TestPeerReset(t *testing.T) {
	a, b := tcpPair(t)
	sb := New(b)
	if err := a.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	a.Close() // with linger 0: an RST instead of a FIN
	buf := make([]byte, 16)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sb.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after the peer's reset: %v, want ECONNRESET", err)
	}
	b.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var err error
	for i := 0; i < 3 && err == nil; i++ { // the first write after a reset may still be taken
		_, err = sb.Write([]byte("x"))
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("Write after the peer's reset: %v, want an error", err)
	}
}

// PeerClosed tells an open idle connection from one whose peer closed it,
// reset it or sent something unasked, without waiting and without taking
// the byte it peeked at.
func TestPeerCheck(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		a, _ := tcpPair(t)
		if NewPeerCheck(a).PeerClosed() {
			t.Fatal("an open idle connection reported closed")
		}
	})
	t.Run("closed", func(t *testing.T) {
		a, b := tcpPair(t)
		b.Close()
		waitPeer(t, a, true)
	})
	t.Run("reset", func(t *testing.T) {
		a, b := tcpPair(t)
		b.(*net.TCPConn).SetLinger(0)
		b.Close()
		waitPeer(t, a, true)
	})
	t.Run("sent unasked", func(t *testing.T) {
		a, b := tcpPair(t)
		b.Write([]byte("+OK\r\n"))
		waitPeer(t, a, true)
		buf := make([]byte, 8)
		n, err := New(a).Read(buf)
		if err != nil || string(buf[:n]) != "+OK\r\n" {
			t.Fatalf("Read after the peek = %q, %v; want the bytes still there", buf[:n], err)
		}
	})
	t.Run("no descriptor", func(t *testing.T) {
		p, q := net.Pipe()
		defer p.Close()
		defer q.Close()
		if NewPeerCheck(p).PeerClosed() {
			t.Fatal("a connection without a descriptor reported closed")
		}
	})
}

// waitPeer waits until PeerClosed of conn is want: a close or a reset
// takes a moment to arrive over loopback.
func waitPeer(t *testing.T, conn net.Conn, want bool) {
	t.Helper()
	pc := NewPeerCheck(conn)
	deadline := time.Now().Add(5 * time.Second)
	for pc.PeerClosed() != want {
		if time.Now().After(deadline) {
			t.Fatalf("PeerClosed did not become %v", want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkReadEAGAIN is the cost of the read that finds nothing: the one a
// goroutine per connection makes after each request before it waits in the
// poller (bench/RESULTS.md weighs it against an event loop's reads).
func BenchmarkReadEAGAIN(b *testing.B) {
	_, conn := tcpPair(b)
	fd := uintptr(Fd(conn))
	buf := make([]byte, 16<<10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, errno := rawRead(fd, buf); errno != syscall.EAGAIN {
			b.Fatalf("read of an empty socket: %v, want EAGAIN", errno)
		}
	}
}
