package resp

import (
	"errors"
	"strconv"
)

// ErrBadReply is the error for a server reply that is neither RESP2 nor
// RESP3.
var ErrBadReply = errors.New("malformed reply")

// ReplyScanner finds where a server's reply ends without decoding it. Like
// Parser it resumes where it stopped, so a large array that arrives over
// many reads is scanned once. The zero value is ready to use.
//
// It frames RESP2 and RESP3 alike: the one-line types (+ - : and RESP3's
// _ , # ( null, double, boolean and big number), the length-prefixed ones
// ($ and RESP3's ! = blob error and verbatim string), and the aggregates
// (* and RESP3's ~ set and > push, with n elements; % map, with 2n). A
// RESP3 attribute (|n, 2n elements) belongs to the value after it, so the
// two are scanned as one. A push is a whole reply to the scanner; telling
// it from a reply to a request is its caller's business (IsPush).
type ReplyScanner struct {
	pos     int   // where scanning resumes, relative to the reply start
	pending []int // elements still expected at each open array level
}

// Scan returns the length of the first complete reply in buf, or 0 when
// buf does not hold a complete reply yet; buf starts where the previous
// reply ended and holds at least the bytes of the previous call. The error
// is ErrBadReply, after which the stream cannot be resynchronised.
func (s *ReplyScanner) Scan(buf []byte) (int, error) {
	for {
		if s.pos >= len(buf) {
			return 0, nil
		}
		line, n := ReadLine(buf, s.pos)
		if n < 0 {
			return 0, nil
		}
		if len(line) == 0 {
			s.reset()
			return 0, ErrBadReply
		}
		switch line[0] {
		case '+', '-', ':', '_', ',', '#', '(':
			s.pos = n
		case '$', '!', '=':
			size, ok := ParseLength(line[1:])
			if !ok || size < -1 || size == -1 && line[0] != '$' {
				s.reset()
				return 0, ErrBadReply
			}
			if size >= 0 {
				if n+size+2 > len(buf) {
					return 0, nil
				}
				n += size + 2
			}
			s.pos = n
		case '*', '~', '>', '%', '|':
			count, ok := ParseLength(line[1:])
			if !ok || count < -1 || count == -1 && line[0] != '*' {
				s.reset()
				return 0, ErrBadReply
			}
			switch line[0] {
			case '%':
				count *= 2
			case '|':
				count = 2*count + 1 // and the value it is about
			}
			s.pos = n
			if count > 0 {
				s.pending = append(s.pending, count)
				continue
			}
		default:
			s.reset()
			return 0, ErrBadReply
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

func (s *ReplyScanner) reset() {
	s.pos, s.pending = 0, s.pending[:0]
}

// ReplyLen is the length of the one complete reply at the start of b, or 0
// when b does not start with a complete, well-formed reply.
func ReplyLen(b []byte) int {
	var s ReplyScanner
	n, err := s.Scan(b)
	if err != nil {
		return 0
	}
	return n
}

// ReadLine returns the line starting at buf[from] without its CRLF and the
// offset just past the CRLF, or n < 0 when the line is not complete. A bare
// LF ends a line too, as redis-server allows for the header lines.
func ReadLine(buf []byte, from int) (line []byte, n int) {
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

// ParseLength parses the length of a RESP bulk string or array, the line
// after its '$' or '*': an optional '-' and at most 18 digits.
func ParseLength(b []byte) (int, bool) {
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

// IsError reports whether reply is an error reply, RESP2's simple error or
// RESP3's blob error.
func IsError(reply []byte) bool { return len(reply) > 0 && (reply[0] == '-' || reply[0] == '!') }

// IsPush reports whether reply, a whole reply as Scan framed it, is a RESP3
// push message (a pub/sub message, an invalidation): something the server
// sent on its own, not the reply to a request.
func IsPush(reply []byte) bool { return len(reply) > 0 && reply[0] == '>' }

// ParseInteger parses reply, which must be exactly one integer reply
// (":<n>\r\n").
func ParseInteger(reply []byte) (int64, bool) {
	line, n := ReadLine(reply, 0)
	if n != len(reply) || len(line) < 2 || line[0] != ':' {
		return 0, false
	}
	v, err := strconv.ParseInt(string(line[1:]), 10, 64)
	return v, err == nil
}
