package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/internal/boundedfile"
)

// MaxFileSize bounds an ACL file: 4 MiB is tens of thousands of users.
const MaxFileSize = 4 << 20

// maxProblems bounds the problems an Error lists.
const maxProblems = 20

// Error is what is wrong with an ACL file: every problem found, each on
// its line, worded as Redis words it. Like Redis, a file with any problem
// is refused as a whole.
type Error struct {
	File     string    // the name Parse was given
	Problems []Problem // in line order; at most 20
	More     int       // problems found beyond those listed
}

// Problem is one thing wrong on one line of an ACL file.
type Problem struct {
	Line int    // from 1
	Msg  string // Redis' words; a password is never quoted
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s:%d: %s", e.File, p.Line, p.Msg)
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "; and %d more", e.More)
	}
	return b.String()
}

func (e *Error) add(line int, format string, args ...any) {
	if len(e.Problems) == maxProblems {
		e.More++
		return
	}
	e.Problems = append(e.Problems, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Load reads and parses the ACL file at path: a regular file (or a
// symlink to one) of at most MaxFileSize bytes, so that a FIFO or a
// runaway file costs an error, not a hang. Errors name the path.
func Load(path string) (*Users, error) {
	data, err := boundedfile.Read(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse reads an ACL file as Redis 7.0's ACLLoadFromFile does: one user
// a line, "user <name> <rule>...", the rules separated by single spaces;
// blank lines are skipped and every other line, a comment included, must
// start with "user". file names the file in errors. Any problem refuses
// the whole file, with an *Error listing them. The default user is
// Redis' own (on nopass ~* &* +@all) when the file names none.
func Parse(file string, data []byte) (*Users, error) {
	errs := &Error{File: file}
	if len(data) > MaxFileSize {
		errs.add(1, "the file is larger than %d bytes", MaxFileSize)
		return nil, errs
	}
	var users []*User
	seen := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.Trim(line, " \t\r\n")
		if line == "" {
			continue
		}
		// Redis reads the file as C strings: a NUL would silently end
		// the line there. Refuse it instead.
		if strings.IndexByte(line, 0) >= 0 {
			errs.add(n, "the line contains a NUL byte")
			continue
		}
		args := strings.Split(line, " ")
		if args[0] != "user" || len(args) < 2 {
			errs.add(n, "should start with user keyword followed by the username")
			continue
		}
		name := args[1]
		if hasSpaces(name) {
			errs.add(n, "username '%s' contains invalid characters", name)
			continue
		}
		if seen[name] {
			errs.add(n, "Duplicate user '%s' found", name)
			continue
		}
		seen[name] = true
		ops, ok := mergeSelectors(args[2:])
		if !ok {
			errs.add(n, "Unmatched parenthesis in selector definition")
			continue
		}
		u := newUser(name, ops)
		reported := false
		for _, op := range ops {
			op = strings.Trim(op, "\t\r\n")
			p := u.apply(op)
			switch {
			case p == nil:
			case p.unknown:
				// Redis names the operation only here: a command name
				// is no secret. Of a selector, only the rule in it is
				// named, in case the others hold a password by mistake.
				errs.add(n, "Error in applying operation '%s': %s", p.op, p.msg)
			case !reported:
				// Later errors may follow from the first; Redis reports
				// one.
				reported = true
				if secret(p.op) {
					errs.add(n, "%s", p.msg)
				} else {
					errs.add(n, "Error in applying operation '%s': %s", p.op, p.msg)
				}
			}
		}
		users = append(users, u)
	}
	if len(errs.Problems) > 0 {
		return nil, errs
	}
	return newUsers(users), nil
}

// mergeSelectors joins a selector spread over several arguments, "(~a"
// "+get)", into one, as Redis' ACLMergeSelectorArguments does (an
// argument starting with '(' and not ending with ')' starts one, even
// inside another). ok is false for a selector not closed.
func mergeSelectors(args []string) (_ []string, ok bool) {
	var merged []string
	open := false
	var sel string
	for _, a := range args {
		if len(a) > 0 && a[0] == '(' && a[len(a)-1] != ')' {
			sel, open = a, true
			continue
		}
		if open {
			sel += " " + a
			if len(a) > 0 && a[len(a)-1] == ')' {
				merged, open = append(merged, sel), false
			}
			continue
		}
		merged = append(merged, a)
	}
	return merged, !open
}

// opError is a rule Redis refuses, and why, in Redis' words
// (ACLSetUserStringError).
type opError struct {
	msg     string
	op      string // the rule refused; inside a selector, the rule in it
	unknown bool   // an unknown command or category (Redis' ENOENT)
}

const (
	msgUnknown        = "Unknown command or category name in ACL"
	msgSyntax         = "Syntax error"
	msgAfterAllKeys   = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
	msgAfterAllChans  = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
	msgNoSuchPassword = "The password you are trying to remove from the user does not exist"
	msgBadHash        = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
	msgFirstArgOfSub  = "Allowing first-arg of a subcommand is not supported"
)

// secret reports whether a rule holds a password or its hash, which no
// error repeats.
func secret(op string) bool {
	return op != "" && strings.IndexByte("><#!", op[0]) >= 0
}

// apply applies one rule to u as Redis' ACLSetUser does.
func (u *User) apply(op string) *opError {
	if op == "" {
		return nil
	}
	word := cstr(op)
	switch {
	case equalFoldASCII(word, "on"):
		u.enabled = true
	case equalFoldASCII(word, "off"):
		u.enabled = false
	case equalFoldASCII(word, "skip-sanitize-payload"), equalFoldASCII(word, "sanitize-payload"):
		// RESTORE payloads are the servers' to check.
	case equalFoldASCII(word, "nopass"):
		u.nopass, u.passwords = true, nil
	case equalFoldASCII(word, "resetpass"):
		u.nopass, u.passwords = false, nil
	case op[0] == '>' || op[0] == '#':
		sum, ok := passwordHash(op)
		if !ok {
			return &opError{msg: msgBadHash, op: op}
		}
		if !slices.Contains(u.passwords, sum) {
			u.passwords = append(u.passwords, sum)
		}
		u.nopass = false
	case op[0] == '<' || op[0] == '!':
		sum, ok := passwordHash(op)
		if !ok {
			return &opError{msg: msgBadHash, op: op}
		}
		i := slices.Index(u.passwords, sum)
		if i < 0 {
			return &opError{msg: msgNoSuchPassword, op: op}
		}
		u.passwords = slices.Delete(u.passwords, i, i+1)
	case op[0] == '(' && op[len(op)-1] == ')':
		s := newSelector()
		// Redis splits a selector's rules as it splits redis-cli
		// arguments, quotes and all; unbalanced quotes leave it empty.
		rules, _ := splitArgs(op[1 : len(op)-1])
		for _, r := range rules {
			if err := s.apply(r); err != nil {
				return err
			}
		}
		u.selectors = append(u.selectors, s)
	case equalFoldASCII(word, "clearselectors"):
		u.selectors = u.selectors[:1]
	case equalFoldASCII(word, "reset"):
		u.nopass, u.passwords, u.enabled = false, nil, false
		root := u.selectors[0]
		root.allKeys, root.keys = false, nil
		root.allChannels, root.channels = false, nil
		u.selectors = u.selectors[:1]
		root.setAllCommands(false)
	default:
		return u.selectors[0].apply(op)
	}
	return nil
}

// passwordHash is the SHA-256 of a >password or <password rule, or the
// hash a #hash or !hash rule gives, which must be 64 lower-case hex digits.
func passwordHash(op string) (sum [sha256.Size]byte, ok bool) {
	if op[0] == '>' || op[0] == '<' {
		return sha256.Sum256([]byte(op[1:])), true
	}
	h := op[1:]
	if len(h) != 2*sha256.Size || strings.ContainsFunc(h, func(r rune) bool {
		return (r < '0' || r > '9') && (r < 'a' || r > 'f')
	}) {
		return sum, false
	}
	hex.Decode(sum[:], []byte(h))
	return sum, true
}

// apply applies one rule to s as Redis' ACLSetSelector does.
func (s *selector) apply(op string) *opError {
	word := cstr(op)
	switch {
	case equalFoldASCII(word, "allkeys"), word == "~*":
		s.allKeys, s.keys = true, nil
	case equalFoldASCII(word, "resetkeys"):
		s.allKeys, s.keys = false, nil
	case equalFoldASCII(word, "allchannels"), word == "&*":
		s.allChannels, s.channels = true, nil
	case equalFoldASCII(word, "resetchannels"):
		s.allChannels, s.channels = false, nil
	case equalFoldASCII(word, "allcommands"), equalFoldASCII(word, "+@all"):
		s.setAllCommands(true)
	case equalFoldASCII(word, "nocommands"), equalFoldASCII(word, "-@all"):
		s.setAllCommands(false)
	case at(op, 0) == '~' || at(op, 0) == '%':
		return s.addKeyPattern(op)
	case at(op, 0) == '&':
		if s.allChannels {
			return &opError{msg: msgAfterAllChans, op: op}
		}
		pattern := op[1:]
		if hasSpaces(pattern) {
			return &opError{msg: msgSyntax, op: op}
		}
		if !slices.ContainsFunc(s.channels, func(g glob) bool { return g.pattern == pattern }) {
			s.channels = append(s.channels, compileGlob(pattern))
		}
	case at(op, 0) == '+' && at(op, 1) != '@':
		return s.allowCommand(op, word[1:])
	case at(op, 0) == '-' && at(op, 1) != '@':
		c := command.LookupACL(word[1:])
		if c == nil {
			return &opError{msg: msgUnknown, op: op, unknown: true}
		}
		s.changeCommand(c, false)
	case at(op, 0) == '+' || at(op, 0) == '-':
		category := word[2:]
		if !slices.ContainsFunc(command.ACLCategoryNames(), func(n string) bool { return equalFoldASCII(n, category) }) {
			return &opError{msg: msgUnknown, op: op, unknown: true}
		}
		s.changeCategory(category, op[0] == '+')
	default:
		return &opError{msg: msgSyntax, op: op}
	}
	return nil
}

// addKeyPattern adds a ~pattern, or a %R~, %W~ or %RW~ pattern (R and W
// in any case and order, each at most once).
func (s *selector) addKeyPattern(op string) *opError {
	if s.allKeys {
		return &opError{msg: msgAfterAllKeys, op: op}
	}
	perm, i := permAll, 1
	if op[0] == '%' {
		perm = 0
		// Like Redis, a '%' rule without '~' is a pattern of what
		// follows the permissions: nothing.
		for ; i < len(op) && op[i] != '~'; i++ {
			switch c := op[i]; {
			case (c == 'R' || c == 'r') && perm&permRead == 0:
				perm |= permRead
			case (c == 'W' || c == 'w') && perm&permWrite == 0:
				perm |= permWrite
			default:
				return &opError{msg: msgSyntax, op: op}
			}
		}
		if i < len(op) {
			i++ // the '~'
		}
		// Redis 7.0.15 reads "%~pattern" as a pattern no command may
		// use; the redis-server it is checked against (and Redis 7.2)
		// refuse it.
		if perm == 0 {
			return &opError{msg: msgSyntax, op: op}
		}
	}
	p := op[i:]
	if hasSpaces(p) {
		return &opError{msg: msgSyntax, op: op}
	}
	if j := slices.IndexFunc(s.keys, func(k keyPattern) bool { return k.pattern == p }); j >= 0 {
		s.keys[j].perm |= perm
	} else {
		s.keys = append(s.keys, keyPattern{glob: compileGlob(p), perm: perm})
	}
	return nil
}

// allowCommand applies +name, +container|sub or +command|first-arg.
func (s *selector) allowCommand(op, name string) *opError {
	bar := strings.LastIndexByte(name, '|')
	if bar < 0 {
		c := command.LookupACL(name)
		if c == nil {
			return &opError{msg: msgUnknown, op: op, unknown: true}
		}
		s.changeCommand(c, true)
		return nil
	}
	c := command.LookupACL(name[:bar])
	switch {
	case c == nil:
		return &opError{msg: msgUnknown, op: op, unknown: true}
	case c.ACLContainer() != nil:
		return &opError{msg: msgFirstArgOfSub, op: op}
	case bar == len(name)-1:
		return &opError{msg: msgSyntax, op: op}
	case c.ACLSubcommands() != nil:
		sub := command.LookupACL(name)
		if sub == nil {
			return &opError{msg: msgUnknown, op: op, unknown: true}
		}
		s.changeCommand(sub, true)
	default:
		// Redis 7.0 still allows one first argument of an otherwise
		// denied command (+select|0), and warns that it is deprecated.
		s.addFirstArgs(c.ACLID(), name[bar+1:])
	}
	return nil
}

// cstr is op as C's string functions see it: up to its first NUL. Only a
// selector's quoted rules ("\x00") can hold one.
func cstr(op string) string {
	if i := strings.IndexByte(op, 0); i >= 0 {
		return op[:i]
	}
	return op
}

// hasSpaces is Redis' ACLStringHasSpaces: C's isspace, or a NUL.
func hasSpaces(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r == 0 || r < 0x80 && isSpace(byte(r)) })
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

// splitArgs splits a selector's rules as Redis' sdssplitargs does: by
// white space, with "double quotes" (and \n, \r, \t, \b, \a, \xHH escapes)
// and 'single quotes' (and \'); a closing quote must end the argument. ok
// is false for unbalanced quotes.
func splitArgs(line string) (args []string, ok bool) {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return args, true
		}
		var cur []byte
		inDouble, inSingle, done := false, false, false
		for !done {
			c := at(line, i)
			switch {
			case inDouble:
				switch {
				case c == '\\' && at(line, i+1) == 'x' && isHex(at(line, i+2)) && isHex(at(line, i+3)):
					b, _ := strconv.ParseUint(line[i+2:i+4], 16, 8)
					cur = append(cur, byte(b))
					i += 3
				case c == '\\' && at(line, i+1) != 0:
					i++
					switch e := line[i]; e {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, e)
					}
				case c == '"':
					if n := at(line, i+1); n != 0 && !isSpace(n) {
						return nil, false
					}
					done = true
				case i >= len(line):
					return nil, false
				default:
					cur = append(cur, c)
				}
			case inSingle:
				switch {
				case c == '\\' && at(line, i+1) == '\'':
					i++
					cur = append(cur, '\'')
				case c == '\'':
					if n := at(line, i+1); n != 0 && !isSpace(n) {
						return nil, false
					}
					done = true
				case i >= len(line):
					return nil, false
				default:
					cur = append(cur, c)
				}
			default:
				switch {
				case i >= len(line), c == ' ', c == '\n', c == '\r', c == '\t':
					done = true
				case c == '"':
					inDouble = true
				case c == '\'':
					inSingle = true
				default:
					cur = append(cur, c)
				}
			}
			if i < len(line) {
				i++
			}
		}
		args = append(args, string(cur))
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
