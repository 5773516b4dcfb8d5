// Package proxytest starts real redis-server and nutcracker processes and
// talks RESP to them, for tests of shardproxy, the way net/http/httptest
// serves tests of net/http.
//
// Every helper takes a testing.TB, calls t.Helper, fails the test with the
// server's log when something does not come up, and registers its cleanup
// with t.Cleanup. Servers listen on loopback ports chosen by FreePort.
//
// Children run in their own process group, which cleanup kills as a whole.
// On Linux they also get SIGKILL when the test binary dies (PR_SET_PDEATHSIG),
// so a test killed by -timeout or by hand leaves no redis-server behind.
//
// Conn is a small RESP2 client that keeps every reply as the exact bytes the
// server sent (Reply.Raw), so tests can compare shardproxy with redis-server
// or nutcracker byte for byte. It pipelines (Send, Read), writes arbitrary
// bytes (WriteRaw) and never blocks longer than its Timeout.
//
// The binaries are looked up in PATH, then in /usr/bin and /usr/sbin (where
// Debian installs nutcracker). A missing binary fails the test: nothing is
// skipped, CI installs both.
package proxytest
