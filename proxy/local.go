package proxy

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// Version is shardproxy's version, stamped at build time.
var Version = "dev"

// redisVersion is what HELLO and INFO report as redis_version: clients pick
// features by it, and every command shardproxy routes exists in Redis 7.0.
const redisVersion = "7.0.0"

// local answers the commands the proxy handles itself.
func (c *client) local(def *command.Spec, cmd *resp.Command) {
	args := cmd.Args
	switch def.Name {
	case "ping":
		if c.proto == 2 && c.inPubSub() && len(args) <= 2 {
			var arg []byte
			if len(args) == 2 {
				arg = args[1]
			}
			c.reply(subscribedPing(arg))
			return
		}
		switch len(args) {
		case 1:
			c.reply([]byte("+PONG\r\n"))
		case 2:
			c.reply(resp.AppendBulk(nil, args[1]))
		default:
			c.replyError(wrongArity("ping"))
		}
	case "echo":
		c.reply(resp.AppendBulk(nil, args[1]))
	case "quit":
		c.reply([]byte("+OK\r\n"))
		c.quit = true
	case "select":
		c.selectDB(args[1])
	case "auth":
		c.auth(args[1:])
	case "hello":
		c.hello(args[1:])
	case "client":
		c.clientCommand(args[1:])
	case "info":
		c.infoCommand(args[1:])
	case "reset":
		c.tx.reset()
		c.leavePubSub()
		c.trackingOff()
		c.switchProto(2) // RESET goes back to RESP2, as in Redis
		c.name = nil
		c.logOut()
		c.reply([]byte("+RESET\r\n"))
	case "readonly", "readwrite":
		c.reply([]byte("+OK\r\n"))
	case "wait":
		c.wait(cmd)
	default:
		if strings.HasPrefix(def.Name, "cluster|") {
			c.cluster(def.Name, cmd)
		} else if strings.HasPrefix(def.Name, "acl|") {
			c.aclCommand(def, args)
		}
	}
}

// selectDB accepts only the pool's own database: every server connection of
// the pool is on redis_db.
func (c *client) selectDB(arg []byte) {
	n, err := strconv.Atoi(string(arg))
	switch {
	case err != nil:
		c.replyError(msgNotInteger)
	case n != c.pool.cfg.RedisDB:
		c.replyError(dbOutOfRange(c.pool.cfg.RedisDB))
	default:
		c.reply([]byte("+OK\r\n"))
	}
}

// isPoolDB reports whether SELECT arg may be queued in MULTI: it names the
// pool's own database, which the pinned connection already uses, or it is
// not a number, which the server refuses at EXEC as Redis does.
func (c *client) isPoolDB(arg []byte) bool {
	n, err := strconv.Atoi(string(arg))
	return err != nil || n == c.pool.cfg.RedisDB
}

// auth answers AUTH [user] password.
func (c *client) auth(args [][]byte) {
	if len(args) > 2 {
		c.replyError(msgSyntax)
		return
	}
	if msg := c.checkAuth(args); msg != "" {
		c.replyError(msg)
		return
	}
	c.reply([]byte("+OK\r\n"))
}

// hello answers HELLO [2|3 [AUTH user pass] [SETNAME name]] as Redis 7.0
// does: it switches the client to that protocol (no version: keeps its
// own) and answers the server's map in it. HELLO 3 in a pool with a server
// that does not speak RESP3 is refused as Redis 5 refuses it (proto.go).
func (c *client) hello(args [][]byte) {
	all := args
	proto := c.proto
	if len(args) > 0 {
		v, ok := parseRedisInt(args[0])
		if !ok {
			c.replyError(msgProtoNotInteger)
			return
		}
		if v != 2 && v != 3 {
			c.replyError(msgNoProto)
			return
		}
		if v == 3 && !c.poolSpeaksRESP3() {
			c.replyError(unknownCommandRedis5("HELLO", all))
			return
		}
		proto = int(v)
		args = args[1:]
	}
	// Options take effect in order, as in Redis 7.0: a name is set even
	// when a later AUTH fails or the client turns out not authenticated.
	for len(args) > 0 {
		opt := strings.ToLower(string(args[0]))
		switch {
		case opt == "auth" && len(args) >= 3:
			if msg := c.checkAuth(args[1:3]); msg != "" {
				c.replyError(msg)
				return
			}
			args = args[3:]
		case opt == "setname" && len(args) >= 2:
			if !validClientName(args[1]) {
				c.replyError(msgBadClientName)
				return
			}
			c.name = append(c.name[:0], args[1]...)
			args = args[2:]
		default:
			c.replyError(helloBadOption(args[0]))
			return
		}
	}
	if !c.authed {
		c.replyError(msgHelloNoAuth)
		return
	}
	c.switchProto(proto)
	b := c.appendMap(nil, 7)
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "redis")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, redisVersion)
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, int64(c.proto))
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, c.id)
	b = resp.AppendBulkString(b, "mode")
	b = resp.AppendBulkString(b, "standalone")
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	b = resp.AppendArray(b, 0)
	c.reply(b)
}

