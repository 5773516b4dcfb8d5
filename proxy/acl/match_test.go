package acl

import (
	"math/rand/v2"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"app:*", "app:1", true},
		{"app:*", "app:", true},
		{"app:*", "ap", false},
		{"*", "x", true},
		{"*", "", false}, // stringmatchlen never matches an empty string but with ""
		{"", "", true},
		{"", "x", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"[abc]x", "bx", true},
		{"[^abc]x", "bx", false},
		{"[^abc]x", "dx", true},
		{"[a-c]", "b", true},
		{"[c-a]", "b", true}, // a reversed range is swapped
		{"[a-]", "-", false},
		{"[a-]", "]", true}, // "a-]" is the range a to ']'
		{"[abc", "b", true}, // an unclosed set ends with the pattern
		{"[^", "x", true},
		{"[", "x", false},
		{"\\*", "*", true},
		{"\\*", "x", false},
		{"a\\", "a\\", true}, // a trailing '\' is itself
		{"[\\]]", "]", true},
		{"**a", "ba", true},
		{"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false},
		{"a*", "a", true},
		{"a**", "a", true},
	}
	for _, tc := range tests {
		if got := Match(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
		if got := Match(tc.pattern, []byte(tc.s)); got != tc.want {
			t.Errorf("Match(%q, []byte(%q)) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// Match agrees with redis-server's stringmatchlen, which PUBSUB CHANNELS
// applies to every channel subscribed to, for random patterns and names
// made of the bytes that mean something in a glob.
func TestMatchLikeRedis(t *testing.T) {
	r := proxytest.StartRedis(t)
	const alphabet = "ab*?[]^-\\"
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	names := map[string]bool{"": true}
	for _, a := range alphabet {
		names[string(a)] = true
		for _, b := range alphabet {
			names[string(a)+string(b)] = true
		}
	}
	for len(names) < 300 {
		names[random(6)] = true
	}
	sub := r.Client(t)
	args := []string{"SUBSCRIBE"}
	for n := range names {
		args = append(args, n)
	}
	if err := sub.Send(args...); err != nil {
		t.Fatal(err)
	}
	for range names {
		if _, err := sub.Read(); err != nil {
			t.Fatal(err)
		}
	}

	patterns := []string{"*", "", "[", "[^", "\\", "a\\", "[a-", "[\\", "[]]", "[]", "[^]", "*[", "**",
		"a*", "ab*", "a**", "ab", "a?*", "a*b", "a\\*"}
	for len(patterns) < 3000 {
		patterns = append(patterns, random(7))
	}
	c := r.Client(t)
	for start := 0; start < len(patterns); start += 500 {
		batch := patterns[start:min(start+500, len(patterns))]
		for _, p := range batch {
			if err := c.Send("PUBSUB", "CHANNELS", p); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range batch {
			rep, err := c.Read()
			if err != nil {
				t.Fatal(err)
			}
			matched := map[string]bool{}
			for _, e := range rep.Elems {
				matched[string(e.Str)] = true
			}
			g := compileGlob(p)
			for n := range names {
				if got := Match(p, n); got != matched[n] {
					t.Errorf("Match(%q, %q) = %v, redis-server says %v", p, n, got, matched[n])
				}
				if got := g.match([]byte(n)); got != matched[n] {
					t.Errorf("compileGlob(%q).match(%q) = %v, redis-server says %v", p, n, got, matched[n])
				}
			}
		}
	}
}

// Matching a key allocates nothing.
func TestMatchAllocs(t *testing.T) {
	key := []byte("app:user:1234")
	if n := testing.AllocsPerRun(100, func() { Match("app:*:[0-9]*", key) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}
