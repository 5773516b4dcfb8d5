package discovery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of SentinelOptions.
const (
	DefaultSentinelPoll    = time.Second
	DefaultSentinelTimeout = time.Second
)

// sentinelClientName is what the watcher's connections call themselves
// (CLIENT SETNAME), so an operator's CLIENT LIST on a Sentinel shows them.
const sentinelClientName = "shardproxy-sentinel-watcher"

// sentinelEvents are the Sentinel channels after which a master's address
// may have changed, or is about to: the switch itself, a failover ending, a
// Sentinel taking a newer configuration from another one, and the master
// (or one of its replicas) going down or coming back.
var sentinelEvents = []string{
	"+switch-master", "+sdown", "-sdown", "+odown", "-odown", "+failover-end", "+config-update-from",
}

// maxSentinelBackoff bounds the wait between attempts to reach a Sentinel
// that failed.
const maxSentinelBackoff = 5 * time.Second

// SentinelOptions configures a SentinelWatcher.
type SentinelOptions struct {
	Sentinels          []string      // host:port of every Sentinel; at least one
	Username, Password string        // Sentinel AUTH (sentinel_auth); "" for none; a Username needs a Password
	Masters            []string      // Sentinel master names to follow; at least one
	Poll               time.Duration // how often every Sentinel is asked; 0 means DefaultSentinelPoll
	Timeout            time.Duration // dial and reply timeout per Sentinel; 0 means DefaultSentinelTimeout
	Logger             *slog.Logger  // nil discards logs
	// OnChange gets every master's current view when Addr, Epoch, Replicas,
	// Agree, Reachable or Down of any master changes (not for Stale alone).
	// It is never called concurrently; it may be nil.
	OnChange func(map[string]SentinelMaster)
	// MapAddr, when set, turns an address a Sentinel reports, of a master
	// or a replica, into the one to dial, or reports false for an address
	// it does not know (on Kubernetes: a pod hostname or IP that no
	// endpoint of the groups' Service has). A master answer with such an
	// address is ignored as a stale one and logged, such a replica is left
	// out. It is called for every answer, so a mapping that changes takes
	// effect at the next poll; it must not block.
	MapAddr func(addr string) (string, bool)
	// TLS, when set, makes every connection to a Sentinel speak TLS, with
	// the config it returns for the Sentinel's host:port (the pool's
	// server_tls_* settings); nil dials plain TCP.
	TLS func(addr string) (*tls.Config, error)
}

// SentinelMaster is the watcher's view of one master.
type SentinelMaster struct {
	Name string
	Addr string // host:port of the master a majority agrees on; "" when there never was one
	// Epoch is Addr's config epoch: the highest one among the agreeing
	// Sentinels.
	Epoch int64
	// Replicas are host:port of Addr's replicas, sorted, that an agreeing
	// Sentinel lists and none of them flags s_down, o_down or disconnected.
	Replicas []string
	// Agree counts the Sentinels whose last answer named Addr at Epoch or,
	// while a new configuration spreads, an epoch no lower than the one
	// Addr was first agreed at.
	Agree     int
	Reachable int // Sentinels that answered in the last poll
	// Down counts the agreeing Sentinels that flag Addr s_down or o_down.
	// It does not clear Addr: writes to an unreachable master fail anyway.
	Down       int
	Stale      int64 // answers ignored so far (lower epoch, or disagreeing with the majority)
	Switches   int64 // times Addr changed after the first answer
	LastSwitch time.Time
}

func (m SentinelMaster) clone() SentinelMaster {
	m.Replicas = slices.Clone(m.Replicas)
	return m
}

// routedEqual reports whether m and o differ in nothing OnChange is
// called for.
func (m SentinelMaster) routedEqual(o SentinelMaster) bool {
	return m.Addr == o.Addr && m.Epoch == o.Epoch && slices.Equal(m.Replicas, o.Replicas) &&
		m.Agree == o.Agree && m.Reachable == o.Reachable && m.Down == o.Down
}

// SentinelWatcher follows masters through a set of Sentinels and keeps, for
// each, where a majority of all of them says it is. See the package doc.
type SentinelWatcher struct {
	opts    SentinelOptions
	logger  *slog.Logger
	links   []*sentinelLink
	follows map[string]bool
	changed chan struct{} // one pending OnChange
	running atomic.Bool

	mu      sync.Mutex // guards views and answers
	views   map[string]SentinelMaster
	answers map[string][]sentinelAnswer // by master, then by index in links
}

