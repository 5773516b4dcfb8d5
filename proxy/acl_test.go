package proxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
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

// reloadUsers reloads tp with its pool's users read again from the
// acl_file at path, as a reload of the config file does.
func reloadUsers(t *testing.T, tp *testPool, path string) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users, err := acl.Parse(path, data)
	if err != nil {
		return err
	}
	cfg := &config.Config{Pools: append([]config.Pool(nil), tp.cfg.Pools...)}
	cfg.Pools[0].Users = users
	if err := tp.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	return nil
}

// A reload that changes the users takes effect for new AUTHs at once, and
// makes the clients of a user that is gone, off or changed authenticate
// again, while those of an unchanged user go on.
func TestACLReload(t *testing.T) {
	path := writeACLFile(t,
		"user default off",
		"user keep on >kpass ~* +@all",
		"user change on >cpass ~* +@all",
		"user disable on >dpass ~* +@all",
		"user remove on >rpass ~* +@all")
	tp := startProxy(t, 2, "  acl_file: "+path+"\n")
	clients := map[string]*proxytest.Conn{}
	for _, u := range []string{"keep", "change", "disable", "remove"} {
		clients[u] = authAs(t, tp.addr, u, u[:1]+"pass")
		if got := do(t, clients[u], "SET", "k", u); got != "+OK\r\n" {
			t.Fatalf("%s: SET = %q", u, got)
		}
	}
	os.WriteFile(path, []byte(strings.Join([]string{
		"user default off",
		"user keep on >kpass ~* +@all",
		"user change on >cpass ~* +@all -set",
		"user disable off >dpass ~* +@all",
		"user added on >apass ~* +@all"}, "\n")), 0o600)
	if err := reloadUsers(t, tp, path); err != nil {
		t.Fatal(err)
	}
	const noAuth = "-NOAUTH Authentication required.\r\n"
	for u, want := range map[string]string{"keep": "$4\r\nkeep\r\n", "change": noAuth, "disable": noAuth, "remove": noAuth} {
		if got := do(t, clients[u], "GET", "k"); got != want && !(u == "keep" && strings.HasPrefix(got, "$")) {
			t.Errorf("%s after the reload: GET = %q, want %q", u, got, want)
		}
	}
	if got := do(t, clients["change"], "AUTH", "change", "cpass"); got != "+OK\r\n" {
		t.Errorf("AUTH change again = %q", got)
	}
	if got := do(t, clients["change"], "SET", "k", "v"); got != "-NOPERM this user has no permissions to run the 'set' command\r\n" {
		t.Errorf("changed user's SET = %q, want its new rules' refusal", got)
	}
	if got := do(t, clients["disable"], "AUTH", "disable", "dpass"); got != "-WRONGPASS invalid username-password pair or user is disabled.\r\n" {
		t.Errorf("AUTH of a disabled user = %q", got)
	}
	authAs(t, tp.addr, "added", "apass")

	// A bad file is refused and the users stay as they were.
	os.WriteFile(path, []byte("user keep on >kpass ~* +nosuchcommand\n"), 0o600)
	if err := reloadUsers(t, tp, path); err == nil {
		t.Fatal("a bad acl_file parsed")
	}
	if got := do(t, clients["keep"], "GET", "k"); !strings.HasPrefix(got, "$") {
		t.Errorf("keep after a refused file: GET = %q", got)
	}
}

