package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// replyCheck is one command of a script and, when want is set, the reply the
// proxy must give it; otherwise its reply must equal one plain
// redis-server's.
type replyCheck struct {
	args []string
	want string
}

// compareRepliesWithRedis runs steps through the proxy and, those without
// a want, against one plain redis-server, and checks every reply.
func compareRepliesWithRedis(t *testing.T, proxy *proxytest.Conn, steps []replyCheck) {
	t.Helper()
	single := proxytest.StartRedis(t).Client(t)
	for _, s := range steps {
		want := s.want
		if want == "" {
			want = do(t, single, s.args...)
		}
		if got := do(t, proxy, s.args...); got != want {
			t.Errorf("%q = %q, want %q", s.args, got, want)
		}
	}
}

// serverNotOwning returns a redis-server of tp that does not own key.
func (tp *testPool) serverNotOwning(t *testing.T, key string) *proxytest.Redis {
	t.Helper()
	for _, r := range tp.redises {
		if r != tp.owner(t, key) {
			return r
		}
	}
	t.Fatalf("every server owns %q", key)
	return nil
}

var crossSlotReply = "-" + msgCrossSlot + "\r\n"

// SORT's BY and GET patterns read keys the proxy cannot see; without a hash
// tag that pins them to the sorted key's server they must be refused, not
// answered from missing keys.
func TestProxySortPatternsWithoutHashTag(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	compareRepliesWithRedis(t, c, []replyCheck{
		{args: []string{"RPUSH", "L", "1", "2", "3"}},
		{args: []string{"MSET", "w_1", "9", "w_2", "8", "w_3", "7", "o_1", "obj1", "o_2", "obj2", "o_3", "obj3"}},
		{args: []string{"SORT", "L", "BY", "w_*", "GET", "o_*"}, want: crossSlotReply},
		{args: []string{"SORT", "L", "BY", "w_*"}, want: crossSlotReply},
		{args: []string{"SORT", "L", "GET", "#", "GET", "o_*"}, want: crossSlotReply},
		{args: []string{"SORT_RO", "L", "BY", "w_*->f"}, want: crossSlotReply},
		{args: []string{"SORT", "L", "DESC"}},
		{args: []string{"SORT", "L", "BY", "nosort", "GET", "#"}},
		{args: []string{"SORT", "L", "LIMIT", "0", "2", "GET", "#", "GET", "constant"}},
		{args: []string{"SORT_RO", "L", "BY", "nosort", "DESC"}},
		{args: []string{"SORT", "L", "BY"}},
	})
}

// In a pool of one server every key a SORT pattern forms is on it.
func TestProxySortPatternsOneServer(t *testing.T) {
	tp := startProxy(t, 1, "")
	compareRepliesWithRedis(t, tp.client(t), []replyCheck{
		{args: []string{"RPUSH", "L", "1", "2", "3"}},
		{args: []string{"MSET", "w_1", "9", "w_2", "8", "w_3", "7", "o_1", "obj1", "o_2", "obj2", "o_3", "obj3"}},
		{args: []string{"SORT", "L", "BY", "w_*", "GET", "o_*"}},
		{args: []string{"SORT", "L", "BY", "w_*", "GET", "#", "STORE", "dst"}},
		{args: []string{"LRANGE", "dst", "0", "-1"}},
	})
}

