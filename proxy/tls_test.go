package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startPool starts shardproxy with one pool whose servers are the given
// lines ("addr:weight name"); extra is added to the pool's YAML, indented
// by two spaces per line.
func startPool(t testing.TB, extra string, servers ...string) *testPool {
	t.Helper()
	return startPoolWith(t, Options{}, extra, servers...)
}

// startPoolWith is startPool with opts.
func startPoolWith(t testing.TB, opts Options, extra string, servers ...string) *testPool {
	t.Helper()
	port := proxytest.FreePort(t)
	var list strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&list, "    - %s\n", s)
	}
	yaml := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n%s  servers:\n%s", port, extra, list.String())
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, yaml)
	}
	srv, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &testPool{srv: srv, cfg: cfg, addr: fmt.Sprintf("127.0.0.1:%d", port)}
}

// tlsListenerKeys are the YAML lines of a TLS listener with files.
func tlsListenerKeys(files proxytest.TLSFiles, clientCA string) string {
	keys := fmt.Sprintf("  tls_cert_file: %s\n  tls_key_file: %s\n", files.Cert, files.Key)
	if clientCA != "" {
		keys += fmt.Sprintf("  tls_client_ca_file: %s\n", clientCA)
	}
	return keys
}

// dialTLS connects to addr with TLS, trusting ca, showing certs.
func dialTLS(t testing.TB, addr string, ca *x509.CertPool, certs ...tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: ca, Certificates: certs})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// A TLS pool serves redis-cli --tls, go-redis with TLS and a pipelining
// client, all through crypto/tls.
func TestTLSClients(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, t.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, tlsListenerKeys(files, ""), r.Addr+":1 server0")
	host, port, _ := net.SplitHostPort(tp.addr)

	out, err := exec.Command("redis-cli", "--tls", "--cacert", files.CA, "-h", host, "-p", port, "SET", "cli", "yes").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Fatalf("redis-cli --tls SET = %q, %v", out, err)
	}
	out, err = exec.Command("redis-cli", "--tls", "--cacert", files.CA, "-h", host, "-p", port, "GET", "cli").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "yes" {
		t.Fatalf("redis-cli --tls GET = %q, %v", out, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr, TLSConfig: &tls.Config{RootCAs: ca.Pool()}})
	defer rdb.Close()
	if err := rdb.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatalf("go-redis SET over TLS: %v", err)
	}
	if v, err := rdb.Get(ctx, "greeting").Result(); err != nil || v != "hello" {
		t.Fatalf("go-redis GET over TLS = %q, %v", v, err)
	}
	if got := do(t, r.Client(t), "GET", "cli"); got != "$3\r\nyes\r\n" {
		t.Fatalf("GET cli on the server = %q", got)
	}

	// A pipeline of replies, and one larger than a TLS record, in order.
	conn, err := dialTLS(t, tp.addr, ca.Pool())
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	c := proxytest.NewConn(conn)
	big := strings.Repeat("x", 100<<10)
	if got := do(t, c, "SET", "big", big); got != "+OK\r\n" {
		t.Fatalf("SET big = %q", got)
	}
	const n = 2000
	for i := range n {
		c.Send("INCR", "n")
		if i%500 == 0 {
			c.Send("GET", "big")
		}
	}
	for i := range n {
		rep, err := c.Read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if want := fmt.Sprintf(":%d\r\n", i+1); string(rep.Raw()) != want {
			t.Fatalf("INCR reply %d = %q, want %q", i, rep.Raw(), want)
		}
		if i%500 == 0 {
			if rep, err := c.Read(); err != nil || string(rep.Str) != big {
				t.Fatalf("GET big after INCR %d: %d bytes, %v", i, len(rep.Str), err)
			}
		}
	}

	// A blocking command, whose client is read while it blocks, and a
	// subscription, whose messages are written by another goroutine.
	if got := do(t, c, "BLPOP", "nothing", "0.2"); got != "*-1\r\n" {
		t.Fatalf("BLPOP that times out = %q", got)
	}
	if got := do(t, c, "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after BLPOP = %q", got)
	}
	if got := do(t, c, "SUBSCRIBE", "news"); got != "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n" {
		t.Fatalf("SUBSCRIBE = %q", got)
	}
	if err := rdb.Publish(ctx, "news", "hello").Err(); err != nil {
		t.Fatalf("PUBLISH over TLS: %v", err)
	}
	if rep, err := c.Read(); err != nil || string(rep.Raw()) != "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n" {
		t.Fatalf("message on the subscribed TLS client = %q, %v", rep.Raw(), err)
	}
}

