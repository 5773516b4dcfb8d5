package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/proxy/internal/boundedfile"
)

// Keys of a pool whose servers are groups that Redis Sentinel watches
// (all ours; see Pool.Sentinels):
//
//	sentinels:             a list of "host:port" of the Sentinels; with it,
//	                       every server is a group: its name is the Sentinel
//	                       master name, its address where the master was
//	                       when the file was written.
//	sentinel_service: S    instead of sentinels: the Sentinels are the ready
//	                       endpoints of the Kubernetes Service S (namespace
//	                       kubernetes_namespace, else shardproxy's own), on
//	                       the EndpointSlice's port named "sentinel", else
//	                       its only port.
//	sentinel_port: P       with sentinel_service, the Sentinels' port when
//	                       the EndpointSlices name none of their own.
//	kubernetes_service: S  with sentinels or sentinel_service, the headless
//	                       Service of the groups' pods: addresses Sentinel
//	                       reports are matched to its endpoints.
//	sentinel_masters:      a list of "server master-name" lines, for groups
//	                       whose Sentinel master name is not the server's.
//	sentinel_username: U   the ACL user for the Sentinels (AUTH U password).
//	sentinel_auth: P       the Sentinels' password; or sentinel_auth_file:
//	sentinel_auth_file: F  PATH or sentinel_auth_env: NAME, read as
//	sentinel_auth_env: N   redis_auth_file and redis_auth_env are. It is
//	                       not redis_auth, which stays the data password.
//	failover_hold: MS      how long a request that a group's master refused
//	                       because it is no longer the master waits for the
//	                       next master; 5000 when absent.

// DefaultFailoverHold is failover_hold when absent.
const DefaultFailoverHold = 5 * time.Second

// sentinelKey reports whether key is one of the Sentinel keys above.
func sentinelKey(key string) bool {
	switch key {
	case "sentinels", "sentinel_service", "sentinel_port", "sentinel_masters", "sentinel_username", "sentinel_auth",
		"sentinel_auth_file", "sentinel_auth_env", "failover_hold":
		return true
	}
	return false
}

// listKey reports whether key may hold a list besides servers: the groups'
// lists are ours, so nutcracker's one-list rule does not count them.
func listKey(key string) bool {
	return key == "sentinels" || key == "sentinel_masters" || key == "group_members"
}

// setSentinel applies one value of a Sentinel key; done is false for any
// other key. The lists take one item per call.
func (b *poolBuilder) setSentinel(key, value string) (done bool, err error) {
	switch key {
	case "sentinels":
		host, port, serr := net.SplitHostPort(value)
		if serr != nil || host == "" {
			return true, fmt.Errorf("pool %q: sentinels[%d]: %q: want \"host:port\"", b.pc.Name, len(b.pc.Sentinels), value)
		}
		p, perr := parsePort(port)
		if perr != nil {
			return true, fmt.Errorf("pool %q: sentinels[%d]: %q: port %v", b.pc.Name, len(b.pc.Sentinels), value, perr)
		}
		b.pc.Sentinels = append(b.pc.Sentinels, net.JoinHostPort(dialHost(host), strconv.Itoa(p)))
		return true, nil
	case "sentinel_masters":
		server, master, ok := strings.Cut(value, " ")
		if !ok || server == "" || master == "" || strings.Contains(master, " ") {
			return true, b.errorf(key, "%q: want \"server-name master-name\"", value)
		}
		if b.pc.SentinelMasters == nil {
			b.pc.SentinelMasters = map[string]string{}
		}
		if _, dup := b.pc.SentinelMasters[server]; dup {
			return true, b.errorf(key, "%q: server %q is mapped twice", value, server)
		}
		b.pc.SentinelMasters[server] = master
		return true, nil
	}
	if !sentinelKey(key) {
		return false, nil
	}
	if b.seen[key] {
		return true, b.errorf(key, "duplicate key")
	}
	b.seen[key] = true
	switch key {
	case "sentinel_username":
		b.pc.SentinelUsername = value
	case "sentinel_auth":
		b.pc.SentinelAuth = value
	case "sentinel_auth_file":
		b.sentinelAuthFile = value
	case "sentinel_auth_env":
		b.sentinelAuthEnv = value
	case "sentinel_service":
		if !isDNSLabel(value) {
			return true, b.errorf(key, "%q is not a Kubernetes name (lower-case letters, digits and '-', at most 63)", value)
		}
		b.pc.SentinelService = value
	case "sentinel_port":
		p, perr := parsePort(value)
		if perr != nil {
			return true, b.errorf(key, "%v", perr)
		}
		b.pc.SentinelPort = p
	case "failover_hold":
		ms, nerr := parseNumber(value)
		if nerr != nil {
			return true, b.errorf(key, "%q %v", value, nerr)
		}
		if ms == 0 {
			return true, b.errorf(key, "must be at least 1")
		}
		b.pc.FailoverHold = time.Duration(ms) * time.Millisecond
	}
	return true, nil
}

