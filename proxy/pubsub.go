package proxy

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/resp"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Publish/subscribe. A channel is routed like a key, by the pool's hash,
// hash_tag and ring: PUBLISH and SPUBLISH are ordinary requests to the
// channel's server, SUBSCRIBE and SSUBSCRIBE listen there, and PSUBSCRIBE
// listens on every server of the pool.
//
// Subscriptions share server connections: a hub per upstream holds one
// subscription connection (backend.Subscriber) and counts the proxy's
// clients of each channel, pattern and shard channel. The first client of
// a channel makes the hub send SUBSCRIBE, and the client's confirmation
// waits for the server's; the last one to leave makes it send
// UNSUBSCRIBE. So a server counts the proxy once however many of its
// clients listen, in PUBLISH's reply and PUBSUB NUMSUB alike.
//
// The proxy confirms each subscription to the client itself, counting the
// client's own subscriptions as Redis does. The hub hands each message to
// every subscribed client's queue without waiting: a writer goroutine of
// the client's writes the queue, under the same lock as the client's
// replies, so that a message is never written inside a reply. The queue is
// bounded by client_output_buffer_limit_pubsub; a client past it is closed
// and counted, and nothing else slows down.
//
// A subscription connection that fails closes its subscribers'
// connections, so that they resubscribe rather than wait for messages that
// will not come. A reload that keeps a server keeps its hub and its
// subscriptions; one that moves a channel to another server, or changes
// the servers a pattern listens on, closes the clients concerned.
//
// A group's hub follows its master instead (groupMasterConfirmed): when
// the confirmed master moves, the hub dials it (with the ROLE check of
// every group connection), subscribes there to everything its clients
// hold, and closes the connection to the old master, whose messages it
// ignores from then on. A group's subscription connection that fails
// keeps its subscriptions and subscribes them again on the next
// connection, dialled at the next confirmed master, or retried with the
// group's backoff. The clients see none of it; messages published
// meanwhile are lost, as pub/sub delivers at most once.

// subscribeCommands and unsubscribeCommands are the commands and
// confirmations of each kind of subscription.
var (
	subscribeCommands   = [3]string{"subscribe", "psubscribe", "ssubscribe"}
	unsubscribeCommands = [3]string{"unsubscribe", "punsubscribe", "sunsubscribe"}
)

// hubs are the Server's hubs, one per upstream with subscriptions, kept
// across reloads with the upstream.
type hubs struct {
	mu     sync.Mutex // guards byUp and closed
	byUp   map[*backend.Upstream]*hub
	closed bool
}

// hub counts the proxy's subscriptions on one upstream and carries them on
// its subscription connection.
type hub struct {
	srv *Server
	up  *backend.Upstream

	mu     sync.Mutex          // guards the fields below
	conn   *backend.Subscriber // nil until the first subscription, and after a failure
	topics [3]map[string]*topic
	closed bool
	// A group's hub whose connection failed retries after backoff.
	retry   *time.Timer
	backoff time.Duration
}

// topic is one channel, pattern or shard channel on a hub: its clients,
// and the server's confirmation of the hub's subscription.
type topic struct {
	clients map[*client]struct{}
	ready   chan struct{} // closed once the server confirmed
	err     error         // set before ready closes: the server's refusal
	once    sync.Once     // closes ready: a group's topic may be sent on two connections
}

var errHubClosed = errors.New("connection closed")

// hubFor returns the hub of up, making one if needed.
func (s *Server) hubFor(up *backend.Upstream) (*hub, error) {
	hs := &s.pubsub
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.closed {
		return nil, errHubClosed
	}
	h := hs.byUp[up]
	if h == nil {
		if hs.byUp == nil {
			hs.byUp = map[*backend.Upstream]*hub{}
		}
		h = &hub{srv: s, up: up}
		for k := range h.topics {
			h.topics[k] = map[string]*topic{}
		}
		hs.byUp[up] = h
	}
	return h, nil
}