// With a hash tag before the wildcard, the keys a SORT pattern forms share
// the tag's server: allowed when that is the sorted key's server, refused
// otherwise.
func TestProxySortPatternsWithHashTag(t *testing.T) {
	for _, tag := range []string{"{}", "$$"} {
		t.Run(tag, func(t *testing.T) {
			tp := startProxy(t, 3, fmt.Sprintf("  hash_tag: %q\n", tag))
			tagged := func(tagValue, rest string) string { return tag[:1] + tagValue + tag[1:] + rest }
			list := tagged("u", "L")
			// A tag whose server is not the list's.
			var other string
			for i := 0; other == ""; i++ {
				if v := fmt.Sprintf("v%d", i); tp.owner(t, v) != tp.owner(t, "u") {
					other = v
				}
			}
			c := tp.client(t)
			compareRepliesWithRedis(t, c, []replyCheck{
				{args: []string{"RPUSH", list, "1", "2", "3"}},
				{args: []string{"MSET", tagged("u", "w_1"), "9", tagged("u", "w_2"), "8", tagged("u", "w_3"), "7"}},
				{args: []string{"MSET", tagged("u", "o_1"), "obj1", tagged("u", "o_2"), "obj2", tagged("u", "o_3"), "obj3"}},
				{args: []string{"HSET", tagged("u", "h_1"), "f", "3"}},
				{args: []string{"SORT", list, "BY", tagged("u", "w_*"), "GET", tagged("u", "o_*")}},
				{args: []string{"SORT", list, "BY", tagged("u", "w_*"), "GET", "#", "GET", tagged("u", "h_*->f")}},
				{args: []string{"SORT_RO", list, "BY", tagged("u", "w_*"), "DESC", "GET", tagged("u", "o_*")}},
				{args: []string{"SORT", list, "BY", tagged(other, "w_*")}, want: crossSlotReply},
				{args: []string{"SORT", list, "GET", tagged(other, "o_*")}, want: crossSlotReply},
				// The tag must come before the wildcard, and must not be empty.
				{args: []string{"SORT", list, "BY", "w_*" + tagged("u", "")}, want: crossSlotReply},
				{args: []string{"SORT", list, "GET", tag[:1] + "o_*" + tag[1:]}, want: crossSlotReply},
				{args: []string{"SORT", list, "GET", tag + "o_*"}, want: crossSlotReply},
			})
		})
	}
}

// SORT ... STORE writes its destination: it must be on the sorted key's
// server, or the result lands where no one can read it.
func TestProxySortStore(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	near := tp.keyOn(t, tp.owner(t, "a"), "b")
	far := tp.keyOn(t, tp.serverNotOwning(t, "a"), "b")
	compareRepliesWithRedis(t, c, []replyCheck{
		{args: []string{"RPUSH", "a", "2", "1"}},
		{args: []string{"SORT", "a", "STORE", far}, want: crossSlotReply},
		{args: []string{"LRANGE", far, "0", "-1"}},
		{args: []string{"SORT", "a", "LIMIT", "0", "5", "STORE", near}},
		{args: []string{"LRANGE", near, "0", "-1"}},
		{args: []string{"SORT", "a", "STORE", near, "STORE", far}, want: crossSlotReply},
		{args: []string{"SORT_RO", "a", "STORE", far}},
	})
}