func validClientName(name []byte) bool {
	for _, ch := range name {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

// clientCommand answers the CLIENT subcommands that client libraries send
// when they connect.
func (c *client) clientCommand(args [][]byte) {
	sub := strings.ToLower(string(args[0]))
	switch sub {
	case "setname":
		if len(args) != 2 {
			c.replyError(wrongArity("client|setname"))
			return
		}
		if !validClientName(args[1]) {
			c.replyError(msgBadClientName)
			return
		}
		c.name = append(c.name[:0], args[1]...)
		c.reply([]byte("+OK\r\n"))
	case "getname":
		if len(args) != 1 {
			c.replyError(wrongArity("client|getname"))
			return
		}
		if len(c.name) == 0 {
			c.reply(c.nullBulk())
		} else {
			c.reply(resp.AppendBulk(nil, c.name))
		}
	case "id":
		if len(args) != 1 {
			c.replyError(wrongArity("client|id"))
			return
		}
		c.reply(resp.AppendInt(nil, c.id))
	case "setinfo":
		if len(args) != 3 {
			c.replyError(wrongArity("client|setinfo"))
			return
		}
		c.clientSetInfo(args[1], args[2])
	case "no-evict", "no-touch":
		if len(args) != 2 {
			c.replyError(wrongArity("client|" + sub))
			return
		}
		// Neither applies to the proxy: it evicts no client and touches no
		// key itself.
		if !bytes.EqualFold(args[1], []byte("on")) && !bytes.EqualFold(args[1], []byte("off")) {
			c.replyError(msgSyntax)
			return
		}
		c.reply([]byte("+OK\r\n"))
	case "info", "list":
		if sub == "info" && len(args) != 1 {
			c.replyError(wrongArity("client|info"))
			return
		}
		user := acl.DefaultUser
		if c.user != nil {
			user = c.user.Name()
		}
		line := fmt.Sprintf("id=%d addr=%s laddr=%s name=%s db=%d user=%s resp=%d lib-name=%s lib-ver=%s\n",
			c.id, c.addr(), c.laddr(), c.name, c.pool.cfg.RedisDB, user, c.proto, c.libName, c.libVer)
		c.reply(c.appendText(nil, line))
	case "reply":
		if len(args) == 2 && bytes.EqualFold(args[1], []byte("on")) {
			c.reply([]byte("+OK\r\n"))
			return
		}
		c.replyError(refusal("client|reply", whyClientReply))
	case "kill":
		if len(args) < 2 {
			c.replyError(wrongArity("client|kill"))
			return
		}
		c.clientKill(args[1:])
	case "unblock":
		c.clientUnblock(args)
	case "tracking":
		if len(args) < 2 {
			c.replyError(wrongArity("client|tracking"))
			return
		}
		c.clientTracking(args[1], args[2:])
	case "caching":
		c.clientCaching(args[1])
	case "getredir":
		c.clientGetRedir()
	case "trackinginfo":
		c.clientTrackingInfo()
	default:
		c.replyError(unknownSubcommandOf("CLIENT", args[0]))
	}
}

// clientSetInfo answers CLIENT SETINFO LIB-NAME|LIB-VER value as Redis 7.2
// does: the value has no spaces or special characters, and an empty one
// clears it. CLIENT INFO and LIST show them.
func (c *client) clientSetInfo(attr, value []byte) {
	var dst *[]byte
	switch {
	case bytes.EqualFold(attr, []byte("lib-name")):
		dst = &c.libName
	case bytes.EqualFold(attr, []byte("lib-ver")):
		dst = &c.libVer
	default:
		c.replyError(unrecognizedOption(attr))
		return
	}
	if !validClientName(value) {
		c.replyError(badClientAttr(attr))
		return
	}
	*dst = append((*dst)[:0], value...)
	c.reply([]byte("+OK\r\n"))
}

// addr and laddr are the client's address and the proxy's end of its
// connection, as CLIENT LIST shows them and CLIENT KILL matches them.
func (c *client) addr() string  { return addrString(c.conn.RemoteAddr()) }
func (c *client) laddr() string { return addrString(c.conn.LocalAddr()) }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// clientKill answers CLIENT KILL over the proxy's own clients of this
// pool, as Redis does over its own: the old form CLIENT KILL addr answers
// +OK or "No such client", the new form of filters (ID, ADDR, LADDR, TYPE,
// USER, SKIPME) answers how many it killed. A client may kill itself; it
// gets the reply first. A client that has not authenticated is the default
// user's, as in Redis.
func (c *client) clientKill(args [][]byte) {
	var (
		id                int64  // 0: any
		addr, laddr       string // with hasAddr, hasLaddr
		hasAddr, hasLaddr bool
		user              string // with hasUser
		hasUser           bool
		noneOfType        bool // TYPE of a kind the proxy has no clients of
		typed, pubsub     bool // TYPE normal or pubsub, and which
		skipMe            = true
	)
	oldForm := len(args) == 1
	if oldForm {
		addr, hasAddr, skipMe = string(args[0]), true, false
	}
	for i := 0; !oldForm && i < len(args); i += 2 {
		if i+1 == len(args) {
			c.replyError(msgSyntax)
			return
		}
		value := args[i+1]
		switch strings.ToLower(string(args[i])) {
		case "id":
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 1 {
				c.replyError(msgBadClientID)
				return
			}
			id = n
		case "type":
			switch strings.ToLower(string(value)) {
			case "normal":
				typed, pubsub = true, false
			case "pubsub":
				typed, pubsub = true, true
			case "master", "slave", "replica":
				noneOfType = true
			default:
				c.replyError(unknownClientType(value))
				return
			}
		case "addr":
			addr, hasAddr = string(value), true
		case "laddr":
			laddr, hasLaddr = string(value), true
		case "user":
			if c.pool.users.Lookup(value) == nil {
				c.replyError(noSuchUser(value))
				return
			}
			user, hasUser = string(value), true
		case "skipme":
			switch strings.ToLower(string(value)) {
			case "yes":
				skipMe = true
			case "no":
				skipMe = false
			default:
				c.replyError(msgSyntax)
				return
			}
		default:
			c.replyError(msgSyntax)
			return
		}
	}
	killed := 0
	if !noneOfType {
		s := c.srv
		s.mu.Lock()
		for other := range s.clients {
			switch {
			case other.l != c.l,
				id != 0 && other.id != id,
				hasAddr && other.addr() != addr,
				hasLaddr && other.laddr() != laddr,
				hasUser && other.userName() != user,
				other == c && skipMe,
				typed && other.inPubSub() != pubsub,
				other.killed.Load(): // gone for Redis, though its goroutine may not have ended yet
				continue
			}
			if other == c {
				c.quit = true // closes once the reply is written
			} else {
				other.kill()
			}
			killed++
		}
		s.mu.Unlock()
	}
	switch {
	case !oldForm:
		c.reply(resp.AppendInt(nil, int64(killed)))
	case killed == 0:
		c.replyError(msgNoSuchClient)
	default:
		c.reply([]byte("+OK\r\n"))
	}
}

// kill closes the client's connection for CLIENT KILL. Its goroutine
// ends at its next read or write: a batch in flight still gets its
// replies or errors from the servers, and nothing waits on the client.
func (c *client) kill() {
	c.killed.Store(true)
	c.stopping.Store(true)
	c.unpark()
	closeNow(c.conn) // a TLS client gets no close_notify, which could wait on a full socket
}

// clientUnblock answers CLIENT UNBLOCK id [TIMEOUT|ERROR]. A blocked
// client of the proxy is blocked on its server, not in the proxy, so the
// answer is 0, as Redis gives for a client that is not blocked.
func (c *client) clientUnblock(args [][]byte) {
	switch len(args) {
	case 1:
		c.replyError(wrongArity("client|unblock"))
		return
	case 2, 3:
	default:
		c.replyError(clientUnblockUsage(args[0]))
		return
	}
	if len(args) == 3 && !bytes.EqualFold(args[2], []byte("timeout")) && !bytes.EqualFold(args[2], []byte("error")) {
		c.replyError(msgUnblockReason)
		return
	}
	if _, err := strconv.ParseInt(string(args[1]), 10, 64); err != nil {
		c.replyError(msgNotInteger)
		return
	}
	c.reply([]byte(":0\r\n"))
}

// hasClient reports whether a client with this CLIENT ID is connected.
func (s *Server) hasClient(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if c.id == id {
			return true
		}
	}
	return false
}

// infoSection is one section of INFO: its name as INFO takes it, and what
// writes its fields.
type infoSection struct {
	name  string
	write func(c *client, b *strings.Builder)
}

// infoSections are the sections INFO shows, in Redis' order. All of them
// are among Redis' default sections, so INFO, INFO default, INFO all and
// INFO everything show the same.
var infoSections = []infoSection{
	{"server", (*client).infoServer},
	{"clients", (*client).infoClients},
	{"memory", (*client).infoMemory},
	{"persistence", (*client).infoPersistence},
	{"replication", (*client).infoReplication},
	{"keyspace", (*client).infoKeyspace},
}

// info answers INFO [section ...] as Redis 7 does: section names in any
// case, with "all", "default" and "everything" for all of them; sections
// come in Redis' order whatever the order asked, and names of sections the
// proxy does not have add nothing, so asking only for those gives an empty
// reply.
func (c *client) info(args [][]byte) string {
	every := len(args) == 0
	for _, a := range args {
		switch strings.ToLower(string(a)) {
		case "all", "default", "everything":
			every = true
		}
	}
	var b strings.Builder
	for _, s := range infoSections {
		if !every && !hasSection(args, s.name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		s.write(c, &b)
	}
	return b.String()
}

func hasSection(args [][]byte, name string) bool {
	for _, a := range args {
		if bytes.EqualFold(a, []byte(name)) {
			return true
		}
	}
	return false
}

func (c *client) infoServer(b *strings.Builder) {
	host, _ := os.Hostname()
	uptime := int64(time.Since(c.srv.started).Seconds())
	fmt.Fprintf(b, "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\nshardproxy_version:%s\r\n", redisVersion, Version)
	fmt.Fprintf(b, "os:%s %s\r\narch_bits:64\r\nprocess_id:%d\r\nhostname:%s\r\n", runtime.GOOS, runtime.GOARCH, os.Getpid(), host)
	fmt.Fprintf(b, "uptime_in_seconds:%d\r\nuptime_in_days:%d\r\n", uptime, uptime/(24*3600))
}

func (c *client) infoClients(b *strings.Builder) {
	fmt.Fprintf(b, "# Clients\r\nconnected_clients:%d\r\n", c.pool.stats.ClientConnections.Load())
}

// infoMemory reports the proxy's own memory: used_memory is what the Go
// runtime holds from the operating system (heap, stacks, buffers, its own
// structures) less what it has returned, which is what a memory limit
// (GOMEMLIMIT) bounds; maxmemory is that limit, 0 when there is none.
func (c *client) infoMemory(b *strings.Builder) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(samples)
	used := samples[0].Value.Uint64() - samples[1].Value.Uint64()
	var limit uint64
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		limit = uint64(l)
	}
	fmt.Fprintf(b, "# Memory\r\nused_memory:%d\r\nused_memory_human:%s\r\n", used, humanBytes(used))
	fmt.Fprintf(b, "maxmemory:%d\r\nmaxmemory_human:%s\r\n", limit, humanBytes(limit))
}