// add subscribes c to name on the hub and returns the topic, whose ready
// closes once the server has confirmed the subscription.
func (h *hub) add(c *client, kind backend.MessageKind, name string) (*topic, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	if h.up.IsGroup() {
		// As every request to a group without a confirmed master.
		if why := h.up.Address().Unavailable(); why != "" {
			return nil, errors.New(why)
		}
	}
	if h.conn == nil {
		if err := h.connectLocked(); err != nil {
			return nil, err
		}
	}
	t := h.topics[kind][name]
	if t == nil {
		t = &topic{clients: map[*client]struct{}{}, ready: make(chan struct{})}
		req := resp.AppendCommand(nil, []byte(subscribeCommands[kind]), []byte(name))
		if err := h.conn.Send(req, 1, h.confirmer(h.conn, t)); err != nil {
			return nil, err
		}
		h.topics[kind][name] = t
	}
	t.clients[c] = struct{}{}
	return t, nil
}

// connectLocked dials the hub's subscription connection and subscribes
// there to every topic the hub has (a group's, kept from the connection
// before): confirmed channels and patterns in one command of each kind,
// shard channels (which a cluster node takes only of one slot at a time)
// and topics still waiting for their confirmation one by one.
func (h *hub) connectLocked() error {
	conn, err := h.up.DialSubscriber(h)
	if err != nil {
		return err
	}
	h.conn = conn
	h.backoff = 0
	if h.retry != nil {
		h.retry.Stop()
		h.retry = nil
	}
	for kind := range h.topics {
		var confirmed [][]byte
		for name, t := range h.topics[kind] {
			var done func(error)
			if t.isReady() {
				if t.err != nil {
					continue // refused: its clients are leaving
				}
				if kind != int(backend.ShardChannel) {
					confirmed = append(confirmed, []byte(name))
					continue
				}
			} else {
				done = h.confirmer(conn, t)
			}
			req := resp.AppendCommand(nil, []byte(subscribeCommands[kind]), []byte(name))
			if err := conn.Send(req, 1, done); err != nil {
				return err
			}
		}
		if len(confirmed) == 0 {
			continue
		}
		args := append([][]byte{[]byte(subscribeCommands[kind])}, confirmed...)
		if err := conn.Send(resp.AppendCommand(nil, args...), len(confirmed), nil); err != nil {
			return err
		}
	}
	return nil
}

// confirmer returns what records the server's answer to t's subscription
// on conn. A failure of conn once another connection replaced it is no
// answer: t was sent again there.
func (h *hub) confirmer(conn *backend.Subscriber, t *topic) func(error) {
	return func(err error) {
		if err != nil {
			h.mu.Lock()
			replaced := h.conn != nil && h.conn != conn
			h.mu.Unlock()
			if replaced {
				return
			}
		}
		t.confirmed(err)
	}
}

// confirmed records the server's answer to the topic's subscription; only
// the first counts.
func (t *topic) confirmed(err error) {
	t.once.Do(func() {
		t.err = err
		close(t.ready)
	})
}

// isReady reports whether the server answered the topic's subscription.
func (t *topic) isReady() bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// remove unsubscribes c from name; the last client to leave makes the hub
// unsubscribe on the server.
func (h *hub) remove(c *client, kind backend.MessageKind, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[kind][name]
	if t == nil {
		return
	}
	delete(t.clients, c)
	if len(t.clients) > 0 {
		return
	}
	delete(h.topics[kind], name)
	if h.conn != nil {
		req := resp.AppendCommand(nil, []byte(unsubscribeCommands[kind]), []byte(name))
		h.conn.Send(req, 1, nil) // a failure closes the connection, and Closed follows
	}
}

// Message hands a message to the queue of every client subscribed by
// name. It runs on the subscription connection's reader. A connection the
// hub has left (a group's old master's) is not listened to any more.
func (h *hub) Message(conn *backend.Subscriber, kind backend.MessageKind, name, raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if conn != h.conn {
		return
	}
	t := h.topics[kind][string(name)]
	if t == nil {
		return
	}
	for c := range t.clients {
		c.subs.push(c, raw)
	}
}

