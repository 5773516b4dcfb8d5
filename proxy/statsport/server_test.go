package statsport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

func TestStatsHTTP(t *testing.T) {
	started := time.Now()
	tp := startTwoPools(t)
	pools := statsTestPools(tp)
	want := sendTraffic(t, tp, pools)
	addr := tp.stats

	before := time.Now()
	resp, body := httpGet(t, "http://"+addr+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET / = %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	checkStatsDocument(t, body, pools, want, started, before, time.Now())

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404},
		{"POST", "/", 405},
		{"HEAD", "/", 200},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}

	// HTTP/1.0 without keep-alive, as a shell script would send it.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	raw, err := io.ReadAll(c)
	if err != nil || !bytes.HasPrefix(raw, []byte("HTTP/1.0 200 OK\r\n")) || !bytes.HasSuffix(raw, []byte("}\n")) {
		t.Errorf("HTTP/1.0 GET / = %q, %v", raw, err)
	}
}

func TestHealthz(t *testing.T) {
	srv := newServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	addr := startStatsPort(t, srv, time.Minute)
	resp, body := httpGet(t, "http://"+addr+"/healthz")
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("GET /healthz = %s %q, want 200 \"ok\"", resp.Status, body)
	}
}

// ready reports what the snapshot says of readiness, which /readyz and
// shardproxy_ready report.
func ready(src Source) bool {
	var snap stats.Snapshot
	src.Snapshot(&snap)
	return snap.NotReady == ""
}

func TestReadyz(t *testing.T) {
	srv := newServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	addr := startStatsPort(t, srv, time.Minute)
	check := func(step string, status int, body string) {
		t.Helper()
		resp, got := httpGet(t, "http://"+addr+"/readyz")
		if resp.StatusCode != status || string(got) != body {
			t.Errorf("%s: GET /readyz = %d %q, want %d %q", step, resp.StatusCode, got, status, body)
		}
		if ready(srv) != (status == 200) {
			t.Errorf("%s: ready = %v", step, ready(srv))
		}
		wantReady := 0.0
		if status == 200 {
			wantReady = 1
		}
		if got := metricValue(metricWith(t, scrapeMetrics(t, addr), "shardproxy_ready", nil)); got != wantReady {
			t.Errorf("%s: shardproxy_ready = %v, want %v", step, got, wantReady)
		}
		if resp, got := httpGet(t, "http://"+addr+"/healthz"); resp.StatusCode != 200 || string(got) != "ok" {
			t.Errorf("%s: GET /healthz = %d %q, want 200 \"ok\"", step, resp.StatusCode, got)
		}
	}
	check("new", 503, "not ready")
	srv.SetReady(true)
	check("SetReady(true) before Start", 503, "not listening")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	check("started", 200, "ok")
	srv.SetReady(false)
	check("SetReady(false)", 503, "not ready")
	srv.SetReady(true)
	check("SetReady(true)", 200, "ok")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	check("Shutdown", 503, "shutting down")
}

// Close ends Serve, closes connections still being sniffed, and a closed
// Server serves nothing.
func TestStatsServerClose(t *testing.T) {
	srv := newServer(t, statsTestYAML(proxytest.FreePort(t), proxytest.FreePort(t)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss := New(srv, Options{})
	ss.plainWait = time.Minute
	errc := make(chan error, 1)
	go func() { errc <- ss.Serve(ln) }()
	keepAlive, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer keepAlive.Close()
	io.WriteString(keepAlive, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	keepAlive.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := keepAlive.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK")) {
		t.Fatalf("GET /healthz: %q %v", buf[:n], err)
	}
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := ss.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want http.ErrServerClosed", err)
	}
	if _, err := keepAlive.Read(buf); err == nil {
		t.Errorf("keep-alive HTTP connection still open after Close")
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Serve(ln2); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want http.ErrServerClosed", err)
	}
	if _, err := net.DialTimeout("tcp", ln2.Addr().String(), time.Second); err == nil {
		t.Errorf("Serve after Close left its listener open")
	}
}