// With tls_client_ca_file, a client must show a certificate signed by
// that CA: one without a certificate, or with one from another CA, is
// refused in the handshake.
func TestTLSMutualClients(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	dir := t.TempDir()
	files := ca.WriteTLSFiles(t, dir, "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, tlsListenerKeys(files, files.CA), r.Addr+":1 server0")

	conn, err := dialTLS(t, tp.addr, ca.Pool(), ca.KeyPair(t, "client"))
	if err != nil {
		t.Fatalf("TLS dial with a client certificate of the CA: %v", err)
	}
	if got := do(t, proxytest.NewConn(conn), "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING with a client certificate = %q", got)
	}

	certPEM, keyPEM := ca.Issue(t, "cli")
	certFile, keyFile := filepath.Join(dir, "cli.crt"), filepath.Join(dir, "cli.key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	host, port, _ := net.SplitHostPort(tp.addr)
	out, err := exec.Command("redis-cli", "--tls", "--cacert", files.CA, "--cert", certFile, "--key", keyFile, "-h", host, "-p", port, "PING").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "PONG" {
		t.Fatalf("redis-cli --tls --cert PING = %q, %v", out, err)
	}

	other := proxytest.NewCA(t, "another CA")
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no client certificate", nil},
		{"a certificate of another CA", []tls.Certificate{other.KeyPair(t, "client")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := dialTLS(t, tp.addr, ca.Pool(), tc.certs...)
			if err == nil {
				// In TLS 1.3 the client learns of the refusal at its
				// first read.
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				conn.Write([]byte("PING\r\n"))
				_, err = conn.Read(make([]byte, 64))
			}
			if err == nil {
				t.Fatal("the proxy served a client without a certificate of its CA")
			}
			if isTimeout(err) {
				t.Fatalf("refused client: %v, want the connection ended, not a hang", err)
			}
		})
	}
}

// servedCert returns the serial number of the certificate the listener at
// addr shows a new connection, and that connection.
func servedCert(t *testing.T, addr string, ca *x509.CertPool) (*tls.Conn, string) {
	t.Helper()
	conn, err := dialTLS(t, addr, ca)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	return conn, conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// A certificate rotated on disk as Kubernetes does it (a new "..data") is
// served to the next connection, without a restart, while connections
// made before keep working; files that do not load leave the last good
// certificate serving.
func TestTLSCertificateRotation(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	certA, keyA := ca.Issue(t, "first", "127.0.0.1")
	secret := proxytest.NewSecret(t, map[string][]byte{"tls.crt": certA, "tls.key": keyA})
	r := proxytest.StartRedis(t)
	logs := &syncBuffer{}
	opts := Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}
	tp := startPoolWith(t, opts, fmt.Sprintf("  tls_cert_file: %s\n  tls_key_file: %s\n", secret.Path("tls.crt"), secret.Path("tls.key")), r.Addr+":1 server0")

	old, serialA := servedCert(t, tp.addr, ca.Pool())
	oldClient := proxytest.NewConn(old)
	if got := do(t, oldClient, "SET", "k", "1"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}

	certB, keyB := ca.Issue(t, "second", "127.0.0.1")
	secret.Update(t, map[string][]byte{"tls.crt": certB, "tls.key": keyB})
	conn, serialB := servedCert(t, tp.addr, ca.Pool())
	if serialB == serialA {
		t.Fatalf("after the rotation a new connection got the old certificate (serial %s)", serialA)
	}
	if got := do(t, proxytest.NewConn(conn), "GET", "k"); got != "$1\r\n1\r\n" {
		t.Fatalf("GET on a connection with the new certificate = %q", got)
	}
	if got := do(t, oldClient, "INCR", "k"); got != ":2\r\n" {
		t.Fatalf("INCR on the connection made before the rotation = %q", got)
	}

	// A key that does not match its certificate keeps the last good pair.
	certC, _ := ca.Issue(t, "third", "127.0.0.1")
	secret.Update(t, map[string][]byte{"tls.crt": certC, "tls.key": keyB})
	if _, serial := servedCert(t, tp.addr, ca.Pool()); serial != serialB {
		t.Fatalf("after a bad rotation a new connection got serial %s, want the last good %s", serial, serialB)
	}
	if got := do(t, oldClient, "INCR", "k"); got != ":3\r\n" {
		t.Fatalf("INCR on the first connection after a bad rotation = %q", got)
	}
	servedCert(t, tp.addr, ca.Pool())
	if n := strings.Count(logs.String(), "TLS files not reloaded"); n != 1 {
		t.Fatalf("the bad rotation was logged %d times over two handshakes, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "private key does not match public key") {
		t.Fatalf("the log does not say why the files did not load:\n%s", logs)
	}
}

// A plain-text client on a TLS listener gets an error and is closed, and
// one that sends too little to tell is closed at the handshake's timeout:
// neither hangs.
func TestTLSPlainClientClosed(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, t.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, tlsListenerKeys(files, ""), r.Addr+":1 server0")

	for _, tc := range []struct {
		name, send, want string
	}{
		{"a command", "*1\r\n$4\r\nPING\r\n", "-" + msgTLSRequired + "\r\n"},
		{"an inline command", "PING\r\n", "-" + msgTLSRequired + "\r\n"},
		{"too little to tell", "PI", ""},
		// Unread bytes at close would reset the connection, losing the reply.
		{"a large pipeline", strings.Repeat("*1\r\n$4\r\nPING\r\n", 20000), "-" + msgTLSRequired + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			conn.Write([]byte(tc.send))
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("read from the proxy: %v after %q; want the connection closed", err, got)
			}
			if string(got) != tc.want {
				t.Fatalf("the proxy answered %q, want %q", got, tc.want)
			}
		})
	}
}

