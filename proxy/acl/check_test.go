package acl

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/command"
)

// lookup is the spec of a command or subcommand ("object|encoding") as the
// proxy finds it.
func lookup(t testing.TB, name string) *command.Spec {
	t.Helper()
	c := command.LookupACL(name)
	if c == nil {
		t.Fatalf("no command %q", name)
	}
	return c
}

// parseRequest splits line into arguments and finds its command as the proxy
// does: by name, then by subcommand for a container handled by subcommand.
func parseRequest(t testing.TB, line string) (*command.Spec, [][]byte) {
	t.Helper()
	var args [][]byte
	for _, a := range strings.Fields(line) {
		args = append(args, []byte(a))
	}
	c := command.Lookup(args[0])
	if c == nil {
		t.Fatalf("no command %q", args[0])
	}
	if c.HasSubcommands() {
		c = c.Subcommand(args[1])
	}
	return c, args
}

func parseUsers(t testing.TB, file string) *Users {
	t.Helper()
	users, err := Parse("users.acl", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	return users
}

func TestCheck(t *testing.T) {
	users := parseUsers(t, strings.Join([]string{
		"user app on nopass ~app:* &app.* +@all -@dangerous",
		"user sel on nopass ~a:* +get (~b:* +set) (%R~c:* +@read)",
		"user first on nopass -@all +select|0 +SELECT|2",
	}, "\n"))
	tests := []struct {
		user, line string
		want       string // DryRun's words
		arg        int
	}{
		{"app", "GET app:1", "OK", 0},
		{"app", "GET other", "This user has no permissions to access the 'other' key", 1},
		{"app", "MSET app:1 v app:2 v other v", "This user has no permissions to access the 'other' key", 5},
		{"app", "FLUSHALL", "This user has no permissions to run the 'flushall' command", 0},
		{"app", "CONFIG SET maxmemory 0", "This user has no permissions to run the 'config|set' command", 0},
		{"app", "OBJECT ENCODING app:1", "OK", 0},
		{"app", "PUBLISH app.x m", "OK", 0},
		{"app", "PSUBSCRIBE app.*", "OK", 0},
		{"app", "PSUBSCRIBE app.x*", "This user has no permissions to access the 'app.x*' channel", 1},
		{"app", "AUTH x y", "OK", 0},
		{"sel", "GET a:1", "OK", 0},
		{"sel", "SET b:1 v", "OK", 0},
		{"sel", "GET c:1", "OK", 0},
		// The root refuses SET, the first selector its key: Redis names
		// the key, the reason ranked last.
		{"sel", "SET a:1 v", "This user has no permissions to access the 'a:1' key", 1},
		// Only the last selector allows MGET, and not its second key.
		{"sel", "MGET c:1 a:1", "This user has no permissions to access the 'a:1' key", 2},
		{"sel", "SET x v", "This user has no permissions to access the 'x' key", 1},
		{"sel", "DEL a:1", "This user has no permissions to run the 'del' command", 0},
		{"sel", "GET x", "This user has no permissions to access the 'x' key", 1},
		{"first", "SELECT 0", "OK", 0},
		{"first", "select 2", "OK", 0},
		{"first", "SELECT 1", "This user has no permissions to run the 'select' command", 0},
	}
	for _, tc := range tests {
		c, args := parseRequest(t, tc.line)
		v := users.Lookup([]byte(tc.user)).Check(c, args, nil)
		if got := v.DryRun(args); got != tc.want || v.Arg != tc.arg {
			t.Errorf("user %s, %s: %q at %d, want %q at %d", tc.user, tc.line, got, v.Arg, tc.want, tc.arg)
		}
	}
}

func TestVerdictErrors(t *testing.T) {
	users := parseUsers(t, "user u on nopass ~k &c +get +publish +client|id\n")
	tests := []struct{ line, want string }{
		{"GET k", ""},
		{"SET k v", "-NOPERM this user has no permissions to run the 'set' command\r\n"},
		{"CLIENT KILL x", "-NOPERM this user has no permissions to run the 'client|kill' command\r\n"},
		{"GET x", "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"},
		{"PUBLISH x m", "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"},
	}
	for _, tc := range tests {
		c, args := parseRequest(t, tc.line)
		v := users.Lookup([]byte("u")).Check(c, args, nil)
		if got := string(v.AppendError(nil)); got != tc.want {
			t.Errorf("%s: AppendError = %q, want %q", tc.line, got, tc.want)
		}
		if want := strings.TrimSuffix(strings.TrimPrefix(tc.want, "-"), "\r\n"); v.Message() != want {
			t.Errorf("%s: Message = %q, want %q", tc.line, v.Message(), want)
		}
		if v.OK() != (tc.want == "") {
			t.Errorf("%s: OK = %v", tc.line, v.OK())
		}
	}
}

// The check of a request allocates nothing, allowed or refused, once the
// scratch space has grown; nor does writing the refusal.
func TestCheckAllocs(t *testing.T) {
	users := parseUsers(t, "user u on nopass ~app:* %R~r:* &news.* +@all -@dangerous (~b:* +get)\n")
	u := users.Lookup([]byte("u"))
	var scratch Scratch
	buf := make([]byte, 0, 256)
	for _, line := range []string{
		"GET app:1", "GET b:1", "GET x", "SET r:1 v", "MGET app:1 app:2 app:3 r:1", "CONFIG GET maxmemory",
		"FLUSHALL", "PUBLISH news.1 m", "SUBSCRIBE news.1 x", "SORT r:1 STORE app:2", "SORT r:1 BY w_* GET #", "EVAL s 2 app:1 app:2",
	} {
		c, args := parseRequest(t, line)
		if n := testing.AllocsPerRun(100, func() { buf = u.Check(c, args, &scratch).AppendError(buf[:0]) }); n != 0 {
			t.Errorf("%s: Check allocates %v times", line, n)
		}
	}
}

// BenchmarkCheck is the cost per request of the ACL check: a GET allowed
// by a user with a few key patterns, the common case, and a few others.
func BenchmarkCheck(b *testing.B) {
	users := parseUsers(b, "user u on nopass ~session:* ~cache:* ~app:{*}:* %R~config:* &news.* +@all -@dangerous\n")
	u := users.Lookup([]byte("u"))
	for _, line := range []string{"GET app:{42}:name", "GET session:abc", "MGET cache:1 cache:2 cache:3", "SET config:x v", "PUBLISH news.1 m"} {
		b.Run(strings.Fields(line)[0]+"_"+strings.Fields(line)[1], func(b *testing.B) {
			c, args := parseRequest(b, line)
			var scratch Scratch
			b.ReportAllocs()
			for b.Loop() {
				u.Check(c, args, &scratch)
			}
		})
	}
}
