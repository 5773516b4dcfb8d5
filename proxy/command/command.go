package command

import "strings"

//go:generate go run ./internal/cmdgen -o commandtable.go

// Kind says how the proxy handles a command.
type Kind uint8

const (
	// RouteKey commands go whole to the server that owns their first key.
	// When they name more keys, all must live on that server.
	RouteKey Kind = iota
	// SplitKeys commands (MGET DEL UNLINK EXISTS TOUCH) are split per
	// server and their replies merged.
	SplitKeys
	// SplitPairs is MSET: key/value pairs split per server.
	SplitPairs
	// RoutePlaceholder commands have no key; like nutcracker they go to
	// the server that owns the key "placeholder".
	RoutePlaceholder
	// Local commands are answered by the proxy.
	Local
	// Transaction commands (MULTI EXEC DISCARD WATCH UNWATCH) pin the
	// client to one server connection.
	Transaction
	// Unsupported commands get an error naming them and the Reason; the
	// connection stays.
	Unsupported
	// FanOut commands (SCRIPT LOAD, FUNCTION FLUSH, DBSIZE, KEYS, ...) go
	// to every server, their replies merged by Merge; SCAN (MergeScan)
	// walks the servers one at a time.
	FanOut
	// PubSub commands (SUBSCRIBE, PUBLISH, PUBSUB CHANNELS, ...) are
	// handled by the proxy's subscriptions: a channel is routed like a key.
	PubSub
)

// Merge says how the replies of a command sent to several servers are put
// back together.
type Merge uint8

const (
	MergeArray  Merge = iota // MGET: one array in the client's key order
	MergeSum                 // DEL UNLINK EXISTS TOUCH: summed integers
	MergeOK                  // MSET: +OK once every part said OK
	MergeSame                // SCRIPT, FUNCTION LOAD: the reply every server gave
	MergeAnd                 // SCRIPT EXISTS: 1 where every server said 1
	MergeConcat              // KEYS: every server's array, in server order
	MergeAnyKey              // RANDOMKEY: a key from some server that has one
	MergeScan                // SCAN: one server at a time, its cursor in the proxy's
	MergeUnion               // PUBSUB CHANNELS: every server's array, without duplicates
	MergeMax                 // PUBSUB NUMPAT: the largest of the integers
)

// Reason says why the proxy refuses a command; the zero value is none.
// The proxy words each reason in its error reply.
type Reason uint8

const (
	WhyAllServers  Reason = iota + 1 // it needs every server (SCAN, KEYS, ...)
	WhyAdmin                         // administration of one server
	WhyDB                            // MOVE: the pool's database is set by redis_db
	WhyScriptKill                    // SCRIPT KILL, FUNCTION KILL: the busy server reads no shared connection
	WhyScriptDebug                   // SCRIPT DEBUG needs a connection of its own
	WhyPerServer                     // FUNCTION LIST, DUMP, STATS: each server answers for itself
)

// Spec describes one Redis command, or one subcommand of a container such
// as OBJECT: what redis-server says about it (commandtable.go, from COMMAND
// INFO) and how the proxy handles it (its Kind, from policies). Specs are
// shared by every client and never change.
type Spec struct {
	// Name is the command's name in lower case; "container|sub" for a
	// subcommand.
	Name string
	// Kind is how the proxy handles the command.
	Kind Kind
	// Merge is how the replies of a SplitKeys or SplitPairs command are
	// merged.
	Merge Merge
	// Step is 1 for SplitKeys commands, 2 for MSET's key/value pairs.
	Step int
	// Why is the reason an Unsupported command is refused.
	Why Reason

	arity       int // Redis arity: n exactly, -n at least n
	flags       commandFlags
	acl         aclCategories
	tips        []string
	keySpecs    []keySpec
	keysProc    keysProc         // Redis' own key finder, where its specs are incomplete
	subcommands map[string]*Spec // for containers routed by subcommand, by lower-case name
	blockOption bool             // XREAD, XREADGROUP: blocking only with a BLOCK option
	blocking    bool             // BLPOP, BZPOPMIN, ...: always blocking
	container   bool             // redis-server has subcommands for it (CLIENT, OBJECT, ...)

	aclID     int              // the command's place in ACLCommands
	aclParent *Spec            // the container of a subcommand, for ACL rules
	aclSubs   map[string]*Spec // every subcommand redis-server has, for ACL rules
}

