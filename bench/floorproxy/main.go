//go:build linux

// Floorproxy is a yardstick, not a proxy to run: the least a sharding proxy
// written in Go can do per request, so that bench/cost.sh can say how much
// of shardproxy's CPU its I/O model costs and how much any event loop would
// pay anyway.
//
// One goroutine, locked to its thread, runs an epoll loop that owns every
// socket, as nutcracker's single thread does. Each turn of the loop it reads
// every readable socket once (level-triggered: no read ends in EAGAIN), puts
// each complete command of a client on the write buffer of the server its
// key's place on a ketama ring (fnv1a_64) names, and hands each reply back to
// its client in request order; then it writes every server's buffer and
// every client's replies with one write each. It has no configuration file,
// statistics, timeouts, reconnection, authentication or command table: a
// command's second argument is its key, and a command without one gets an
// error (PING gets PONG). A server that fails ends the process.
//
//	floorproxy -listen 127.0.0.1:22121 -servers 127.0.0.1:6379:redis1,127.0.0.1:6380:redis2
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:22121", "the address to accept clients on")
	servers := flag.String("servers", "", "the servers, comma-separated, each host:port:name")
	flag.Parse()
	if err := run(*listen, *servers); err != nil {
		fmt.Fprintln(os.Stderr, "floorproxy:", err)
		os.Exit(1)
	}
}

// conn is a client or a server socket.
type conn struct {
	fd     int
	server bool
	closed bool

	rbuf       []byte
	start, end int
	out        []byte // replies to write (a client), requests to write (a server)
	dirty      bool   // out grew this turn
	waitingOut bool   // EPOLLOUT is registered: out did not all fit

	// A client's replies in request order: a ring, slots[id&(len-1)]
	// holding request id, base the oldest unanswered and next the number
	// of the next request.
	slots []slot
	base  uint64
	next  uint64

	// A server's requests awaiting replies, oldest first.
	waiting []waiter
	whead   int
}

type slot struct {
	reply []byte
	done  bool
}

type waiter struct {
	c  *conn
	id uint64
}

// loop is the state of the event loop.
type loop struct {
	epfd    int
	lfd     int
	conns   []*conn // by descriptor
	servers []*conn
	ring    *hashring.Ring
	dirty   []*conn
	parser  resp.Parser
	cmd     resp.Command
	scanner resp.ReplyScanner
}

func run(listen, servers string) error {
	runtime.LockOSThread()
	var nodes []hashring.Node
	var addrs []string
	for _, s := range strings.Split(servers, ",") {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return fmt.Errorf("server %q is not host:port:name", s)
		}
		nodes = append(nodes, hashring.Node{Name: s[i+1:], Addr: s[:i], Weight: 1})
		addrs = append(addrs, s[:i])
	}
	ring, err := hashring.New(nodes, hashring.Options{Hash: "fnv1a_64", Distribution: hashring.Ketama})
	if err != nil {
		return err
	}
	l := &loop{ring: ring}
	if l.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	for _, a := range addrs {
		fd, err := dial(a)
		if err != nil {
			return fmt.Errorf("server %s: %w", a, err)
		}
		c := l.add(fd, true)
		l.servers = append(l.servers, c)
	}
	if l.lfd, err = listenOn(listen); err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	if err := l.watch(l.lfd, syscall.EPOLLIN, syscall.EPOLL_CTL_ADD); err != nil {
		return err
	}
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				l.write(c)
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 && !c.closed {
				if err := l.read(c); err != nil {
					return err
				}
			}
		}
		// Servers first: their requests are on their way while the
		// clients' replies are written.
		for _, s := range l.servers {
			if s.dirty {
				l.write(s)
			}
		}
		for _, c := range l.dirty {
			if c.dirty && !c.closed {
				l.write(c)
			}
		}
		clear(l.dirty)
		l.dirty = l.dirty[:0]
	}
}

func (l *loop) add(fd int, server bool) *conn {
	for fd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	c := &conn{fd: fd, server: server, rbuf: make([]byte, 16<<10)}
	l.conns[fd] = c
	if err := l.watch(fd, syscall.EPOLLIN, syscall.EPOLL_CTL_ADD); err != nil {
		fmt.Fprintln(os.Stderr, "floorproxy:", err)
	}
	return c
}

func (l *loop) watch(fd int, events uint32, op int) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (l *loop) accept() {
	for {
		fd, _, err := syscall.Accept4(l.lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: none left
		}
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		l.add(fd, false)
	}
}

func (l *loop) close(c *conn) {
	c.closed = true
	l.conns[c.fd] = nil
	syscall.Close(c.fd) // also leaves the epoll set
}

