package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
)

// result is what a run reports.
type result struct {
	Target       string  `json:"target"` // "proxy" or "direct"
	Subscribers  int     `json:"subscribers"`
	PatternSubs  int     `json:"pattern_subscribers"`
	Connections  int     `json:"subscriber_connections"`
	Channels     int     `json:"channels"`
	PerServer    []int   `json:"channels_per_server"`
	Publishers   int     `json:"publishers"`
	Pipeline     int     `json:"pipeline"`
	PayloadSize  int     `json:"payload_size"`
	Published    int64   `json:"published"`
	PublishSecs  float64 `json:"publish_seconds"`
	PublishRPS   int64   `json:"publish_rps"`
	Expected     int64   `json:"expected_deliveries"`
	Delivered    int64   `json:"delivered"`
	DeliverySecs float64 `json:"delivery_seconds"` // first PUBLISH to last delivery
	DeliveredPS  int64   `json:"delivered_per_second"`
	Short        int     `json:"subscribers_short,omitempty"`
	ProxyCPUus   float64 `json:"proxy_cpu_us,omitempty"`
	ServerCPUus  float64 `json:"servers_cpu_us,omitempty"`
	Passed       bool    `json:"passed"`
	Failure      string  `json:"failure,omitempty"`
}

// channel is one channel of the run.
type channel struct {
	name    string
	pattern string // what its pattern subscribers listen on
	owner   int    // index into the servers
	subs    int64  // deliveries each message to it makes
}

// pickChannels names n channels whose owners on ring cover every server
// evenly: <prefix><k>.ch for the smallest k that give each server n/servers
// channels, and n%servers of them one more.
func pickChannels(ring *hashring.Ring, prefix string, n int) ([]channel, error) {
	servers := ring.Len()
	each, extra := n/servers, n%servers
	per := make([]int, servers)
	var chans []channel
	for k := 0; len(chans) < n; k++ {
		if k > 1000*n {
			return nil, errors.New("found no channel names that cover every server")
		}
		base := prefix + strconv.Itoa(k) + "."
		owner := ring.Lookup([]byte(base + "ch"))
		switch {
		case owner < 0 || per[owner] > each:
			continue
		case per[owner] == each:
			if extra == 0 {
				continue
			}
			extra--
		}
		per[owner]++
		chans = append(chans, channel{name: base + "ch", pattern: base + "*", owner: owner})
	}
	return chans, nil
}

// subscriber is one subscribing client: one connection, or directly for
// a pattern, one per server.
type subscriber struct {
	ch      int
	pattern bool
	conns   []net.Conn
	got     atomic.Int64
	_       [48]byte
}

