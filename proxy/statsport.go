package proxy

// This file serves the stats port: nutcracker's JSON document for the tools
// that read nutcracker's port 22222 today, and HTTP on the same port for
// Prometheus and Kubernetes probes.
//
// nutcracker (src/nc_stats.c) accepts a connection, writes the document and
// closes, without reading anything. A plain TCP client here gets the same
// once it has sent nothing for StatsOptions.PlainWait (200ms), or has sent
// something that cannot start an HTTP request. A client whose first byte
// could start an HTTP method (an upper-case letter) is handed to net/http
// with the bytes read so far replayed, and gets:
//
//	GET /         the same JSON document, Content-Type application/json
//	GET /metrics  Prometheus text (metrics.go)
//	GET /healthz  200 "ok" while the process serves
//	GET /readyz   200 "ok" while Ready, else 503 and the reason
//
// The document is built from the live counters at each request; nutcracker
// reports sums that lag by up to its -i interval (30s by default).

import (
	"cmp"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// nutcrackerVersion is the stats document's "version": tools that read
// nutcracker's stats (exporters, dashboards) check it or parse it, so
// shardproxy reports the nutcracker it replaces, not its own version.
const nutcrackerVersion = "0.5.0"

// Timeouts of the stats port.
const (
	// defaultPlainWait is StatsOptions.PlainWait's default.
	defaultPlainWait = 200 * time.Millisecond
	// plainWriteTimeout bounds writing the document to a plain client.
	plainWriteTimeout = 10 * time.Second
	// plainLinger bounds waiting for a plain client to close after the
	// document was sent (see sendPlain).
	plainLinger = time.Second
)

// hostname is the document's "source", read once (nutcracker reads it at
// start); "unknown" when gethostname fails, as in nutcracker.
var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
})

// StatsJSON returns nutcracker's stats document for the Server's current
// counters: the bytes nutcracker 0.5.0 would send on its stats port for the
// same configuration, ending in "}\n".
func (s *Server) StatsJSON() []byte {
	n := 256
	for _, p := range s.poolList() {
		n += 160 + len(p.cfg.Name) + len(p.servers)*(320+24)
	}
	return s.appendStatsJSON(make([]byte, 0, n), time.Now())
}

// appendStatsJSON appends the stats document at time now to dst. It builds
// the text the way nutcracker's stats buffer does (stats_add_header,
// stats_add_num, stats_begin_nesting, stats_end_nesting, stats_add_footer):
// every member ends in ", ", and closing a nesting rewrites that ending, so
// the punctuation is nutcracker's byte for byte:
//
//	{"service":"nutcracker", ..., "pool": {"client_eof":0, ..., "server": {"server_eof":0, ...}},"pool2": {...}}}
//
// Pools are in the Config's order (nutcracker's: shorter names first), each
// pool's servers in ring order, keyed by ring name.
//
// One difference: nutcracker writes names unescaped, so a name holding '"',
// '\' or a control character breaks its JSON. Here names are JSON-escaped
// (and invalid UTF-8 becomes U+FFFD); for every other name, which is every
// name anyone feeds nutcracker's exporters, the bytes are the same.
func (s *Server) appendStatsJSON(dst []byte, now time.Time) []byte {
	ts := now.Unix()
	b := append(dst, '{')
	b = statsAddString(b, "service", "nutcracker")
	b = statsAddString(b, "source", hostname())
	b = statsAddString(b, "version", nutcrackerVersion)
	// Whole seconds of both clocks, as nutcracker subtracts two time(NULL).
	b = statsAddNum(b, "uptime", ts-s.started.Unix())
	b = statsAddNum(b, "timestamp", ts)
	b = statsAddNum(b, "total_connections", s.stats.totalConnections.Load())
	b = statsAddNum(b, "curr_connections", s.stats.currConnections.Load())
	for _, p := range s.poolList() {
		ps := p.stats
		b = statsBeginNesting(b, p.cfg.Name)
		b = statsAddNum(b, "client_eof", ps.clientEOF.Load())
		b = statsAddNum(b, "client_err", ps.clientErr.Load())
		b = statsAddNum(b, "client_connections", ps.clientConnections.Load())
		b = statsAddNum(b, "server_ejects", ps.serverEjects.Load())
		b = statsAddNum(b, "forward_error", ps.forwardError.Load())
		b = statsAddNum(b, "fragments", ps.fragments.Load())
		for _, srv := range p.servers {
			ss := srv.stats
			b = statsBeginNesting(b, srv.cfg.Name)
			b = statsAddNum(b, "server_eof", ss.serverEOF.Load())
			b = statsAddNum(b, "server_err", ss.serverErr.Load())
			b = statsAddNum(b, "server_timedout", ss.serverTimedout.Load())
			b = statsAddNum(b, "server_connections", ss.connections.Load())
			b = statsAddNum(b, "server_ejected_at", srv.health.ejectedAt.Load())
			b = statsAddNum(b, "requests", ss.requests.Load())
			b = statsAddNum(b, "request_bytes", ss.requestBytes.Load())
			b = statsAddNum(b, "responses", ss.responses.Load())
			b = statsAddNum(b, "response_bytes", ss.responseBytes.Load())
			inQueue, inQueueBytes, outQueue, outQueueBytes := ss.queues()
			b = statsAddNum(b, "in_queue", inQueue)
			b = statsAddNum(b, "in_queue_bytes", inQueueBytes)
			b = statsAddNum(b, "out_queue", outQueue)
			b = statsAddNum(b, "out_queue_bytes", outQueueBytes)
			b = statsEndNesting(b)
		}
		b = statsEndNesting(b)
	}
	return statsAddFooter(b)
}

