package acl

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// diffUsers is the ACL file of the differential test: a user for each kind
// of rule, with the password it authenticates with ("" for none).
var diffUsers = []struct {
	line     string
	password string
}{
	{"user default on nopass ~* &* +@all", "x"},
	{"user reader on >rpass ~* &* +@read", "rpass"},
	{"user app on >apass ~app:* +@all", "apass"},
	{"user rw on >rwpass %R~r:* %W~w:* +@all", "rwpass"},
	{"user both on >bpass %RW~b:* %r~r:* %w~w:* +@all", "bpass"},
	{"user writer on >wpass %W~* &* +@all", "wpass"},
	{"user news on >npass ~* &news.* &chat.sport +@all", "npass"},
	{"user safe on >spass ~* &* +@all -@dangerous", "spass"},
	{"user off off >opass ~* &* +@all", ""},
	{"user free on nopass ~free:* +@read", "anything"},
	{"user sel on >selpass ~a:* +get (~b:* +set) (%R~r:* &news.* +@read +@pubsub)", "selpass"},
	{"user cfg on >cpass -@all +config|get +ping +select|0 +client|id +object|encoding ~*", "cpass"},
	{"user ping on >ppass -@all +ping", "ppass"},
	{"user mixed on >mpass ~* &* +@all -config|set -flushall -@scripting +eval_ro +client", "mpass"},
	{"user empty on >epass", "epass"},
	{"user hashed on #ee79660cb3c15a024733d10eaca3d55e07c1fef3ac417740c05adab34a3c146e ~* +@all", "hpass"},
	{"user rm on >a >b <a !3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d >c ~* +@all", "c"},
	{"user resetter on >x ~* +@all reset on >y resetkeys ~k:* allchannels resetchannels &c nocommands +get allcommands -@write", "y"},
	{"user reset2 on >r2 &news.* +@all (&news.* +publish) reset on >r2 ~* +get +publish", "r2"},
	{"user rp on >old nopass resetpass >new ~* +@all", "new"},
	{"user clear on >clr ~* &* +@all (~x +get) clearselectors -get", "clr"},
	{"user cats ON >catpass allkeys allchannels -@all +@STRING +@list -lmove +@pubsub -publish", "catpass"},
	{"user sorter on >sortpass %R~* %W~w:* +@all", "sortpass"},
	{"user sortsel on >sspass ~r:* ~w:* +@all (%R~* -sort)", "sspass"},
}

