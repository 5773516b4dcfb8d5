// Package acl is Redis' ACL users for the proxy: the ACL file in Redis'
// own syntax, parsed into an immutable set of users, AUTH's password
// check, and the per-request check of a user's permissions, with Redis'
// exact refusals. It reads the command table (proxy/command) for each
// command's ACL categories, key specs and channels, and does no I/O but
// Load's read of the file.
//
// The file is read as Redis 7.0 reads its aclfile (ACLLoadFromFile): one
// user a line, "user <name> <rule>...", the rules separated by single
// spaces. Blank lines are skipped; any other line must start with "user"
// (Redis has no comments: a line starting with '#' is an error). Rules:
//
//	on, off                      the user may authenticate, or not (new users are off)
//	>password, <password         add or remove a password (kept as its SHA-256)
//	#sha256hex, !sha256hex       add or remove a password by its hash
//	nopass, resetpass            any password works; no password works
//	~pattern, allkeys, resetkeys keys the user may read and write (~* is allkeys)
//	%R~pattern, %W~, %RW~        keys it may read, write, or both
//	&pattern, allchannels,       channels it may publish and subscribe to
//	resetchannels                (&* is allchannels)
//	+cmd, -cmd                   allow or deny a command, a container with all its subcommands
//	+cmd|sub, -cmd|sub           allow or deny one subcommand (+config|get)
//	+cmd|first-arg               allow a command with one first argument only (+select|0)
//	+@category, -@category       allow or deny a category (+@read, -@dangerous; +@all)
//	allcommands, nocommands      +@all, -@all
//	(rules...)                   a selector: a further set of permissions
//	clearselectors, reset        drop the selectors; back to a new user's state
//	sanitize-payload,            accepted and ignored: RESTORE payloads are the
//	skip-sanitize-payload        servers' to check
//
// A request is allowed when the root permissions or any selector allow all
// of it: the command (AUTH, HELLO, QUIT and RESET always), each key for
// what the command does with it (its key specs' access flag needs a
// pattern that allows reads, insert, update and delete one that allows
// writes), and each channel of PUBLISH, SPUBLISH, SUBSCRIBE, SSUBSCRIBE and
// PSUBSCRIBE (a PSUBSCRIBE pattern must be one of the user's, literally).
// SORT's GET, and BY with a pattern, also need a selector that may read
// every key, as Redis' SORT requires (with its own ERR, not a NOPERM).
// What a script or function runs on a server (EVAL, FCALL) is not checked
// here: the proxy sees the EVAL and its keys, not the commands inside.
// Key and channel patterns are Redis' globs (Match). As in Redis 7.0 with
// acl-pubsub-default resetchannels, a new user has no channels. A file
// that does not name the default user gets Redis' (on nopass ~* &* +@all);
// FromPassword builds the users of a pool that has only redis_auth: the
// default user with that password.
//
// Any problem refuses the whole file, as in Redis, with an *Error listing
// each problem with its line, in Redis' words; passwords are never quoted.
// Where Redis reads the file as C strings, the parser refuses a NUL byte
// rather than silently ending the line there.
//
// Check allocates nothing: the rules are compiled into a bitmap of the
// commands (command.Spec.ACLID) and lists of patterns, the keys of a
// request are found into the caller's Scratch, and a refusal's error reply
// is appended to the caller's buffer (Verdict.AppendError).
package acl
