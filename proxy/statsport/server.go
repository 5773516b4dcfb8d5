package statsport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Source is what the stats port reports on: *proxy.Server is one.
type Source interface {
	// Snapshot fills dst with the counters and state of this moment,
	// reusing dst's storage.
	Snapshot(dst *stats.Snapshot)
}

// Timeouts of the stats port.
const (
	// defaultPlainWait is how long a new connection may stay silent
	// before it is taken for a plain TCP client and sent the document.
	defaultPlainWait = 200 * time.Millisecond
	// plainWriteTimeout bounds writing the document to a plain client.
	plainWriteTimeout = 10 * time.Second
	// plainLinger bounds waiting for a plain client to close after the
	// document was sent (see sendPlain).
	plainLinger = time.Second
)

// Options configure a Server.
type Options struct {
	// Logger receives accept errors and net/http's complaints. nil
	// discards them.
	Logger *slog.Logger
}

// Server serves a Source's stats port: nutcracker's JSON document to plain
// TCP clients, HTTP to HTTP clients (see the package documentation). Its
// connections do not count in the Source's connection stats, as
// nutcracker's stats connections do not.
//
// Serve it on the stats address (nutcracker's -a 0.0.0.0, -s 22222):
//
//	ss := statsport.New(srv, statsport.Options{Logger: logger})
//	ln, err := net.Listen("tcp", "0.0.0.0:22222")
//	go ss.Serve(ln)
//	...
//	ss.Close()
//
// Keep it open during a graceful shutdown so that /readyz reports it, and
// close it last.
type Server struct {
	src     Source
	http    *http.Server
	handoff *handoffListener
	logger  *slog.Logger
	reports sync.Pool // of *report

	// plainWait is how long a new connection may stay silent before it is
	// taken for a plain TCP client (nutcracker's stats clients send
	// nothing) and sent the JSON document. HTTP clients send their request
	// at once; one that sends nothing for plainWait gets the document
	// instead of an HTTP response.
	plainWait time.Duration

	mu          sync.Mutex // guards lns, conns, httpStarted and closed, and wg.Add
	lns         map[net.Listener]struct{}
	conns       map[net.Conn]struct{} // sniffed or sent the document, not yet closed
	httpStarted bool                  // serveHTTP runs
	closed      bool
	wg          sync.WaitGroup // serveHTTP and handleConn goroutines
}

// report is a snapshot and the buffer it is rendered into, reused from one
// request to the next.
type report struct {
	snap stats.Snapshot
	buf  []byte
}

// New returns a Server for src. Nothing listens until Serve.
func New(src Source, opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ss := &Server{
		src:       src,
		logger:    logger,
		handoff:   newHandoffListener(),
		plainWait: defaultPlainWait,
		lns:       make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	ss.reports.New = func() any { return new(report) }
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector{ss},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
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
	mux.HandleFunc("GET /locate", ss.serveLocate)
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

// take returns a report holding a new snapshot of the source; give it back
// with put.
func (ss *Server) take() *report {
	r := ss.reports.Get().(*report)
	ss.src.Snapshot(&r.snap)
	return r
}

func (ss *Server) put(r *report) {
	if cap(r.buf) > maxKeptDocument {
		r.buf = nil
	}
	ss.reports.Put(r)
}

// maxKeptDocument bounds the buffer a report keeps for the next document.
const maxKeptDocument = 1 << 20

// Serve accepts connections on ln until Close, then returns
// http.ErrServerClosed; on another accept error it returns that error. ln
// is closed on return. Serve may be called for several listeners.
func (ss *Server) Serve(ln net.Listener) error {
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

func (ss *Server) isClosed() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.closed
}

// Close closes the listeners and every stats connection, and waits for the
// goroutines that served them.
func (ss *Server) Close() error {
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

func (ss *Server) serveHTTP() {
	defer ss.wg.Done()
	ss.http.Serve(ss.handoff)
}

// handleConn decides what the client is from its first bytes: silence, EOF
// or bytes that cannot start an HTTP request get the document; the rest go
// to net/http.
func (ss *Server) handleConn(conn net.Conn) {
	defer ss.wg.Done()
	var buf [512]byte
	conn.SetReadDeadline(time.Now().Add(ss.plainWait))
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// untrack forgets conn; false means Close has already closed it.
func (ss *Server) untrack(conn net.Conn) bool {
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
func (ss *Server) sendPlain(conn net.Conn) {
	r := ss.take()
	r.buf = appendJSON(r.buf[:0], &r.snap)
	conn.SetWriteDeadline(time.Now().Add(plainWriteTimeout))
	_, err := conn.Write(r.buf)
	ss.put(r)
	if err != nil {
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

func (ss *Server) serveJSON(w http.ResponseWriter, _ *http.Request) {
	r := ss.take()
	defer ss.put(r)
	r.buf = appendJSON(r.buf[:0], &r.snap)
	w.Header().Set("Content-Type", "application/json")
	w.Write(r.buf)
}

func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok")
}

func (ss *Server) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	r := ss.take()
	notReady, warning := r.snap.NotReady, r.snap.Warning
	ss.put(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if notReady != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, notReady)
		return
	}
	io.WriteString(w, "ok")
	if warning != "" {
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