func (c *client) infoPersistence(b *strings.Builder) {
	b.WriteString("# Persistence\r\nloading:0\r\n")
}

func (c *client) infoReplication(b *strings.Builder) {
	b.WriteString("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n")
}

// infoKeyspace writes the Keyspace header; the pool's line under it comes
// from the servers (infoCommand, mergeKeyspace).
func (c *client) infoKeyspace(b *strings.Builder) {
	b.WriteString(keyspaceHeader)
}

// keyspaceHeader starts INFO's Keyspace section, the last of infoSections.
const keyspaceHeader = "# Keyspace\r\n"

// infoKeyspaceRequest asks a server for its keyspace section.
var infoKeyspaceRequest = resp.AppendCommand(nil, []byte("INFO"), []byte("keyspace"))

// infoCommand answers INFO. When the Keyspace section is asked for, the
// pool's keyspace is that of its live servers together, as for DBSIZE:
// INFO keyspace goes to every server of the ring as a fragment, and the
// reply is the proxy's own sections followed by the servers' lines for
// redis_db summed (mergeKeyspace). An ejected server owns no keys and is
// left out. A server that fails makes the reply its error, as every
// fan-out command's, when the section is asked for by name; INFO, INFO
// default, all and everything leave it out and answer, because client
// libraries send them as they connect (ioredis' ready check, on by
// default) and give up the connection when INFO is an error.
func (c *client) infoCommand(args [][]byte) {
	text := c.info(args)
	if !strings.HasSuffix(text, keyspaceHeader) {
		c.reply(c.appendText(nil, text))
		return
	}
	f := c.newFragment(command.MergeArray)
	for i := range c.layout.servers {
		if c.layout.Live(i) {
			f.subSrv = append(f.subSrv, i)
		}
	}
	strict := hasSection(args, "keyspace")
	if len(f.subSrv) == 0 {
		c.nfrags--
		if strict {
			c.replyError(msgNoServer)
		} else {
			c.reply(c.appendText(nil, text))
		}
		return
	}
	f.keyspace, f.strict, f.verbatim = true, strict, c.proto == backend.RESP3
	f.info, f.db = append(f.info[:0], text...), c.pool.cfg.RedisDB
	c.pool.stats.Fragments.Add(int64(len(f.subSrv)))
	for _, i := range f.subSrv {
		st := c.stageFor(c.layout.servers[i])
		start := len(st.buf)
		st.buf = append(st.buf, infoKeyspaceRequest...)
		f.subs = append(f.subs, c.staged(st, start))
	}
	c.calls = append(c.calls, call{frag: f})
}

