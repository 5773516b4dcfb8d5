package proxytest

import (
	"net"
	"sync"
	"testing"
)

var handedOut struct {
	mu    sync.Mutex // guards ports
	ports map[int]bool
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// listens on 127.0.0.1:0, notes the port and closes the listener. A port is
// never returned twice by one test binary, so parallel tests do not collide.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("proxytest: FreePort: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		handedOut.mu.Lock()
		if handedOut.ports == nil {
			handedOut.ports = make(map[int]bool)
		}
		fresh := !handedOut.ports[port]
		handedOut.ports[port] = true
		handedOut.mu.Unlock()
		if fresh {
			return port
		}
	}
	t.Fatal("proxytest: FreePort: no unused port after 100 tries")
	return 0
}
