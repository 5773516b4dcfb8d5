//go:build !linux

package proxy

import (
	"context"
	"net"
)

// listenTCP opens a TCP listener; the backlog is the system's default here.
func listenTCP(addr string, _ int) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}