// sentinelAnswer is what one Sentinel last said about one master.
type sentinelAnswer struct {
	answered   bool   // it replied to the last poll
	addr       string // "" when it does not monitor the master
	epoch      int64
	masterDown bool // it flags the master s_down or o_down
	// inFailover: it is running a failover of the master. Sentinel gives the
	// master the new config epoch when the replica reports its promotion,
	// but moves to the replica's address only at the end, so meanwhile it
	// names the old address at the new epoch.
	inFailover bool
	replicas   []string // listed and not flagged down
	downs      []string // listed and flagged s_down, o_down or disconnected
	// unmapped is the master address the Sentinel reported when MapAddr
	// did not know it (addr is then ""); "" otherwise.
	unmapped string
}

// NewSentinelWatcher checks opts and returns a watcher that does nothing
// until Run.
func NewSentinelWatcher(opts SentinelOptions) (*SentinelWatcher, error) {
	if len(opts.Sentinels) == 0 {
		return nil, errors.New("discovery: sentinel watcher: no Sentinels")
	}
	if len(opts.Masters) == 0 {
		return nil, errors.New("discovery: sentinel watcher: no Masters")
	}
	if opts.Username != "" && opts.Password == "" {
		return nil, errors.New("discovery: sentinel watcher: a Username needs a Password")
	}
	if opts.Poll < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("discovery: sentinel watcher: Poll %v and Timeout %v must not be negative", opts.Poll, opts.Timeout)
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultSentinelPoll
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultSentinelTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &SentinelWatcher{
		opts:    opts,
		logger:  opts.Logger.With("component", "sentinel"),
		follows: make(map[string]bool),
		changed: make(chan struct{}, 1),
		views:   make(map[string]SentinelMaster),
		answers: make(map[string][]sentinelAnswer),
	}
	seen := make(map[string]bool)
	for i, addr := range opts.Sentinels {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("discovery: sentinel watcher: Sentinels[%d]: %q: %w", i, addr, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
			return nil, fmt.Errorf("discovery: sentinel watcher: Sentinels[%d]: %q: not host:port", i, addr)
		}
		if seen[addr] {
			return nil, fmt.Errorf("discovery: sentinel watcher: Sentinels[%d]: %q: listed twice", i, addr)
		}
		seen[addr] = true
		w.links = append(w.links, &sentinelLink{
			w:         w,
			index:     i,
			addr:      addr,
			logger:    w.logger.With("sentinel", addr),
			wake:      make(chan struct{}, 1),
			poked:     make(map[string]bool),
			masterErr: make(map[string]string),
		})
	}
	for i, name := range opts.Masters {
		// Sentinel events are space-separated words, so a name with a space
		// could not be told apart from the rest of an event.
		if name == "" || strings.ContainsAny(name, " \t\r\n") {
			return nil, fmt.Errorf("discovery: sentinel watcher: Masters[%d]: %q: not a Sentinel master name", i, name)
		}
		if w.follows[name] {
			return nil, fmt.Errorf("discovery: sentinel watcher: Masters[%d]: %q: listed twice", i, name)
		}
		w.follows[name] = true
		w.views[name] = SentinelMaster{Name: name}
		w.answers[name] = make([]sentinelAnswer, len(w.links))
	}
	return w, nil
}

// Run polls and subscribes to every Sentinel until ctx ends, then closes
// every connection and returns ctx's error. It may be called once.
func (w *SentinelWatcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("discovery: sentinel watcher: Run called twice")
	}
	var wg sync.WaitGroup
	for _, l := range w.links {
		wg.Add(2)
		go l.pollLoop(ctx, &wg)
		go l.subscribeLoop(ctx, &wg)
	}
	wg.Add(1)
	go w.notifyLoop(ctx, &wg)
	wg.Wait()
	return ctx.Err()
}

// Poke asks every Sentinel about master now, as the proxy does when a
// master answers -READONLY or stops answering. Pokes that come while a
// poll is under way are folded into the next one; a Sentinel that is
// failing is asked at its next retry. An unknown master is ignored.
func (w *SentinelWatcher) Poke(master string) {
	if !w.follows[master] {
		return
	}
	for _, l := range w.links {
		l.poke(master)
	}
}

