package config

// This file reads nutcracker.yml. It accepts what nutcracker 0.5.0's
// src/nc_conf.c accepts and rejects what it rejects, so that a user's file
// works unchanged, with the exceptions listed under "Differences" below.
//
// nutcracker reads the file with libyaml and then allows only a small part of
// YAML: one document without "---" or "..." markers, block mappings and block
// sequences of scalars, no flow collections, anchors, aliases or tags. The
// top level maps pool names to pools; a pool maps directive names to scalar
// values; exactly one directive of a pool holds a block sequence (normally
// servers). We parse with go.yaml.in/yaml/v3, a Go port of libyaml's scanner
// and parser, so quoting, escapes, comments, tabs and line folding behave as
// in libyaml, and then walk the yaml.Node tree to reject what nutcracker
// rejects. yaml.Node does not record document markers or the non-specific
// tag "!", so those two are found in the text.
//
// Shardproxy-only keys (nutcracker rejects them as unknown directives):
//
//	redis_auth_file: PATH  the Redis password is the content of the file at
//	                       PATH, read when the config is loaded, trailing
//	                       "\r" and "\n" removed. A relative PATH is relative
//	                       to the config file's directory (ParseFile) or to
//	                       the working directory (Parse).
//	redis_auth_env: NAME   the Redis password is the value of the
//	                       environment variable NAME when the config is loaded.
//	kubernetes_service: S  find the pool's servers through the EndpointSlices
//	                       of the headless Service S (see Pool).
//	kubernetes_namespace: N  S's namespace, when not shardproxy's own.
//	kubernetes_port: P     with kubernetes_service and no servers list, every
//	kubernetes_weight: W   pod of S is a server on port P (6379) with weight
//	                       W (1), named by its pod name.
//	client_output_buffer_limit: HARD SOFT SECONDS
//	                       Redis' client-output-buffer-limit for a client's
//	                       unwritten replies, without the class: sizes in
//	                       bytes or with Redis' units (k, kb, m, mb, g, gb),
//	                       0 for none (see OutputBufferLimit).
//	client_output_buffer_limit_pubsub: HARD SOFT SECONDS
//	                       the same for a subscribed client's messages not
//	                       yet written; Redis' pubsub class, "32mb 8mb 60"
//	                       when absent.
//	blocking_connections: N  at most N clients blocked on one server at a
//	                       time (BLPOP, XREAD BLOCK, ...), each on a server
//	                       connection of its own; 64 when absent.
//	sentinels, sentinel_service, sentinel_port, sentinel_masters,
//	sentinel_username, sentinel_auth, sentinel_auth_file,
//	sentinel_auth_env, failover_hold
//	                       servers that are groups watched by Redis
//	                       Sentinel (sentinel.go).
//	redis_cluster: true    servers that are the seed nodes of a Redis
//	                       Cluster (cluster.go).
//	tls_cert_file, tls_key_file, tls_client_ca_file, server_tls_ca_file,
//	server_tls_cert_file, server_tls_key_file, server_tls_server_name
//	                       TLS to the clients and to the servers (tls.go).
//	acl_file, server_auth_user, server_auth_password,
//	server_auth_password_file, server_auth_password_env
//	                       the pool's users, and who the proxy is on its
//	                       servers (acl.go).
//
// A pool gives at most one of redis_auth, redis_auth_file and redis_auth_env;
// like redis_auth, each needs redis: true, and the password must not be empty.
//
// Differences from nutcracker 0.5.0 (all but listen resolution and the size
// bound have a case in testdata/config, listed in config_test.go):
//   - A pool must say redis: true. nutcracker's default is memcached, which
//     shardproxy does not speak.
//   - redis_auth_file, redis_auth_env, client_output_buffer_limit and
//     client_output_buffer_limit_pubsub (above) are ours.
//   - hash: farm is ours (hashring's extra hash).
//   - A number above 2147483647 is refused. nutcracker's nc_atoi wraps it
//     around, so "timeout: 4294967296" is read as 0 and
//     "listen: localhost:4294989417" as port 22121.
//   - A server line ending in a space ("127.0.0.1:6379:1 " in quotes) is
//     refused: nutcracker gives that server an empty name, which hashring
//     cannot express (an empty name means "no name").
//   - A server with an empty host (":6379:1") is refused: nutcracker can never
//     resolve it, while Go would dial the local host.
//   - A value holding a NUL byte (only possible through a "\0" escape) is
//     refused: nutcracker compares names with strncmp, which stops at NUL.
//   - Two pools with the same listen address ("127.0.0.1:22121" and
//     "127.0.0.1:022121", or the same socket path with other permissions) are
//     refused. nutcracker -t compares the strings only; nutcracker then fails
//     to bind the second TCP pool, or silently unlinks the first pool's socket.
//   - Listen hosts are not resolved, only checked for syntax: nutcracker -t
//     fails on a host that does not resolve, shardproxy fails when it binds.
//   - The file must be UTF-8 (libyaml also reads UTF-16) and at most
//     maxConfigSize bytes; the total weight of a pool must fit in 32 bits.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/internal/boundedfile"
)

// Config is a parsed nutcracker.yml.
type Config struct {
	// Pools are in nutcracker's pool order: by name, a shorter name first,
	// then bytewise (nutcracker sorts pools by name with string_compare).
	// This is the order of the pools in nutcracker's stats.
	Pools []Pool
}

