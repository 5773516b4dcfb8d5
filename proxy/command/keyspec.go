package command

// redisCommand is a command as redis-server describes it in COMMAND INFO;
// commandtable.go lists them all, generated from redis-server itself.
type redisCommand struct {
	name        string // lower case; "container|sub" for a subcommand
	arity       int    // n exactly, -n at least n (the name counts)
	flags       commandFlags
	acl         aclCategories
	tips        []string
	keySpecs    []keySpec
	subcommands []redisCommand
}

// commandFlags are Redis' command flags, in COMMAND INFO's order.
type commandFlags uint32

const (
	cmdWrite commandFlags = 1 << iota
	cmdReadonly
	cmdDenyoom
	cmdModule
	cmdAdmin
	cmdPubsub
	cmdNoscript
	cmdBlocking
	cmdLoading
	cmdStale
	cmdSkipMonitor
	cmdSkipSlowlog
	cmdAsking
	cmdFast
	cmdNoAuth
	cmdNoMandatoryKeys
	cmdNoAsyncLoading
	cmdNoMulti
	cmdMovablekeys
	cmdAllowBusy
)

// commandFlagNames are the flags' names in COMMAND INFO, bit by bit.
var commandFlagNames = []string{"write", "readonly", "denyoom", "module", "admin", "pubsub",
	"noscript", "blocking", "loading", "stale", "skip_monitor", "skip_slowlog", "asking", "fast",
	"no_auth", "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys", "allow_busy"}

// aclCategories are Redis' ACL categories of a command.
type aclCategories uint32

const (
	aclKeyspace aclCategories = 1 << iota
	aclRead
	aclWrite
	aclSet
	aclSortedset
	aclList
	aclHash
	aclString
	aclBitmap
	aclHyperloglog
	aclGeo
	aclStream
	aclPubsub
	aclAdmin
	aclFast
	aclSlow
	aclBlocking
	aclDangerous
	aclConnection
	aclTransaction
	aclScripting
)

// aclCategoryNames are the categories' names (without '@'), bit by bit.
var aclCategoryNames = []string{"keyspace", "read", "write", "set", "sortedset", "list", "hash",
	"string", "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
	"blocking", "dangerous", "connection", "transaction", "scripting"}

// keySpecFlags say how a command uses the keys a key spec finds.
type keySpecFlags uint16

const (
	ksRO keySpecFlags = 1 << iota
	ksRW
	ksOW
	ksRM
	ksAccess
	ksUpdate
	ksInsert
	ksDelete
	ksNotKey        // a channel or the like, not a key of the keyspace
	ksIncomplete    // the spec may miss keys: the command's own key finder has the last word
	ksVariableFlags // the flags depend on the arguments
)

// keySpecFlagNames are the flags' names in COMMAND INFO, bit by bit.
var keySpecFlagNames = []string{"RO", "RW", "OW", "RM", "access", "update", "insert", "delete",
	"not_key", "incomplete", "variable_flags"}

type beginSearch uint8

const (
	beginUnknown beginSearch = iota
	beginIndex               // keys start at a fixed argument
	beginKeyword             // keys start after a keyword
)

type findKeys uint8

const (
	findUnknown findKeys = iota
	findRange            // keys up to a last one, every keyStep arguments
	findKeyNum           // an argument says how many keys follow
)

// keySpec is one of Redis' key specifications (COMMAND INFO, "key specs"):
// where the search for keys begins, and how the keys are found from there.
type keySpec struct {
	flags keySpecFlags

	begin     beginSearch
	index     int    // beginIndex: the first key's position
	keyword   string // beginKeyword: the keys follow this keyword, in any case
	startFrom int    // beginKeyword: where the search starts; negative searches backwards from the end

	find      findKeys
	lastKey   int // findRange: the last key relative to the first; negative counts from the end
	keyStep   int // findRange, findKeyNum: the distance between keys
	limit     int // findRange with lastKey -1: the keys are 1/limit of the arguments left
	keyNumIdx int // findKeyNum: the count's position relative to the begin
	firstKey  int // findKeyNum: the first key's position relative to the begin
}

