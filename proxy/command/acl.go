package command

import "strings"

// The ACL view of the table: Redis' ACL rules name every command and every
// subcommand (+config|get), whether or not the proxy handles a container's
// subcommands apart, and check the subcommand a request names. This file
// numbers them for rule bitmaps and says what Redis' ACL checks read of a
// request: its categories, the keys it reads or writes, its channels.

// aclTable is every command and subcommand, each container followed by
// its subcommands; a Spec's aclID is its place here.
var aclTable = buildACLTable()

func buildACLTable() []*Spec {
	table := make([]*Spec, 0, 2*len(redisCommandTable))
	add := func(c *Spec) {
		c.aclID = len(table)
		table = append(table, c)
	}
	for i := range redisCommandTable {
		rc := &redisCommandTable[i]
		c := commands[rc.name]
		add(c)
		if len(rc.subcommands) == 0 {
			continue
		}
		c.aclSubs = make(map[string]*Spec, len(rc.subcommands))
		for j := range rc.subcommands {
			src := &rc.subcommands[j]
			_, subName, _ := strings.Cut(src.name, "|")
			sub := c.subcommands[subName]
			if sub == nil {
				// The proxy handles the container as a whole (CLIENT,
				// CONFIG, ...); this spec serves ACL checks only.
				sub = &Spec{
					Name: src.name, Kind: c.Kind, Merge: c.Merge, Step: c.Step, Why: c.Why,
					arity: src.arity, flags: src.flags, acl: src.acl, tips: src.tips,
					keySpecs: src.keySpecs, keysProc: keysProcs[src.name],
				}
			}
			sub.aclParent = c
			c.aclSubs[subName] = sub
			add(sub)
		}
	}
	return table
}

// ACLCommands returns every command and subcommand of the table, each
// container followed by its subcommands, in the order of their ACLID.
func ACLCommands() []*Spec {
	return append([]*Spec(nil), aclTable...)
}

// ACLID is the command's number among ACLCommands, from 0 to
// len(ACLCommands())-1, for bitmaps of the commands a user may run.
func (c *Spec) ACLID() int { return c.aclID }

// ACLContainer returns the container of a subcommand (CONFIG for
// config|get), or nil for a command that is not a subcommand.
func (c *Spec) ACLContainer() *Spec { return c.aclParent }

// ACLSubcommands returns every subcommand redis-server has for a
// container, in ACLID order; nil for other commands.
func (c *Spec) ACLSubcommands() []*Spec {
	if len(c.aclSubs) == 0 {
		return nil
	}
	return append([]*Spec(nil), aclTable[c.aclID+1:c.aclID+1+len(c.aclSubs)]...)
}

// LookupACL finds a command as an ACL rule names it, ignoring case: "get",
// "config", or a subcommand as "config|get". It returns nil for a name
// redis-server does not have, for a subcommand of a command that has none,
// and for more than one '|', as Redis' lookupCommandBySds does.
func LookupACL(name string) *Spec {
	base, sub, isSub := strings.Cut(name, "|")
	c := Lookup([]byte(base))
	if c == nil || !isSub {
		return c
	}
	if strings.Contains(sub, "|") {
		return nil
	}
	return lookupIn(c.aclSubs, []byte(sub))
}

// ACLCommand returns the command of the table whose ACL rules apply to
// args: for a container the proxy handles as a whole (CONFIG GET ...), the
// subcommand args[1] names; otherwise c itself. A container called without
// a subcommand redis-server knows is itself: Redis refuses such a request
// before it checks any rule.
func (c *Spec) ACLCommand(args [][]byte) *Spec {
	if c.aclSubs == nil || len(args) < 2 {
		return c
	}
	if sub := lookupIn(c.aclSubs, args[1]); sub != nil {
		return sub
	}
	return c
}

// ACLCategoryNames returns the names of Redis' ACL categories (without
// '@'), in Redis' order.
func ACLCategoryNames() []string {
	return append([]string(nil), aclCategoryNames...)
}

// InACLCategory reports whether the command is in the ACL category name
// ("read", "dangerous", ...; any case, without '@').
func (c *Spec) InACLCategory(name string) bool {
	for i, n := range aclCategoryNames {
		if strings.EqualFold(n, name) {
			return c.acl&(1<<i) != 0
		}
	}
	return false
}

// NoAuth reports whether redis-server flags the command no_auth (AUTH,
// HELLO, QUIT, RESET): every user may run it, whatever the rules say.
func (c *Spec) NoAuth() bool { return c.flags&cmdNoAuth != 0 }

// KeyAccess is what a command does with one of its keys, as Redis' ACL key
// patterns see it (ACLSelectorCheckKey): reading needs a pattern that
// allows reads (~ or %R~), writing one that allows writes (~ or %W~). A key
// the command neither reads nor writes in those words (Redis' key finders
// give some keys no flags) matches any pattern.
type KeyAccess uint8

const (
	// KeyRead is Redis' access key-spec flag: the command returns,
	// copies or uses the key's data.
	KeyRead KeyAccess = 1 << iota
	// KeyWrite is Redis' insert, update or delete flag.
	KeyWrite
)