// Pool is one pool: a listen address and the servers behind it. The
// YAML key of each field is nutcracker's directive name. Unless noted, a
// field holds the directive's value, or nutcracker's default when the
// directive is absent.
type Pool struct {
	// Name is the pool's key in the file.
	Name string
	// Listen is the listen directive as written: "host:port" (IPv6
	// without brackets, "::1:22121") or "/path/to.sock [octal permissions]".
	Listen string
	// ListenNetwork is "tcp" or "unix".
	ListenNetwork string
	// ListenAddr is the address for net.Listen: "host:port" with an IPv6
	// host bracketed and the port in canonical decimal, or the socket path.
	// Hosts are not resolved; numeric IPv4 forms that getaddrinfo accepts
	// ("127.1", "0x7f000001") are rewritten as dotted quads.
	ListenAddr string
	// ListenPerm is the unix socket's permissions; 0 leaves them as created.
	ListenPerm os.FileMode
	// Hash is the key hash; "fnv1a_64" when absent.
	Hash string
	// HashTag is "" (no tag) or exactly two bytes, the opening and the
	// closing character.
	HashTag string
	// Distribution is "ketama" (when absent), "modula" or "random".
	Distribution string
	// Timeout is the server timeout; 0 means none (absent, or 0 as in
	// nutcracker, whose default -1 cannot be written in the file).
	Timeout time.Duration
	// Backlog is the listen backlog; 512 when absent.
	Backlog int
	// ClientConnections caps the pool's client connections; 0 means no cap.
	// nutcracker parses it and ignores it; shardproxy enforces it.
	ClientConnections int
	// Redis is always true in a parsed Config: shardproxy refuses memcached
	// pools.
	Redis bool
	// RedisAuth is the password clients must AUTH with and that shardproxy
	// sends to the servers, "" for none. It comes from redis_auth,
	// redis_auth_file or redis_auth_env.
	RedisAuth string
	// ACLFile (acl_file, ours) is the path of the pool's ACL file, "" for
	// none; Users are its users as of the load (acl.go), nil without one.
	ACLFile string
	Users   *acl.Users
	// ServerAuthUser and ServerAuthPassword (server_auth_*, ours) are
	// what the proxy's server connections authenticate with, "" when
	// absent (see ServerAuth).
	ServerAuthUser, ServerAuthPassword string
	// RedisDB is the database selected on every server connection; 0 when
	// absent (no SELECT is sent).
	RedisDB int
	// Preconnect connects to every server at start.
	Preconnect bool
	// ServerConnections is the number of connections per server, >= 1;
	// 1 when absent.
	ServerConnections int
	// BlockingConnections (blocking_connections, ours) bounds the clients
	// blocked on one server at a time (BLPOP, XREAD BLOCK, ...), each on a
	// server connection of its own; 0 when absent, which means
	// DefaultBlockingConnections (see BlockingLimit).
	BlockingConnections int
	// AutoEjectHosts takes failing servers out of the ring.
	AutoEjectHosts bool
	// ServerRetryTimeout is how long an ejected server stays out; 30s when
	// absent, 0 means it is retried at once.
	ServerRetryTimeout time.Duration
	// ServerFailureLimit is the number of consecutive failures that eject a
	// server; 2 when absent. nutcracker treats 0 like 1.
	ServerFailureLimit int
	// TCPKeepalive sets SO_KEEPALIVE on accepted client connections (not on
	// server connections, as in nutcracker).
	TCPKeepalive bool
	// KubernetesService (kubernetes_service, ours) names the headless
	// Service whose EndpointSlices say where the pool's servers are: a
	// server whose host is a name rather than an IP address is the pod
	// named by the host's first label ("redis-0" or "redis-0.redis.ns.svc"),
	// dialled at that pod's current address on the configured port. ""
	// means every server is dialled at its configured address.
	KubernetesService string
	// KubernetesNamespace (kubernetes_namespace, ours) is the Service's
	// namespace; "" means shardproxy's own (--kubernetes-namespace, or the
	// pod's namespace in a cluster).
	KubernetesNamespace string
	// KubernetesMembers is true for a pool with kubernetes_service and no
	// servers list: every pod of the Service is a server, named by its pod
	// name (so ordinal order: "redis-2" sorts before "redis-10"), with
	// KubernetesWeight, dialled on KubernetesPort.
	KubernetesMembers bool
	// KubernetesPort (kubernetes_port, ours) is the members' port; 0 means
	// 6379.
	KubernetesPort int
	// KubernetesWeight (kubernetes_weight, ours) is each member's weight; 0
	// means 1.
	KubernetesWeight int
	// ClientOutputBufferLimit (client_output_buffer_limit, ours) bounds the
	// replies a client of the pool may leave unread; "64mb 16mb 60" when
	// absent (defaultClientOutputBufferLimit).
	ClientOutputBufferLimit OutputBufferLimit
	// ClientOutputBufferLimitPubSub (client_output_buffer_limit_pubsub,
	// ours) bounds the messages a subscribed client may leave unread; nil
	// when absent, which means DefaultPubSubOutputBufferLimit (see
	// PubSubLimit).
	ClientOutputBufferLimitPubSub *OutputBufferLimit
	// Sentinels (sentinels, ours) are the "host:port" of the Redis
	// Sentinels that watch the pool's servers, each a group of a master
	// and its replicas (sentinel.go); nil for a pool of plain servers.
	Sentinels []string
	// SentinelService (sentinel_service, ours) names the Kubernetes
	// Service, in KubernetesNamespace's namespace, whose ready endpoints
	// are the Sentinels; "" when Sentinels lists them. A pool has one or
	// the other (see HasSentinels). With either, KubernetesService names
	// the groups' pods' headless Service, whose endpoints the addresses
	// Sentinel reports are matched to.
	SentinelService string
	// SentinelPort (sentinel_port, ours) is the Sentinels' port for a
	// SentinelService whose EndpointSlices have neither a port named
	// "sentinel" nor a single port; 0 when absent, which means 26379.
	SentinelPort int
	// SentinelMasters (sentinel_masters, ours) maps a server name to its
	// Sentinel master name where they differ; nil when they never do (see
	// SentinelMaster).
	SentinelMasters map[string]string
	// SentinelUsername and SentinelAuth (sentinel_username, and
	// sentinel_auth, sentinel_auth_file or sentinel_auth_env, ours) are
	// what the Sentinels are authenticated with; "" for none.
	SentinelUsername, SentinelAuth string
	// FailoverHold (failover_hold, ours) is how long a request refused by
	// a group's old master waits for the new one; 0 when absent, which
	// means DefaultFailoverHold (see Hold).
	FailoverHold time.Duration
	// GroupMembers (group_members, ours) are the members of each group of
	// a pool whose groups have no Sentinel, by server name: the server's
	// own address (or pod) first, then those its line lists. shardproxy
	// asks ROLE of every member to find the master (rolegroups.go). nil
	// for a pool without them (see HasRoleGroups).
	GroupMembers map[string][]GroupMember
	// ReadFrom (read_from, ours) is where the groups' read-only commands
	// go; "" when absent, which means ReadFromMaster (readfrom.go).
	ReadFrom ReadFrom
	// ReplicaMaxLag (replica_max_lag, ours) is how many bytes of
	// replication offset a replica may be behind its master and still
	// take reads; 0 for no bound.
	ReplicaMaxLag int64
	// RedisCluster (redis_cluster, ours) is true when the servers are the
	// seed nodes of a Redis Cluster, which says which node serves each of
	// its 16384 slots; keys go to the node that serves their CRC16 slot,
	// not by Hash, HashTag and Distribution, which such a pool leaves at
	// their defaults (cluster.go). false, when absent: a nutcracker pool.
	RedisCluster bool
	// TLSCertFile and TLSKeyFile (tls_cert_file, tls_key_file, ours) are
	// the certificate and key the pool's listener serves TLS with, made
	// absolute; "" for a plain listener. TLSClientCAFile
	// (tls_client_ca_file, ours) holds the CAs that must have signed the
	// certificates clients show; "" when none is asked for (tls.go).
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// ServerTLSCAFile (server_tls_ca_file, ours) holds the CAs the servers'
	// certificates are verified with; "" for plain connections to the
	// servers. ServerTLSCertFile and ServerTLSKeyFile (ours) are the
	// certificate the proxy shows them, "" for none; ServerTLSServerName
	// is server_tls_server_name as written, "" when absent (see
	// ServerName).
	ServerTLSCAFile, ServerTLSCertFile, ServerTLSKeyFile, ServerTLSServerName string
	// ClientTimeout (client_timeout, ours, msec) closes a client connection
	// that has sent nothing for that long; 0, the default, never does.
	// Subscribed clients and clients waiting on a blocking command are not
	// idle, as in Redis' timeout.
	ClientTimeout time.Duration
	// Servers are in nutcracker's server order (hashring.SortNodes): by ring
	// name, shorter first, then bytewise. A server's index in this slice is
	// its index in the ring.
	Servers []Server
}

