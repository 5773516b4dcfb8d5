package proxytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority made by a test, whose certificates are
// good for an hour, for servers and clients alike.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte // Cert in PEM, for a CA file
	key  *ecdsa.PrivateKey
}

var serials atomic.Int64

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("proxytest: generate key: %v", err)
	}
	return key
}

// NewCA makes a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serials.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("proxytest: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("proxytest: CA certificate: %v", err)
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// Pool is a pool holding the CA's certificate, for a tls.Config.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue makes a certificate and key, in PEM, signed by the CA, with common
// name cn and the subject alternative names names: each is an IP address
// SAN if it parses as one, else a DNS name.
func (ca *CA) Issue(t testing.TB, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("proxytest: certificate for %s: %v", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("proxytest: key for %s: %v", cn, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// KeyPair is Issue as a tls.Certificate, for a Go client or server.
func (ca *CA) KeyPair(t testing.TB, cn string, names ...string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, cn, names...)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("proxytest: key pair for %s: %v", cn, err)
	}
	return cert
}

// TLSFiles are the paths of a certificate, its key and a CA file.
type TLSFiles struct {
	Cert, Key, CA string
}

// WriteTLSFiles writes a certificate issued by ca (as Issue makes it), its
// key and ca's certificate into dir as tls.crt, tls.key and ca.crt.
func (ca *CA) WriteTLSFiles(t testing.TB, dir, cn string, names ...string) TLSFiles {
	t.Helper()
	certPEM, keyPEM := ca.Issue(t, cn, names...)
	f := TLSFiles{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), CA: filepath.Join(dir, "ca.crt")}
	for path, data := range map[string][]byte{f.Cert: certPEM, f.Key: keyPEM, f.CA: ca.PEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatalf("proxytest: %v", err)
		}
	}
	return f
}

// RedisTLS adds a TLS listener to the server, at TLSAddr, with the
// certificate, key and CA file of files; authClients is Redis'
// tls-auth-clients: whether clients must show a certificate signed by the
// CA. The plain TCP listener stays at Addr.
func RedisTLS(files TLSFiles, authClients bool) RedisOption {
	return func(o *redisOptions) {
		o.tls = &files
		o.tlsAuthClients = authClients
	}
}

// tlsArgs are redis-server's arguments for a TLS listener on port.
func (r *Redis) tlsArgs() []string {
	if r.tls == nil {
		return nil
	}
	auth := "no"
	if r.tlsAuthClients {
		auth = "yes"
	}
	return []string{
		"--tls-port", fmt.Sprint(r.TLSPort),
		"--tls-cert-file", r.tls.Cert, "--tls-key-file", r.tls.Key,
		"--tls-ca-cert-file", r.tls.CA, "--tls-auth-clients", auth,
	}
}

// Secret is a directory laid out as a Kubernetes Secret volume: each file
// is a symlink to "..data/<name>", and "..data" a symlink to a directory
// holding the current version, replaced in one rename by Update.
type Secret struct {
	Dir     string
	version int
}

// NewSecret makes a Secret holding files (name to contents) in a new
// directory under t.TempDir().
func NewSecret(t testing.TB, files map[string][]byte) *Secret {
	t.Helper()
	s := &Secret{Dir: t.TempDir()}
	s.Update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.Dir, name)); err != nil {
			t.Fatalf("proxytest: %v", err)
		}
	}
	return s
}

// Path is the path of the Secret's file name.
func (s *Secret) Path(name string) string { return filepath.Join(s.Dir, name) }

// Update writes files as a new version and swaps "..data" to it, as the
// kubelet does, then removes the previous version.
func (s *Secret) Update(t testing.TB, files map[string][]byte) {
	t.Helper()
	s.version++
	prev := fmt.Sprintf("..version_%d", s.version-1)
	next := fmt.Sprintf("..version_%d", s.version)
	if err := os.Mkdir(filepath.Join(s.Dir, next), 0o755); err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, next, name), data, 0o600); err != nil {
			t.Fatalf("proxytest: %v", err)
		}
	}
	tmp := filepath.Join(s.Dir, "..data_tmp")
	if err := os.Symlink(next, tmp); err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, "..data")); err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	os.RemoveAll(filepath.Join(s.Dir, prev))
}
