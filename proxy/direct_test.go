package proxy

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A client that does not read its reply must not stall the server
// connection it shares with everyone else: the server's reader writes what
// the client's socket takes and leaves the rest to be written later.
func TestProxySlowClientDoesNotStallOthers(t *testing.T) {
	// One server, so every client shares its connection.
	tp := startProxy(t, 1, "")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	c := tp.client(t)
	if got := do(t, c, "SET", "big", string(big)); got != "+OK\r\n" {
		t.Fatalf("SET big = %q", got)
	}

	slowConn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	slowConn.(*net.TCPConn).SetReadBuffer(64 << 10) // so the kernel cannot take the whole reply
	slow := proxytest.NewConn(slowConn)
	t.Cleanup(func() { slow.Close() })
	if err := slow.Send("GET", "big"); err != nil {
		t.Fatal(err)
	}
	if err := slow.Flush(); err != nil {
		t.Fatal(err)
	}

	// The slow client's 8 MiB are stuck in its socket. Others go on; with a
	// reader blocked on the slow client these would time out.
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("k%d", i)
		if got := do(t, c, "SET", key, key); got != "+OK\r\n" {
			t.Fatalf("SET %s while a client is slow = %q", key, got)
		}
		if got, want := do(t, c, "GET", key), fmt.Sprintf("$%d\r\n%s\r\n", len(key), key); got != want {
			t.Fatalf("GET %s while a client is slow = %q, want %q", key, got, want)
		}
	}

	r, err := slow.Read()
	if err != nil {
		t.Fatalf("slow client's reply: %v", err)
	}
	if !bytes.Equal(r.Str, big) {
		t.Fatalf("slow client got %d bytes, want the %d stored", len(r.Str), len(big))
	}
	if got := do(t, slow, "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after the large reply = %q", got)
	}
}

// Commands arriving one write at a time, without waiting for replies, are
// answered in order whichever path each takes: straight from a server's
// reader (one command per read), after a split over servers (MGET), or by
// the proxy itself (PING).
func TestProxyRepliesKeepOrderAcrossReads(t *testing.T) {
	tp := startProxy(t, 3, "")
	keys := make([]string, len(tp.redises))
	for i, r := range tp.redises {
		keys[i] = tp.keyOn(t, r, "order")
	}
	c := tp.client(t)
	const n = 3000
	values := map[string]string{}
	counts := map[string]int{}
	var want []string
	for i := 0; i < n; i++ {
		key := keys[i%len(keys)]
		var cmd []string
		switch i % 5 {
		case 0, 1:
			v := fmt.Sprint(i)
			cmd = []string{"SET", key, v}
			values[key] = v
			want = append(want, "+OK\r\n")
		case 2:
			cmd = []string{"INCR", "n:" + key}
			counts[key]++
			want = append(want, fmt.Sprintf(":%d\r\n", counts[key]))
		case 3:
			cmd = append([]string{"MGET"}, keys...)
			mget := fmt.Sprintf("*%d\r\n", len(keys))
			for _, k := range keys {
				if v, ok := values[k]; ok {
					mget += fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)
				} else {
					mget += "$-1\r\n"
				}
			}
			want = append(want, mget)
		default:
			cmd = []string{"PING"}
			want = append(want, "+PONG\r\n")
		}
		if err := c.WriteRaw(proxytest.AppendCommand(nil, cmd...)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 { // read now and then, so neither side's buffers fill
			for j := i - 99; j <= i; j++ {
				r, err := c.Read()
				if err != nil {
					t.Fatalf("reply %d: %v", j, err)
				}
				if string(r.Raw()) != want[j] {
					t.Fatalf("reply %d = %q, want %q", j, r.Raw(), want[j])
				}
			}
		}
	}
}

// A request answered directly and a malformed one behind it in the same
// read: the reply comes first, then the protocol error.
func TestProxyDirectReplyPrecedesProtocolError(t *testing.T) {
	tp := startProxy(t, 2, "")
	for i := 0; i < 50; i++ {
		c := tp.client(t)
		req := proxytest.AppendCommand(nil, "GET", fmt.Sprintf("absent%d", i))
		if err := c.WriteRaw(append(req, "*1\r\n$-2\r\n"...)); err != nil {
			t.Fatal(err)
		}
		r, err := c.Read()
		if err != nil || string(r.Raw()) != "$-1\r\n" {
			t.Fatalf("round %d: first reply %q, %v; want the GET's $-1", i, r.Raw(), err)
		}
		r, err = c.Read()
		if err != nil || !strings.HasPrefix(string(r.Raw()), "-ERR Protocol error") {
			t.Fatalf("round %d: second reply %q, %v; want the protocol error", i, r.Raw(), err)
		}
		c.Close()
	}
}

// Clients that reset their connection while their reply is being written
// (EPIPE, ECONNRESET on the proxy's raw writes) leave the proxy serving.
func TestProxyClientsVanishingMidReply(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	big := strings.Repeat("v", 8<<20) // more than the kernel takes at once
	if got := do(t, c, "SET", "big", big); got != "+OK\r\n" {
		t.Fatalf("SET big = %q", got)
	}
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		if _, err := nc.Write(proxytest.AppendCommand(nil, "GET", "big")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			buf := make([]byte, 100)
			nc.Read(buf) // part of the reply is on its way
		}
		nc.(*net.TCPConn).SetLinger(0) // close with a reset
		nc.Close()
	}
	// Every vanished client's goroutine ends, spilled replies included.
	deadline := time.Now().Add(10 * time.Second)
	for tp.srv.stats.CurrConnections.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d client connections still open, want only the first", tp.srv.stats.CurrConnections.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		if got := do(t, c, "PING"); got != "+PONG\r\n" {
			t.Fatalf("PING after clients vanished = %q", got)
		}
		r, err := c.Do("GET", "big")
		if err != nil || len(r.Str) != len(big) {
			t.Fatalf("GET big after clients vanished: %d bytes, %v", len(r.Str), err)
		}
	}
}
