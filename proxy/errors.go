package proxy

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// The error replies the proxy writes itself, each without its leading '-'
// (resp.AppendError adds it). Where Redis answers the same situation, the
// text is Redis' own, so that clients and their libraries recognise it; the
// proxy's own errors start with ERR and name shardproxy or the pool. A
// request a server could not answer gets serverErrorPrefix followed by the
// cause, which the server connection that saw it words
// (backend.Upstream.ErrorText).

// Commands and their arguments, as redis-server words them.
const (
	msgNoAuth     = "NOAUTH Authentication required."
	msgWrongPass  = "WRONGPASS invalid username-password pair or user is disabled."
	msgNoPassword = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	msgNoProto    = "NOPROTO unsupported protocol version"
	msgCrossSlot  = "CROSSSLOT Keys in request don't hash to the same slot"
	msgSyntax     = "ERR syntax error"
	msgNotInteger = "ERR value is not an integer or out of range"

	msgProtoNotInteger = "ERR Protocol version is not an integer or out of range"
	msgBadClientName   = "ERR Client names cannot contain spaces, newlines or special characters."
	msgBadClientID     = "ERR client-id should be greater than 0"
	msgNoSuchClient    = "ERR No such client"
	msgUnblockReason   = "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
	msgNoRedirectID    = "ERR The client ID you want redirect to does not exist"

	// CLIENT TRACKING and CLIENT CACHING, as Redis 7.0 words them.
	msgPrefixNeedsBcast    = "ERR PREFIX option requires BCAST mode to be enabled"
	msgTrackingSwitchBcast = "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode."
	msgBcastOptInOut       = "ERR OPTIN and OPTOUT are not compatible with BCAST"
	msgOptInAndOut         = "ERR You can't specify both OPTIN mode and OPTOUT mode"
	msgTrackingSwitchOpt   = "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."
	msgCachingNotTracking  = "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"
	msgCachingYesNotOptIn  = "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
	msgCachingNoNotOptOut  = "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
	msgMaxClients          = "ERR max number of clients reached"
)

// msgTLSRequired answers a client that speaks plain text to a TLS
// listener; Redis has no reply for it (it closes the connection).
const msgTLSRequired = "ERR this port speaks TLS only: connect with TLS"

// msgHelloNoAuth is Redis 7.0's reply to HELLO from a client that has not
// authenticated and gives no AUTH option.
const msgHelloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the " +
	"HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP " +
	"protocol version at the same time"

// WAIT's timeout, as redis-server words it.
const (
	msgTimeoutNotInteger = "ERR timeout is not an integer or out of range"
	msgTimeoutNegative   = "ERR timeout is negative"
)

// Transactions, as redis-server words them.
const (
	msgNestedMulti         = "ERR MULTI calls can not be nested"
	msgExecWithoutMulti    = "ERR EXEC without MULTI"
	msgDiscardWithoutMulti = "ERR DISCARD without MULTI"
	msgWatchInMulti        = "ERR WATCH inside MULTI is not allowed"
	msgExecAbort           = "EXECABORT Transaction discarded because of previous errors."
)

// The proxy's own.
const (
	msgNoServer = "ERR no server of this pool is available (all are ejected)"
	// A Redis Cluster pool's key in a slot no master serves, in Redis'
	// words.
	msgSlotNotServed  = "CLUSTERDOWN Hash slot not served"
	msgSplitBadReply  = "ERR unexpected reply from a server to a split command"
	msgFanOutDiffer   = "ERR the servers of this pool gave different replies"
	msgFanOutBadReply = "ERR unexpected reply from a server to a command sent to every server"
	// SCAN cursors (scan.go); the first is Redis' own.
	msgInvalidCursor   = "ERR invalid cursor"
	msgStaleCursor     = "ERR invalid cursor: the pool's servers changed since the scan began"
	msgScanCursorRange = "ERR a server's SCAN cursor is too large for shardproxy's cursor"
)

// tooManyBlocked is the reply to a blocking command for a server that
// already has the pool's blocking_connections of them.
func tooManyBlocked(server string, limit int) string {
	return fmt.Sprintf("ERR too many blocked clients on server %s (blocking_connections is %d)", server, limit)
}

// errRequestTooLarge is a request over maxRequestLen, answered as the
// parser's protocol errors are ("ERR Protocol error: ...").
var errRequestTooLarge = resp.ProtocolError("request is too large")

// wrongArity is Redis' reply to a command with too few or too many
// arguments.
func wrongArity(name string) string {
	return "ERR wrong number of arguments for '" + strings.ToLower(name) + "' command"
}

