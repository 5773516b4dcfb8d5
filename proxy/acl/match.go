package acl

import "strings"

// Match reports whether s matches the glob pattern as Redis'
// stringmatchlen does, case-sensitively, for key and channel patterns: '*'
// any bytes, '?' one byte, "[abc]", "[a-z]", "[^...]" a byte of a set (or
// not), and '\' the next byte literally. Like Redis it reads a malformed
// pattern rather than rejecting it ("[abc" is the set abc; a lone '\' at
// the end is itself). It allocates nothing; its recursion is as deep as the
// pattern has stars.
func Match[S ~string | ~[]byte](pattern string, s S) bool {
	skipLonger := false
	return match(pattern, s, &skipLonger)
}

// at is pattern[i], or 0 past its end: Redis' patterns are C strings, and
// stringmatchlen reads their terminating NUL in places.
func at(p string, i int) byte {
	if i < len(p) {
		return p[i]
	}
	return 0
}

// match follows stringmatchlen_impl step by step. skipLonger is set when
// the rest of the pattern after a star matched nowhere in the rest of s:
// then no earlier star can help either, which keeps patterns like
// "*a*a*a*b" linear rather than exponential.
func match[S ~string | ~[]byte](p string, s S, skipLonger *bool) bool {
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && at(p, 1) == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if match(p[1:], s, skipLonger) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := at(p, 0) == '^'
			if not {
				p = p[1:]
			}
			matched := false
			// The set ends at ']' or with the pattern.
			for {
				if at(p, 0) == '\\' && len(p) >= 2 {
					p = p[1:]
					if p[0] == s[0] {
						matched = true
					}
				} else if at(p, 0) == ']' {
					break
				} else if len(p) == 0 {
					// Redis steps back onto the last byte, which the
					// step after the switch consumes again; only the
					// length of p matters from here.
					p = "\x00"
					break
				} else if len(p) >= 3 && p[1] == '-' {
					lo, hi := p[0], p[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					if s[0] >= lo && s[0] <= hi {
						matched = true
					}
					p = p[2:]
				} else if p[0] == s[0] {
					matched = true
				}
				p = p[1:]
			}
			if not {
				matched = !matched
			}
			if !matched {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// glob is a compiled key or channel pattern: most are a literal, or a
// literal prefix and a star (app:*), which are compared without Match.
type glob struct {
	pattern string
	prefix  string // the literal bytes before the first of *?[\
	kind    globKind
}

type globKind uint8

const (
	globMatch  globKind = iota // anything else: Match, once the prefix is there
	globExact                  // no special byte: the pattern itself
	globPrefix                 // a non-empty literal and a final '*'
)

func compileGlob(pattern string) glob {
	g := glob{pattern: pattern, prefix: pattern, kind: globExact}
	if i := strings.IndexAny(pattern, "*?[\\"); i >= 0 {
		g.prefix, g.kind = pattern[:i], globMatch
		// Match("*", "") is false: the shortcut needs a prefix.
		if i > 0 && i == len(pattern)-1 && pattern[i] == '*' {
			g.kind = globPrefix
		}
	}
	return g
}

// match is Match(g.pattern, s).
func (g *glob) match(s []byte) bool {
	switch g.kind {
	case globExact:
		return string(s) == g.pattern
	case globPrefix:
		return len(s) >= len(g.prefix) && string(s[:len(g.prefix)]) == g.prefix
	}
	// A literal prefix must be matched byte for byte.
	if len(s) < len(g.prefix) || string(s[:len(g.prefix)]) != g.prefix {
		return false
	}
	return Match(g.pattern, s)
}