// run measures as cfg says.
func run(ctx context.Context, cfg config, progress io.Writer) (res result) {
	res = result{Target: "direct", Subscribers: cfg.Subscribers, Channels: cfg.Channels,
		Publishers: cfg.Publishers, Pipeline: cfg.Pipeline, PayloadSize: cfg.PayloadSize}
	if cfg.Proxy != "" {
		res.Target = "proxy"
	}
	fail := func(format string, args ...any) result {
		res.Failure = fmt.Sprintf(format, args...)
		return res
	}
	dist, err := hashring.ParseDistribution(cfg.Distribution)
	if err != nil {
		return fail("--distribution: %v", err)
	}
	nodes := append([]hashring.Node(nil), cfg.Servers...)
	hashring.SortNodes(nodes)
	ring, err := hashring.New(nodes, hashring.Options{Hash: cfg.Hash, Distribution: dist})
	if err != nil {
		return fail("ring: %v", err)
	}
	chans, err := pickChannels(ring, cfg.Prefix, cfg.Channels)
	if err != nil {
		return fail("%v", err)
	}
	res.PerServer = make([]int, len(nodes))
	for _, c := range chans {
		res.PerServer[c.owner]++
	}

	var d deliveries
	subs := make([]*subscriber, cfg.Subscribers)
	npattern := int(float64(cfg.Subscribers)*cfg.PatternShare + 0.5)
	res.PatternSubs = npattern
	defer func() {
		for _, s := range subs {
			if s != nil {
				for _, c := range s.conns {
					c.Close()
				}
			}
		}
	}()
	var readers sync.WaitGroup
	for i := range subs {
		s := &subscriber{ch: i % len(chans), pattern: i < npattern}
		subs[i] = s
		chans[s.ch].subs++
		if err := s.subscribe(cfg, nodes, chans[s.ch], &d, &readers); err != nil {
			return fail("subscriber %d: %v", i, err)
		}
		res.Connections += len(s.conns)
	}
	if cfg.Proxy != "" {
		if err := checkOwners(cfg, nodes, chans); err != nil {
			return fail("%v", err)
		}
	}
	fmt.Fprintf(progress, "subscribed: %d subscribers (%d by pattern) on %d connections, channels per server %v\n",
		cfg.Subscribers, npattern, res.Connections, res.PerServer)

	pubs := make([]*publisher, cfg.Publishers)
	for i := range pubs {
		p, err := newPublisher(cfg, i, nodes, chans, &d)
		if err != nil {
			return fail("publisher %d: %v", i, err)
		}
		defer p.close()
		pubs[i] = p
	}

	fmt.Fprintf(progress, "publishing for %v\n", cfg.Duration)
	proxyCPU, serverCPU := cpuTime(cfg.ProxyPID), sumCPU(cfg.ServerPIDs)
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range pubs {
		wg.Add(1)
		go p.run(&stop, &wg)
	}
	timer := time.NewTimer(cfg.Duration)
	tick := time.NewTicker(time.Second)
	var lastDelivered int64
wait:
	for {
		select {
		case <-tick.C:
			n := d.delivered.Load()
			fmt.Fprintf(progress, "elapsed %3.0fs  delivered/s %9d  published %d\n",
				time.Since(start).Seconds(), n-lastDelivered, publishedSum(pubs))
			lastDelivered = n
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	tick.Stop()
	stop.Store(true)
	wg.Wait()
	res.PublishSecs = time.Since(start).Seconds()
	for _, p := range pubs {
		if p.err != nil {
			return fail("publisher %d: %v", p.id, p.err)
		}
	}

	// Wait for the last messages.
	deadline := time.Now().Add(cfg.Drain)
	for d.delivered.Load() < d.expected.Load() && time.Now().Before(deadline) && d.broken.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	res.DeliverySecs = time.Since(start).Seconds()
	if cfg.ProxyPID > 0 {
		res.ProxyCPUus = float64(cpuTime(cfg.ProxyPID)-proxyCPU) / float64(time.Microsecond)
	}
	if len(cfg.ServerPIDs) > 0 {
		res.ServerCPUus = float64(sumCPU(cfg.ServerPIDs)-serverCPU) / float64(time.Microsecond)
	}
	// Anything more than expected would show as a count above it.
	time.Sleep(50 * time.Millisecond)

	res.Published = publishedSum(pubs)
	res.PublishRPS = int64(float64(res.Published) / res.PublishSecs)
	res.Expected = d.expected.Load()
	res.Delivered = d.delivered.Load()
	res.DeliveredPS = int64(float64(res.Delivered) / res.DeliverySecs)
	if p := d.broken.Load(); p != nil {
		return fail("%s", *p)
	}
	perChannel := make([]int64, len(chans))
	for _, p := range pubs {
		for i, n := range p.published {
			perChannel[i] += n
		}
	}
	var first string
	res.Short, first = checkDeliveries(subs, chans, perChannel)
	if res.Short > 0 {
		return fail("%d of %d subscribers did not get exactly the messages published to their channel; the first: %s",
			res.Short, len(subs), first)
	}
	if res.Published == 0 {
		return fail("nothing was published")
	}
	res.Passed = true
	return res
}

// checkDeliveries counts the subscribers that did not get exactly the
// messages published to their channel, and describes the first.
func checkDeliveries(subs []*subscriber, chans []channel, perChannel []int64) (short int, first string) {
	for i, s := range subs {
		want := perChannel[s.ch]
		if got := s.got.Load(); got != want {
			short++
			if first == "" {
				first = fmt.Sprintf("subscriber %d (%s) got %d of %d messages", i, s.describe(chans), got, want)
			}
		}
	}
	return short, first
}

func (s *subscriber) describe(chans []channel) string {
	if s.pattern {
		return "PSUBSCRIBE " + chans[s.ch].pattern
	}
	return "SUBSCRIBE " + chans[s.ch].name
}

// deliveries are the run's shared counters.
type deliveries struct {
	expected  atomic.Int64 // deliveries the acknowledged PUBLISHes make
	_         [56]byte
	delivered atomic.Int64 // messages the subscribers received
	_         [56]byte
	broken    atomic.Pointer[string] // the first subscriber failure
}

func (d *deliveries) fail(msg string) {
	d.broken.CompareAndSwap(nil, &msg)
}

// subscribe opens the subscriber's connections, subscribes and starts a
// reader on each.
func (s *subscriber) subscribe(cfg config, nodes []hashring.Node, ch channel, d *deliveries, readers *sync.WaitGroup) error {
	var addrs []string
	switch {
	case cfg.Proxy != "":
		addrs = []string{cfg.Proxy}
	case s.pattern:
		for _, n := range nodes {
			addrs = append(addrs, n.Addr)
		}
	default:
		addrs = []string{nodes[ch.owner].Addr}
	}
	cmd, name := "SUBSCRIBE", ch.name
	if s.pattern {
		cmd, name = "PSUBSCRIBE", ch.pattern
	}
	for _, addr := range addrs {
		c, err := net.DialTimeout("tcp", addr, cfg.Timeout)
		if err != nil {
			return err
		}
		s.conns = append(s.conns, c)
		c.SetDeadline(time.Now().Add(cfg.Timeout))
		if _, err := c.Write(appendCommand(nil, cmd, name)); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		r := bufio.NewReaderSize(c, 64<<10)
		if err := readConfirmation(r, strings.ToLower(cmd), name); err != nil {
			return fmt.Errorf("%s %s on %s: %w", cmd, name, addr, err)
		}
		c.SetDeadline(time.Time{})
		readers.Add(1)
		go s.read(r, cfg.Publishers, d, readers)
	}
	return nil
}

// readConfirmation reads the confirmation of a subscription to name.
func readConfirmation(r *bufio.Reader, what, name string) error {
	want := fmt.Sprintf("*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n:", len(what), what, len(name), name)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("confirmation %q, want %q", got, want)
	}
	_, err := r.ReadSlice('\n')
	return err
}

// read counts the messages arriving on one connection until it closes,
// checking that each publisher's sequence numbers only grow.
func (s *subscriber) read(r *bufio.Reader, publishers int, d *deliveries, readers *sync.WaitGroup) {
	defer readers.Done()
	last := make([]int64, publishers)
	for i := range last {
		last[i] = -1
	}
	var pending int64
	for {
		payload, err := readMessage(r)
		if err != nil {
			d.delivered.Add(pending)
			if !errors.Is(err, net.ErrClosed) {
				d.fail(fmt.Sprintf("subscriber connection: %v", err))
			}
			return
		}
		pub, seq, ok := parsePayload(payload)
		if !ok || pub >= publishers {
			d.fail(fmt.Sprintf("subscriber connection: bad payload %q", payload))
			return
		}
		if seq <= last[pub] {
			d.fail(fmt.Sprintf("subscriber connection: publisher %d's message %d after its message %d", pub, seq, last[pub]))
			return
		}
		last[pub] = seq
		s.got.Add(1)
		pending++
		if r.Buffered() == 0 {
			d.delivered.Add(pending)
			pending = 0
		}
	}
}

// readMessage reads one message or pmessage and returns its payload,
// valid until the next read.
func readMessage(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	var elems int
	switch string(line) {
	case "*3\r\n":
		elems = 3
	case "*4\r\n":
		elems = 4
	default:
		return nil, fmt.Errorf("unexpected %q", line)
	}
	for i := 0; i < elems; i++ {
		b, err := readBulk(r)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if kind := string(b); !(elems == 3 && kind == "message" || elems == 4 && kind == "pmessage") {
				return nil, fmt.Errorf("unexpected %q with %d elements", kind, elems)
			}
		}
		if i == elems-1 {
			return b, nil
		}
	}
	return nil, nil
}

