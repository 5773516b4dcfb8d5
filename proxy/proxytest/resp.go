package proxytest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Limits of ReadReply. A declared length is checked before anything is read,
// and bulk contents are read in chunks, so a lying length costs no memory.
const (
	MaxBulkLen = 512 << 20 // redis-server's default proto-max-bulk-len
	MaxLineLen = 1 << 20   // simple strings, errors, integers and length lines
	MaxDepth   = 1024      // nesting of arrays
)

// DefaultTimeout bounds every Read and Flush of a Conn whose Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Reply is one RESP2 reply, parsed, together with the exact bytes it was
// read from.
type Reply struct {
	Type  byte    // '+' simple string, '-' error, ':' integer, '$' bulk string, '*' array
	Str   []byte  // text of a simple string or error, contents of a bulk string; nil for a nil bulk
	Int   int64   // value of an integer
	Elems []Reply // elements of an array; nil for a nil or empty array
	Nil   bool    // a nil bulk ($-1) or nil array (*-1)
	raw   []byte
}

// Raw returns the reply exactly as the server sent it, CRLFs included.
func (r Reply) Raw() []byte { return r.raw }

// IsError reports whether r is an error reply ('-').
func (r Reply) IsError() bool { return r.Type == '-' }

// String renders r for test failures: +OK, -ERR msg, :1, "bulk" (quoted),
// (nil), [elem, elem].
func (r Reply) String() string {
	switch r.Type {
	case '+', '-':
		return string(r.Type) + string(r.Str)
	case ':':
		return ":" + strconv.FormatInt(r.Int, 10)
	case '$':
		if r.Nil {
			return "(nil)"
		}
		return strconv.Quote(string(r.Str))
	case '*':
		if r.Nil {
			return "(nil array)"
		}
		parts := make([]string, len(r.Elems))
		for i, e := range r.Elems {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprintf("invalid reply %q", r.raw)
}

// ErrProtocol is wrapped by every error ReadReply returns for bytes that are
// not a RESP2 reply.
var ErrProtocol = errors.New("proxytest: bad RESP reply")

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// ReadReply reads one complete RESP2 reply from br. It returns io.EOF if br
// ends before the first byte, io.ErrUnexpectedEOF if it ends inside a reply,
// and an error wrapping ErrProtocol for malformed input.
func ReadReply(br *bufio.Reader) (Reply, error) {
	raw, err := readRaw(br, nil, 0)
	if err != nil {
		if errors.Is(err, io.EOF) && len(raw) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return Reply{}, err
	}
	r, _ := parse(raw[:len(raw):len(raw)])
	return r, nil
}

// readRaw appends one framed reply to dst, checking its syntax, and returns
// dst. parse then splits the framed bytes without checking again.
func readRaw(br *bufio.Reader, dst []byte, depth int) ([]byte, error) {
	start := len(dst)
	dst, err := appendLine(br, dst)
	if err != nil {
		return dst, err
	}
	line := dst[start : len(dst)-2]
	if len(line) == 0 {
		return dst, protocolError("empty line")
	}
	switch line[0] {
	case '+', '-':
		return dst, nil
	case ':':
		if _, ok := parseInt(line[1:]); !ok {
			return dst, protocolError("integer %q", line)
		}
		return dst, nil
	case '$':
		n, ok := parseInt(line[1:])
		switch {
		case !ok || n < -1:
			return dst, protocolError("bulk length %q", line)
		case n == -1:
			return dst, nil
		case n > MaxBulkLen:
			return dst, protocolError("bulk length %d over %d", n, MaxBulkLen)
		}
		for left := int(n) + 2; left > 0; {
			chunk := min(left, 64<<10)
			at := len(dst)
			dst = append(dst, make([]byte, chunk)...)
			if _, err := io.ReadFull(br, dst[at:]); err != nil {
				return dst[:at], noEOF(err)
			}
			left -= chunk
		}
		if !bytes.HasSuffix(dst, crlf) {
			return dst, protocolError("bulk string of %d bytes not followed by CRLF", n)
		}
		return dst, nil
	case '*':
		n, ok := parseInt(line[1:])
		switch {
		case !ok || n < -1:
			return dst, protocolError("array length %q", line)
		case n == -1:
			return dst, nil
		case n > 1<<31:
			return dst, protocolError("array length %d", n)
		case depth >= MaxDepth:
			return dst, protocolError("arrays nested deeper than %d", MaxDepth)
		}
		for range n {
			if dst, err = readRaw(br, dst, depth+1); err != nil {
				return dst, noEOF(err)
			}
		}
		return dst, nil
	}
	return dst, protocolError("unknown type byte %q", line[0])
}

var crlf = []byte("\r\n")

// noEOF turns io.EOF inside a reply into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendLine appends one line, up to and including "\n", to dst and checks
// that it ends in CRLF.
func appendLine(br *bufio.Reader, dst []byte) ([]byte, error) {
	start := len(dst)
	for {
		frag, err := br.ReadSlice('\n')
		dst = append(dst, frag...)
		if len(dst)-start > MaxLineLen {
			return dst, protocolError("line longer than %d bytes", MaxLineLen)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(dst) > start {
			return dst, io.ErrUnexpectedEOF
		}
		if err != nil {
			return dst, err
		}
		if len(dst)-start < 2 || dst[len(dst)-2] != '\r' {
			return dst, protocolError("line %q does not end in CRLF", dst[start:])
		}
		return dst, nil
	}
}

// parseInt parses an optional '-' and one or more decimal digits, the way
// redis-server writes integers and lengths.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n-1) - 1, true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// parse splits framed bytes produced by readRaw.
func parse(b []byte) (Reply, []byte) {
	eol := bytes.IndexByte(b, '\n') + 1
	r := Reply{Type: b[0]}
	body := b[1 : eol-2]
	switch r.Type {
	case '+', '-':
		r.Str = body
	case ':':
		r.Int, _ = parseInt(body)
	case '$':
		n, _ := parseInt(body)
		if n < 0 {
			r.Nil = true
			break
		}
		r.Str = b[eol : eol+int(n) : eol+int(n)]
		eol += int(n) + 2
	case '*':
		n, _ := parseInt(body)
		if n < 0 {
			r.Nil = true
			break
		}
		rest := b[eol:]
		for range n {
			var e Reply
			e, rest = parse(rest)
			r.Elems = append(r.Elems, e)
		}
		eol = len(b) - len(rest)
	}
	r.raw = b[:eol:eol]
	return r, b[eol:]
}

// AppendCommand appends args as a RESP array of bulk strings, the form every
// client sends. Arguments are bytes: keys with spaces, CRLF or invalid UTF-8
// are sent as they are.
func AppendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// Conn is a RESP2 client connection for tests. Send buffers a command, Read
// flushes what is buffered and reads the next reply, Do is both. Only one
// goroutine may use a Conn at a time.
type Conn struct {
	// Timeout bounds every Read, Flush and WriteRaw; zero means DefaultTimeout.
	Timeout time.Duration

	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	cmd []byte
}

// Dial connects to addr, "host:port" or the path of a unix socket (starting
// with "/"), within DefaultTimeout, fails t if that does not work, and closes
// the connection in t's cleanup.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	nc, err := net.DialTimeout(network, addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("proxytest: dial %s: %v", addr, err)
	}
	c := NewConn(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

// NewConn returns a Conn over nc. Closing the Conn closes nc.
func NewConn(nc net.Conn) *Conn {
	return &Conn{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
}

// NetConn returns the underlying connection, for half-closes and the like.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

func (c *Conn) deadline() time.Time {
	d := c.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	return time.Now().Add(d)
}

// Do sends one command and reads its reply. An error reply from the server
// is a Reply with Type '-', not an error; err is for I/O and protocol errors.
func (c *Conn) Do(args ...string) (Reply, error) {
	if err := c.Send(args...); err != nil {
		return Reply{}, err
	}
	return c.Read()
}

// Send buffers one command without waiting for its reply. The buffer is
// written by Flush, Read, WriteRaw, or when it fills; a test pipelining
// thousands of commands should Read now and then, since a server stops
// reading while its replies are not read.
func (c *Conn) Send(args ...string) error {
	c.cmd = AppendCommand(c.cmd[:0], args...)
	c.nc.SetWriteDeadline(c.deadline())
	_, err := c.bw.Write(c.cmd)
	return err
}

// Flush writes the buffered commands.
func (c *Conn) Flush() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	c.nc.SetWriteDeadline(c.deadline())
	return c.bw.Flush()
}

// Read flushes the buffered commands and reads the next reply.
func (c *Conn) Read() (Reply, error) {
	if err := c.Flush(); err != nil {
		return Reply{}, err
	}
	c.nc.SetReadDeadline(c.deadline())
	return ReadReply(c.br)
}

// WriteRaw flushes the buffered commands, then writes b as it is: for
// inline commands, malformed input and requests split across writes.
func (c *Conn) WriteRaw(b []byte) error {
	if err := c.Flush(); err != nil {
		return err
	}
	c.nc.SetWriteDeadline(c.deadline())
	_, err := c.nc.Write(b)
	return err
}
