package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/internal/tlsfiles"
)

// TLS on the client side: a pool with tls_cert_file and tls_key_file wraps
// every accepted connection in a TLS server connection, whose handshake the
// client's goroutine runs before it reads a request. The raw-syscall reads
// and writes and the direct replies (direct.go) need the socket's
// descriptor, which a TLS connection does not give: its clients are read
// and written through crypto/tls, and every reply goes back through the
// client's goroutine.

// minHandshakeTimeout bounds a client's TLS handshake when the pool's
// timeout is shorter or unset: a client that sends nothing, or plain text
// that is not yet a whole TLS record header, is closed then.
const minHandshakeTimeout = 5 * time.Second

// listenerTLS returns the TLS config of p's listener, nil for plain TCP. A
// pool that replaces one with the same files keeps its files, so the
// files are not read again for a reload that leaves them.
func listenerTLS(p *pool, prev *pool) (*tls.Config, *tlsfiles.Files) {
	cfg := p.cfg
	if cfg.TLSCertFile == "" {
		return nil, nil
	}
	if prev != nil && prev.tlsFiles != nil && prev.tlsFiles.CertFile == cfg.TLSCertFile &&
		prev.tlsFiles.KeyFile == cfg.TLSKeyFile && prev.tlsFiles.CAFile == cfg.TLSClientCAFile {
		return prev.tls, prev.tlsFiles
	}
	files := &tlsfiles.Files{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CAFile: cfg.TLSClientCAFile}
	logger := p.srv.logger.With("pool", cfg.Name)
	return files.ServerConfig(func(err error) {
		logger.Error("TLS files not reloaded; the previous ones stay in use", "err", err)
	}), files
}

// serverTLS is how connections to the pool's server sc speak TLS.
func serverTLS(cfg *config.Pool, sc config.Server) backend.TLS {
	if cfg.ServerTLSCAFile == "" {
		return backend.TLS{}
	}
	return backend.TLS{CAFile: cfg.ServerTLSCAFile, CertFile: cfg.ServerTLSCertFile, KeyFile: cfg.ServerTLSKeyFile, ServerName: cfg.ServerName(sc)}
}

// ServerTLS is a pool's server_tls_* settings, for the connections that
// discovery opens on its own to the pool's servers, cluster nodes, group
// members and Sentinels. The zero ServerTLS is plain TCP.
type ServerTLS struct {
	CAFile, CertFile, KeyFile string
	ServerName                string // server_tls_server_name as written, "" when absent
}

// serverTLSOf is cfg's ServerTLS.
func serverTLSOf(cfg *config.Pool) ServerTLS {
	return ServerTLS{CAFile: cfg.ServerTLSCAFile, CertFile: cfg.ServerTLSCertFile, KeyFile: cfg.ServerTLSKeyFile, ServerName: cfg.ServerTLSServerName}
}

// Configs returns the TLS config of a new connection to addr (host:port),
// for the server (group) named server: the one the pool's own server
// connections use, for the name server_tls_server_name gives. Sentinels
// and cluster nodes have no server name (""); for them a name with
// "{server}" in it gives way to the host of addr. The files are read again
// when they change on disk; files that changed and do not load are logged
// once and the previous ones are used. Configs is nil for the zero
// ServerTLS.
func (t ServerTLS) Configs(logger *slog.Logger) func(server, addr string) (*tls.Config, error) {
	if t.CAFile == "" {
		return nil
	}
	files := &tlsfiles.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
	unnamed := &config.Pool{ServerTLSCAFile: t.CAFile, ServerTLSServerName: t.ServerName}
	if strings.Contains(t.ServerName, "{server}") {
		// A Sentinel's or a cluster node's name: the host of its address.
		unnamed.ServerTLSServerName = ""
	}
	named := &config.Pool{ServerTLSCAFile: t.CAFile, ServerTLSServerName: t.ServerName}
	reloadFailed := func(err error) {
		logger.Error("server TLS files not reloaded; the previous ones stay in use", "err", err)
	}
	return func(server, addr string) (*tls.Config, error) {
		p := named
		if server == "" {
			p = unnamed
		}
		return files.ClientConfig(p.ServerName(config.Server{Name: server, Addr: addr, DialAddr: addr, Network: "tcp"}), reloadFailed)
	}
}

// closeNow closes a client's connection that is closed by force: a TLS
// connection's socket at once, without the close_notify alert that
// crypto/tls's Close writes first, with a 5 s deadline, which a client
// that does not read would hold up.
func closeNow(conn net.Conn) error {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return conn.Close()
}

// handshakeTLS runs the TLS handshake of a client of a TLS listener. A
// client that speaks plain text gets an error reply in plain text before
// it is closed.
func (c *client) handshakeTLS(tc *tls.Conn) error {
	tc.SetDeadline(time.Now().Add(max(c.pool.cfg.Timeout, minHandshakeTimeout)))
	err := tc.Handshake()
	tc.SetDeadline(time.Time{})
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && rh.Conn != nil {
		rh.Conn.SetDeadline(time.Now().Add(time.Second))
		rh.Conn.Write([]byte("-" + msgTLSRequired + "\r\n"))
		// Closing with the rest of its request unread would reset the
		// connection, and the client could lose the reply: end the
		// writing side first and read what it still sends, briefly.
		if tcp, ok := rh.Conn.(*net.TCPConn); ok {
			tcp.CloseWrite()
			io.Copy(io.Discard, io.LimitReader(tcp, 1<<20))
		}
	}
	if err != nil {
		c.srv.logger.Debug("client TLS handshake failed", "pool", c.pool.cfg.Name, "client", addrString(c.conn.RemoteAddr()), "err", err)
		return err
	}
	if c.stopping.Load() {
		// Shutdown began during the handshake, and its read deadline was
		// lifted with the handshake's.
		return net.ErrClosed
	}
	return nil
}
