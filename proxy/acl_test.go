package proxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// aclTestUsers is the ACL file of the users tests: a user of each kind the
// issue names, and the password each authenticates with.
var aclTestUsers = []struct{ line, password string }{
	{"user default on >defpass ~* &* +@all", "defpass"},
	{"user reader on >rpass ~* &* +@read +@connection", "rpass"},
	{"user app on >apass ~app:* &* +@all", "apass"},
	{"user rw on >rwpass %R~r:* %W~w:* &* +@all", "rwpass"},
	{"user news on >npass ~* &news.* +@all", "npass"},
	{"user safe on >spass ~* &* +@all -@dangerous", "spass"},
	{"user off off >opass ~* &* +@all", "opass"},
	{"user free on nopass ~free:* +@read +acl|whoami", "anything"},
	{"user sel on >selpass ~a:* +get (~b:* +set) (%R~r:* &news.* +@read +@pubsub)", "selpass"},
}

// aclTestCommands are the requests each user runs against the proxy and
// against redis-server.
var aclTestCommands = [][]string{
	strings.Fields("GET app:1"), strings.Fields("GET x"), strings.Fields("GET r:1"), strings.Fields("GET w:1"), strings.Fields("GET free:1"), strings.Fields("GET a:1"),
	strings.Fields("SET app:1 v"), strings.Fields("SET x v"), strings.Fields("SET w:1 v"), strings.Fields("SET r:1 v"), strings.Fields("SET b:1 v"),
	strings.Fields("SET w:1 v GET"), strings.Fields("MGET app:1 x"), strings.Fields("MGET app:1 app:2"), strings.Fields("MSET app:1 v x v"),
	strings.Fields("DEL w:1"), strings.Fields("DEL r:1"), strings.Fields("EXISTS r:1"), strings.Fields("INCR app:n"), strings.Fields("LPUSH app:l x"),
	strings.Fields("SORT r:1 BY w_*"), strings.Fields("SORT r:1 GET #"),
	strings.Fields("PUBLISH news.1 hi"), strings.Fields("PUBLISH x hi"), strings.Fields("SPUBLISH news.1 hi"),
	strings.Fields("KEYS *"), strings.Fields("FLUSHALL"), strings.Fields("FLUSHDB"), strings.Fields("CONFIG GET maxmemory"), strings.Fields("DEBUG SLEEP 0"),
	strings.Fields("PING"), strings.Fields("ECHO x"), strings.Fields("SELECT 0"), strings.Fields("CLIENT ID"), strings.Fields("INFO server"),
	strings.Fields("ACL WHOAMI"), strings.Fields("ACL CAT"), strings.Fields("ACL LIST"), strings.Fields("ACL DRYRUN app get x"),
	{"EVAL", "return 1", "1", "app:1"}, {"EVAL", "return 1", "1", "x"},
	strings.Fields("OBJECT ENCODING x"), strings.Fields("TYPE app:1"), strings.Fields("WATCH x"),
}

// aclTestSubscribes each run on a connection of their own, since a
// subscription changes what the connection may send.
var aclTestSubscribes = [][]string{
	strings.Fields("SUBSCRIBE news.1"), strings.Fields("SUBSCRIBE news.1 x"), strings.Fields("PSUBSCRIBE news.*"), strings.Fields("PSUBSCRIBE *"),
	strings.Fields("SSUBSCRIBE news.1"), strings.Fields("SSUBSCRIBE x"),
}

func writeACLFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func aclTestFile(t *testing.T) string {
	t.Helper()
	var lines []string
	for _, u := range aclTestUsers {
		lines = append(lines, u.line)
	}
	return writeACLFile(t, lines...)
}

// aclRefused reports whether a reply is a refusal by the users' rules.
func aclRefused(raw string) bool {
	return strings.HasPrefix(raw, "-NOPERM") || strings.HasPrefix(raw, "-NOAUTH") ||
		strings.HasPrefix(raw, "-WRONGPASS") || strings.Contains(raw, "insufficient ACL permissions") ||
		strings.HasPrefix(raw, "-EXECABORT")
}

// clearAuthLimit forgets the failed AUTHs the server has counted.
func clearAuthLimit(s *Server) {
	s.authLimit.mu.Lock()
	clear(s.authLimit.addrs)
	s.authLimit.mu.Unlock()
}

// authAs dials addr and authenticates as user, failing the test unless
// AUTH says +OK.
func authAs(t *testing.T, addr, user, password string) *proxytest.Conn {
	t.Helper()
	c := proxytest.Dial(t, addr)
	if r := do(t, c, "AUTH", user, password); r != "+OK\r\n" {
		t.Fatalf("AUTH %s on %s = %q", user, addr, r)
	}
	return c
}

