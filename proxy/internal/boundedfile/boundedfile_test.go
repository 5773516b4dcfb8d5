package boundedfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Read takes a regular file and a symlink to one within the limit, and
// refuses a larger file, a directory and a FIFO, without blocking on it.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		if data, err := Read(p, 5); err != nil || string(data) != "12345" {
			t.Errorf("Read(%s, 5) = %q, %v", p, data, err)
		}
	}
	if _, err := Read(file, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("Read of 5 bytes with limit 4: err = %v", err)
	}
	if _, err := Read(dir, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Read of a directory: err = %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(fifo, 5); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Read of a FIFO: err = %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), 5); !os.IsNotExist(err) {
		t.Errorf("Read of a missing file: err = %v", err)
	}
}
