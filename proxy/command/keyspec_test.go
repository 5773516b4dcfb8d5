package command

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/command/internal/redisinfo"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// refusedWithKeys are the commands with key specs that the proxy refuses,
// and why. Every other command with keys must be routed by them.
var refusedWithKeys = map[string]Reason{
	"migrate": WhyAdmin,
	"move":    WhyDB,
}

// The generated table is redis-server's COMMAND INFO: no command or
// subcommand missing or extra, and the same arity, flags, ACL categories,
// tips and key specs.
func TestCommandTableMatchesRedis(t *testing.T) {
	conn := proxytest.StartRedis(t).Client(t)
	want, err := redisinfo.Commands(conn)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := conn.Do("INFO", "server")
	if v := "redis_version:" + commandTableVersion + "\r\n"; !strings.Contains(string(info.Str), v) {
		t.Logf("the table is from redis-server %s; comparing with another version", commandTableVersion)
	}
	got := make([]redisinfo.Command, len(redisCommandTable))
	for i := range redisCommandTable {
		got[i] = describeCommand(&redisCommandTable[i])
	}
	compareCommands(t, got, want)
}

func compareCommands(t *testing.T, got, want []redisinfo.Command) {
	t.Helper()
	byName := make(map[string]redisinfo.Command, len(got))
	for _, c := range got {
		byName[c.Name] = c
	}
	for _, w := range want {
		g, ok := byName[w.Name]
		if !ok {
			t.Errorf("command %s: missing from the table (run go generate ./proxy/command)", w.Name)
			continue
		}
		delete(byName, w.Name)
		if g.Arity != w.Arity {
			t.Errorf("command %s: arity %d, redis-server says %d", w.Name, g.Arity, w.Arity)
		}
		for _, f := range []struct {
			what      string
			got, want []string
		}{{"flags", g.Flags, w.Flags}, {"ACL categories", g.ACLCategories, w.ACLCategories}, {"tips", g.Tips, w.Tips}} {
			if !slices.Equal(sortedCopy(f.got), sortedCopy(f.want)) {
				t.Errorf("command %s: %s %q, redis-server says %q", w.Name, f.what, f.got, f.want)
			}
		}
		if len(g.KeySpecs) != len(w.KeySpecs) {
			t.Errorf("command %s: %d key specs, redis-server has %d", w.Name, len(g.KeySpecs), len(w.KeySpecs))
		} else {
			for i := range w.KeySpecs {
				ws := w.KeySpecs[i]
				ws.Notes = ""
				ws.Flags = sortedCopy(ws.Flags)
				gs := g.KeySpecs[i]
				gs.Flags = sortedCopy(gs.Flags)
				if !reflect.DeepEqual(gs, ws) {
					t.Errorf("command %s: key spec %d is %+v, redis-server says %+v", w.Name, i, gs, ws)
				}
			}
		}
		compareCommands(t, g.Subcommands, w.Subcommands)
	}
	for name := range byName {
		t.Errorf("command %s: in the table, but redis-server does not have it", name)
	}
}

// describeCommand renders a table entry the way redisinfo reads COMMAND INFO.
func describeCommand(rc *redisCommand) redisinfo.Command {
	c := redisinfo.Command{
		Name:          rc.name,
		Arity:         rc.arity,
		Flags:         flagNames(uint64(rc.flags), commandFlagNames),
		ACLCategories: flagNames(uint64(rc.acl), aclCategoryNames),
		Tips:          rc.tips,
	}
	for _, s := range rc.keySpecs {
		d := redisinfo.KeySpec{Flags: flagNames(uint64(s.flags), keySpecFlagNames)}
		switch s.begin {
		case beginIndex:
			d.BeginSearch, d.Index = "index", s.index
		case beginKeyword:
			d.BeginSearch, d.Keyword, d.StartFrom = "keyword", s.keyword, s.startFrom
		default:
			d.BeginSearch = "unknown"
		}
		switch s.find {
		case findRange:
			d.FindKeys, d.LastKey, d.KeyStep, d.Limit = "range", s.lastKey, s.keyStep, s.limit
		case findKeyNum:
			d.FindKeys, d.KeyNumIdx, d.FirstKey, d.KeyStep = "keynum", s.keyNumIdx, s.firstKey, s.keyStep
		default:
			d.FindKeys = "unknown"
		}
		c.KeySpecs = append(c.KeySpecs, d)
	}
	for i := range rc.subcommands {
		c.Subcommands = append(c.Subcommands, describeCommand(&rc.subcommands[i]))
	}
	return c
}