// Closed runs when the hub's subscription connection ends: every client
// subscribed through it is closed, so that it subscribes again elsewhere
// or later rather than wait for messages that will not come. A group's
// clients are not: their subscriptions wait for the next connection.
func (h *hub) Closed(conn *backend.Subscriber, err error) {
	h.mu.Lock()
	if h.conn != conn {
		h.mu.Unlock()
		return
	}
	h.conn = nil
	if h.up.IsGroup() {
		n := h.numTopicsLocked()
		if n > 0 {
			h.armRetryLocked()
		}
		h.mu.Unlock()
		if n > 0 {
			h.srv.logger.Warn("subscription connection to a group lost; its subscriptions are kept for the group's master",
				"server", h.up.ErrorText(err), "subscriptions", n)
		}
		return
	}
	clients := h.dropAllLocked()
	h.mu.Unlock()
	if len(clients) > 0 {
		h.srv.logger.Warn("subscription connection lost; closing its subscribers",
			"server", h.up.ErrorText(err), "clients", len(clients))
	}
	for c := range clients {
		c.dropSubscriber()
	}
}

// numTopicsLocked is how many channels, patterns and shard channels the
// hub has.
func (h *hub) numTopicsLocked() int {
	n := 0
	for k := range h.topics {
		n += len(h.topics[k])
	}
	return n
}

// armRetryLocked schedules the next attempt of a group's hub to connect,
// backing off as the group does.
func (h *hub) armRetryLocked() {
	if h.retry != nil || h.closed {
		return
	}
	if h.backoff == 0 {
		h.backoff = groupRetryMin
	} else {
		h.backoff = min(2*h.backoff, groupRetryMax)
	}
	h.retry = time.AfterFunc(h.backoff, h.reconnect)
}

// reconnect gives a group's hub that lost its connection a new one, with
// its subscriptions, unless it has one again or needs none; it tries again
// later while that fails (no master is confirmed, or it cannot be
// reached).
func (h *hub) reconnect() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retry = nil
	if h.closed || h.conn != nil || h.numTopicsLocked() == 0 {
		return
	}
	if err := h.connectLocked(); err != nil {
		h.armRetryLocked()
	}
}

// groupMasterConfirmed runs when a group confirmed its master at up's
// address: the group's hub moves its subscriptions there.
func (s *Server) groupMasterConfirmed(up *backend.Upstream) {
	hs := &s.pubsub
	hs.mu.Lock()
	h := hs.byUp[up]
	hs.mu.Unlock()
	if h != nil {
		h.follow()
	}
}

// follow moves a group's hub to where its upstream is dialled now, the
// confirmed master: a new connection there carries every subscription,
// then the one to the old master closes. A hub already there, or with
// nothing to carry, stays as it is.
func (h *hub) follow() {
	h.mu.Lock()
	old := h.conn
	addr := h.up.Address().DialAddr()
	if h.closed || old != nil && old.Addr() == addr || old == nil && h.numTopicsLocked() == 0 {
		h.mu.Unlock()
		return
	}
	h.conn = nil
	var err error
	if h.numTopicsLocked() > 0 {
		if err = h.connectLocked(); err != nil {
			h.armRetryLocked()
		}
	}
	h.mu.Unlock()
	if old != nil {
		old.Close()
	}
	if err != nil {
		h.srv.logger.Warn("subscriptions could not move to the group's master; retrying",
			"server", h.up.ErrorText(err), "addr", addr)
	}
}

// dropAllLocked forgets every topic and returns their clients.
func (h *hub) dropAllLocked() map[*client]struct{} {
	clients := map[*client]struct{}{}
	for k := range h.topics {
		for _, t := range h.topics[k] {
			for c := range t.clients {
				clients[c] = struct{}{}
			}
		}
		clear(h.topics[k])
	}
	return clients
}

