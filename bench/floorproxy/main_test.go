//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// TestFloorproxy checks that the yardstick does the work it stands for:
// every reply comes back in request order, over a pipeline that spans all
// servers, and each key is where nutcracker puts it.
func TestFloorproxy(t *testing.T) {
	var servers, backends string
	for i := 1; i <= 3; i++ {
		r := proxytest.StartRedis(t)
		if i > 1 {
			servers += ","
		}
		servers += fmt.Sprintf("%s:redis%d", r.Addr, i)
		backends += fmt.Sprintf("   - %s:1 redis%d\n", r.Addr, i)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	done := make(chan error, 1)
	go func() { done <- run(addr, servers) }()

	var conn net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			conn = c
			break
		}
		select {
		case err := <-done:
			t.Fatalf("floorproxy ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("floorproxy does not accept on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))

	const n = 300
	var req []byte
	for i := 0; i < n; i++ {
		k, v := fmt.Sprint("key:", i), fmt.Sprint("value:", i)
		req = fmt.Appendf(req, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
	}
	for i := 0; i < n; i++ {
		k := fmt.Sprint("key:", i)
		req = fmt.Appendf(req, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
	}
	req = append(req, "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nINFO\r\n"...)
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i := 0; i < 2*n+2; i++ {
		r, err := proxytest.ReadReply(br)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		var want string
		switch {
		case i < n:
			want = "OK"
		case i < 2*n:
			want = fmt.Sprint("value:", i-n)
		case i == 2*n:
			want = "PONG"
		default:
			if !r.IsError() {
				t.Fatalf("a command without a key got %s, want an error", r)
			}
			continue
		}
		if r.IsError() || string(r.Str) != want {
			t.Fatalf("reply %d = %s, want %q: out of order or lost", i, r, want)
		}
	}

	// nutcracker over the same servers finds every key: the ring is its.
	nc := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	proxytest.StartNutcracker(t, fmt.Sprintf("test:\n  listen: %s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  servers:\n%s", nc, backends))
	ncConn, err := net.Dial("tcp", nc)
	if err != nil {
		t.Fatal(err)
	}
	defer ncConn.Close()
	ncConn.SetDeadline(time.Now().Add(10 * time.Second))
	nbr := bufio.NewReader(ncConn)
	for i := 0; i < n; i += 7 {
		k := fmt.Sprint("key:", i)
		fmt.Fprintf(ncConn, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
		r, err := proxytest.ReadReply(nbr)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint("value:", i); string(r.Str) != want {
			t.Fatalf("nutcracker's GET %s = %s, want %q: the key is not where nutcracker puts it", k, r, want)
		}
	}
}
