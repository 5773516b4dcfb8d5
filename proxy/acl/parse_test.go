package acl

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"# users\nuser alice on\n", "users.acl:1: should start with user keyword followed by the username"},
		{"\nuser\n", "users.acl:2: should start with user keyword followed by the username"},
		{"user al\vice on\n", "users.acl:1: username 'al\vice' contains invalid characters"},
		{"user a on\nuser a off\n", "users.acl:2: Duplicate user 'a' found"},
		{"user a on (~x +get\n", "users.acl:1: Unmatched parenthesis in selector definition"},
		{"user a on +nosuch -@nosuch\n", "users.acl:1: Error in applying operation '+nosuch': Unknown command or category name in ACL; " +
			"users.acl:1: Error in applying operation '-@nosuch': Unknown command or category name in ACL"},
		{"user a on bogus ~a b\n", "users.acl:1: Error in applying operation 'bogus': Syntax error"},
		{"user a on #0123\n", "users.acl:1: The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"},
		{"user a on <secret\n", "users.acl:1: The password you are trying to remove from the user does not exist"},
		{"user a on allkeys ~a:*\n", "users.acl:1: Error in applying operation '~a:*': Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"},
		{"user a on &* &a\n", "users.acl:1: Error in applying operation '&a': Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"},
		{"user a on +config|get|x\n", "users.acl:1: Error in applying operation '+config|get|x': Allowing first-arg of a subcommand is not supported"},
		{"user a on +select|\n", "users.acl:1: Error in applying operation '+select|': Syntax error"},
		{"user a on (~a >secret)\n", "users.acl:1: Syntax error"},
		{"user a on (+nosuch >secret)\n", "users.acl:1: Error in applying operation '+nosuch': Unknown command or category name in ACL"},
		{"user a on\x00\n", "users.acl:1: the line contains a NUL byte"},
	}
	for _, tc := range tests {
		users, err := Parse("users.acl", []byte(tc.file))
		var e *Error
		if !errors.As(err, &e) || users != nil {
			t.Errorf("Parse(%q) = %v, %v; want an *Error", tc.file, users, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Parse(%q):\n got %s\nwant %s", tc.file, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Parse(%q) repeats a password: %s", tc.file, err)
		}
	}
}

// An error names every bad line, up to a bound.
func TestParseErrorsBounded(t *testing.T) {
	file := strings.Repeat("bad\n", 100)
	_, err := Parse("f", []byte(file))
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != maxProblems || e.More != 100-maxProblems || e.Problems[19].Line != 20 {
		t.Fatalf("Parse(100 bad lines) = %v", err)
	}
	if _, err := Parse("f", make([]byte, MaxFileSize+1)); err == nil {
		t.Fatalf("Parse of a file larger than MaxFileSize succeeded")
	}
}

func TestParseUsers(t *testing.T) {
	users, err := Parse("users.acl", []byte("user bob on >b\nuser alice off nopass\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := users.Names(); !slices.Equal(got, []string{"alice", "bob", "default"}) {
		t.Errorf("Names() = %q", got)
	}
	if d := users.Default(); d.Name() != "default" || !d.Enabled() || !d.NoPass() || users.AuthRequired() {
		t.Errorf("the default user is not Redis' default")
	}
	if a := users.Lookup([]byte("alice")); a == nil || a.Enabled() || !a.NoPass() {
		t.Errorf("alice = %+v", a)
	}
	if users.Lookup([]byte("carol")) != nil {
		t.Errorf("Lookup(carol) found a user")
	}
	users, err = Parse("users.acl", []byte("user default on >pw ~* +@all\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !users.AuthRequired() || users.Authenticate([]byte("default"), []byte("pw")) == nil {
		t.Errorf("a default user with a password: AuthRequired %v", users.AuthRequired())
	}
}

// A reload tells the users whose rules changed from those that did not.
func TestUserSame(t *testing.T) {
	before := parseUsers(t, "user a on >p ~* +@all\nuser b on >p ~* +@all\n")
	after := parseUsers(t, "user b on >q ~* +@all\nuser a on >p ~* +@all\n")
	for _, tc := range []struct {
		name string
		same bool
	}{{"a", true}, {"b", false}, {"default", true}} {
		if got := before.Lookup([]byte(tc.name)).Same(after.Lookup([]byte(tc.name))); got != tc.same {
			t.Errorf("user %s: Same = %v, want %v", tc.name, got, tc.same)
		}
	}
	if before.Lookup([]byte("a")).Same(nil) || FromPassword("x").Default().Same(FromPassword("y").Default()) {
		t.Errorf("Same is true for users that differ")
	}
}

// redis_auth alone makes the default user with that password, and every
// permission.
func TestFromPassword(t *testing.T) {
	users := FromPassword("s3cret")
	if !users.AuthRequired() || users.Default().NoPass() {
		t.Errorf("FromPassword(s3cret): no password required")
	}
	if u := users.Authenticate([]byte("default"), []byte("s3cret")); u == nil || u != users.Default() {
		t.Errorf("Authenticate(default, s3cret) = %v", u)
	}
	if u := users.Authenticate([]byte("default"), []byte("wrong")); u != nil {
		t.Errorf("Authenticate(default, wrong) = %v", u.Name())
	}
	if users := FromPassword(""); users.AuthRequired() {
		t.Errorf("FromPassword(\"\") requires a password")
	}
	args := [][]byte{[]byte("FLUSHALL")}
	if v := users.Default().Check(lookup(t, "flushall"), args, nil); !v.OK() {
		t.Errorf("the redis_auth user may not run FLUSHALL: %s", v.Message())
	}
}

// AUTH's check allocates nothing.
func TestAuthenticateAllocs(t *testing.T) {
	users, err := Parse("users.acl", []byte("user alice on >a >b ~* +@all\n"))
	if err != nil {
		t.Fatal(err)
	}
	name, pw := []byte("alice"), []byte("b")
	if n := testing.AllocsPerRun(100, func() { users.Authenticate(name, pw) }); n != 0 {
		t.Errorf("Authenticate allocates %v times", n)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.acl")
	if err := os.WriteFile(path, []byte("user alice on >a ~* +@all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if users, err := Load(path); err != nil || users.Lookup([]byte("alice")) == nil {
		t.Fatalf("Load = %v, %v", users, err)
	}
	if _, err := Load(filepath.Join(dir, "nosuch")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(nosuch) = %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(fifo) = %v", err)
	}
	if err := os.WriteFile(path, []byte("bad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("Load(bad) = %v, want the path and line", err)
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		line string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"  a  b\t", []string{"a", "b"}, true},
		{`"a b" 'c d'`, []string{"a b", "c d"}, true},
		{`"\x41\n\"" 'it\'s'`, []string{"A\n\"", "it's"}, true},
		{`"a"b`, nil, false},
		{`"a`, nil, false},
		{`'a`, nil, false},
		{`a"b c"`, []string{"ab c"}, true},
		{`""`, []string{""}, true},
	}
	for _, tc := range tests {
		got, ok := splitArgs(tc.line)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