// keyspaceLine is one database's line of INFO keyspace,
// db<n>:keys=<keys>,expires=<expires>,avg_ttl=<ms>.
type keyspaceLine struct {
	keys, expires, avgTTL int64
}

// mergeKeyspace is INFO with a Keyspace section: the proxy's sections in
// f.info, then the pool's database line, the servers' lines for db f.db
// added up. keys and expires are summed; avg_ttl, each server's estimate
// of the mean time to live of its keys with one, is their mean weighted
// by each server's expires, in whole milliseconds rounded down (0 when no
// key expires). Like Redis, it shows no line when the pool has no key. A
// server's error, or a reply that is not its keyspace, is the reply when
// f.strict; otherwise that server is left out.
func (f *fragment) mergeKeyspace(out []byte) []byte {
	var sum keyspaceLine
	var weighted float64
	for _, s := range f.subs {
		l, ok := parseKeyspace(s.buf, f.db)
		switch {
		case ok:
		case !f.strict:
			continue
		case resp.IsError(s.buf):
			return append(out, s.buf...)
		default:
			return resp.AppendError(out, msgFanOutBadReply)
		}
		sum.keys += l.keys
		sum.expires += l.expires
		weighted += float64(l.avgTTL) * float64(l.expires)
	}
	text := f.info
	if sum.keys > 0 || sum.expires > 0 {
		if sum.expires > 0 {
			sum.avgTTL = int64(weighted / float64(sum.expires))
		}
		text = fmt.Appendf(text, "db%d:keys=%d,expires=%d,avg_ttl=%d\r\n", f.db, sum.keys, sum.expires, sum.avgTTL)
	}
	if f.verbatim {
		return resp.AppendVerbatim(out, "txt", string(text))
	}
	return resp.AppendBulk(out, text)
}