// readBulk reads a bulk string, valid until the next read.
func readBulk(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 4 || line[0] != '$' {
		return nil, fmt.Errorf("unexpected %q", line)
	}
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil || n < 0 || n > r.Size()-2 {
		return nil, fmt.Errorf("unexpected %q", line)
	}
	b, err := r.Peek(n + 2)
	if err != nil {
		return nil, err
	}
	r.Discard(n + 2)
	return b[:n], nil
}

// appendPayload appends a message of size bytes from publisher pub with
// sequence number seq.
func appendPayload(dst []byte, pub int, seq int64, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, int64(pub), 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, ':')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parsePayload reads the publisher and sequence number at the start of a
// payload.
func parsePayload(b []byte) (pub int, seq int64, ok bool) {
	i := 0
	num := func() (int64, bool) {
		var v int64
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v = v*10 + int64(b[i]-'0')
			i++
		}
		if i == j || i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i++
		return v, true
	}
	p, ok1 := num()
	s, ok2 := num()
	return int(p), s, ok1 && ok2
}

// publisher sends PUBLISH round-robin over the channels, pipelined, to the
// proxy or to each channel's owner.
type publisher struct {
	id      int
	cfg     config
	chans   []channel
	conns   []net.Conn      // the proxy's, or one per server
	readers []*bufio.Reader // of conns
	d       *deliveries

	published []int64 // acknowledged PUBLISHes per channel
	total     atomic.Int64
	err       error
}

func newPublisher(cfg config, id int, nodes []hashring.Node, chans []channel, d *deliveries) (*publisher, error) {
	p := &publisher{id: id, cfg: cfg, chans: chans, d: d, published: make([]int64, len(chans))}
	addrs := []string{cfg.Proxy}
	if cfg.Proxy == "" {
		addrs = nil
		for _, n := range nodes {
			addrs = append(addrs, n.Addr)
		}
	}
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, cfg.Timeout)
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns = append(p.conns, c)
		p.readers = append(p.readers, bufio.NewReaderSize(c, 16<<10))
	}
	return p, nil
}