// close closes the hub for good: its connection, and its subscribers.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	if h.retry != nil {
		h.retry.Stop()
		h.retry = nil
	}
	conn := h.conn
	h.conn = nil
	clients := h.dropAllLocked()
	h.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	for c := range clients {
		c.dropSubscriber()
	}
}

// closeHubs closes every hub, for Shutdown.
func (s *Server) closeHubs() {
	hs := &s.pubsub
	hs.mu.Lock()
	hs.closed = true
	all := hs.byUp
	hs.byUp = nil
	hs.mu.Unlock()
	for _, h := range all {
		h.close()
	}
}

// checkSubscriptions runs after a reload: a subscribed client whose
// channel now belongs to another server, or whose patterns listen on
// servers that are no longer exactly its pool's, is closed; hubs of
// upstreams that no pool uses close.
func (s *Server) checkSubscriptions() {
	used := map[*backend.Upstream]bool{}
	for _, p := range s.poolList() {
		for _, srv := range p.servers {
			used[srv.up] = true
		}
	}
	s.mu.Lock()
	var subscribed []*client
	for c := range s.clients {
		if c.subscriptions.Load() > 0 {
			subscribed = append(subscribed, c)
		}
	}
	s.mu.Unlock()
	for _, c := range subscribed {
		if p := c.l.pool.Load(); !c.subs.placedIn(p) || !c.userKept(p.users) {
			c.dropSubscriber()
		}
	}
	hs := &s.pubsub
	hs.mu.Lock()
	var gone []*hub
	for up, h := range hs.byUp {
		if !used[up] {
			gone = append(gone, h)
			delete(hs.byUp, up)
		}
	}
	hs.mu.Unlock()
	for _, h := range gone {
		h.close()
	}
}

// subState is a client's subscriptions and the queue of messages to it.
// It is made at the client's first subscription and kept until it closes.
type subState struct {
	mu    sync.Mutex               // guards everything up to wmu
	hubs  [3]map[string][]*hub     // what each subscription listens through
	order [3][]string              // subscriptions in the order made, for UNSUBSCRIBE without arguments
	queue []byte                   // messages not yet handed to the writer
	spare []byte                   // the writer's last buffer, for reuse
	held  int64                    // bytes of messages queued or being written
	since time.Time                // when held reached the soft limit
	limit config.OutputBufferLimit // client_output_buffer_limit_pubsub
	proto int                      // the client's RESP version as of its last subscription command
	gone  bool                     // closed: queue nothing more
	count [3]int                   // subscriptions of each kind, for the confirmations
	stats *stats.Pool              // the pool's counters as of the last subscription command

	wake chan struct{} // the queue has something
	stop chan struct{} // the client is gone
	wmu  sync.Mutex    // held while anything is written to the client's socket
	hold bool          // the client's goroutine holds wmu until its batch is written
}

// subscriptionKind maps a command name to its kind of subscription.
func subscriptionKind(name string) backend.MessageKind {
	switch name {
	case "psubscribe", "punsubscribe":
		return backend.Pattern
	case "ssubscribe", "sunsubscribe":
		return backend.ShardChannel
	}
	return backend.Channel
}

// pubsub handles the publish/subscribe commands.
func (c *client) pubsub(def *command.Spec, cmd *resp.Command) {
	args := cmd.Args
	switch def.Name {
	case "publish", "spublish":
		idx := c.layout.Lookup(args[1])
		if idx < 0 {
			c.replyError(c.layout.noOwnerOf(args[1]))
			return
		}
		c.route(idx, cmd)
	case "subscribe", "psubscribe", "ssubscribe":
		c.subscribe(subscriptionKind(def.Name), args[1:])
	case "unsubscribe", "punsubscribe", "sunsubscribe":
		c.unsubscribe(subscriptionKind(def.Name), args[1:])
	case "pubsub|channels", "pubsub|shardchannels":
		c.everyServer(command.MergeUnion, cmd)
	case "pubsub|numpat":
		c.everyServer(command.MergeMax, cmd)
	case "pubsub|numsub", "pubsub|shardnumsub":
		c.numsub(cmd)
	}
}