// statsAddString appends "key":"value", as stats_add_string does.
func statsAddString(b []byte, key, value string) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = appendJSONString(b, value)
	return append(b, ", "...)
}

// statsAddNum appends "key":value, as stats_add_num does.
func statsAddNum(b []byte, key string, value int64) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = strconv.AppendInt(b, value, 10)
	return append(b, ", "...)
}

// statsBeginNesting appends "name": { as stats_begin_nesting does.
func statsBeginNesting(b []byte, name string) []byte {
	b = appendJSONString(b, name)
	return append(b, ": {"...)
}

// statsEndNesting closes an object as stats_end_nesting does: the last
// member's ", " becomes "},"; right after a closed object, "}," becomes
// "}},".
func statsEndNesting(b []byte) []byte {
	n := len(b)
	switch {
	case n >= 2 && b[n-2] == ',' && b[n-1] == ' ':
		b[n-2], b[n-1] = '}', ','
	case n >= 2 && b[n-2] == '}' && b[n-1] == ',':
		b[n-1] = '}'
		b = append(b, ',')
	}
	return b
}

// statsAddFooter ends the document as stats_add_footer does: the final ","
// becomes "}" and a newline follows. nutcracker always has a pool; without
// one the header's last ", " is replaced, where nutcracker would leave an
// invalid ",}".
func statsAddFooter(b []byte) []byte {
	n := len(b)
	if n >= 2 && b[n-2] == ',' && b[n-1] == ' ' {
		b[n-2], b[n-1] = '}', '\n'
		return b
	}
	b[n-1] = '}'
	return append(b, '\n')
}

// appendJSONString appends s as a JSON string. Bytes that need no escape
// are copied as they are, so a name nutcracker accepts without '"', '\' or
// control characters comes out exactly as nutcracker writes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// SetReady sets the flag that readiness (Ready, /readyz) also requires. It
// starts false: call SetReady(true) once the servers are known (after Start
// for a static config, after discovery has synced or given up waiting), and
// SetReady(false) at the start of a graceful shutdown so that load balancers
// stop sending clients before the listeners close.
func (s *Server) SetReady(ready bool) { s.stats.ready.Store(ready) }

// Ready reports whether the Server should get clients: SetReady(true) was
// called, every pool listens and Shutdown has not begun.
func (s *Server) Ready() bool { return s.notReady() == "" }