func (p *publisher) close() {
	for _, c := range p.conns {
		c.Close()
	}
}

// run publishes until stop is set or a request fails.
func (p *publisher) run(stop *atomic.Bool, wg *sync.WaitGroup) {
	defer wg.Done()
	bufs := make([][]byte, len(p.conns))
	sent := make([][]int, len(p.conns)) // channel of each PUBLISH, per connection
	next := p.id % len(p.chans)
	var seq int64
	for !stop.Load() {
		// Wait while the subscribers are behind by more than the window.
		for p.d.expected.Load()-p.d.delivered.Load() > int64(p.cfg.Window) && !stop.Load() {
			if p.d.broken.Load() != nil {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		for i := range bufs {
			bufs[i], sent[i] = bufs[i][:0], sent[i][:0]
		}
		for range p.cfg.Pipeline {
			ch := &p.chans[next]
			ci := 0
			if p.cfg.Proxy == "" {
				ci = ch.owner
			}
			bufs[ci] = appendPublish(bufs[ci], ch.name, p.id, seq, p.cfg.PayloadSize)
			sent[ci] = append(sent[ci], next)
			seq++
			next = (next + 1) % len(p.chans)
		}
		deadline := time.Now().Add(p.cfg.Timeout)
		for i, b := range bufs {
			if len(b) == 0 {
				continue
			}
			p.conns[i].SetDeadline(deadline)
			if _, err := p.conns[i].Write(b); err != nil {
				p.err = fmt.Errorf("PUBLISH: %w", err)
				return
			}
		}
		for i, chs := range sent {
			for _, ch := range chs {
				line, err := p.readers[i].ReadSlice('\n')
				if err != nil {
					p.err = fmt.Errorf("PUBLISH reply: %w", err)
					return
				}
				if len(line) < 3 || line[0] != ':' {
					p.err = fmt.Errorf("PUBLISH %s: reply %q", p.chans[ch].name, line)
					return
				}
				p.published[ch]++
				p.d.expected.Add(p.chans[ch].subs)
			}
			p.total.Add(int64(len(chs)))
		}
	}
}

// appendPublish appends PUBLISH name <payload>.
func appendPublish(dst []byte, name string, pub int, seq int64, size int) []byte {
	dst = append(dst, "*3\r\n$7\r\nPUBLISH\r\n$"...)
	dst = strconv.AppendInt(dst, int64(len(name)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, name...)
	dst = append(dst, "\r\n$"...)
	dst = strconv.AppendInt(dst, int64(size), 10)
	dst = append(dst, "\r\n"...)
	dst = appendPayload(dst, pub, seq, size)
	return append(dst, "\r\n"...)
}

func publishedSum(pubs []*publisher) int64 {
	var n int64
	for _, p := range pubs {
		n += p.total.Load()
	}
	return n
}

// checkOwners asks each channel's owner how many subscribers it has:
// through a proxy, exactly one (the proxy's subscription connection), so
// the ring here places the channels where the proxy does.
func checkOwners(cfg config, nodes []hashring.Node, chans []channel) error {
	for _, ch := range chans {
		addr := nodes[ch.owner].Addr
		c, err := net.DialTimeout("tcp", addr, cfg.Timeout)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(cfg.Timeout))
		_, err = c.Write(appendCommand(nil, "PUBSUB", "NUMSUB", ch.name))
		var reply []byte
		if err == nil {
			reply = make([]byte, 256)
			var n int
			n, err = io.ReadAtLeast(c, reply, 1)
			reply = reply[:n]
		}
		c.Close()
		if err != nil {
			return fmt.Errorf("PUBSUB NUMSUB on %s: %w", addr, err)
		}
		want := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n:1\r\n", len(ch.name), ch.name)
		if string(reply) != want {
			return fmt.Errorf("channel %s: its owner %s (%s) answers PUBSUB NUMSUB with %q, not one subscriber: the proxy places channels differently from --servers, --hash and --distribution",
				ch.name, nodes[ch.owner].Name, addr, reply)
		}
	}
	return nil
}

// appendCommand appends args as a RESP array of bulk strings.
func appendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, "\r\n"...)
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, "\r\n"...)
		dst = append(dst, a...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// cpuTime is the user and system time process pid has used, 0 when pid is
// 0 or unreadable.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it do not.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat's times.
const clockTicks = 100

func sumCPU(pids []int) time.Duration {
	var t time.Duration
	for _, pid := range pids {
		t += cpuTime(pid)
	}
	return t
}