// keysProc is one of Redis' own key finders (the getkeys functions of
// src/db.c), for commands whose key specs are incomplete, or whose key
// flags vary; Redis falls back to it when the specs fail.
type keysProc uint8

const (
	keysBySpecs       keysProc = iota
	keysFirst                  // SET, BITFIELD: the first argument
	keysSort                   // SORT: the key, and STORE's destination
	keysSortRO                 // SORT_RO: the key
	keysMigrate                // MIGRATE: the key, or the keys after KEYS
	keysGeoradius              // GEORADIUS[BYMEMBER]: the key, and the last STORE or STOREDIST
	keysXread                  // XREAD[GROUP]: the keys after STREAMS
	keysCountAt1               // numkeys key... (LMPOP, ZUNION, SINTERCARD, ...)
	keysCountAt2               // arg numkeys key... (EVAL, FCALL, BLMPOP, BZMPOP)
	keysStoreCountAt2          // destination numkeys key... (ZUNIONSTORE, ...)
)

// keysProcs names the commands that have a key finder of their own in
// Redis 7.0.
var keysProcs = map[string]keysProc{
	"set": keysFirst, "bitfield": keysFirst,
	"sort": keysSort, "sort_ro": keysSortRO, "migrate": keysMigrate,
	"georadius": keysGeoradius, "georadiusbymember": keysGeoradius,
	"xread": keysXread, "xreadgroup": keysXread,
	"lmpop": keysCountAt1, "zmpop": keysCountAt1, "sintercard": keysCountAt1, "zunion": keysCountAt1,
	"zinter": keysCountAt1, "zdiff": keysCountAt1, "zintercard": keysCountAt1,
	"eval": keysCountAt2, "evalsha": keysCountAt2, "eval_ro": keysCountAt2, "evalsha_ro": keysCountAt2,
	"fcall": keysCountAt2, "fcall_ro": keysCountAt2, "blmpop": keysCountAt2, "bzmpop": keysCountAt2,
	"zunionstore": keysStoreCountAt2, "zinterstore": keysStoreCountAt2, "zdiffstore": keysStoreCountAt2,
}

// appendKeysLikeRedis appends the positions of the keys in args as Redis'
// getKeysFromCommandWithSpecs finds them (COMMAND GETKEYS): by the key
// specs when they are reliable, by the command's own key finder when the
// specs fail or their flags vary. ok is false when neither finds where the
// keys are (the specs fail and there is no key finder); no keys are
// appended then.
func appendKeysLikeRedis(dst []int, specs []keySpec, proc keysProc, args [][]byte) (_ []int, ok bool) {
	keyed, varies := false, false
	for _, s := range specs {
		keyed = keyed || s.flags&ksNotKey == 0
		varies = varies || s.flags&ksVariableFlags != 0
	}
	start := len(dst)
	if keyed && !varies {
		if dst, ok = appendSpecKeys(dst, specs, args); ok || proc == keysBySpecs {
			return dst, ok
		}
	}
	return appendProcKeys(dst[:start], proc, args), true
}

// appendSpecKeys appends the positions of the keys that specs find in args,
// as Redis' getKeysUsingKeySpecs does. ok is false when a spec cannot be
// applied to these arguments (a count that is not a number, keys beyond the
// arguments, or an unknown or incomplete spec); dst then has no new keys.
func appendSpecKeys(dst []int, specs []keySpec, args [][]byte) (_ []int, ok bool) {
	start := len(dst)
	for i := range specs {
		s := &specs[i]
		first, last, step, found, ok := specRange(s, args)
		if !ok {
			return dst[:start], false
		}
		if !found {
			continue
		}
		for k := first; k <= last; k += step {
			dst = append(dst, k)
		}
		if s.flags&ksIncomplete != 0 {
			return dst[:start], false
		}
	}
	return dst, true
}