// OutputBufferLimit is Redis' client-output-buffer-limit for one client's
// replies that the proxy holds and has not yet written: a client whose
// unwritten replies reach Hard bytes is closed at once, and one whose
// unwritten replies stay at Soft bytes or more for SoftTime is closed then
// (a SoftTime of 0 closes it as soon as they reach Soft and the socket does
// not take them at once). A limit of 0 bytes is off; the zero value sets
// no limit, as Redis' "normal 0 0 0".
type OutputBufferLimit struct {
	Hard     int64
	Soft     int64
	SoftTime time.Duration
}

// defaultClientOutputBufferLimit ("64mb 16mb 60") keeps one client from
// making a proxy in a 256 MiB container (deploy/) hold more than a quarter
// of it: the Go heap may grow to twice what is live before it is collected.
// A client's batches hold about 4 MB of replies (proxy/output.go), so one
// that reads them is closed only for a value of 64 MB or more, a first
// batch of 16 values of 4 MB, or a value of 16 MB or more left unread for a
// minute.
var defaultClientOutputBufferLimit = OutputBufferLimit{Hard: 64 << 20, Soft: 16 << 20, SoftTime: 60 * time.Second}

// DefaultPubSubOutputBufferLimit is client_output_buffer_limit_pubsub when
// absent: Redis' default for its pubsub class, "32mb 8mb 60".
var DefaultPubSubOutputBufferLimit = OutputBufferLimit{Hard: 32 << 20, Soft: 8 << 20, SoftTime: 60 * time.Second}

// PubSubLimit is the output buffer limit of the pool's subscribed clients.
func (p *Pool) PubSubLimit() OutputBufferLimit {
	if p.ClientOutputBufferLimitPubSub == nil {
		return DefaultPubSubOutputBufferLimit
	}
	return *p.ClientOutputBufferLimitPubSub
}

// Server is one line of a pool's servers list:
// "host:port:weight [name]" or "/path/to.sock:weight [name]".
type Server struct {
	// Name is the ring name (hashring.Node.RingName): the explicit name, or
	// else Addr, or the host alone for port 11211, or the path and ":" for a
	// unix socket. It is the key of the server in the stats.
	Name string
	// Addr is the address as written: "host:port" or "/path/to.sock".
	Addr string
	// Network is "tcp" or "unix".
	Network string
	// DialAddr is the address for net.Dial: "host:port" with an IPv6 host
	// bracketed and the port in canonical decimal, or the socket path. The
	// host is not resolved.
	DialAddr string
	// Weight is the server's weight, >= 1.
	Weight int
	// ExplicitName is true when the line names the server.
	ExplicitName bool
	// Port is the TCP port; 0 for a unix socket.
	Port int
	// Pod is the Kubernetes pod the server is, in a pool with
	// kubernetes_service: the first label of a host that is not an IP
	// address. "" otherwise.
	Pod string
}

// Node returns the server as hashring sees it.
func (s Server) Node() hashring.Node {
	n := hashring.Node{Addr: s.Addr, Weight: s.Weight}
	if s.ExplicitName {
		n.Name = s.Name
	}
	return n
}

// Limits of what the parser reads.
const (
	// maxConfigSize bounds the config file. A pool of 10,000 servers takes
	// well under 1 MiB.
	maxConfigSize = 4 << 20
	// maxAuthFileSize bounds a redis_auth_file.
	maxAuthFileSize = 64 << 10
	// maxNumber is the largest number a directive takes: nutcracker reads
	// numbers into a C int.
	maxNumber = 1<<31 - 1
	// maxUnixPath is the longest unix socket path: sun_path holds 108
	// bytes with the terminating NUL (nutcracker's NC_UNIX_ADDRSTRLEN).
	maxUnixPath = 107
)

// DefaultBlockingConnections is blocking_connections when absent. Each
// blocked client holds a server connection and a file descriptor of its
// own, and Redis' maxclients (10000 by default) is shared with every other
// client of the server.
const DefaultBlockingConnections = 64

// BlockingLimit is how many clients may be blocked on one of the pool's
// servers at a time.
func (p *Pool) BlockingLimit() int {
	if p.BlockingConnections == 0 {
		return DefaultBlockingConnections
	}
	return p.BlockingConnections
}

// Defaults of nutcracker 0.5.0 (src/nc_conf.h CONF_DEFAULT_*).
const (
	defaultHash               = "fnv1a_64"
	defaultDistribution       = "ketama"
	defaultBacklog            = 512
	defaultServerConnections  = 1
	defaultServerRetryTimeout = 30 * time.Second
	defaultServerFailureLimit = 2
)

// ReadFile reads the config file at path, as start-up and every reload do:
// a regular file (or a symlink to one, as in a Kubernetes ConfigMap volume)
// of at most 4 MiB (maxConfigSize). A FIFO or a device is refused, not
// read: it could block or never end. Errors name the path.
func ReadFile(path string) ([]byte, error) {
	return boundedfile.Read(path, maxConfigSize)
}

