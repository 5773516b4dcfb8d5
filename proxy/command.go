package proxy

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

// command describes one Redis command: how to route it and where its keys
// are. Key positions follow Redis' COMMAND output: first, last (negative
// counts from the end) and step; numKeysAt > 0 means the count of keys is the
// argument at that position and the keys follow it.
type command struct {
	name      string // lower case
	arity     int    // Redis arity: n exactly, -n at least n
	kind      commandKind
	first     int
	last      int
	step      int
	numKeysAt int
	merge     mergeKind
	why       string // for unsupported commands: what the client should know
}

// keyed builds a command routed by its keys.
func keyed(name string, arity, first, last, step int) *command {
	return &command{name: name, arity: arity, kind: routeKey, first: first, last: last, step: step}
}

// withNumKeys builds a command whose keys are counted by the argument at
// numKeysAt; fixed is a key before the count (ZUNIONSTORE's destination), or 0.
func withNumKeys(name string, arity, numKeysAt, fixed int) *command {
	return &command{name: name, arity: arity, kind: routeKey, first: fixed, numKeysAt: numKeysAt}
}

func split(name string, arity, step int, merge mergeKind, kind commandKind) *command {
	return &command{name: name, arity: arity, kind: kind, first: 1, last: -1, step: step, merge: merge}
}

func special(name string, arity int, kind commandKind) *command {
	return &command{name: name, arity: arity, kind: kind}
}

func refused(why string, names ...string) []*command {
	cmds := make([]*command, len(names))
	for i, n := range names {
		cmds[i] = &command{name: n, arity: -1, kind: unsupported, why: why}
	}
	return cmds
}

// The reasons given for unsupported commands.
const (
	whyAllServers = "it needs every server, and shardproxy routes each request by its key"
	whyBlocking   = "blocking commands would hold a shared server connection"
	whyPubSub     = "publish/subscribe is not proxied"
	whyAdmin      = "administrative commands must be sent to each Redis server directly"
	whyDB         = "the pool's database is set by redis_db"
)

// commands is the command table, keyed by lower-case name.
var commands = buildCommands()

