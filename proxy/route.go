package proxy

import (
	"bytes"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// dispatch handles one command: answers it, stages it for its server, or
// splits it over several servers.
func (c *client) dispatch(cmd *resp.Command) {
	args := cmd.Args
	def := command.Lookup(args[0])
	if def == nil {
		c.rejectInTx()
		c.replyError(unknownCommand(args))
		return
	}
	if def.HasSubcommands() && len(args) > 1 {
		sub := def.Subcommand(args[1])
		if sub == nil {
			c.rejectInTx()
			c.replyError(unknownSubcommand(args))
			return
		}
		def = sub
	}
	if !c.authed && !def.AllowedBeforeAuth() {
		c.replyError(msgNoAuth)
		return
	}
	if !def.ArityOK(len(args)) {
		c.rejectInTx()
		c.replyError(wrongArity(def.Name))
		return
	}
	if c.user != nil {
		// Redis checks a command queued in MULTI as it is queued: a
		// refused one aborts the EXEC.
		if v := c.user.Check(def, args, &c.aclScratch); !v.OK() {
			c.replyNoPerm(def, v)
			return
		}
	}
	if c.subs != nil && c.proto == 2 && c.inPubSub() && !allowedSubscribed(def.Name) {
		c.replyError(notSubscribedMode(def, args))
		return
	}
	if c.layout == nil {
		c.layout = c.pool.layout.Load()
	}
	if c.tracking != nil && c.armCaching(def.Name) {
		defer c.disarmCaching()
	}
	if c.tx.active() && def.Kind != command.Transaction && def.Name != "quit" && def.Name != "reset" {
		c.txCommand(def, cmd)
		return
	}
	c.dispatchKind(def, cmd)
}

// dispatchKind handles a command that passed the checks, by its kind.
func (c *client) dispatchKind(def *command.Spec, cmd *resp.Command) {
	args := cmd.Args
	switch def.Kind {
	case command.Local:
		c.local(def, cmd)
	case command.Transaction:
		c.transaction(def, cmd)
	case command.Unsupported:
		c.replyError(unsupportedCommand(def))
	case command.RoutePlaceholder:
		c.route(c.layout.Lookup(placeholderKey), cmd)
	case command.SplitKeys, command.SplitPairs:
		c.split(def, cmd)
	case command.FanOut:
		c.fanOut(def, cmd)
	case command.PubSub:
		c.pubsub(def, cmd)
	default:
		if def.OmitsKeys(args) {
			c.route(c.layout.Lookup(placeholderKey), cmd)
			return
		}
		idx, msg := c.owner(def, args)
		if msg != "" {
			c.replyError(msg)
			return
		}
		if def.Blocks(args) {
			c.blockingCommand(def, idx, cmd)
			return
		}
		if c.pool.readsReplicas && def.ReplicaRead() {
			c.routeRead(idx, def, cmd)
			return
		}
		c.route(idx, cmd)
		c.markRead(def)
	}
}

// markRead records, for the last call's request to a group or a cluster
// node, whether its command only reads: such a request may be sent again
// even when its outcome is unknown (group.go), or when it ran behind a
// request that is retried after -TRYAGAIN (cluster_tryagain.go).
func (c *client) markRead(def *command.Spec) {
	if n := len(c.calls); n > 0 {
		if s := c.calls[n-1].slot; s != nil && (s.group != nil || s.req.srv != nil && s.req.srv.pool.seeds != nil) {
			s.readOnly = def.ReadOnly()
		}
	}
}

// placeholderKey is the key nutcracker routes keyless commands by.
var placeholderKey = []byte("placeholder")

// owner finds the server of a keyed command, checking that every key it
// names, and every key its SORT patterns form, lives there. msg is an error
// reply when there is no single owner.
func (c *client) owner(def *command.Spec, args [][]byte) (int, string) {
	keys, _ := def.AppendKeys(c.keys[:0], args)
	c.keys = keys
	if len(keys) == 0 {
		// Redis' own key finding sees no key here either, and a command
		// with keys that names none is an error Redis reports without
		// touching any key (Redis Cluster relies on the same): any server
		// gives its exact error.
		return c.layout.Lookup(placeholderKey), ""
	}
	idx := c.layout.Lookup(args[keys[0]])
	if idx < 0 {
		return -1, c.layout.noOwnerOf(args[keys[0]])
	}
	for _, k := range keys[1:] {
		if c.layout.Lookup(args[k]) != idx {
			return -1, msgCrossSlot
		}
	}
	all := def.AppendSortPatterns(keys, args)
	c.keys = all
	if patterns := all[len(keys):]; len(patterns) > 0 && !sortPatternsOn(args, patterns, c.layout.Placement, idx) {
		return -1, msgCrossSlot
	}
	return idx, ""
}

// sortPatternsOn reports whether every key that SORT's BY and GET patterns
// (the arguments at positions patterns) may form is on server idx, the
// server of the sorted key. A pattern forms keys only when it has a '*';
// the formed keys are known to be on idx only when the part before the
// first '*' holds a whole hash tag and that tag is on idx, or when the
// pool has just one server. This is Redis Cluster's rule for SORT
// patterns, with the pool's hash_tag for Redis' braces.
func sortPatternsOn(args [][]byte, patterns []int, pl placement.Placement, idx int) bool {
	for _, p := range patterns {
		if !patternOn(args[p], pl, idx) {
			return false
		}
	}
	return true
}

// patternOn reports whether the keys a SORT pattern forms are on server idx.
func patternOn(pattern []byte, pl placement.Placement, idx int) bool {
	star := bytes.IndexByte(pattern, '*')
	if star < 0 {
		return true // no substitution: no key is read (GET # included)
	}
	if pl.Len() == 1 {
		return true
	}
	prefix := pattern[:star]
	if _, tagged := pl.Tag(prefix); !tagged {
		return false // the whole formed key is hashed, or its tag holds the element
	}
	return pl.Lookup(prefix) == idx
}

// route stages cmd for server idx.
func (c *client) route(idx int, cmd *resp.Command) {
	if idx < 0 {
		c.replyError(c.layout.noOwner())
		return
	}
	s := c.forward(c.layout.servers[idx], cmd)
	c.calls = append(c.calls, call{slot: s})
}