// parseKeyspace reads db's line from a server's reply to INFO keyspace, a
// bulk string (or RESP3's verbatim string); a database the server does not
// list has no keys. ok is false when the reply is not one of those or the
// line is malformed.
func parseKeyspace(reply []byte, db int) (l keyspaceLine, ok bool) {
	line, n := resp.ReadLine(reply, 0)
	if n < 0 || len(line) == 0 || line[0] != '$' && line[0] != '=' {
		return l, false
	}
	size, ok := resp.ParseLength(line[1:])
	if !ok || size < 0 || n+size > len(reply) {
		return l, false
	}
	body := reply[n : n+size]
	if line[0] == '=' {
		body, ok = bytes.CutPrefix(body, []byte("txt:"))
		if !ok {
			return l, false
		}
	}
	prefix := "db" + strconv.Itoa(db) + ":"
	for len(body) > 0 {
		var field []byte
		field, body, _ = bytes.Cut(body, []byte("\r\n"))
		rest, found := bytes.CutPrefix(field, []byte(prefix))
		if !found {
			continue
		}
		for _, kv := range bytes.Split(rest, []byte(",")) {
			k, v, _ := bytes.Cut(kv, []byte("="))
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return l, false
			}
			switch string(k) {
			case "keys":
				l.keys = n
			case "expires":
				l.expires = n
			case "avg_ttl":
				l.avgTTL = n
			}
		}
		return l, true
	}
	return l, true
}

// humanBytes writes a size as Redis' *_human INFO fields do: bytes below
// 1 KiB, then K, M, G, T or P with two decimals.
func humanBytes(n uint64) string {
	const units = "KMGTP"
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "B"
	}
	for i := range len(units) {
		if n < 1<<(10*(i+2)) {
			return strconv.FormatFloat(float64(n)/float64(uint64(1)<<(10*(i+1))), 'f', 2, 64) + units[i:i+1]
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}
