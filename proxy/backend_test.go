package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Requests through a server connection allocate nothing once the client
// and the connections are warm: a lone GET (answered by the server's
// reader), a pipeline over three servers, and a transaction on a reused
// dedicated connection. A request that allocated would cost at least one
// allocation per round trip.
func TestProxyRequestsAllocateNothing(t *testing.T) {
	tp := startProxy(t, 3, "")
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pipeline []byte
	for i := 0; i < 16; i++ {
		pipeline = proxytest.AppendCommand(pipeline, "GET", fmt.Sprint("k", i))
	}
	for _, tc := range []struct {
		name  string
		req   []byte
		reply string
	}{
		{"direct", proxytest.AppendCommand(nil, "GET", "k"), "$-1\r\n"},
		{"pipeline", pipeline, strings.Repeat("$-1\r\n", 16)},
		{"transaction", proxytest.AppendCommand(proxytest.AppendCommand(nil, "WATCH", "k"), "UNWATCH"), "+OK\r\n+OK\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, len(tc.reply))
			roundTrip := func() {
				if _, err := conn.Write(tc.req); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					t.Fatal(err)
				}
			}
			roundTrip()
			if string(buf) != tc.reply {
				t.Fatalf("replies = %q, want %q", buf, tc.reply)
			}
			if n := testing.AllocsPerRun(200, roundTrip); n >= 1 {
				t.Fatalf("%v allocations per round trip, want none", n)
			}
		})
	}
}
