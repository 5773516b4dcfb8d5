package backend

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/shardproxy/shardproxy/proxy/resp"
)

// defaultDialTimeout bounds a dial when the pool sets no timeout.
const defaultDialTimeout = 5 * time.Second

// dialer opens every connection to one upstream, shared and dedicated
// alike: it connects (TCP or a unix socket), then authenticates and selects
// the database before the connection carries any request, so that AUTH
// always precedes SELECT (nutcracker sends SELECT first and loses it
// against a password-protected server). TLS belongs here too once pools
// speak it.
type dialer struct {
	network string
	auth    string // "" for none
	db      int    // selected when > 0
}

// dial connects to addr and readies the connection, all within timeout
// (defaultDialTimeout when it is 0).
func (d *dialer) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	conn, err := net.DialTimeout(d.network, addr, timeout)
	if err != nil {
		return nil, err
	}
	if err := d.handshake(conn, timeout); err != nil {
		conn.Close()
		return nil, err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	return conn, nil
}

// handshake sends AUTH and SELECT, as needed, and checks their replies.
func (d *dialer) handshake(conn net.Conn, timeout time.Duration) error {
	var req []byte
	n := 0
	if d.auth != "" {
		req = resp.AppendCommand(req, []byte("AUTH"), []byte(d.auth))
		n++
	}
	if d.db > 0 {
		req = resp.AppendCommand(req, []byte("SELECT"), strconv.AppendInt(nil, int64(d.db), 10))
		n++
	}
	if n == 0 {
		return nil
	}
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(req); err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	for i := 0; i < n; i++ {
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) > 0 && line[0] == '-' {
			what := "AUTH"
			if d.auth == "" || i == 1 {
				what = "SELECT"
			}
			return fmt.Errorf("%s refused: %s", what, trimCRLF(line[1:]))
		}
	}
	return nil
}

func trimCRLF(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