// ParseFile parses data read from path (by ReadFile): relative paths in it
// are relative to path's directory and errors name path.
func ParseFile(path string, data []byte) (*Config, error) {
	cfg, err := parseConfig(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse parses the contents of a nutcracker.yml. A relative
// redis_auth_file is read from the working directory.
func Parse(data []byte) (*Config, error) {
	return parseConfig(data, "")
}

func parseConfig(data []byte, dir string) (*Config, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("config is larger than %d bytes", maxConfigSize)
	}
	if bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		return nil, errors.New("the file is UTF-16; save it as UTF-8")
	}
	data = blankLineBOMs(data)
	src := newSource(data)
	if line, marker := src.documentMarker(); line > 0 {
		return nil, fmt.Errorf("line %d: document marker %q: nutcracker reads one document without markers", line, marker)
	}
	// The decoder reads the first document; a second Decode must find the
	// end of the stream. Without markers there can be no second document,
	// but libyaml (and the decoder) reject what follows a document that
	// ended at a dedent, and yaml.Unmarshal would not look.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("no pools: the file is empty")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("line %d: a second document", extra.Line)
		}
		return nil, err
	}
	if err := src.checkNodes(&doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the top level must map pool names to their settings", root.Line)
	}
	if err := checkStructure(root); err != nil {
		return nil, err
	}

	// Directives, in file order, as nutcracker's conf_parse applies them.
	builders := make([]*poolBuilder, 0, len(root.Content)/2)
	for i := 0; i < len(root.Content); i += 2 {
		b := newPoolBuilder(root.Content[i])
		settings := root.Content[i+1].Content
		b.expectCluster(settings)
		for j := 0; j < len(settings); j += 2 {
			if err := b.apply(settings[j], settings[j+1]); err != nil {
				return nil, err
			}
		}
		builders = append(builders, b)
	}

	// Pool checks, then checks across pools, as in conf_post_validate.
	cfg := &Config{Pools: make([]Pool, 0, len(builders))}
	for _, b := range builders {
		pc, err := b.finish(dir)
		if err != nil {
			return nil, err
		}
		cfg.Pools = append(cfg.Pools, pc)
	}
	if err := checkPools(cfg.Pools, builders); err != nil {
		return nil, err
	}
	sortPools(cfg.Pools)
	return cfg, nil
}

// source is the config text, kept to find what yaml.Node does not record.
type source struct {
	data  []byte
	lines []int // byte offset of each line's start; lines[0] is line 1
}

// Line breaks as libyaml (and yaml.v3) count them: CR LF, CR, LF, and the
// Unicode NEL, LS and PS.
func newSource(data []byte) *source {
	s := &source{data: data, lines: []int{0}}
	if bytes.HasPrefix(data, utf8BOM) {
		s.lines[0] = len(utf8BOM)
	}
	for i := s.lines[0]; i < len(data); {
		n := breakLen(data[i:])
		if n == 0 {
			_, size := utf8.DecodeRune(data[i:])
			i += size
			continue
		}
		i += n
		s.lines = append(s.lines, i)
	}
	return s
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// blankLineBOMs replaces each byte order mark that starts a line, other than
// the file's first, by a space. Between tokens libyaml skips such a BOM and
// counts it as one column (scan_to_next_token), which a space reproduces;
// yaml.v3 mishandles it. Only inside a quoted scalar that spans lines does
// the BOM differ from a space: libyaml keeps it in the value.
func blankLineBOMs(data []byte) []byte {
	if len(data) <= len(utf8BOM) || !bytes.Contains(data[1:], utf8BOM) {
		return data
	}
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); {
		lineStart := endsWithBreak(data[:i]) || i == len(utf8BOM) && bytes.HasPrefix(data, utf8BOM)
		if lineStart && bytes.HasPrefix(data[i:], utf8BOM) {
			out = append(out, ' ')
			i += len(utf8BOM)
			continue
		}
		out = append(out, data[i])
		i++
	}
	return out
}

// endsWithBreak reports whether b ends with a line break.
func endsWithBreak(b []byte) bool {
	n := len(b)
	return n > 0 && (b[n-1] == '\n' || b[n-1] == '\r') ||
		bytes.HasSuffix(b, []byte("\u0085")) || bytes.HasSuffix(b, []byte("\u2028")) || bytes.HasSuffix(b, []byte("\u2029"))
}

// breakLen returns the length of the line break at the start of b, or 0.
func breakLen(b []byte) int {
	switch {
	case len(b) == 0:
		return 0
	case b[0] == '\r' && len(b) > 1 && b[1] == '\n':
		return 2
	case b[0] == '\r' || b[0] == '\n':
		return 1
	case bytes.HasPrefix(b, []byte("\u0085")):
		return 2
	case bytes.HasPrefix(b, []byte("\u2028")), bytes.HasPrefix(b, []byte("\u2029")):
		return 3
	}
	return 0
}

// documentMarker returns the line and text of the first "---" or "..."
// document marker, or 0. libyaml takes three dashes or dots in column 0
// followed by a blank, a line break or the end as a marker wherever they
// are (inside a quoted scalar they are an error), so no context is needed.
func (s *source) documentMarker() (int, string) {
	for i, start := range s.lines {
		rest := s.data[start:]
		for _, m := range []string{"---", "..."} {
			if !bytes.HasPrefix(rest, []byte(m)) {
				continue
			}
			after := rest[len(m):]
			if len(after) == 0 || after[0] == ' ' || after[0] == '\t' || breakLen(after) > 0 {
				return i + 1, m
			}
		}
	}
	return 0, ""
}

// startsWithTag reports whether the node at line and column (1-based, the
// column counted in characters, as yaml.v3 does) begins with a tag. yaml.v3
// marks explicit tags with TaggedStyle except the non-specific tag "!" and
// its verbatim form "!<!>"; nutcracker rejects every tag token. No untagged
// node starts with "!": it is an indicator, not the start of a plain scalar.
func (s *source) startsWithTag(line, column int) bool {
	if line < 1 || line > len(s.lines) || column < 1 {
		return false
	}
	b := s.data[s.lines[line-1]:]
	for c := 1; c < column && len(b) > 0; c++ {
		if breakLen(b) > 0 {
			return false
		}
		_, size := utf8.DecodeRune(b)
		b = b[size:]
	}
	return len(b) > 0 && b[0] == '!'
}

