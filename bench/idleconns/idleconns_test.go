package main

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// infoField returns the number after "name:" in INFO section of the
// redis-server admin is connected to.
func infoField(t *testing.T, admin *proxytest.Conn, section, name string) int {
	t.Helper()
	r, err := admin.Do("INFO", section)
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:(?:calls=)?(\d+)`).FindStringSubmatch(string(r.Str))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// phases runs idleconns with args in the background and returns its stdout
// lines, a writer to its stdin and its exit code once it is done.
func phases(t *testing.T, args ...string) (*bufio.Scanner, io.WriteCloser, <-chan int) {
	t.Helper()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	code := make(chan int, 1)
	go runInBackground(args, stdinR, stdoutW, testWriter{t}, code)
	t.Cleanup(func() { stdinW.Close(); stdoutR.Close() })
	return bufio.NewScanner(stdoutR), stdinW, code
}

// runInBackground runs realMain and sends its exit code on code.
func runInBackground(args []string, stdin io.Reader, stdout *io.PipeWriter, stderr io.Writer, code chan<- int) {
	c := realMain(args, stdin, stdout, stderr)
	stdout.Close()
	code <- c
}

// testWriter sends idleconns' stderr to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// next reads the next line of stdout and checks it is want.
func next(t *testing.T, out *bufio.Scanner, want string) {
	t.Helper()
	if !out.Scan() {
		t.Fatalf("stdout ended, want %q (%v)", want, out.Err())
	}
	if out.Text() != want {
		t.Fatalf("stdout line %q, want %q", out.Text(), want)
	}
}

// Each phase holds until a line arrives on stdin: the server counts every
// connection, then one PING on each, then none.
func TestPhasesWaitForStdin(t *testing.T) {
	srv := proxytest.StartRedis(t)
	admin := srv.Client(t)
	pings := infoField(t, admin, "commandstats", "cmdstat_ping") // StartRedis' own
	out, in, code := phases(t, "--addr", srv.Addr, "--connections", "50", "--dialers", "8", "--pingers", "7")

	next(t, out, "connected 50")
	if n := infoField(t, admin, "clients", "connected_clients"); n != 51 {
		t.Errorf("connected_clients = %d after connected, want 50 and the admin connection", n)
	}
	if n := infoField(t, admin, "commandstats", "cmdstat_ping") - pings; n != 0 {
		t.Errorf("PING calls = %d before stdin said go on, want 0", n)
	}
	io.WriteString(in, "\n")
	next(t, out, "pinged 50")
	if n := infoField(t, admin, "commandstats", "cmdstat_ping") - pings; n != 50 {
		t.Errorf("PING calls = %d after pinged, want 50", n)
	}
	if n := infoField(t, admin, "clients", "connected_clients"); n != 51 {
		t.Errorf("connected_clients = %d after pinged, want 51", n)
	}
	io.WriteString(in, "\n")
	next(t, out, "closed")
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d, want 0", c)
	}
}

// Connections past --per-source come from the next loopback address.
func TestSourceAddresses(t *testing.T) {
	// Protected mode refuses clients from loopback addresses other than
	// 127.0.0.1.
	srv := proxytest.StartRedis(t, proxytest.RedisArgs("--protected-mode", "no"))
	admin := srv.Client(t)
	out, in, code := phases(t, "--addr", srv.Addr, "--connections", "25", "--per-source", "10")
	next(t, out, "connected 25")
	r, err := admin.Do("CLIENT", "LIST")
	if err != nil {
		t.Fatal(err)
	}
	from := map[string]int{}
	for _, m := range regexp.MustCompile(` addr=([0-9.]+):\d+`).FindAllStringSubmatch(string(r.Str), -1) {
		from[m[1]]++
	}
	if from["127.0.0.1"] != 11 || from["127.0.0.2"] != 10 || from["127.0.0.3"] != 5 {
		t.Errorf("clients by source address = %v, want 10 (and the admin connection) from 127.0.0.1, 10 from .2, 5 from .3", from)
	}
	in.Close() // end of file goes on as a line does
	next(t, out, "pinged 25")
	next(t, out, "closed")
	if c := <-code; c != 0 {
		t.Fatalf("exit code %d, want 0", c)
	}
}

// A PING answered with anything but +PONG fails the run.
func TestPingRefusedFails(t *testing.T) {
	srv := proxytest.StartRedis(t, proxytest.RedisPassword("s3cret"))
	var stderr strings.Builder
	var stdout strings.Builder
	c := realMain([]string{"--addr", srv.Addr, "--connections", "20", "--pause", "1ms"},
		strings.NewReader(""), &stdout, &stderr)
	if c != 1 {
		t.Errorf("exit code %d, want 1", c)
	}
	if stdout.String() != "connected 20\n" {
		t.Errorf("stdout %q, want only the connected line", stdout.String())
	}
	if !strings.Contains(stderr.String(), "20 of 20 connections failed PING") || !strings.Contains(stderr.String(), "NOAUTH") {
		t.Errorf("stderr %q does not say that 20 PINGs were refused with NOAUTH", stderr.String())
	}
}

// A connection that cannot be dialed fails the run before "connected".
func TestDialFailureFails(t *testing.T) {
	var stderr, stdout strings.Builder
	addr := "127.0.0.1:" + strconv.Itoa(proxytest.FreePort(t))
	if c := realMain([]string{"--addr", addr, "--connections", "3"}, strings.NewReader(""), &stdout, &stderr); c != 1 {
		t.Errorf("exit code %d, want 1", c)
	}
	if stdout.String() != "" || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("stdout %q, stderr %q: want nothing on stdout and the refused dial on stderr", stdout.String(), stderr.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--connections", "0"},
		{"--dialers", "0"},
		{"--pingers", "-1"},
		{"--per-source", "10", "--connections", "2541"},
		{"--pause", "-1s"},
		{"extra"},
	} {
		var stderr strings.Builder
		if c := realMain(args, strings.NewReader(""), io.Discard, &stderr); c != 2 {
			t.Errorf("%v: exit code %d, want 2 (stderr %q)", args, c, stderr.String())
		}
	}
}
