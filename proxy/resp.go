package proxy

import (
	"errors"

	"github.com/tidwall/redcon"
)

// Limits on what a client may declare. They are checked before anything is
// allocated, so a request that announces a 2 GB bulk or a billion arguments
// costs a reply, not memory; the read buffer only ever grows with bytes that
// really arrived.
const (
	// MaxBulkLen is the largest bulk string a request may carry, as Redis'
	// default proto-max-bulk-len.
	MaxBulkLen = 512 << 20
	// MaxArgs is the most arguments one request may have.
	MaxArgs = 1 << 20
	// MaxInlineLen is the longest inline (telnet style) request line, as
	// Redis' PROTO_INLINE_MAX_SIZE.
	MaxInlineLen = 64 << 10
)

// protocolError is a client protocol violation. Its text is Redis' own, so
// clients see what they would see talking to redis-server.
type protocolError string

func (e protocolError) Error() string { return "Protocol error: " + string(e) }

var (
	errMultibulkLen   = protocolError("invalid multibulk length")
	errBulkLen        = protocolError("invalid bulk length")
	errInlineTooBig   = protocolError("too big inline request")
	errUnbalanced     = protocolError("unbalanced quotes in request")
	errBulkTerminator = protocolError("bulk string is not terminated by CRLF")
)

func errExpectedDollar(got byte) error {
	return protocolError("expected '$', got '" + string(rune(got)) + "'")
}

// requestParser splits a client's byte stream into commands. It keeps its
// position inside an incomplete command, so a large request that arrives in
// many reads is scanned once, and it records arguments as offsets into the
// buffer so the buffer may grow (and move) between reads.
type requestParser struct {
	// State of the multibulk command being parsed, relative to its start.
	inCommand bool
	want      int   // arguments declared by the '*' line
	pos       int   // where scanning resumes, relative to the command start
	offs      []int // start and end offsets of the arguments found so far
}

// parsedCommand is one complete command, valid until the buffer changes.
type parsedCommand struct {
	raw    []byte   // the command's bytes exactly as the client sent them
	args   [][]byte // the arguments, slices of raw (or of an inline rewrite)
	inline bool     // raw is an inline line, not RESP; forward a rewrite
}

// next parses one command from buf. It returns the number of bytes the
// command used; 0 with a nil error means buf holds no complete command yet.
// A command with no arguments (an empty inline line, "*0") consumes its bytes
// and yields len(cmd.args) == 0, which the caller ignores as Redis does.
func (p *requestParser) next(buf []byte, cmd *parsedCommand) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	if !p.inCommand && buf[0] != '*' {
		return p.nextInline(buf, cmd)
	}
	if !p.inCommand {
		line, n := readLine(buf, 0)
		if n < 0 {
			if len(buf) > MaxInlineLen {
				return 0, errMultibulkLen
			}
			return 0, nil
		}
		count, ok := parseLength(line[1:])
		if !ok || count > MaxArgs {
			return 0, errMultibulkLen
		}
		if count <= 0 {
			cmd.raw, cmd.args, cmd.inline = buf[:n], cmd.args[:0], false
			return n, nil
		}
		p.inCommand, p.want, p.pos, p.offs = true, count, n, p.offs[:0]
	}
	for len(p.offs) < 2*p.want {
		if p.pos >= len(buf) {
			return 0, nil
		}
		if buf[p.pos] != '$' {
			defer p.reset()
			return 0, errExpectedDollar(buf[p.pos])
		}
		line, n := readLine(buf, p.pos)
		if n < 0 {
			if len(buf)-p.pos > 32 {
				defer p.reset()
				return 0, errBulkLen
			}
			return 0, nil
		}
		size, ok := parseLength(line[1:])
		if !ok || size < 0 || size > MaxBulkLen {
			defer p.reset()
			return 0, errBulkLen
		}
		if n+size+2 > len(buf) {
			return 0, nil
		}
		if buf[n+size] != '\r' || buf[n+size+1] != '\n' {
			defer p.reset()
			return 0, errBulkTerminator
		}
		p.offs = append(p.offs, n, n+size)
		p.pos = n + size + 2
	}
	end := p.pos
	cmd.raw, cmd.inline = buf[:end], false
	cmd.args = cmd.args[:0]
	for i := 0; i < len(p.offs); i += 2 {
		cmd.args = append(cmd.args, buf[p.offs[i]:p.offs[i+1]])
	}
	p.reset()
	return end, nil
}

func (p *requestParser) reset() {
	p.inCommand, p.want, p.pos, p.offs = false, 0, 0, p.offs[:0]
}