// Snapshot returns every followed master's current view.
func (w *SentinelWatcher) Snapshot() map[string]SentinelMaster {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]SentinelMaster, len(w.views))
	for name, v := range w.views {
		out[name] = v.clone()
	}
	return out
}

// notifyLoop calls OnChange, one call at a time, with the newest views.
// Changes that come during a call are folded into one more call.
func (w *SentinelWatcher) notifyLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.changed:
			if w.opts.OnChange != nil {
				w.opts.OnChange(w.Snapshot())
			}
		}
	}
}

// record takes one Sentinel's answer about master and recomputes the view.
func (w *SentinelWatcher) record(index int, master string, a sentinelAnswer) {
	a = w.mapAnswer(a)
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.answers[master][index].unmapped
	w.answers[master][index] = a
	old := w.views[master]
	v := w.agree(old, w.answers[master])
	if a.answered && a.addr != "" && (a.epoch < v.Epoch || (v.Addr != "" && a.addr != v.Addr)) {
		v.Stale++
		w.links[index].logger.Debug("sentinel answer ignored", "master", master,
			"addr", a.addr, "epoch", a.epoch, "view_addr", v.Addr, "view_epoch", v.Epoch)
	}
	if a.unmapped != "" {
		v.Stale++
		log := w.links[index].logger.Debug
		if a.unmapped != before {
			log = w.links[index].logger.Warn
		}
		log("sentinel answer ignored: the master address it names is not a known endpoint", "master", master,
			"addr", a.unmapped, "epoch", a.epoch, "view_addr", v.Addr)
	}
	w.views[master] = v
	if v.Addr != old.Addr && old.Addr != "" {
		w.logger.Info("sentinel master switched", "master", master, "from", old.Addr, "to", v.Addr,
			"epoch", v.Epoch, "agree", v.Agree, "sentinels", len(w.links))
	} else if v.Addr != old.Addr {
		w.logger.Info("sentinel master found", "master", master, "addr", v.Addr,
			"epoch", v.Epoch, "agree", v.Agree, "sentinels", len(w.links))
	}
	if !v.routedEqual(old) {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// mapAnswer passes the addresses of a through MapAddr.
func (w *SentinelWatcher) mapAnswer(a sentinelAnswer) sentinelAnswer {
	if w.opts.MapAddr == nil || !a.answered {
		return a
	}
	if a.addr != "" {
		if mapped, ok := w.opts.MapAddr(a.addr); ok {
			a.addr = mapped
		} else {
			a.unmapped, a.addr = a.addr, ""
		}
	}
	a.replicas, a.downs = w.mapAddrs(a.replicas), w.mapAddrs(a.downs)
	return a
}

// mapAddrs passes addrs through MapAddr, leaving out those it does not
// know.
func (w *SentinelWatcher) mapAddrs(addrs []string) []string {
	var out []string
	for _, r := range addrs {
		if mapped, ok := w.opts.MapAddr(r); ok {
			out = append(out, mapped)
		}
	}
	return out
}

// agree computes a master's view from the last answer of every Sentinel.
// An address counts when more than half of all configured Sentinels name
// it, unreachable ones included, so a minority cut off with the old master
// cannot win by being the only ones heard. Answers at an epoch lower than
// the view's are left out: a Sentinel that slept through a failover still
// names the old master until it hears the new configuration.
func (w *SentinelWatcher) agree(old SentinelMaster, answers []sentinelAnswer) SentinelMaster {
	v := old
	v.Reachable = 0
	counts := make(map[string]int)
	epochs := make(map[string]int64)       // from Sentinels not running a failover
	leaderEpochs := make(map[string]int64) // from those that are
	for _, a := range answers {
		if !a.answered {
			continue
		}
		v.Reachable++
		if a.addr == "" || a.epoch < old.Epoch {
			continue
		}
		counts[a.addr]++
		if a.inFailover {
			leaderEpochs[a.addr] = max(leaderEpochs[a.addr], a.epoch)
		} else {
			epochs[a.addr] = max(epochs[a.addr], a.epoch)
		}
	}
	winner := ""
	for addr, n := range counts {
		if 2*n > len(answers) {
			winner = addr
		}
	}
	if winner != "" {
		// A majority: take its address, epoch and replicas.
		if old.Addr != "" && winner != old.Addr {
			v.Switches++
			v.LastSwitch = time.Now()
		}
		v.Addr = winner
		epoch, trusted := epochs[winner]
		if !trusted {
			epoch = leaderEpochs[winner]
		}
		if winner == old.Addr {
			epoch = max(epoch, old.Epoch)
		}
		v.Epoch = epoch
		v.Replicas = agreedReplicas(winner, answers, old.Epoch)
	}
	// Without a majority the last agreed address, epoch and replicas stay,
	// and Agree says how many still name them.
	v.Agree = counts[v.Addr]
	v.Down = 0
	for _, a := range answers {
		if a.answered && a.addr == v.Addr && a.addr != "" && a.epoch >= old.Epoch && a.masterDown {
			v.Down++
		}
	}
	return v
}

// agreedReplicas returns the replicas of addr that the Sentinels naming it
// list, less any one of them flags down, and less addr itself (a demoted
// master is listed as a replica of the new one).
func agreedReplicas(addr string, answers []sentinelAnswer, minEpoch int64) []string {
	up := make(map[string]bool)
	down := make(map[string]bool)
	for _, a := range answers {
		if !a.answered || a.addr != addr || a.epoch < minEpoch {
			continue
		}
		for _, r := range a.replicas {
			up[r] = true
		}
		for _, r := range a.downs {
			down[r] = true
		}
	}
	var out []string
	for r := range up {
		if !down[r] && r != addr {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// sentinelLink is the watcher's two connections to one Sentinel: one for
// SENTINEL MASTER and SENTINEL REPLICAS polls, one subscribed to events.
type sentinelLink struct {
	w      *SentinelWatcher
	index  int
	addr   string
	logger *slog.Logger
	wake   chan struct{} // a poke is pending

	pokedMu sync.Mutex // guards poked
	poked   map[string]bool

	// Used by pollLoop only.
	conn      net.Conn
	reader    *bufio.Reader
	failing   bool              // the last poll failed and that was logged
	masterErr map[string]string // error text last logged per master
	// Used by subscribeLoop only.
	subFailing bool
	subscribed bool // a subscription was confirmed before

}

func (l *sentinelLink) poke(master string) {
	l.pokedMu.Lock()
	l.poked[master] = true
	l.pokedMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// takePoked returns the masters poked since the last call.
func (l *sentinelLink) takePoked() []string {
	l.pokedMu.Lock()
	defer l.pokedMu.Unlock()
	var out []string
	for _, m := range l.w.opts.Masters {
		if l.poked[m] {
			out = append(out, m)
		}
	}
	clear(l.poked)
	return out
}

// pollLoop asks the Sentinel about every master each Poll, and about poked
// masters at once. After a failure it retries with a backoff that doubles
// up to maxSentinelBackoff (or Poll, when that is longer), and pokes wait
// for the retry, so a proxy that pokes on every failed write does not dial
// a dead Sentinel per write.
func (l *sentinelLink) pollLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	defer l.closeConn()
	poll := l.w.opts.Poll
	timer := time.NewTimer(0)
	defer timer.Stop()
	var backoff time.Duration
	for {
		var masters []string
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			l.takePoked()
			masters = l.w.opts.Masters
		case <-l.wake:
			if backoff > 0 {
				continue
			}
			masters = l.takePoked()
			if len(masters) == 0 {
				continue
			}
		}
		err := l.poll(ctx, masters)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 0
			if len(masters) == len(l.w.opts.Masters) {
				timer.Reset(poll)
			}
			continue
		}
		backoff = nextBackoff(backoff, poll)
		timer.Reset(backoff)
	}
}

// nextBackoff returns the wait after a failure that followed a wait of
// last.
func nextBackoff(last, poll time.Duration) time.Duration {
	limit := max(maxSentinelBackoff, poll)
	if last == 0 {
		return min(100*time.Millisecond, poll)
	}
	return min(2*last, limit)
}

// poll asks about masters on one pipelined round trip and records the
// answers. A failure of the connection or of AUTH counts the Sentinel out
// of every master's Reachable.
func (l *sentinelLink) poll(ctx context.Context, masters []string) error {
	answers, err := l.ask(ctx, masters)
	if err != nil {
		l.closeConn()
		if ctx.Err() != nil {
			return err
		}
		if !l.failing {
			l.logger.Warn("sentinel unreachable", "err", err)
			l.failing = true
		} else {
			l.logger.Debug("sentinel still unreachable", "err", err)
		}
		for _, m := range l.w.opts.Masters {
			l.w.record(l.index, m, sentinelAnswer{})
		}
		return err
	}
	if l.failing {
		l.logger.Info("sentinel reachable")
		l.failing = false
	}
	for i, m := range masters {
		l.w.record(l.index, m, answers[i])
	}
	return nil
}

// ask sends SENTINEL MASTER and SENTINEL REPLICAS for each master and reads
// the answers, dialing first if there is no connection.
func (l *sentinelLink) ask(ctx context.Context, masters []string) ([]sentinelAnswer, error) {
	if l.conn == nil {
		nc, br, err := l.w.dial(ctx, l.addr)
		if err != nil {
			return nil, err
		}
		l.conn, l.reader = nc, br
	}
	nc := l.conn // the AfterFunc may run after closeConn cleared l.conn
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := l.conn.SetDeadline(time.Now().Add(l.w.opts.Timeout)); err != nil {
		return nil, fmt.Errorf("sentinel %s: %w", l.addr, err)
	}
	var req []byte
	for _, m := range masters {
		req = appendRESPCommand(req, "SENTINEL", "MASTER", m)
		req = appendRESPCommand(req, "SENTINEL", "REPLICAS", m)
	}
	if _, err := l.conn.Write(req); err != nil {
		return nil, fmt.Errorf("sentinel %s: write: %w", l.addr, err)
	}
	answers := make([]sentinelAnswer, len(masters))
	for i, m := range masters {
		master, err := readRESP(l.reader)
		if err != nil {
			return nil, fmt.Errorf("sentinel %s: SENTINEL MASTER %s: %w", l.addr, m, err)
		}
		replicas, err := readRESP(l.reader)
		if err != nil {
			return nil, fmt.Errorf("sentinel %s: SENTINEL REPLICAS %s: %w", l.addr, m, err)
		}
		if err := authError(master); err != nil {
			return nil, fmt.Errorf("sentinel %s: SENTINEL MASTER %s: %w", l.addr, m, err)
		}
		a, err := parseSentinelMaster(master, replicas)
		if err != nil {
			// Most often "ERR No such master with that name": this Sentinel
			// does not monitor m. It answered, so it counts as reachable.
			if l.masterErr[m] != err.Error() {
				l.logger.Warn("sentinel does not report master", "master", m, "err", err)
				l.masterErr[m] = err.Error()
			}
			answers[i] = sentinelAnswer{answered: true}
			continue
		}
		if l.masterErr[m] != "" {
			l.logger.Info("sentinel reports master again", "master", m)
			delete(l.masterErr, m)
		}
		answers[i] = a
	}
	return answers, nil
}

func (l *sentinelLink) closeConn() {
	if l.conn != nil {
		l.conn.Close()
		l.conn, l.reader = nil, nil
	}
}

// dial connects to a Sentinel, authenticates when a Password is set and
// names the connection. A Sentinel with requirepass answers the name with
// -NOAUTH when no password was given, which fails the dial with that text.
func (w *SentinelWatcher) dial(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	nc, br, err := dialRedis(ctx, addr, time.Now().Add(w.opts.Timeout), redisHandshake{
		username:   w.opts.Username,
		password:   w.opts.Password,
		clientName: sentinelClientName,
		server:     "Sentinel",
		setting:    "sentinel_auth",
		tls:        w.opts.TLS,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sentinel %s: %w", addr, err)
	}
	return nc, br, nil
}

// redisHandshake is what the watchers send on a new connection to a
// Sentinel or a Redis, and the words their errors use.
type redisHandshake struct {
	username, password string // AUTH [username] password when password is set
	clientName         string // CLIENT SETNAME, for CLIENT LIST
	server             string // what is dialed, for errors: "Sentinel"
	setting            string // where the password comes from, for errors: "sentinel_auth"
	// tls, when set, gives the TLS config of the connection to addr, whose
	// handshake comes before anything is sent; nil for plain TCP.
	tls func(addr string) (*tls.Config, error)
}

// dialRedis connects to addr, authenticates when a password is set, names
// the connection, and returns it with its reader. Dialing and the replies
// must come before deadline.
func dialRedis(ctx context.Context, addr string, deadline time.Time, h redisHandshake) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		nc.Close()
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := nc.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	if h.tls != nil {
		cfg, err := h.tls(addr)
		if err != nil {
			return fail(fmt.Errorf("TLS: %w", err))
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				// A plain-text port never answers a ClientHello.
				return fail(fmt.Errorf("TLS handshake: no answer in time (does it speak TLS on this port?): %w", err))
			}
			return fail(fmt.Errorf("TLS handshake: %w", err))
		}
		nc = tc
	}
	var req []byte
	if h.password != "" {
		if h.username != "" {
			req = appendRESPCommand(req, "AUTH", h.username, h.password)
		} else {
			req = appendRESPCommand(req, "AUTH", h.password)
		}
	}
	req = appendRESPCommand(req, "CLIENT", "SETNAME", h.clientName)
	if _, err := nc.Write(req); err != nil {
		return fail(fmt.Errorf("write: %w", err))
	}
	br := bufio.NewReader(nc)
	if h.password != "" {
		rep, err := readRESP(br)
		if err != nil {
			return fail(fmt.Errorf("AUTH: %w", err))
		}
		if rep.kind == '-' {
			return fail(fmt.Errorf("AUTH (%s): %s", h.setting, rep.str))
		}
	}
	rep, err := readRESP(br)
	if err != nil {
		return fail(fmt.Errorf("CLIENT SETNAME: %w", err))
	}
	if err := refusedError(rep, h.server, h.setting); err != nil {
		return fail(err)
	}
	// Any other error (CLIENT renamed or denied by an ACL) costs only the
	// name.
	return nc, br, nil
}

// authError returns an error for a Sentinel's reply that says the
// connection is not authenticated or not allowed.
func authError(rep respValue) error { return refusedError(rep, "Sentinel", "sentinel_auth") }

// refusedError returns an error for a reply that says the connection is
// not authenticated or not allowed, which no retry of the same command
// fixes. server and setting name what was dialed and where its password
// comes from.
func refusedError(rep respValue, server, setting string) error {
	if rep.kind != '-' {
		return nil
	}
	code, _, _ := strings.Cut(rep.str, " ")
	switch code {
	case "NOAUTH":
		return fmt.Errorf("the %s requires a password (%s): %s", server, setting, rep.str)
	case "WRONGPASS", "NOPERM":
		return fmt.Errorf("%s: %s", setting, rep.str)
	}
	return nil
}

// parseSentinelMaster reads SENTINEL MASTER's flat array of field names and
// values (ip, port, config-epoch, flags, ...) and SENTINEL REPLICAS' array
// of such arrays.
func parseSentinelMaster(master, replicas respValue) (sentinelAnswer, error) {
	if master.kind == '-' {
		return sentinelAnswer{}, errors.New(master.str)
	}
	fields, err := respFields(master)
	if err != nil {
		return sentinelAnswer{}, fmt.Errorf("SENTINEL MASTER: %w", err)
	}
	addr, err := fieldsAddr(fields)
	if err != nil {
		return sentinelAnswer{}, fmt.Errorf("SENTINEL MASTER: %w", err)
	}
	epoch, err := strconv.ParseInt(fields["config-epoch"], 10, 64)
	if err != nil {
		return sentinelAnswer{}, fmt.Errorf("SENTINEL MASTER: config-epoch %q: not a number", fields["config-epoch"])
	}
	a := sentinelAnswer{answered: true, addr: addr, epoch: epoch}
	flags := strings.Split(fields["flags"], ",")
	a.masterDown = slices.Contains(flags, "s_down") || slices.Contains(flags, "o_down")
	a.inFailover = slices.Contains(flags, "failover_in_progress")
	if replicas.kind == '-' {
		return sentinelAnswer{}, fmt.Errorf("SENTINEL REPLICAS: %s", replicas.str)
	}
	if replicas.kind != '*' {
		return sentinelAnswer{}, fmt.Errorf("SENTINEL REPLICAS: reply of type %q, want an array", replicas.kind)
	}
	for _, r := range replicas.arr {
		rf, err := respFields(r)
		if err != nil {
			return sentinelAnswer{}, fmt.Errorf("SENTINEL REPLICAS: %w", err)
		}
		raddr, err := fieldsAddr(rf)
		if err != nil {
			return sentinelAnswer{}, fmt.Errorf("SENTINEL REPLICAS: %w", err)
		}
		rflags := strings.Split(rf["flags"], ",")
		if slices.Contains(rflags, "s_down") || slices.Contains(rflags, "o_down") || slices.Contains(rflags, "disconnected") {
			a.downs = append(a.downs, raddr)
		} else {
			a.replicas = append(a.replicas, raddr)
		}
	}
	return a, nil
}

// respFields turns an array of alternating names and values into a map.
func respFields(v respValue) (map[string]string, error) {
	if v.kind != '*' || len(v.arr)%2 != 0 {
		return nil, fmt.Errorf("reply %s, want an array of names and values", v.describe())
	}
	fields := make(map[string]string, len(v.arr)/2)
	for i := 0; i < len(v.arr); i += 2 {
		fields[v.arr[i].str] = v.arr[i+1].str
	}
	return fields, nil
}

func fieldsAddr(fields map[string]string) (string, error) {
	ip, port := fields["ip"], fields["port"]
	if n, err := strconv.Atoi(port); ip == "" || err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("ip %q port %q: not an address", ip, port)
	}
	return net.JoinHostPort(ip, port), nil
}

// subscribeLoop keeps a connection subscribed to sentinelEvents and polls
// every Sentinel about a followed master as soon as one of them concerns
// it. It reconnects with the same backoff as pollLoop.
func (l *sentinelLink) subscribeLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	var backoff time.Duration
	for {
		heard, err := l.subscribe(ctx)
		if ctx.Err() != nil {
			return
		}
		if heard {
			backoff = 0
		}
		if !l.subFailing {
			l.logger.Warn("sentinel event subscription failed", "err", err)
			l.subFailing = true
		} else {
			l.logger.Debug("sentinel event subscription still failing", "err", err)
		}
		backoff = nextBackoff(backoff, l.w.opts.Poll)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// subscribe runs one subscription connection until it fails. heard reports
// whether the Sentinel confirmed the subscription.
func (l *sentinelLink) subscribe(ctx context.Context) (heard bool, err error) {
	nc, br, err := l.w.dial(ctx, l.addr)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	args := append([]string{"SUBSCRIBE"}, sentinelEvents...)
	if _, err := nc.Write(appendRESPCommand(nil, args...)); err != nil {
		return false, fmt.Errorf("sentinel %s: SUBSCRIBE: %w", l.addr, err)
	}
	// A PING every Poll keeps replies coming, so a Sentinel that stops
	// answering is noticed after Poll+Timeout of silence.
	pingDone := make(chan struct{})
	var pingWG sync.WaitGroup
	pingWG.Add(1)
	go l.pingLoop(nc, pingDone, &pingWG)
	defer pingWG.Wait()
	defer close(pingDone)
	confirmed := 0
	for {
		if err := nc.SetReadDeadline(time.Now().Add(l.w.opts.Poll + l.w.opts.Timeout)); err != nil {
			return heard, fmt.Errorf("sentinel %s: %w", l.addr, err)
		}
		msg, err := readRESP(br)
		if err != nil {
			return heard, fmt.Errorf("sentinel %s: subscription: %w", l.addr, err)
		}
		if err := authError(msg); err != nil {
			return heard, fmt.Errorf("sentinel %s: SUBSCRIBE: %w", l.addr, err)
		}
		if msg.kind == '-' {
			return heard, fmt.Errorf("sentinel %s: SUBSCRIBE: %s", l.addr, msg.str)
		}
		if msg.kind != '*' || len(msg.arr) < 2 {
			continue
		}
		switch msg.arr[0].str {
		case "subscribe":
			confirmed++
			if confirmed == len(sentinelEvents) {
				heard = true
				if l.subFailing {
					l.logger.Info("sentinel event subscription restored")
					l.subFailing = false
				}
				// Events sent while this connection was down are lost:
				// ask about everything once.
				if l.subscribed {
					for _, m := range l.w.opts.Masters {
						l.w.Poke(m)
					}
				}
				l.subscribed = true
			}
		case "message":
			if len(msg.arr) == 3 {
				l.event(msg.arr[1].str, msg.arr[2].str)
			}
		}
	}
}

// pingLoop writes a PING on a subscription connection every Poll until done
// is closed or a write fails.
func (l *sentinelLink) pingLoop(nc net.Conn, done <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	ping := appendRESPCommand(nil, "PING")
	t := time.NewTicker(l.w.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := nc.SetWriteDeadline(time.Now().Add(l.w.opts.Timeout)); err != nil {
				return
			}
			if _, err := nc.Write(ping); err != nil {
				return
			}
		}
	}
}

// event handles one Sentinel event. +switch-master is "<master> <old ip>
// <old port> <new ip> <new port>"; the others describe an instance as
// "<type> <name> <ip> <port>", followed by "@ <master> <ip> <port>" unless
// the instance is a master itself.
func (l *sentinelLink) event(channel, payload string) {
	master := eventMaster(channel, payload)
	if !l.w.follows[master] {
		return
	}
	l.logger.Info("sentinel event", "event", channel, "detail", payload)
	l.w.Poke(master)
}

func eventMaster(channel, payload string) string {
	words := strings.Fields(payload)
	if len(words) == 0 {
		return ""
	}
	if channel == "+switch-master" {
		return words[0]
	}
	if i := slices.Index(words, "@"); i >= 0 && i+1 < len(words) {
		return words[i+1]
	}
	if words[0] == "master" && len(words) > 1 {
		return words[1]
	}
	return ""
}

// RESP2, as much as Sentinel's replies need. These connections are few and
// slow, so replies are decoded into values.

// Limits of readRESP, far above what Sentinel sends for any sane number of
// replicas.
const (
	maxRESPLine  = 64 << 10
	maxRESPBulk  = 1 << 20
	maxRESPArray = 1 << 16
	maxRESPDepth = 4
)

type respValue struct {
	kind byte   // '+', '-', ':', '$', '*'
	str  string // simple string, error, integer or bulk text
	arr  []respValue
	null bool
}

func (v respValue) describe() string {
	switch v.kind {
	case '-':
		return "-" + v.str
	case '*':
		return fmt.Sprintf("array of %d", len(v.arr))
	}
	return fmt.Sprintf("of type %q", v.kind)
}

var errRESP = errors.New("bad RESP reply")

func readRESP(br *bufio.Reader) (respValue, error) { return readRESPDepth(br, 0) }

func readRESPDepth(br *bufio.Reader, depth int) (respValue, error) {
	line, err := readRESPLine(br)
	if err != nil {
		return respValue{}, err
	}
	if len(line) == 0 {
		return respValue{}, fmt.Errorf("%w: empty line", errRESP)
	}
	v := respValue{kind: line[0], str: string(line[1:])}
	switch v.kind {
	case '+', '-', ':':
		return v, nil
	case '$', '*':
	default:
		return respValue{}, fmt.Errorf("%w: type %q", errRESP, line[0])
	}
	n, err := strconv.Atoi(v.str)
	if err != nil || n < -1 {
		return respValue{}, fmt.Errorf("%w: length %q", errRESP, v.str)
	}
	v.str = ""
	if n == -1 {
		v.null = true
		return v, nil
	}
	if v.kind == '$' {
		if n > maxRESPBulk {
			return respValue{}, fmt.Errorf("%w: bulk of %d bytes", errRESP, n)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return respValue{}, noEOF(err)
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return respValue{}, fmt.Errorf("%w: bulk not ended by CRLF", errRESP)
		}
		v.str = string(b[:n])
		return v, nil
	}
	if n > maxRESPArray || depth >= maxRESPDepth {
		return respValue{}, fmt.Errorf("%w: array of %d at depth %d", errRESP, n, depth)
	}
	v.arr = make([]respValue, n)
	for i := range v.arr {
		if v.arr[i], err = readRESPDepth(br, depth+1); err != nil {
			return respValue{}, noEOF(err)
		}
	}
	return v, nil
}

func readRESPLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxRESPLine {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errRESP, maxRESPLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(line) > 0 {
				return nil, noEOF(err)
			}
			return nil, err
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, fmt.Errorf("%w: line not ended by CRLF", errRESP)
		}
		return line[:len(line)-2], nil
	}
}

// noEOF turns an EOF inside a reply into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func appendRESPCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}
