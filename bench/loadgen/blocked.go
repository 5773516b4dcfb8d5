package main

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// blockedSettle is how long the blocked connections must stay unanswered
// before the load starts, and blockedRecheck how long they are given to
// show an answer at its end.
const (
	blockedSettle  = 500 * time.Millisecond
	blockedRecheck = 100 * time.Millisecond
)

// blockedConns are --blocked connections, each blocked in BLPOP on a key
// of its own (<key-prefix>blocked:<i>, which nothing pushes to) with
// timeout 0, for the whole run: through shardproxy each holds a server
// connection of its own meanwhile, which is what the load runs beside.
// They speak RESP directly, without go-redis, since each only writes one
// command and waits.
type blockedConns struct {
	conns []net.Conn
}

// openBlocked dials n connections to cfg.Addr, authenticates them when
// cfg.Password is set, and sends each its BLPOP.
func openBlocked(cfg config, n int) (*blockedConns, error) {
	b := &blockedConns{}
	for i := range n {
		c, err := net.DialTimeout("tcp", cfg.Addr, cfg.Timeout)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("blocked connection %d: %w", i, err)
		}
		b.conns = append(b.conns, c)
		if cfg.Password != "" {
			if err := authenticate(c, cfg.Password, cfg.Timeout); err != nil {
				b.close()
				return nil, fmt.Errorf("blocked connection %d: %w", i, err)
			}
		}
		key := cfg.KeyPrefix + "blocked:" + strconv.Itoa(i)
		c.SetWriteDeadline(time.Now().Add(cfg.Timeout))
		if _, err := c.Write(appendCommand(nil, "BLPOP", key, "0")); err != nil {
			b.close()
			return nil, fmt.Errorf("blocked connection %d: BLPOP: %w", i, err)
		}
	}
	return b, nil
}

// authenticate sends AUTH password on c and reads its +OK.
func authenticate(c net.Conn, password string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(appendCommand(nil, "AUTH", password)); err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	if line != "+OK\r\n" {
		return fmt.Errorf("AUTH: %q", line)
	}
	return nil
}

// answered reports how many of the connections have been answered (a
// reply, an error or a close) within wait, and the first answer; a
// connection still blocked has nothing to read.
func (b *blockedConns) answered(wait time.Duration) (n int, first string) {
	deadline := time.Now().Add(wait)
	answers := make([]string, len(b.conns))
	var wg sync.WaitGroup
	for i, c := range b.conns {
		wg.Add(1)
		go readAnswer(c, deadline, &answers[i], &wg)
	}
	wg.Wait()
	for i, a := range answers {
		if a == "" {
			continue
		}
		if n == 0 {
			first = fmt.Sprintf("blocked connection %d: %s", i, a)
		}
		n++
	}
	return n, first
}

// readAnswer reads what c has until deadline and says what it got in
// *answer, "" when nothing came.
func readAnswer(c net.Conn, deadline time.Time, answer *string, wg *sync.WaitGroup) {
	defer wg.Done()
	c.SetReadDeadline(deadline)
	buf := make([]byte, 256)
	k, err := c.Read(buf)
	switch {
	case k > 0:
		*answer = strconv.Quote(string(buf[:k]))
	case err != nil && !isTimeout(err):
		*answer = err.Error()
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func (b *blockedConns) close() {
	for _, c := range b.conns {
		c.Close()
	}
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