func flagNames(bits uint64, names []string) []string {
	var out []string
	for i, n := range names {
		if bits&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if bits>>len(names) != 0 {
		out = append(out, fmt.Sprintf("unnamed bits %#x", bits>>len(names)<<len(names)))
	}
	return out
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// For every command and subcommand with key specs, and example arguments
// built from its COMMAND DOCS (optional arguments left out and put in, each
// choice of a oneof), the proxy finds the keys that redis-server's COMMAND
// GETKEYS finds, and routes by them: it refuses none but refusedWithKeys.
func TestCommandKeysMatchRedisGetKeys(t *testing.T) {
	conn := proxytest.StartRedis(t).Client(t)
	infos, err := redisinfo.Commands(conn)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := redisinfo.Docs(conn)
	if err != nil {
		t.Fatal(err)
	}
	keyed := map[string]bool{}
	var collect func([]redisinfo.Command)
	collect = func(cmds []redisinfo.Command) {
		for _, c := range cmds {
			if len(c.KeySpecs) > 0 {
				keyed[c.Name] = true
			}
			collect(c.Subcommands)
		}
	}
	collect(infos)
	checked := map[string]int{}
	var walk func([]redisinfo.Doc)
	walk = func(ds []redisinfo.Doc) {
		for _, d := range ds {
			walk(d.Subcommands)
			if !keyed[d.Name] {
				continue
			}
			name := strings.Split(d.Name, "|")
			for _, args := range exampleArgs(name, d.Arguments) {
				checkGetKeys(t, conn, args)
				checked[d.Name]++
			}
		}
	}
	walk(docs)
	for _, args := range trickyKeyArgs {
		checkGetKeys(t, conn, args)
	}
	for name := range keyed {
		if checked[name] == 0 {
			t.Errorf("%s: has key specs but no example arguments were checked", name)
		}
	}
	n := 0
	for _, v := range checked {
		n += v
	}
	t.Logf("checked %d argument lists of %d commands with keys", n, len(checked))
}

// trickyKeyArgs are argument lists where a keyword may be mistaken for
// another argument, or a count or option decides where the keys are.
var trickyKeyArgs = [][]string{
	{"xreadgroup", "GROUP", "streams", "c", "STREAMS", "k1", ">"},
	{"xreadgroup", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "streams", "k2", "0", "0"},
	{"xread", "COUNT", "2", "STREAMS", "k1", "k2", "0", "0"},
	{"xread", "STREAMS", "k1", "k2", "0"},
	{"sort", "k1", "LIMIT", "0", "1", "STORE", "d1"},
	{"sort", "k1", "STORE", "d1", "STORE", "d2"},
	{"sort", "k1", "GET", "store", "BY", "store"},
	{"sort", "k1", "STORE"},
	{"sort_ro", "k1", "STORE", "d1"},
	{"georadius", "k1", "0", "0", "1", "km", "STORE", "d1", "STOREDIST", "d2"},
	{"georadius", "k1", "0", "0", "1", "km", "COUNT", "5", "STORE"},
	{"georadiusbymember", "k1", "m", "1", "km", "STOREDIST", "d1"},
	{"geosearchstore", "d1", "k1", "FROMMEMBER", "m", "BYBOX", "1", "1", "km"},
	{"eval", "s", "0"},
	{"eval", "s", "-1", "k1"},
	{"eval", "s", "3", "k1", "k2"},
	{"fcall", "f", "2", "k1", "k2", "a"},
	{"zunionstore", "d1", "5", "k1"},
	{"zunionstore", "d1", "02", "k1", "k2"},
	{"zinterstore", "d1", "2", "k1", "k2", "WEIGHTS", "1", "2"},
	{"sintercard", "2", "k1", "k2", "LIMIT", "1"},
	{"lmpop", "x", "k1", "LEFT"},
	{"migrate", "h", "1", "", "0", "1", "AUTH", "keys", "KEYS", "k1", "k2"},
	{"migrate", "h", "1", "", "0", "1", "AUTH2", "u", "keys", "KEYS", "k1"},
	{"mset", "k1", "v", "k2", "v"},
	{"msetnx", "k1", "v", "k2"},
	{"object", "encoding", "k1"},
	{"memory", "usage", "k1", "SAMPLES", "5"},
	{"xgroup", "create", "k1", "g", "$", "MKSTREAM"},
	{"bitop", "AND", "d1", "k1", "k2"},
	{"lcs", "k1", "k2", "IDX"},
}

// checkGetKeys compares the proxy's keys for args with COMMAND GETKEYS'.
func checkGetKeys(t *testing.T, conn *proxytest.Conn, args []string) {
	t.Helper()
	if len(args) < 2 {
		return // COMMAND GETKEYS needs an argument after the name
	}
	r, err := conn.Do(append([]string{"COMMAND", "GETKEYS"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	def := Lookup(bargs[0])
	if def != nil && def.HasSubcommands() && len(bargs) > 1 {
		def = def.Subcommand(bargs[1])
	}
	if def == nil {
		t.Errorf("%q: the proxy does not know the command", args)
		return
	}
	if r.IsError() && strings.Contains(string(r.Str), "number of arguments") {
		if def.ArityOK(len(args)) {
			t.Errorf("%q: arity OK for the proxy; redis-server says %s", args, r)
		}
		return
	}
	if !def.ArityOK(len(args)) {
		t.Errorf("%q: the proxy refuses the arity; redis-server takes it", args)
		return
	}
	var want []string
	if !r.IsError() {
		for _, e := range r.Elems {
			want = append(want, string(e.Str))
		}
	}
	var got []string
	var pos []int
	switch def.Kind {
	case SplitKeys, SplitPairs:
		for i := 1; i < len(bargs); i += def.Step {
			pos = append(pos, i)
		}
	default:
		pos, _ = def.AppendKeys(nil, bargs)
	}
	for _, p := range pos {
		got = append(got, args[p])
	}
	if !slices.Equal(got, want) {
		t.Errorf("%q: the proxy finds keys %q, COMMAND GETKEYS %s", args, got, r)
	}
	if len(want) == 0 {
		return
	}
	base := strings.SplitN(def.Name, "|", 2)[0]
	switch {
	case def.Kind == Unsupported:
		why := def.Why
		if refusedWithKeys[base] != why {
			t.Errorf("%q: the proxy refuses a command with keys (reason %d)", args, why)
		}
	case def.Kind == RouteKey, def.Kind == SplitKeys, def.Kind == SplitPairs, def.Name == "watch",
		def.Kind == PubSub: // shard channels, routed as keys
		if why, listed := refusedWithKeys[base]; listed && !def.blockOption {
			t.Errorf("%q: routed, but listed as refused (reason %d)", args, why)
		}
	default:
		t.Errorf("%q: a command with keys has kind %d, not routed by its keys", args, def.Kind)
	}
}

// exampleArgs builds argument lists for a command from its argument specs:
// one with every optional argument left out and the first choice of every
// oneof, one with every optional argument in, and one for each optional
// argument and each choice, with just what leads to it.
func exampleArgs(name []string, specs []redisinfo.Arg) [][]string {
	var paths []string
	var visit func(prefix string, args []redisinfo.Arg)
	visit = func(prefix string, args []redisinfo.Arg) {
		for i, a := range args {
			p := prefix + "/" + strconv.Itoa(i)
			if a.Optional {
				paths = append(paths, p)
			}
			if a.Type == "oneof" {
				for j := range a.Arguments {
					paths = append(paths, p+"/"+strconv.Itoa(j))
				}
			}
			visit(p, a.Arguments)
		}
	}
	visit("", specs)
	out := [][]string{
		render(name, specs, func(string) bool { return false }),
		render(name, specs, func(string) bool { return true }),
	}
	for _, target := range paths {
		out = append(out, render(name, specs, func(p string) bool {
			return p == target || strings.HasPrefix(target, p+"/")
		}))
	}
	return out
}

// render writes one argument list; in(path) says whether an optional
// argument is put in, and whether a oneof takes the choice at path (the
// first choice otherwise). Repeated arguments appear twice; keys get
// distinct names, and a numkeys argument counts the keys that follow it.
func render(name []string, specs []redisinfo.Arg, in func(path string) bool) []string {
	out := slices.Clone(name)
	keys := 0
	var list func(prefix string, args []redisinfo.Arg)
	var one func(path string, a redisinfo.Arg, token bool)
	one = func(path string, a redisinfo.Arg, token bool) {
		if token && a.Token != "" && a.Type != "pure-token" {
			out = append(out, a.Token)
		}
		switch a.Type {
		case "pure-token":
			out = append(out, a.Token)
		case "key":
			keys++
			out = append(out, fmt.Sprintf("key:%d", keys))
		case "integer", "unix-time":
			out = append(out, "1")
		case "double":
			out = append(out, "1.5")
		case "pattern":
			out = append(out, "p*")
		case "block":
			list(path, a.Arguments)
		case "oneof":
			choice := 0
			for j := range a.Arguments {
				if in(path + "/" + strconv.Itoa(j)) {
					choice = j
				}
			}
			if len(a.Arguments) > 0 {
				one(path+"/"+strconv.Itoa(choice), a.Arguments[choice], true)
			}
		default:
			out = append(out, "v")
		}
	}
	list = func(prefix string, args []redisinfo.Arg) {
		numkeys := -1
		for i, a := range args {
			path := prefix + "/" + strconv.Itoa(i)
			if a.Optional && !in(path) {
				continue
			}
			if a.Type == "integer" && a.Name == "numkeys" {
				numkeys = len(out)
			}
			before := keys
			n := 1
			if a.Multiple {
				n = 2
			}
			for k := 0; k < n; k++ {
				one(path, a, k == 0 || a.MultipleToken)
			}
			if numkeys >= 0 && a.Type == "key" {
				out[numkeys] = strconv.Itoa(keys - before)
				numkeys = -1
			}
		}
		if numkeys >= 0 {
			out[numkeys] = "0"
		}
	}
	list("", specs)
	return out
}
