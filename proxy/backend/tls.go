package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/shardproxy/shardproxy/proxy/internal/tlsfiles"
)

// TLS says how connections to a server speak TLS: the files of the pool's
// server_tls_* keys and the name the server's certificate must hold. The
// zero TLS is plain TCP. It is part of Key: a server reached with other
// certificates or another name is another connection.
type TLS struct {
	CAFile     string // "" for plain TCP
	CertFile   string // the certificate the proxy shows, "" for none
	KeyFile    string
	ServerName string
}

// tlsDial makes a dialer's connections TLS.
type tlsDial struct {
	files      *tlsfiles.Files
	serverName string
	// reloadFailed logs files that changed and do not load; the previous
	// ones are used.
	reloadFailed func(error)
}

// tlsFilesLocked returns the registry's files of t, made at first use, so
// that every upstream with the same files reads them once per change. The
// caller holds r.mu.
func (r *Registry) tlsFilesLocked(t TLS) *tlsfiles.Files {
	files := TLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
	if r.tls == nil {
		r.tls = map[TLS]*tlsfiles.Files{}
	}
	f := r.tls[files]
	if f == nil {
		f = &tlsfiles.Files{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile}
		r.tls[files] = f
	}
	return f
}

// tlsReloadFailed logs TLS files of u's that changed and do not load.
func (u *Upstream) tlsReloadFailed(err error) {
	u.config.Load().Logger.Error("server TLS files not reloaded; the previous ones stay in use", "err", err)
}

// handshake runs the TLS handshake on conn, within timeout, before
// anything else is said on it; on error it closes conn.
func (t *tlsDial) handshake(conn net.Conn, timeout time.Duration) (net.Conn, error) {
	cfg, err := t.files.ClientConfig(t.serverName, t.reloadFailed)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS: %w", err)
	}
	tc := tls.Client(conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if isTimeout(err) {
			// Not wrapped: a plain-text server never answers a
			// ClientHello, and "timed out" alone would not say why.
			return nil, fmt.Errorf("TLS handshake: no answer within %v (does the server speak TLS on this port?)", timeout)
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// isTimeout reports whether err is a deadline's or a context's expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