// ACLKey is one key of a request: its position in the arguments and what
// the command does with it.
type ACLKey struct {
	Arg    int
	Access KeyAccess
}

// AppendACLKeys appends the keys of args to dst as Redis' ACL check finds
// them (getKeysFromCommandWithSpecs): by the key specs, each key with its
// spec's flags, or, where the specs fail or their flags vary, by Redis' own
// key finder and the flags it gives (SET's key is read only with GET,
// BITFIELD's is written unless every operation is a GET). c is the command
// ACLCommand returns. It allocates nothing when dst has room.
func (c *Spec) AppendACLKeys(dst []ACLKey, args [][]byte) []ACLKey {
	keyed, varies := false, false
	for i := range c.keySpecs {
		keyed = keyed || c.keySpecs[i].flags&ksNotKey == 0
		varies = varies || c.keySpecs[i].flags&ksVariableFlags != 0
	}
	start := len(dst)
	if keyed && !varies {
		var ok bool
		if dst, ok = appendSpecACLKeys(dst, c.keySpecs, args); ok {
			return dst
		}
	}
	if c.keysProc == keysBySpecs {
		return dst[:start]
	}
	return c.appendProcACLKeys(dst[:start], args)
}

// appendSpecACLKeys is appendSpecKeys with each key's access.
func appendSpecACLKeys(dst []ACLKey, specs []keySpec, args [][]byte) (_ []ACLKey, ok bool) {
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
		access := keyAccess(s.flags)
		for k := first; k <= last; k += step {
			dst = append(dst, ACLKey{Arg: k, Access: access})
		}
		if s.flags&ksIncomplete != 0 {
			return dst[:start], false
		}
	}
	return dst, true
}

func keyAccess(f keySpecFlags) KeyAccess {
	var a KeyAccess
	if f&ksAccess != 0 {
		a |= KeyRead
	}
	if f&(ksInsert|ksUpdate|ksDelete) != 0 {
		a |= KeyWrite
	}
	return a
}

// appendProcACLKeys appends the keys Redis' own key finder finds, with the
// flags it gives them in Redis 7.0 (src/db.c): none for the finders whose
// commands have complete specs (genericGetKeys, xreadGetKeys,
// georadiusGetKeys).
func (c *Spec) appendProcACLKeys(dst []ACLKey, args [][]byte) []ACLKey {
	var buf [8]int
	for i, k := range appendProcKeys(buf[:0], c.keysProc, args) {
		var access KeyAccess
		switch c.keysProc {
		case keysFirst:
			if c.Name == "set" {
				access = setKeyAccess(args)
			} else {
				access = bitfieldKeyAccess(args)
			}
		case keysSort:
			access = KeyRead
			if i > 0 {
				access = KeyWrite // STORE's destination
			}
		case keysSortRO:
			access = KeyRead
		case keysMigrate:
			access = KeyRead | KeyWrite
		}
		dst = append(dst, ACLKey{Arg: k, Access: access})
	}
	return dst
}

// setKeyAccess is SET's key as Redis' setGetKeys flags it: read and
// written with a GET argument (a C string, so a NUL ends it), written
// otherwise.
func setKeyAccess(args [][]byte) KeyAccess {
	for _, a := range args[min(3, len(args)):] {
		if len(a) >= 3 && lowerASCII(a[0]) == 'g' && lowerASCII(a[1]) == 'e' && lowerASCII(a[2]) == 't' &&
			(len(a) == 3 || a[3] == 0) {
			return KeyRead | KeyWrite
		}
	}
	return KeyWrite
}

// bitfieldKeyAccess is BITFIELD's key as Redis' bitfieldGetKeys flags it:
// only read when every operation is a GET (or OVERFLOW), read and written
// otherwise, a syntax error included.
func bitfieldKeyAccess(args [][]byte) KeyAccess {
	for i := 2; i < len(args); i++ {
		more := len(args) - i - 1
		switch a := args[i]; {
		case equalFold(a, "get") && more >= 2:
			i += 2
		case (equalFold(a, "set") || equalFold(a, "incrby")) && more >= 3:
			return KeyRead | KeyWrite
		case equalFold(a, "overflow") && more >= 1:
			i++
		default:
			return KeyRead | KeyWrite
		}
	}
	return KeyRead
}

// ACLChannels says which of argc arguments name channels Redis' ACL
// channel patterns govern (its commands_with_channels table, for the
// publish and subscribe flags): PUBLISH and SPUBLISH publish to args[1];
// SUBSCRIBE, SSUBSCRIBE and PSUBSCRIBE subscribe to args[1:], PSUBSCRIBE's
// being patterns, which Redis compares literally with the user's. The
// channels are args[first:end]; first == end for every other command
// (unsubscribing is not checked).
func (c *Spec) ACLChannels(argc int) (first, end int, pattern bool) {
	if c.flags&cmdPubsub == 0 || argc < 2 {
		return 0, 0, false
	}
	switch c.Name {
	case "publish", "spublish":
		return 1, 2, false
	case "subscribe", "ssubscribe":
		return 1, argc, false
	case "psubscribe":
		return 1, argc, true
	}
	return 0, 0, false
}