// unknownCommand is Redis' reply to a command it does not have: the name
// (at most 128 bytes) and the first arguments, quoted, each cut to what is
// left of 128 bytes for all of them.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(quoted(args[0], 128))
	b.WriteString("', with args beginning with: ")
	n := 0 // bytes of the quoted arguments so far
	for _, a := range args[1:] {
		if n >= 128 {
			break
		}
		a = quoted(a, 128-n)
		b.WriteByte('\'')
		b.Write(a)
		b.WriteString("' ")
		n += len(a) + 3
	}
	return b.String()
}

// quoted is an argument as Redis quotes it in an error reply, through C's
// "%.*s": up to its first NUL byte, and at most max bytes (max < 0: any
// number).
func quoted(a []byte, max int) []byte {
	if i := bytes.IndexByte(a, 0); i >= 0 {
		a = a[:i]
	}
	if max >= 0 && len(a) > max {
		a = a[:max]
	}
	return a
}

// unknownSubcommand is Redis' reply to a container command (OBJECT, ...)
// with a subcommand it does not have.
func unknownSubcommand(args [][]byte) string {
	return unknownSubcommandOf(strings.ToUpper(string(args[0])), args[1])
}

// unknownSubcommandOf is unknownSubcommand for the container named
// container (in upper case).
func unknownSubcommandOf(container string, sub []byte) string {
	return "ERR unknown subcommand '" + string(quoted(sub, 128)) + "'. Try " + container + " HELP."
}

// unknownCommandRedis5 is Redis 5's reply to a command it does not have,
// which differs from unknownCommand's in its quotes: the name, then each
// argument in backquotes followed by ", ", for as long as the arguments so
// written are under 128 bytes, each cut to what is left of the 128. The
// proxy answers it to a HELLO 3 it must refuse, since every client library
// falls back to RESP2 on it.
func unknownCommandRedis5(name string, args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command `")
	b.WriteString(name)
	b.WriteString("`, with args beginning with: ")
	start := b.Len()
	for _, a := range args {
		n := b.Len() - start
		if n >= 128 {
			break
		}
		b.WriteByte('`')
		b.Write(quoted(a, 128-n))
		b.WriteString("`, ")
	}
	return b.String()
}

// unrecognizedOption is Redis 7.2's reply to CLIENT SETINFO of another
// attribute than LIB-NAME or LIB-VER.
func unrecognizedOption(attr []byte) string {
	return "ERR Unrecognized option '" + string(quoted(attr, -1)) + "'"
}

// badClientAttr is Redis 7.2's reply to CLIENT SETINFO with a value that
// has spaces, newlines or special characters; attr is as the client wrote it.
func badClientAttr(attr []byte) string {
	return "ERR " + string(quoted(attr, -1)) + " cannot contain spaces, newlines or special characters."
}

// helloBadOption is Redis' reply to a HELLO option it does not take.
func helloBadOption(opt []byte) string {
	return "ERR Syntax error in HELLO option '" + string(quoted(opt, -1)) + "'"
}

// unknownClientType is Redis' reply to CLIENT KILL TYPE with another type.
func unknownClientType(typ []byte) string {
	return "ERR Unknown client type '" + string(quoted(typ, -1)) + "'"
}

// noSuchUser is Redis' reply to CLIENT KILL USER with a user it does not
// have.
func noSuchUser(user []byte) string {
	return "ERR No such user '" + string(quoted(user, -1)) + "'"
}

// clientUnblockUsage is Redis' reply to CLIENT UNBLOCK with too many
// arguments.
func clientUnblockUsage(sub []byte) string {
	return "ERR unknown subcommand or wrong number of arguments for '" + string(quoted(sub, 128)) + "'. Try CLIENT HELP."
}

// dbOutOfRange answers SELECT of another database than the pool's.
func dbOutOfRange(db int) string {
	return fmt.Sprintf("ERR DB index is out of range: this pool serves only db %d (redis_db)", db)
}

// notInMulti answers a command the proxy answers itself inside MULTI,
// where the server of the transaction would have to queue it.
func notInMulti(name string) string {
	return "ERR '" + name + "' is not allowed inside MULTI by shardproxy"
}

// fanOutInMulti answers a fan-out command inside MULTI: a transaction runs
// on one server.
func fanOutInMulti(name string) string {
	container, _, _ := strings.Cut(name, "|")
	return notInMulti(container) + ": it goes to every server"
}

// refusal is the reply to a command the proxy does not serve, and why.
func refusal(name, why string) string {
	return "ERR unsupported command '" + name + "' in shardproxy: " + why
}

