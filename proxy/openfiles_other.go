//go:build !unix

package proxy

// openFilesLimit is 0 where there is no RLIMIT_NOFILE: no client limit is
// computed.
func openFilesLimit() int64 { return 0 }
