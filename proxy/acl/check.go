package acl

import "github.com/shardproxy/shardproxy/proxy/command"

// Denial says why a request is refused; the zero value, Allowed, lets it
// run. DeniedCommand, DeniedKey and DeniedChannel are in the order Redis
// ranks them when selectors refuse a request for different reasons: the
// last one is reported.
type Denial uint8

const (
	Allowed       Denial = iota
	DeniedCommand        // the command or subcommand
	DeniedKey            // a key it names
	DeniedChannel        // a channel it publishes or subscribes to
	// DeniedSortOption is SORT's own refusal of a GET, or of a BY with a
	// pattern, to a user who may not read every key: the keys they form
	// are known only as it sorts. Redis answers it with an ERR, not a
	// NOPERM, and ACL DRYRUN says OK.
	DeniedSortOption
)

// Verdict is the outcome of Check.
type Verdict struct {
	Denial Denial
	// Arg is the argument refused: for DeniedKey and DeniedChannel the
	// one ACL DRYRUN names, for DeniedSortOption the GET or BY.
	Arg int
	// Command is the command whose rules were checked: the subcommand
	// for a container. Its Name is what Redis' errors call it.
	Command *command.Spec

	option byte // DeniedSortOption: 'g' for GET, 'b' for BY
}

// OK reports whether the request may run.
func (v Verdict) OK() bool { return v.Denial == Allowed }

// Scratch is where Check finds a request's keys: one per client, reused
// for each request so that checks allocate nothing. The zero value is
// ready.
type Scratch struct {
	keys     []command.ACLKey
	sortArgs []int
}

// request is one request being checked, with its keys found once for all
// the user's selectors.
type request struct {
	cmd     *command.Spec
	args    [][]byte
	scratch *Scratch
	found   bool
}

func (r *request) keys() []command.ACLKey {
	if !r.found {
		r.scratch.keys = r.cmd.AppendACLKeys(r.scratch.keys[:0], r.args)
		r.found = true
	}
	return r.scratch.keys
}

// Check decides whether u may run the request args (the command name
// first), as Redis 7.0's ACLCheckAllUserCommandPerm does: a selector
// allows it when it allows the command (or, for +command|first-arg, its
// first argument), every key for what the command does with it (read,
// write), and every channel it publishes or subscribes to; the request
// runs when the root or any selector allows it. c is the command
// command.Lookup finds for args[0], or the subcommand the caller found;
// the rules of a container's subcommand apply (CONFIG GET is config|get).
// The caller has already refused unknown commands and wrong arities, as
// Redis does before its ACL check. It allocates nothing once scratch has
// grown to the request's keys; scratch may be nil.
func (u *User) Check(c *command.Spec, args [][]byte, scratch *Scratch) Verdict {
	if root := u.selectors[0]; root.allCommands && root.allKeys && root.allChannels {
		// Every command on every key and channel, SORT's options
		// included: the default user of a pool without acl_file, on
		// every request.
		return Verdict{Command: c.ACLCommand(args)}
	}
	if scratch == nil {
		scratch = new(Scratch)
	}
	r := request{cmd: c.ACLCommand(args), args: args, scratch: scratch}
	// Redis reports the reason ranked last, and of those the one at the
	// last argument.
	worst, at := DeniedCommand, 0
	for _, s := range u.selectors {
		d, arg := s.check(&r)
		if d == Allowed {
			return u.checkSortOptions(&r)
		}
		if d > worst || d == worst && arg > at {
			worst, at = d, arg
		}
	}
	return Verdict{Denial: worst, Arg: at, Command: r.cmd}
}

