//go:build unix

package proxy

import "syscall"

// openFilesLimit is the soft RLIMIT_NOFILE: how many file descriptors the
// process may have open. 0 if it cannot be read.
func openFilesLimit() int64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<62 {
		return 0
	}
	return int64(lim.Cur)
}