// finishSentinel checks the Sentinel keys against the rest of the pool and
// reads the Sentinels' password.
func (b *poolBuilder) finishSentinel(pc *Pool, dir string) error {
	if len(pc.Sentinels) > 0 && pc.SentinelService != "" {
		return b.errorf("sentinel_service", "give either sentinels or sentinel_service, not both")
	}
	if b.seen["sentinel_port"] && pc.SentinelService == "" {
		return b.errorf("sentinel_port", "only allowed with sentinel_service")
	}
	if !pc.HasSentinels() {
		for _, k := range []string{"sentinel_masters", "sentinel_username", "sentinel_auth", "sentinel_auth_file", "sentinel_auth_env"} {
			if b.seen[k] || k == "sentinel_masters" && pc.SentinelMasters != nil {
				return b.errorf(k, "only allowed with sentinels")
			}
		}
		if b.seen["failover_hold"] && b.groupLines == nil {
			return b.errorf("failover_hold", "only allowed with sentinels or group_members")
		}
		return nil
	}
	if pc.AutoEjectHosts {
		return b.errorf("auto_eject_hosts", "a pool with sentinels fails over instead of ejecting: auto_eject_hosts must be false with sentinels")
	}
	if len(b.servers) == 0 {
		return b.errorf("servers", "missing: a pool with sentinels lists its groups as servers")
	}
	for _, s := range b.servers {
		switch {
		case s.Network != "tcp":
			return fmt.Errorf("pool %q: servers[%d]: %q: a group watched by sentinels needs a host:port", pc.Name, s.index, s.Addr)
		case !s.ExplicitName:
			return fmt.Errorf("pool %q: servers[%d]: %q: a group watched by sentinels needs a name (host:port:weight name)", pc.Name, s.index, s.Addr)
		}
	}
	for server := range pc.SentinelMasters {
		found := false
		for _, s := range b.servers {
			found = found || s.Name == server
		}
		if !found {
			return b.errorf("sentinel_masters", "no server is named %q", server)
		}
	}
	var given []string
	for _, k := range []string{"sentinel_auth", "sentinel_auth_file", "sentinel_auth_env"} {
		if b.seen[k] {
			given = append(given, k)
		}
	}
	if len(given) > 1 {
		return b.errorf(given[1], "give only one of sentinel_auth, sentinel_auth_file and sentinel_auth_env")
	}
	switch {
	case b.seen["sentinel_auth_file"]:
		path := b.sentinelAuthFile
		if dir != "" && !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		data, err := boundedfile.Read(path, maxAuthFileSize)
		if err != nil {
			return fmt.Errorf("pool %q: sentinel_auth_file: %w", pc.Name, err)
		}
		pc.SentinelAuth = strings.TrimRight(string(data), "\r\n")
		if pc.SentinelAuth == "" {
			return b.errorf("sentinel_auth_file", "%s is empty", path)
		}
	case b.seen["sentinel_auth_env"]:
		v, ok := os.LookupEnv(b.sentinelAuthEnv)
		if !ok {
			return b.errorf("sentinel_auth_env", "environment variable %q is not set", b.sentinelAuthEnv)
		}
		if v == "" {
			return b.errorf("sentinel_auth_env", "environment variable %q is empty", b.sentinelAuthEnv)
		}
		pc.SentinelAuth = v
	}
	if pc.SentinelUsername != "" && pc.SentinelAuth == "" {
		return b.errorf("sentinel_username", "needs a password: sentinel_auth, sentinel_auth_file or sentinel_auth_env")
	}
	return nil
}

// HasSentinels reports whether the pool's servers are groups that Sentinels
// watch: it has sentinels or sentinel_service.
func (p *Pool) HasSentinels() bool { return len(p.Sentinels) > 0 || p.SentinelService != "" }

// Hold is how long a request refused by a group's old master waits for
// the new one: failover_hold, or DefaultFailoverHold when absent.
func (p *Pool) Hold() time.Duration {
	if p.FailoverHold == 0 {
		return DefaultFailoverHold
	}
	return p.FailoverHold
}

// SentinelMaster is the Sentinel master name of the pool's server named
// server: its sentinel_masters entry, else the server's name.
func (p *Pool) SentinelMaster(server string) string {
	if m, ok := p.SentinelMasters[server]; ok {
		return m
	}
	return server
}
