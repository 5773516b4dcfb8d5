package proxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// The client limit is nutcracker's: the open file limit less each pool's
// listener and server_connections per server, less the reserve (32, and
// the stats port); a Reload that adds servers lowers it.
func TestClientLimitFromOpenFiles(t *testing.T) {
	yaml := func(servers int) string {
		y := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n  server_connections: 2\n  servers:\n", proxytest.FreePort(t))
		for i := range servers {
			y += fmt.Sprintf("    - 127.0.0.1:%d:1\n", 7200+i)
		}
		return y + fmt.Sprintf("beta:\n  listen: 127.0.0.1:%d\n  redis: true\n  servers:\n    - 127.0.0.1:7300:1\n", proxytest.FreePort(t))
	}
	srv, err := NewServer(mustParse(t, yaml(3)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	// alpha: 3 servers × 2 connections + its listener; beta: 1 + 1.
	if got, want := clientLimit(10000, srv.poolList()), int64(10000-33-7-2); got != want {
		t.Errorf("clientLimit(10000) = %d, want %d", got, want)
	}
	if got := clientLimit(40, srv.poolList()); got != 0 {
		t.Errorf("clientLimit(40) = %d, want 0: nothing is left for clients", got)
	}
	files := openFilesLimit()
	if files <= 0 {
		t.Fatalf("openFilesLimit() = %d", files)
	}
	if got, want := snapshotValue(srv, stats.MaxClientConnections), files-33-7-2; got != want {
		t.Errorf("max_client_connections = %d with an open file limit of %d, want %d", got, files, want)
	}
	if got := snapshotValue(srv, stats.OpenFilesLimit); got != files {
		t.Errorf("open_files_limit = %d, want %d", got, files)
	}
	if err := srv.Reload(mustParse(t, yaml(5))); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshotValue(srv, stats.MaxClientConnections), files-33-11-2; got != want {
		t.Errorf("max_client_connections = %d after a reload to 5 servers, want %d", got, want)
	}

	fixed, err := NewServer(mustParse(t, yaml(3)), Options{MaxClients: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fixed.Shutdown(t.Context()) })
	if got := snapshotValue(fixed, stats.MaxClientConnections); got != 7 {
		t.Errorf("max_client_connections = %d with MaxClients 7", got)
	}
}

// snapshotValue is one process value of srv's Snapshot.
func snapshotValue(srv *Server, index int) int64 {
	var snap stats.Snapshot
	srv.Snapshot(&snap)
	return snap.Process[index]
}

// The client limit holds over all pools together: past it a client of any
// pool gets -ERR max number of clients reached and is closed and counted,
// and once a client leaves the next one is served.
func TestMaxClientsOverAllPools(t *testing.T) {
	r := proxytest.StartRedis(t)
	alpha, beta := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1\nbeta:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1\n",
		alpha, r.Addr, beta, r.Addr), Options{MaxClients: 2})
	a, b := proxytest.Dial(t, alpha), proxytest.Dial(t, beta)
	for _, c := range []*proxytest.Conn{a, b} {
		if got := do(t, c, "SET", "k", "v"); got != "+OK\r\n" {
			t.Fatalf("SET = %q", got)
		}
	}
	for _, addr := range []string{alpha, beta} {
		over := proxytest.Dial(t, addr)
		r, err := over.Read()
		if err != nil || string(r.Raw()) != "-ERR max number of clients reached\r\n" {
			t.Fatalf("a third client on %s: %q, %v; want the max clients error", addr, r.Raw(), err)
		}
		if _, err := over.Read(); err != io.EOF {
			t.Fatalf("a third client on %s after the error: %v, want its connection closed", addr, err)
		}
	}
	if got := snapshotValue(srv, stats.RejectedConnections); got != 2 {
		t.Errorf("rejected_connections = %d, want 2", got)
	}
	a.Close()
	waitFor(t, "the closed client no longer counted", func() bool { return srv.stats.CurrConnections.Load() == 1 })
	if got := do(t, proxytest.Dial(t, beta), "GET", "k"); got != "$1\r\nv\r\n" {
		t.Fatalf("a client after one left = %q", got)
	}
	if got := do(t, b, "PING"); got != "+PONG\r\n" {
		t.Fatalf("the client that stayed = %q", got)
	}
}

