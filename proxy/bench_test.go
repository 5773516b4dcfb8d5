package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"
)

// benchmarkProxy sends GETs through the proxy from one connection with the
// given pipeline depth and reads every reply. Allocations are counted over
// the whole process, so they include the proxy's per-request work.
func benchmarkProxy(b *testing.B, depth int) {
	tp := startProxy(&testing.T{}, 3, "")
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var req []byte
	for i := 0; i < depth; i++ {
		req = append(req, fmt.Sprintf("*2\r\n$3\r\nGET\r\n$6\r\nkey:%02d\r\n", i)...)
	}
	reply := []byte("$-1\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	buf := make([]byte, len(reply)*depth)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProxyGet(b *testing.B)           { benchmarkProxy(b, 1) }
func BenchmarkProxyGetPipeline16(b *testing.B) { benchmarkProxy(b, 16) }

func BenchmarkDirectRedisGet(b *testing.B) {
	tp := startProxy(&testing.T{}, 1, "")
	conn, err := net.Dial("tcp", tp.redises[0].Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("*2\r\n$3\r\nGET\r\n$6\r\nkey:01\r\n")
	buf := make([]byte, 5)
	b.ReportAllocs()
	for b.Loop() {
		conn.Write(req)
		io.ReadFull(conn, buf)
	}
}

// BenchmarkProxySetParallel is redis-benchmark's shape: 50 connections,
// one SET at a time each.
func BenchmarkProxySetParallel(b *testing.B) {
	tp := startProxy(&testing.T{}, 3, "")
	b.SetParallelism(25)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("tcp", tp.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		req := []byte("*3\r\n$3\r\nSET\r\n$6\r\nkey:01\r\n$5\r\nvalue\r\n")
		buf := make([]byte, 5)
		for pb.Next() {
			conn.Write(req)
			if _, err := io.ReadFull(conn, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
