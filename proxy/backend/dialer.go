package backend

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/proxy/resp"
)

// defaultDialTimeout bounds a dial when the pool sets no timeout.
const defaultDialTimeout = 5 * time.Second

// dialer opens every connection to one upstream, shared and dedicated
// alike: it connects (TCP or a unix socket), then authenticates and selects
// the database before the connection carries any request, so that AUTH
// always precedes SELECT (nutcracker sends SELECT first and loses it
// against a password-protected server). With TLS, the TLS handshake comes
// first.
type dialer struct {
	network string
	tls     *tlsDial // nil for plain TCP (tls.go)
	auth    string   // "" for none
	user    string   // AUTH's user with auth; "" for the default user
	db      int      // selected when > 0
	// group, for a group's connections, makes the handshake end with
	// ROLE, which must say master; doubt then runs when it does not.
	group string
	doubt func()
	// replica, with group, makes ROLE say a replica with its master
	// link connected instead (replica.go).
	replica bool
	// readOnly makes the handshake send READONLY, which must answer +OK:
	// a Redis Cluster replica then serves reads of its master's slots on
	// the connection. It is part of every dial, so no connection, a
	// reconnected one included, carries a request before READONLY was
	// acknowledged.
	readOnly bool
}

// Protocol versions a connection speaks to its server: what the clients it
// carries chose with HELLO.
const (
	RESP2 = 2
	RESP3 = 3
)

// ErrNoRESP3 is why a RESP3 connection could not be opened: the server
// does not know HELLO (Redis before 6, or HELLO renamed away) or refuses
// protocol 3.
var ErrNoRESP3 = errors.New("the server does not speak RESP3")

// dial connects to addr and readies the connection for RESP2, all within
// timeout (defaultDialTimeout when it is 0).
func (d *dialer) dial(addr string, timeout time.Duration) (net.Conn, error) {
	return d.dialProto(addr, timeout, RESP2)
}

// dialProto connects to addr and readies the connection for protocol
// proto.
func (d *dialer) dialProto(addr string, timeout time.Duration, proto int) (net.Conn, error) {
	return d.dialSetup(addr, timeout, proto, nil)
}

// dialSetup is dialProto with setup, commands that must each answer +OK,
// sent after the handshake in the same write.
func (d *dialer) dialSetup(addr string, timeout time.Duration, proto int, setup [][][]byte) (net.Conn, error) {
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	conn, err := net.DialTimeout(d.network, addr, timeout)
	if err != nil {
		return nil, err
	}
	if d.tls != nil {
		if conn, err = d.tls.handshake(conn, timeout); err != nil {
			return nil, err
		}
	}
	if err := d.handshake(conn, timeout, proto, setup); err != nil {
		conn.Close()
		if d.doubt != nil && errors.Is(err, ErrNotMaster) {
			d.doubt()
		}
		return nil, err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	return conn, nil
}

// handshake sends what readies the connection and checks the replies: for
// RESP3, HELLO 3 (with AUTH <user> <password> in it when the pool has a
// password, user "default" unless server_auth_user names one); for RESP2,
// AUTH [user] password; then SELECT, and READONLY.
func (d *dialer) handshake(conn net.Conn, timeout time.Duration, proto int, setup [][][]byte) error {
	var req []byte
	var what []string
	if proto == RESP3 {
		args := [][]byte{[]byte("HELLO"), []byte("3")}
		if d.auth != "" {
			args = append(args, []byte("AUTH"), []byte(cmp.Or(d.user, "default")), []byte(d.auth))
		}
		req = resp.AppendCommand(req, args...)
		what = append(what, "HELLO")
	} else if d.auth != "" && d.user != "" {
		req = resp.AppendCommand(req, []byte("AUTH"), []byte(d.user), []byte(d.auth))
		what = append(what, "AUTH")
	} else if d.auth != "" {
		req = resp.AppendCommand(req, []byte("AUTH"), []byte(d.auth))
		what = append(what, "AUTH")
	}
	if d.db > 0 {
		req = resp.AppendCommand(req, []byte("SELECT"), strconv.AppendInt(nil, int64(d.db), 10))
		what = append(what, "SELECT")
	}
	if d.group != "" {
		req = resp.AppendCommand(req, []byte("ROLE"))
		what = append(what, "ROLE")
	}
	if d.readOnly {
		req = resp.AppendCommand(req, []byte("READONLY"))
		what = append(what, "READONLY")
	}
	for _, args := range setup {
		req = resp.AppendCommand(req, args...)
		what = append(what, strings.ToUpper(string(bytes.Join(args[:min(2, len(args))], []byte(" ")))))
	}
	if len(what) == 0 {
		return nil
	}
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(req); err != nil {
		return err
	}
	buf := make([]byte, 0, 512)
	var scanner resp.ReplyScanner
	start := 0
	for _, cmd := range what {
		var n int
		for {
			var err error
			if n, err = scanner.Scan(buf[start:]); err != nil {
				return fmt.Errorf("%s: %w", cmd, err)
			}
			if n > 0 {
				break
			}
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			k, err := conn.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if k == 0 && err != nil {
				return err
			}
		}
		reply := buf[start : start+n]
		start += n
		if cmd == "ROLE" {
			check := checkRole
			if d.replica {
				check = checkReplicaRole
			}
			if err := check(d.group, reply); err != nil {
				return err
			}
			continue
		}
		if !resp.IsError(reply) {
			continue
		}
		msg := trimCRLF(string(reply[1:]))
		if cmd == "HELLO" && (strings.HasPrefix(msg, "ERR unknown command") || strings.HasPrefix(msg, "NOPROTO")) {
			return fmt.Errorf("%w: HELLO 3 refused: %s", ErrNoRESP3, msg)
		}
		return fmt.Errorf("%s refused: %s", cmd, msg)
	}
	return nil
}

func trimCRLF(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
