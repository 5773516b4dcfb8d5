package command

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestAppendSortPatterns(t *testing.T) {
	tests := []struct {
		line string
		want []int
	}{
		{"SORT k", nil},
		{"SORT k BY w_* GET # GET o_*->f", []int{3, 5, 7}},
		{"sort k limit 0 10 by w_* desc alpha get o_*", []int{6, 10}},
		{"SORT k STORE d GET o_*", []int{5}},
		{"SORT_RO k GET o_*", []int{3}},
		{"SORT_RO k STORE d GET o_*", nil}, // STORE is a syntax error for SORT_RO
		{"SORT k GET o_* NOSUCH GET p_*", []int{3}},
		{"SORT k GET", nil},
		{"GET k", nil},
	}
	for _, tc := range tests {
		var args [][]byte
		for _, a := range strings.Fields(tc.line) {
			args = append(args, []byte(a))
		}
		got := Lookup(args[0]).AppendSortPatterns([]int{1}, args)[1:]
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("AppendSortPatterns(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, name := range []string{"get", "GET", "GeoRadiusByMember_RO"} {
		if c := Lookup([]byte(name)); c == nil || !strings.EqualFold(c.Name, name) {
			t.Errorf("Lookup(%q) = %v", name, c)
		}
	}
	for _, name := range []string{"", "nosuch", strings.Repeat("g", 100)} {
		if c := Lookup([]byte(name)); c != nil {
			t.Errorf("Lookup(%q) = %q, want nil", name, c.Name)
		}
	}
	object := Lookup([]byte("OBJECT"))
	if !object.HasSubcommands() || object.Subcommand([]byte("Encoding")).Name != "object|encoding" || object.Subcommand([]byte("x")) != nil {
		t.Errorf("OBJECT's subcommands are not found")
	}
	if Lookup([]byte("get")).HasSubcommands() {
		t.Errorf("GET has subcommands")
	}
}

// The commands a client may send before AUTH come from redis-server's
// no_auth flag, plus PING, which the proxy answers itself.
func TestAllowedBeforeAuth(t *testing.T) {
	var got []string
	for name, c := range commands {
		if c.AllowedBeforeAuth() {
			got = append(got, name)
		}
		for sub, sc := range c.subcommands {
			if sc.AllowedBeforeAuth() {
				got = append(got, name+"|"+sub)
			}
		}
	}
	slices.Sort(got)
	want := []string{"auth", "hello", "ping", "quit", "reset"}
	if !slices.Equal(got, want) {
		t.Fatalf("commands allowed before AUTH = %v, want %v", got, want)
	}
}

// The commands sent to every server, and how their replies merge, follow
// redis-server's request_policy and response_policy tips.
func TestFanOutFromTips(t *testing.T) {
	got := map[string]Merge{}
	for name, c := range commands {
		if c.Kind == FanOut {
			got[name] = c.Merge
		}
		for sub, sc := range c.subcommands {
			if sc.Kind == FanOut {
				got[name+"|"+sub] = sc.Merge
			}
		}
	}
	want := map[string]Merge{
		"script|load": MergeSame, "script|exists": MergeAnd, "script|flush": MergeSame,
		"function|load": MergeSame, "function|delete": MergeSame, "function|flush": MergeSame,
		"function|restore": MergeSame,
		"dbsize":           MergeSum, "keys": MergeConcat, "flushdb": MergeSame, "flushall": MergeSame,
		"randomkey": MergeAnyKey, "scan": MergeScan,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fan-out commands = %v, want %v", got, want)
	}
}
