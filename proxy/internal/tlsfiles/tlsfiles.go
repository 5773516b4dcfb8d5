// Package tlsfiles reads a TLS certificate, its key and a CA bundle from
// files, and reads them again when they change on disk, for both sides of
// the proxy: a pool's listener (tls_cert_file, tls_key_file,
// tls_client_ca_file) and its server connections (server_tls_ca_file,
// server_tls_cert_file, server_tls_key_file).
//
// The files are looked at with stat(2) at every handshake, which is cheap
// next to the handshake itself, and read again when any of them is another
// file or has another size or modification time than when it was last
// read. stat follows symlinks, so the swap of a Kubernetes Secret volume's
// "..data" symlink is seen as every file changing at once. Files that do
// not load (a key that does not match its certificate, a half-written
// file) leave the previous contents in use, and the error is reported
// once per change, so that it is logged once rather than at every
// handshake.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/shardproxy/shardproxy/proxy/internal/boundedfile"
)

// maxFileSize bounds each file: a certificate chain or a CA bundle of a
// few hundred certificates is well under it.
const maxFileSize = 1 << 20

// Contents are what the files held when they last loaded.
type Contents struct {
	Cert *tls.Certificate // nil without a certificate file
	CAs  *x509.CertPool   // nil without a CA file
}

// Load reads a certificate and its key (both or neither given) and a CA
// bundle ("" for none). Errors name the files.
func Load(certFile, keyFile, caFile string) (*Contents, error) {
	var c Contents
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a certificate needs its key, and a key its certificate")
	}
	if certFile != "" {
		certPEM, err := boundedfile.Read(certFile, maxFileSize)
		if err != nil {
			return nil, err
		}
		keyPEM, err := boundedfile.Read(keyFile, maxFileSize)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s with key %s: %w", certFile, keyFile, err)
		}
		c.Cert = &cert
	}
	if caFile != "" {
		pem, err := boundedfile.Read(caFile, maxFileSize)
		if err != nil {
			return nil, err
		}
		c.CAs = x509.NewCertPool()
		if !c.CAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", caFile)
		}
	}
	return &c, nil
}

// Files are a certificate, its key and a CA bundle on disk, any of them
// absent (""), read again when they change. The zero value with the paths
// set is ready to use; it must not be copied after first use.
type Files struct {
	CertFile, KeyFile, CAFile string

	mu       sync.Mutex  // guards the rest
	loaded   stamps      // of the files behind current
	current  *Contents   // nil before the first load that worked
	failed   stamps      // of the files as they last failed to load
	failErr  error       // why they did; nil when the last load worked
	listener *tls.Config // the listener's config for current (ServerConfig)
	listenOf *Contents   // the contents listener was made of
}

// stamps are what stat said of each file: nil for a file not given or not
// there.
type stamps [3]os.FileInfo

func (a *stamps) equal(b *stamps) bool {
	for i := range a {
		x, y := a[i], b[i]
		if (x == nil) != (y == nil) {
			return false
		}
		if x != nil && !(os.SameFile(x, y) && x.Size() == y.Size() && x.ModTime().Equal(y.ModTime())) {
			return false
		}
	}
	return true
}

func (f *Files) stat() stamps {
	var st stamps
	for i, path := range [...]string{f.CertFile, f.KeyFile, f.CAFile} {
		if path != "" {
			st[i], _ = os.Stat(path)
		}
	}
	return st
}

// Current returns the files' contents, read again first if any of them
// changed on disk since they were last read. When they changed and do not
// load, it returns the previous contents with the error, once for that
// change; later calls return the previous contents and no error until the
// files change again. Before any load worked, contents are nil and the
// error is returned every time.
func (f *Files) Current() (*Contents, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stat()
	if f.current != nil && st.equal(&f.loaded) {
		return f.current, nil
	}
	if f.failErr != nil && st.equal(&f.failed) {
		if f.current == nil {
			return nil, f.failErr
		}
		return f.current, nil
	}
	c, err := Load(f.CertFile, f.KeyFile, f.CAFile)
	if err != nil {
		f.failed, f.failErr = st, err
		return f.current, err
	}
	f.loaded, f.current, f.failErr = st, c, nil
	return c, nil
}

// ServerConfig returns the config of a listener that serves the
// certificate with TLS 1.2 at least and, with a CA file, requires client
// certificates signed by it. Every handshake takes the current files;
// reloadFailed gets the error of files that changed and do not load,
// while the previous ones keep serving.
func (f *Files) ServerConfig(reloadFailed func(error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.listenerConfig(reloadFailed)
		},
	}
}

// listenerConfig is the listener's config for the current contents, made
// once per change so that a handshake does not build one.
func (f *Files) listenerConfig(reloadFailed func(error)) (*tls.Config, error) {
	c, err := f.Current()
	if err != nil {
		if c == nil {
			return nil, err
		}
		reloadFailed(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listenOf != c {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*c.Cert}}
		if c.CAs != nil {
			cfg.ClientCAs, cfg.ClientAuth = c.CAs, tls.RequireAndVerifyClientCert
		}
		f.listener, f.listenOf = cfg, c
	}
	return f.listener, nil
}

// ClientConfig returns the config of a connection to a server that must
// present a certificate for serverName signed by the CA, with TLS 1.2 at
// least, showing the certificate when there is one. reloadFailed gets the error of files that changed
// and do not load, while the previous ones are used.
func (f *Files) ClientConfig(serverName string, reloadFailed func(error)) (*tls.Config, error) {
	c, err := f.Current()
	if err != nil {
		if c == nil {
			return nil, err
		}
		reloadFailed(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.CAs, ServerName: serverName}
	if c.Cert != nil {
		cfg.Certificates = []tls.Certificate{*c.Cert}
	}
	return cfg, nil
}