// notReady returns why the Server is not ready, or "" when it is.
func (s *Server) notReady() string {
	if !s.stats.ready.Load() {
		return "not ready"
	}
	s.mu.Lock()
	closing, listening := s.closing, len(s.listeners)
	s.mu.Unlock()
	switch {
	case closing:
		return "shutting down"
	case listening < len(s.poolList()):
		return "not listening"
	}
	// Not under s.mu: discovery's status may wait on a watch whose update
	// is waiting for s.mu.
	blocking, _ := s.discoveryNotReady()
	return blocking
}

// ServeStats serves the stats port on ln with default StatsOptions until ln
// is closed, then closes the stats connections and returns nil; on another
// accept error it returns that error. Use a StatsServer to keep /readyz
// answering while Shutdown drains, or to add collectors.
func (s *Server) ServeStats(ln net.Listener) error {
	ss := NewStatsServer(s, StatsOptions{})
	err := ss.Serve(ln)
	ss.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// StatsOptions configure a StatsServer.
type StatsOptions struct {
	// PlainWait is how long a new connection may stay silent before it is
	// taken for a plain TCP client (nutcracker's stats clients send nothing)
	// and sent the JSON document. HTTP clients send their request at once;
	// one that sends nothing for PlainWait gets the document instead of an
	// HTTP response. 0 means 200ms.
	PlainWait time.Duration

	// Collectors are registered for /metrics next to the Server's own
	// metrics and the Go runtime and process collectors, for example
	// reload counters. nil adds none.
	Collectors []prometheus.Collector
}

// StatsServer serves a Server's stats port: nutcracker's JSON document to
// plain TCP clients, HTTP to HTTP clients (see the top of this file). It
// does not count in the Server's connection stats, as nutcracker's stats
// connections do not.
//
// Serve it on the stats address (nutcracker's -a 0.0.0.0, -s 22222):
//
//	ss := proxy.NewStatsServer(srv, proxy.StatsOptions{})
//	ln, err := net.Listen("tcp", "0.0.0.0:22222")
//	go ss.Serve(ln)
//	...
//	ss.Close()
//
// Keep it open during a graceful shutdown so that /readyz reports it, and
// close it last.
type StatsServer struct {
	srv     *Server
	handler http.Handler
	http    *http.Server
	handoff *handoffListener
	logger  *slog.Logger
	wait    time.Duration // StatsOptions.PlainWait

	mu          sync.Mutex // guards lns, conns, httpStarted and closed, and wg.Add
	lns         map[net.Listener]struct{}
	conns       map[net.Conn]struct{} // sniffed or sent the document, not yet closed
	httpStarted bool                  // serveHTTP runs
	closed      bool
	wg          sync.WaitGroup // serveHTTP and handleConn goroutines
}

// NewStatsServer returns a StatsServer for srv. Nothing listens until Serve.
func NewStatsServer(srv *Server, opts StatsOptions) *StatsServer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(srv),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, c := range opts.Collectors {
		reg.MustRegister(c)
	}
	ss := &StatsServer{
		srv:     srv,
		logger:  srv.logger,
		handoff: newHandoffListener(),
		wait:    cmp.Or(opts.PlainWait, defaultPlainWait),
		lns:     make(map[net.Listener]struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
	errLog := slog.NewLogLogger(srv.logger.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", ss.serveJSON)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: errLog,
		// A collector's error drops its metric, not the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", serveHealthz)
	mux.HandleFunc("GET /readyz", ss.serveReadyz)
	mux.HandleFunc("GET /discovery", ss.serveDiscovery)
	ss.handler = mux
	ss.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	return ss
}

// Handler returns the HTTP side of the stats port, for serving it on
// another http.Server.
func (ss *StatsServer) Handler() http.Handler { return ss.handler }

// Serve accepts connections on ln until Close, then returns
// http.ErrServerClosed; on another accept error it returns that error. ln
// is closed on return. Serve may be called for several listeners.
func (ss *StatsServer) Serve(ln net.Listener) error {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	ss.lns[ln] = struct{}{}
	if !ss.httpStarted {
		ss.httpStarted = true
		ss.wg.Add(1)
		go ss.serveHTTP()
	}
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(ss.lns, ln)
		ss.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ss.isClosed() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: back off, keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			ss.logger.Error("stats accept failed", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		ss.mu.Lock()
		if ss.closed {
			ss.mu.Unlock()
			conn.Close()
			return http.ErrServerClosed
		}
		ss.conns[conn] = struct{}{}
		ss.wg.Add(1)
		ss.mu.Unlock()
		go ss.handleConn(conn)
	}
}

func (ss *StatsServer) isClosed() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.closed
}

// Close closes the listeners and every stats connection, and waits for the
// goroutines that served them.
func (ss *StatsServer) Close() error {
	ss.mu.Lock()
	ss.closed = true
	for ln := range ss.lns {
		ln.Close()
	}
	for c := range ss.conns {
		c.Close()
	}
	ss.mu.Unlock()
	err := ss.http.Close() // closes the handoff listener too
	ss.handoff.Close()
	ss.wg.Wait()
	return err
}

func (ss *StatsServer) serveHTTP() {
	defer ss.wg.Done()
	ss.http.Serve(ss.handoff)
}

// handleConn decides what the client is from its first bytes: silence, EOF
// or bytes that cannot start an HTTP request get the document; the rest go
// to net/http.
func (ss *StatsServer) handleConn(conn net.Conn) {
	defer ss.wg.Done()
	var buf [512]byte
	conn.SetReadDeadline(time.Now().Add(ss.wait))
	n, err := conn.Read(buf[:])
	if n > 0 && looksLikeHTTP(buf[0]) {
		conn.SetReadDeadline(time.Time{})
		if !ss.untrack(conn) {
			return // closed meanwhile
		}
		ss.handoff.give(&prefixConn{Conn: conn, prefix: buf[:n:n]})
		return
	}
	if n > 0 || err == nil || isTimeout(err) || errors.Is(err, io.EOF) {
		ss.sendPlain(conn)
	}
	if ss.untrack(conn) {
		conn.Close()
	}
}

// untrack forgets conn; false means Close has already closed it.
func (ss *StatsServer) untrack(conn net.Conn) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	delete(ss.conns, conn)
	return true
}

// sendPlain writes the document like nutcracker, then, unlike nutcracker,
// shuts down only the sending side and reads until the client closes (up
// to plainLinger): closing a socket with unread input sends a reset, which
// can destroy the document before the client has read it.
func (ss *StatsServer) sendPlain(conn net.Conn) {
	conn.SetWriteDeadline(time.Now().Add(plainWriteTimeout))
	if _, err := conn.Write(ss.srv.StatsJSON()); err != nil {
		return
	}
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	conn.SetReadDeadline(time.Now().Add(plainLinger))
	io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
}

// looksLikeHTTP reports whether c can start an HTTP/1 request: every method
// (GET, HEAD, POST, ..., and the HTTP/2 preface's PRI) is upper case.
func looksLikeHTTP(c byte) bool { return c >= 'A' && c <= 'Z' }

func (ss *StatsServer) serveJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(ss.srv.StatsJSON())
}

func serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

func (ss *StatsServer) serveReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if why := ss.srv.notReady(); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, why)
		return
	}
	io.WriteString(w, "ok")
	if _, warning := ss.srv.discoveryNotReady(); warning != "" {
		io.WriteString(w, "\nwarning: "+warning)
	}
}

// prefixConn is a connection whose first bytes were already read: Read
// returns them before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener is the listener net/http serves: its connections are the
// ones handleConn found to speak HTTP.
type handoffListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// give hands conn to net/http, or closes it if the listener is closed.
func (l *handoffListener) give(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.done:
		conn.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "stats" }
func (handoffAddr) String() string  { return "stats" }