// A TLS client over client_connections is closed in its handshake, not
// left waiting.
func TestTLSClientConnectionsLimit(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, t.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, tlsListenerKeys(files, "")+"  client_connections: 1\n", r.Addr+":1 server0")
	first, err := dialTLS(t, tp.addr, ca.Pool())
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	if got := do(t, proxytest.NewConn(first), "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING = %q", got)
	}
	conn, err := dialTLS(t, tp.addr, ca.Pool())
	if err == nil {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte("PING\r\n"))
		_, err = conn.Read(make([]byte, 64))
	}
	if err == nil || isTimeout(err) {
		t.Fatalf("the client over client_connections: %v, want its connection closed", err)
	}
}

// tlsRedis starts a redis-server whose TLS listener shows a certificate
// for names, signed by ca.
func tlsRedis(t *testing.T, ca *proxytest.CA, authClients bool, names ...string) *proxytest.Redis {
	t.Helper()
	files := ca.WriteTLSFiles(t, t.TempDir(), "redis", names...)
	return proxytest.StartRedis(t, proxytest.RedisTLS(files, authClients))
}

// With server_tls_ca_file the proxy speaks TLS to its servers, verifies
// them by server_tls_server_name when it dials an IP address, and shows
// server_tls_cert_file to a server that asks for a client certificate.
func TestTLSToServers(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.crt"), ca.PEM, 0o600)
	certPEM, keyPEM := ca.Issue(t, "shardproxy")
	os.WriteFile(filepath.Join(dir, "proxy.crt"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "proxy.key"), keyPEM, 0o600)
	caFile := filepath.Join(dir, "ca.crt")

	// The servers' certificates hold DNS names only, and are dialled by IP.
	r0 := tlsRedis(t, ca, false, "redis0.redis.test")
	r1 := tlsRedis(t, ca, true, "redis1.redis.test")
	servers := []string{r0.TLSAddr + ":1 redis0", r1.TLSAddr + ":1 redis1"}

	t.Run("by name", func(t *testing.T) {
		keys := fmt.Sprintf("  server_tls_ca_file: %s\n  server_tls_cert_file: %s\n  server_tls_key_file: %s\n  server_tls_server_name: \"{server}.redis.test\"\n",
			caFile, filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key"))
		tp := startPool(t, keys, servers...)
		tp.redises = []*proxytest.Redis{r0, r1}
		c := tp.client(t)
		for i := range 20 {
			key := fmt.Sprintf("key:%d", i)
			if got := do(t, c, "SET", key, "v"); got != "+OK\r\n" {
				t.Fatalf("SET %s through TLS to the servers = %q", key, got)
			}
		}
		// Both servers got keys, over TLS: their plain ports were not used.
		for _, r := range []*proxytest.Redis{r0, r1} {
			if got := do(t, r.Client(t), "DBSIZE"); got == ":0\r\n" {
				t.Fatalf("server %s has no keys", r.TLSAddr)
			}
		}
	})

	t.Run("no client certificate for tls-auth-clients", func(t *testing.T) {
		keys := fmt.Sprintf("  server_tls_ca_file: %s\n  server_tls_server_name: \"{server}.redis.test\"\n", caFile)
		tp := startPool(t, keys, r1.TLSAddr+":1 redis1")
		rep := do(t, tp.client(t), "GET", "k")
		if !strings.HasPrefix(rep, "-ERR server redis1 ("+r1.TLSAddr+"): ") {
			t.Fatalf("GET from a server that wants a client certificate = %q, want an error naming the server", rep)
		}
	})

	t.Run("wrong name", func(t *testing.T) {
		for _, tc := range []struct{ keys, want string }{
			{"", "doesn't contain any IP SANs"}, // the default name is the IP address dialled
			{"  server_tls_server_name: other.redis.test\n", "certificate is valid for redis0.redis.test, not other.redis.test"},
		} {
			keys := fmt.Sprintf("  server_tls_ca_file: %s\n%s", caFile, tc.keys)
			tp := startPool(t, keys, r0.TLSAddr+":1 redis0")
			rep := do(t, tp.client(t), "GET", "k")
			if !strings.HasPrefix(rep, "-ERR server redis0 ("+r0.TLSAddr+"): TLS handshake: ") || !strings.Contains(rep, tc.want) {
				t.Fatalf("GET from a server whose certificate has another name (%q) = %q, want the TLS error", tc.keys, rep)
			}
		}
	})

	t.Run("plain server", func(t *testing.T) {
		keys := fmt.Sprintf("  server_tls_ca_file: %s\n  timeout: 500\n", caFile)
		tp := startPool(t, keys, r0.Addr+":1 redis0")
		if rep := do(t, tp.client(t), "GET", "k"); !strings.HasPrefix(rep, "-ERR server redis0 ("+r0.Addr+"): TLS handshake: ") {
			t.Fatalf("GET from a server that speaks plain text = %q, want the TLS error", rep)
		}
	})
}

// The server TLS files are read again for new server connections: a CA
// file that did not trust the server, swapped in a Secret for one that
// does, lets the next dial through without a reload.
func TestTLSServerFilesReloaded(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	other := proxytest.NewCA(t, "another CA")
	r := tlsRedis(t, ca, false, "127.0.0.1")
	secret := proxytest.NewSecret(t, map[string][]byte{"ca.crt": other.PEM})
	tp := startPool(t, fmt.Sprintf("  server_tls_ca_file: %s\n", secret.Path("ca.crt")), r.TLSAddr+":1 redis0")
	c := tp.client(t)
	if rep := do(t, c, "SET", "k", "v"); !strings.Contains(rep, "certificate signed by unknown authority") {
		t.Fatalf("SET to a server the CA file does not trust = %q, want the TLS error", rep)
	}
	secret.Update(t, map[string][]byte{"ca.crt": ca.PEM})
	// The connection dials again after its backoff; 30 s only bounds a hang.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rep := do(t, c, "SET", "k", "v")
		if rep == "+OK\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET after the CA file was replaced = %q, want +OK", rep)
		}
	}
}