// inPubSub reports whether the client has subscriptions: Redis' pubsub
// client type, and for RESP2 its subscribed mode.
func (c *client) inPubSub() bool { return c.subscriptions.Load() > 0 }

// allowedSubscribed reports whether a RESP2 client may send the command
// while subscribed.
func allowedSubscribed(name string) bool {
	switch name {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
		"ping", "quit", "reset":
		return true
	}
	return false
}

// startPubSub makes the client's subscription state and starts its writer,
// at its first subscription, and makes the client's goroutine hold the
// socket until its batch is written: messages follow the confirmations.
func (c *client) startPubSub() *subState {
	s := c.subs
	if s == nil {
		s = &subState{wake: make(chan struct{}, 1), stop: make(chan struct{})}
		for k := range s.hubs {
			s.hubs[k] = map[string][]*hub{}
		}
		c.subs = s
		go c.writeMessages()
	}
	if !s.hold {
		s.wmu.Lock()
		s.hold = true
	}
	s.mu.Lock()
	s.limit = c.pool.cfg.PubSubLimit()
	s.proto = c.proto
	s.stats = c.pool.stats
	s.mu.Unlock()
	return s
}

// releaseWrites lets the writer write again once the batch that held the
// socket is written.
func (c *client) releaseWrites() {
	if s := c.subs; s != nil && s.hold {
		s.hold = false
		s.wmu.Unlock()
	}
}

// lockWrites takes the socket from the writer for a reply the client's
// goroutine writes, unless it holds it already; unlockWrites gives it back.
func (c *client) lockWrites() {
	if s := c.subs; s != nil && !s.hold {
		s.wmu.Lock()
	}
}

func (c *client) unlockWrites() {
	if s := c.subs; s != nil && !s.hold {
		s.wmu.Unlock()
	}
}

// subscribe answers (P|S)SUBSCRIBE: each name is subscribed on its hubs
// and confirmed with the client's count of subscriptions.
func (c *client) subscribe(kind backend.MessageKind, names [][]byte) {
	s := c.startPubSub()
	for _, n := range names {
		name := string(n)
		s.mu.Lock()
		_, already := s.hubs[kind][name]
		s.mu.Unlock()
		if !already {
			hubs, msg := c.listen(kind, name)
			if msg != "" {
				c.replyError(msg)
				continue
			}
			s.mu.Lock()
			s.hubs[kind][name] = hubs
			s.order[kind] = append(s.order[kind], name)
			s.count[kind]++
			s.mu.Unlock()
			c.subscriptions.Add(1)
		}
		c.reply(c.confirmation(subscribeCommands[kind], n, true, s.countFor(kind)))
	}
}

// subscribeWait bounds the wait for a server's confirmation.
const subscribeWait = 5 * time.Second

// listen subscribes the client to name on the hubs that carry it: the
// channel's server, or for a pattern every server of the pool. msg is an
// error reply when that failed; then nothing is subscribed.
func (c *client) listen(kind backend.MessageKind, name string) (hubs []*hub, msg string) {
	var servers []*server
	if kind == backend.Pattern {
		servers = liveServers(c.layout)
		if len(servers) == 0 {
			return nil, msgNoServer
		}
	} else {
		idx := c.layout.Lookup([]byte(name))
		if idx < 0 {
			return nil, msgNoServer
		}
		servers = c.layout.servers[idx : idx+1]
	}
	wait := c.pool.cfg.Timeout
	if wait <= 0 {
		wait = subscribeWait
	}
	for _, srv := range servers {
		h, err := c.srv.hubFor(srv.up)
		if err == nil {
			var t *topic
			if t, err = h.add(c, kind, name); err == nil {
				hubs = append(hubs, h)
				timer := time.NewTimer(wait)
				select {
				case <-t.ready:
					err = t.err
				case <-timer.C:
					err = errors.New("timed out")
				}
				timer.Stop()
			}
		}
		if err != nil {
			for _, h := range hubs {
				h.remove(c, kind, name)
			}
			return nil, srv.up.ErrorText(err)
		}
	}
	return hubs, ""
}

