// Idleconns holds many idle client connections open to a Redis server or a
// Redis proxy such as shardproxy or twemproxy, so that a script can measure
// what each client connection costs the proxy in memory (bench/memory.sh).
//
// It opens --connections connections to --addr, --dialers at a time (more
// at once than the server's listen backlog holds makes the kernel drop some
// unseen by the client). To a loopback address it dials from the source
// addresses 127.0.0.1, 127.0.0.2, ... in turn, --per-source connections from
// each, since the kernel has about 28,000 ephemeral ports per source and
// destination address. It raises its own open file limit to hold them. Then
// it goes through three phases and prints a line on stdout at the end of
// each:
//
//	connected N   all N connections are open and have sent nothing
//	pinged N      every connection has sent one PING and read its +PONG
//	closed        every connection is closed; idleconns exits 0
//
// After "connected" and after "pinged" it waits for a line on stdin (end of
// file counts as one), or with --pause D for D instead, so that the script
// can measure the proxy in between. The PINGs go out in waves of --pingers
// connections, a PING on each connection of the wave and then their
// replies, so --pingers is how many requests the server has in flight
// together; by default all connections are one wave. A connection that cannot be dialed, or whose PING is not
// answered with +PONG within --timeout, is an error: idleconns says so on
// stderr, closes every connection and exits 1. Bad flags exit 2.
//
// It writes the RESP bytes of PING on plain TCP sockets, with no client
// library, no goroutine per connection and no buffer per connection, so that
// its own memory stays small (under 2 KB per connection, mostly the Go
// runtime's state of each socket).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (include/uapi/
// linux/in.h), which the syscall package does not name. With it, binding a
// source address leaves the port to connect, which may then reuse a port
// that a connection to another destination holds, including one in
// TIME_WAIT from an earlier run against another proxy.
const ipBindAddressNoPort = 24

// extraFiles is the headroom above one descriptor per connection in the
// open file limit: standard streams, the runtime's epoll descriptor and so on.
const extraFiles = 64

var (
	ping = []byte("*1\r\n$4\r\nPING\r\n")
	pong = []byte("+PONG\r\n")
)

// config holds the flags.
type config struct {
	Addr        string
	Connections int
	Dialers     int
	Pingers     int
	PerSource   int
	Timeout     time.Duration
	Pause       time.Duration
}