// Transactions run on dedicated TLS connections too. The check that an
// idle one was not closed by its server cannot peek under TLS, so a
// connection the server closed is found when it is used, and the
// transaction goes on on a new one.
func TestTLSServerTransactions(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	os.WriteFile(caFile, ca.PEM, 0o600)
	r := tlsRedis(t, ca, false, "127.0.0.1")
	tp := startPool(t, fmt.Sprintf("  server_tls_ca_file: %s\n", caFile), r.TLSAddr+":1 redis0")
	c := tp.client(t)
	tx := func() {
		t.Helper()
		for _, step := range []struct {
			cmd  []string
			want string
		}{
			{[]string{"MULTI"}, "+OK\r\n"},
			{[]string{"SET", "k", "v"}, "+QUEUED\r\n"},
			{[]string{"GET", "k"}, "+QUEUED\r\n"},
			{[]string{"EXEC"}, "*2\r\n+OK\r\n$1\r\nv\r\n"},
		} {
			if got := do(t, c, step.cmd...); got != step.want {
				t.Fatalf("%v = %q, want %q", step.cmd, got, step.want)
			}
		}
	}
	tx()
	r.Restart(t)
	// The shared connection learns of the restart at its next request.
	for deadline := time.Now().Add(30 * time.Second); do(t, c, "PING") != "+PONG\r\n"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("PING does not come back after the server restarted")
		}
	}
	tx()
}

