package proxy

import "strings"

//go:generate go run ./internal/cmdgen -o commandtable.go

// commandKind says how the proxy handles a command.
type commandKind uint8

const (
	// routeKey commands go whole to the server that owns their first key.
	// When they name more keys, all must live on that server.
	routeKey commandKind = iota
	// splitKeys commands (MGET DEL UNLINK EXISTS TOUCH) are split per server
	// and their replies merged.
	splitKeys
	// splitPairs is MSET: key/value pairs split per server.
	splitPairs
	// routePlaceholder commands have no key; like nutcracker they go to the
	// server that owns the key "placeholder".
	routePlaceholder
	// local commands are answered by the proxy.
	local
	// transaction commands (MULTI EXEC DISCARD WATCH UNWATCH) pin the client
	// to one server connection.
	transaction
	// unsupported commands get an error naming them; the connection stays.
	unsupported
	// fanOut commands (SCRIPT, FUNCTION) go to every server; see fanout.go.
	fanOut
)

// mergeKind says how the replies of a split command are put back together.
type mergeKind uint8

const (
	mergeArray mergeKind = iota // MGET: one array in the client's key order
	mergeSum                    // DEL UNLINK EXISTS TOUCH: summed integers
	mergeOK                     // MSET: +OK once every part said OK
	mergeSame                   // SCRIPT, FUNCTION LOAD: the reply every server gave
	mergeAnd                    // SCRIPT EXISTS: 1 where every server said 1
)

// command describes one Redis command, or one subcommand of a container
// such as OBJECT: what redis-server says about it (commandtable.go, from
// COMMAND INFO) and how the proxy handles it (its kind, from policies).
type command struct {
	name        string // lower case; "container|sub" for a subcommand
	arity       int    // Redis arity: n exactly, -n at least n
	kind        commandKind
	flags       commandFlags
	acl         aclCategories
	tips        []string
	keySpecs    []keySpec
	keysProc    keysProc            // Redis' own key finder, where its specs are incomplete
	subcommands map[string]*command // for containers routed by subcommand, by lower-case name
	merge       mergeKind
	step        int    // split commands: 1, or 2 for MSET's key/value pairs
	blockOption bool   // XREAD, XREADGROUP: blocking only with a BLOCK option
	why         string // for unsupported commands: what the client should know
}

// The reasons given for unsupported commands.
const (
	whyAllServers = "it needs every server, and shardproxy routes each request by its key"
	whyBlocking   = "blocking commands would hold a shared server connection"
	whyPubSub     = "publish/subscribe is not proxied"
	whyAdmin      = "administrative commands must be sent to each Redis server directly"
	whyDB         = "the pool's database is set by redis_db"
)

// policy is how the proxy handles a command, where redis-server's own
// description does not settle it (see derivedPolicy).
type policy struct {
	kind        commandKind
	merge       mergeKind
	step        int
	blockOption bool
	why         string
}

// policies are the proxy's own decisions, by command name. A container
// named here (CLIENT, SCRIPT, ...) is handled as a whole; the others
// (OBJECT, MEMORY, XGROUP, XINFO) are handled by subcommand.
var policies = buildPolicies()

func buildPolicies() map[string]policy {
	p := map[string]policy{
		// Split per server and merged.
		"mget":   {kind: splitKeys, merge: mergeArray, step: 1},
		"del":    {kind: splitKeys, merge: mergeSum, step: 1},
		"unlink": {kind: splitKeys, merge: mergeSum, step: 1},
		"exists": {kind: splitKeys, merge: mergeSum, step: 1},
		"touch":  {kind: splitKeys, merge: mergeSum, step: 1},
		"mset":   {kind: splitPairs, merge: mergeOK, step: 2},

		// Redis flags them blocking, but they block only with BLOCK.
		"xread":      {kind: routeKey, blockOption: true},
		"xreadgroup": {kind: routeKey, blockOption: true},

		// Keyless and the same on every server: nutcracker's placeholder.
		"command": {kind: routePlaceholder},
		"lolwut":  {kind: routePlaceholder},
	}
	set := func(pol policy, names ...string) {
		for _, n := range names {
			p[n] = pol
		}
	}
	set(policy{kind: local}, "ping", "echo", "quit", "select", "auth", "hello", "client", "info",
		"reset", "readonly", "readwrite")
	set(policy{kind: transaction}, "multi", "exec", "discard", "watch", "unwatch")
	// Keyless commands whose answer differs per server; the admin flag,
	// "pubsub" and a request_policy of all_shards or all_nodes say the
	// same for the rest (derivedPolicy).
	// Script caches: to every server, replies merged (fanout.go).
	set(policy{kind: fanOut}, "script", "function")
	set(policy{kind: unsupported, why: whyAllServers}, "scan", "swapdb", "time", "lastsave")
	set(policy{kind: unsupported, why: whyAdmin}, "config", "cluster", "acl", "module", "latency",
		"slowlog", "role", "asking",
		// MIGRATE moves keys to a server of its choosing, off the ring.
		"migrate")
	set(policy{kind: unsupported, why: whyPubSub}, "pubsub")
	set(policy{kind: unsupported, why: whyDB}, "move")
	return p
}

