package proxy

import (
	"fmt"
	"strings"
)

// statDescriptions are the stats port's fields in nutcracker's order, with
// what each one counts in shardproxy.
var statDescriptions = struct{ pool, server [][2]string }{
	pool: [][2]string{
		{"client_eof", "client connections closed by the client"},
		{"client_err", "client connections closed on an error (protocol errors included)"},
		{"client_connections", "client connections open now"},
		{"server_ejects", "times a server was taken out of the ring (auto_eject_hosts)"},
		{"forward_error", "requests answered with an error because a server could not be used"},
		{"fragments", "sub-requests made by splitting multi-key commands"},
	},
	server: [][2]string{
		{"server_eof", "server connections closed by the server"},
		{"server_err", "server connections that failed otherwise (connect errors included)"},
		{"server_timedout", "server connections closed because a reply took longer than timeout"},
		{"server_connections", "server connections open now"},
		{"server_ejected_at", "when the server was last ejected, in microseconds since the epoch (0: never)"},
		{"requests", "requests sent to the server"},
		{"request_bytes", "bytes of requests sent to the server"},
		{"responses", "replies received from the server"},
		{"response_bytes", "bytes of replies received from the server"},
		{"in_queue", "requests waiting to be written to the server"},
		{"in_queue_bytes", "bytes of requests waiting to be written to the server"},
		{"out_queue", "requests sent and waiting for their reply"},
		{"out_queue_bytes", "bytes of requests sent and waiting for their reply"},
	},
}

// DescribeStats is the text of -D: the stats fields and their meaning.
func DescribeStats() string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is shardproxy-%s\n\npool stats:\n", Version)
	for _, d := range statDescriptions.pool {
		fmt.Fprintf(&b, "  %-19s \"%s\"\n", d[0], d[1])
	}
	b.WriteString("\nserver stats:\n")
	for _, d := range statDescriptions.server {
		fmt.Fprintf(&b, "  %-19s \"%s\"\n", d[0], d[1])
	}
	return b.String()
}
