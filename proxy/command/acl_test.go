package command

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/command/internal/redisinfo"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

func TestACLTable(t *testing.T) {
	all := ACLCommands()
	for i, c := range all {
		if c.ACLID() != i {
			t.Fatalf("%s: ACLID %d at %d", c.Name, c.ACLID(), i)
		}
		if LookupACL(strings.ToUpper(c.Name)) != c {
			t.Errorf("LookupACL(%q) is not the command", strings.ToUpper(c.Name))
		}
		for _, sub := range c.ACLSubcommands() {
			if sub.ACLContainer() != c {
				t.Errorf("%s: container of %s is %v", c.Name, sub.Name, sub.ACLContainer())
			}
		}
	}
	// CLIENT is handled whole, OBJECT by subcommand; ACL rules see the
	// subcommands of both.
	for _, name := range []string{"client|kill", "config|get", "object|encoding"} {
		if c := LookupACL(name); c == nil || c.Name != name {
			t.Errorf("LookupACL(%q) = %v", name, c)
		}
	}
	for _, name := range []string{"", "nosuch", "get|x", "config|nosuch", "config|get|x", "|get"} {
		if c := LookupACL(name); c != nil {
			t.Errorf("LookupACL(%q) = %s, want nil", name, c.Name)
		}
	}
	config := Lookup([]byte("config"))
	if got := config.ACLCommand([][]byte{[]byte("CONFIG"), []byte("Get"), []byte("x")}); got.Name != "config|get" {
		t.Errorf("CONFIG Get x checks the rules of %s", got.Name)
	}
	if got := config.ACLCommand([][]byte{[]byte("CONFIG"), []byte("nosuch")}); got != config {
		t.Errorf("CONFIG nosuch checks the rules of %s", got.Name)
	}
	if !LookupACL("config|set").InACLCategory("Dangerous") || LookupACL("get").InACLCategory("write") {
		t.Errorf("InACLCategory is wrong")
	}
}

func TestACLChannels(t *testing.T) {
	tests := []struct {
		name string
		argc int
		want string
	}{
		{"publish", 3, "1 2 false"},
		{"spublish", 3, "1 2 false"},
		{"subscribe", 4, "1 4 false"},
		{"ssubscribe", 2, "1 2 false"},
		{"psubscribe", 3, "1 3 true"},
		{"unsubscribe", 3, "0 0 false"},
		{"punsubscribe", 3, "0 0 false"},
		{"get", 2, "0 0 false"},
	}
	for _, tc := range tests {
		first, end, pattern := LookupACL(tc.name).ACLChannels(tc.argc)
		if got := fmt.Sprint(first, end, pattern); got != tc.want {
			t.Errorf("%s.ACLChannels(%d) = %s, want %s", tc.name, tc.argc, got, tc.want)
		}
	}
}

// AppendACLKeys finds the keys, and what the command does with each, that
// redis-server's COMMAND GETKEYSANDFLAGS finds: the same search its ACL
// check makes (getKeysFromCommandWithSpecs), for example arguments of
// every command with keys and for the arguments that change a key's flags.
func TestACLKeysMatchRedisGetKeysAndFlags(t *testing.T) {
	conn := proxytest.StartRedis(t).Client(t)
	docs, err := redisinfo.Docs(conn)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func([]redisinfo.Doc)
	walk = func(ds []redisinfo.Doc) {
		for _, d := range ds {
			walk(d.Subcommands)
			for _, args := range exampleArgs(strings.Split(d.Name, "|"), d.Arguments) {
				n += checkGetKeysAndFlags(t, conn, args)
			}
		}
	}
	walk(docs)
	for _, args := range append(trickyKeyArgs, aclKeyArgs...) {
		n += checkGetKeysAndFlags(t, conn, args)
	}
	t.Logf("checked %d argument lists", n)
}

// aclKeyArgs are argument lists whose keys Redis' own key finders flag.
var aclKeyArgs = [][]string{
	{"set", "k1", "v"},
	{"set", "k1", "v", "GET"},
	{"set", "k1", "v", "EX", "1", "get"},
	{"set", "k1", "v", "GETX"},
	{"bitfield", "k1", "GET", "u8", "0"},
	{"bitfield", "k1", "GET", "u8", "0", "OVERFLOW", "SAT"},
	{"bitfield", "k1", "GET", "u8", "0", "SET", "u8", "0", "1"},
	{"bitfield", "k1", "INCRBY", "u8", "0", "1"},
	{"bitfield", "k1", "NOSUCH"},
	{"bitfield", "k1"},
	{"sort", "k1", "STORE", "d1"},
	{"sort_ro", "k1", "BY", "w_*"},
	{"eval", "s", "+2", "k1", "k2"},
	{"xread", "STREAMS", "k1", "k2", "0"},
	{"migrate", "h", "1", "k1", "0", "1"},
	{"lmove", "k1", "k2", "LEFT", "RIGHT"},
	{"copy", "k1", "k2"},
	{"del", "k1", "k2"},
	{"mset", "k1", "v", "k2", "v"},
	{"getdel", "k1"},
	{"rename", "k1", "k2"},
	{"pfcount", "k1"},
}

// checkGetKeysAndFlags compares AppendACLKeys for args with COMMAND
// GETKEYSANDFLAGS; it returns 1 when it compared.
func checkGetKeysAndFlags(t *testing.T, conn *proxytest.Conn, args []string) int {
	t.Helper()
	if len(args) < 2 {
		return 0
	}
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	c := Lookup(bargs[0])
	if c == nil {
		t.Errorf("%q: the proxy does not know the command", args)
		return 0
	}
	if c.HasSubcommands() {
		if c = c.Subcommand(bargs[1]); c == nil {
			return 0
		}
	}
	c = c.ACLCommand(bargs)
	if !c.ArityOK(len(args)) {
		return 0
	}
	r, err := conn.Do(append([]string{"COMMAND", "GETKEYSANDFLAGS"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	if !r.IsError() {
		for _, e := range r.Elems {
			var access KeyAccess
			for _, f := range e.Elems[1].Elems {
				switch string(f.Str) {
				case "access":
					access |= KeyRead
				case "insert", "update", "delete":
					access |= KeyWrite
				}
			}
			want = append(want, fmt.Sprintf("%s:%d", e.Elems[0].Str, access))
		}
	}
	var got []string
	for _, k := range c.AppendACLKeys(nil, bargs) {
		got = append(got, fmt.Sprintf("%s:%d", args[k.Arg], k.Access))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%q: the proxy finds keys %q, COMMAND GETKEYSANDFLAGS %s", args, got, r)
	}
	return 1
}

// Finding a request's keys for the ACL check allocates nothing when the
// slice has room, whether by key specs or by Redis' key finders.
func TestAppendACLKeysAllocs(t *testing.T) {
	dst := make([]ACLKey, 0, 16)
	for _, line := range []string{"GET k", "MSET a 1 b 2", "SET k v GET", "SORT k STORE d", "EVAL s 2 a b", "BITFIELD k GET u8 0"} {
		var args [][]byte
		for _, a := range strings.Fields(line) {
			args = append(args, []byte(a))
		}
		c := Lookup(args[0])
		if n := testing.AllocsPerRun(100, func() { dst = c.AppendACLKeys(dst[:0], args) }); n != 0 {
			t.Errorf("AppendACLKeys(%q) allocates %v times", line, n)
		}
	}
}