// checkNodes rejects what nutcracker's conf_validate_tokens rejects: flow
// collections, anchors, aliases and tags. It also rejects NUL bytes.
func (s *source) checkNodes(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.AliasNode:
		return fmt.Errorf("line %d: alias %q: nutcracker does not allow aliases", n.Line, "*"+n.Value)
	case n.Anchor != "":
		return fmt.Errorf("line %d: anchor %q: nutcracker does not allow anchors", n.Line, "&"+n.Anchor)
	case n.Style&yaml.TaggedStyle != 0 || (n.Kind != yaml.DocumentNode && s.startsWithTag(n.Line, n.Column)):
		return fmt.Errorf("line %d: tag: nutcracker does not allow tags", n.Line)
	case n.Style&yaml.FlowStyle != 0:
		return fmt.Errorf("line %d: flow style (\"[...]\" or \"{...}\"): nutcracker allows only block style (\"key: value\" and \"- item\" lines)", n.Line)
	case n.Kind == yaml.ScalarNode && strings.IndexByte(n.Value, 0) >= 0:
		return fmt.Errorf("line %d: a value holds a NUL byte", n.Line)
	}
	for _, c := range n.Content {
		if err := s.checkNodes(c); err != nil {
			return err
		}
	}
	return nil
}

// checkStructure checks the shape that nutcracker's conf_validate_structure
// checks: pool names map to mappings of scalars and of block sequences of
// scalars, and exactly one key of each pool holds a sequence.
func checkStructure(root *yaml.Node) error {
	for i := 0; i < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a pool name must be a string", k.Line)
		}
		if k.Value == "" {
			return fmt.Errorf("line %d: empty pool name", k.Line)
		}
		if v.Kind != yaml.MappingNode {
			return fmt.Errorf("pool %q: line %d: the pool must be a mapping of settings (\"key: value\" lines)", k.Value, v.Line)
		}
		var list *yaml.Node // the key whose value is a sequence
		var servers *yaml.Node
		for j := 0; j < len(v.Content); j += 2 {
			dk, dv := v.Content[j], v.Content[j+1]
			if dk.Kind != yaml.ScalarNode {
				return fmt.Errorf("pool %q: line %d: a key must be a string", k.Value, dk.Line)
			}
			if dk.Value == "servers" && servers == nil {
				servers = dk
			}
			switch dv.Kind {
			case yaml.ScalarNode:
			case yaml.SequenceNode:
				if listKey(dk.Value) {
					for _, e := range dv.Content {
						if e.Kind != yaml.ScalarNode {
							return fmt.Errorf("pool %q: %s: line %d: a list item must be a string", k.Value, dk.Value, e.Line)
						}
					}
					continue
				}
				if list != nil {
					return fmt.Errorf("pool %q: %s: only one key of a pool may hold a list, and %s already does", k.Value, dk.Value, list.Value)
				}
				list = dk
				for _, e := range dv.Content {
					if e.Kind != yaml.ScalarNode {
						return fmt.Errorf("pool %q: %s: line %d: a list item must be a string", k.Value, dk.Value, e.Line)
					}
				}
			default:
				return fmt.Errorf("pool %q: %s: line %d: too deep; nutcracker allows a string or a list of strings", k.Value, dk.Value, dv.Line)
			}
		}
		if list == nil {
			if servers == nil && hasKey(v, "kubernetes_service") {
				continue // the Service's pods are the servers
			}
			if servers == nil {
				return fmt.Errorf("pool %q: servers: missing", k.Value)
			}
			return fmt.Errorf("pool %q: servers: must be a list of \"- host:port:weight [name]\" lines", k.Value)
		}
	}
	return nil
}

// hasKey reports whether the pool mapping n has the key.
func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// poolBuilder collects one pool's directives.
type poolBuilder struct {
	pc   Pool
	line int
	seen map[string]bool // directives given, for duplicates

	redis             int // -1 unset, 0 false, 1 true
	serverConns       int // -1 unset
	authFile, authEnv string
	sentinelAuthFile  string
	sentinelAuthEnv   string
	servers           []parsedServer      // in file order
	clusterSeeds      bool                // redis_cluster: true is among the keys: servers are seeds
	groupLines        map[string][]string // group_members: server -> members as written
	acl               aclBuilder
}

// parsedServer is a servers entry and its index in the file.
type parsedServer struct {
	Server
	index int
}

func newPoolBuilder(name *yaml.Node) *poolBuilder {
	return &poolBuilder{
		pc: Pool{
			Name:               name.Value,
			Hash:               defaultHash,
			Distribution:       defaultDistribution,
			Backlog:            defaultBacklog,
			ServerConnections:  defaultServerConnections,
			ServerRetryTimeout: defaultServerRetryTimeout,
			ServerFailureLimit: defaultServerFailureLimit,

			ClientOutputBufferLimit: defaultClientOutputBufferLimit,
		},
		line:        name.Line,
		seen:        map[string]bool{},
		redis:       -1,
		serverConns: -1,
	}
}

func (b *poolBuilder) errorf(key, format string, args ...any) error {
	return fmt.Errorf("pool %q: %s: %s", b.pc.Name, key, fmt.Sprintf(format, args...))
}

// apply applies one "key: value" of the pool, or each item of "key: - list"
// in turn, as nutcracker's conf_handler does.
func (b *poolBuilder) apply(k, v *yaml.Node) error {
	if k.Value == "" {
		return fmt.Errorf("pool %q: line %d: empty key", b.pc.Name, k.Line)
	}
	values := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		values = v.Content
	}
	for _, n := range values {
		if err := b.set(k.Value, n.Value); err != nil {
			return err
		}
	}
	return nil
}

