package proxy

import (
	"strings"

	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Users: who a client is, and the ACL commands the proxy answers. A
// client is one of its pool's users (proxy/acl): the one it authenticated
// as with AUTH or HELLO ... AUTH, or the default user when that one needs
// no password. dispatch checks every command against the user's
// permissions before it runs, local ones included; a reload that changes
// the pool's users makes a client whose user is gone, off or changed
// authenticate again, and closes such a client that is subscribed, which
// would otherwise go on receiving messages its user may no longer have
// (Redis 7.0 closes the clients of the users an ACL LOAD replaces).

// poolUsers are the users of a pool: its acl_file's, or Redis' default
// user with redis_auth as its password.
func poolUsers(cfg *config.Pool) *acl.Users {
	if cfg.Users != nil {
		return cfg.Users
	}
	return acl.FromPassword(cfg.RedisAuth)
}

// rebindUser moves the client to users, its pool's after a reload: it
// keeps its user when users has the same one, on; otherwise it is the
// default user when that needs no password, or must authenticate.
func (c *client) rebindUser(users *acl.Users) {
	if c.user != nil {
		u := users.Lookup([]byte(c.user.Name()))
		if u == nil || !u.Enabled() || !c.user.Same(u) {
			u = nil
		}
		c.setUser(u)
	}
	c.users = users
	if c.user == nil {
		c.logOut()
	}
}

// setUser makes u the client's user (nil: none until it authenticates).
func (c *client) setUser(u *acl.User) {
	c.user, c.authed = u, u != nil
	c.userNow.Store(u)
}

// userName is the name of the client's user, for other goroutines: the
// default user's before it authenticates, as in Redis.
func (c *client) userName() string {
	if u := c.userNow.Load(); u != nil {
		return u.Name()
	}
	return acl.DefaultUser
}

// userKept reports whether the client's user is in users, on and
// unchanged, for a reload that checks its subscribed clients from another
// goroutine than the client's.
func (c *client) userKept(users *acl.Users) bool {
	u := c.userNow.Load()
	if u == nil {
		return true
	}
	next := users.Lookup([]byte(u.Name()))
	return next != nil && next.Enabled() && u.Same(next)
}

// logOut makes the client what a new connection is: the default user, or
// no user until it authenticates.
func (c *client) logOut() {
	var u *acl.User
	if users := c.pool.users; !users.AuthRequired() {
		u = users.Default()
	}
	c.setUser(u)
	c.users = c.pool.users
}

// checkAuth authenticates the client with [user] password against the
// pool's users and returns the error reply, or "" on success. A password
// alone is the default user's, as in Redis, which refuses it when the
// default user has none.
func (c *client) checkAuth(args [][]byte) string {
	users := c.pool.users
	name, pass := []byte(acl.DefaultUser), args[len(args)-1]
	if len(args) == 2 {
		name = args[0]
	} else if users.Default().NoPass() {
		return msgNoPassword
	}
	if msg := c.srv.authLimit.check(c.conn.RemoteAddr()); msg != "" {
		c.pool.stats.AuthFailures.Add(1)
		return msg
	}
	u := users.Authenticate(name, pass)
	if u == nil {
		c.pool.stats.AuthFailures.Add(1)
		c.srv.authLimit.failed(c.conn.RemoteAddr())
		return msgWrongPass
	}
	c.setUser(u)
	c.users = users
	return ""
}

// replyNoPerm records the refusal of a request the client's user may not
// run. In MULTI the refusal aborts the transaction, as any command that
// cannot be queued does. A refused EXEC ends the transaction and its
// watches, in or out of MULTI, and is worded as Redis words every refused
// EXEC (execCommandAbort).
func (c *client) replyNoPerm(def *command.Spec, v acl.Verdict) {
	if def.Name == "exec" {
		if c.tx.inMulti {
			c.discardOnServer()
		} else {
			c.tx.reset()
		}
		c.replyError(msgExecAbortBecause + v.Message())
		return
	}
	c.rejectInTx()
	s := c.newSlot()
	s.buf = v.AppendError(s.buf)
	c.calls = append(c.calls, call{slot: s})
}

// aclCommand answers ACL's subcommands. Those that only read the users
// (WHOAMI, CAT, LIST, USERS, DRYRUN) are answered from the pool's users;
// those that would change them or Redis' own state are refused, since the
// users are the acl_file's.
func (c *client) aclCommand(def *command.Spec, args [][]byte) {
	users := c.pool.users
	switch def.Name {
	case "acl|whoami":
		c.reply(resp.AppendBulkString(nil, c.user.Name()))
	case "acl|users":
		names := users.Names()
		b := resp.AppendArray(nil, len(names))
		for _, n := range names {
			b = resp.AppendBulkString(b, n)
		}
		c.reply(b)
	case "acl|list":
		names := users.Names()
		b := resp.AppendArray(nil, len(names))
		for _, n := range names {
			b = resp.AppendBulkString(b, users.Lookup([]byte(n)).Masked())
		}
		c.reply(b)
	case "acl|cat":
		c.aclCat(args[1], args[2:])
	case "acl|dryrun":
		c.aclDryRun(args[2:])
	default:
		c.replyError(refusal(def.Name, whyACLFile))
	}
}

// aclCat answers ACL CAT [category]: the categories, or the commands and
// subcommands in one, as Redis names them.
func (c *client) aclCat(sub []byte, args [][]byte) {
	names := command.ACLCategoryNames()
	if len(args) == 0 {
		b := resp.AppendArray(nil, len(names))
		for _, n := range names {
			b = resp.AppendBulkString(b, n)
		}
		c.reply(b)
		return
	}
	if len(args) > 1 {
		c.replyError(aclSubcommandUsage(sub))
		return
	}
	category := ""
	for _, n := range names {
		if strings.EqualFold(n, string(args[0])) {
			category = n
		}
	}
	if category == "" {
		c.replyError(unknownACLCategory(args[0]))
		return
	}
	var in []string
	for _, cmd := range command.ACLCommands() {
		if cmd.InACLCategory(category) {
			in = append(in, cmd.Name)
		}
	}
	b := resp.AppendArray(nil, len(in))
	for _, n := range in {
		b = resp.AppendBulkString(b, n)
	}
	c.reply(b)
}

// aclDryRun answers ACL DRYRUN user command [arg ...] as Redis 7.0 does:
// +OK when the user may run the request, else a bulk string saying what
// it may not run.
func (c *client) aclDryRun(args [][]byte) {
	u := c.pool.users.Lookup(args[0])
	if u == nil {
		c.replyError(aclNoUser(args[0]))
		return
	}
	req := args[1:]
	def := command.Lookup(req[0])
	if def != nil && def.IsContainer() && len(req) > 1 {
		def = command.LookupACL(def.Name + "|" + string(req[1]))
	}
	if def == nil {
		c.replyError(aclNoCommand(req[0]))
		return
	}
	if !def.ArityOK(len(req)) {
		c.replyError(wrongArity(def.Name))
		return
	}
	v := u.Check(def, req, nil)
	if v.OK() {
		c.reply([]byte("+OK\r\n"))
		return
	}
	c.reply(resp.AppendBulkString(nil, v.DryRun(req)))
}
