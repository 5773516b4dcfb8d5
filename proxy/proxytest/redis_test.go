package proxytest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// do sends one command and fails t on an I/O or protocol error.
func do(t *testing.T, c *proxytest.Conn, args ...string) proxytest.Reply {
	t.Helper()
	r, err := c.Do(args...)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return r
}

// expect sends one command and fails t unless the reply is raw, byte for byte.
func expect(t *testing.T, c *proxytest.Conn, raw string, args ...string) {
	t.Helper()
	if got := do(t, c, args...); string(got.Raw()) != raw {
		t.Errorf("%q = %q, want %q", args, got.Raw(), raw)
	}
}

func refuses(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func TestFreePort(t *testing.T) {
	seen := make(map[int]bool)
	for range 50 {
		p := proxytest.FreePort(t)
		if seen[p] {
			t.Fatalf("FreePort returned %d twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("FreePort = %d, which cannot be bound: %v", p, err)
		}
		l.Close()
	}
}

func TestStartRedis(t *testing.T) {
	r := proxytest.StartRedis(t)
	if want := "127.0.0.1:" + strconv.Itoa(r.Port); r.Addr != want {
		t.Errorf("Addr = %q, want %q", r.Addr, want)
	}
	c := r.Client(t)
	key := "k \r\n\x00\xff{é}"
	expect(t, c, "+OK\r\n", "SET", key, "v")
	expect(t, c, "$1\r\nv\r\n", "GET", key)
	expect(t, c, "*1\r\n$"+strconv.Itoa(len(key))+"\r\n"+key+"\r\n", "KEYS", "*")
	expect(t, c, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n", "CONFIG", "GET", "save")
	expect(t, c, "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n", "CONFIG", "GET", "appendonly")
	expect(t, c, "*2\r\n$3\r\ndir\r\n$"+strconv.Itoa(len(r.Dir))+"\r\n"+r.Dir+"\r\n", "CONFIG", "GET", "dir")
	expect(t, c, "*2\r\n$4\r\nbind\r\n$9\r\n127.0.0.1\r\n", "CONFIG", "GET", "bind")
	if !strings.Contains(r.Log(), "Ready to accept connections") {
		t.Errorf("Log() = %q, want redis-server's start-up log", r.Log())
	}
}

func TestConnPipeline(t *testing.T) {
	c := proxytest.StartRedis(t).Client(t)
	const n = 2000
	for range n {
		if err := c.Send("INCR", "counter"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		r, err := c.Read()
		if err != nil || r.Type != ':' || r.Int != int64(i+1) {
			t.Fatalf("reply %d = %v, %v; want :%d", i, r, err, i+1)
		}
	}
	expect(t, c, "*3\r\n:1\r\n*2\r\n:2\r\n*1\r\n$1\r\na\r\n$-1\r\n",
		"EVAL", "return {1, {2, {'a'}}, false}", "0")
	expect(t, c, "*3\r\n$4\r\n2000\r\n$-1\r\n$-1\r\n", "MGET", "counter", "none", "")
	expect(t, c, "*0\r\n", "KEYS", "nothing*")
	expect(t, c, "-ERR unknown command 'NOPE', with args beginning with: \r\n", "NOPE")
}

func TestConnWriteRaw(t *testing.T) {
	c := proxytest.StartRedis(t).Client(t)
	if err := c.WriteRaw([]byte("PING\r\n*1\r\n$4\r\nPI")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRaw([]byte("NG\r\n")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r, err := c.Read(); err != nil || string(r.Raw()) != "+PONG\r\n" {
			t.Fatalf("PING = %q, %v; want +PONG", r.Raw(), err)
		}
	}
	if err := c.WriteRaw([]byte("*1\r\n$-2\r\n")); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Read(); err != nil || !r.IsError() {
		t.Fatalf("reply to a negative bulk length = %v, %v; want an error", r, err)
	}
	if r, err := c.Read(); err != io.EOF {
		t.Fatalf("after a protocol error: %v, %v; want EOF", r, err)
	}
}

func TestRedisPassword(t *testing.T) {
	r := proxytest.StartRedis(t, proxytest.RedisPassword("s3cret"))
	expect(t, proxytest.Dial(t, r.Addr), "-NOAUTH Authentication required.\r\n", "GET", "x")
	expect(t, r.Client(t), "$-1\r\n", "GET", "x")
}

func TestRedisUnixSocket(t *testing.T) {
	r := proxytest.StartRedis(t, proxytest.RedisUnixSocket(""))
	if r.Unix == "" {
		t.Fatal("Unix is empty")
	}
	expect(t, proxytest.Dial(t, r.Unix), "+PONG\r\n", "PING")
}

func TestRedisArgs(t *testing.T) {
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--databases", "3"))
	expect(t, r.Client(t), "*2\r\n$9\r\ndatabases\r\n$1\r\n3\r\n", "CONFIG", "GET", "databases")
}

func TestRedisStartFailureShowsLog(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	ft.run(func() { proxytest.StartRedis(ft, proxytest.RedisArgs("--no-such-directive", "1")) })
	if !ft.failed || !strings.Contains(ft.msg, "no-such-directive") {
		t.Errorf("StartRedis with a bad directive: failed=%v, message %q; want the log naming the directive", ft.failed, ft.msg)
	}
}

// fatalRecorder records Fatal instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fatalRecorder) run(fn func()) {
	var wg sync.WaitGroup
	wg.Go(fn)
	wg.Wait()
}

func TestRedisStopRestart(t *testing.T) {
	r := proxytest.StartRedis(t)
	expect(t, r.Client(t), "+OK\r\n", "SET", "k", "v")
	addr, dir := r.Addr, r.Dir
	r.Stop()
	if !refuses(addr) {
		t.Fatal("redis-server still accepts connections after Stop")
	}
	r.Restart(t)
	if r.Addr != addr || r.Dir != dir {
		t.Errorf("after Restart: Addr %q, Dir %q; want %q, %q", r.Addr, r.Dir, addr, dir)
	}
	expect(t, r.Client(t), "$-1\r\n", "GET", "k")
	r.Restart(t) // while running
	r.Kill()
	if !refuses(addr) {
		t.Fatal("redis-server still accepts connections after Kill")
	}
	r.Kill()
	r.Stop()
}

func TestRedisPause(t *testing.T) {
	r := proxytest.StartRedis(t)
	c := r.Client(t)
	c.Timeout = 200 * time.Millisecond
	r.Pause()
	_, err := c.Do("PING")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	r.Resume()
	expect(t, r.Client(t), "+PONG\r\n", "PING")
}

// Cleanup kills the server when the test that started it ends.
func TestRedisCleanup(t *testing.T) {
	var addr string
	t.Run("start", func(t *testing.T) { addr = proxytest.StartRedis(t).Addr })
	if !refuses(addr) {
		t.Errorf("redis-server at %s still runs after its test ended", addr)
	}
}

// A test binary killed by SIGKILL, as go test -timeout or a CI runner does,
// leaves no redis-server behind.
func TestKilledTestLeavesNoRedis(t *testing.T) {
	if os.Getenv("PROXYTEST_ORPHAN") == "1" {
		fmt.Printf("addr %s\n", proxytest.StartRedis(t).Addr)
		time.Sleep(time.Minute)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledTestLeavesNoRedis$", "-test.v")
	cmd.Env = append(os.Environ(), "PROXYTEST_ORPHAN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addr string
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the child test printed no address")
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !refuses(addr) {
		if time.Now().After(deadline) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Write(proxytest.AppendCommand(nil, "SHUTDOWN", "NOSAVE"))
				c.Close()
			}
			t.Fatalf("redis-server at %s outlived the killed test binary", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
