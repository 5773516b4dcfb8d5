package config

// TLS keys (ours), on either side of the proxy. Paths are resolved as
// redis_auth_file's are; every file must exist and load when the config
// is loaded. The proxy reads them again when they change on disk, for new
// connections (proxy/internal/tlsfiles).
//
//	tls_cert_file: PATH      the certificate and key the pool's listener
//	tls_key_file: PATH       serves TLS with, both or neither; with them the
//	                         listener speaks TLS only (1.2 at least).
//	tls_client_ca_file: PATH clients must show a certificate signed by a CA
//	                         in PATH (mutual TLS).
//	server_tls_ca_file: PATH the proxy speaks TLS to the pool's servers and
//	                         verifies their certificates with the CAs in PATH.
//	server_tls_cert_file: PATH  the certificate and key the proxy shows to
//	server_tls_key_file: PATH   the servers (Redis' tls-auth-clients).
//	server_tls_server_name: N   the name a server's certificate must hold;
//	                         "{server}" in it is replaced by the server's
//	                         name in the pool and "{host}" by the host of its
//	                         address. When absent, the host of its address.
//	                         Discovery's own connections (the slot map,
//	                         ROLE, Sentinels) use the same settings; a
//	                         Sentinel, having no name, is checked for the
//	                         host of its address when N holds "{server}",
//	                         and N may not hold it with redis_cluster.

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/internal/tlsfiles"
)

// tlsKeys are the TLS keys, file keys first.
var tlsKeys = []string{
	"tls_cert_file", "tls_key_file", "tls_client_ca_file",
	"server_tls_ca_file", "server_tls_cert_file", "server_tls_key_file",
	"server_tls_server_name",
}

func tlsKey(key string) bool {
	for _, k := range tlsKeys {
		if k == key {
			return true
		}
	}
	return false
}

// setTLS applies one TLS key; done is false for any other key. Files are
// read in finishTLS, once the config's directory is known.
func (b *poolBuilder) setTLS(key, value string) (done bool, err error) {
	if !tlsKey(key) {
		return false, nil
	}
	if b.seen[key] {
		return true, b.errorf(key, "duplicate key")
	}
	b.seen[key] = true
	switch key {
	case "tls_cert_file":
		b.pc.TLSCertFile = value
	case "tls_key_file":
		b.pc.TLSKeyFile = value
	case "tls_client_ca_file":
		b.pc.TLSClientCAFile = value
	case "server_tls_ca_file":
		b.pc.ServerTLSCAFile = value
	case "server_tls_cert_file":
		b.pc.ServerTLSCertFile = value
	case "server_tls_key_file":
		b.pc.ServerTLSKeyFile = value
	case "server_tls_server_name":
		if err := checkServerNamePattern(value); err != nil {
			return true, b.errorf(key, "%q: %v", value, err)
		}
		b.pc.ServerTLSServerName = value
	}
	return true, nil
}

// checkServerNamePattern accepts a name with the placeholders {server} and
// {host}, and nothing else in braces.
func checkServerNamePattern(s string) error {
	rest := strings.NewReplacer("{server}", "", "{host}", "").Replace(s)
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		return fmt.Errorf("only {server} and {host} may stand in braces")
	}
	if strings.ContainsAny(s, " \t/:") {
		return fmt.Errorf("is not a host name")
	}
	return nil
}

// finishTLS resolves the TLS files' paths against dir, checks that the
// keys come in the pairs they need, and loads the files so that a
// certificate without its key, a key that does not match, or a CA file
// without a certificate in it is refused now rather than at the first
// connection.
func (b *poolBuilder) finishTLS(pc *Pool, dir string) error {
	for _, p := range []*string{&pc.TLSCertFile, &pc.TLSKeyFile, &pc.TLSClientCAFile, &pc.ServerTLSCAFile, &pc.ServerTLSCertFile, &pc.ServerTLSKeyFile} {
		if *p != "" && dir != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if err := b.tlsPair(pc.TLSCertFile, pc.TLSKeyFile, "tls_cert_file", "tls_key_file"); err != nil {
		return err
	}
	if pc.TLSClientCAFile != "" && pc.TLSCertFile == "" {
		return b.errorf("tls_client_ca_file", "only used with tls_cert_file and tls_key_file")
	}
	if pc.TLSCertFile != "" {
		if _, err := tlsfiles.Load(pc.TLSCertFile, pc.TLSKeyFile, pc.TLSClientCAFile); err != nil {
			return fmt.Errorf("pool %q: %s: %w", pc.Name, b.tlsKeysGiven(tlsKeys[:3]), err)
		}
	}
	if err := b.tlsPair(pc.ServerTLSCertFile, pc.ServerTLSKeyFile, "server_tls_cert_file", "server_tls_key_file"); err != nil {
		return err
	}
	if pc.ServerTLSCAFile == "" {
		for _, k := range tlsKeys[4:] {
			if b.seen[k] {
				return b.errorf(k, "only used with server_tls_ca_file")
			}
		}
		return nil
	}
	// A cluster's servers are its nodes, named by their addresses: no
	// name a certificate holds.
	if pc.RedisCluster && strings.Contains(pc.ServerTLSServerName, "{server}") {
		return b.errorf("server_tls_server_name", "%q: a redis_cluster pool's nodes have no names: use {host}", pc.ServerTLSServerName)
	}
	for _, s := range b.servers {
		if s.Network == "unix" {
			return fmt.Errorf("pool %q: servers[%d]: %q: server_tls_ca_file: Redis serves TLS on TCP only", pc.Name, s.index, s.Addr)
		}
	}
	if _, err := tlsfiles.Load(pc.ServerTLSCertFile, pc.ServerTLSKeyFile, pc.ServerTLSCAFile); err != nil {
		return fmt.Errorf("pool %q: %s: %w", pc.Name, b.tlsKeysGiven(tlsKeys[3:6]), err)
	}
	return nil
}

// tlsPair refuses a certificate without its key and a key without its
// certificate.
func (b *poolBuilder) tlsPair(cert, key, certKey, keyKey string) error {
	switch {
	case cert != "" && key == "":
		return b.errorf(certKey, "needs %s", keyKey)
	case cert == "" && key != "":
		return b.errorf(keyKey, "needs %s", certKey)
	}
	return nil
}

// tlsKeysGiven lists those of keys the pool gives, for an error about
// their files.
func (b *poolBuilder) tlsKeysGiven(keys []string) string {
	var given []string
	for _, k := range keys {
		if b.seen[k] {
			given = append(given, k)
		}
	}
	return strings.Join(given, ", ")
}

// ServerName is the name the certificate of the pool's server s must hold
// (server_tls_server_name with its placeholders replaced, or the host of
// s's address), "" when the pool speaks no TLS to its servers.
func (p *Pool) ServerName(s Server) string {
	if p.ServerTLSCAFile == "" {
		return ""
	}
	host := s.Addr
	if h, _, err := net.SplitHostPort(s.DialAddr); err == nil {
		host = h
	} else if i := strings.LastIndexByte(s.Addr, ':'); i >= 0 {
		host = s.Addr[:i]
	}
	if p.ServerTLSServerName == "" {
		return host
	}
	return strings.NewReplacer("{server}", s.Name, "{host}", host).Replace(p.ServerTLSServerName)
}