func buildCommands() map[string]*command {
	list := []*command{
		// Strings.
		keyed("get", 2, 1, 1, 1), keyed("set", -3, 1, 1, 1), keyed("setnx", 3, 1, 1, 1),
		keyed("setex", 4, 1, 1, 1), keyed("psetex", 4, 1, 1, 1), keyed("getset", 3, 1, 1, 1),
		keyed("getdel", 2, 1, 1, 1), keyed("getex", -2, 1, 1, 1), keyed("append", 3, 1, 1, 1),
		keyed("strlen", 2, 1, 1, 1), keyed("incr", 2, 1, 1, 1), keyed("decr", 2, 1, 1, 1),
		keyed("incrby", 3, 1, 1, 1), keyed("decrby", 3, 1, 1, 1), keyed("incrbyfloat", 3, 1, 1, 1),
		keyed("getrange", 4, 1, 1, 1), keyed("setrange", 4, 1, 1, 1), keyed("substr", 4, 1, 1, 1),
		keyed("getbit", 3, 1, 1, 1), keyed("setbit", 4, 1, 1, 1), keyed("bitcount", -2, 1, 1, 1),
		keyed("bitpos", -3, 1, 1, 1), keyed("bitfield", -2, 1, 1, 1), keyed("bitfield_ro", -2, 1, 1, 1),
		keyed("lcs", -3, 1, 2, 1), keyed("msetnx", -3, 1, -1, 2), keyed("bitop", -4, 2, -1, 1),
		split("mget", -2, 1, mergeArray, splitKeys), split("mset", -3, 2, mergeOK, splitPairs),

		// Keys.
		split("del", -2, 1, mergeSum, splitKeys), split("unlink", -2, 1, mergeSum, splitKeys),
		split("exists", -2, 1, mergeSum, splitKeys), split("touch", -2, 1, mergeSum, splitKeys),
		keyed("expire", -3, 1, 1, 1), keyed("expireat", -3, 1, 1, 1), keyed("pexpire", -3, 1, 1, 1),
		keyed("pexpireat", -3, 1, 1, 1), keyed("expiretime", 2, 1, 1, 1), keyed("pexpiretime", 2, 1, 1, 1),
		keyed("persist", 2, 1, 1, 1), keyed("ttl", 2, 1, 1, 1), keyed("pttl", 2, 1, 1, 1),
		keyed("type", 2, 1, 1, 1), keyed("dump", 2, 1, 1, 1), keyed("restore", -4, 1, 1, 1),
		keyed("sort", -2, 1, 1, 1), keyed("sort_ro", -2, 1, 1, 1), keyed("copy", -3, 1, 2, 1),
		keyed("rename", 3, 1, 2, 1), keyed("renamenx", 3, 1, 2, 1),

		// Hashes.
		keyed("hset", -4, 1, 1, 1), keyed("hsetnx", 4, 1, 1, 1), keyed("hget", 3, 1, 1, 1),
		keyed("hmset", -4, 1, 1, 1), keyed("hmget", -3, 1, 1, 1), keyed("hincrby", 4, 1, 1, 1),
		keyed("hincrbyfloat", 4, 1, 1, 1), keyed("hdel", -3, 1, 1, 1), keyed("hlen", 2, 1, 1, 1),
		keyed("hstrlen", 3, 1, 1, 1), keyed("hkeys", 2, 1, 1, 1), keyed("hvals", 2, 1, 1, 1),
		keyed("hgetall", 2, 1, 1, 1), keyed("hexists", 3, 1, 1, 1), keyed("hrandfield", -2, 1, 1, 1),
		keyed("hscan", -3, 1, 1, 1),

		// Lists.
		keyed("lpush", -3, 1, 1, 1), keyed("rpush", -3, 1, 1, 1), keyed("lpushx", -3, 1, 1, 1),
		keyed("rpushx", -3, 1, 1, 1), keyed("lpop", -2, 1, 1, 1), keyed("rpop", -2, 1, 1, 1),
		keyed("llen", 2, 1, 1, 1), keyed("lindex", 3, 1, 1, 1), keyed("lset", 4, 1, 1, 1),
		keyed("lrange", 4, 1, 1, 1), keyed("ltrim", 4, 1, 1, 1), keyed("lrem", 4, 1, 1, 1),
		keyed("linsert", 5, 1, 1, 1), keyed("lpos", -3, 1, 1, 1), keyed("rpoplpush", 3, 1, 2, 1),
		keyed("lmove", 5, 1, 2, 1), withNumKeys("lmpop", -4, 1, 0),

		// Sets.
		keyed("sadd", -3, 1, 1, 1), keyed("srem", -3, 1, 1, 1), keyed("smembers", 2, 1, 1, 1),
		keyed("sismember", 3, 1, 1, 1), keyed("smismember", -3, 1, 1, 1), keyed("scard", 2, 1, 1, 1),
		keyed("spop", -2, 1, 1, 1), keyed("srandmember", -2, 1, 1, 1), keyed("smove", 4, 1, 2, 1),
		keyed("sdiff", -2, 1, -1, 1), keyed("sdiffstore", -3, 1, -1, 1), keyed("sinter", -2, 1, -1, 1),
		keyed("sinterstore", -3, 1, -1, 1), keyed("sunion", -2, 1, -1, 1), keyed("sunionstore", -3, 1, -1, 1),
		withNumKeys("sintercard", -3, 1, 0), keyed("sscan", -3, 1, 1, 1),

		// Sorted sets.
		keyed("zadd", -4, 1, 1, 1), keyed("zincrby", 4, 1, 1, 1), keyed("zrem", -3, 1, 1, 1),
		keyed("zcard", 2, 1, 1, 1), keyed("zcount", 4, 1, 1, 1), keyed("zlexcount", 4, 1, 1, 1),
		keyed("zscore", 3, 1, 1, 1), keyed("zmscore", -3, 1, 1, 1), keyed("zrank", -3, 1, 1, 1),
		keyed("zrevrank", -3, 1, 1, 1), keyed("zrange", -4, 1, 1, 1), keyed("zrangebyscore", -4, 1, 1, 1),
		keyed("zrevrangebyscore", -4, 1, 1, 1), keyed("zrangebylex", -4, 1, 1, 1),
		keyed("zrevrangebylex", -4, 1, 1, 1), keyed("zrevrange", -4, 1, 1, 1),
		keyed("zremrangebyrank", 4, 1, 1, 1), keyed("zremrangebyscore", 4, 1, 1, 1),
		keyed("zremrangebylex", 4, 1, 1, 1), keyed("zpopmin", -2, 1, 1, 1), keyed("zpopmax", -2, 1, 1, 1),
		keyed("zrandmember", -2, 1, 1, 1), keyed("zscan", -3, 1, 1, 1), keyed("zrangestore", -5, 1, 2, 1),
		withNumKeys("zunionstore", -4, 2, 1), withNumKeys("zinterstore", -4, 2, 1),
		withNumKeys("zdiffstore", -4, 2, 1), withNumKeys("zunion", -3, 1, 0), withNumKeys("zinter", -3, 1, 0),
		withNumKeys("zdiff", -3, 1, 0), withNumKeys("zintercard", -3, 1, 0), withNumKeys("zmpop", -4, 1, 0),

		// HyperLogLog.
		keyed("pfadd", -2, 1, 1, 1), keyed("pfcount", -2, 1, -1, 1), keyed("pfmerge", -2, 1, -1, 1),

		// Geo.
		keyed("geoadd", -5, 1, 1, 1), keyed("geodist", -4, 1, 1, 1), keyed("geohash", -2, 1, 1, 1),
		keyed("geopos", -2, 1, 1, 1), keyed("georadius", -6, 1, 1, 1), keyed("georadius_ro", -6, 1, 1, 1),
		keyed("georadiusbymember", -5, 1, 1, 1), keyed("georadiusbymember_ro", -5, 1, 1, 1),
		keyed("geosearch", -7, 1, 1, 1), keyed("geosearchstore", -8, 1, 2, 1),

		// Streams (non-blocking, single key).
		keyed("xadd", -5, 1, 1, 1), keyed("xlen", 2, 1, 1, 1), keyed("xrange", -4, 1, 1, 1),
		keyed("xrevrange", -4, 1, 1, 1), keyed("xdel", -3, 1, 1, 1), keyed("xtrim", -4, 1, 1, 1),
		keyed("xack", -4, 1, 1, 1), keyed("xclaim", -6, 1, 1, 1), keyed("xautoclaim", -6, 1, 1, 1),
		keyed("xpending", -3, 1, 1, 1), keyed("xsetid", -3, 1, 1, 1),

		// Scripting: routed by the keys after numkeys (with none, to the
		// owner of "placeholder"); SCRIPT and FUNCTION go to every server.
		withNumKeys("eval", -3, 2, 0), withNumKeys("evalsha", -3, 2, 0),
		withNumKeys("eval_ro", -3, 2, 0), withNumKeys("evalsha_ro", -3, 2, 0),
		withNumKeys("fcall", -3, 2, 0), withNumKeys("fcall_ro", -3, 2, 0),
		special("script", -2, fanOut), special("function", -2, fanOut),

		// Keyless commands nutcracker sends to the owner of "placeholder".
		special("command", -1, routePlaceholder), special("lolwut", -1, routePlaceholder),

		// Answered by the proxy.
		special("ping", -1, local), special("echo", 2, local), special("quit", -1, local),
		special("select", 2, local), special("auth", -2, local), special("hello", -1, local),
		special("client", -2, local), special("info", -1, local), special("reset", 1, local),
		special("readonly", 1, local), special("readwrite", 1, local),

		// Transactions.
		special("multi", 1, transaction), special("exec", 1, transaction),
		special("discard", 1, transaction),
		{name: "watch", arity: -2, kind: transaction, first: 1, last: -1, step: 1},
		special("unwatch", 1, transaction),
	}
	list = append(list, refused(whyAllServers, "keys", "scan", "randomkey", "dbsize", "flushall",
		"flushdb", "swapdb", "wait", "waitaof", "memory", "object",
		"time", "lastsave", "xread", "xreadgroup", "xgroup", "xinfo")...)
	list = append(list, refused(whyBlocking, "blpop", "brpop", "brpoplpush", "blmove", "blmpop",
		"bzpopmin", "bzpopmax", "bzmpop")...)
	list = append(list, refused(whyPubSub, "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
		"ssubscribe", "sunsubscribe", "publish", "spublish", "pubsub")...)
	list = append(list, refused(whyAdmin, "config", "cluster", "monitor", "shutdown", "slaveof",
		"replicaof", "save", "bgsave", "bgrewriteaof", "debug", "slowlog", "latency", "acl",
		"module", "sync", "psync", "failover", "migrate", "role", "asking", "replconf")...)
	list = append(list, refused(whyDB, "move")...)

	table := make(map[string]*command, len(list))
	for _, c := range list {
		if _, dup := table[c.name]; dup {
			panic("proxy: command " + c.name + " listed twice")
		}
		table[c.name] = c
	}
	return table
}