// GEORADIUS and GEORADIUSBYMEMBER write STORE and STOREDIST destinations;
// GEOSEARCHSTORE its first key. All must be on the source key's server.
func TestProxyGeoStore(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	near := tp.keyOn(t, tp.owner(t, "geo"), "dst")
	far := tp.keyOn(t, tp.serverNotOwning(t, "geo"), "dst")
	compareRepliesWithRedis(t, c, []replyCheck{
		{args: []string{"GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"}},
		{args: []string{"GEORADIUS", "geo", "15", "37", "200", "km", "STORE", far}, want: crossSlotReply},
		{args: []string{"GEORADIUS", "geo", "15", "37", "200", "km", "STOREDIST", far}, want: crossSlotReply},
		{args: []string{"GEORADIUS", "geo", "15", "37", "200", "km", "ASC", "COUNT", "1", "STORE", near}},
		{args: []string{"ZRANGE", near, "0", "-1"}},
		{args: []string{"GEORADIUS", "geo", "15", "37", "200", "km", "STOREDIST", near}},
		{args: []string{"ZRANGE", near, "0", "-1", "WITHSCORES"}},
		{args: []string{"GEORADIUSBYMEMBER", "geo", "Palermo", "200", "km", "STORE", far}, want: crossSlotReply},
		{args: []string{"GEORADIUSBYMEMBER", "geo", "Palermo", "200", "km", "STORE", near}},
		{args: []string{"GEOSEARCHSTORE", far, "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"}, want: crossSlotReply},
		{args: []string{"GEOSEARCHSTORE", near, "geo", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STOREDIST"}},
		{args: []string{"ZRANGE", near, "0", "-1"}},
		{args: []string{"EXISTS", far}},
		{args: []string{"GEORADIUS_RO", "geo", "15", "37", "200", "km", "ASC"}},
	})
}

// Commands with one key behind a subcommand (OBJECT, MEMORY, XGROUP, XINFO)
// and non-blocking XREAD/XREADGROUP are routed by their key, so stream
// consumer groups work.
func TestProxyRoutesSubcommandsAndStreams(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	far := tp.keyOn(t, tp.serverNotOwning(t, "s"), "s")
	compareRepliesWithRedis(t, c, []replyCheck{
		{args: []string{"SET", "k", "12345"}},
		{args: []string{"OBJECT", "ENCODING", "k"}},
		{args: []string{"object", "refcount", "k"}},
		{args: []string{"MEMORY", "USAGE", "k"}},
		{args: []string{"MEMORY", "USAGE", "k", "SAMPLES", "0"}},
		{args: []string{"XADD", "s", "1-1", "f", "v1"}},
		{args: []string{"XADD", "s", "1-2", "f", "v2"}},
		{args: []string{"XGROUP", "CREATE", "s", "g", "0"}},
		{args: []string{"XGROUP", "CREATECONSUMER", "s", "g", "c2"}},
		{args: []string{"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s", ">"}},
		{args: []string{"XACK", "s", "g", "1-1"}},
		{args: []string{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"}},
		{args: []string{"XPENDING", "s", "g"}},
		{args: []string{"XINFO", "STREAM", "s"}},
		{args: []string{"XINFO", "GROUPS", "s"}},
		{args: []string{"XREAD", "COUNT", "1", "STREAMS", "s", "0"}},
		{args: []string{"XREAD", "STREAMS", "s", "1-1"}},
		{args: []string{"XGROUP", "DESTROY", "s", "g"}},
		{args: []string{"XREAD", "COUNT", "1", "STREAMS", "s", far, "0", "0"}, want: crossSlotReply},
		{args: []string{"XREAD", "BLOCK", "1", "STREAMS", "s", "$"}},
		{args: []string{"XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "s", ">"}},
		{args: []string{"XREAD", "STREAMS", "s"}},
		{args: []string{"OBJECT", "HELP"}},
		{args: []string{"XINFO", "HELP"}},
		{args: []string{"OBJECT", "NOSUCH", "k"}},
		{args: []string{"OBJECT"}},
		{args: []string{"OBJECT", "ENCODING"}},
		{args: []string{"MEMORY", "STATS"}, want: "-" + refusal("memory|stats", whyAllServers) + "\r\n"},
		{args: []string{"MEMORY", "DOCTOR"}, want: "-" + refusal("memory|doctor", whyAllServers) + "\r\n"},
	})
}

// Inside MULTI a subcommand's key pins the transaction like any other key.
func TestProxySubcommandKeysInTransaction(t *testing.T) {
	tp := startProxy(t, 3, "  hash_tag: \"{}\"\n")
	c := tp.client(t)
	other := ""
	for i := 0; other == ""; i++ {
		if k := fmt.Sprintf("o%d", i); tp.owner(t, k) != tp.owner(t, "u") {
			other = k
		}
	}
	for _, s := range []replyCheck{
		{args: []string{"SET", "{u}k", "1"}, want: "+OK\r\n"},
		{args: []string{"MULTI"}, want: "+OK\r\n"},
		{args: []string{"OBJECT", "ENCODING", "{u}k"}, want: "+QUEUED\r\n"},
		{args: []string{"OBJECT", "ENCODING", other}, want: crossSlotReply},
		{args: []string{"EXEC"}, want: "-" + msgExecAbort + "\r\n"},
		{args: []string{"MULTI"}, want: "+OK\r\n"},
		{args: []string{"OBJECT", "ENCODING", "{u}k"}, want: "+QUEUED\r\n"},
		{args: []string{"EXEC"}, want: "*1\r\n$3\r\nint\r\n"},
	} {
		if got := do(t, c, s.args...); got != s.want {
			t.Fatalf("%q = %q, want %q", s.args, got, s.want)
		}
	}
	if got := do(t, c, "OBJECT", "NOSUCH"); !strings.HasPrefix(got, "-ERR unknown subcommand 'NOSUCH'. Try OBJECT HELP.") {
		t.Fatalf("OBJECT NOSUCH = %q", got)
	}
}
