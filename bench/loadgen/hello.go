package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// go-redis v9 opens every connection with HELLO, even with Protocol: 2
// (redis/go-redis#2616, no option turns it off), and twemproxy closes a client
// connection on any command it does not know, HELLO included. So the dialer
// wraps each connection in a helloConn that answers that first HELLO itself
// with the error a pre-6.0 redis-server would give. go-redis then stays on
// RESP2 and authenticates with plain AUTH when --password is set, which
// twemproxy understands. Every target, proxy or redis-server, sees the same
// connection start.

// helloReply is what helloConn answers in place of the server. go-redis only
// checks that it is a Redis error, not its text.
var helloReply = []byte("-ERR unknown command 'HELLO' (answered by loadgen, see hello.go)\r\n")

// maxHelloLen bounds what helloLen reads: go-redis' HELLO with AUTH is far
// below it, and nothing longer is a handshake.
const maxHelloLen = 4096

// dialSkippingHello dials like go-redis' default dialer and wraps the
// connection in a helloConn.
func dialSkippingHello(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &helloConn{Conn: c}, nil
	}
}

// helloConn answers a HELLO that starts the first write locally and passes
// everything else through. go-redis writes and then reads a command from one
// goroutine at a time, so the fields need no lock.
type helloConn struct {
	net.Conn
	wrote   bool   // first write seen
	pending []byte // canned reply not yet read
}

func (c *helloConn) Write(b []byte) (int, error) {
	if c.wrote {
		return c.Conn.Write(b)
	}
	c.wrote = true
	n := helloLen(b)
	if n == 0 {
		return c.Conn.Write(b)
	}
	c.pending = helloReply
	if n == len(b) {
		return n, nil
	}
	m, err := c.Conn.Write(b[n:])
	return n + m, err
}

func (c *helloConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// SyscallConn lets go-redis' pool health check peek at the socket of an idle
// connection (it does not unwrap connections). The canned reply has always
// been read by then.
func (c *helloConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("loadgen: connection has no file descriptor")
	}
	return sc.SyscallConn()
}

// helloLen returns the length of the RESP command at the start of b if it is
// a complete HELLO command (an array of bulk strings whose first element is
// HELLO in any case), and 0 otherwise.
func helloLen(b []byte) int {
	if len(b) > maxHelloLen {
		b = b[:maxHelloLen]
	}
	if len(b) == 0 || b[0] != '*' {
		return 0
	}
	n, i, ok := parseLen(b, 1)
	if !ok || n < 1 {
		return 0
	}
	for arg := 0; arg < n; arg++ {
		if i >= len(b) || b[i] != '$' {
			return 0
		}
		size, j, ok := parseLen(b, i+1)
		if !ok || size < 0 || size > len(b)-j-2 {
			return 0
		}
		if arg == 0 && !bytes.EqualFold(b[j:j+size], []byte("hello")) {
			return 0
		}
		if b[j+size] != '\r' || b[j+size+1] != '\n' {
			return 0
		}
		i = j + size + 2
	}
	return i
}

// parseLen reads the decimal number that starts at b[i] and ends with CRLF.
// It returns the number and the index after the CRLF.
func parseLen(b []byte, i int) (n, next int, ok bool) {
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i-start >= 6 { // no handshake field has a 7-digit length
			return 0, 0, false
		}
		n = n*10 + int(b[i]-'0')
		i++
	}
	if i == start || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return 0, 0, false
	}
	return n, i + 2, true
}