// countFor is the count a confirmation of kind reports: channels and
// patterns together, shard channels apart, as Redis 7 counts them.
func (s *subState) countFor(kind backend.MessageKind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kind == backend.ShardChannel {
		return s.count[backend.ShardChannel]
	}
	return s.count[backend.Channel] + s.count[backend.Pattern]
}

// confirmation is the reply to one channel or pattern of a subscription
// command: a push in RESP3, an array in RESP2; name is null when hasName
// is false (UNSUBSCRIBE without subscriptions).
func (c *client) confirmation(what string, name []byte, hasName bool, count int) []byte {
	var b []byte
	if c.proto == 3 {
		b = resp.AppendPush(b, 3)
	} else {
		b = resp.AppendArray(b, 3)
	}
	b = resp.AppendBulkString(b, what)
	switch {
	case hasName:
		b = resp.AppendBulk(b, name)
	case c.proto == 3:
		b = resp.AppendNull3(b)
	default:
		b = resp.AppendNull(b)
	}
	return resp.AppendInt(b, int64(count))
}

// unsubscribe answers (P|S)UNSUBSCRIBE: the names given, or every
// subscription of the kind, each confirmed with the count left.
func (c *client) unsubscribe(kind backend.MessageKind, names [][]byte) {
	s := c.startPubSub()
	what := unsubscribeCommands[kind]
	if len(names) == 0 {
		s.mu.Lock()
		all := append([]string(nil), s.order[kind]...)
		s.mu.Unlock()
		if len(all) == 0 {
			c.reply(c.confirmation(what, nil, false, s.countFor(kind)))
			return
		}
		for _, name := range all {
			c.leave(kind, name)
			c.reply(c.confirmation(what, []byte(name), true, s.countFor(kind)))
		}
		return
	}
	for _, n := range names {
		c.leave(kind, string(n))
		c.reply(c.confirmation(what, n, true, s.countFor(kind)))
	}
}

