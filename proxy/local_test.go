package proxy

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// infoHeaders returns the section headers of an INFO reply, in order, and
// fails t if the reply is not laid out as Redis lays it out: sections
// separated by one empty line, every line ending in CRLF.
func infoHeaders(t *testing.T, reply string) []string {
	t.Helper()
	body, ok := strings.CutPrefix(reply, "$")
	if !ok {
		t.Fatalf("INFO reply %q is not a bulk string", reply)
	}
	n, body, _ := strings.Cut(body, "\r\n")
	if size, err := strconv.Atoi(n); err != nil || size != len(body)-2 {
		t.Fatalf("INFO reply %q: length %s for %d bytes", reply, n, len(body)-2)
	}
	body = strings.TrimSuffix(body, "\r\n") // the bulk string's own CRLF
	if body == "" {
		return nil
	}
	if !strings.HasSuffix(body, "\r\n") || strings.HasSuffix(body, "\r\n\r\n") {
		t.Fatalf("INFO reply %q: the last section must end with one CRLF", reply)
	}
	var headers []string
	for _, section := range strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n\r\n") {
		if !strings.HasPrefix(section, "# ") || strings.Contains(section, "\n\n") {
			t.Fatalf("INFO reply %q: malformed section %q", reply, section)
		}
		header, _, _ := strings.Cut(section, "\r\n")
		headers = append(headers, strings.TrimPrefix(header, "# "))
	}
	return headers
}

// INFO takes Redis 7's section arguments: one or more names in any case,
// all, default, everything; an unknown section gives an empty reply.
func TestInfoSections(t *testing.T) {
	tp := startProxy(t, 2, "")
	c := tp.client(t)
	every := []string{"Server", "Clients", "Memory", "Persistence", "Replication", "Keyspace"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, every},
		{[]string{"default"}, every},
		{[]string{"ALL"}, every},
		{[]string{"everything"}, every},
		{[]string{"keyspace"}, []string{"Keyspace"}},
		{[]string{"KeySpace"}, []string{"Keyspace"}},
		{[]string{"keyspace", "server"}, []string{"Server", "Keyspace"}},
		{[]string{"clients", "clients", "memory"}, []string{"Clients", "Memory"}},
		{[]string{"bogus", "replication"}, []string{"Replication"}},
		{[]string{"keyspace", "default"}, every},
		{[]string{"bogus"}, nil},
		{[]string{"stats"}, nil},
	} {
		got := infoHeaders(t, do(t, c, append([]string{"INFO"}, tc.args...)...))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("INFO %v: sections %v, want %v", tc.args, got, tc.want)
		}
	}
	// redis-server's own reply for a section it does not have.
	single := proxytest.StartRedis(t).Client(t)
	if got, want := do(t, c, "INFO", "bogus"), do(t, single, "INFO", "bogus"); got != want {
		t.Errorf("INFO bogus = %q, redis-server says %q", got, want)
	}
}

// INFO has the fields dashboards read: used_memory (the proxy's own),
// used_memory_human, maxmemory (the Go runtime's memory limit, 0 without
// one) and uptime_in_days.
func TestInfoMemoryAndUptime(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	field := func(info, name string) string {
		t.Helper()
		m := regexp.MustCompile(`\r\n` + name + `:([^\r]*)\r\n`).FindStringSubmatch(info)
		if m == nil {
			t.Fatalf("INFO has no %s: %q", name, info)
		}
		return m[1]
	}
	info := do(t, c, "INFO")
	if n, err := strconv.ParseUint(field(info, "used_memory"), 10, 64); err != nil || n == 0 {
		t.Errorf("used_memory = %q, want a positive number", field(info, "used_memory"))
	} else if human := field(info, "used_memory_human"); human != humanBytes(n) {
		t.Errorf("used_memory_human = %q for used_memory %d, want %q", human, n, humanBytes(n))
	}
	if got := field(info, "maxmemory"); got != "0" {
		t.Errorf("maxmemory = %q without a memory limit, want 0", got)
	}
	if got := field(info, "maxmemory_human"); got != "0B" {
		t.Errorf("maxmemory_human = %q without a memory limit, want 0B", got)
	}
	if got := field(info, "uptime_in_days"); got != "0" {
		t.Errorf("uptime_in_days = %q, want 0", got)
	}
	saved := debug.SetMemoryLimit(3 << 30)
	defer debug.SetMemoryLimit(saved)
	info = do(t, c, "INFO", "memory")
	if got := field(info, "maxmemory"); got != strconv.Itoa(3<<30) {
		t.Errorf("maxmemory = %q with a 3 GiB memory limit, want %d", got, 3<<30)
	}
	if got := field(info, "maxmemory_human"); got != "3.00G" {
		t.Errorf("maxmemory_human = %q with a 3 GiB memory limit, want 3.00G", got)
	}
}