// set applies one directive value.
func (b *poolBuilder) set(key, value string) error {
	if !knownKey(key) {
		return fmt.Errorf("pool %q: unknown key %q", b.pc.Name, key)
	}
	if value == "" {
		return b.errorf(key, "empty value")
	}
	if key == "servers" {
		return b.addServer(value)
	}
	if key == "group_members" {
		return b.addGroupMembers(value)
	}
	if done, err := b.setSentinel(key, value); done {
		return err
	}
	if done, err := b.setReadFrom(key, value); done {
		return err
	}
	if done, err := b.setCluster(key, value); done {
		return err
	}
	if done, err := b.setTLS(key, value); done {
		return err
	}
	if done, err := b.setACL(key, value); done {
		return err
	}
	if b.seen[key] {
		return b.errorf(key, "duplicate key")
	}
	b.seen[key] = true

	var err error
	switch key {
	case "listen":
		return b.setListen(value)
	case "hash":
		if _, herr := hashring.Hash(value); herr != nil {
			return b.errorf(key, "%q is not a known hash", value)
		}
		b.pc.Hash = value
	case "hash_tag":
		if len(value) != 2 {
			return b.errorf(key, "%q is not exactly 2 characters", value)
		}
		b.pc.HashTag = value
	case "distribution":
		if _, derr := hashring.ParseDistribution(value); derr != nil {
			return b.errorf(key, "%q is not a known distribution", value)
		}
		b.pc.Distribution = value
	case "timeout":
		var ms int
		ms, err = parseNumber(value)
		b.pc.Timeout = time.Duration(ms) * time.Millisecond
	case "backlog":
		b.pc.Backlog, err = parseNumber(value)
	case "client_timeout":
		var ms int
		ms, err = parseNumber(value)
		b.pc.ClientTimeout = time.Duration(ms) * time.Millisecond
	case "client_connections":
		b.pc.ClientConnections, err = parseNumber(value)
	case "redis_db":
		b.pc.RedisDB, err = parseNumber(value)
	case "server_connections":
		b.serverConns, err = parseNumber(value)
		b.pc.ServerConnections = b.serverConns
	case "blocking_connections":
		b.pc.BlockingConnections, err = parseNumber(value)
		if err == nil && b.pc.BlockingConnections == 0 {
			return b.errorf(key, "must be at least 1")
		}
	case "server_retry_timeout":
		var ms int
		ms, err = parseNumber(value)
		b.pc.ServerRetryTimeout = time.Duration(ms) * time.Millisecond
	case "server_failure_limit":
		b.pc.ServerFailureLimit, err = parseNumber(value)
	case "redis":
		var v bool
		v, err = parseBool(value)
		b.pc.Redis = v
		b.redis = 0
		if v {
			b.redis = 1
		}
	case "tcpkeepalive":
		b.pc.TCPKeepalive, err = parseBool(value)
	case "preconnect":
		b.pc.Preconnect, err = parseBool(value)
	case "auto_eject_hosts":
		b.pc.AutoEjectHosts, err = parseBool(value)
	case "redis_auth":
		b.pc.RedisAuth = value
	case "redis_auth_file":
		b.authFile = value
	case "redis_auth_env":
		b.authEnv = value
	case "client_output_buffer_limit":
		var perr error
		if b.pc.ClientOutputBufferLimit, perr = parseOutputBufferLimit(value); perr != nil {
			return b.errorf(key, "%q: %v", value, perr)
		}
	case "client_output_buffer_limit_pubsub":
		lim, perr := parseOutputBufferLimit(value)
		if perr != nil {
			return b.errorf(key, "%q: %v", value, perr)
		}
		b.pc.ClientOutputBufferLimitPubSub = &lim
	case "kubernetes_port":
		b.pc.KubernetesPort, err = parsePort(value)
	case "kubernetes_weight":
		b.pc.KubernetesWeight, err = parseNumber(value)
		if err == nil && b.pc.KubernetesWeight == 0 {
			return b.errorf(key, "must be at least 1")
		}
	case "kubernetes_service", "kubernetes_namespace":
		if !isDNSLabel(value) {
			return b.errorf(key, "%q is not a Kubernetes name (lower-case letters, digits and '-', at most 63)", value)
		}
		if key == "kubernetes_service" {
			b.pc.KubernetesService = value
		} else {
			b.pc.KubernetesNamespace = value
		}
	}
	if err != nil {
		return b.errorf(key, "%q %v", value, err)
	}
	return nil
}

// isDNSLabel reports whether s is an RFC 1123 label, as Kubernetes requires
// of Service and namespace names.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// knownKey reports whether key is a pool directive: nutcracker 0.5.0's
// (src/nc_conf.c conf_commands; no reuseport, no sentinels) and ours.
func knownKey(key string) bool {
	switch key {
	case "listen", "hash", "hash_tag", "distribution", "timeout", "backlog",
		"client_connections", "redis", "tcpkeepalive", "redis_auth", "redis_db",
		"preconnect", "auto_eject_hosts", "server_connections",
		"server_retry_timeout", "server_failure_limit", "servers",
		"redis_auth_file", "redis_auth_env", "kubernetes_service", "kubernetes_namespace",
		"kubernetes_port", "kubernetes_weight", "client_output_buffer_limit",
		"client_output_buffer_limit_pubsub", "blocking_connections", "client_timeout":
		return true
	}
	return sentinelKey(key) || tlsKey(key) || aclKey(key) || key == "read_from" || key == "replica_max_lag" || key == "group_members" || key == "redis_cluster"
}

var (
	errNotNumber = errors.New("is not a number")
	errTooLarge  = fmt.Errorf("is too large (at most %d)", maxNumber)
	errNotBool   = errors.New("is not true or false")
)