// ACL WHOAMI, CAT, LIST and USERS are answered from the pool's users, LIST
// without passwords or their hashes; the subcommands that would change
// the users are refused.
func TestACLLocalSubcommands(t *testing.T) {
	path := writeACLFile(t,
		"user default on nopass ~* &* +@all",
		"user alice on >secret #ee79660cb3c15a024733d10eaca3d55e07c1fef3ac417740c05adab34a3c146e ~app:* +@read +acl|whoami")
	tp := startProxy(t, 1, "  acl_file: "+path+"\n")
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--aclfile", path))
	c := tp.client(t)
	if got := do(t, c, "ACL", "WHOAMI"); got != "$7\r\ndefault\r\n" {
		t.Errorf("ACL WHOAMI = %q", got)
	}
	list := do(t, c, "ACL", "LIST")
	want := "*2\r\n$63\r\nuser alice on #<redacted> #<redacted> ~app:* +@read +acl|whoami\r\n$34\r\nuser default on nopass ~* &* +@all\r\n"
	if list != want {
		t.Errorf("ACL LIST = %q, want %q", list, want)
	}
	if strings.Contains(list, "secret") || strings.Contains(list, "ee79660c") {
		t.Errorf("ACL LIST shows a password: %q", list)
	}
	if got := do(t, c, "ACL", "USERS"); got != "*2\r\n$5\r\nalice\r\n$7\r\ndefault\r\n" {
		t.Errorf("ACL USERS = %q", got)
	}
	rc := r.Client(t)
	for _, args := range [][]string{
		strings.Fields("ACL CAT"), strings.Fields("ACL CAT read"), strings.Fields("ACL CAT nosuch"), strings.Fields("ACL cat a b"),
		strings.Fields("ACL DRYRUN alice get app:1"), strings.Fields("ACL DRYRUN alice get x"), strings.Fields("ACL DRYRUN alice set app:1 v"),
		strings.Fields("ACL DRYRUN nobody get x"), strings.Fields("ACL DRYRUN alice nosuch"), strings.Fields("ACL DRYRUN alice get"),
		strings.Fields("ACL DRYRUN alice config nosuch"), strings.Fields("ACL WHOAMI x"), strings.Fields("ACL NOSUCH"),
	} {
		got, want := do(t, c, args...), do(t, rc, args...)
		if args[1] == "CAT" && len(args) == 3 && args[2] == "read" {
			got, want = sortedArray(got), sortedArray(want)
		}
		if got != want {
			t.Errorf("%q: proxy %q, redis %q", args, got, want)
		}
	}
	for _, sub := range []string{"SETUSER", "DELUSER", "LOAD", "SAVE", "LOG", "GETUSER", "GENPASS"} {
		args := []string{"ACL", sub, "alice"}
		if sub == "LOAD" || sub == "SAVE" {
			args = args[:2]
		}
		want := "-ERR unsupported command 'acl|" + strings.ToLower(sub) + "' in shardproxy: " + whyACLFile + "\r\n"
		if got := do(t, c, args...); got != want {
			t.Errorf("%q = %q, want %q", args, got, want)
		}
	}
	ac := authAs(t, tp.addr, "alice", "secret")
	if got := do(t, ac, "ACL", "WHOAMI"); got != "$5\r\nalice\r\n" {
		t.Errorf("alice's ACL WHOAMI = %q", got)
	}
	if got := do(t, ac, "ACL", "LIST"); got != "-NOPERM this user has no permissions to run the 'acl|list' command\r\n" {
		t.Errorf("alice's ACL LIST = %q", got)
	}
}

// sortedArray is a RESP array of bulk strings with its elements sorted,
// for replies in no particular order.
func sortedArray(raw string) string {
	lines := strings.Split(strings.TrimSuffix(raw, "\r\n"), "\r\n")
	if len(lines) < 1 || !strings.HasPrefix(lines[0], "*") {
		return raw
	}
	var elems []string
	for i := 1; i+1 < len(lines); i += 2 {
		elems = append(elems, lines[i+1])
	}
	slices.Sort(elems)
	return lines[0] + " " + strings.Join(elems, " ")
}

// After authFailureLimit failed AUTHs from one address within
// authFailureWindow, AUTH from that address is refused without a password
// check until the window has passed; clients already authenticated go on,
// and every refusal is counted.
func TestAuthFailuresLimited(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	testHookAuthNow = func() time.Time { return time.Unix(0, now.Load()) }
	t.Cleanup(func() { testHookAuthNow = nil })
	tp := startProxy(t, 1, "  redis_auth: right\n", proxytest.RedisPassword("right"))
	authed := tp.client(t)
	if got := do(t, authed, "AUTH", "right"); got != "+OK\r\n" {
		t.Fatalf("AUTH = %q", got)
	}
	c := tp.client(t)
	const wrongPass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
	for i := 0; i < authFailureLimit; i++ {
		if got := do(t, c, "AUTH", "wrong"); got != wrongPass {
			t.Fatalf("failure %d: AUTH = %q", i+1, got)
		}
	}
	throttled := "-" + msgAuthThrottled + "\r\n"
	if got := do(t, c, "AUTH", "right"); got != throttled {
		t.Errorf("AUTH after %d failures = %q, want %q", authFailureLimit, got, throttled)
	}
	other := tp.client(t)
	if got := do(t, other, "HELLO", "2", "AUTH", "default", "right"); got != throttled {
		t.Errorf("HELLO AUTH from the same address = %q, want %q", got, throttled)
	}
	if got := do(t, authed, "SET", "k", "v"); got != "+OK\r\n" {
		t.Errorf("an authenticated client's SET = %q", got)
	}
	var snap stats.Snapshot
	tp.srv.Snapshot(&snap)
	if got := snap.Pools[0].Values[stats.AuthFailures]; got != authFailureLimit+2 {
		t.Errorf("auth failures counted = %d, want %d", got, authFailureLimit+2)
	}
	now.Add(int64(authFailureWindow))
	if got := do(t, c, "AUTH", "right"); got != "+OK\r\n" {
		t.Errorf("AUTH once the window passed = %q", got)
	}
}

