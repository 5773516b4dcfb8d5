package tlsfiles

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Files read again what changed, keep the last good contents when the
// change does not load, and report that error once per change.
func TestFilesReload(t *testing.T) {
	ca := proxytest.NewCA(t, "test CA")
	dir := t.TempDir()
	files := ca.WriteTLSFiles(t, dir, "first", "127.0.0.1")
	f := &Files{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA}

	first, err := f.Current()
	if err != nil || first.Cert == nil || first.CAs == nil {
		t.Fatalf("Current = %+v, %v; want the certificate and the CAs", first, err)
	}
	if again, err := f.Current(); again != first || err != nil {
		t.Fatalf("Current with nothing changed = %p, %v; want the same contents %p", again, err, first)
	}

	// Overwritten in place: another size or modification time.
	certPEM, keyPEM := ca.Issue(t, "second, with a longer name", "127.0.0.1")
	os.WriteFile(files.Cert, certPEM, 0o600)
	os.WriteFile(files.Key, keyPEM, 0o600)
	second, err := f.Current()
	if err != nil || second == first || second.Cert.Leaf.Subject.CommonName != "second, with a longer name" {
		t.Fatalf("Current after the files changed = %+v, %v; want the second certificate", second, err)
	}

	// A key that does not match: the error once, then the last good pair.
	otherCert, _ := ca.Issue(t, "third")
	os.WriteFile(files.Cert, otherCert, 0o600)
	if c, err := f.Current(); c != second || err == nil {
		t.Fatalf("Current after a bad change = %p, %v; want the second contents %p and an error", c, err, second)
	}
	if c, err := f.Current(); c != second || err != nil {
		t.Fatalf("Current after the error was reported = %p, %v; want the second contents and no error", c, err)
	}

	// Files that never loaded give no contents and their error each time.
	missing := &Files{CAFile: filepath.Join(dir, "missing.crt")}
	for range 2 {
		if c, err := missing.Current(); c != nil || err == nil {
			t.Fatalf("Current of a missing file = %+v, %v; want an error", c, err)
		}
	}
}
