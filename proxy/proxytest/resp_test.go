package proxytest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

var replyTests = []struct {
	name string
	in   string
	want string // Reply.String()
}{
	{"simple string", "+OK\r\n", "+OK"},
	{"empty simple string", "+\r\n", "+"},
	{"error", "-ERR unknown command 'x'\r\n", "-ERR unknown command 'x'"},
	{"integer", ":1000\r\n", ":1000"},
	{"negative integer", ":-12\r\n", ":-12"},
	{"min integer", ":-9223372036854775808\r\n", ":-9223372036854775808"},
	{"max integer", ":9223372036854775807\r\n", ":9223372036854775807"},
	{"bulk", "$5\r\nhello\r\n", `"hello"`},
	{"empty bulk", "$0\r\n\r\n", `""`},
	{"binary bulk", "$6\r\na\r\n\x00\xff\n\r\n", `"a\r\n\x00\xff\n"`},
	{"nil bulk", "$-1\r\n", "(nil)"},
	{"empty array", "*0\r\n", "[]"},
	{"nil array", "*-1\r\n", "(nil array)"},
	{"array", "*3\r\n:1\r\n$1\r\na\r\n+b\r\n", `[:1, "a", +b]`},
	{"nested", "*2\r\n*2\r\n$-1\r\n*-1\r\n*1\r\n*0\r\n", "[[(nil), (nil array)], [[]]]"},
	{"error in array", "*2\r\n-ERR x\r\n$0\r\n\r\n", `[-ERR x, ""]`},
	{"simple string with CR", "+a\rb\r\n", "+a\rb"},
}

func TestReadReply(t *testing.T) {
	for _, tc := range replyTests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in + "+next\r\n"))
			r, err := ReadReply(br)
			if err != nil {
				t.Fatalf("ReadReply(%q): %v", tc.in, err)
			}
			if got := r.String(); got != tc.want {
				t.Errorf("ReadReply(%q) = %s, want %s", tc.in, got, tc.want)
			}
			if !bytes.Equal(r.Raw(), []byte(tc.in)) {
				t.Errorf("ReadReply(%q).Raw() = %q", tc.in, r.Raw())
			}
			next, err := ReadReply(br)
			if err != nil || next.String() != "+next" {
				t.Errorf("reply after %q = %v, %v; want +next", tc.in, next, err)
			}
		})
	}
}

func TestReplyFields(t *testing.T) {
	in := "*4\r\n:7\r\n$2\r\nab\r\n*1\r\n-E\r\n$-1\r\n"
	r, err := ReadReply(bufio.NewReader(strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != '*' || len(r.Elems) != 4 {
		t.Fatalf("got %v, want an array of 4", r)
	}
	e := r.Elems
	if e[0].Int != 7 || string(e[1].Str) != "ab" || !e[2].Elems[0].IsError() || !e[3].Nil || e[3].Str != nil {
		t.Errorf("elements = %#v", e)
	}
	for i, want := range []string{":7\r\n", "$2\r\nab\r\n", "*1\r\n-E\r\n", "$-1\r\n"} {
		if got := string(e[i].Raw()); got != want {
			t.Errorf("Elems[%d].Raw() = %q, want %q", i, got, want)
		}
	}
}

func TestReadReplyErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"+OK", io.ErrUnexpectedEOF},
		{"+OK\r", io.ErrUnexpectedEOF},
		{"$3\r\nab", io.ErrUnexpectedEOF},
		{"$3\r\nabc", io.ErrUnexpectedEOF},
		{"*2\r\n:1\r\n", io.ErrUnexpectedEOF},
		{"*1\r\n", io.ErrUnexpectedEOF},
		{"+OK\n", ErrProtocol},
		{"\r\n", ErrProtocol},
		{"!x\r\n", ErrProtocol},
		{"OK\r\n", ErrProtocol},
		{":abc\r\n", ErrProtocol},
		{":\r\n", ErrProtocol},
		{":+1\r\n", ErrProtocol},
		{":1 \r\n", ErrProtocol},
		{":9223372036854775808\r\n", ErrProtocol},
		{"$-2\r\n", ErrProtocol},
		{"$\r\n", ErrProtocol},
		{"$2147483648\r\n", ErrProtocol},
		{"$99999999999999999999\r\n", ErrProtocol},
		{"$3\r\nabcXY", ErrProtocol},
		{"*-5\r\n", ErrProtocol},
		{"*1\r\n$-2\r\n", ErrProtocol},
		{"*x\r\n", ErrProtocol},
		{strings.Repeat("*1\r\n", MaxDepth+1) + ":1\r\n", ErrProtocol},
		{"+" + strings.Repeat("a", MaxLineLen) + "\r\n", ErrProtocol},
	} {
		_, err := ReadReply(bufio.NewReader(strings.NewReader(tc.in)))
		if !errors.Is(err, tc.want) {
			short := tc.in
			if len(short) > 40 {
				short = short[:40] + "..."
			}
			t.Errorf("ReadReply(%q) error = %v, want %v", short, err, tc.want)
		}
	}
}

