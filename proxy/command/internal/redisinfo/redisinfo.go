// Package redisinfo reads how a redis-server describes its commands:
// COMMAND INFO (arity, flags, ACL categories, tips, key specs and
// subcommands) and COMMAND DOCS (argument specs). The proxy's command table
// is generated from it (cmdgen) and checked against it in tests, so both
// read the server's replies the same way.
package redisinfo

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Command is one entry of COMMAND INFO.
type Command struct {
	Name          string // lower case; "container|sub" for a subcommand
	Arity         int
	Flags         []string
	FirstKey      int // the legacy key range
	LastKey       int
	Step          int
	ACLCategories []string // without the '@'
	Tips          []string
	KeySpecs      []KeySpec
	Subcommands   []Command // sorted by name
}

// KeySpec is one key specification: where the search for keys begins
// (an index, or after a keyword) and how keys are found from there (a range,
// or a count argument).
type KeySpec struct {
	Flags []string // RO RW OW RM access update insert delete not_key incomplete variable_flags
	Notes string

	BeginSearch string // "index", "keyword" or "unknown"
	Index       int    // index: the position of the first key
	Keyword     string // keyword: the keyword before the first key
	StartFrom   int    // keyword: where the search starts; negative counts from the end

	FindKeys  string // "range", "keynum" or "unknown"
	LastKey   int    // range: the last key, relative to the first; negative counts from the end
	KeyStep   int    // range and keynum: the distance between keys
	Limit     int    // range with LastKey -1: only 1/Limit of the remaining arguments
	KeyNumIdx int    // keynum: the count argument, relative to the begin
	FirstKey  int    // keynum: the first key, relative to the begin
}

// Doc is one entry of COMMAND DOCS.
type Doc struct {
	Name        string // lower case; "container|sub" for a subcommand
	Arguments   []Arg
	Subcommands []Doc // sorted by name
}

// Arg is one argument spec of COMMAND DOCS.
type Arg struct {
	Name          string
	Type          string // string integer double key pattern unix-time pure-token oneof block
	Token         string // the keyword before the argument, or ""
	KeySpecIndex  int    // for keys: the key spec that finds it; -1 otherwise
	Optional      bool
	Multiple      bool
	MultipleToken bool
	Arguments     []Arg // the choices of a oneof, the parts of a block
}

// Commands returns every command of COMMAND INFO, sorted by name.
func Commands(c *proxytest.Conn) ([]Command, error) {
	r, err := c.Do("COMMAND", "INFO")
	if err != nil {
		return nil, fmt.Errorf("COMMAND INFO: %w", err)
	}
	if r.Type != '*' {
		return nil, fmt.Errorf("COMMAND INFO: reply %s", r)
	}
	var cmds []Command
	for _, e := range r.Elems {
		if e.Nil {
			continue
		}
		cmd, err := parseCommand(e)
		if err != nil {
			return nil, fmt.Errorf("COMMAND INFO: %w", err)
		}
		cmds = append(cmds, cmd)
	}
	sortCommands(cmds)
	return cmds, nil
}

func sortCommands(cmds []Command) {
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
}

// parseCommand reads [name, arity, flags, first, last, step, acl, tips,
// key specs, subcommands], Redis 7's order.
func parseCommand(r proxytest.Reply) (Command, error) {
	if r.Type != '*' || len(r.Elems) < 10 {
		return Command{}, fmt.Errorf("command entry %s: want an array of 10", r)
	}
	e := r.Elems
	cmd := Command{
		Name:          strings.ToLower(string(e[0].Str)),
		Arity:         int(e[1].Int),
		Flags:         strs(e[2]),
		FirstKey:      int(e[3].Int),
		LastKey:       int(e[4].Int),
		Step:          int(e[5].Int),
		ACLCategories: strs(e[6]),
		Tips:          strs(e[7]),
	}
	for i, a := range cmd.ACLCategories {
		cmd.ACLCategories[i] = strings.TrimPrefix(a, "@")
	}
	for _, ks := range e[8].Elems {
		spec, err := parseKeySpec(ks)
		if err != nil {
			return Command{}, fmt.Errorf("%s: %w", cmd.Name, err)
		}
		cmd.KeySpecs = append(cmd.KeySpecs, spec)
	}
	for _, s := range e[9].Elems {
		sub, err := parseCommand(s)
		if err != nil {
			return Command{}, fmt.Errorf("%s: %w", cmd.Name, err)
		}
		cmd.Subcommands = append(cmd.Subcommands, sub)
	}
	sortCommands(cmd.Subcommands)
	return cmd, nil
}