// nextInline parses a telnet-style line ("GET foo\r\n"), as redis-server
// accepts them, with its double and single quoting rules.
func (p *requestParser) nextInline(buf []byte, cmd *parsedCommand) (int, error) {
	nl := -1
	for i, c := range buf {
		if c == '\n' {
			nl = i
			break
		}
	}
	if nl < 0 {
		if len(buf) > MaxInlineLen {
			return 0, errInlineTooBig
		}
		return 0, nil
	}
	if nl > MaxInlineLen {
		return 0, errInlineTooBig
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := splitInline(line, cmd.args[:0])
	if !ok {
		return 0, errUnbalanced
	}
	cmd.raw, cmd.args, cmd.inline = buf[:nl+1], args, true
	return nl + 1, nil
}

// splitInline splits line into arguments the way redis-server's
// sdssplitargs does: blanks separate, "..." takes backslash escapes, '...'
// only \'. Quoted arguments are unescaped in place, so line is modified.
func splitInline(line []byte, args [][]byte) ([][]byte, bool) {
	i := 0
	for {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		if i == len(line) {
			return args, true
		}
		start, w := i, i // w is where the unescaped argument is written
		inDouble, inSingle := false, false
		for done := false; !done; {
			switch {
			case inDouble:
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					line[w] = unhex(line[i+2])<<4 | unhex(line[i+3])
					i += 3
				case c == '\\' && i+1 < len(line):
					i++
					switch line[i] {
					case 'n':
						line[w] = '\n'
					case 'r':
						line[w] = '\r'
					case 't':
						line[w] = '\t'
					case 'b':
						line[w] = '\b'
					case 'a':
						line[w] = '\a'
					default:
						line[w] = line[i]
					}
				case c == '"':
					if i+1 < len(line) && !isBlank(line[i+1]) {
						return nil, false
					}
					done = true
					i++
					continue
				default:
					line[w] = c
				}
				w++
				i++
			case inSingle:
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					line[w] = '\''
					i++
				case c == '\'':
					if i+1 < len(line) && !isBlank(line[i+1]) {
						return nil, false
					}
					done = true
					i++
					continue
				default:
					line[w] = c
				}
				w++
				i++
			default:
				if i >= len(line) || isBlank(line[i]) {
					done = true
					continue
				}
				switch line[i] {
				case '"':
					inDouble = true
				case '\'':
					inSingle = true
				default:
					line[w] = line[i]
					w++
				}
				i++
			}
		}
		args = append(args, line[start:w])
	}
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// readLine returns the line starting at buf[from] without its CRLF and the
// offset just past the CRLF, or n < 0 when the line is not complete. A bare
// LF ends a line too, as redis-server allows for the header lines.
func readLine(buf []byte, from int) (line []byte, n int) {
	for i := from; i < len(buf); i++ {
		if buf[i] == '\n' {
			end := i
			if end > from && buf[end-1] == '\r' {
				end--
			}
			return buf[from:end], i + 1
		}
	}
	return nil, -1
}

// parseLength parses a RESP length: an optional '-' and at most 18 digits.
func parseLength(b []byte) (int, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// errBadReply is a server reply that is not RESP2.
var errBadReply = errors.New("malformed reply")

// replyScanner finds where a server's reply ends without decoding it. Like
// requestParser it resumes where it stopped, so a large array that arrives
// over many reads is scanned once.
type replyScanner struct {
	pos     int   // where scanning resumes, relative to the reply start
	pending []int // elements still expected at each open array level
}

// scan returns the length of the first complete reply in buf, or 0 when buf
// does not hold a complete reply yet.
func (s *replyScanner) scan(buf []byte) (int, error) {
	for {
		if s.pos >= len(buf) {
			return 0, nil
		}
		line, n := readLine(buf, s.pos)
		if n < 0 {
			return 0, nil
		}
		if len(line) == 0 {
			s.reset()
			return 0, errBadReply
		}
		switch line[0] {
		case '+', '-', ':':
			s.pos = n
		case '$':
			size, ok := parseLength(line[1:])
			if !ok || size < -1 {
				s.reset()
				return 0, errBadReply
			}
			if size >= 0 {
				if n+size+2 > len(buf) {
					return 0, nil
				}
				n += size + 2
			}
			s.pos = n
		case '*':
			count, ok := parseLength(line[1:])
			if !ok || count < -1 {
				s.reset()
				return 0, errBadReply
			}
			s.pos = n
			if count > 0 {
				s.pending = append(s.pending, count)
				continue
			}
		default:
			s.reset()
			return 0, errBadReply
		}
		// One element done: close every array it completes.
		for len(s.pending) > 0 {
			last := len(s.pending) - 1
			s.pending[last]--
			if s.pending[last] > 0 {
				break
			}
			s.pending = s.pending[:last]
		}
		if len(s.pending) == 0 {
			end := s.pos
			s.reset()
			return end, nil
		}
	}
}

func (s *replyScanner) reset() {
	s.pos, s.pending = 0, s.pending[:0]
}

// replyLen is the length of the one complete reply at the start of b, or 0.
func replyLen(b []byte) int {
	var s replyScanner
	n, err := s.scan(b)
	if err != nil {
		return 0
	}
	return n
}

// Reply encoding uses redcon's append-style encoders (redcon.AppendBulk,
// AppendInt, AppendArray, AppendError, AppendString, AppendNull); the
// helpers below cover the shapes redcon has no function for.

// appendCommand encodes args as a RESP multibulk request.
func appendCommand(dst []byte, args ...[]byte) []byte {
	dst = redcon.AppendArray(dst, len(args))
	for _, a := range args {
		dst = redcon.AppendBulk(dst, a)
	}
	return dst
}