// diffCommands are the requests every user of diffUsers runs.
var diffCommands = [][]string{
	words("GET app:1"), words("GET r:1"), words("GET w:1"), words("GET b:1"), words("GET x"),
	words("GET a:1"), words("GET k:1"), words("GET free:1"),
	words("SET app:1 v"), words("SET w:1 v"), words("SET r:1 v"), words("SET b:1 v"), words("SET b:1 v"),
	words("SET w:1 v GET"), words("SET r:1 v GET"), words("SET b:1 v EX 100 get"),
	words("GETDEL w:1"), words("GETRANGE w:1 0 1"), words("APPEND w:1 x"), words("SETNX w:2 v"),
	words("MGET app:1 app:2"), words("MGET app:1 x"), words("MGET r:1 w:1"), words("MGET r:1 r:2"),
	words("MSET app:1 v w:1 v"), words("MSET w:1 v w:2 v"),
	words("DEL app:1 w:1"), words("DEL w:1"), words("EXISTS r:1 w:1"), words("EXISTS r:1"),
	words("COPY r:1 w:2"), words("COPY w:1 w:2"), words("RENAME r:1 w:1"),
	words("LMOVE r:1 w:1 LEFT RIGHT"), words("LMOVE w:1 w:2 LEFT RIGHT"), words("LPUSH w:1 x"), words("LRANGE r:1 0 -1"),
	words("SORT r:1"), words("SORT r:1 STORE w:1"), words("SORT_RO r:1"), words("SORT r:1 LIMIT 0 1 STORE r:2"),
	words("SORT r:1 BY w_*"), words("SORT r:1 BY nosort"), words("SORT r:1 GET #"), words("SORT r:1 BY nosort GET r:*"),
	words("SORT_RO r:1 GET w_*"), words("SORT r:1 BY w_* STORE w:1"), words("SORT r:1 NOSUCH GET #"),
	{"EVAL", "return 1", "1", "app:1"}, {"EVAL", "return 1", "2", "r:1", "w:1"}, {"EVAL", "return 1", "0"},
	{"EVAL_RO", "return 1", "1", "r:1"}, {"FCALL", "f", "1", "w:1"},
	words("BITFIELD r:1 GET u8 0"), words("BITFIELD w:1 SET u8 0 1"), words("BITFIELD_RO r:1 GET u8 0"),
	words("GEORADIUS r:1 0 0 1 km STORE w:1"), words("XREAD STREAMS r:1 0"), words("XADD w:1 * f v"),
	words("OBJECT ENCODING r:1"), words("OBJECT ENCODING x"), words("TYPE r:1"), words("TOUCH r:1"),
	words("PUBLISH news.1 hi"), words("PUBLISH chat.sport hi"), words("PUBLISH x hi"), words("SPUBLISH news.1 hi"),
	words("SUBSCRIBE news.1 news.2"), words("SUBSCRIBE news.1 x"), words("SSUBSCRIBE news.1"),
	words("PSUBSCRIBE news.*"), words("PSUBSCRIBE news.1*"), words("PSUBSCRIBE chat.sport"), words("PSUBSCRIBE chat.*"),
	words("PSUBSCRIBE news.* x"), words("UNSUBSCRIBE x"), words("PUNSUBSCRIBE x"), words("PUBSUB CHANNELS"),
	words("CONFIG GET maxmemory"), words("CONFIG SET maxmemory 0"), words("CONFIG RESETSTAT"),
	words("CLIENT ID"), words("CLIENT GETNAME"), words("CLIENT LIST"), words("CLIENT NO-EVICT off"),
	words("SELECT 0"), words("SELECT 1"), words("select 0"),
	words("KEYS *"), words("SCAN 0"), words("DBSIZE"), words("FLUSHDB"), words("FLUSHALL"), words("SWAPDB 0 0"),
	words("PING"), words("ECHO x"), words("INFO server"), words("ACL WHOAMI"), words("ACL LIST"), words("ACL CAT"),
	words("AUTH nosuch x"), words("HELLO 2"), words("MULTI"), words("WATCH r:1"), words("WAIT 0 0"),
	words("MOVE r:1 1"), words("DEBUG SLEEP 0"), words("LASTSAVE"), words("TIME"),
}

func words(s string) []string { return strings.Fields(s) }