// leave ends the client's subscription to name, if it has one.
func (c *client) leave(kind backend.MessageKind, name string) {
	s := c.subs
	s.mu.Lock()
	hubs, ok := s.hubs[kind][name]
	if ok {
		delete(s.hubs[kind], name)
		for i, n := range s.order[kind] {
			if n == name {
				s.order[kind] = append(s.order[kind][:i], s.order[kind][i+1:]...)
				break
			}
		}
		s.count[kind]--
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	c.subscriptions.Add(-1)
	for _, h := range hubs {
		h.remove(c, kind, name)
	}
}

// leavePubSub ends every subscription of the client, without replies: for
// RESET, and when the client goes.
func (c *client) leavePubSub() {
	s := c.subs
	if s == nil {
		return
	}
	for kind := range s.order {
		s.mu.Lock()
		all := append([]string(nil), s.order[kind]...)
		s.mu.Unlock()
		for _, name := range all {
			c.leave(backend.MessageKind(kind), name)
		}
	}
}

// endPubSub releases the client's subscriptions and stops its writer, as
// it closes.
func (c *client) endPubSub() {
	s := c.subs
	if s == nil {
		return
	}
	c.releaseWrites()
	c.leavePubSub()
	s.mu.Lock()
	if !s.gone {
		s.gone = true
	}
	s.mu.Unlock()
	close(s.stop)
}

// dropSubscriber closes a subscribed client whose subscriptions cannot
// go on (its server failed, a reload moved them or changed its user,
// shutdown).
func (c *client) dropSubscriber() {
	c.stopping.Store(true)
	c.conn.Close()
}

// placedIn reports whether every subscription still listens where pool
// routes it.
func (s *subState) placedIn(p *pool) bool {
	lay := p.layout.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kind := range []backend.MessageKind{backend.Channel, backend.ShardChannel} {
		for name, hubs := range s.hubs[kind] {
			idx := lay.Lookup([]byte(name))
			if idx < 0 || len(hubs) != 1 || hubs[0].up != lay.servers[idx].up {
				return false
			}
		}
	}
	live := liveServers(lay)
	for _, hubs := range s.hubs[backend.Pattern] {
		if len(hubs) != len(live) {
			return false
		}
		for i, srv := range live {
			if hubs[i].up != srv.up {
				return false
			}
		}
	}
	return true
}

// liveServers are the servers of lay that are in its ring: those a
// pattern listens on. An ejected server owns no channel while it is out.
func liveServers(lay *layout) []*server {
	var live []*server
	for i, srv := range lay.servers {
		if lay.Live(i) {
			live = append(live, srv)
		}
	}
	return live
}

// push queues a message for the client, as the server sent it but for a
// RESP3 client's header, which is a push. A client whose queue reaches the
// hard limit, or stays at the soft limit for its time, is closed.
func (s *subState) push(c *client, raw []byte) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	held := s.held + int64(len(raw))
	lim := &s.limit
	over := ""
	switch {
	case lim.Hard > 0 && held >= lim.Hard:
		over = "hard"
	case lim.Soft > 0 && held >= lim.Soft:
		now := time.Now()
		if s.since.IsZero() {
			s.since = now
		} else if now.Sub(s.since) >= lim.SoftTime {
			over = "soft"
		}
	}
	if over != "" {
		s.gone = true
		s.mu.Unlock()
		c.closeSubscriberOverLimit(over, held, lim, s.stats)
		return
	}
	start := len(s.queue)
	s.queue = append(s.queue, raw...)
	if s.proto == 3 && raw[0] == '*' {
		s.queue[start] = '>'
	}
	s.held = held
	s.stats.PubSubMessages.Add(1)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// closeSubscriberOverLimit closes a subscribed client whose unwritten
// messages (n bytes) are over client_output_buffer_limit_pubsub.
func (c *client) closeSubscriberOverLimit(which string, n int64, lim *config.OutputBufferLimit, st *stats.Pool) {
	if c.limitClosed.CompareAndSwap(false, true) {
		st.ClientOutputLimitCloses.Add(1)
		st.ClientErr.Add(1)
		c.srv.logger.Warn("subscribed client closed for overcoming its pubsub output buffer limit",
			"client", c.conn.RemoteAddr().String(), "limit", which,
			"unwritten_bytes", n, "hard_limit_bytes", lim.Hard, "soft_limit_bytes", lim.Soft,
			"soft_seconds", int64(lim.SoftTime/time.Second))
		c.dropSubscriber()
	}
}

// writeMessages is the client's writer: it writes the queued messages,
// whenever the client's goroutine is not writing, until the client goes.
func (c *client) writeMessages() {
	s := c.subs
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
		for {
			s.mu.Lock()
			buf := s.queue
			s.queue, s.spare = s.spare[:0], nil
			s.mu.Unlock()
			if len(buf) == 0 {
				break
			}
			s.wmu.Lock()
			_, err := c.sock.Write(buf)
			s.wmu.Unlock()
			s.mu.Lock()
			s.held -= int64(len(buf))
			if s.held < s.limit.Soft || s.limit.Soft == 0 {
				s.since = time.Time{}
			}
			if cap(buf) <= maxKeptBuffer {
				s.spare = buf[:0]
			}
			s.mu.Unlock()
			if err != nil {
				c.dropSubscriber()
				return
			}
		}
	}
}

