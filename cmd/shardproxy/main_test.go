package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

func TestTestConf(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(good, []byte("alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n    - 127.0.0.1:6379:1\n"), 0o644)
	os.WriteFile(bad, []byte("alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  hash: FNV1A_64\n  servers:\n    - 127.0.0.1:6379:1\n"), 0o644)
	for _, tc := range []struct {
		file string
		code int
		want string
	}{
		{good, 0, "syntax is ok"},
		{bad, 1, `pool "alpha": hash`},
		{filepath.Join("..", "..", "deploy", "demo", "nutcracker.yml"), 0, "syntax is ok"},
	} {
		var out, errOut bytes.Buffer
		if code := run([]string{"-t", "-c", tc.file}, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("-t -c %s: exit %d, stderr %q; want exit %d and %q", tc.file, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// -t on a config path that is a FIFO or a file over the config's bound
// answers an error instead of blocking or reading it all.
func TestTestConfNotRegularOrTooLarge(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Let a reader stuck in opening the FIFO go when the test ends.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	big := filepath.Join(dir, "big.yml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", 8<<20)), 0o644); err != nil { // over the 4 MiB bound
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{fifo, "is not a regular file"},
		{big, "larger than"},
	} {
		var out, errOut bytes.Buffer
		done := make(chan int, 1)
		go func() { done <- run([]string{"-t", "-c", tc.file}, &out, &errOut) }()
		select {
		case code := <-done:
			if code != 1 || !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("-t -c %s: exit %d, stderr %q; want exit 1 and %q", tc.file, code, errOut.String(), tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("-t -c %s: no answer within 10s", tc.file)
		}
	}
}

// Every configuration example in the README must pass -t.
func TestReadmeExamples(t *testing.T) {
	t.Setenv("REDIS_PASSWORD", "example")
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```yaml\n")
	if len(blocks) < 2 {
		t.Fatalf("README has no yaml example")
	}
	// The ACL file example is the users.acl the yaml examples name.
	var users string
	if _, b, ok := strings.Cut(string(readme), "```acl\n"); ok {
		users = b[:strings.Index(b, "```")]
	}
	for i, b := range blocks[1:] {
		conf := b[:strings.Index(b, "```")]
		dir := t.TempDir()
		path := filepath.Join(dir, "conf.yml")
		os.WriteFile(path, []byte(conf), 0o644)
		os.WriteFile(filepath.Join(dir, "users.acl"), []byte(users), 0o600)
		var out, errOut bytes.Buffer
		if code := run([]string{"-t", "-c", path}, &out, &errOut); code != 0 {
			t.Errorf("README yaml example %d fails -t: %s\n%s", i+1, errOut.String(), conf)
		}
	}
}

func TestFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-V"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "shardproxy") {
		t.Errorf("-V: exit %d, %q", code, out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, flag := range []string{"-c", "-s", "-a", "-i", "-t", "-v", "-o", "-p", "-V", "-D", "-d", "-m", "--shutdown-grace", "--log-format", "--cores"} {
		if !strings.Contains(errOut.String(), flag+",") && !strings.Contains(errOut.String(), "    "+flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
	out.Reset()
	if code := run([]string{"-D"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "out_queue_bytes") {
		t.Errorf("-D: exit %d, %q", code, out.String())
	}
	for _, bad := range []string{"0", "-1", "many"} {
		errOut.Reset()
		if code := run([]string{"--cores", bad, "-V"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--cores must be auto or a positive number") {
			t.Errorf("--cores %s: exit %d, %q; want exit 2 and the reason", bad, code, errOut.String())
		}
	}
}

// SIGTERM lets the request in flight finish, then exits 0.
func TestSigtermDrains(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "shardproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := proxytest.StartRedis(t)
	port, stats := proxytest.FreePort(t), proxytest.FreePort(t)
	conf := filepath.Join(t.TempDir(), "nutcracker.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  servers:\n    - %s:1\n", port, r.Addr)), 0o644)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-c", conf, "-s", fmt.Sprint(stats), "-a", "127.0.0.1")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var c *proxytest.Conn
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("shardproxy did not listen on %s:\n%s", addr, logs.String())
		}
		if proxytestAccepts(addr) {
			c = proxytest.Dial(t, addr)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A slow request is in flight when SIGTERM arrives.
	c.Send("EVAL", "local t = redis.call('time'); while true do local n = redis.call('time'); if (n[1]-t[1])*1000000 + (n[2]-t[2]) > 300000 then break end end; return 'done'", "1", "k")
	c.Flush()
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	reply, err := c.Read()
	if err != nil || string(reply.Raw()) != "$4\r\ndone\r\n" {
		t.Fatalf("request in flight at SIGTERM: %q, %v", reply.Raw(), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("shardproxy did not exit after SIGTERM:\n%s", logs.String())
	}
}

func proxytestAccepts(addr string) bool {
	c, err := (&netDialer).Dial("tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

var netDialer = net.Dialer{Timeout: time.Second}

// -d detaches: the command returns at once and the daemon serves, writing
// its pid file.
func TestDaemonize(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "shardproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := proxytest.StartRedis(t)
	port, stats := proxytest.FreePort(t), proxytest.FreePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nutcracker.yml")
	pidFile := filepath.Join(dir, "shardproxy.pid")
	os.WriteFile(conf, []byte(fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  servers:\n    - %s:1\n", port, r.Addr)), 0o644)
	out, err := exec.Command(bin, "-d", "-c", conf, "-s", fmt.Sprint(stats), "-a", "127.0.0.1", "-p", pidFile, "-o", filepath.Join(dir, "log")).CombinedOutput()
	if err != nil {
		t.Fatalf("shardproxy -d: %v\n%s", err, out)
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			fmt.Sscan(string(b), &pid)
		}
		if pid > 0 && proxytestAccepts(fmt.Sprintf("127.0.0.1:%d", port)) {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("daemon did not start:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	c := proxytest.Dial(t, fmt.Sprintf("127.0.0.1:%d", port))
	if r, err := c.Do("SET", "d", "1"); err != nil || string(r.Raw()) != "+OK\r\n" {
		t.Fatalf("SET through the daemon: %q, %v", r.Raw(), err)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("daemon did not exit on SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("pid file left after exit: %v", err)
	}
}
