package config

// Users and the proxy's own identity on its servers, shardproxy's keys:
//
//	acl_file: PATH         the pool's users, in Redis' ACL file syntax
//	                       (proxy/acl), read when the config is loaded and
//	                       at every reload; a relative PATH is relative to
//	                       the config file's directory. Without it the
//	                       pool has Redis' default user alone, with
//	                       redis_auth as its password.
//	server_auth_user: NAME the user the proxy's server connections
//	                       authenticate as (AUTH NAME password); "default"
//	                       when absent. Needs one of:
//	server_auth_password: P, server_auth_password_file: PATH,
//	server_auth_password_env: NAME
//	                       its password, as redis_auth, redis_auth_file and
//	                       redis_auth_env give one.
//
// redis_auth is Redis' requirepass: the default user's password. With an
// acl_file that names the default user, the file says its password and
// redis_auth (or _file, _env) is refused; with one that does not, the
// default user is Redis' (every key, channel and command) with redis_auth
// as its password. The proxy authenticates to its servers with the
// server_auth_* keys when the pool has them, else with redis_auth as
// today.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/acl"
	"github.com/shardproxy/shardproxy/proxy/internal/boundedfile"
)

// aclBuilder is what the pool's user keys said, until finishACL reads the
// files they name.
type aclBuilder struct {
	file              string // acl_file as written
	passFile, passEnv string // server_auth_password_file, _env as written
}

// aclKey reports whether key is one of the keys of this file.
func aclKey(key string) bool {
	switch key {
	case "acl_file", "server_auth_user", "server_auth_password", "server_auth_password_file", "server_auth_password_env":
		return true
	}
	return false
}

// setACL applies one of the keys of this file; done is false for another
// key.
func (b *poolBuilder) setACL(key, value string) (done bool, err error) {
	if !aclKey(key) {
		return false, nil
	}
	if b.seen[key] {
		return true, b.errorf(key, "duplicate key")
	}
	b.seen[key] = true
	switch key {
	case "acl_file":
		b.acl.file = value
	case "server_auth_user":
		if strings.ContainsAny(value, " \t\r\n") {
			return true, b.errorf(key, "%q: a Redis user name has no spaces", value)
		}
		b.pc.ServerAuthUser = value
	case "server_auth_password":
		b.pc.ServerAuthPassword = value
	case "server_auth_password_file":
		b.acl.passFile = value
	case "server_auth_password_env":
		b.acl.passEnv = value
	}
	return true, nil
}

// finishACL reads the acl_file and the server password, once the pool's
// redis_auth is known.
func (b *poolBuilder) finishACL(pc *Pool, dir string) error {
	var passKeys []string
	for _, k := range []string{"server_auth_password", "server_auth_password_file", "server_auth_password_env"} {
		if b.seen[k] {
			passKeys = append(passKeys, k)
		}
	}
	if len(passKeys) > 1 {
		return b.errorf(passKeys[1], "give only one of server_auth_password, server_auth_password_file and server_auth_password_env")
	}
	switch {
	case b.seen["server_auth_password_file"]:
		path := resolvePath(dir, b.acl.passFile)
		data, err := boundedfile.Read(path, maxAuthFileSize)
		if err != nil {
			return fmt.Errorf("pool %q: server_auth_password_file: %w", pc.Name, err)
		}
		pc.ServerAuthPassword = strings.TrimRight(string(data), "\r\n")
		if pc.ServerAuthPassword == "" {
			return b.errorf("server_auth_password_file", "%s is empty", path)
		}
	case b.seen["server_auth_password_env"]:
		v, ok := os.LookupEnv(b.acl.passEnv)
		if !ok {
			return b.errorf("server_auth_password_env", "environment variable %q is not set", b.acl.passEnv)
		}
		if v == "" {
			return b.errorf("server_auth_password_env", "environment variable %q is empty", b.acl.passEnv)
		}
		pc.ServerAuthPassword = v
	}
	if pc.ServerAuthUser != "" && len(passKeys) == 0 {
		return b.errorf("server_auth_user", "needs a password: server_auth_password, server_auth_password_file or server_auth_password_env")
	}
	if !b.seen["acl_file"] {
		return nil
	}
	path := resolvePath(dir, b.acl.file)
	data, err := boundedfile.Read(path, acl.MaxFileSize)
	if err != nil {
		return fmt.Errorf("pool %q: acl_file: %w", pc.Name, err)
	}
	users, err := acl.Parse(path, data)
	if err != nil {
		return fmt.Errorf("pool %q: acl_file: %w", pc.Name, err)
	}
	if pc.RedisAuth != "" {
		if users.NamesDefault() {
			key := "redis_auth"
			for _, k := range []string{"redis_auth_file", "redis_auth_env"} {
				if b.seen[k] {
					key = k
				}
			}
			return b.errorf(key, "the acl_file %s names the default user, whose password it gives; leave out one of them", path)
		}
		users = users.WithDefaultPassword(pc.RedisAuth)
	}
	pc.ACLFile, pc.Users = path, users
	return nil
}

// resolvePath is path as written in the config file, relative to dir (the
// file's directory) unless absolute or dir is "".
func resolvePath(dir, path string) string {
	if dir != "" && !filepath.IsAbs(path) {
		return filepath.Join(dir, path)
	}
	return path
}

// ServerAuth is what the pool's server connections authenticate with: the
// server_auth_* keys when given (user "" for the default user), else
// redis_auth; password "" for none.
func (p *Pool) ServerAuth() (user, password string) {
	if p.ServerAuthPassword != "" {
		return p.ServerAuthUser, p.ServerAuthPassword
	}
	return "", p.RedisAuth
}
