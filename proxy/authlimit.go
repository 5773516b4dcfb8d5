package proxy

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Failed AUTHs are limited per client address so that a password cannot
// be guessed fast: after authFailureLimit failures from one IP address
// within authFailureWindow, AUTH from that address (HELLO ... AUTH too) is
// refused with msgAuthThrottled, without the password being checked,
// until authFailureWindow has passed since the first of those failures.
// The refusal is an error reply, never a wait, so no goroutine is held.
//
// Clients that share an address (behind a NAT, or pods on one node
// without their own IPs) share the limit: one that keeps failing keeps
// the others from authenticating anew, though never for more than
// authFailureWindow after its last failure, and never those already
// authenticated. Unix socket clients share one address.
const (
	authFailureLimit  = 5
	authFailureWindow = 10 * time.Second
	// maxAuthAddresses bounds the addresses tracked; past it, expired
	// entries are dropped, and addresses not yet tracked are not limited
	// until there is room, so that many addresses cost bounded memory.
	maxAuthAddresses = 1 << 16
)

// authLimiter counts failed AUTHs by client address. The zero value is
// ready. It is used only on AUTH, never on other requests.
type authLimiter struct {
	mu    sync.Mutex                   // guards addrs
	addrs map[netip.Addr]*authFailures // addresses with failures in their window
}

// authFailures are one address's failures in the window that started at
// since.
type authFailures struct {
	since time.Time
	count int
}

// testHookAuthNow, when set, is the clock of the AUTH limit, for tests.
var testHookAuthNow func() time.Time

func authNow() time.Time {
	if testHookAuthNow != nil {
		return testHookAuthNow()
	}
	return time.Now()
}

// clientIP is the address a client's failures are counted under: its IP
// without the port; the zero Addr for a unix socket client.
func clientIP(a net.Addr) netip.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(tcp.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// check returns msgAuthThrottled when AUTH from addr is refused now, else
// "".
func (l *authLimiter) check(addr net.Addr) string {
	ip := clientIP(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[ip]
	if f == nil {
		return ""
	}
	if authNow().Sub(f.since) >= authFailureWindow {
		delete(l.addrs, ip)
		return ""
	}
	if f.count >= authFailureLimit {
		return msgAuthThrottled
	}
	return ""
}

// failed counts a failed AUTH from addr.
func (l *authLimiter) failed(addr net.Addr) {
	ip := clientIP(addr)
	now := authNow()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addrs == nil {
		l.addrs = map[netip.Addr]*authFailures{}
	}
	f := l.addrs[ip]
	if f != nil && now.Sub(f.since) >= authFailureWindow {
		f.since, f.count = now, 0
	}
	if f == nil {
		if len(l.addrs) >= maxAuthAddresses {
			for k, v := range l.addrs {
				if now.Sub(v.since) >= authFailureWindow {
					delete(l.addrs, k)
				}
			}
			if len(l.addrs) >= maxAuthAddresses {
				return
			}
		}
		f = &authFailures{since: now}
		l.addrs[ip] = f
	}
	f.count++
}