// everyServer sends a PUBSUB subcommand to every live server and merges
// the replies by merge.
func (c *client) everyServer(merge command.Merge, cmd *resp.Command) {
	f := c.newFragment(merge)
	for i := range c.layout.servers {
		if c.layout.Live(i) {
			f.subSrv = append(f.subSrv, i)
		}
	}
	if len(f.subSrv) == 0 {
		c.nfrags--
		c.replyError(msgNoServer)
		return
	}
	for _, i := range f.subSrv {
		f.subs = append(f.subs, c.forward(c.layout.servers[i], cmd))
	}
	c.calls = append(c.calls, call{frag: f})
}

// numsub answers PUBSUB NUMSUB and SHARDNUMSUB: each channel's count from
// its server, in the client's order.
func (c *client) numsub(cmd *resp.Command) {
	args := cmd.Args
	if len(args) == 2 {
		c.reply(resp.AppendArray(nil, 0))
		return
	}
	f := c.newFragment(command.MergeConcat)
	for _, ch := range args[2:] {
		idx := c.layout.Lookup(ch)
		if idx < 0 {
			c.nfrags--
			c.replyError(msgNoServer)
			return
		}
		st := c.stageFor(c.layout.servers[idx])
		start := len(st.buf)
		st.buf = resp.AppendCommand(st.buf, args[0], args[1], ch)
		f.subSrv = append(f.subSrv, idx)
		f.subs = append(f.subs, c.staged(st, start))
	}
	c.calls = append(c.calls, call{frag: f})
}

// mergeUnion is PUBSUB CHANNELS: every server's channels, each once.
func (f *fragment) mergeUnion(out []byte) []byte {
	seen := map[string]bool{}
	var names [][]byte
	for _, s := range f.subs {
		line, n := resp.ReadLine(s.buf, 0)
		if n < 0 || len(line) == 0 || line[0] != '*' {
			return resp.AppendError(out, msgFanOutBadReply)
		}
		m, ok := resp.ParseLength(line[1:])
		if !ok || m < 0 {
			return resp.AppendError(out, msgFanOutBadReply)
		}
		rest := s.buf[n:]
		for range m {
			line, n := resp.ReadLine(rest, 0)
			if n < 0 || len(line) == 0 || line[0] != '$' {
				return resp.AppendError(out, msgFanOutBadReply)
			}
			size, ok := resp.ParseLength(line[1:])
			if !ok || size < 0 || n+size+2 > len(rest) {
				return resp.AppendError(out, msgFanOutBadReply)
			}
			name := rest[n : n+size]
			rest = rest[n+size+2:]
			if !seen[string(name)] {
				seen[string(name)] = true
				names = append(names, name)
			}
		}
	}
	out = resp.AppendArray(out, len(names))
	for _, name := range names {
		out = resp.AppendBulk(out, name)
	}
	return out
}

// mergeMax is PUBSUB NUMPAT: the largest of the servers' counts. A pattern
// subscribed through the proxy is subscribed on every server, so a sum
// would count it once per server.
func (f *fragment) mergeMax(out []byte) []byte {
	var most int64
	for _, s := range f.subs {
		n, ok := resp.ParseInteger(s.buf)
		if !ok {
			return resp.AppendError(out, msgSplitBadReply)
		}
		most = max(most, n)
	}
	return resp.AppendInt(out, most)
}

// subscribedPing is PING's reply in RESP2's subscribed mode, as Redis
// gives it: a "pong" array with the argument, or an empty string.
func subscribedPing(arg []byte) []byte {
	b := resp.AppendArray(nil, 2)
	b = resp.AppendBulkString(b, "pong")
	return resp.AppendBulk(b, arg)
}

// notSubscribedMode is Redis' error for a command a RESP2 client may not
// send while subscribed, naming it as Redis does: "client|id" for a
// subcommand.
func notSubscribedMode(def *command.Spec, args [][]byte) string {
	name := def.Name
	if def.IsContainer() && len(args) > 1 {
		name += "|" + strings.ToLower(string(args[1]))
	}
	return "ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
}
