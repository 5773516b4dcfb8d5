package resp

import (
	"bytes"
	"fmt"
	"testing"
)

// parseAll feeds data to a parser in pieces cut at the given offsets, as a
// client socket would deliver them, and returns the commands' arguments.
func parseAll(data []byte, cuts []int) (cmds [][]string, err error) {
	var p Parser
	var cmd Command
	buf := []byte{}
	start := 0
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		buf = append(buf, data[prev:cut]...)
		prev = cut
		for {
			n, err := p.Next(buf[start:], &cmd)
			if err != nil {
				return cmds, err
			}
			if n == 0 {
				break
			}
			start += n
			if len(cmd.Args) > 0 {
				var args []string
				for _, a := range cmd.Args {
					args = append(args, string(a))
				}
				cmds = append(cmds, args)
			}
		}
	}
	if start != len(buf) {
		return cmds, fmt.Errorf("%d bytes left unparsed", len(buf)-start)
	}
	return cmds, nil
}

func TestRequestParser(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
		err  error
	}{
		{"one", "*2\r\n$3\r\nGET\r\n$1\r\na\r\n", [][]string{{"GET", "a"}}, nil},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [][]string{{"PING"}, {"GET", ""}}, nil},
		{"binary", "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", [][]string{{"GET", "a\r\nb"}}, nil},
		{"inline", "SET k \"a b\\n\" 'c'\r\nPING\n", [][]string{{"SET", "k", "a b\n", "c"}, {"PING"}}, nil},
		{"empty inline and *0", "\r\n*0\r\nPING\r\n", [][]string{{"PING"}}, nil},
		{"negative bulk", "*1\r\n$-2\r\n", nil, errBulkLen},
		{"negative count", "*-5\r\n", nil, nil},
		{"huge bulk", "*1\r\n$2147483648\r\n", nil, errBulkLen},
		{"huge array", "*1000000000\r\n", nil, errMultibulkLen},
		{"bad count", "*x\r\n", nil, errMultibulkLen},
		{"missing CR after bulk", "*1\r\n$1\r\naXY", nil, errBulkTerminator},
		{"not a bulk", "*1\r\n:1\r\n", nil, errExpectedDollar(':')},
		{"unbalanced", "GET \"a\r\n", nil, errUnbalanced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.in)
			// Every split point must give the same result as the whole.
			for cut := 0; cut <= len(data); cut++ {
				got, err := parseAll(bytes.Clone(data), []int{cut})
				if fmt.Sprint(err) != fmt.Sprint(tc.err) {
					t.Fatalf("cut at %d: error %v, want %v", cut, err, tc.err)
				}
				if tc.err == nil && fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("cut at %d: got %q, want %q", cut, got, tc.want)
				}
			}
		})
	}
}

func TestReplyScanner(t *testing.T) {
	replies := []string{
		"+OK\r\n", "-ERR x\r\n", ":12\r\n", "$-1\r\n", "$0\r\n\r\n", "$3\r\na\nb\r\n",
		"*-1\r\n", "*0\r\n", "*2\r\n$1\r\na\r\n*2\r\n:1\r\n*0\r\n", "*1\r\n*1\r\n*1\r\n+deep\r\n",
		// RESP3
		"_\r\n", ",1.5\r\n", ",-inf\r\n", "#t\r\n", "(3492890328409238509324850943850943825024385\r\n",
		"!21\r\nSYNTAX invalid syntax\r\n", "=15\r\ntxt:Some string\r\n",
		"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n%0\r\n", "~2\r\n+a\r\n_\r\n", "%0\r\n", "~0\r\n",
		">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
		"|1\r\n+ttl\r\n:3600\r\n$3\r\nabc\r\n",
		"*2\r\n|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n:2\r\n:3\r\n",
	}
	stream := []byte{}
	for _, r := range replies {
		stream = append(stream, r...)
	}
	for cut := 0; cut <= len(stream); cut++ {
		var s ReplyScanner
		var got []string
		buf := append([]byte{}, stream[:cut]...)
		start := 0
		feed := func() {
			for {
				n, err := s.Scan(buf[start:])
				if err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				if n == 0 {
					return
				}
				got = append(got, string(buf[start:start+n]))
				start += n
			}
		}
		feed()
		buf = append(buf, stream[cut:]...)
		feed()
		if fmt.Sprint(got) != fmt.Sprint(replies) {
			t.Fatalf("cut %d: got %q, want %q", cut, got, replies)
		}
	}
	for _, bad := range []string{"?\r\n", "$-2\r\n", "*x\r\n", "\r\n", "%-1\r\n", "~-1\r\n", "=-1\r\n", "!-1\r\n", "|-1\r\n"} {
		var s ReplyScanner
		if _, err := s.Scan([]byte(bad)); err == nil {
			t.Errorf("scan(%q): no error", bad)
		}
	}
}

