package proxy

import (
	"strings"

	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Error replies the proxy writes itself. Where Redis has a wording, it is
// Redis' own, so clients recognise it.
const (
	msgNoAuth     = "NOAUTH Authentication required."
	msgCrossSlot  = "CROSSSLOT Keys in request don't hash to the same slot"
	msgNoServer   = "ERR no server of this pool is available (all are ejected)"
	msgExecAbort  = "EXECABORT Transaction discarded because of previous errors."
	msgBadNumKeys = "ERR Number of keys can't be greater than number of args"
)

func wrongArity(name string) string {
	return "ERR wrong number of arguments for '" + strings.ToLower(name) + "' command"
}

func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(limitArg(args[0]))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		if b.Len() > 128 {
			break
		}
		b.WriteByte('\'')
		b.Write(limitArg(a))
		b.WriteString("' ")
	}
	return b.String()
}

func limitArg(a []byte) []byte {
	if len(a) > 128 {
		return a[:128]
	}
	return a
}

// unknownSubcommand is Redis' reply to a container command (OBJECT, ...)
// with a subcommand it does not have.
func unknownSubcommand(args [][]byte) string {
	return "ERR unknown subcommand '" + string(limitArg(args[1])) + "'. Try " + strings.ToUpper(string(args[0])) + " HELP."
}

func unsupportedCommand(c *command) string {
	return refusal(c.name, c.why)
}

func refusal(name, why string) string {
	return "ERR unsupported command '" + name + "' in shardproxy: " + why
}

// dispatch handles one command: answers it, stages it for its server, or
// splits it over several servers.
func (c *client) dispatch(cmd *resp.Command) {
	args := cmd.Args
	def := lookupCommand(args[0])
	if def == nil {
		c.rejectInTx()
		c.replyError(unknownCommand(args))
		return
	}
	if def.subcommands != nil && len(args) > 1 {
		sub := def.subcommand(args[1])
		if sub == nil {
			c.rejectInTx()
			c.replyError(unknownSubcommand(args))
			return
		}
		def = sub
	}
	if !c.authed && !allowedBeforeAuth(def) {
		c.replyError(msgNoAuth)
		return
	}
	if !def.arityOK(len(args)) {
		c.rejectInTx()
		c.replyError(wrongArity(def.name))
		return
	}
	if c.ring == nil {
		c.ring = c.pool.ring.Load()
	}
	if c.tx.active() && def.kind != transaction && def.name != "quit" && def.name != "reset" {
		c.txCommand(def, cmd)
		return
	}
	c.dispatchKind(def, cmd)
}

// dispatchKind handles a command that passed the checks, by its kind.
func (c *client) dispatchKind(def *command, cmd *resp.Command) {
	args := cmd.Args
	switch def.kind {
	case local:
		c.local(def, cmd)
	case transaction:
		c.transaction(def, cmd)
	case unsupported:
		c.replyError(unsupportedCommand(def))
	case routePlaceholder:
		c.route(c.ring.Lookup(placeholderKey), cmd)
	case splitKeys, splitPairs:
		c.split(def, cmd)
	case fanOut:
		c.fanOut(def, cmd)
	default:
		if keylessScript(def, args) {
			c.route(c.ring.Lookup(placeholderKey), cmd)
			return
		}
		idx, msg := c.owner(def, args)
		if msg != "" {
			c.replyError(msg)
			return
		}
		c.route(idx, cmd)
	}
}

// placeholderKey is the key nutcracker routes keyless commands by.
var placeholderKey = []byte("placeholder")

func allowedBeforeAuth(def *command) bool {
	switch def.name {
	case "auth", "hello", "ping", "quit", "reset":
		return true
	}
	return false
}

// owner finds the server of a keyed command, checking that every key it
// names, and every key its SORT patterns form, lives there. msg is an error
// reply when there is no single owner.
func (c *client) owner(def *command, args [][]byte) (int, string) {
	if def.blocks(args) {
		return -1, refusal(def.name, whyBlocking)
	}
	keys, _ := def.appendKeys(c.keys[:0], args)
	c.keys = keys
	if len(keys) == 0 {
		// Redis' own key finding sees no key here either, and a command
		// with keys that names none is an error Redis reports without
		// touching any key (Redis Cluster relies on the same): any server
		// gives its exact error.
		return c.ring.Lookup(placeholderKey), ""
	}
	idx := c.ring.Lookup(args[keys[0]])
	if idx < 0 {
		return -1, msgNoServer
	}
	for _, k := range keys[1:] {
		if c.ring.Lookup(args[k]) != idx {
			return -1, msgCrossSlot
		}
	}
	if def.keysProc == keysSort || def.keysProc == keysSortRO {
		if !sortPatternsOn(args, def.keysProc == keysSortRO, c.ring, c.ring.Options().HashTag, idx) {
			return -1, msgCrossSlot
		}
	}
	return idx, ""
}

// route stages cmd for server idx.
func (c *client) route(idx int, cmd *resp.Command) {
	if idx < 0 {
		c.replyError(msgNoServer)
		return
	}
	s := c.forward(c.pool.servers[idx], cmd)
	c.calls = append(c.calls, call{slot: s})
}