// lookupCommand finds name in the table, ignoring case, without allocating.
func lookupCommand(name []byte) *command {
	var lower [24]byte
	if len(name) > len(lower) {
		return nil
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return commands[string(lower[:len(name)])]
}

// arityOK reports whether n arguments (the name included) fit the command.
func (c *command) arityOK(n int) bool {
	if c.arity >= 0 {
		return n == c.arity
	}
	return n >= -c.arity
}

// appendKeys appends the index of every key argument to dst, first key
// first. ok is false when the arguments do not say where the keys are (a
// numkeys that is not a positive number within the arguments).
func (c *command) appendKeys(dst []int, args [][]byte) (_ []int, ok bool) {
	if c.numKeysAt > 0 {
		if c.first > 0 {
			dst = append(dst, c.first)
		}
		if c.numKeysAt >= len(args) {
			return dst, false
		}
		n, ok := parseLength(args[c.numKeysAt])
		if !ok || n <= 0 || c.numKeysAt+n >= len(args) {
			return dst, false
		}
		for i := c.numKeysAt + 1; i <= c.numKeysAt+n; i++ {
			dst = append(dst, i)
		}
		return dst, true
	}
	if c.step <= 0 {
		return dst, false
	}
	last := c.last
	if last < 0 {
		last += len(args)
	}
	for i := c.first; i <= last && i < len(args); i += c.step {
		dst = append(dst, i)
	}
	return dst, true
}