// parseNumber reads a directive number as nutcracker's nc_atoi does:
// decimal digits only, so no sign, space or "0x". Unlike nc_atoi it refuses
// values that do not fit in a C int instead of wrapping them around.
func parseNumber(s string) (int, error) {
	if s == "" {
		return 0, errNotNumber
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errNotNumber
		}
		if n > (maxNumber-int(c-'0'))/10 {
			for _, c := range s[i+1:] {
				if c < '0' || c > '9' {
					return 0, errNotNumber
				}
			}
			return 0, errTooLarge
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// parseBool reads "true" or "false", exactly (nutcracker's conf_set_bool).
func parseBool(s string) (bool, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errNotBool
}

// parseOutputBufferLimit reads "<hard> <soft> <soft-seconds>", the part of
// Redis' client-output-buffer-limit after the class. Sizes are read as
// Redis' memtoull reads them, except that digits are required and a size
// that does not fit in 63 bits is refused; the seconds are a directive
// number.
func parseOutputBufferLimit(s string) (OutputBufferLimit, error) {
	fields := strings.Fields(s)
	if len(fields) != 3 {
		return OutputBufferLimit{}, errors.New(`want "<hard> <soft> <soft-seconds>" as in Redis' client-output-buffer-limit, such as "64mb 16mb 60"`)
	}
	hard, err := parseMemorySize(fields[0])
	if err != nil {
		return OutputBufferLimit{}, fmt.Errorf("hard limit %v", err)
	}
	soft, err := parseMemorySize(fields[1])
	if err != nil {
		return OutputBufferLimit{}, fmt.Errorf("soft limit %v", err)
	}
	secs, err := parseNumber(fields[2])
	if err != nil {
		return OutputBufferLimit{}, fmt.Errorf("soft seconds %q %v", fields[2], err)
	}
	return OutputBufferLimit{Hard: hard, Soft: soft, SoftTime: time.Duration(secs) * time.Second}, nil
}

// parseMemorySize reads a size as Redis' memtoull: decimal digits and an
// optional unit, b (1), k (1000), kb (1024), m (1000²), mb (1024²), g
// (1000³) or gb (1024³), in any case.
func parseMemorySize(s string) (int64, error) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	var unit int64
	switch strings.ToLower(s[digits:]) {
	case "", "b":
		unit = 1
	case "k":
		unit = 1000
	case "kb":
		unit = 1 << 10
	case "m":
		unit = 1000 * 1000
	case "mb":
		unit = 1 << 20
	case "g":
		unit = 1000 * 1000 * 1000
	case "gb":
		unit = 1 << 30
	default:
		digits = 0
	}
	if digits == 0 {
		return 0, fmt.Errorf("%q is not a size (digits, then optionally b, k, kb, m, mb, g or gb)", s)
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * unit, nil
}

// setListen reads nutcracker's listen syntax (conf_set_listen): a value that
// starts with "/" is a unix socket path, optionally followed by a space and
// octal permissions; anything else is host:port, split at the last ":", so
// an IPv6 host is written without brackets.
func (b *poolBuilder) setListen(value string) error {
	b.pc.Listen = value
	if value[0] == '/' {
		path, perm := value, uint32(0)
		if i := strings.LastIndexByte(value, ' '); i >= 0 {
			path = value[:i]
			p, ok := strtolOctal(value[i+1:])
			// nutcracker casts strtol's long to a 32-bit mode_t.
			if !ok || uint32(p) > 0o777 {
				return b.errorf("listen", "%q: permissions %q are not octal 0 to 0777", value, value[i+1:])
			}
			perm = uint32(p)
		}
		if len(path) > maxUnixPath {
			return b.errorf("listen", "%q: the socket path is longer than %d bytes", value, maxUnixPath)
		}
		b.pc.ListenNetwork = "unix"
		b.pc.ListenAddr = path
		b.pc.ListenPerm = os.FileMode(perm)
		return nil
	}
	i := strings.LastIndexByte(value, ':')
	if i < 0 {
		return b.errorf("listen", "%q is not host:port or /path/to.sock", value)
	}
	host, portText := value[:i], value[i+1:]
	port, err := parsePort(portText)
	if err != nil {
		return b.errorf("listen", "%q: port %v", value, err)
	}
	if err := checkListenHost(host); err != nil {
		return b.errorf("listen", "%q: %v", value, err)
	}
	b.pc.ListenNetwork = "tcp"
	b.pc.ListenAddr = net.JoinHostPort(dialHost(host), strconv.Itoa(port))
	return nil
}

// parsePort reads a port as nutcracker does: nc_atoi, then 1 to 65535.
func parsePort(s string) (int, error) {
	port, err := parseNumber(s)
	if err == errNotNumber {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%q is not between 1 and 65535", s)
	}
	return port, nil
}

// strtolOctal is glibc's strtol(s, NULL, 8) as nutcracker calls it for
// socket permissions: leading white space, a sign, then octal digits up to
// the first other byte; no digits give 0. ok is false where strtol sets
// errno (ERANGE: the value does not fit in a long).
func strtolOctal(s string) (v int64, ok bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var u uint64
	const limit = 1 << 63 // |LONG_MIN|
	overflow := false
	for ; i < len(s) && s[i] >= '0' && s[i] <= '7'; i++ {
		if u > (limit-uint64(s[i]-'0'))/8 {
			overflow = true
			continue
		}
		u = u*8 + uint64(s[i]-'0')
	}
	if overflow || (!neg && u > limit-1) {
		return 0, false
	}
	if neg {
		return -int64(u), true // -(1<<63) wraps to itself, which is LONG_MIN
	}
	return int64(u), true
}

// checkListenHost checks the syntax of a listen host without resolving it:
// an IP address (IPv6 without brackets, with an optional zone) or a host
// name. nutcracker passes the host to getaddrinfo, which also takes the
// numeric IPv4 forms of inet_aton.
func checkListenHost(host string) error {
	switch {
	case host == "":
		return errors.New("the host is empty")
	case strings.HasPrefix(host, "["):
		return errors.New("write an IPv6 host without brackets, as in ::1:22121")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !isHostname(host) {
		return fmt.Errorf("%q is not an IP address or a host name", host)
	}
	return nil
}

// isHostname reports whether s is a syntactically valid host name: dot
// separated labels of letters, digits, "-" and "_", an optional final dot.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// dialHost returns host for Go's net package: a numeric IPv4 form that
// glibc's inet_aton accepts ("127.1", "0x7f.1", "2130706433") as a dotted
// quad, which Go would otherwise look up as a name; anything else unchanged.
func dialHost(host string) string {
	if a, ok := inetAton(host); ok {
		return a.String()
	}
	return host
}

// inetAton parses the numeric IPv4 forms of inet_aton: one to four parts,
// each decimal, octal (leading 0) or hex (leading 0x), the last part filling
// the remaining bytes.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil || p == "" || p[0] == '+' || p[0] == '-' {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var ip uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		ip |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(32-8*(len(vals)-1)) {
		return netip.Addr{}, false
	}
	ip |= last
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// addServer reads one servers entry as nutcracker's conf_add_server does,
// from the end: the name after the last space (optional), the weight after
// the last ":" before it, then for TCP the port after the ":" before that,
// the rest being the host ("::1:6379:1" is host ::1). A unix socket path
// (starting with "/") cannot contain ":".
func (b *poolBuilder) addServer(value string) error {
	index := len(b.servers)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("pool %q: servers[%d]: %q: %s", b.pc.Name, index, value, fmt.Sprintf(format, args...))
	}
	const want = `want "host:port:weight [name]" or "/path/to.sock:weight [name]"`
	unix := value[0] == '/'
	rest, name, named := value, "", false
	if i := strings.LastIndexByte(rest, ' '); i >= 0 {
		rest, name, named = rest[:i], rest[i+1:], true
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return bad(want)
	}
	addr, weightText := rest[:i], rest[i+1:]
	j := strings.LastIndexByte(addr, ':')
	if b.clusterSeeds && !unix && j < 0 {
		// A Redis Cluster seed may leave out its weight, which is ignored.
		addr, weightText, j = rest, "1", i
	}
	if unix && j >= 0 || !unix && j < 0 {
		return bad(want)
	}
	weight, err := parseNumber(weightText)
	switch {
	case err == errTooLarge:
		return bad("weight %v", err)
	case err != nil:
		return bad("weight is not a number")
	case weight == 0:
		return bad("weight must be at least 1")
	}
	s := Server{Addr: addr, Weight: weight, ExplicitName: named, Name: name}
	if unix {
		s.Network, s.DialAddr = "unix", addr
	} else {
		host, portText := addr[:j], addr[j+1:]
		port, err := parsePort(portText)
		if err != nil {
			return bad("port %v", err)
		}
		if host == "" {
			return bad("the host is empty")
		}
		s.Network, s.DialAddr, s.Port = "tcp", net.JoinHostPort(dialHost(host), strconv.Itoa(port)), port
		if _, isIP := inetAton(host); !isIP && net.ParseIP(host) == nil {
			s.Pod, _, _ = strings.Cut(host, ".")
		}
	}
	if named && name == "" {
		return bad("the name after the last space is empty")
	}
	s.Name = s.Node().RingName()
	b.servers = append(b.servers, parsedServer{Server: s, index: index})
	return nil
}

// finish checks the pool as nutcracker's conf_validate_pool does, then
// shardproxy's own rules, resolves the password and sorts the servers.
func (b *poolBuilder) finish(dir string) (Pool, error) {
	pc := b.pc
	if pc.Listen == "" {
		return pc, b.errorf("listen", "missing")
	}
	if b.serverConns == 0 {
		return pc, b.errorf("server_connections", "must be at least 1")
	}
	if err := b.finishCluster(&pc); err != nil {
		return pc, err
	}
	authKeys := []string{}
	for _, k := range []string{"redis_auth", "redis_auth_file", "redis_auth_env"} {
		if b.seen[k] {
			authKeys = append(authKeys, k)
		}
	}
	if len(authKeys) > 0 && b.redis != 1 {
		return pc, b.errorf(authKeys[0], "only allowed with redis: true")
	}
	for _, k := range []string{"kubernetes_port", "kubernetes_weight"} {
		if b.seen[k] && (pc.KubernetesService == "" || len(b.servers) > 0) {
			return pc, b.errorf(k, "only used with kubernetes_service and no servers list")
		}
	}
	if len(b.servers) == 0 {
		if pc.KubernetesService == "" {
			return pc, b.errorf("servers", "missing")
		}
		pc.KubernetesMembers = true
	}
	byName := make(map[string]parsedServer, len(b.servers))
	for _, s := range b.servers {
		if prev, ok := byName[s.Name]; ok {
			return pc, fmt.Errorf("pool %q: servers[%d] and servers[%d]: both are named %q", pc.Name, prev.index, s.index, s.Name)
		}
		byName[s.Name] = s
	}

	// shardproxy's rules.
	var total uint64
	for _, s := range b.servers {
		total += uint64(s.Weight)
	}
	if total > 1<<32-1 {
		return pc, b.errorf("servers", "the weights add up to more than %d", uint64(1<<32-1))
	}
	if len(authKeys) > 1 {
		return pc, b.errorf(authKeys[1], "give only one of redis_auth, redis_auth_file and redis_auth_env")
	}
	switch {
	case b.seen["redis_auth_file"]:
		path := b.authFile
		if dir != "" && !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		data, err := boundedfile.Read(path, maxAuthFileSize)
		if err != nil {
			return pc, fmt.Errorf("pool %q: redis_auth_file: %w", pc.Name, err)
		}
		pc.RedisAuth = strings.TrimRight(string(data), "\r\n")
		if pc.RedisAuth == "" {
			return pc, b.errorf("redis_auth_file", "%s is empty", path)
		}
	case b.seen["redis_auth_env"]:
		v, ok := os.LookupEnv(b.authEnv)
		if !ok {
			return pc, b.errorf("redis_auth_env", "environment variable %q is not set", b.authEnv)
		}
		if v == "" {
			return pc, b.errorf("redis_auth_env", "environment variable %q is empty", b.authEnv)
		}
		pc.RedisAuth = v
	}
	if b.redis != 1 {
		why := "redis is missing, and nutcracker's default is memcached"
		if b.redis == 0 {
			why = "redis: false is memcached"
		}
		return pc, b.errorf("redis", "shardproxy serves only Redis pools (redis: true); %s", why)
	}

	if err := b.finishTLS(&pc, dir); err != nil {
		return pc, err
	}
	if err := b.finishSentinel(&pc, dir); err != nil {
		return pc, err
	}
	if err := b.finishACL(&pc, dir); err != nil {
		return pc, err
	}
	if err := b.finishRoleGroups(&pc); err != nil {
		return pc, err
	}
	if err := b.finishReadFrom(&pc); err != nil {
		return pc, err
	}
	if b.seen["kubernetes_namespace"] && pc.KubernetesService == "" && pc.SentinelService == "" {
		return pc, b.errorf("kubernetes_namespace", "only allowed with kubernetes_service or sentinel_service")
	}
	if pc.KubernetesService == "" || pc.HasGroups() {
		// A group's address is its master's, not its pod's.
		for i := range b.servers {
			b.servers[i].Pod = ""
		}
		for k, v := range byName {
			v.Pod = ""
			byName[k] = v
		}
	}

	nodes := make([]hashring.Node, len(b.servers))
	for i, s := range b.servers {
		nodes[i] = s.Node()
	}
	hashring.SortNodes(nodes)
	pc.Servers = make([]Server, len(nodes))
	for i, n := range nodes {
		pc.Servers[i] = byName[n.RingName()].Server
	}
	return pc, nil
}

// checkPools checks across pools, as nutcracker's conf_post_validate does:
// no two pools share a name or a listen string (nutcracker checks listen
// strings first; a pool given twice reads better as such). Also no two pools
// may have the same listen address (ours).
func checkPools(pools []Pool, builders []*poolBuilder) error {
	byName := map[string]int{}
	for i, p := range pools {
		if j, ok := byName[p.Name]; ok {
			return fmt.Errorf("pool %q: defined twice, on lines %d and %d", p.Name, builders[j].line, builders[i].line)
		}
		byName[p.Name] = i
	}
	byListen := map[string]int{}
	for i, p := range pools {
		if j, ok := byListen[p.Listen]; ok {
			return fmt.Errorf("pools %q and %q: both listen on %q", pools[j].Name, p.Name, p.Listen)
		}
		byListen[p.Listen] = i
	}
	byAddr := map[string]int{}
	for i, p := range pools {
		key := p.ListenNetwork + " " + p.ListenAddr
		if j, ok := byAddr[key]; ok {
			return fmt.Errorf("pools %q and %q: %q and %q are the same address", pools[j].Name, p.Name, pools[j].Listen, p.Listen)
		}
		byAddr[key] = i
	}
	return nil
}

// sortPools sorts pools into nutcracker's order: by name, shorter first, then
// bytewise (string_compare). Names are unique.
func sortPools(pools []Pool) {
	slices.SortFunc(pools, func(a, b Pool) int {
		if len(a.Name) != len(b.Name) {
			return len(a.Name) - len(b.Name)
		}
		return strings.Compare(a.Name, b.Name)
	})
}