// read reads what c has, once, and handles every complete message in it.
func (l *loop) read(c *conn) error {
	if c.end == len(c.rbuf) {
		if c.start > 0 {
			c.end = copy(c.rbuf, c.rbuf[c.start:c.end])
			c.start = 0
		} else {
			c.rbuf = append(c.rbuf, make([]byte, len(c.rbuf))...)
		}
	}
	n, err := syscall.Read(c.fd, c.rbuf[c.end:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return nil
	}
	if n <= 0 {
		if c.server {
			return fmt.Errorf("server connection lost: %v", err)
		}
		l.close(c)
		return nil
	}
	c.end += n
	if c.server {
		return l.replies(c)
	}
	l.requests(c)
	return nil
}

// requests sends each complete command of client c to its server.
func (l *loop) requests(c *conn) {
	for c.start < c.end {
		n, err := l.parser.Next(c.rbuf[c.start:c.end], &l.cmd)
		if err != nil {
			c.out = append(c.out, "-ERR Protocol error\r\n"...)
			l.markDirty(c)
			l.write(c)
			l.close(c)
			return
		}
		if n == 0 {
			break
		}
		c.start += n
		if c.next-c.base == uint64(len(c.slots)) {
			c.grow()
		}
		id := c.next
		c.next++
		if len(l.cmd.Args) < 2 {
			l.deliver(c, id, keyless(l.cmd.Args))
			continue
		}
		s := l.servers[l.ring.Lookup(l.cmd.Args[1])]
		s.out = append(s.out, l.cmd.Raw...)
		s.waiting = append(s.waiting, waiter{c: c, id: id})
		s.dirty = true
	}
	if c.start == c.end {
		c.start, c.end = 0, 0
	}
}

// keyless is the reply to a command without a key: PONG to a PING, so
// that scripts can wait for floorproxy as for a server, and an error to
// anything else.
func keyless(args [][]byte) []byte {
	if len(args) == 1 && strings.EqualFold(string(args[0]), "ping") {
		return []byte("+PONG\r\n")
	}
	return []byte("-ERR floorproxy: a command needs a key\r\n")
}

// replies hands each complete reply of server s to the client that waits
// for it.
func (l *loop) replies(s *conn) error {
	for at := s.start; at < s.end; {
		n, err := l.scanner.Scan(s.rbuf[at:s.end])
		if err != nil {
			return fmt.Errorf("server reply: %w", err)
		}
		if n == 0 {
			break
		}
		if s.whead == len(s.waiting) {
			return errors.New("a reply without a request")
		}
		w := s.waiting[s.whead]
		s.waiting[s.whead] = waiter{}
		s.whead++
		if !w.c.closed {
			l.deliver(w.c, w.id, s.rbuf[at:at+n])
		}
		at += n
		s.start = at
	}
	if s.whead == len(s.waiting) {
		s.waiting, s.whead = s.waiting[:0], 0
	}
	if s.start == s.end {
		s.start, s.end = 0, 0
	}
	return nil
}

// deliver records the reply to client c's request id and moves every reply
// that is next in order to the client's output.
func (l *loop) deliver(c *conn, id uint64, reply []byte) {
	mask := uint64(len(c.slots) - 1)
	sl := &c.slots[id&mask]
	sl.reply = append(sl.reply[:0], reply...)
	sl.done = true
	moved := false
	for c.base < c.next {
		sl := &c.slots[c.base&mask]
		if !sl.done {
			break
		}
		c.out = append(c.out, sl.reply...)
		sl.done = false
		c.base++
		moved = true
	}
	if moved {
		l.markDirty(c)
	}
}

// grow doubles the ring of c's reply slots, which is full.
func (c *conn) grow() {
	ns := make([]slot, max(4, 2*len(c.slots)))
	for id := c.base; id < c.next; id++ {
		ns[id&uint64(len(ns)-1)] = c.slots[id&uint64(len(c.slots)-1)]
	}
	c.slots = ns
}

func (l *loop) markDirty(c *conn) {
	if !c.dirty {
		c.dirty = true
		l.dirty = append(l.dirty, c)
	}
}

// write writes c's output; what the socket does not take waits for
// EPOLLOUT.
func (l *loop) write(c *conn) {
	c.dirty = false
	for len(c.out) > 0 {
		n, err := syscall.Write(c.fd, c.out)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			if c.server {
				fmt.Fprintln(os.Stderr, "floorproxy: server write:", err)
				os.Exit(1)
			}
			l.close(c)
			return
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	switch {
	case len(c.out) > 0 && !c.waitingOut:
		c.waitingOut = true
		l.watch(c.fd, syscall.EPOLLIN|syscall.EPOLLOUT, syscall.EPOLL_CTL_MOD)
	case len(c.out) == 0 && c.waitingOut:
		c.waitingOut = false
		l.watch(c.fd, syscall.EPOLLIN, syscall.EPOLL_CTL_MOD)
	}
}

func dial(addr string) (int, error) {
	a, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	return fd, syscall.SetNonblock(fd, true)
}

func listenOn(addr string) (int, error) {
	a, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	if err := syscall.Bind(fd, sa); err != nil {
		return -1, err
	}
	return fd, syscall.Listen(fd, 1024)
}
