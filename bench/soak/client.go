package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// reply is one RESP2 reply as the soak reads it: a status, an error, an
// integer or a bulk string (nil when null). Arrays are not needed.
type reply struct {
	kind byte // '+', '-', ':', '$'
	str  []byte
	null bool
}

// errReply is a Redis error reply; the connection stays usable.
type errReply struct{ msg string }

func (e *errReply) Error() string { return e.msg }

// conn is a minimal RESP2 connection that writes commands and reads their
// replies in order, so a caller can pipeline.
type conn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

// dial connects to addr from local (nil for any) within timeout.
func dial(addr string, local *net.TCPAddr, timeout time.Duration, bufSize int) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	if local != nil {
		d.LocalAddr = local
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, bufSize), w: bufio.NewWriterSize(nc, bufSize)}, nil
}

func (c *conn) close() error { return c.nc.Close() }

// send buffers one command; flush writes it.
func (c *conn) send(args ...string) {
	c.w.WriteByte('*')
	c.w.WriteString(strconv.Itoa(len(args)))
	c.w.WriteString("\r\n")
	for _, a := range args {
		c.w.WriteByte('$')
		c.w.WriteString(strconv.Itoa(len(a)))
		c.w.WriteString("\r\n")
		c.w.WriteString(a)
		c.w.WriteString("\r\n")
	}
}

func (c *conn) flush() error { return c.w.Flush() }

// read reads one reply. An error reply comes back as *errReply.
func (c *conn) read() (reply, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return reply{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return reply{}, fmt.Errorf("bad reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', ':':
		return reply{kind: line[0], str: append([]byte(nil), body...)}, nil
	case '-':
		return reply{kind: '-', str: append([]byte(nil), body...)}, &errReply{msg: string(body)}
	case '$':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return reply{}, fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return reply{kind: '$', null: true}, nil
		}
		buf := make([]byte, n+2)
		if _, err := readFull(c.r, buf); err != nil {
			return reply{}, err
		}
		return reply{kind: '$', str: buf[:n]}, nil
	}
	return reply{}, fmt.Errorf("unexpected reply type %q", line[0])
}

func readFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// do sends one command and reads its reply within timeout.
func (c *conn) do(timeout time.Duration, args ...string) (reply, error) {
	c.nc.SetDeadline(time.Now().Add(timeout))
	c.send(args...)
	if err := c.flush(); err != nil {
		return reply{}, err
	}
	return c.read()
}

// isReplyError reports whether err is a Redis error reply rather than an
// I/O or protocol failure.
func isReplyError(err error) bool {
	var e *errReply
	return errors.As(err, &e)
}