// manyClients is how many clients TestManyClients opens when the open
// file limit allows.
const manyClients = 10000

// Ten thousand clients at once are all served, twice each, and when they
// leave the proxy holds no goroutine and no file descriptor more than
// before they came.
func TestManyClients(t *testing.T) {
	r := proxytest.StartRedis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1\n", addr, r.Addr), Options{})
	warm := proxytest.Dial(t, addr)
	if got := do(t, warm, "SET", "k", "v"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	warm.Close()
	waitFor(t, "the first client gone", func() bool { return srv.stats.CurrConnections.Load() == 0 })

	// Each client is two descriptors in this process: its socket and the
	// proxy's.
	baseFDs, baseGoroutines := openFDCount(t), runtime.NumGoroutine()
	const margin = 64
	files := raiseOpenFiles(t, uint64(baseFDs+2*manyClients+margin))
	n := min(manyClients, (int(files)-baseFDs-margin)/2)
	if n < manyClients {
		t.Logf("%d clients, not %d: the open file limit is %d and cannot be raised", n, manyClients, files)
	}
	srv.setClientLimit(srv.poolList())

	conns := make([]net.Conn, n)
	// From an address of their own: ten thousand ports taken from
	// 127.0.0.1's ephemeral range would collide with the ports other
	// tests on the machine pick there to listen on.
	dialer := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 77)}}
	forEachClient(t, n, func(i int) error {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			return err
		}
		// Closed with a reset, so the test leaves no TIME_WAIT sockets
		// holding loopback ports behind it.
		c.(*net.TCPConn).SetLinger(0)
		conns[i] = c
		return roundTrip(c, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n")
	})
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if got := srv.stats.CurrConnections.Load(); got != int64(n) {
		t.Errorf("curr_connections = %d with %d clients", got, n)
	}
	// Every client is still usable, through the server too.
	forEachClient(t, n, func(i int) error {
		return roundTrip(conns[i], "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "$1\r\nv\r\n")
	})
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}

	// A few runtime goroutines (timers, the GC's workers) may come and go.
	const slack = 5
	deadline := time.Now().Add(time.Minute)
	for {
		fds, goroutines := openFDCount(t), runtime.NumGoroutine()
		if srv.stats.CurrConnections.Load() == 0 && fds <= baseFDs+slack && goroutines <= baseGoroutines+slack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d clients left: %d counted, %d open descriptors, %d goroutines; before they came %d and %d", n, srv.stats.CurrConnections.Load(), fds, goroutines, baseFDs, baseGoroutines)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roundTrip writes req on c and reads exactly want back.
func roundTrip(c net.Conn, req, want string) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("%q: %w (read %q)", req, err, got)
	}
	if string(got) != want {
		return fmt.Errorf("%q answered %q, want %q", req, got, want)
	}
	return nil
}

// forEachClient runs f(0) ... f(n-1) on a few goroutines and fails t with the
// first error.
func forEachClient(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					select {
					case errs <- fmt.Errorf("client %d: %w", i, err):
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// openFDCount is how many file descriptors the process has open.
func openFDCount(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries) - 1 // the directory ReadDir opened
}

// raiseOpenFiles raises the process's open file limit to want if it is
// lower, its hard limit too where the process may (as root), and puts the
// limit back when t ends. It returns the limit in force.
func raiseOpenFiles(t *testing.T, want uint64) uint64 {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= want {
		return old.Cur
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, old.Max)}); err != nil {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: old.Max, Max: old.Max}); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("putting the open file limit back: %v", err)
		}
	})
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	return now.Cur
}
