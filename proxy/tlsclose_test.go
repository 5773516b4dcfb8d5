package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Guards that a forced close of a TLS client closes its socket at once:
// crypto/tls's Close first writes close_notify, with a 5 s deadline, which
// a client that does not read holds up. The client sees its connection end
// without close_notify: no byte more after its last reply.
func TestTLSForcedCloseSkipsCloseNotify(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, t.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, tlsListenerKeys(files, ""), r.Addr+":1 server0")
	raw, err := net.DialTimeout("tcp", tp.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingConn{Conn: raw}
	conn := tls.Client(counted, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	defer conn.Close()
	c := proxytest.NewConn(conn)
	c.Timeout = 10 * time.Second
	if rep, err := c.Do("GET", "k"); err != nil || !rep.Nil {
		t.Fatalf("GET k = %v, %v", rep, err)
	}
	st := tp.srv.poolList()[0].servers[0].stats
	sent := st.Requests.Load()
	before := counted.read.Load()
	// A request the paused server never answers keeps the client in its
	// batch, so Shutdown's deadline closes it by force.
	r.Pause()
	defer r.Resume()
	if err := c.Send("GET", "k"); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); st.Requests.Load() == sent; {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	tp.srv.Shutdown(ctx)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 64)); n != 0 || err == nil {
		t.Fatalf("read after the forced close: %d bytes, %v; want the connection's end", n, err)
	}
	if n := counted.read.Load() - before; n != 0 {
		t.Fatalf("%d bytes came after the last reply, before the connection ended; want none: a close_notify written by force", n)
	}
}

// countingConn counts the bytes read from its connection.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}
