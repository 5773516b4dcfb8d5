package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// buildBinary builds shardproxy once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shardproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// reloads reads the successful and rejected reload counts from /discovery.
func reloads(t *testing.T, statsAddr string) (ok, rejected int64) {
	t.Helper()
	resp, err := http.Get("http://" + statsAddr + "/discovery")
	if err != nil {
		t.Fatalf("GET /discovery: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Reloads  int64 `json:"reloads"`
		Rejected int64 `json:"reloads_rejected"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/discovery: %v\n%s", err, body)
	}
	return doc.Reloads, doc.Rejected
}

// The config file changes three ways while clients send a steady load:
// edited in place, replaced by rename, and swapped like a Kubernetes
// ConfigMap volume (a ..data symlink). Every change is applied within a
// second or two and no client sees an error. A bad file is rejected and a
// SIGHUP reloads the good one.
func TestReloadUnderLoad(t *testing.T) {
	bin := buildBinary(t)
	a, b, c := proxytest.StartRedis(t), proxytest.StartRedis(t), proxytest.StartRedis(t)
	port, stats := proxytest.FreePort(t), proxytest.FreePort(t)
	conf := func(servers ...string) []byte {
		s := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  timeout: 2000\n  servers:\n", port)
		for _, srv := range servers {
			s += "    - " + srv + "\n"
		}
		return []byte(s)
	}
	// It starts as a plain file; step 3 turns it into a ConfigMap volume:
	// dir/nutcracker.yml -> ..data/nutcracker.yml, ..data -> ..vN, and a
	// change swaps ..data as the kubelet does.
	dir := t.TempDir()
	path := filepath.Join(dir, "nutcracker.yml")
	os.WriteFile(path, conf(a.Addr+":1 s0"), 0o644)
	version := 0
	swap := func(data []byte) {
		version++
		v := fmt.Sprintf("..v%d", version)
		os.Mkdir(filepath.Join(dir, v), 0o755)
		os.WriteFile(filepath.Join(dir, v, "nutcracker.yml"), data, 0o644)
		os.Symlink(v, filepath.Join(dir, "..data_tmp"))
		os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
		os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..v%d", version-1)))
	}

	var logs lockedBuffer
	cmd := exec.Command(bin, "-c", path, "-s", fmt.Sprint(stats), "-a", "127.0.0.1")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	statsAddr := fmt.Sprintf("127.0.0.1:%d", stats)
	for i := 0; !proxytestAccepts(addr); i++ {
		if i == 100 {
			t.Fatalf("no listener:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Steady load: 4 connections, SET then GET of their own keys.
	var stop atomic.Bool
	var requests, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		conn := proxytest.Dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%d:%d", w, i%100)
				r, err := conn.Do("SET", key, "v")
				if err == nil && !r.IsError() {
					r, err = conn.Do("GET", key)
				}
				requests.Add(2)
				if err != nil || r.IsError() {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%q %v", r.Raw(), err))
					if err != nil {
						return
					}
				}
			}
		}()
	}
	waitReloads := func(want int64, how string) {
		t.Helper()
		start := time.Now()
		for {
			if ok, _ := reloads(t, statsAddr); ok >= want {
				t.Logf("%s: applied after %v", how, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: not applied:\n%s", how, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)

	// 1. Edited in place.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(conf(a.Addr+":1 s0", b.Addr+":1 s1"))
	f.Close()
	waitReloads(1, "edited in place")
	time.Sleep(300 * time.Millisecond)

	// 2. Replaced by rename.
	os.WriteFile(path+".tmp", conf(a.Addr+":1 s0", b.Addr+":2 s1", c.Addr+":1 s2"), 0o644)
	os.Rename(path+".tmp", path)
	waitReloads(2, "replaced by rename")
	time.Sleep(300 * time.Millisecond)

	// 3. ConfigMap-style symlink swap. First the file becomes the
	// volume's layout with the same content (no reload: same bytes), then
	// ..data is swapped to a new version.
	swap(conf(a.Addr+":1 s0", b.Addr+":2 s1", c.Addr+":1 s2"))
	os.Symlink("..data/nutcracker.yml", path+".link")
	os.Rename(path+".link", path)
	time.Sleep(300 * time.Millisecond)
	swap(conf(b.Addr+":1 s1", c.Addr+":1 s2"))
	waitReloads(3, "ConfigMap symlink swap")
	time.Sleep(300 * time.Millisecond)

	// A file that does not parse is rejected; the running config serves on.
	swap([]byte("alpha:\n  listen: nope\n"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, rejected := reloads(t, statsAddr); rejected >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad config not rejected:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// SIGHUP applies the file again once it is fixed.
	swap(conf(c.Addr + ":1 s2"))
	cmd.Process.Signal(syscall.SIGHUP)
	waitReloads(4, "SIGHUP")
	time.Sleep(300 * time.Millisecond)

	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v\n%s", n, requests.Load(), firstErr.Load(), logs.String())
	}
	if requests.Load() < 100 {
		t.Fatalf("only %d requests ran", requests.Load())
	}
	t.Logf("%d requests, 0 errors", requests.Load())
}

// lockedBuffer is an io.Writer safe for a child process's output and reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