// The package decides on every request of diffCommands for every user of
// diffUsers as redis-server 7.0 does with the same ACL file: ACL DRYRUN's
// verdict and words, the error a client authenticated as the user gets,
// byte for byte, and which passwords AUTH takes.
func TestCheckLikeRedis(t *testing.T) {
	var file strings.Builder
	for _, u := range diffUsers {
		file.WriteString(u.line + "\n")
	}
	path := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--aclfile", path, "--enable-debug-command", "yes"))
	admin := r.Client(t)
	// Passwords removed, replaced and hashed, users off or unknown.
	for _, a := range [][2]string{{"rp", "old"}, {"rp", "new"}, {"rm", "a"}, {"rm", "b"}, {"hashed", "hpass"},
		{"off", "opass"}, {"nosuch", "x"}, {"free", ""}, {"default", "any"}, {"app", ""}} {
		checkAuthLikeRedis(t, r, users, a[0], a[1])
	}
	var scratch Scratch
	compared, refused := 0, map[Denial]int{}
	for _, du := range diffUsers {
		name := strings.Fields(du.line)[1]
		u := users.Lookup([]byte(name))
		if u == nil {
			t.Fatalf("user %q not parsed", name)
		}
		checkAuthLikeRedis(t, r, users, name, du.password)
		checkAuthLikeRedis(t, r, users, name, du.password+"-wrong")
		for _, args := range diffCommands {
			bargs := make([][]byte, len(args))
			for i, a := range args {
				bargs[i] = []byte(a)
			}
			c := command.Lookup(bargs[0])
			if c.HasSubcommands() {
				c = c.Subcommand(bargs[1])
			}
			v := u.Check(c, bargs, &scratch)

			dry, err := admin.Do(append([]string{"ACL", "DRYRUN", name}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if dry.IsError() {
				t.Fatalf("ACL DRYRUN %s %q: %s", name, args, dry)
			}
			if got := v.DryRun(bargs); got != string(dry.Str) {
				t.Errorf("user %s, %q: DryRun = %q, ACL DRYRUN says %q", name, args, got, dry.Str)
			}
			compared++
			refused[v.Denial]++

			if du.password == "" {
				continue // the user cannot log in to show the client's error
			}
			conn := r.Client(t)
			if rep, err := conn.Do("AUTH", name, du.password); err != nil || rep.IsError() {
				t.Fatalf("AUTH %s: %v %v", name, rep, err)
			}
			rep, err := conn.Do(args...)
			conn.Close()
			if err != nil {
				t.Fatalf("user %s, %q: %v", name, args, err)
			}
			noperm := rep.IsError() && (bytes.HasPrefix(rep.Str, []byte("NOPERM")) ||
				bytes.HasSuffix(rep.Str, []byte("denied due to insufficient ACL permissions.")))
			switch {
			case noperm && v.OK():
				t.Errorf("user %s, %q: allowed; redis-server answers %q", name, args, rep.Raw())
			case !noperm && !v.OK():
				t.Errorf("user %s, %q: refused with %q; redis-server answers %q", name, args, v.AppendError(nil), rep.Raw())
			case noperm && !bytes.Equal(v.AppendError(nil), rep.Raw()):
				t.Errorf("user %s, %q: error %q, redis-server's %q", name, args, v.AppendError(nil), rep.Raw())
			case noperm && v.Message() != string(rep.Str):
				t.Errorf("user %s, %q: Message %q, redis-server's %q", name, args, v.Message(), rep.Str)
			}
		}
	}
	t.Logf("compared %d verdicts: %d allowed, %d commands, %d keys, %d channels and %d SORT options refused",
		compared, refused[Allowed], refused[DeniedCommand], refused[DeniedKey], refused[DeniedChannel], refused[DeniedSortOption])
}

// checkAuthLikeRedis compares Authenticate with AUTH on redis-server.
func checkAuthLikeRedis(t *testing.T, r *proxytest.Redis, users *Users, name, password string) {
	t.Helper()
	conn := r.Client(t)
	defer conn.Close()
	rep, err := conn.Do("AUTH", name, password)
	if err != nil {
		t.Fatal(err)
	}
	got := users.Authenticate([]byte(name), []byte(password))
	switch {
	case rep.IsError() && string(rep.Raw()) != "-WRONGPASS invalid username-password pair or user is disabled.\r\n":
		t.Fatalf("AUTH %s %s: redis-server answers %q", name, password, rep.Raw())
	case rep.IsError() && got != nil:
		t.Errorf("Authenticate(%q, %q) = %s; redis-server refuses it", name, password, got.Name())
	case !rep.IsError() && (got == nil || got.Name() != name):
		t.Errorf("Authenticate(%q, %q) = %v; redis-server takes it", name, password, got)
	}
}

// ACL files redis-server refuses to start with are refused by Parse, and
// those it takes are taken.
func TestParseLikeRedis(t *testing.T) {
	tests := []struct {
		file string
		ok   bool
	}{
		{"user alice on >p ~* +@all\n", true},
		{"\n   \nuser alice on >p ~* +@all\r\n\n", true},
		{"user alice  on\t >p  ~*  +@all \n", true},
		{"user alice on (~a +get) (  ~b  +set  )\n", true},
		{"user alice on (~a +get\n", false},
		{"user alice on (\"~a b\" +get)\n", false},
		{"user alice on (\"~ab +get)\n", true}, // unbalanced quotes: an empty selector
		{"# a comment\nuser alice on\n", false},
		{"user alice on\nuser alice off\n", false},
		{"user\n", false},
		{"User alice on\n", false},
		{"user alice on +nosuch\n", false},
		{"user alice on +@nosuch\n", false},
		{"user alice on +get|x\n", true},
		{"user alice on +config|nosuch\n", false},
		{"user alice on +config|get|x\n", false},
		{"user alice on -select|0\n", false},
		{"user alice on +select|\n", false},
		{"user alice on #abc\n", false},
		{"user alice on #EE79660CB3C15A024733D10EACA3D55E07C1FEF3AC417740C05ADAB34A3C146E\n", false},
		{"user alice on <nosuch\n", false},
		{"user alice on ~* ~a\n", false},
		{"user alice on allkeys ~a\n", false},
		{"user alice on &* &a\n", false},
		{"user alice on %RW~a %wr~b\n", true},
		{"user alice on %~c\n", false},
		{"user alice on %RR~a\n", false},
		{"user alice on %X~a\n", false},
		{"user alice on %R\n", true},
		{"user alice on (on)\n", false},
		{"user alice on ()\n", true},
		{"user alice on nosuchrule\n", false},
		{"user alice on >\n", true},
		{"user default off\n", true},
		{"user  on\n", true}, // the user called ""
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), "users.acl")
		if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Parse("users.acl", []byte(tc.file))
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q): %v, want ok %v", tc.file, err, tc.ok)
		}
		if redisOK := redisStarts(t, bin, path); redisOK != tc.ok {
			t.Errorf("redis-server with %q starts: %v, want %v", tc.file, redisOK, tc.ok)
		}
	}
}