// specRange says where key spec s finds its keys in args: from first to
// last, every step arguments. found is false when it finds none (a not_key
// spec, or an optional keyword that is not there); ok is false when it
// cannot be applied to these arguments (a count that is not a number, keys
// beyond the arguments, or an unknown spec).
func specRange(s *keySpec, args [][]byte) (first, last, step int, found, ok bool) {
	argc := len(args)
	if s.flags&ksNotKey != 0 {
		return 0, 0, 0, false, true
	}
	switch s.begin {
	case beginIndex:
		first = s.index
	case beginKeyword:
		first = keywordEnd(args, s.keyword, s.startFrom)
		if first == 0 {
			return 0, 0, 0, false, true // an optional keyword that is not there
		}
	default:
		return 0, 0, 0, false, false
	}
	switch s.find {
	case findRange:
		step = s.keyStep
		switch {
		case s.lastKey >= 0:
			last = first + s.lastKey
		case s.limit == 0:
			last = argc + s.lastKey
		default:
			last = first + (argc-first)/s.limit + s.lastKey
		}
	case findKeyNum:
		step = s.keyStep
		at := first + s.keyNumIdx
		if at >= argc {
			return 0, 0, 0, false, false
		}
		n, isNum := parseRedisInt(args[at])
		if !isNum || n < 0 {
			return 0, 0, 0, false, false
		}
		first += s.firstKey
		last = first + n - 1
	default:
		return 0, 0, 0, false, false
	}
	if last >= argc || last < first || first >= argc || step <= 0 {
		return 0, 0, 0, false, false
	}
	return first, last, step, true, true
}

// keywordEnd returns the position after the first (or, searching
// backwards, the last) argument equal to keyword, or 0. Like Redis it never
// looks at the command name, nor at the last argument when searching
// forwards: a keyword there has no key after it.
func keywordEnd(args [][]byte, keyword string, startFrom int) int {
	argc := len(args)
	from, to, dir := startFrom, argc-1, 1
	if startFrom <= 0 {
		from, to = argc+startFrom, 1
	}
	if from > to {
		dir = -1
	}
	for i := from; i != to; i += dir {
		if i >= argc || i < 1 {
			break
		}
		if equalFold(args[i], keyword) {
			return i + 1
		}
	}
	return 0
}

// appendProcKeys appends the keys that Redis' key finder p finds.
func appendProcKeys(dst []int, p keysProc, args [][]byte) []int {
	switch p {
	case keysFirst, keysSortRO:
		return append(dst, 1)
	case keysSort:
		return appendSortKeys(dst, args)
	case keysMigrate:
		return appendMigrateKeys(dst, args)
	case keysGeoradius:
		return appendGeoradiusKeys(dst, args)
	case keysXread:
		return appendXreadKeys(dst, args)
	case keysCountAt1:
		return appendCountedKeys(dst, args, 0, 1)
	case keysCountAt2:
		return appendCountedKeys(dst, args, 0, 2)
	case keysStoreCountAt2:
		return appendCountedKeys(dst, args, 1, 2)
	}
	return dst
}

// appendCountedKeys finds keys as Redis' genericGetKeys does: the count at
// countAt (read like C's atoi), that many keys after it, then the
// destination at storeAt, if any. A count below 1 or beyond the arguments
// means no keys: the command reports the error.
func appendCountedKeys(dst []int, args [][]byte, storeAt, countAt int) []int {
	if countAt >= len(args) {
		return dst
	}
	n := atoi(args[countAt])
	if n < 1 || n > len(args)-countAt-1 {
		return dst
	}
	for k := countAt + 1; k <= countAt+n; k++ {
		dst = append(dst, k)
	}
	if storeAt > 0 {
		dst = append(dst, storeAt)
	}
	return dst
}