// policy is how the proxy handles a command, where redis-server's own
// description does not settle it (see derivedPolicy).
type policy struct {
	kind        Kind
	merge       Merge
	step        int
	blockOption bool
	blocking    bool
	why         Reason
}

// policies are the proxy's own decisions, by command name. A container
// named here (CLIENT, SCRIPT, ...) is handled as a whole; the others
// (OBJECT, MEMORY, XGROUP, XINFO) are handled by subcommand.
var policies = buildPolicies()

func buildPolicies() map[string]policy {
	p := map[string]policy{
		// Split per server and merged.
		"mget":   {kind: SplitKeys, merge: MergeArray, step: 1},
		"del":    {kind: SplitKeys, merge: MergeSum, step: 1},
		"unlink": {kind: SplitKeys, merge: MergeSum, step: 1},
		"exists": {kind: SplitKeys, merge: MergeSum, step: 1},
		"touch":  {kind: SplitKeys, merge: MergeSum, step: 1},
		"mset":   {kind: SplitPairs, merge: MergeOK, step: 2},

		// Redis flags them blocking, but they block only with BLOCK.
		"xread":      {kind: RouteKey, blockOption: true},
		"xreadgroup": {kind: RouteKey, blockOption: true},

		// Keyless and the same on every server: nutcracker's placeholder.
		"command": {kind: RoutePlaceholder},
		"lolwut":  {kind: RoutePlaceholder},

		// Whole-pool commands whose replies the tips do not say how to
		// merge (keyspacePolicy takes the rest from the tips).
		"randomkey": {kind: FanOut, merge: MergeAnyKey},
		"scan":      {kind: FanOut, merge: MergeScan},
	}
	set := func(pol policy, names ...string) {
		for _, n := range names {
			p[n] = pol
		}
	}
	set(policy{kind: Local}, "ping", "echo", "quit", "select", "auth", "hello", "client", "info",
		"reset", "readonly", "readwrite")
	// A cluster client finds the pool to be one Redis Cluster node, the
	// proxy, owning every slot; the subcommands that change a cluster are
	// admin commands, refused as the others (derivedPolicy).
	set(policy{kind: Local}, "cluster|info", "cluster|myid", "cluster|slots", "cluster|shards",
		"cluster|nodes", "cluster|links", "cluster|keyslot", "cluster|countkeysinslot", "cluster|getkeysinslot")
	set(policy{kind: Transaction}, "multi", "exec", "discard", "watch", "unwatch")
	// WAIT asks every server, on connections of their own (proxy/wait.go).
	set(policy{kind: Local}, "wait")
	// Keyless commands whose answer differs per server; the admin flag
	// and a request_policy of all_shards or all_nodes say the
	// same for the rest (derivedPolicy).
	// SCRIPT and FUNCTION are handled by subcommand: those that change or
	// ask every server's script cache go to every server, as their tips
	// say (scriptCachePolicy); these have no tips to go by.
	set(policy{kind: Unsupported, why: WhyScriptDebug}, "script|debug")
	set(policy{kind: Unsupported, why: WhyPerServer}, "function|list", "function|dump")
	set(policy{kind: Unsupported, why: WhyAllServers}, "swapdb", "time", "lastsave")
	// ACL is answered from the pool's users (proxy/acl.go), which come
	// from its acl_file: the subcommands that would change them are
	// refused there.
	set(policy{kind: Local}, "acl|cat", "acl|deluser", "acl|dryrun", "acl|genpass", "acl|getuser",
		"acl|help", "acl|list", "acl|load", "acl|log", "acl|save", "acl|setuser", "acl|users", "acl|whoami")
	set(policy{kind: Unsupported, why: WhyAdmin}, "config", "module", "latency",
		"slowlog", "role", "asking",
		// MIGRATE moves keys to a server of its choosing, off the ring.
		"migrate")
	set(policy{kind: Unsupported, why: WhyDB}, "move")
	return p
}

