package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A pool's acl_file is watched: a user added or changed in it takes effect
// without a signal, clients of the changed user must AUTH again, and a bad
// file is rejected and counted while the users it would replace serve on.
func TestACLFileWatched(t *testing.T) {
	bin := buildBinary(t)
	r := proxytest.StartRedis(t)
	port, stats := proxytest.FreePort(t), proxytest.FreePort(t)
	dir := t.TempDir()
	aclPath := filepath.Join(dir, "users.acl")
	os.WriteFile(aclPath, []byte("user default off\nuser alice on >apass ~* +@all\n"), 0o600)
	path := filepath.Join(dir, "nutcracker.yml")
	os.WriteFile(path, fmt.Appendf(nil, "alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  acl_file: users.acl\n  servers:\n    - %s:1 s0\n", port, r.Addr), 0o644)

	var logs lockedBuffer
	cmd := exec.Command(bin, "-c", path, "-s", fmt.Sprint(stats), "-a", "127.0.0.1")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, statsAddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", stats)
	for i := 0; !proxytestAccepts(addr); i++ {
		if i == 100 {
			t.Fatalf("no listener:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	alice := proxytest.Dial(t, addr)
	if rep, err := alice.Do("AUTH", "alice", "apass"); err != nil || string(rep.Raw()) != "+OK\r\n" {
		t.Fatalf("AUTH alice = %v %v", rep, err)
	}
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for start := time.Now(); !done(); time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: not seen:\n%s", what, logs.String())
			}
		}
	}

	// Replaced by rename, as editors and the kubelet write files.
	os.WriteFile(aclPath+".tmp", []byte("user default off\nuser alice on >apass ~* +@all -set\nuser bob on >bpass ~* +@all\n"), 0o600)
	os.Rename(aclPath+".tmp", aclPath)
	waitFor("bob added", func() bool {
		c := proxytest.Dial(t, addr)
		defer c.Close()
		rep, err := c.Do("AUTH", "bob", "bpass")
		return err == nil && string(rep.Raw()) == "+OK\r\n"
	})
	if rep, _ := alice.Do("GET", "k"); string(rep.Raw()) != "-NOAUTH Authentication required.\r\n" {
		t.Errorf("changed user's client: GET = %q, want NOAUTH", rep.Raw())
	}

	// A bad file: rejected, and bob still authenticates.
	_, rejectedBefore := reloads(t, statsAddr)
	os.WriteFile(aclPath+".tmp", []byte("user bob on >bpass +nosuchcommand\n"), 0o600)
	os.Rename(aclPath+".tmp", aclPath)
	waitFor("bad file rejected", func() bool {
		_, rejected := reloads(t, statsAddr)
		return rejected > rejectedBefore
	})
	c := proxytest.Dial(t, addr)
	if rep, err := c.Do("AUTH", "bob", "bpass"); err != nil || string(rep.Raw()) != "+OK\r\n" {
		t.Errorf("AUTH bob after a bad file = %v %v", rep, err)
	}
}

// The ROLE probes of a group without Sentinel authenticate as
// server_auth_user, as its data connections do: on servers whose default
// user is off, the group finds its master and takes writes.
func TestRoleGroupsAuthenticateAsServerUser(t *testing.T) {
	serverACL := filepath.Join(t.TempDir(), "servers.acl")
	os.WriteFile(serverACL, []byte("user default off\nuser proxy on >ppass ~* &* +@all\n"), 0o600)
	master := proxytest.StartRedis(t, proxytest.RedisArgs("--aclfile", serverACL))
	replica := proxytest.StartRedis(t, proxytest.RedisArgs("--aclfile", serverACL, "--masteruser", "proxy", "--masterauth", "ppass",
		"--replicaof", "127.0.0.1", fmt.Sprint(master.Port)))
	rc := proxytest.Dial(t, replica.Addr)
	if rep, err := rc.Do("AUTH", "proxy", "ppass"); err != nil || rep.IsError() {
		t.Fatalf("AUTH proxy on the replica = %v %v", rep, err)
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if rep, err := rc.Do("ROLE"); err == nil && strings.Contains(string(rep.Raw()), "connected") {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the replica never connected to its master")
		}
	}
	addr, logs := startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  server_auth_user: proxy\n  server_auth_password: ppass\n"+
			"  group_members:\n    - g0 %s %s\n  servers:\n    - %s:1 g0\n", port, master.Addr, replica.Addr, master.Addr)
	}, "--discovery-sync-timeout", "10s")
	c := proxytest.Dial(t, addr)
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		rep, err := c.Do("SET", "k", "v")
		if err == nil && string(rep.Raw()) == "+OK\r\n" {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("SET through the group = %q %v\n%s", rep.Raw(), err, logs.String())
		}
	}
}

// A redis_cluster pool's slot-map discovery authenticates as
// server_auth_user, as its data connections do, so a cluster that takes
// no password for the default user's is found.
func TestClusterDiscoveryAuthenticatesAsServerUser(t *testing.T) {
	nodeACL := filepath.Join(t.TempDir(), "nodes.acl")
	os.WriteFile(nodeACL, []byte("user default on >dpass ~* &* +@all\nuser proxy on >ppass ~* &* +@all\n"), 0o600)
	c := proxytest.StartCluster(t, 3, 0, proxytest.RedisPassword("dpass"), proxytest.RedisArgs("--aclfile", nodeACL))
	addr, logs := startBinaryProxy(t, func(port int) string {
		return fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  redis_cluster: true\n  server_auth_user: proxy\n  server_auth_password: ppass\n  servers:\n    - %s:1\n", port, c.Nodes[0].Addr)
	}, "--discovery-sync-timeout", "10s")
	cl := proxytest.Dial(t, addr)
	for i := range 20 {
		if r, err := cl.Do("SET", fmt.Sprint("k", i), "v"); err != nil || string(r.Raw()) != "+OK\r\n" {
			t.Fatalf("SET k%d = %q, %v\n%s", i, r.Raw(), err, logs.String())
		}
	}
}