// parseFlags parses args (without the program name) and checks the values.
// It returns flag.ErrHelp for --help.
func parseFlags(args []string, output io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("idleconns", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(output, `usage: idleconns [flags]

Opens --connections idle connections to a Redis server or proxy, prints
"connected N", waits, sends one PING on each and checks its +PONG, prints
"pinged N", waits, closes them all and prints "closed". It waits for a line
on stdin, or for --pause. Exits 1 when a connection fails.

flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:22121", "`host:port` to connect to")
	fs.IntVar(&c.Connections, "connections", 10000, "connections to open")
	fs.IntVar(&c.Dialers, "dialers", 64, "connections dialed at a time")
	fs.IntVar(&c.Pingers, "pingers", 0, "connections whose PINGs are in flight together; 0 = all: every PING is sent before a reply is read")
	fs.IntVar(&c.PerSource, "per-source", 20000, "connections from each loopback source address 127.0.0.1, 127.0.0.2, ... when --addr is a loopback address")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "timeout for dialing a connection and for its PING")
	fs.DurationVar(&c.Pause, "pause", 0, "wait this long after each phase instead of for a line on stdin; 0 = read stdin")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: idleconns takes flags only", fs.Arg(0))
	}
	return c, c.check()
}

// check validates the flag values, naming the flag in the error.
func (c *config) check() error {
	switch {
	case c.Addr == "":
		return errors.New("--addr: must not be empty")
	case c.Connections < 1:
		return fmt.Errorf("--connections: %d: must be at least 1", c.Connections)
	case c.Dialers < 1:
		return fmt.Errorf("--dialers: %d: must be at least 1", c.Dialers)
	case c.Pingers < 0:
		return fmt.Errorf("--pingers: %d: must not be negative", c.Pingers)
	case c.PerSource < 1:
		return fmt.Errorf("--per-source: %d: must be at least 1", c.PerSource)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout: %v: must be positive", c.Timeout)
	case c.Pause < 0:
		return fmt.Errorf("--pause: %v: must not be negative", c.Pause)
	}
	// 127.0.0.254 is the last source address.
	if c.Connections > 254*c.PerSource {
		return fmt.Errorf("--connections: %d: more than 254 source addresses of --per-source %d", c.Connections, c.PerSource)
	}
	return nil
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// realMain runs idleconns and returns the exit code.
func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "idleconns: %v\n", err)
		return 2
	}
	if err := raiseFileLimit(uint64(cfg.Connections) + extraFiles); err != nil {
		fmt.Fprintf(stderr, "idleconns: %v\n", err)
		return 1
	}
	h := holder{cfg: cfg, stdin: bufio.NewReader(stdin)}
	defer h.closeAll()
	if err := h.run(stdout); err != nil {
		fmt.Fprintf(stderr, "idleconns: %v\n", err)
		return 1
	}
	return 0
}

// raiseFileLimit raises the soft open file limit to at least n, and the
// hard limit with it when n is above that (which root may do).
func raiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open file limit: %w", err)
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising the open file limit to %d: %w", n, err)
	}
	return nil
}

// holder holds the connections through the phases.
type holder struct {
	cfg   config
	stdin *bufio.Reader
	conns []*net.TCPConn
}

// run goes through the phases, printing a line at the end of each.
func (h *holder) run(stdout io.Writer) error {
	if err := h.dialAll(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "connected %d\n", len(h.conns))
	if err := h.wait(); err != nil {
		return err
	}
	if err := h.pingAll(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pinged %d\n", len(h.conns))
	if err := h.wait(); err != nil {
		return err
	}
	h.closeAll()
	fmt.Fprintln(stdout, "closed")
	return nil
}

// wait waits for --pause, or for a line on stdin.
func (h *holder) wait() error {
	if h.cfg.Pause > 0 {
		time.Sleep(h.cfg.Pause)
		return nil
	}
	if _, err := h.stdin.ReadString('\n'); err != nil && err != io.EOF {
		return fmt.Errorf("reading stdin: %w", err)
	}
	return nil
}

// sourceAddr returns the address connection i dials from, nil for the
// kernel's choice when the destination is not a loopback address.
func (h *holder) sourceAddr(i int, dest *net.TCPAddr) *net.TCPAddr {
	if dest.IP.To4() == nil || !dest.IP.IsLoopback() {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i/h.cfg.PerSource))}
}

// dialAll opens every connection, --dialers at a time.
func (h *holder) dialAll() error {
	dest, err := net.ResolveTCPAddr("tcp", h.cfg.Addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	h.conns = make([]*net.TCPConn, h.cfg.Connections)
	return h.each(func(i int) error {
		d := net.Dialer{Timeout: h.cfg.Timeout, Control: leavePortToConnect}
		if src := h.sourceAddr(i, dest); src != nil {
			d.LocalAddr = src
		}
		c, err := d.Dial("tcp", dest.String())
		if err != nil {
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
		h.conns[i] = c.(*net.TCPConn)
		return nil
	})
}

// leavePortToConnect sets IP_BIND_ADDRESS_NO_PORT on a socket before it is
// bound to its source address.
func leavePortToConnect(network, address string, rc syscall.RawConn) error {
	if runtime.GOOS != "linux" || network != "tcp4" {
		return nil
	}
	var sockErr error
	err := rc.Control(func(fd uintptr) {
		sockErr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	if sockErr != nil {
		return fmt.Errorf("setting IP_BIND_ADDRESS_NO_PORT: %w", sockErr)
	}
	return nil
}

// pingAll sends one PING on every connection and reads its reply, in waves
// of --pingers connections: first the PING of every connection of the wave,
// then their replies, so that the PINGs of a wave are in flight together.
func (h *holder) pingAll() error {
	waveSize := len(h.conns)
	if h.cfg.Pingers > 0 {
		waveSize = min(h.cfg.Pingers, waveSize)
	}
	reply := make([]byte, len(pong))
	sent := make([]bool, waveSize)
	failed := 0
	var first error
	fail := func(i int, err error) {
		failed++
		if first == nil {
			first = fmt.Errorf("connection %d: %w", i+1, err)
		}
	}
	for start := 0; start < len(h.conns); start += len(sent) {
		wave := h.conns[start:min(start+len(sent), len(h.conns))]
		deadline := time.Now().Add(h.cfg.Timeout)
		for j, c := range wave {
			err := sendPing(c, deadline)
			sent[j] = err == nil
			if err != nil {
				fail(start+j, err)
			}
		}
		for j, c := range wave {
			if !sent[j] {
				continue
			}
			if err := readPong(c, reply); err != nil {
				fail(start+j, err)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d connections failed PING; the first: %w", failed, len(h.conns), first)
	}
	return nil
}

// sendPing sets c's deadline and sends PING on it.
func sendPing(c *net.TCPConn, deadline time.Time) error {
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.Write(ping); err != nil {
		return fmt.Errorf("sending PING: %w", err)
	}
	return nil
}

// readPong reads the reply to PING on c into buf and checks that it is
// +PONG.
func readPong(c *net.TCPConn, buf []byte) error {
	if n, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("reading the reply to PING: %w (read %q)", err, buf[:n])
	}
	if !bytes.Equal(buf, pong) {
		// Show the whole line of an error reply.
		rest, _ := bufio.NewReader(io.LimitReader(c, 200)).ReadString('\n')
		return fmt.Errorf("PING answered %q, want %q", strings.TrimRight(string(buf)+rest, "\r\n"), "+PONG")
	}
	return c.SetDeadline(time.Time{})
}

// each calls fn for every connection index, from --dialers goroutines, and
// stops handing out indexes after the first error, which it returns.
func (h *holder) each(fn func(i int) error) error {
	r := rounds{n: len(h.conns), fn: fn}
	var wg sync.WaitGroup
	for range min(h.cfg.Dialers, r.n) {
		wg.Go(r.work)
	}
	wg.Wait()
	return r.first
}

// rounds hands the indexes 0 .. n-1 out to the goroutines of each.
type rounds struct {
	n     int
	fn    func(i int) error
	next  atomic.Int64
	stop  atomic.Bool
	once  sync.Once
	first error
}

// work calls fn for the next index until none is left or one has failed.
func (r *rounds) work() {
	for !r.stop.Load() {
		i := int(r.next.Add(1) - 1)
		if i >= r.n {
			return
		}
		if err := r.fn(i); err != nil {
			r.stop.Store(true)
			r.once.Do(func() { r.first = err })
		}
	}
}

// closeAll closes every open connection.
func (h *holder) closeAll() {
	for i, c := range h.conns {
		if c != nil {
			c.Close()
			h.conns[i] = nil
		}
	}
}