// derivedPolicy is the policy of a command that policies does not name,
// from what redis-server says about it. ok is false when that says nothing
// the proxy can act on.
func derivedPolicy(rc *redisCommand) (_ policy, ok bool) {
	if p, ok := scriptCachePolicy(rc); ok {
		return p, true
	}
	switch {
	case rc.flags&cmdPubsub != 0:
		// Channels are routed like keys, patterns listen on every server.
		return policy{kind: PubSub}, true
	case rc.flags&cmdBlocking != 0 && hasKeys(rc.keySpecs):
		// BLPOP, BZPOPMIN, ...: routed by their keys, on a connection of
		// their own while they block (see Blocks).
		return policy{kind: RouteKey, blocking: true}, true
	case hasKeys(rc.keySpecs):
		return policy{kind: RouteKey}, true
	case rc.flags&cmdAdmin != 0:
		return policy{kind: Unsupported, why: WhyAdmin}, true
	case rc.acl&aclKeyspace != 0 && (hasTip(rc.tips, "request_policy:all_shards") || hasTip(rc.tips, "request_policy:all_nodes")):
		return keyspacePolicy(rc), true
	case hasTip(rc.tips, "request_policy:all_shards"), hasTip(rc.tips, "request_policy:all_nodes"):
		return policy{kind: Unsupported, why: WhyAllServers}, true
	case strings.HasSuffix(rc.name, "|help"):
		return policy{kind: RoutePlaceholder}, true
	}
	return policy{}, false
}

// scriptCachePolicy is the policy of a SCRIPT or FUNCTION subcommand that
// redis-server's request_policy tip sends to every server (SCRIPT LOAD,
// EXISTS, FLUSH; FUNCTION LOAD, DELETE, FLUSH, RESTORE, ...), from its
// response_policy tip: EVALSHA and FCALL may run on any server, so the
// proxy sends these to all of them and merges the replies as the tip says.
// ok is false for any other command.
func scriptCachePolicy(rc *redisCommand) (_ policy, ok bool) {
	container, _, sub := strings.Cut(rc.name, "|")
	if !sub || container != "script" && container != "function" ||
		!hasTip(rc.tips, "request_policy:all_shards") && !hasTip(rc.tips, "request_policy:all_nodes") {
		return policy{}, false
	}
	switch {
	case hasTip(rc.tips, "response_policy:all_succeeded"):
		return policy{kind: FanOut, merge: MergeSame}, true
	case hasTip(rc.tips, "response_policy:agg_logical_and"):
		return policy{kind: FanOut, merge: MergeAnd}, true
	case hasTip(rc.tips, "response_policy:one_succeeded"):
		// KILL: a server busy with a script reads nothing more from the
		// shared connection the script came on.
		return policy{kind: Unsupported, why: WhyScriptKill}, true
	}
	return policy{kind: Unsupported, why: WhyPerServer}, true
}