// With server_auth_user, the proxy's server connections authenticate as
// that user, on RESP2 and RESP3 connections; what the user may not do
// reaches the client as the server's refusal, and a refused handshake as
// an error naming the server and the step.
func TestServerAuthUser(t *testing.T) {
	serverACL := writeACLFile(t, "user default off", "user proxy on >ppass ~* &* +@all -flushall -select")
	tp := startProxy(t, 1, "  server_auth_user: proxy\n  server_auth_password: ppass\n",
		proxytest.RedisArgs("--aclfile", serverACL))
	c := tp.client(t)
	if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	if got := do(t, c, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Errorf("GET = %q", got)
	}
	if got := do(t, c, "FLUSHALL"); got != "-NOPERM this user has no permissions to run the 'flushall' command\r\n" {
		t.Errorf("FLUSHALL = %q, want the server's refusal", got)
	}
	if got := do(t, tp.redises[0].Client(t), "GET", "k"); got != "-NOAUTH Authentication required.\r\n" {
		t.Errorf("the server's default user is not off: GET = %q", got)
	}
	testHookClientProto.Store(3)
	c3 := tp.client(t)
	do(t, c3, "PING") // the client exists, with RESP3
	testHookClientProto.Store(0)
	if got := do(t, c3, "GET", "k"); got != "$1\r\nv\r\n" {
		t.Errorf("RESP3 GET = %q", got)
	}

	// A user that may not SELECT fails the handshake of a pool with
	// redis_db.
	port := proxytest.FreePort(t)
	yaml := fmt.Sprintf("beta:\n  listen: 127.0.0.1:%d\n  redis: true\n  redis_db: 1\n  server_auth_user: proxy\n  server_auth_password: ppass\n  servers:\n    - %s:1 server0\n", port, tp.redises[0].Addr)
	startServer(t, yaml, Options{})
	bc := proxytest.Dial(t, fmt.Sprintf("127.0.0.1:%d", port))
	got := do(t, bc, "GET", "k")
	if want := "-ERR server server0 (" + tp.redises[0].Addr + "): SELECT refused: NOPERM this user has no permissions to run the 'select' command\r\n"; got != want {
		t.Errorf("GET through a handshake the server refuses = %q, want %q", got, want)
	}
}

// A reload closes a subscribed client whose user changed, which could
// not AUTH again before its next message, and keeps the subscribers of an
// unchanged user.
func TestACLReloadClosesSubscribersOfChangedUsers(t *testing.T) {
	path := writeACLFile(t, "user keep on >kpass &* +@all", "user change on >cpass &* +@all")
	tp := startProxy(t, 1, "  acl_file: "+path+"\n")
	keep, change := authAs(t, tp.addr, "keep", "kpass"), authAs(t, tp.addr, "change", "cpass")
	for _, c := range []*proxytest.Conn{keep, change} {
		if got := do(t, c, "SUBSCRIBE", "ch"); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe\r\n") {
			t.Fatalf("SUBSCRIBE = %q", got)
		}
	}
	os.WriteFile(path, []byte("user keep on >kpass &* +@all\nuser change on >cpass &other +@all\n"), 0o600)
	if err := reloadUsers(t, tp, path); err != nil {
		t.Fatal(err)
	}
	pub := tp.client(t)
	if got := do(t, pub, "PUBLISH", "ch", "hi"); got != ":1\r\n" {
		t.Errorf("PUBLISH = %q, want one receiver", got)
	}
	if r, err := change.Read(); err == nil {
		t.Errorf("the changed user's subscriber got %q, want its connection closed", r.Raw())
	}
	if r, err := keep.Read(); err != nil || !strings.Contains(string(r.Raw()), "hi") {
		t.Errorf("the unchanged user's subscriber: %q %v", r.Raw(), err)
	}
}

// CLIENT KILL USER kills the clients of that user, and only those.
func TestClientKillUser(t *testing.T) {
	path := writeACLFile(t, "user alice on >apass ~* +@all", "user bob on >bpass ~* +@all")
	tp := startProxy(t, 1, "  acl_file: "+path+"\n")
	alice, bob := authAs(t, tp.addr, "alice", "apass"), authAs(t, tp.addr, "bob", "bpass")
	if got := do(t, tp.client(t), "CLIENT", "KILL", "USER", "alice"); got != ":1\r\n" {
		t.Errorf("CLIENT KILL USER alice = %q, want :1", got)
	}
	if r, err := alice.Do("PING"); err == nil {
		t.Errorf("alice's client answered %q after CLIENT KILL USER alice", r.Raw())
	}
	if got := do(t, bob, "PING"); got != "+PONG\r\n" {
		t.Errorf("bob's PING = %q", got)
	}
	if got := do(t, bob, "CLIENT", "KILL", "USER", "carol"); got != "-ERR No such user 'carol'\r\n" {
		t.Errorf("CLIENT KILL USER carol = %q", got)
	}
	// CLIENT INFO names the client's user, as Redis does.
	if got := do(t, bob, "CLIENT", "INFO"); !strings.Contains(got, " user=bob ") {
		t.Errorf("bob's CLIENT INFO = %q, want user=bob", got)
	}
	if got := do(t, tp.client(t), "CLIENT", "INFO"); !strings.Contains(got, " user=default ") {
		t.Errorf("an unauthenticated client's CLIENT INFO = %q, want user=default", got)
	}
}