// checkSortOptions makes the check of Redis' sortCommand, for SORT and
// SORT_RO: a GET, or a BY whose pattern has a '*', needs a selector that
// allows the request and lets it read every key (allkeys, ~* or %R~*).
// Options are read as sortCommand reads them, the first refused named.
func (u *User) checkSortOptions(r *request) Verdict {
	r.scratch.sortArgs = r.cmd.AppendSortPatterns(r.scratch.sortArgs[:0], r.args)
	if len(r.scratch.sortArgs) == 0 {
		return Verdict{Command: r.cmd}
	}
	full, known := false, false
	for _, p := range r.scratch.sortArgs {
		option := byte('g')
		if equalFoldASCII(r.args[p-1], "by") {
			if !containsStar(r.args[p]) {
				continue // a constant BY only says not to sort
			}
			option = 'b'
		}
		if !known {
			full, known = u.readsEveryKey(r), true
		}
		if !full {
			return Verdict{Denial: DeniedSortOption, Arg: p - 1, Command: r.cmd, option: option}
		}
	}
	return Verdict{Command: r.cmd}
}

// readsEveryKey is Redis' ACLUserCheckCmdWithUnrestrictedKeyAccess for
// reading.
func (u *User) readsEveryKey(r *request) bool {
	for _, s := range u.selectors {
		if d, _ := s.check(r); d == Allowed && s.readsEveryKey() {
			return true
		}
	}
	return false
}

func (s *selector) readsEveryKey() bool {
	if s.allKeys {
		return true
	}
	for i := range s.keys {
		if s.keys[i].perm&permRead != 0 && s.keys[i].pattern == "*" {
			return true
		}
	}
	return false
}

func containsStar(b []byte) bool {
	for _, c := range b {
		if c == '*' {
			return true
		}
	}
	return false
}

// check is Redis' ACLSelectorCheckCmd.
func (s *selector) check(r *request) (Denial, int) {
	// Every user may run AUTH, HELLO, QUIT and RESET.
	if !s.allCommands && !r.cmd.NoAuth() && !s.allowed(r.cmd.ACLID()) && !s.firstArgAllowed(r) {
		return DeniedCommand, 0
	}
	if !s.allKeys {
		for _, k := range r.keys() {
			if !s.keyAllowed(r.args[k.Arg], k.Access) {
				return DeniedKey, k.Arg
			}
		}
	}
	if !s.allChannels {
		first, end, pattern := r.cmd.ACLChannels(len(r.args))
		for i := first; i < end; i++ {
			if !s.channelAllowed(r.args[i], pattern) {
				return DeniedChannel, i
			}
		}
	}
	return Allowed, 0
}

// firstArgAllowed reports whether a +command|first-arg rule allows the
// request's first argument, compared ignoring case.
func (s *selector) firstArgAllowed(r *request) bool {
	if len(r.args) < 2 || s.firstArgs == nil {
		return false
	}
	at := 1
	if r.cmd.ACLContainer() != nil {
		at = 2
	}
	if at >= len(r.args) {
		return false
	}
	for _, a := range s.firstArgs[r.cmd.ACLID()] {
		if equalFoldASCII(a, r.args[at]) {
			return true
		}
	}
	return false
}

// keyAllowed is Redis' ACLSelectorCheckKey: some pattern that allows what
// the command does with the key matches it.
func (s *selector) keyAllowed(key []byte, access command.KeyAccess) bool {
	var need keyPerm
	if access&command.KeyRead != 0 {
		need |= permRead
	}
	if access&command.KeyWrite != 0 {
		need |= permWrite
	}
	for i := range s.keys {
		p := &s.keys[i]
		if p.perm&need == need && p.match(key) {
			return true
		}
	}
	return false
}

// channelAllowed is Redis' ACLCheckChannelAgainstList: a channel must
// match one of the user's patterns; a PSUBSCRIBE pattern must be one of
// them, literally, since a pattern could match channels the user's do
// not.
func (s *selector) channelAllowed(ch []byte, pattern bool) bool {
	for i := range s.channels {
		p := &s.channels[i]
		if pattern && p.pattern == string(ch) || !pattern && p.match(ch) {
			return true
		}
	}
	return false
}