// keyspacePolicy is the policy of a keyless keyspace command that
// redis-server's request_policy tip sends to every server (DBSIZE, KEYS,
// FLUSHDB, FLUSHALL): the pool's keyspace is the union of the servers',
// so the proxy sends it to all of them and merges the replies as the
// response_policy tip says. KEYS has no response_policy; its array reply
// in no particular order (nondeterministic_output_order) is every
// server's, concatenated.
func keyspacePolicy(rc *redisCommand) policy {
	switch {
	case hasTip(rc.tips, "response_policy:agg_sum"):
		return policy{kind: FanOut, merge: MergeSum}
	case hasTip(rc.tips, "response_policy:all_succeeded"):
		return policy{kind: FanOut, merge: MergeSame}
	case hasTip(rc.tips, "nondeterministic_output_order"):
		return policy{kind: FanOut, merge: MergeConcat}
	}
	return policy{kind: Unsupported, why: WhyAllServers}
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

func buildCommands() map[string]*Spec {
	table := make(map[string]*Spec, len(redisCommandTable))
	for i := range redisCommandTable {
		rc := &redisCommandTable[i]
		if _, dup := table[rc.name]; dup {
			panic("command: " + rc.name + " listed twice")
		}
		table[rc.name] = newSpec(rc)
	}
	for name := range policies {
		if container, sub, ok := strings.Cut(name, "|"); ok {
			if c := table[container]; c == nil || c.Subcommand([]byte(sub)) == nil {
				panic("command: policy for " + name + ", which redis-server " + commandTableVersion + " does not have")
			}
			continue
		}
		if table[name] == nil {
			panic("command: policy for " + name + ", which redis-server " + commandTableVersion + " does not have")
		}
	}
	return table
}

// newSpec builds the proxy's view of rc, and of its subcommands when rc is
// a container without a policy of its own.
func newSpec(rc *redisCommand) *Spec {
	c := &Spec{
		Name: rc.name, arity: rc.arity, flags: rc.flags, acl: rc.acl, tips: rc.tips,
		keySpecs: rc.keySpecs, keysProc: keysProcs[rc.name], container: len(rc.subcommands) > 0,
	}
	for _, s := range rc.keySpecs {
		incomplete := s.begin == beginUnknown || s.find == findUnknown || s.flags&ksIncomplete != 0
		if incomplete && s.flags&ksNotKey == 0 && c.keysProc == keysBySpecs {
			panic("command: " + rc.name + " has an incomplete key spec and no key finder")
		}
	}
	p, named := policies[rc.name]
	if !named && len(rc.subcommands) > 0 {
		if rc.arity > -2 {
			panic("command: container " + rc.name + " may be called without a subcommand")
		}
		c.Kind = Unsupported // unreachable: the arity asks for a subcommand
		c.subcommands = make(map[string]*Spec, len(rc.subcommands))
		for i := range rc.subcommands {
			sub := newSpec(&rc.subcommands[i])
			c.subcommands[sub.Name[strings.IndexByte(sub.Name, '|')+1:]] = sub
		}
		return c
	}
	if !named {
		var ok bool
		if p, ok = derivedPolicy(rc); !ok {
			panic("command: no policy for " + rc.name)
		}
	}
	c.Kind, c.Merge, c.Step, c.blockOption, c.blocking, c.Why = p.kind, p.merge, p.step, p.blockOption, p.blocking, p.why
	return c
}

// maxCommandName bounds the names Lookup and Subcommand look up; Redis'
// longest is 20 bytes (georadiusbymember_ro).
const maxCommandName = 24

// Lookup finds the command called name, ignoring case, without allocating.
// It returns nil for a command redis-server does not have.
func Lookup(name []byte) *Spec {
	return lookupIn(commands, name)
}

// HasSubcommands reports whether the command is a container (OBJECT,
// XINFO, ...) whose subcommands are specs of their own: the second
// argument names the subcommand.
func (c *Spec) HasSubcommands() bool { return c.subcommands != nil }

// IsContainer reports whether redis-server has subcommands for the
// command, whether or not the proxy handles them apart: Redis names such a
// command by its subcommand ("client|id") in some errors.
func (c *Spec) IsContainer() bool { return c.container }

// Subcommand finds a container's subcommand by name, ignoring case, without
// allocating. It returns nil when the container has no such subcommand.
func (c *Spec) Subcommand(name []byte) *Spec {
	return lookupIn(c.subcommands, name)
}

func lookupIn(table map[string]*Spec, name []byte) *Spec {
	var lower [maxCommandName]byte
	if len(name) > len(lower) {
		return nil
	}
	for i, c := range name {
		lower[i] = lowerASCII(c)
	}
	return table[string(lower[:len(name)])]
}

// AllowedBeforeAuth reports whether a client that has not authenticated yet
// may send the command: those redis-server flags no_auth (AUTH, HELLO,
// QUIT, RESET), and PING, which the proxy answers itself, so that health
// checks need no password.
func (c *Spec) AllowedBeforeAuth() bool {
	return c.flags&cmdNoAuth != 0 || c.Name == "ping"
}

// ArityOK reports whether n arguments (the name included) fit the command.
func (c *Spec) ArityOK(n int) bool {
	if c.arity >= 0 {
		return n == c.arity
	}
	return n >= -c.arity
}

// AppendKeys appends the index of every key argument to dst, first key
// first, found as Redis finds them (COMMAND GETKEYS): by the command's key
// specs, or by Redis' own key finder where those are incomplete. ok is
// false when the arguments do not say where the keys are (a count that is
// not a number, or more keys than arguments) and Redis has no key finder
// of its own for the command; no keys are appended then.
func (c *Spec) AppendKeys(dst []int, args [][]byte) (_ []int, ok bool) {
	return appendKeysLikeRedis(dst, c.keySpecs, c.keysProc, args)
}

// OmitsKeys reports whether args call a command whose keys are optional
// (Redis flags them no_mandatory_keys: EVAL, EVALSHA, FCALL and their
// read-only variants) without any: its key count argument is 0.
func (c *Spec) OmitsKeys(args [][]byte) bool {
	return c.flags&cmdNoMandatoryKeys != 0 && c.keyCountIsZero(args)
}

// keyCountIsZero reports whether the command's key count argument (EVAL's
// numkeys, ...) is 0.
func (c *Spec) keyCountIsZero(args [][]byte) bool {
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

// Blocks reports whether args may block on the server: a command Redis
// flags blocking (BLPOP, BZPOPMIN, ...), or XREAD or XREADGROUP with a
// BLOCK option before STREAMS, parsed as Redis' xreadCommand does.
func (c *Spec) Blocks(args [][]byte) bool {
	if c.blocking {
		return true
	}
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