// A reload that adds the TLS keys makes the listener TLS for new clients;
// a client connected before keeps its plain connection.
func TestTLSReloadTurnsListenerTLS(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	files := ca.WriteTLSFiles(t, t.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(t)
	tp := startPool(t, "", r.Addr+":1 server0")
	plain := tp.client(t)
	if got := do(t, plain, "SET", "k", "1"); got != "+OK\r\n" {
		t.Fatalf("SET = %q", got)
	}
	yaml := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n%s  servers:\n    - %s:1 server0\n", tp.addr, tlsListenerKeys(files, ""), r.Addr)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.srv.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	conn, err := dialTLS(t, tp.addr, ca.Pool())
	if err != nil {
		t.Fatalf("TLS dial after the reload: %v", err)
	}
	if got := do(t, proxytest.NewConn(conn), "INCR", "k"); got != ":2\r\n" {
		t.Fatalf("INCR over TLS = %q", got)
	}
	if got := do(t, plain, "INCR", "k"); got != ":3\r\n" {
		t.Fatalf("INCR on the plain connection made before the reload = %q", got)
	}
}

// A reload that changes server_tls_server_name connects to the servers
// anew with it, as a change of redis_auth does.
func TestTLSReloadServerName(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(caFile, ca.PEM, 0o600)
	r := tlsRedis(t, ca, false, "redis0.redis.test")
	pool := func(name string) string {
		return fmt.Sprintf("  server_tls_ca_file: %s\n  server_tls_server_name: %s\n", caFile, name)
	}
	tp := startPool(t, pool("wrong.redis.test"), r.TLSAddr+":1 redis0")
	c := tp.client(t)
	if rep := do(t, c, "GET", "k"); !strings.Contains(rep, "not wrong.redis.test") {
		t.Fatalf("GET with the wrong name = %q, want the TLS error", rep)
	}
	yaml := fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n%s  servers:\n    - %s:1 redis0\n", tp.addr, pool("redis0.redis.test"), r.TLSAddr)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.srv.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := do(t, c, "GET", "k"); got != "$-1\r\n" {
		t.Fatalf("GET after the reload gave the right name = %q", got)
	}
}

// benchmarkProxyTLS is benchmarkProxy with the client speaking TLS to the
// proxy (useTLS false for the same run in plain TCP), for the cost of TLS:
// its clients are read and written through crypto/tls and get no direct
// replies.
func benchmarkProxyTLS(b *testing.B, depth int, useTLS bool) {
	ca := proxytest.NewCA(b, "test CA")
	files := ca.WriteTLSFiles(b, b.TempDir(), "shardproxy", "127.0.0.1")
	r := proxytest.StartRedis(b)
	extra := ""
	if useTLS {
		extra = tlsListenerKeys(files, "")
	}
	tp := startPool(b, extra, r.Addr+":1 server0")
	var conn net.Conn
	var err error
	if useTLS {
		conn, err = dialTLS(b, tp.addr, ca.Pool())
	} else {
		conn, err = net.Dial("tcp", tp.addr)
	}
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

func BenchmarkProxyGetOneServer(b *testing.B) { benchmarkProxyTLS(b, 1, false) }
func BenchmarkProxyGetTLS(b *testing.B)       { benchmarkProxyTLS(b, 1, true) }
func BenchmarkProxyGetPipeline16OneServer(b *testing.B) {
	benchmarkProxyTLS(b, 16, false)
}
func BenchmarkProxyGetPipeline16TLS(b *testing.B) { benchmarkProxyTLS(b, 16, true) }
