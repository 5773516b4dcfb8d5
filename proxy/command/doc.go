// Package command is the proxy's table of Redis commands: for every
// command and subcommand of redis-server 7.0, what redis-server says about
// it in COMMAND INFO (arity, flags, ACL categories, tips, key specs,
// subcommands) and how the proxy handles it (its Kind: routed by its keys,
// split per server, answered locally, sent to every server, refused and
// why).
//
// The first half is generated: commandtable.go is written by
// internal/cmdgen from a real redis-server (go generate ./proxy/command
// starts one), and a test compares it with the installed redis-server's
// COMMAND INFO, so the table cannot drift. The second half is the proxy's
// own: a few policies by name (MGET is split, PING is local, SCAN is
// refused, ...); every other command's Kind follows from what redis-server
// says (pub/sub and blocking commands are refused, commands with keys are
// routed by them, admin commands and those Redis sends to all shards are
// refused). A command redis-server adds that none of these rules settles
// stops the program at start, not a request at run time.
//
// Keys are found as redis-server's COMMAND GETKEYS finds them: by the key
// specs, and by Redis' own key finders for the commands whose specs are
// incomplete (SORT, MIGRATE, GEORADIUS with STORE, ...). A test checks that
// against COMMAND GETKEYS for example arguments of every command with keys,
// built from its COMMAND DOCS.
//
// Lookup, Subcommand and the key finders allocate nothing: names are
// lower-cased into a small array, keys are appended to the caller's slice.
// What needs the ring (which server a key or a SORT pattern is on) is the
// proxy's; this package only says where in the arguments the keys are.
package command
