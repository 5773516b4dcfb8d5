package acl

import (
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/command"
)

// DefaultUser is the user every connection starts as, and the one AUTH
// with a password alone authenticates.
const DefaultUser = "default"

// Users is a compiled, immutable set of users: what an ACL file (Parse,
// Load) or a pool's redis_auth (FromPassword) says. It is shared by every
// client and never changes; a reload builds a new one.
type Users struct {
	byName map[string]*User
	names  []string // sorted
	def    *User
	named  bool // the file names the default user
}

// User is one user of a Users: whether it is on, its passwords, and its
// permissions, a root selector and any further selectors ("(...)" rules).
// It never changes after Parse.
type User struct {
	name      string
	enabled   bool
	nopass    bool
	passwords [][sha256.Size]byte // SHA-256 of each password, as Redis keeps them
	selectors []*selector         // the root first
	rules     [sha256.Size]byte   // SHA-256 of the rules as written, for Same
	masked    string              // the rules as written, passwords masked (Masked)
}

// Name is the user's name.
func (u *User) Name() string { return u.name }

// Enabled reports whether the user is on: only then can it authenticate.
func (u *User) Enabled() bool { return u.enabled }

// NoPass reports whether any password authenticates the user (nopass).
func (u *User) NoPass() bool { return u.nopass }

// Same reports whether other is u with the same rules, as written: a
// reload can keep the clients of a user that is the same and make those
// of a changed one authenticate again. Rules written differently count as
// a change, whatever they mean.
func (u *User) Same(other *User) bool {
	return other != nil && u.name == other.name && u.rules == other.rules
}

// Lookup returns the user called name, or nil.
func (s *Users) Lookup(name []byte) *User {
	return s.byName[string(name)]
}

// Default returns the default user: the file's, or Redis' own default
// (on, nopass, every key, channel and command) when the file names none.
func (s *Users) Default() *User { return s.def }

// Names returns the users' names, sorted.
func (s *Users) Names() []string { return slices.Clone(s.names) }

// AuthRequired reports whether a new connection must authenticate before
// it runs commands: as in Redis, unless the default user is on and
// nopass.
func (s *Users) AuthRequired() bool {
	return !s.def.nopass || !s.def.enabled
}

// Authenticate checks a username and password as Redis' AUTH does and
// returns the user, or nil for Redis' WRONGPASS: no such user, the user is
// off, or no password of it matches. Passwords are compared as SHA-256
// digests in constant time; the digest is computed for an unknown user
// too, so the time taken says little about which users exist. It
// allocates nothing.
func (s *Users) Authenticate(name, password []byte) *User {
	sum := sha256.Sum256(password)
	u := s.byName[string(name)]
	if u == nil || !u.enabled {
		return nil
	}
	if u.nopass {
		return u
	}
	ok := 0
	for i := range u.passwords {
		ok |= subtle.ConstantTimeCompare(sum[:], u.passwords[i][:])
	}
	if ok == 0 {
		return nil
	}
	return u
}

// FromPassword builds the users of a pool without an ACL file: the
// default user alone, with Redis' default permissions and, as Redis'
// requirepass sets it, the password redis_auth names; "" leaves it nopass.
func FromPassword(password string) *Users {
	pass := "nopass"
	if password != "" {
		pass = ">" + password
	}
	return newUsers([]*User{builtinUser(DefaultUser, "+@all", "~*", "&*", "on", pass)})
}

// redisDefaultUser is the default user Redis makes when its ACL file names
// none (ACLCreateDefaultUser).
func redisDefaultUser() *User {
	return builtinUser(DefaultUser, "+@all", "~*", "&*", "on", "nopass")
}

func builtinUser(name string, rules ...string) *User {
	u := newUser(name, rules)
	for _, op := range rules {
		if p := u.apply(op); p != nil {
			panic("acl: a built-in rule is refused: " + p.msg)
		}
	}
	return u
}