// appendGeoradiusKeys finds keys as Redis' georadiusGetKeys does: the key,
// and the destination of the last STORE or STOREDIST from the fifth
// argument on.
func appendGeoradiusKeys(dst []int, args [][]byte) []int {
	dst = append(dst, 1)
	store := 0
	for i := 5; i+1 < len(args); i++ {
		if equalFold(args[i], "store") || equalFold(args[i], "storedist") {
			store = i + 1
			i++
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// appendXreadKeys finds keys as Redis' xreadGetKeys does: after STREAMS,
// the first half of the arguments left (the other half are IDs).
func appendXreadKeys(dst []int, args [][]byte) []int {
	streams := 0
	for i := 1; i < len(args) && streams == 0; i++ {
		switch a := args[i]; {
		case equalFold(a, "block"), equalFold(a, "count"):
			i++
		case equalFold(a, "group"):
			i += 2
		case equalFold(a, "noack"):
		case equalFold(a, "streams"):
			streams = i
		default:
			return dst // a syntax error
		}
	}
	n := len(args) - streams - 1
	if streams == 0 || n == 0 || n%2 != 0 {
		return dst
	}
	for k := streams + 1; k <= streams+n/2; k++ {
		dst = append(dst, k)
	}
	return dst
}

// appendSortKeys finds SORT's keys as Redis' sortGetKeys does: the sorted
// key, and the destination of the last STORE. LIMIT takes two arguments,
// GET and BY one; the keys that BY and GET patterns form are found by
// AppendSortPatterns.
func appendSortKeys(dst []int, args [][]byte) []int {
	dst = append(dst, 1)
	store := 0
	for i := 2; i < len(args); i++ {
		switch a := args[i]; {
		case equalFold(a, "limit"):
			i += 2
		case equalFold(a, "get"), equalFold(a, "by"):
			i++
		case equalFold(a, "store") && i+1 < len(args):
			store = i + 1
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// appendMigrateKeys finds MIGRATE's keys as Redis' migrateGetKeys does:
// host port key db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw]
// [KEYS key...], where the keys after KEYS need an empty key argument.
func appendMigrateKeys(dst []int, args [][]byte) []int {
	first, n := 3, 1
	for i := 6; i < len(args); i++ {
		a := args[i]
		if equalFold(a, "keys") {
			if len(args[3]) > 0 {
				n = 0 // a syntax error MIGRATE reports itself
			} else {
				first, n = i+1, len(args)-i-1
			}
			break
		}
		switch {
		case equalFold(a, "auth"):
			i++
		case equalFold(a, "auth2"):
			i += 2
		}
	}
	for k := first; k < first+n; k++ {
		dst = append(dst, k)
	}
	return dst
}

// AppendSortPatterns appends the positions of SORT's (or SORT_RO's) BY and
// GET patterns in args to dst, reading the options as Redis' sortCommand
// does, up to the first it does not take: that is a syntax error Redis
// answers without reading a key. For other commands it appends nothing. A
// pattern with a '*' forms a key from each element sorted (GET # and a
// pattern without '*' read no key), so those keys, too, must be on the
// server of the sorted key.
func (c *Spec) AppendSortPatterns(dst []int, args [][]byte) []int {
	if c.keysProc != keysSort && c.keysProc != keysSortRO {
		return dst // the common case, inlined into the caller
	}
	return appendSortPatterns(dst, args, c.keysProc == keysSortRO)
}

func appendSortPatterns(dst []int, args [][]byte, readonly bool) []int {
	for j := 2; j < len(args); j++ {
		left := len(args) - j - 1
		a := args[j]
		switch {
		case equalFold(a, "asc"), equalFold(a, "desc"), equalFold(a, "alpha"):
		case equalFold(a, "limit") && left >= 2:
			j += 2
		case !readonly && equalFold(a, "store") && left >= 1:
			j++
		case (equalFold(a, "by") || equalFold(a, "get")) && left >= 1:
			dst = append(dst, j+1)
			j++
		default:
			return dst
		}
	}
	return dst
}

// equalFold reports whether a and s are the same ASCII word, ignoring case.
func equalFold(a []byte, s string) bool {
	if len(a) != len(s) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(s[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// atoi reads a number as C's atoi does, for Redis' key finders: leading
// white space, a sign, then digits up to the first other byte; 0 when
// there are none. Values too large for a key count are capped.
func atoi(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] >= '\t' && b[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}
	n := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n < 1<<40 {
			n = n*10 + int(b[i]-'0')
		}
	}
	if neg {
		return -n
	}
	return n
}

// parseRedisInt parses a decimal integer as Redis' string2ll does: an
// optional '-', no '+', no leading zeros, no spaces.
func parseRedisInt(b []byte) (int, bool) {
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
