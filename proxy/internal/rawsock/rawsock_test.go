package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestRawSocket(t *testing.T) {
	a, b := tcpPair(t)
	sa, sb := New(a), New(b)
	if !sa.Raw() || !sb.Raw() {
		t.Fatal("a TCP connection is not used through raw syscalls")
	}

	// TryWrite stops when the socket is full and says how much it took.
	big := bytes.Repeat([]byte("x"), 64<<20)
	n, err := sa.TryWrite(big)
	if err != nil || n == 0 || n >= len(big) {
		t.Fatalf("TryWrite of 64 MiB to a reader that does not read = %d, %v; want part of it", n, err)
	}

	// Write waits for room and writes everything.
	want := append(big[:n:n], []byte("the rest")...)
	done := make(chan error, 1)
	go func() {
		_, err := sa.Write([]byte("the rest"))
		done <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 1<<20)
	for len(got) < len(want) {
		k, err := sb.Read(buf)
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:k]...)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from bytes written")
	}

	// A read deadline ends a Read with a timeout.
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := sb.Read(buf); !isTimeout(err) {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	b.SetReadDeadline(time.Time{})

	// The peer's close is io.EOF; a closed socket is an error, not a hang.
	a.Close()
	if _, err := sb.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
	}
	b.Close()
	if _, err := sb.Write([]byte("x")); err == nil {
		t.Fatal("Write on a closed socket succeeded")
	}
}

// A connection without a descriptor is read and written through net.Conn.
func TestRawSocketFallsBackToConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sa, sb := New(a), New(b)
	if sa.Raw() {
		t.Fatal("net.Pipe reported as a raw socket")
	}
	go sa.Write([]byte("hello"))
	buf := make([]byte, 16)
	n, err := sb.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
}

func TestFd(t *testing.T) {
	a, _ := tcpPair(t)
	if fd := Fd(a); fd < 0 {
		t.Fatalf("Fd of a TCP connection = %d", fd)
	}
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if fd := Fd(p); fd != -1 {
		t.Fatalf("Fd of a net.Pipe end = %d, want -1", fd)
	}
}
