package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The user keys: acl_file read and parsed at load, with redis_auth as the
// default user's password only when the file names no default user, and
// the server_auth_* keys.
func TestACLKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("users.acl", "user alice on >apass ~app:* +@read\n")
	write("named.acl", "user default on >dpass ~* +@all\n")
	write("bad.acl", "user alice on +nosuch\n")
	write("proxy.pass", "ppass\n")
	t.Setenv("SHARDPROXY_TEST_SERVER_PASS", "epass")
	pool := "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n%s  servers:\n    - 127.0.0.1:6379:1\n"
	for _, tc := range []struct {
		name, keys string
		err        string // part of the error; "" for none
		check      func(t *testing.T, p *Pool)
	}{
		{name: "acl_file", keys: "  acl_file: users.acl\n", check: func(t *testing.T, p *Pool) {
			if p.ACLFile != filepath.Join(dir, "users.acl") || p.Users.Authenticate([]byte("alice"), []byte("apass")) == nil {
				t.Errorf("ACLFile %q, users %v", p.ACLFile, p.Users.Names())
			}
			if p.Users.AuthRequired() {
				t.Error("the default user of a file without one needs a password")
			}
		}},
		{name: "redis_auth is the default password", keys: "  acl_file: users.acl\n  redis_auth: rpass\n", check: func(t *testing.T, p *Pool) {
			if p.Users.Authenticate([]byte("default"), []byte("rpass")) == nil || !p.Users.AuthRequired() {
				t.Error("redis_auth is not the default user's password")
			}
			if u, pw := p.ServerAuth(); u != "" || pw != "rpass" {
				t.Errorf("ServerAuth = %q, %q", u, pw)
			}
		}},
		{name: "redis_auth with a named default", keys: "  acl_file: named.acl\n  redis_auth: rpass\n", err: `redis_auth: the acl_file ` + filepath.Join(dir, "named.acl") + ` names the default user`},
		{name: "missing file", keys: "  acl_file: nosuch.acl\n", err: `pool "alpha": acl_file: open ` + filepath.Join(dir, "nosuch.acl")},
		{name: "bad file", keys: "  acl_file: bad.acl\n", err: `pool "alpha": acl_file: `},
		{name: "server user", keys: "  server_auth_user: proxy\n  server_auth_password_file: proxy.pass\n", check: func(t *testing.T, p *Pool) {
			if u, pw := p.ServerAuth(); u != "proxy" || pw != "ppass" {
				t.Errorf("ServerAuth = %q, %q", u, pw)
			}
		}},
		{name: "server password env", keys: "  server_auth_user: proxy\n  server_auth_password_env: SHARDPROXY_TEST_SERVER_PASS\n", check: func(t *testing.T, p *Pool) {
			if u, pw := p.ServerAuth(); u != "proxy" || pw != "epass" {
				t.Errorf("ServerAuth = %q, %q", u, pw)
			}
		}},
		{name: "server user without password", keys: "  server_auth_user: proxy\n", err: "server_auth_user: needs a password"},
		{name: "two server passwords", keys: "  server_auth_password: a\n  server_auth_password_env: SHARDPROXY_TEST_SERVER_PASS\n", err: "give only one of server_auth_password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "nutcracker.yml")
			data := []byte(strings.Replace(pool, "%s", tc.keys, 1))
			cfg, err := ParseFile(path, data)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("ParseFile = %v, want an error with %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatalf("ParseFile: %v", err)
			case tc.err == "":
				tc.check(t, &cfg.Pools[0])
			}
		})
	}
}
