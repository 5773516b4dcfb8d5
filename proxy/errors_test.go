package proxy

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// The error replies built from parts read as they always did, byte for
// byte; most are Redis' own wording.
func TestErrorTexts(t *testing.T) {
	args := func(s ...string) [][]byte {
		var out [][]byte
		for _, a := range s {
			out = append(out, []byte(a))
		}
		return out
	}
	tests := []struct{ got, want string }{
		{wrongArity("GET"), "ERR wrong number of arguments for 'get' command"},
		{unknownCommand(args("foo", "a", "b")), "ERR unknown command 'foo', with args beginning with: 'a' 'b' "},
		{unknownSubcommand(args("object", "nosuch")), "ERR unknown subcommand 'nosuch'. Try OBJECT HELP."},
		{unknownSubcommandOf("CLIENT", []byte("nosuch")), "ERR unknown subcommand 'nosuch'. Try CLIENT HELP."},
		{helloBadOption([]byte("x")), "ERR Syntax error in HELLO option 'x'"},
		{unknownClientType([]byte("x")), "ERR Unknown client type 'x'"},
		{noSuchUser([]byte("x")), "ERR No such user 'x'"},
		{clientUnblockUsage([]byte("unblock")), "ERR unknown subcommand or wrong number of arguments for 'unblock'. Try CLIENT HELP."},
		{dbOutOfRange(2), "ERR DB index is out of range: this pool serves only db 2 (redis_db)"},
		{notInMulti("info"), "ERR 'info' is not allowed inside MULTI by shardproxy"},
		{fanOutInMulti("script"), "ERR 'script' is not allowed inside MULTI by shardproxy: it goes to every server"},
		{unsupportedCommand(command.Lookup([]byte("time"))), "ERR unsupported command 'time' in shardproxy: it needs every server, and shardproxy routes each request by its key"},
		{tooManyBlocked("server0", 2), "ERR too many blocked clients on server server0 (blocking_connections is 2)"},
		{unsupportedCommand(command.Lookup([]byte("config"))), "ERR unsupported command 'config' in shardproxy: administrative commands must be sent to each Redis server directly"},
		{unsupportedCommand(command.Lookup([]byte("move"))), "ERR unsupported command 'move' in shardproxy: the pool's database is set by redis_db"},
		{refusal("client|reply", whyClientReply), "ERR unsupported command 'client|reply' in shardproxy: only CLIENT REPLY ON is supported"},
		{errRequestTooLarge.Error(), "Protocol error: request is too large"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got  %q\nwant %q", tc.got, tc.want)
		}
	}
}

// Errors that quote the client's arguments quote them as redis-server
// does: the unknown command's arguments within 128 bytes in all, the
// values of HELLO and CLIENT KILL whole, everything up to a NUL byte.
func TestErrorsQuoteArgumentsLikeRedis(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	single := proxytest.StartRedis(t).Client(t)
	long := strings.Repeat("o", 200)
	ten := strings.Fields(strings.Repeat("abcdefghij ", 20))
	for _, args := range [][]string{
		append([]string{"FOO"}, ten...),
		{"FOO", long, "b"},
		{"FOO", "a", long},
		{strings.Repeat("f", 140), "a", "b"},
		{"FOO", "a\x00b", "c"},
		{"FOO\x00BAR", "a"},
		{"HELLO", "2", long},
		{"HELLO", "2", "x\x00y"},
		{"CLIENT", "KILL", "TYPE", long},
		{"CLIENT", "KILL", "USER", long},
		{"CLIENT", "KILL", "TYPE", "a\x00b"},
		{"CLIENT", long},
		{"OBJECT", long},
		{"OBJECT", "a\x00b"},
	} {
		want := do(t, single, args...)
		if got := do(t, c, args...); got != want {
			t.Errorf("%q = %q, redis-server says %q", args, got, want)
		}
	}
}
