package hashring

import "testing"

func TestTagKey(t *testing.T) {
	for _, tc := range []struct {
		name, key, tag, want string
	}{
		{"no tag option", "user{1}", "", "user{1}"},
		{"tag option not 2 bytes", "user{1}", "{", "user{1}"},
		{"tag", "user{1000}:name", "{}", "1000"},
		{"tag at start", "{a}b", "{}", "a"},
		{"tag at end", "x{y}", "{}", "y"},
		{"empty tag hashes whole key", "{}", "{}", "{}"},
		{"empty tag then a tag", "a{}{b}", "{}", "a{}{b}"},
		{"open at end", "user{", "{}", "user{"},
		{"missing close", "user{1000", "{}", "user{1000"},
		{"close before open only", "a}b{c", "{}", "a}b{c"},
		{"close before open, then close", "a}b{c}", "{}", "c"},
		{"first open wins", "a{b{c}d}", "{}", "b{c"},
		{"first close after open wins", "{a}b}", "{}", "a"},
		{"no open", "plain", "{}", "plain"},
		{"empty key", "", "{}", ""},
		{"same bytes", "a$b$c$", "$$", "b"},
		{"same bytes, empty", "a$$b$", "$$", "a$$b$"},
		{"same bytes, one", "a$b", "$$", "a$b"},
		{"binary tag bytes", "x\x80k\xffy", "\x80\xff", "k"},
		{"whole tag key", "{k}", "{}", "k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(TagKey([]byte(tc.key), tc.tag)); got != tc.want {
				t.Errorf("TagKey(%q, %q) = %q, want %q", tc.key, tc.tag, got, tc.want)
			}
		})
	}
}

func TestTagKeyAllocs(t *testing.T) {
	key := []byte("user{1000}:name")
	if n := testing.AllocsPerRun(100, func() { TagKey(key, "{}") }); n != 0 {
		t.Errorf("TagKey allocates %v times per call", n)
	}
}