// derivedPolicy is the policy of a command that policies does not name,
// from what redis-server says about it. ok is false when that says nothing
// the proxy can act on.
func derivedPolicy(rc *redisCommand) (_ policy, ok bool) {
	switch {
	case rc.flags&cmdPubsub != 0:
		return policy{kind: unsupported, why: whyPubSub}, true
	case rc.flags&cmdBlocking != 0:
		return policy{kind: unsupported, why: whyBlocking}, true
	case hasKeys(rc.keySpecs):
		return policy{kind: routeKey}, true
	case rc.flags&cmdAdmin != 0:
		return policy{kind: unsupported, why: whyAdmin}, true
	case hasTip(rc.tips, "request_policy:all_shards"), hasTip(rc.tips, "request_policy:all_nodes"):
		return policy{kind: unsupported, why: whyAllServers}, true
	case strings.HasSuffix(rc.name, "|help"):
		return policy{kind: routePlaceholder}, true
	}
	return policy{}, false
}

func hasKeys(specs []keySpec) bool {
	for _, s := range specs {
		if s.flags&ksNotKey == 0 {
			return true
		}
	}
	return false
}

func hasTip(tips []string, tip string) bool {
	for _, t := range tips {
		if t == tip {
			return true
		}
	}
	return false
}

// commands is the command table, keyed by lower-case name.
var commands = buildCommands()

func buildCommands() map[string]*command {
	table := make(map[string]*command, len(redisCommandTable))
	for i := range redisCommandTable {
		rc := &redisCommandTable[i]
		if _, dup := table[rc.name]; dup {
			panic("proxy: command " + rc.name + " listed twice")
		}
		table[rc.name] = newCommand(rc)
	}
	for name := range policies {
		if table[name] == nil {
			panic("proxy: policy for " + name + ", which redis-server " + commandTableVersion + " does not have")
		}
	}
	return table
}

// newCommand builds the proxy's view of rc, and of its subcommands when rc
// is a container without a policy of its own.
func newCommand(rc *redisCommand) *command {
	c := &command{
		name: rc.name, arity: rc.arity, flags: rc.flags, acl: rc.acl, tips: rc.tips,
		keySpecs: rc.keySpecs, keysProc: keysProcs[rc.name],
	}
	for _, s := range rc.keySpecs {
		incomplete := s.begin == beginUnknown || s.find == findUnknown || s.flags&ksIncomplete != 0
		if incomplete && s.flags&ksNotKey == 0 && c.keysProc == keysBySpecs {
			panic("proxy: command " + rc.name + " has an incomplete key spec and no key finder")
		}
	}
	p, named := policies[rc.name]
	if !named && len(rc.subcommands) > 0 {
		if rc.arity > -2 {
			panic("proxy: container " + rc.name + " may be called without a subcommand")
		}
		c.kind = unsupported // unreachable: the arity asks for a subcommand
		c.subcommands = make(map[string]*command, len(rc.subcommands))
		for i := range rc.subcommands {
			sub := newCommand(&rc.subcommands[i])
			c.subcommands[sub.name[strings.IndexByte(sub.name, '|')+1:]] = sub
		}
		return c
	}
	if !named {
		var ok bool
		if p, ok = derivedPolicy(rc); !ok {
			panic("proxy: no policy for command " + rc.name)
		}
	}
	c.kind, c.merge, c.step, c.blockOption, c.why = p.kind, p.merge, p.step, p.blockOption, p.why
	return c
}

// maxCommandName bounds the names lookupCommand and subcommand look up;
// Redis' longest is 20 bytes (georadiusbymember_ro).
const maxCommandName = 24

// lookupCommand finds name in the table, ignoring case, without allocating.
func lookupCommand(name []byte) *command {
	return lookupIn(commands, name)
}

// subcommand finds a container's subcommand by name, ignoring case, without
// allocating.
func (c *command) subcommand(name []byte) *command {
	return lookupIn(c.subcommands, name)
}

func lookupIn(table map[string]*command, name []byte) *command {
	var lower [maxCommandName]byte
	if len(name) > len(lower) {
		return nil
	}
	for i, c := range name {
		lower[i] = lowerASCII(c)
	}
	return table[string(lower[:len(name)])]
}

// arityOK reports whether n arguments (the name included) fit the command.
func (c *command) arityOK(n int) bool {
	if c.arity >= 0 {
		return n == c.arity
	}
	return n >= -c.arity
}

// appendKeys appends the index of every key argument to dst, first key
// first, found as Redis finds them (COMMAND GETKEYS): by the command's key
// specs, or by Redis' own key finder where those are incomplete. ok is
// false when the arguments do not say where the keys are (a count that is
// not a number, or more keys than arguments) and Redis has no key finder
// of its own for the command; no keys are appended then.
func (c *command) appendKeys(dst []int, args [][]byte) (_ []int, ok bool) {
	return appendKeysLikeRedis(dst, c.keySpecs, c.keysProc, args)
}

// keyCountIsZero reports whether the command's key count argument (EVAL's
// numkeys, ...) is 0.
func (c *command) keyCountIsZero(args [][]byte) bool {
	for _, s := range c.keySpecs {
		if s.begin != beginIndex || s.find != findKeyNum {
			continue
		}
		if at := s.index + s.keyNumIdx; at < len(args) {
			n, ok := parseRedisInt(args[at])
			return ok && n == 0
		}
	}
	return false
}

// blocks reports whether XREAD or XREADGROUP would block: a BLOCK option
// before STREAMS, parsed as Redis' xreadCommand does.
func (c *command) blocks(args [][]byte) bool {
	if !c.blockOption {
		return false
	}
	for i := 1; i < len(args); i++ {
		more := len(args) - i - 1
		switch a := args[i]; {
		case equalFold(a, "block") && more > 0:
			return true
		case equalFold(a, "count") && more > 0:
			i++
		case equalFold(a, "group") && more >= 2:
			i += 2
		case equalFold(a, "noack"):
		default:
			return false // STREAMS, or a syntax error Redis reports
		}
	}
	return false
}