// redisStarts reports whether redis-server starts with the ACL file at
// path: it is killed once it logs that it is ready, or exits on the
// error.
func redisStarts(t *testing.T, bin, path string) bool {
	t.Helper()
	cmd := exec.Command(bin, "--port", strconv.Itoa(proxytest.FreePort(t)), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--aclfile", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go scanForReady(out, ready)
	var started bool
	select {
	case started = <-ready:
	case <-time.After(proxytest.StartTimeout):
		t.Errorf("redis-server neither started nor failed with %s", path)
	}
	cmd.Process.Kill()
	<-ready // the log is read to its end before Wait
	cmd.Wait()
	return started
}

// scanForReady reads redis-server's log to its end, sending true when it
// says it is ready, false if it ends without; then one more value, when
// it ends.
func scanForReady(log io.Reader, ready chan<- bool) {
	sc := bufio.NewScanner(log)
	said := false
	for sc.Scan() {
		if !said && strings.Contains(sc.Text(), "Ready to accept connections") {
			ready <- true
			said = true
		}
	}
	io.Copy(io.Discard, log)
	if !said {
		ready <- false
	}
	ready <- false
}

// randomRules are the rules random ACL files are made of: good ones, bad
// ones, and ones whose meaning depends on what came before.
var randomRules = []string{
	"on", "off", "ON", "nopass", "resetpass", ">pw", "<pw", "<nosuch", "#" + strings.Repeat("ab", 32),
	"#" + strings.Repeat("AB", 32), "!" + strings.Repeat("ab", 32), "#abc",
	"~a:*", "~r:*", "%R~r:*", "%W~w:*", "%RW~a:*", "%wr~w:*", "%~y", "%X~z", "%R", "%RR~a", "~*", "allkeys", "resetkeys",
	"&c.*", "&c.1", "&*", "allchannels", "resetchannels",
	"+get", "-get", "+set", "+mget", "+config|get", "-config|get", "+config|nosuch", "+get|x", "-get|x", "+select|0",
	"+client", "-client|kill", "+sort", "+@read", "-@read", "+@write", "-@dangerous", "+@admin", "+@nosuch", "+nosuch",
	"+@all", "-@all", "allcommands", "nocommands", "+@pubsub", "-publish", "+@keyspace", "-flushall",
	"reset", "clearselectors", "()", "(~a:* +get)", "(%R~* +@read)", "(&c.* +@pubsub)", "(on)", "(\"~q\" +get)",
	")", "", "bogus", "skip-sanitize-payload", "sanitize-payload",
}

// randomCommands are the requests checked for every user of a random file
// redis-server takes.
var randomCommands = [][]string{
	words("GET a:1"), words("GET r:1"), words("SET w:1 v"), words("SET r:1 v GET"), words("MGET a:1 r:1"),
	words("CONFIG GET maxmemory"), words("CONFIG SET maxmemory 0"), words("SELECT 0"), words("SELECT 1"),
	words("PUBLISH c.1 m"), words("PSUBSCRIBE c.*"), words("SUBSCRIBE c.2"), words("FLUSHALL"), words("CLIENT ID"),
	words("CLIENT KILL ID 1"), words("PING"), words("SORT r:1 GET #"), words("DEL a:1 w:1"), words("AUTH a b"),
}

// Random ACL files are taken or refused, with problems on the same lines,
// as redis-server's ACL LOAD takes or refuses them, and the users of
// those it takes have the same permissions as in redis-server.
func TestRandomFilesLikeRedis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.acl")
	const admin = "user default on nopass ~* &* +@all\n"
	if err := os.WriteFile(path, []byte(admin), 0o600); err != nil {
		t.Fatal(err)
	}
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--aclfile", path))
	conn := r.Client(t)
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"alice", "bob", "carol"}
	lineRE := regexp.MustCompile(`users\.acl:(\d+)|on line (\d+)`)
	taken := 0
	const files = 1000
	for range files {
		var file strings.Builder
		file.WriteString(admin)
		lines := 1 + rng.IntN(3)
		for range lines {
			if rng.IntN(20) == 0 {
				file.WriteString("# a comment\n")
				continue
			}
			file.WriteString("user " + names[rng.IntN(len(names))])
			for range rng.IntN(8) {
				if rng.IntN(10) == 0 {
					// A selector spread over arguments, closed (an
					// unclosed one crashes redis-server 7.0.15).
					file.WriteString(" (~b:*  +set)")
					continue
				}
				file.WriteString(" " + randomRules[rng.IntN(len(randomRules))])
			}
			file.WriteString("\n")
		}
		data := file.String()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := conn.Do("ACL", "LOAD")
		if err != nil {
			t.Fatalf("ACL LOAD of %q: %v", data, err)
		}
		users, perr := Parse("users.acl", []byte(data))
		if rep.IsError() {
			if perr == nil {
				t.Errorf("Parse(%q) takes it; redis-server says %s", data, rep.Str)
				continue
			}
			var redisLines, ours []string
			for _, m := range lineRE.FindAllStringSubmatch(string(rep.Str), -1) {
				redisLines = append(redisLines, m[1]+m[2])
			}
			for _, p := range perr.(*Error).Problems {
				ours = append(ours, strconv.Itoa(p.Line))
			}
			if strings.Join(slices.Compact(redisLines), ",") != strings.Join(slices.Compact(ours), ",") {
				t.Errorf("Parse(%q): %v; redis-server: %s", data, perr, rep.Str)
			}
			continue
		}
		if perr != nil {
			t.Errorf("Parse(%q): %v; redis-server takes it", data, perr)
			continue
		}
		taken++
		var scratch Scratch
		for _, name := range users.Names() {
			u := users.Lookup([]byte(name))
			for _, args := range randomCommands {
				bargs := make([][]byte, len(args))
				for i, a := range args {
					bargs[i] = []byte(a)
				}
				c := command.Lookup(bargs[0])
				if c.HasSubcommands() {
					c = c.Subcommand(bargs[1])
				}
				dry, err := conn.Do(append([]string{"ACL", "DRYRUN", name}, args...)...)
				if err != nil {
					t.Fatal(err)
				}
				if got := u.Check(c, bargs, &scratch).DryRun(bargs); got != string(dry.Str) {
					t.Errorf("file %q, user %s, %q: DryRun = %q, ACL DRYRUN says %q", data, name, args, got, dry.Str)
				}
			}
		}
	}
	t.Logf("%d of %d random files taken", taken, files)
}
