package acl

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/command"
)

// fuzzRequests are checked for every user of a file the fuzzer finds
// that parses.
var fuzzRequests = []string{
	"GET a", "SET a v GET", "MGET a b", "CONFIG GET x", "CONFIG nosuch", "SELECT 0",
	"PUBLISH c m", "PSUBSCRIBE c*", "SUBSCRIBE a b", "SORT a STORE b", "AUTH x y", "CLIENT KILL x",
}

// Parse never panics; it returns users or an *Error naming lines of the
// file, and the users it returns can be checked and authenticated.
func FuzzParseACL(f *testing.F) {
	for _, s := range []string{"", "\n", "user", "user a", "user a on", "user a (", "user a ()", "user a )(",
		"user a \"(\"", "user a (\"", "user a +", "user a -", "user a +@", "user a %", "user a ~", "user a &",
		"user a #", "user a !", "user a <", "user a >", "user a +|", "user a +a|b|c", "user a (+get|)"} {
		f.Add([]byte(s))
	}
	var reqs [][][]byte
	var specs []*command.Spec
	for _, line := range fuzzRequests {
		c, args := parseRequest(f, line)
		specs, reqs = append(specs, c), append(reqs, args)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := Parse("f", data)
		if err != nil {
			var e *Error
			lines := strings.Count(string(data), "\n") + 1
			if users != nil || !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("Parse = %v, %v", users, err)
			}
			for _, p := range e.Problems {
				if p.Line < 1 || p.Line > lines || p.Msg == "" {
					t.Fatalf("problem %+v in a file of %d lines", p, lines)
				}
			}
			return
		}
		names := users.Names()
		if !slices.IsSorted(names) || users.Default() == nil || users.Lookup([]byte(DefaultUser)) != users.Default() {
			t.Fatalf("Names() = %q, default %v", names, users.Default())
		}
		var scratch Scratch
		for _, name := range names {
			u := users.Lookup([]byte(name))
			if u == nil || u.Name() != name {
				t.Fatalf("Lookup(%q) = %v", name, u)
			}
			users.Authenticate([]byte(name), []byte("p"))
			for i, args := range reqs {
				v := u.Check(specs[i], args, &scratch)
				if v.Command == nil || v.OK() != (len(v.AppendError(nil)) == 0) {
					t.Fatalf("user %q, %q: verdict %+v", name, args, v)
				}
				v.DryRun(args)
			}
		}
	})
}
