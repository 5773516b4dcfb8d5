package backend

// PushSink is where a private connection hands what is not a reply: the
// push messages its server sends (RESP3's >, such as CLIENT TRACKING's
// invalidations), and, with Lost, the end of a connection it had made,
// after which the server has forgotten whatever state the connection's
// setup created. Both run on the connection's goroutines and must not
// block.
type PushSink interface {
	Push(msg []byte)
	Lost()
}

// NewPrivateConn makes a connection to u that one client uses alone: it
// speaks proto, sends setup (commands that must each answer +OK) after
// the handshake of every connection it makes, and hands its pushes to
// sink. Requests are submitted as on a shared connection; it dials at the
// first one, or at Connect, and again after a failure, until Close.
// Shutdown closes it too.
func (u *Upstream) NewPrivateConn(proto int, setup [][][]byte, sink PushSink) *Conn {
	b := &Conn{up: u, proto: proto, setup: setup, sink: sink}
	u.mu.Lock()
	if u.private == nil {
		u.private = map[*Conn]struct{}{}
	}
	u.private[b] = struct{}{}
	u.mu.Unlock()
	return b
}

// Close ends a private connection for good; requests waiting on it fail.
func (b *Conn) Close() {
	u := b.up
	u.mu.Lock()
	delete(u.private, b)
	u.mu.Unlock()
	b.close()
}

// privateConns returns u's open private connections.
func (u *Upstream) privateConns() []*Conn {
	u.mu.Lock()
	defer u.mu.Unlock()
	conns := make([]*Conn, 0, len(u.private))
	for b := range u.private {
		conns = append(conns, b)
	}
	return conns
}
