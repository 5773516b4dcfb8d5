// Package boundedfile reads the files an operator points shardproxy at
// (the config, password files, ACL files, TLS certificates and keys) with
// the checks every one of them needs: a regular file, or a symlink to one
// as Kubernetes mounts Secrets and ConfigMaps, of at most a given size. A
// FIFO or a device could block the reader or never end, and a runaway
// file would take the memory to hold it; each is an error naming the path.
package boundedfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Read returns the contents of the regular file at path, or an error if it
// is not one or is larger than limit bytes.
func Read(path string, limit int64) ([]byte, error) {
	// Without O_NONBLOCK, opening a FIFO waits for a writer, before Stat
	// can tell that it is one; a regular file reads the same either way.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