// newUsers makes a set of users, adding Redis' default user when users
// has no default.
func newUsers(users []*User) *Users {
	s := &Users{byName: make(map[string]*User, len(users)+1)}
	for _, u := range users {
		s.byName[u.name] = u
		s.names = append(s.names, u.name)
	}
	s.def = s.byName[DefaultUser]
	s.named = s.def != nil
	if s.def == nil {
		s.def = redisDefaultUser()
		s.byName[DefaultUser] = s.def
		s.names = append(s.names, DefaultUser)
	}
	slices.Sort(s.names)
	return s
}

// newUser is a user as Redis creates one, before its rules are applied:
// off, no password, and a root selector that allows nothing (Redis 7.0's
// acl-pubsub-default is resetchannels).
func newUser(name string, rules []string) *User {
	return &User{name: name, selectors: []*selector{newSelector()},
		rules: sha256.Sum256([]byte(strings.Join(rules, " "))), masked: maskRules(name, rules)}
}

// selector is one set of permissions: a user's root, or one of its "(...)"
// selectors. A request is allowed when any of them allows it all.
type selector struct {
	allCommands bool     // +@all: every command, without looking at the bits
	commands    []uint64 // bit command.Spec.ACLID() set: allowed
	// firstArgs are the first arguments allowed for a command that is
	// otherwise denied (+select|0), by ACLID.
	firstArgs   map[int][]string
	allKeys     bool
	keys        []keyPattern
	allChannels bool
	channels    []glob
}

// keyPattern is a ~, %R~, %W~ or %RW~ pattern.
type keyPattern struct {
	glob
	perm keyPerm
}

// keyPerm is what a key pattern lets a command do with the keys it
// matches.
type keyPerm uint8

const (
	permRead  keyPerm = 1 << iota // %R
	permWrite                     // %W
	permAll   = permRead | permWrite
)

var numCommands = len(command.ACLCommands())

func newSelector() *selector {
	return &selector{commands: make([]uint64, (numCommands+63)/64)}
}

func (s *selector) allowed(id int) bool { return s.commands[id/64]&(1<<(id%64)) != 0 }

func (s *selector) setCommandBit(id int, allow bool) {
	if allow {
		s.commands[id/64] |= 1 << (id % 64)
	} else {
		s.commands[id/64] &^= 1 << (id % 64)
		s.allCommands = false
	}
}

// changeCommand allows or denies a command, and with a container all its
// subcommands, as Redis' ACLChangeSelectorPerm does; it forgets the first
// arguments allowed for it.
func (s *selector) changeCommand(c *command.Spec, allow bool) {
	s.setCommandBit(c.ACLID(), allow)
	delete(s.firstArgs, c.ACLID())
	for _, sub := range c.ACLSubcommands() {
		s.setCommandBit(sub.ACLID(), allow)
	}
}

// changeCategory allows or denies every command in the category, as
// Redis' ACLSetSelectorCommandBitsForCategory does: a container in it with
// all its subcommands, and each subcommand in it.
func (s *selector) changeCategory(category string, allow bool) {
	for _, c := range command.ACLCommands() {
		if c.InACLCategory(category) {
			s.changeCommand(c, allow)
		}
	}
}

func (s *selector) setAllCommands(allow bool) {
	for i := range s.commands {
		s.commands[i] = 0
		if allow {
			s.commands[i] = ^uint64(0)
		}
	}
	s.allCommands = allow
	s.firstArgs = nil
}

func (s *selector) addFirstArgs(id int, args ...string) {
	if s.firstArgs == nil {
		s.firstArgs = make(map[int][]string)
	}
	for _, a := range args {
		if !slices.ContainsFunc(s.firstArgs[id], func(b string) bool { return equalFoldASCII(a, b) }) {
			s.firstArgs[id] = append(s.firstArgs[id], a)
		}
	}
}

// equalFoldASCII is C's strcasecmp() == 0.
func equalFoldASCII[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
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
