package resp

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

// ProtocolError is a client's violation of the protocol. Its text is Redis'
// own ("Protocol error: invalid bulk length"), so clients see what they
// would see talking to redis-server.
type ProtocolError string

func (e ProtocolError) Error() string { return "Protocol error: " + string(e) }

var (
	errMultibulkLen   = ProtocolError("invalid multibulk length")
	errBulkLen        = ProtocolError("invalid bulk length")
	errInlineTooBig   = ProtocolError("too big inline request")
	errUnbalanced     = ProtocolError("unbalanced quotes in request")
	errBulkTerminator = ProtocolError("bulk string is not terminated by CRLF")
)

func errExpectedDollar(got byte) error {
	return ProtocolError("expected '$', got '" + string(rune(got)) + "'")
}

// Parser splits a client's byte stream into commands. It keeps its
// position inside an incomplete command, so a large request that arrives in
// many reads is scanned once, and it records arguments as offsets into the
// buffer so the buffer may grow (and move) between reads. The zero value is
// ready to use.
type Parser struct {
	// State of the multibulk command being parsed, relative to its start.
	inCommand bool
	want      int   // arguments declared by the '*' line
	pos       int   // where scanning resumes, relative to the command start
	offs      []int // start and end offsets of the arguments found so far
}

// Command is one complete command, valid until the buffer it was parsed
// from changes. Reusing one Command for every Next keeps its Args.
type Command struct {
	// Raw is the command's bytes exactly as the client sent them.
	Raw []byte
	// Args are the arguments, slices of Raw (unescaped in place for an
	// inline command).
	Args [][]byte
	// Inline is true when Raw is a telnet-style line, not RESP: a server
	// must be sent the Args re-encoded (AppendCommand).
	Inline bool
}

// Next parses one command from buf, which starts where the previous
// command ended and holds at least the bytes of the previous call. It
// returns the number of bytes the command used; 0 with a nil error means
// buf holds no complete command yet. A command with no arguments (an empty
// inline line, "*0") consumes its bytes and yields len(cmd.Args) == 0,
// which the caller ignores as Redis does. An error is a protocol error
// whose text (Error) is Redis' own, to be answered as "-ERR <text>"; the
// stream cannot be resynchronised after it.
func (p *Parser) Next(buf []byte, cmd *Command) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	if !p.inCommand && buf[0] != '*' {
		return p.nextInline(buf, cmd)
	}
	if !p.inCommand {
		line, n := ReadLine(buf, 0)
		if n < 0 {
			if len(buf) > MaxInlineLen {
				return 0, errMultibulkLen
			}
			return 0, nil
		}
		count, ok := ParseLength(line[1:])
		if !ok || count > MaxArgs {
			return 0, errMultibulkLen
		}
		if count <= 0 {
			cmd.Raw, cmd.Args, cmd.Inline = buf[:n], cmd.Args[:0], false
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
		line, n := ReadLine(buf, p.pos)
		if n < 0 {
			if len(buf)-p.pos > 32 {
				defer p.reset()
				return 0, errBulkLen
			}
			return 0, nil
		}
		size, ok := ParseLength(line[1:])
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
	cmd.Raw, cmd.Inline = buf[:end], false
	cmd.Args = cmd.Args[:0]
	for i := 0; i < len(p.offs); i += 2 {
		cmd.Args = append(cmd.Args, buf[p.offs[i]:p.offs[i+1]])
	}
	p.reset()
	return end, nil
}

func (p *Parser) reset() {
	p.inCommand, p.want, p.pos, p.offs = false, 0, 0, p.offs[:0]
}

// nextInline parses a telnet-style line ("GET foo\r\n"), as redis-server
// accepts them, with its double and single quoting rules.
func (p *Parser) nextInline(buf []byte, cmd *Command) (int, error) {
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
	args, ok := splitInline(line, cmd.Args[:0])
	if !ok {
		return 0, errUnbalanced
	}
	cmd.Raw, cmd.Args, cmd.Inline = buf[:nl+1], args, true
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
