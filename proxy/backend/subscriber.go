package backend

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/proxy/resp"
)

// MessageKind says what a subscription is to: a channel, a pattern or a
// shard channel.
type MessageKind uint8

const (
	Channel      MessageKind = iota // SUBSCRIBE, "message"
	Pattern                         // PSUBSCRIBE, "pmessage"
	ShardChannel                    // SSUBSCRIBE, "smessage"
)

// MessageSink receives what arrives on a subscription connection. Message
// gets the connection, each message as the server sent it (a RESP2 array),
// its kind and the channel or pattern it was subscribed by, both valid only
// during the call; it runs on the connection's reader and must not block.
// Closed runs once, after the last Message, when the connection failed or
// was closed.
type MessageSink interface {
	Message(s *Subscriber, kind MessageKind, name, raw []byte)
	Closed(s *Subscriber, err error)
}

// Subscriber is a subscription connection: one per upstream, carrying the
// SUBSCRIBE and UNSUBSCRIBE commands of every client of the proxy that
// listens there. It speaks RESP2, knows no client, and hands each message
// to its sink.
type Subscriber struct {
	up      *Upstream
	addr    string // where it was dialled
	conn    net.Conn
	sink    MessageSink
	closing atomic.Bool // Close was called: its end is no sign of a failure

	mu      sync.Mutex // guards pending and err; held while writing
	pending []pendingAck
	err     error // why it closed; nil while open
}

// pendingAck is a command sent and not yet confirmed: n confirmations (one
// per channel or pattern it names) are still due, then done runs.
type pendingAck struct {
	n    int
	done func(error) // nil when nobody waits
}

// DialSubscriber opens a subscription connection to u that delivers to
// sink.
func (u *Upstream) DialSubscriber(sink MessageSink) (*Subscriber, error) {
	if why := u.address.Unavailable(); why != "" {
		return nil, errors.New(why)
	}
	if u.retired.Load() {
		return nil, errUpstreamRetired
	}
	addr := u.address.DialAddr()
	conn, err := u.dialer.dial(addr, u.config.Load().Timeout)
	if err != nil {
		return nil, err
	}
	u.stats.Connections.Add(1)
	s := &Subscriber{up: u, addr: addr, conn: conn, sink: sink}
	go s.readLoop()
	return s, nil
}

// Send writes a subscription command naming n channels or patterns; done,
// unless nil, runs on the reader once the server confirmed all of them,
// with nil, or with the error the server or the connection gave.
func (s *Subscriber) Send(req []byte, n int, done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.pending = append(s.pending, pendingAck{n: n, done: done})
	t := s.up.config.Load().Timeout
	if t <= 0 {
		t = defaultDialTimeout
	}
	s.conn.SetWriteDeadline(time.Now().Add(t))
	if _, err := s.conn.Write(req); err != nil {
		s.conn.Close()
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Close closes the connection; its sink's Closed follows.
func (s *Subscriber) Close() {
	s.closing.Store(true)
	s.conn.Close()
}

// Upstream returns the upstream s is a connection to.
func (s *Subscriber) Upstream() *Upstream { return s.up }

// Addr returns the address s was dialled at: for a group, the master it
// subscribes on.
func (s *Subscriber) Addr() string { return s.addr }

// readLoop reads what the server sends until the connection ends, then
// fails what is still unconfirmed and tells the sink. A group's connection
// lost other than by Close is a sign that its master may have moved.
func (s *Subscriber) readLoop() {
	err := s.read()
	s.conn.Close()
	s.up.stats.Connections.Add(-1)
	if !s.closing.Load() {
		s.up.doubt()
	}
	s.mu.Lock()
	s.err = err
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, p := range pending {
		if p.done != nil {
			p.done(err)
		}
	}
	s.sink.Closed(s, err)
}

func (s *Subscriber) read() error {
	var scanner resp.ReplyScanner
	buf := make([]byte, 16<<10)
	start, end := 0, 0
	for {
		n, err := scanner.Scan(buf[start:end])
		if err != nil {
			return err
		}
		if n > 0 {
			if err := s.handle(buf[start : start+n]); err != nil {
				return err
			}
			start += n
			if start == end {
				start, end = 0, 0
				if len(buf) > maxKeptBuffer {
					buf = make([]byte, 16<<10)
				}
			}
			continue
		}
		if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else {
				nb := make([]byte, 2*len(buf))
				copy(nb, buf[:end])
				buf = nb
			}
		}
		k, err := s.conn.Read(buf[end:])
		end += k
		if k == 0 && err != nil {
			return err
		}
	}
}

// handle acts on one reply: a message goes to the sink, a confirmation
// counts towards the oldest command sent, an error answers that command.
func (s *Subscriber) handle(reply []byte) error {
	if reply[0] == '-' {
		msg := string(bytes.TrimRight(reply[1:], "\r\n"))
		s.confirmed(errors.New(msg), true)
		return nil
	}
	kind, rest, ok := bulkElem(reply, true)
	if !ok {
		return resp.ErrBadReply
	}
	var mk MessageKind
	switch string(kind) {
	case "message":
		mk = Channel
	case "pmessage":
		mk = Pattern
	case "smessage":
		mk = ShardChannel
	case "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe":
		s.confirmed(nil, false)
		return nil
	default:
		return resp.ErrBadReply
	}
	name, _, ok := bulkElem(rest, false)
	if !ok {
		return resp.ErrBadReply
	}
	s.sink.Message(s, mk, name, reply)
	return nil
}

// confirmed counts one confirmation of the oldest pending command, or ends
// it at once with err when all is set.
func (s *Subscriber) confirmed(err error, all bool) {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return
	}
	p := &s.pending[0]
	p.n--
	if p.n > 0 && !all {
		s.mu.Unlock()
		return
	}
	done := p.done
	s.pending[0] = pendingAck{}
	s.pending = s.pending[1:]
	s.mu.Unlock()
	if done != nil {
		done(err)
	}
}

// bulkElem reads the array header (when header is set) and then one bulk
// string element from b, returning the element and what follows it.
func bulkElem(b []byte, header bool) (elem, rest []byte, ok bool) {
	if header {
		line, n := resp.ReadLine(b, 0)
		if n < 0 || len(line) == 0 || line[0] != '*' {
			return nil, nil, false
		}
		b = b[n:]
	}
	line, n := resp.ReadLine(b, 0)
	if n < 0 || len(line) == 0 || line[0] != '$' {
		return nil, nil, false
	}
	size, ok := resp.ParseLength(line[1:])
	if !ok || size < 0 || n+size+2 > len(b) {
		return nil, nil, false
	}
	return b[n : n+size], b[n+size+2:], true
}