// The parser must answer every input with commands, "need more" or an
// error: never a panic, never a slice out of its buffer.
func FuzzRequestParser(f *testing.F) {
	for _, seed := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", "*1\r\n$-2\r\n", "*-5\r\n", "$2147483648\r\n",
		"*1\r\n$2147483648\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv", "PING\r\n", "\"unbalanced\r\n",
		"SET a \"\\x41\\x4g\"\n", "*0\r\n", "*1\r\n$1\r\nab\r\n", "*\r\n", "*1\n$1\na\r\n",
	} {
		f.Add([]byte(seed), uint16(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		c := int(cut)
		if c > len(data) {
			c = len(data)
		}
		whole, errWhole := parseAll(bytes.Clone(data), nil)
		split, errSplit := parseAll(bytes.Clone(data), []int{c})
		if (errWhole == nil) != (errSplit == nil) || (errWhole == nil && fmt.Sprint(whole) != fmt.Sprint(split)) {
			t.Fatalf("whole: %q %v; cut at %d: %q %v", whole, errWhole, c, split, errSplit)
		}
	})
}

func FuzzReplyScanner(f *testing.F) {
	for _, seed := range []string{"+OK\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "$-1\r\n", "*1\r\n*-1\r\n", "$5\r\nab", "*3\r\n",
		"_\r\n", ",3.14\r\n", "#f\r\n", "(12345678901234567890\r\n", "!3\r\nERR\r\n", "=7\r\ntxt:abc\r\n",
		"%1\r\n+k\r\n~1\r\n:1\r\n", ">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n", "|1\r\n+a\r\n+b\r\n+value\r\n", "%2\r\n+k\r\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s ReplyScanner
		n, err := s.Scan(data)
		if err == nil && (n < 0 || n > len(data)) {
			t.Fatalf("scan(%q) = %d", data, n)
		}
		if err == nil && n > 0 && ReplyLen(data[:n]) != n {
			t.Fatalf("scan(%q) = %d, but the reply alone does not scan to its length", data, n)
		}
	})
}

func BenchmarkRequestParser(b *testing.B) {
	data := []byte("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$16\r\nvalue:0000000001\r\n")
	var p Parser
	var cmd Command
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if n, err := p.Next(data, &cmd); n != len(data) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"command", AppendCommand(nil, []byte("SET"), []byte("k"), []byte("")), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{"no args", AppendCommand(nil), "*0\r\n"},
		{"error", AppendError(nil, "ERR a\r\nb"), "-ERR a  b\r\n"},
		{"ok", AppendOK(nil), "+OK\r\n"},
		{"int", AppendInt(nil, 7), ":7\r\n"},
		{"negative int", AppendInt(nil, -12345678901), ":-12345678901\r\n"},
		{"array", AppendArray(nil, 14), "*14\r\n"},
		{"null array", AppendArray(nil, -1), "*-1\r\n"},
		{"bulk", AppendBulk(nil, []byte("a\r\nb")), "$4\r\na\r\nb\r\n"},
		{"empty bulk", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"bulk string", AppendBulkString(nil, "redis"), "$5\r\nredis\r\n"},
		{"null", AppendNull(nil), "$-1\r\n"},
		{"appends", AppendInt([]byte("+OK\r\n"), 0), "+OK\r\n:0\r\n"},
	}
	for _, tc := range tests {
		if string(tc.got) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseInteger(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{":12\r\n", 12, true},
		{":-3\r\n", -3, true},
		{":12\r\n:1\r\n", 0, false}, // one reply exactly
		{":\r\n", 0, false},
		{":x\r\n", 0, false},
		{"+12\r\n", 0, false},
		{":12", 0, false},
	}
	for _, tc := range tests {
		if got, ok := ParseInteger([]byte(tc.in)); got != tc.want || ok != tc.ok {
			t.Errorf("ParseInteger(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if !IsError([]byte("-ERR x\r\n")) || IsError([]byte("+OK\r\n")) || IsError(nil) {
		t.Error("IsError: wrong answer")
	}
}

// Parsing a request and scanning a reply allocate nothing once the
// parser's slices have grown.
func TestParseAllocatesNothing(t *testing.T) {
	req := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET \"k\"\r\n")
	reply := []byte("*2\r\n$1\r\na\r\n*1\r\n:1\r\n")
	buf := make([]byte, len(req))
	var p Parser
	var cmd Command
	var s ReplyScanner
	parse := func() {
		copy(buf, req) // an inline command is unescaped in place
		for rest := buf; len(rest) > 0; {
			n, err := p.Next(rest, &cmd)
			if n == 0 || err != nil {
				t.Fatal(n, err)
			}
			rest = rest[n:]
		}
		if n, err := s.Scan(reply); n != len(reply) || err != nil {
			t.Fatal(n, err)
		}
	}
	if n := testing.AllocsPerRun(100, parse); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