// unsupportedCommand is refusal for an Unsupported command of the table.
func unsupportedCommand(c *command.Spec) string {
	return refusal(c.Name, reasons[c.Why])
}

// The reasons given for unsupported commands.
const (
	whyAllServers = "it needs every server, and shardproxy routes each request by its key"
	whyAdmin      = "administrative commands must be sent to each Redis server directly"
	whyDB         = "the pool's database is set by redis_db"
)

// reasons words the command table's reasons for refusing a command.
var reasons = [...]string{
	command.WhyAllServers:  whyAllServers,
	command.WhyAdmin:       whyAdmin,
	command.WhyDB:          whyDB,
	command.WhyScriptKill:  whyScriptKill,
	command.WhyScriptDebug: whyScriptDebug,
	command.WhyPerServer:   whyPerServer,
}

// The reasons given for refused subcommands and options.
const (
	whyScriptKill = "a busy server reads nothing more from the connection whose script it runs, " +
		"and that connection is shared; send it to the Redis server directly"
	whyScriptDebug      = "script debugging needs a connection of its own; use redis-cli --ldb against the Redis server directly"
	whyPerServer        = "each server has its own answer; send it to each Redis server directly"
	whyClientReply      = "only CLIENT REPLY ON is supported"
	whyTrackingRedirect = "REDIRECT is not supported: with RESP3 (HELLO 3) invalidations come on the client's own connection"
	// CLUSTER (cluster_local.go).
	whyNoSlots     = "the pool's servers do not keep keys by Redis Cluster slot"
	whyUnixCluster = "the pool listens on a unix socket, which cluster clients cannot connect to"
)

// serverErrorPrefix starts the error reply to a request that server name
// at addr could not answer: "ERR server <name> (<addr>): ", or "ERR server
// <name>: " when the server has no name of its own.
// noReplica is the error for a read of a pool with read_from replica that
// finds no replica of group to go to; prefix is the server's ErrPrefix.
func noReplica(prefix, group string) string {
	return prefix + "group " + group + " has no replica to read from"
}

func serverErrorPrefix(name, addr string) string {
	if name == addr {
		return "ERR server " + name + ": "
	}
	return "ERR server " + name + " (" + addr + "): "
}

// protocolErrorReply is Redis' reply to a malformed request, after which
// the connection closes.
func protocolErrorReply(err error) string { return "ERR " + err.Error() }

// prefixOverlapsExisting and prefixOverlapsProvided are Redis' refusals
// of BCAST prefixes that overlap.
func prefixOverlapsExisting(p, existing []byte) string {
	return "ERR Prefix '" + string(p) + "' overlaps with an existing prefix '" + string(existing) + "'. Prefixes for a single client must not overlap."
}

func prefixOverlapsProvided(p, other []byte) string {
	return "ERR Prefix '" + string(p) + "' overlaps with another provided prefix '" + string(other) + "'. Prefixes for a single client must not overlap."
}

// noClusterReplica is the error for a read of a redis_cluster pool with
// read_from replica whose slot's master, at master, has no replica the
// slot map lists.
func noClusterReplica(master string) string {
	return serverErrorPrefix(master, master) + "the master has no replica to read from"
}

// The replies of the users' commands (acl.go). ACL's subcommands that
// change users are refused with whyACLFile; the others are Redis 7.0's.
const (
	whyACLFile       = "the pool's users come from its acl_file, which shardproxy reloads when it changes"
	msgAuthThrottled = "ERR too many failed AUTH attempts from this address; try again in a few seconds"
	// msgExecAbortBecause starts Redis' reply to an EXEC it refuses,
	// followed by the refusal without its '-'.
	msgExecAbortBecause = "EXECABORT Transaction discarded because of: "
)

// aclSubcommandUsage is Redis' reply to an ACL subcommand (as the client
// wrote it) with arguments it does not take.
func aclSubcommandUsage(sub []byte) string {
	return "ERR unknown subcommand or wrong number of arguments for '" + string(quoted(sub, 128)) + "'. Try ACL HELP."
}

// unknownACLCategory is Redis' reply to ACL CAT with a category it does
// not have.
func unknownACLCategory(name []byte) string {
	return "ERR Unknown category '" + string(name) + "'"
}

// aclNoUser and aclNoCommand are ACL DRYRUN's replies for a user or a
// command that does not exist.
func aclNoUser(name []byte) string    { return "ERR User '" + string(name) + "' not found" }
func aclNoCommand(name []byte) string { return "ERR Command '" + string(name) + "' not found" }