// Replies cut at any byte, or delivered a byte at a time, read the same as
// replies in one piece.
func TestReadReplySplit(t *testing.T) {
	var all strings.Builder
	var want []string
	for _, tc := range replyTests {
		all.WriteString(tc.in)
		want = append(want, tc.in)
	}
	all.WriteString("$70000\r\n" + strings.Repeat("x", 70000) + "\r\n")
	want = append(want, "$70000\r\n"+strings.Repeat("x", 70000)+"\r\n")
	in := all.String()

	check := func(t *testing.T, how string, r io.Reader) {
		t.Helper()
		br := bufio.NewReaderSize(r, 16)
		for i, w := range want {
			got, err := ReadReply(br)
			if err != nil || string(got.Raw()) != w {
				t.Fatalf("%s: reply %d = %q, %v; want %q", how, i, got.Raw(), err, w)
			}
		}
		if _, err := ReadReply(br); err != io.EOF {
			t.Fatalf("%s: after the last reply: %v, want EOF", how, err)
		}
	}
	for cut := range len(in) - 70000 {
		check(t, "cut", io.MultiReader(strings.NewReader(in[:cut]), strings.NewReader(in[cut:])))
	}
	check(t, "one byte at a time", iotest.OneByteReader(strings.NewReader(in)))
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		var parts []io.Reader
		for rest := in; rest != ""; {
			n := min(len(rest), 1+rnd.IntN(40))
			parts = append(parts, strings.NewReader(rest[:n]))
			rest = rest[n:]
		}
		check(t, "random cuts", io.MultiReader(parts...))
	}
}

func FuzzReadReply(f *testing.F) {
	for _, tc := range replyTests {
		f.Add([]byte(tc.in))
	}
	for _, s := range []string{
		"*1\r\n$-2\r\n", "*-5\r\n", "$2147483648\r\n", "+OK\n", "$3\r\nabcXY",
		"*2\r\n*1\r\n:1\r\n", ":-0\r\n", "$-1\r\n$-1\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n+\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ReadReply(bufio.NewReader(bytes.NewReader(in)))
		r1, err1 := ReadReply(bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(in)), 16))
		if (err == nil) != (err1 == nil) || r.String() != r1.String() {
			t.Fatalf("whole: %v, %v; byte by byte: %v, %v", r, err, r1, err1)
		}
		if err != nil {
			return
		}
		if !bytes.HasPrefix(in, r.Raw()) {
			t.Fatalf("Raw() = %q is not a prefix of the input %q", r.Raw(), in)
		}
		again, err := ReadReply(bufio.NewReader(bytes.NewReader(r.Raw())))
		if err != nil || again.String() != r.String() || !bytes.Equal(again.Raw(), r.Raw()) {
			t.Fatalf("reading Raw() %q again = %v, %v; want %v", r.Raw(), again, err, r)
		}
	})
}

func TestAppendCommand(t *testing.T) {
	got := string(AppendCommand([]byte("x"), "SET", "a b\r\n", ""))
	want := "x*3\r\n$3\r\nSET\r\n$5\r\na b\r\n\r\n$0\r\n\r\n"
	if got != want {
		t.Errorf("AppendCommand = %q, want %q", got, want)
	}
}