// Users of an acl_file get the verdicts and the error bytes redis-server
// gives with the same ACL file, for AUTH, every command, subscriptions and
// transactions, although the proxy's servers have no users of their own.
func TestACLLikeRedis(t *testing.T) {
	path := aclTestFile(t)
	tp := startProxy(t, 2, "  acl_file: "+path+"\n")
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--aclfile", path, "--enable-debug-command", "yes"))
	targets := []struct{ name, addr string }{{"proxy", tp.addr}, {"redis", r.Addr}}

	// Before AUTH, as the default user who needs a password.
	// PING is the exception: the proxy answers it before AUTH, for health
	// checks.
	for _, args := range [][]string{strings.Fields("GET x"), strings.Fields("AUTH wrong"), strings.Fields("AUTH defpass"),
		strings.Fields("AUTH off opass"), strings.Fields("AUTH nosuch x"), strings.Fields("AUTH free"), strings.Fields("AUTH free x y"), strings.Fields("HELLO 2 AUTH reader wrong"),
		strings.Fields("ACL WHOAMI")} {
		var got [2]string
		for i, tg := range targets {
			c := proxytest.Dial(t, tg.addr)
			got[i] = do(t, c, args...)
			c.Close()
		}
		if got[0] != got[1] && (aclRefused(got[0]) || aclRefused(got[1]) || args[0] == "AUTH") {
			t.Errorf("%q before AUTH: proxy %q, redis %q", args, got[0], got[1])
		}
	}
	clearAuthLimit(tp.srv)

	compared := 0
	for _, u := range aclTestUsers {
		name := strings.Fields(u.line)[1]
		var conns [2]*proxytest.Conn
		for i, tg := range targets {
			conns[i] = proxytest.Dial(t, tg.addr)
		}
		var auth [2]string
		for i := range targets {
			auth[i] = do(t, conns[i], "AUTH", name, u.password)
		}
		if auth[0] != auth[1] {
			t.Errorf("AUTH %s: proxy %q, redis %q", name, auth[0], auth[1])
		}
		if auth[1] != "+OK\r\n" {
			continue
		}
		for _, args := range aclTestCommands {
			var got [2]string
			for i := range targets {
				got[i] = do(t, conns[i], args...)
			}
			if aclRefused(got[0]) || aclRefused(got[1]) {
				compared++
				if got[0] != got[1] {
					t.Errorf("%s %q: proxy %q, redis %q", name, args, got[0], got[1])
				}
			}
		}
		for _, args := range aclTestSubscribes {
			var got [2]string
			for i, tg := range targets {
				c := authAs(t, tg.addr, name, u.password)
				got[i] = do(t, c, args...)
				c.Close()
			}
			if got[0] != got[1] && (aclRefused(got[0]) || aclRefused(got[1]) || strings.HasPrefix(args[0], "P")) {
				t.Errorf("%s %q: proxy %q, redis %q", name, args, got[0], got[1])
			}
		}
		// A refused command queued in MULTI aborts the EXEC.
		var tx [2]string
		for i := range targets {
			var b strings.Builder
			for _, args := range [][]string{strings.Fields("MULTI"), strings.Fields("SET x 1"), strings.Fields("GET x"), strings.Fields("EXEC"), strings.Fields("EXEC")} {
				b.WriteString(do(t, conns[i], args...))
			}
			tx[i] = b.String()
		}
		if tx[0] != tx[1] {
			t.Errorf("%s MULTI SET x GET x EXEC: proxy %q, redis %q", name, tx[0], tx[1])
		}
		for i := range targets {
			conns[i].Close()
		}
	}
	if compared < 50 {
		t.Errorf("only %d refusals compared", compared)
	}
}

// The check of an ACL user's permissions on the request path allocates
// nothing: a GET, a pipeline and a refused SET.
func TestACLCheckAllocatesNothing(t *testing.T) {
	path := writeACLFile(t, "user app on >apass ~app:* &* +@all -@dangerous (~sel:* +get)")
	tp := startProxy(t, 3, "  acl_file: "+path+"\n")
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := proxytest.AppendCommand(nil, "AUTH", "app", "apass")
	if _, err := conn.Write(auth); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	var pipeline []byte
	for i := 0; i < 16; i++ {
		pipeline = proxytest.AppendCommand(pipeline, "GET", fmt.Sprint("app:", i))
	}
	noPerm := "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
	for _, tc := range []struct {
		name  string
		req   []byte
		reply string
	}{
		{"direct", proxytest.AppendCommand(nil, "GET", "app:k"), "$-1\r\n"},
		{"pipeline", pipeline, strings.Repeat("$-1\r\n", 16)},
		{"selector", proxytest.AppendCommand(nil, "GET", "sel:k"), "$-1\r\n"},
		{"refused", proxytest.AppendCommand(nil, "SET", "x", "v"), noPerm},
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