// humanBytes writes sizes as Redis' *_human fields do.
func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1.00K"}, {1536, "1.50K"}, {1<<20 - 1, "1024.00K"},
		{1 << 20, "1.00M"}, {5 << 30, "5.00G"}, {3 << 40, "3.00T"}, {7 << 50, "7.00P"}, {1 << 60, "1152921504606846976B"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	// redis-server's own used_memory_human for its used_memory.
	info := do(t, proxytest.StartRedis(t).Client(t), "INFO", "memory")
	m := regexp.MustCompile(`used_memory:(\d+)\r\nused_memory_human:([^\r]+)\r\n`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("redis-server INFO memory: %q", info)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	if got := humanBytes(n); got != m[2] {
		t.Errorf("humanBytes(%d) = %q, redis-server says %q", n, got, m[2])
	}
}

// CLIENT KILL, UNBLOCK and TRACKING answer as redis-server does wherever
// the answer does not depend on which clients are connected.
func TestClientSubcommandsLikeRedis(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	single := proxytest.StartRedis(t).Client(t)
	for _, args := range [][]string{
		{"CLIENT", "KILL"},
		{"CLIENT", "KILL", "1.2.3.4:5"},
		{"CLIENT", "KILL", "ID"},
		{"CLIENT", "KILL", "ID", "abc"},
		{"CLIENT", "KILL", "ID", "0"},
		{"CLIENT", "KILL", "ID", "-3"},
		{"CLIENT", "KILL", "ID", "987654"},
		{"CLIENT", "KILL", "TYPE", "bogus"},
		{"CLIENT", "KILL", "TYPE", "pubsub"},
		{"CLIENT", "KILL", "TYPE", "master"},
		{"CLIENT", "KILL", "TYPE", "Replica"},
		{"CLIENT", "KILL", "TYPE", "slave"},
		{"CLIENT", "KILL", "USER", "nobody"},
		{"CLIENT", "KILL", "ADDR", "1.2.3.4:5"},
		{"CLIENT", "KILL", "LADDR", "1.2.3.4:5"},
		{"CLIENT", "KILL", "a", "b", "c"},
		{"CLIENT", "KILL", "ID", "987654", "TYPE"},
		{"CLIENT", "KILL", "SKIPME", "maybe"},
		{"CLIENT", "KILL", "SKIPME", "yes", "ID", "987654"},
		{"CLIENT", "UNBLOCK"},
		{"CLIENT", "UNBLOCK", "abc"},
		{"CLIENT", "UNBLOCK", "5"},
		{"CLIENT", "UNBLOCK", "5", "TIMEOUT"},
		{"CLIENT", "UNBLOCK", "5", "error"},
		{"CLIENT", "UNBLOCK", "5", "bogus"},
		{"CLIENT", "UNBLOCK", "abc", "bogus"},
		{"CLIENT", "UNBLOCK", "5", "1", "2"},
		{"CLIENT", "TRACKING"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKING", "OFF", "bcast", "noloop", "prefix", "a:"},
		{"CLIENT", "TRACKING", "maybe"},
		{"CLIENT", "TRACKING", "off", "junk"},
		{"CLIENT", "TRACKING", "off", "redirect", "abc"},
		{"CLIENT", "TRACKING", "off", "redirect", "987654"},
	} {
		want := do(t, single, args...)
		if got := do(t, c, args...); got != want {
			t.Errorf("%v = %q, redis-server says %q", args, got, want)
		}
	}
	if got := do(t, c, "CLIENT", "TRACKING", "on"); got != "+OK\r\n" {
		t.Errorf("CLIENT TRACKING ON = %q, want +OK", got)
	}
	if got := do(t, c, "CLIENT", "TRACKING", "on", "junk"); got != "-ERR syntax error\r\n" {
		t.Errorf("CLIENT TRACKING ON junk = %q, want the syntax error", got)
	}
	if got := do(t, c, "PING"); got != "+PONG\r\n" {
		t.Errorf("PING after the CLIENT commands = %q", got)
	}
}

// proxyClients is how many clients the proxy serves on tp's pool.
func (tp *testPool) proxyClients() int {
	return int(tp.srv.poolList()[0].stats.ClientConnections.Load())
}

// waitProxyClients waits until tp's pool has n clients.
func (tp *testPool) waitProxyClients(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tp.proxyClients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients, want %d", tp.proxyClients(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// clientGone fails t unless the proxy closed c's connection.
func clientGone(t *testing.T, c *proxytest.Conn) {
	t.Helper()
	if r, err := c.Read(); err == nil {
		t.Fatalf("killed client read %q, want its connection closed", r.Raw())
	}
}

func clientID(t *testing.T, c *proxytest.Conn) string {
	t.Helper()
	return strings.TrimSuffix(strings.TrimPrefix(do(t, c, "CLIENT", "ID"), ":"), "\r\n")
}

// CLIENT KILL closes the proxy's own clients of the pool that match, in
// both of Redis' forms.
func TestClientKill(t *testing.T) {
	tp := startProxy(t, 1, "")
	admin := tp.client(t)
	addr := func(c *proxytest.Conn) string { return c.NetConn().LocalAddr().String() }

	b := tp.client(t)
	runSteps(t, admin, step(":1\r\n", "CLIENT", "KILL", "ID", clientID(t, b)))
	clientGone(t, b)

	// A round trip first: the proxy lists a client once its session has
	// started, which can be after the kernel accepted the connection.
	b = tp.client(t)
	do(t, b, "PING")
	runSteps(t, admin,
		step("+OK\r\n", "CLIENT", "KILL", addr(b)),
		step("-ERR No such client\r\n", "CLIENT", "KILL", addr(b)),
	)
	clientGone(t, b)

	b = tp.client(t)
	do(t, b, "PING")
	runSteps(t, admin,
		step(":0\r\n", "CLIENT", "KILL", "ADDR", addr(b), "ID", "987654"),
		step(":1\r\n", "CLIENT", "KILL", "ADDR", addr(b), "LADDR", tp.addr, "TYPE", "normal", "USER", "default"),
	)
	clientGone(t, b)

	others := []*proxytest.Conn{tp.client(t), tp.client(t), tp.client(t)}
	for _, o := range others {
		do(t, o, "PING")
	}
	tp.waitProxyClients(t, 4)
	runSteps(t, admin,
		step(":0\r\n", "CLIENT", "KILL", "ID", clientID(t, admin)), // SKIPME yes is the default
		step(":0\r\n", "CLIENT", "KILL", "TYPE", "pubsub"),
		step(":3\r\n", "CLIENT", "KILL", "TYPE", "normal"),
		step("+PONG\r\n", "PING"),
	)
	for _, o := range others {
		clientGone(t, o)
	}
	tp.waitProxyClients(t, 1)

	// A client may kill itself: it gets the reply, then the connection closes.
	self := tp.client(t)
	runSteps(t, self, step(":1\r\n", "CLIENT", "KILL", "ID", clientID(t, self), "SKIPME", "no"))
	clientGone(t, self)
	self = tp.client(t)
	runSteps(t, self, step("+OK\r\n", "CLIENT", "KILL", addr(self)))
	clientGone(t, self)
	tp.waitProxyClients(t, 1)
}

// CLIENT KILL reaches only the clients of its own pool.
func TestClientKillOnlyItsPool(t *testing.T) {
	r := proxytest.StartRedis(t)
	alpha := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	beta := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	startServer(t, fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1\nbeta:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1\n", alpha, r.Addr, beta, r.Addr), Options{})
	a, a2, b := proxytest.Dial(t, alpha), proxytest.Dial(t, alpha), proxytest.Dial(t, beta)
	do(t, a2, "PING")
	runSteps(t, a,
		step(":0\r\n", "CLIENT", "KILL", "ID", clientID(t, b)),
		step(":1\r\n", "CLIENT", "KILL", "TYPE", "normal"),
	)
	clientGone(t, a2)
	runSteps(t, b, step("+PONG\r\n", "PING"))
}

// A killed client's goroutine ends cleanly: a request it has in flight
// finishes on the server without disturbing other clients' replies, and
// the connection it had pinned for a transaction is closed.
func TestClientKillMidRequestAndTransaction(t *testing.T) {
	tp := startProxy(t, 1, "  hash_tag: \"{}\"\n")
	r := tp.redises[0]
	admin := tp.client(t)
	runSteps(t, admin, step("+OK\r\n", "SET", "{k}a", "v"))

	busy := tp.client(t)
	id := clientID(t, busy)
	busy.Send(busyFor("{k}a", 500*time.Millisecond)...)
	busy.Flush()
	runSteps(t, admin, step(":1\r\n", "CLIENT", "KILL", "ID", id))
	clientGone(t, busy)
	runSteps(t, admin, // queued behind the script on the shared connection
		step("$1\r\nv\r\n", "GET", "{k}a"),
		step("+OK\r\n", "SET", "{k}a", "w"),
		step("$1\r\nw\r\n", "GET", "{k}a"),
	)
	tp.waitProxyClients(t, 1)

	inTx := tp.client(t)
	id = clientID(t, inTx)
	runSteps(t, inTx,
		step("+OK\r\n", "WATCH", "{k}a"),
		step("+OK\r\n", "MULTI"),
		step("+QUEUED\r\n", "SET", "{k}a", "never"),
	)
	waitConnectedClients(t, r, 3) // the shared connection, the pinned one, this one
	runSteps(t, admin, step(":1\r\n", "CLIENT", "KILL", "ID", id))
	clientGone(t, inTx)
	waitConnectedClients(t, r, 2)
	tp.waitProxyClients(t, 1)
	runSteps(t, admin, step("$1\r\nw\r\n", "GET", "{k}a"))
}