func parseKeySpec(r proxytest.Reply) (KeySpec, error) {
	m, err := fields(r)
	if err != nil {
		return KeySpec{}, fmt.Errorf("key spec: %w", err)
	}
	spec := KeySpec{Flags: strs(m["flags"]), Notes: string(m["notes"].Str)}
	bs, err := fields(m["begin_search"])
	if err != nil {
		return KeySpec{}, fmt.Errorf("key spec begin_search: %w", err)
	}
	bspec, _ := fields(bs["spec"])
	spec.BeginSearch = string(bs["type"].Str)
	switch spec.BeginSearch {
	case "index":
		spec.Index = int(bspec["index"].Int)
	case "keyword":
		spec.Keyword = string(bspec["keyword"].Str)
		spec.StartFrom = int(bspec["startfrom"].Int)
	case "unknown":
	default:
		return KeySpec{}, fmt.Errorf("key spec: begin_search type %q", spec.BeginSearch)
	}
	fk, err := fields(m["find_keys"])
	if err != nil {
		return KeySpec{}, fmt.Errorf("key spec find_keys: %w", err)
	}
	fspec, _ := fields(fk["spec"])
	spec.FindKeys = string(fk["type"].Str)
	switch spec.FindKeys {
	case "range":
		spec.LastKey = int(fspec["lastkey"].Int)
		spec.KeyStep = int(fspec["keystep"].Int)
		spec.Limit = int(fspec["limit"].Int)
	case "keynum":
		spec.KeyNumIdx = int(fspec["keynumidx"].Int)
		spec.FirstKey = int(fspec["firstkey"].Int)
		spec.KeyStep = int(fspec["keystep"].Int)
	case "unknown":
	default:
		return KeySpec{}, fmt.Errorf("key spec: find_keys type %q", spec.FindKeys)
	}
	return spec, nil
}

// Docs returns every command of COMMAND DOCS, sorted by name.
func Docs(c *proxytest.Conn) ([]Doc, error) {
	r, err := c.Do("COMMAND", "DOCS")
	if err != nil {
		return nil, fmt.Errorf("COMMAND DOCS: %w", err)
	}
	docs, err := parseDocs(r, "")
	if err != nil {
		return nil, fmt.Errorf("COMMAND DOCS: %w", err)
	}
	return docs, nil
}

// parseDocs reads a flat array of name, doc pairs.
func parseDocs(r proxytest.Reply, parent string) ([]Doc, error) {
	if r.Type != '*' || len(r.Elems)%2 != 0 {
		return nil, fmt.Errorf("docs %s: want name, doc pairs", r)
	}
	var docs []Doc
	for i := 0; i < len(r.Elems); i += 2 {
		name := strings.ToLower(string(r.Elems[i].Str))
		m, err := fields(r.Elems[i+1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		d := Doc{Name: name}
		for _, a := range m["arguments"].Elems {
			arg, err := parseArg(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			d.Arguments = append(d.Arguments, arg)
		}
		if subs, ok := m["subcommands"]; ok {
			if d.Subcommands, err = parseDocs(subs, name); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		docs = append(docs, d)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	return docs, nil
}

func parseArg(r proxytest.Reply) (Arg, error) {
	m, err := fields(r)
	if err != nil {
		return Arg{}, fmt.Errorf("argument: %w", err)
	}
	a := Arg{
		Name:         string(m["name"].Str),
		Type:         string(m["type"].Str),
		Token:        string(m["token"].Str),
		KeySpecIndex: -1,
	}
	if ks, ok := m["key_spec_index"]; ok {
		a.KeySpecIndex = int(ks.Int)
	}
	for _, f := range strs(m["flags"]) {
		switch f {
		case "optional":
			a.Optional = true
		case "multiple":
			a.Multiple = true
		case "multiple_token":
			a.MultipleToken = true
		}
	}
	for _, sub := range m["arguments"].Elems {
		s, err := parseArg(sub)
		if err != nil {
			return Arg{}, fmt.Errorf("%s: %w", a.Name, err)
		}
		a.Arguments = append(a.Arguments, s)
	}
	return a, nil
}

// fields reads a RESP2 map: an array of name, value pairs.
func fields(r proxytest.Reply) (map[string]proxytest.Reply, error) {
	if r.Type != '*' || len(r.Elems)%2 != 0 {
		return nil, fmt.Errorf("%s is not a map", r)
	}
	m := make(map[string]proxytest.Reply, len(r.Elems)/2)
	for i := 0; i < len(r.Elems); i += 2 {
		m[string(r.Elems[i].Str)] = r.Elems[i+1]
	}
	return m, nil
}

func strs(r proxytest.Reply) []string {
	var out []string
	for _, e := range r.Elems {
		out = append(out, string(e.Str))
	}
	return out
}
