package main

import (
	"bytes"
	"io"
	"net"
	"testing"
)

const (
	hello2     = "*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"
	helloAuth  = "*5\r\n$5\r\nhello\r\n$1\r\n2\r\n$4\r\nauth\r\n$7\r\ndefault\r\n$6\r\nsecret\r\n"
	ping       = "*1\r\n$4\r\nPING\r\n"
	helloShort = "*1\r\n$5\r\nHeLLo\r\n"
)

func TestHelloLen(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"HELLO 2", hello2, len(hello2)},
		{"hello with auth", helloAuth, len(helloAuth)},
		{"mixed case, no args", helloShort, len(helloShort)},
		{"HELLO then PING", hello2 + ping, len(hello2)},
		{"PING", ping, 0},
		{"empty", "", 0},
		{"inline HELLO", "HELLO 2\r\n", 0},
		{"HELLOX", "*1\r\n$6\r\nHELLOX\r\n", 0},
		{"negative bulk length", "*1\r\n$-2\r\n", 0},
		{"negative array length", "*-5\r\n", 0},
		{"huge bulk length", "*1\r\n$2147483648\r\nHELLO\r\n", 0},
		{"missing CR", "*1\r\n$5\nHELLO\r\n", 0},
		{"bulk longer than said", "*1\r\n$4\r\nHELLO\r\n", 0},
		{"empty array", "*0\r\n", 0},
		{"integer arg", "*2\r\n$5\r\nHELLO\r\n:2\r\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := helloLen([]byte(tc.in)); got != tc.want {
				t.Errorf("helloLen(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// A HELLO cut anywhere is not a complete HELLO.
func TestHelloLenCut(t *testing.T) {
	for _, full := range []string{hello2, helloAuth} {
		for i := range len(full) {
			if got := helloLen([]byte(full[:i])); got != 0 {
				t.Errorf("helloLen(%q) = %d, want 0", full[:i], got)
			}
		}
	}
}

func FuzzHelloLen(f *testing.F) {
	for _, s := range []string{hello2, helloAuth, helloShort, hello2 + ping, ping, "",
		"*1\r\n$-2\r\n", "*-5\r\n", "$2147483648\r\n", "*1\r\n$5\nHELLO\r\n", "*999999999\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := helloLen(b)
		if n < 0 || n > len(b) {
			t.Fatalf("helloLen(%q) = %d, out of range", b, n)
		}
		if n > 0 && (b[0] != '*' || !bytes.HasSuffix(b[:n], []byte("\r\n"))) {
			t.Fatalf("helloLen(%q) = %d, which is not a RESP array", b, n)
		}
	})
}

// The canned reply to HELLO must come before the replies to what was written
// with it or after it.
func TestHelloConnKeepsReplyOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveTinyRedis(ln)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	c := &helloConn{Conn: conn}
	msg := hello2 + ping
	if n, err := c.Write([]byte(msg)); n != len(msg) || err != nil {
		t.Fatalf("Write(HELLO PING) = %d, %v, want %d, nil", n, err, len(msg))
	}
	if n, err := c.Write([]byte(hello2)); n != len(hello2) || err != nil { // a later HELLO goes to the server
		t.Fatalf("Write(HELLO) = %d, %v, want %d, nil", n, err, len(hello2))
	}
	want := string(helloReply) + "+PONG\r\n" + "-ERR from server\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(readOneByte{c}, got); err != nil {
		t.Fatalf("reading replies: %v", err)
	}
	if string(got) != want {
		t.Errorf("replies = %q, want %q", got, want)
	}
}

// readOneByte reads one byte at a time, to test a canned reply read in pieces.
type readOneByte struct{ r io.Reader }

func (r readOneByte) Read(b []byte) (int, error) { return r.r.Read(b[:1]) }

// serveTinyRedis accepts one connection and answers PING with PONG and HELLO 2
// with an error, until the connection closes.
func serveTinyRedis(ln net.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	var buf []byte
	tmp := make([]byte, 256)
	for {
		n, err := c.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		for {
			reply, rest := tinyReply(buf)
			if reply == "" {
				break
			}
			buf = rest
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
	}
}

// tinyReply answers the first command in buf, or returns "" if it is incomplete.
func tinyReply(buf []byte) (reply string, rest []byte) {
	switch {
	case bytes.HasPrefix(buf, []byte(ping)):
		return "+PONG\r\n", buf[len(ping):]
	case bytes.HasPrefix(buf, []byte(hello2)):
		return "-ERR from server\r\n", buf[len(hello2):]
	}
	return "", buf
}
