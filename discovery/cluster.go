package discovery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
)

// Defaults of ClusterOptions.
const (
	DefaultClusterPoll    = 2 * time.Second
	DefaultClusterTimeout = time.Second
	DefaultClusterAsks    = 3
)

// clusterClientName is what the watcher's connections call themselves
// (CLIENT SETNAME), so an operator's CLIENT LIST on a node shows them.
const clusterClientName = "shardproxy-cluster-watcher"

// ClusterOptions configures a ClusterWatcher.
type ClusterOptions struct {
	// Seeds are host:port of nodes of the cluster, at least one; SetSeeds
	// replaces them. The nodes the cluster reports are asked too.
	Seeds []string
	// Username and Password authenticate to the nodes (the pool's data
	// password, AUTH [user] pass); "" for none. A Username needs a
	// Password.
	Username, Password string
	Poll               time.Duration // how often the map is refreshed; 0 means DefaultClusterPoll
	Timeout            time.Duration // dial + AUTH + the replies, per node; 0 means DefaultClusterTimeout
	Asks               int           // how many nodes each refresh asks; 0 means DefaultClusterAsks
	// MapAddr turns the address a node is announced at (its endpoint, an
	// IP or a hostname, and port, as host:port) into the one to dial, or
	// reports false for one it does not know; then the hostname is tried
	// with the same port. A node neither maps is left out, with the slots
	// it claims. nil dials nodes as announced. It is called for every
	// answer and must not block.
	MapAddr func(addr string) (string, bool)
	Logger  *slog.Logger // nil discards logs
	// TLS, when set, makes every connection to a node speak TLS, with the
	// config it returns for the node's host:port as dialled (the pool's
	// server_tls_* settings); nil dials plain TCP.
	TLS func(addr string) (*tls.Config, error)
	// OnChange gets the whole map when the slots or the nodes changed;
	// calls come from one goroutine, one at a time. It may be nil.
	OnChange func(ClusterMap)
}

// ClusterMap is the watcher's view of a cluster: who serves each slot.
type ClusterMap struct {
	// Slots holds, for each hash slot, the index in Nodes of the master
	// serving it, or -1 when none does.
	Slots [hashring.SlotCount]int32
	// Nodes lists the masters first, those serving slots ordered by their
	// first slot and then the others by ID, then the replicas, ordered by
	// their master's place and then ID.
	Nodes []ClusterNode
	Epoch uint64 // the highest current epoch (CLUSTER INFO cluster_current_epoch) the map was made at
	From  string // the address of the node whose answer gave the most of Slots
}

// ClusterNode is one node of a ClusterMap.
type ClusterNode struct {
	ID        string
	Addr      string // where to dial it: Announced through MapAddr
	Hostname  string // as announced (cluster-announce-hostname); "" when none
	Announced string // host:port as the cluster announces it
	Master    bool
	MasterID  string // a replica's master; "" for a master
	// ConfigEpoch is the node's config epoch as the answer its entry comes
	// from says.
	ConfigEpoch uint64
	// Health is CLUSTER SHARDS' word for it (online, fail, loading); ""
	// when the node only answered CLUSTER SLOTS (Redis 6). A node flagged
	// fail in CLUSTER NODES is "fail" either way.
	Health string
}

// Owner returns the node serving slot, and false when none does.
func (m *ClusterMap) Owner(slot int) (ClusterNode, bool) {
	if slot < 0 || slot >= hashring.SlotCount || m.Slots[slot] < 0 || int(m.Slots[slot]) >= len(m.Nodes) {
		return ClusterNode{}, false
	}
	return m.Nodes[m.Slots[slot]], true
}

func (m ClusterMap) clone() ClusterMap {
	m.Nodes = slices.Clone(m.Nodes)
	return m
}

// routedEqual reports whether m and o differ in nothing OnChange is called
// for: the slots and the nodes, not Epoch or From.
func (m *ClusterMap) routedEqual(o *ClusterMap) bool {
	return m.Slots == o.Slots && slices.Equal(m.Nodes, o.Nodes)
}

func emptyClusterMap() ClusterMap {
	var m ClusterMap
	for i := range m.Slots {
		m.Slots[i] = -1
	}
	return m
}

// ClusterWatcher follows which master of a Redis Cluster serves each hash
// slot, through resharding and failover.
//
// Each refresh asks up to Asks nodes at once, taking turns through the
// known nodes and the seeds, three things on one connection: CLUSTER INFO
// (the node's current epoch), CLUSTER SHARDS (slots, nodes, addresses,
// hostnames, health; CLUSTER SLOTS from a node that does not know SHARDS,
// Redis 6) and CLUSTER NODES, for each node's config epoch and its fail
// flag, which SHARDS does not carry. SHARDS stays the source of slots and
// addresses because it is the structured reply Redis 7 keeps extending
// (endpoints, hostnames, health), where NODES is a text format whose
// address field has grown twice; NODES is read for its two columns only.
//
// A client that believes whichever node answered last (Envoy's Redis
// Cluster discovery takes one node's CLUSTER SLOTS as the whole map) can
// be sent back to a demoted master by one node that was cut off, paused
// or restarted from an old nodes.conf and has not heard of a failover
// yet. The answers are merged the way the cluster itself settles a
// conflict, by epochs:
//
//  1. Answers at the highest current epoch form the first tier; the
//     others, from nodes behind, only fill slots the first tier leaves
//     unowned, and never with a node the first tier lists as a replica.
//  2. Per slot, among a tier's claims the master with the highest config
//     epoch wins: the cluster gives a slot's new owner a higher config
//     epoch than the old one's, by a failover's election or by the bump
//     after CLUSTER SETSLOT NODE. A tie between two masters (the cluster
//     resolves those within moments) goes to the one more answers name,
//     then to the lower ID.
//  3. A master flagged fail by the answer claiming for it, or by any
//     answer of the first tier, owns nothing; nor does a node MapAddr does
//     not know.
//  4. When no answer reaches the epoch of the map already held, that map
//     is the first tier and the answers only fill its gaps, so a refresh
//     that only heard nodes behind changes nothing it had, however many
//     answered. Unless they are a cluster made anew (epochs only go back
//     then: new nodes, or CLUSTER RESET HARD, which gives a node a new
//     ID): no answer names a node the map knows, and they name at least
//     half as many nodes as it has (one node that has not joined yet
//     knows only itself). That cluster is taken.
//
// Disagreements are logged at Warn, once per change of who disagrees:
// two first-tier answers naming different owners for a slot, and any
// answer that lost slots it claimed for a master it holds healthy.
type ClusterWatcher struct {
	opts    ClusterOptions
	logger  *slog.Logger
	wake    chan struct{} // a poke is pending
	changed chan struct{} // one pending OnChange
	running atomic.Bool

	mu     sync.Mutex // guards seeds, view and counts
	seeds  []string
	view   ClusterMap
	counts ClusterStats

	// Used by Run's refresh loop only.
	conns       map[string]*clusterConn
	cursor      int    // where the next refresh starts taking nodes
	lastDispute string // which answers disagreed at the last refresh
}

// NewClusterWatcher checks opts and returns a watcher that does nothing
// until Run.
func NewClusterWatcher(opts ClusterOptions) (*ClusterWatcher, error) {
	if len(opts.Seeds) == 0 {
		return nil, errors.New("discovery: cluster watcher: no Seeds")
	}
	for i, s := range opts.Seeds {
		if err := checkHostPort(s); err != nil {
			return nil, fmt.Errorf("discovery: cluster watcher: Seeds[%d]: %q: %w", i, s, err)
		}
	}
	if opts.Username != "" && opts.Password == "" {
		return nil, errors.New("discovery: cluster watcher: a Username needs a Password")
	}
	if opts.Poll < 0 || opts.Timeout < 0 || opts.Asks < 0 {
		return nil, fmt.Errorf("discovery: cluster watcher: Poll %v, Timeout %v and Asks %d must not be negative", opts.Poll, opts.Timeout, opts.Asks)
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultClusterPoll
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultClusterTimeout
	}
	if opts.Asks == 0 {
		opts.Asks = DefaultClusterAsks
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &ClusterWatcher{
		opts:    opts,
		logger:  opts.Logger.With("component", "cluster"),
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
		seeds:   dedupe(opts.Seeds),
		view:    emptyClusterMap(),
		conns:   make(map[string]*clusterConn),
	}
	w.opts.Seeds = nil // SetSeeds changes them; w.seeds is what is current
	return w, nil
}

func dedupe(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Run refreshes the map each Poll, and at once when poked, until ctx ends,
// then closes every connection and returns ctx's error once every
// goroutine it started has ended. It may be called once.
func (w *ClusterWatcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("discovery: cluster watcher: Run called twice")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go w.notifyLoop(ctx, &wg)
	w.refreshLoop(ctx)
	for addr, c := range w.conns {
		c.closeConn()
		delete(w.conns, addr)
	}
	wg.Wait()
	return ctx.Err()
}

// Poke refreshes the map now, as the proxy does when a node answers MOVED
// or ASK or stops answering. Pokes that come during a refresh are folded
// into one more.
func (w *ClusterWatcher) Poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// SetSeeds replaces the seeds, as the pods behind the cluster's Service
// change, and refreshes now. Addresses that are not host:port are left
// out. It is safe to call before and while Run.
func (w *ClusterWatcher) SetSeeds(seeds []string) {
	var ok []string
	for _, s := range seeds {
		if checkHostPort(s) == nil {
			ok = append(ok, s)
		}
	}
	w.mu.Lock()
	w.seeds = dedupe(ok)
	w.mu.Unlock()
	w.Poke()
}

// Snapshot returns the current map, a copy. Before the first answer every
// slot is -1 and Nodes is empty.
func (w *ClusterWatcher) Snapshot() ClusterMap {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.view.clone()
}

// ClusterStats is what a ClusterWatcher did since it was made.
type ClusterStats struct {
	// Epoch is the current map's: the highest current epoch (CLUSTER
	// INFO cluster_current_epoch) of the last refresh that got an answer.
	Epoch uint64
	// Refreshes counts the refreshes that read the map from at least one
	// node, Changes those that found its slots or nodes changed (OnChange
	// gets the newest map after each), LastChange when the last of those
	// was; zero before the first.
	Refreshes, Changes int64
	LastChange         time.Time
}

// Stats returns what the watcher did so far.
func (w *ClusterWatcher) Stats() ClusterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.counts
	st.Epoch = w.view.Epoch
	return st
}

// notifyLoop calls OnChange, one call at a time, with the newest map.
// Changes that come during a call are folded into one more call.
func (w *ClusterWatcher) notifyLoop(ctx context.Context, wg *sync.WaitGroup) {
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

// refreshLoop refreshes each Poll and when poked. A refresh that got no
// answer is retried with a backoff from 100 ms doubling to 5 s (or Poll).
func (w *ClusterWatcher) refreshLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.wake:
		}
		answered := w.refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		next := w.opts.Poll
		if answered {
			backoff = 0
		} else {
			backoff = nextBackoff(backoff, w.opts.Poll)
			next = backoff
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// targets returns the addresses the next refresh asks: up to Asks of the
// known nodes (masters first) and the seeds, taking turns, skipping those
// waiting for a retry.
func (w *ClusterWatcher) targets(now time.Time) []string {
	w.mu.Lock()
	var candidates []string
	for _, n := range w.view.Nodes {
		if n.Addr != "" && !slices.Contains(candidates, n.Addr) {
			candidates = append(candidates, n.Addr)
		}
	}
	for _, s := range w.seeds {
		if !slices.Contains(candidates, s) {
			candidates = append(candidates, s)
		}
	}
	w.mu.Unlock()
	for addr, c := range w.conns {
		if !slices.Contains(candidates, addr) {
			c.closeConn()
			delete(w.conns, addr)
		}
	}
	var out []string
	for i := 0; i < len(candidates) && len(out) < w.opts.Asks; i++ {
		addr := candidates[(w.cursor+i)%len(candidates)]
		if c := w.conns[addr]; c != nil && c.conn == nil && now.Before(c.retryAt) {
			continue
		}
		out = append(out, addr)
	}
	if len(candidates) > 0 {
		w.cursor = (w.cursor + w.opts.Asks) % len(candidates)
	}
	return out
}

// refresh asks the targets at once, merges their answers with the map
// held, and publishes the result. It reports whether any node answered.
func (w *ClusterWatcher) refresh(ctx context.Context) bool {
	now := time.Now()
	addrs := w.targets(now)
	deadline := now.Add(w.opts.Timeout)
	var wg sync.WaitGroup
	asked := make([]*clusterConn, len(addrs))
	for i, addr := range addrs {
		c := w.conns[addr]
		if c == nil {
			c = &clusterConn{w: w, addr: addr, logger: w.logger.With("node", addr)}
			w.conns[addr] = c
		}
		asked[i] = c
		wg.Add(1)
		go c.poll(ctx, deadline, &wg)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false
	}
	var answers []clusterAnswer
	for _, c := range asked {
		if c.err == nil {
			answers = append(answers, w.mapAnswer(c.answer))
		}
	}
	if len(answers) == 0 {
		return false
	}
	w.mu.Lock()
	old := w.view
	var prev *clusterAnswer
	if len(old.Nodes) > 0 {
		p := old.answer()
		prev = &p
	}
	merged := mergeCluster(answers, prev)
	w.view = merged.view
	w.counts.Refreshes++
	changed := !merged.view.routedEqual(&old)
	if changed {
		w.counts.Changes++
		w.counts.LastChange = time.Now()
	}
	w.mu.Unlock()
	if merged.dispute != w.lastDispute {
		if merged.dispute != "" {
			w.logger.Warn("cluster nodes disagree", "detail", merged.detail)
		} else {
			w.logger.Info("cluster nodes agree again")
		}
		w.lastDispute = merged.dispute
	}
	if changed {
		w.logChange(&old, &merged.view)
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	return true
}

// logChange says at Info how many slots moved between which nodes, or
// what else changed.
func (w *ClusterWatcher) logChange(old, cur *ClusterMap) {
	moves := make(map[string]int)
	moved, unowned := 0, 0
	for s := range cur.Slots {
		o, _ := old.Owner(s)
		n, ok := cur.Owner(s)
		if !ok {
			unowned++
		}
		if o.ID == n.ID {
			continue
		}
		moved++
		moves[describeNode(o)+" -> "+describeNode(n)]++
	}
	masters, replicas := 0, 0
	for _, n := range cur.Nodes {
		if n.Master {
			masters++
		} else {
			replicas++
		}
	}
	if moved == 0 {
		w.logger.Info("cluster nodes changed", "masters", masters, "replicas", replicas,
			"epoch", cur.Epoch, "from", cur.From)
		return
	}
	var summary []string
	for k, n := range moves {
		summary = append(summary, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(summary)
	if len(summary) > 8 {
		summary = append(summary[:8], fmt.Sprintf("and %d more", len(summary)-8))
	}
	w.logger.Info("cluster slot map changed", "moved", moved, "unowned", unowned,
		"moves", strings.Join(summary, "; "), "masters", masters, "replicas", replicas,
		"epoch", cur.Epoch, "from", cur.From)
}

func describeNode(n ClusterNode) string {
	if n.ID == "" {
		return "none"
	}
	return n.Addr + " (" + shortID(n.ID) + ")"
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// mapAnswer fills in each node's Addr: Announced through MapAddr, or its
// hostname through it; "" when neither maps.
func (w *ClusterWatcher) mapAnswer(a clusterAnswer) clusterAnswer {
	for id, n := range a.nodes {
		n.Addr = n.Announced
		if w.opts.MapAddr != nil {
			n.Addr = ""
			if mapped, ok := w.opts.MapAddr(n.Announced); ok {
				n.Addr = mapped
			} else if _, port, err := net.SplitHostPort(n.Announced); err == nil && n.Hostname != "" {
				if mapped, ok := w.opts.MapAddr(net.JoinHostPort(n.Hostname, port)); ok {
					n.Addr = mapped
				}
			}
		}
		a.nodes[id] = n
	}
	return a
}

// clusterConn is the watcher's connection to one node, used by one
// refresh at a time.
type clusterConn struct {
	w        *ClusterWatcher
	addr     string
	logger   *slog.Logger
	conn     net.Conn
	reader   *bufio.Reader
	noShards bool // the node answered CLUSTER SHARDS as an unknown subcommand

	answer clusterAnswer // the last one, when err is nil
	err    error
	retry
}

// poll asks the node, dialing first if there is no connection. On any
// error the connection is closed and the node is retried after a backoff
// that doubles from 100 ms up to 5 s (or Poll).
func (c *clusterConn) poll(ctx context.Context, deadline time.Time, wg *sync.WaitGroup) {
	defer wg.Done()
	a, err := c.ask(ctx, deadline)
	c.answer, c.err = a, err
	if err != nil {
		c.closeConn()
		if ctx.Err() == nil {
			c.failed(c.logger, "cluster node", err, c.w.opts.Poll)
		}
		return
	}
	c.succeeded(c.logger, "cluster node")
}

func (c *clusterConn) ask(ctx context.Context, deadline time.Time) (clusterAnswer, error) {
	if c.conn == nil {
		nc, br, err := dialRedis(ctx, c.addr, deadline, redisHandshake{
			username:   c.w.opts.Username,
			password:   c.w.opts.Password,
			clientName: clusterClientName,
			server:     "cluster node",
			setting:    "redis_auth",
			tls:        c.w.opts.TLS,
		})
		if err != nil {
			return clusterAnswer{}, err
		}
		c.conn, c.reader = nc, br
	}
	nc := c.conn // the AfterFunc may run after closeConn cleared c.conn
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := nc.SetDeadline(deadline); err != nil {
		return clusterAnswer{}, err
	}
	slotsCmd := "SHARDS"
	if c.noShards {
		slotsCmd = "SLOTS"
	}
	req := appendRESPCommand(nil, "CLUSTER", "INFO")
	req = appendRESPCommand(req, "CLUSTER", slotsCmd)
	req = appendRESPCommand(req, "CLUSTER", "NODES")
	if _, err := nc.Write(req); err != nil {
		return clusterAnswer{}, fmt.Errorf("write: %w", err)
	}
	var reps [3]respValue
	for i, name := range []string{"INFO", slotsCmd, "NODES"} {
		rep, err := readRESP(c.reader)
		if err != nil {
			return clusterAnswer{}, fmt.Errorf("CLUSTER %s: %w", name, err)
		}
		if err := refusedError(rep, "cluster node", "redis_auth"); err != nil {
			return clusterAnswer{}, fmt.Errorf("CLUSTER %s: %w", name, err)
		}
		reps[i] = rep
	}
	if !c.noShards && reps[1].kind == '-' && strings.Contains(strings.ToLower(reps[1].str), "unknown subcommand") {
		// Redis 6 has no CLUSTER SHARDS.
		c.noShards = true
		slotsCmd = "SLOTS"
		if _, err := nc.Write(appendRESPCommand(nil, "CLUSTER", "SLOTS")); err != nil {
			return clusterAnswer{}, fmt.Errorf("write: %w", err)
		}
		rep, err := readRESP(c.reader)
		if err != nil {
			return clusterAnswer{}, fmt.Errorf("CLUSTER SLOTS: %w", err)
		}
		reps[1] = rep
	}
	info, err := parseClusterInfo(reps[0])
	if err != nil {
		return clusterAnswer{}, err
	}
	nodes, err := parseClusterNodes(reps[2])
	if err != nil {
		return clusterAnswer{}, err
	}
	var layout clusterLayout
	if c.noShards {
		layout, err = parseClusterSlots(reps[1])
	} else {
		layout, err = parseClusterShards(reps[1], c.w.opts.TLS != nil)
	}
	if err != nil {
		return clusterAnswer{}, err
	}
	return newClusterAnswer(c.addr, info, nodes, layout), nil
}

func (c *clusterConn) closeConn() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.reader = nil, nil
	}
}

// clusterAnswer is one node's answer, as the merge sees it.
type clusterAnswer struct {
	from         string // the address asked
	currentEpoch uint64
	nodes        map[string]clusterNodeInfo // by ID
	owner        [hashring.SlotCount]string // the master ID it says serves each slot; "" for none
}

// clusterNodeInfo is what one answer says about one node.
type clusterNodeInfo struct {
	ClusterNode
	failed bool // flagged fail
}

// claimant returns the node an answer says serves slot, when it may own
// it: a master, not failed, with an address.
func (a *clusterAnswer) claimant(slot int) (clusterNodeInfo, bool) {
	id := a.owner[slot]
	if id == "" {
		return clusterNodeInfo{}, false
	}
	n, ok := a.nodes[id]
	if !ok || !n.Master || n.failed || n.Addr == "" {
		return clusterNodeInfo{}, false
	}
	return n, true
}

// answer turns a map back into an answer, for the merge: the map held is
// what the cluster said before.
func (m *ClusterMap) answer() clusterAnswer {
	a := clusterAnswer{from: m.From, currentEpoch: m.Epoch, nodes: make(map[string]clusterNodeInfo, len(m.Nodes))}
	for _, n := range m.Nodes {
		a.nodes[n.ID] = clusterNodeInfo{ClusterNode: n, failed: n.Health == "fail"}
	}
	for s, i := range m.Slots {
		if i >= 0 && int(i) < len(m.Nodes) {
			a.owner[s] = m.Nodes[i].ID
		}
	}
	return a
}

// newClusterAnswer joins the three replies of one node: NODES says which
// nodes exist, their roles, config epochs and fail flags; SHARDS (or
// SLOTS) says who serves which slots and how each node is announced.
func newClusterAnswer(from string, info clusterInfo, nodes map[string]clusterNodeInfo, layout clusterLayout) clusterAnswer {
	a := clusterAnswer{from: from, currentEpoch: info.currentEpoch, nodes: nodes}
	for id, l := range layout.nodes {
		n, ok := a.nodes[id]
		if !ok {
			continue // not in NODES: no epoch, no role to trust
		}
		if l.announced != "" {
			n.Announced = l.announced
		}
		if l.hostname != "" {
			n.Hostname = l.hostname
		}
		if l.health != "" && n.Health != "fail" {
			n.Health = l.health
		}
		a.nodes[id] = n
	}
	for _, r := range layout.ranges {
		for s := r.first; s <= r.last; s++ {
			a.owner[s] = r.id
		}
	}
	return a
}

// clusterMerge is the result of a merge.
type clusterMerge struct {
	view    ClusterMap
	dispute string // which answers disagree; "" when none do
	detail  string // and on how many slots
}

// recreated reports whether answers, all behind the map held, are of a
// cluster made anew: epochs never go back in a cluster, only when it is
// recreated (new nodes, or CLUSTER RESET HARD, which also gives a node a
// new ID). A node cut off from the cluster lags with IDs the map knows; a
// node that has not joined yet knows only itself. So: no answer names a
// node the map knows, and together they name at least half as many nodes.
func recreated(answers []clusterAnswer, held *clusterAnswer) bool {
	named := make(map[string]bool)
	for _, a := range answers {
		for id := range a.nodes {
			if _, ok := held.nodes[id]; ok {
				return false
			}
			named[id] = true
		}
	}
	return 2*len(named) >= len(held.nodes)
}

// mergeCluster applies the rule in ClusterWatcher's doc to one refresh's
// answers and the map held before (prev, nil for none).
func mergeCluster(answers []clusterAnswer, prev *clusterAnswer) clusterMerge {
	var top uint64
	for _, a := range answers {
		top = max(top, a.currentEpoch)
	}
	var first, second []*clusterAnswer
	if prev != nil && top < prev.currentEpoch && !recreated(answers, prev) {
		first = []*clusterAnswer{prev} // rule 4
		for i := range answers {
			second = append(second, &answers[i])
		}
	} else {
		for i := range answers {
			if answers[i].currentEpoch == top {
				first = append(first, &answers[i])
			} else {
				second = append(second, &answers[i])
			}
		}
	}
	failed := make(map[string]bool)  // rule 3
	replica := make(map[string]bool) // rule 1
	for _, a := range first {
		for id, n := range a.nodes {
			if n.failed {
				failed[id] = true
			}
			if !n.Master {
				replica[id] = true
			}
		}
	}
	type claim struct {
		node  clusterNodeInfo
		votes int
		from  *clusterAnswer
	}
	var winners [hashring.SlotCount]claim
	disputed := make(map[string]int) // "a vs b" -> slots
	best := func(tier []*clusterAnswer, slot int, second bool) (claim, bool) {
		var claims []claim
		for _, a := range tier {
			n, ok := a.claimant(slot)
			if !ok || failed[n.ID] || (second && replica[n.ID]) {
				continue
			}
			i := slices.IndexFunc(claims, func(c claim) bool { return c.node.ID == n.ID })
			if i < 0 {
				claims = append(claims, claim{node: n, votes: 1, from: a})
				continue
			}
			claims[i].votes++
			if n.ConfigEpoch > claims[i].node.ConfigEpoch {
				claims[i].node, claims[i].from = n, a
			}
		}
		if len(claims) == 0 {
			return claim{}, false
		}
		slices.SortFunc(claims, func(x, y claim) int {
			switch {
			case x.node.ConfigEpoch != y.node.ConfigEpoch:
				return cmpDesc(x.node.ConfigEpoch, y.node.ConfigEpoch)
			case x.votes != y.votes:
				return y.votes - x.votes
			}
			return strings.Compare(x.node.ID, y.node.ID)
		})
		if !second && len(claims) > 1 {
			disputed[shortID(claims[0].node.ID)+" over "+shortID(claims[1].node.ID)]++
		}
		return claims[0], true
	}
	for s := range winners {
		if c, ok := best(first, s, false); ok {
			winners[s] = c
		} else if c, ok := best(second, s, true); ok {
			winners[s] = c
		}
	}

	// The nodes: owners with their info from the winning answer, then
	// every other node the first tier (then the second) lists.
	nodes := make(map[string]ClusterNode)
	firstSlot := make(map[string]int)
	slotsWon := make(map[*clusterAnswer]int)
	for s, c := range winners {
		if c.from == nil {
			continue
		}
		slotsWon[c.from]++
		if _, ok := nodes[c.node.ID]; !ok {
			n := c.node.ClusterNode
			n.MasterID = ""
			nodes[n.ID] = n
			firstSlot[n.ID] = s
		}
	}
	for _, tier := range [][]*clusterAnswer{first, second} {
		for _, a := range tier {
			for _, id := range sortedIDs(a.nodes) {
				n := a.nodes[id]
				if _, ok := nodes[id]; ok || n.Addr == "" {
					continue
				}
				if n.Master {
					n.MasterID = ""
				}
				nodes[id] = n.ClusterNode
			}
		}
	}
	var owners, masters, replicas []ClusterNode
	for _, n := range nodes {
		_, owns := firstSlot[n.ID]
		switch {
		case owns:
			owners = append(owners, n)
		case n.Master:
			masters = append(masters, n)
		default:
			replicas = append(replicas, n)
		}
	}
	slices.SortFunc(owners, func(x, y ClusterNode) int { return firstSlot[x.ID] - firstSlot[y.ID] })
	slices.SortFunc(masters, func(x, y ClusterNode) int { return strings.Compare(x.ID, y.ID) })
	m := emptyClusterMap()
	m.Nodes = append(owners, masters...)
	place := make(map[string]int, len(nodes))
	for i, n := range m.Nodes {
		place[n.ID] = i
	}
	rank := func(n ClusterNode) int {
		if p, ok := place[n.MasterID]; ok {
			return p
		}
		return len(place)
	}
	slices.SortFunc(replicas, func(x, y ClusterNode) int {
		if rx, ry := rank(x), rank(y); rx != ry {
			return rx - ry
		}
		return strings.Compare(x.ID, y.ID)
	})
	m.Nodes = append(m.Nodes, replicas...)
	for s, c := range winners {
		if c.from != nil {
			m.Slots[s] = int32(place[c.node.ID])
		}
	}
	m.Epoch = top
	if prev != nil && first[0] == prev {
		m.Epoch = prev.currentEpoch
	}
	var from *clusterAnswer
	for _, a := range first {
		if from == nil || slotsWon[a] > slotsWon[from] {
			from = a
		}
	}
	m.From = from.from
	// Who disagrees: pairs of first-tier claimants, and answers that lost
	// slots they claimed.
	var who, detail []string
	for k, n := range disputed {
		who = append(who, k)
		detail = append(detail, fmt.Sprintf("%s: %d slots", k, n))
	}
	for i := range answers {
		a := &answers[i]
		lost := 0
		for s := range a.owner {
			if n, ok := a.claimant(s); ok && n.ID != winners[s].node.ID {
				lost++
			}
		}
		if lost > 0 {
			who = append(who, a.from+" overruled")
			detail = append(detail, fmt.Sprintf("%s (current epoch %d) overruled on %d slots", a.from, a.currentEpoch, lost))
		}
	}
	sort.Strings(who)
	sort.Strings(detail)
	return clusterMerge{view: m, dispute: strings.Join(who, "; "), detail: strings.Join(detail, "; ")}
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func sortedIDs(nodes map[string]clusterNodeInfo) []string {
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Parsers of the cluster's replies. They come from the network, so every
// shape is checked, and nothing is sized from a number in them: readRESP
// bounds the reply itself.

// clusterInfo is what the merge needs of CLUSTER INFO.
type clusterInfo struct {
	currentEpoch uint64
	state        string // cluster_state: ok or fail
}

func parseClusterInfo(v respValue) (clusterInfo, error) {
	if v.kind == '-' {
		return clusterInfo{}, fmt.Errorf("CLUSTER INFO: %s", v.str)
	}
	if !isRESPText(v) {
		return clusterInfo{}, fmt.Errorf("CLUSTER INFO: reply %s, want text", v.describe())
	}
	var info clusterInfo
	seen := false
	for _, line := range strings.Split(v.str, "\n") {
		k, val, ok := strings.Cut(strings.TrimSuffix(line, "\r"), ":")
		if !ok {
			continue
		}
		switch k {
		case "cluster_state":
			info.state = val
		case "cluster_current_epoch":
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return clusterInfo{}, fmt.Errorf("CLUSTER INFO: cluster_current_epoch %q: not a number", val)
			}
			info.currentEpoch, seen = n, true
		}
	}
	if !seen {
		return clusterInfo{}, errors.New("CLUSTER INFO: no cluster_current_epoch")
	}
	return info, nil
}

// parseClusterNodes reads CLUSTER NODES: one line per node, "<id>
// <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv>
// <config-epoch> <link-state> <slot>...". Nodes in handshake or without an
// address are left out; the slots are read from CLUSTER SHARDS instead.
func parseClusterNodes(v respValue) (map[string]clusterNodeInfo, error) {
	if v.kind == '-' {
		return nil, fmt.Errorf("CLUSTER NODES: %s", v.str)
	}
	if !isRESPText(v) {
		return nil, fmt.Errorf("CLUSTER NODES: reply %s, want text", v.describe())
	}
	nodes := make(map[string]clusterNodeInfo)
	for i, line := range strings.Split(v.str, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES: line %d: %d fields, want at least 8", i+1, len(f))
		}
		id, addrField, flags, master, epochField := f[0], f[1], strings.Split(f[2], ","), f[3], f[6]
		if !validNodeID(id) {
			return nil, fmt.Errorf("CLUSTER NODES: line %d: node ID %q", i+1, id)
		}
		if slices.Contains(flags, "handshake") || slices.Contains(flags, "noaddr") {
			continue
		}
		epoch, err := strconv.ParseUint(epochField, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES: line %d: config epoch %q: not a number", i+1, epochField)
		}
		hostport, hostname, _ := strings.Cut(addrField, ",")
		hostport, _, _ = strings.Cut(hostport, "@")
		if err := checkHostPort(hostport); err != nil {
			return nil, fmt.Errorf("CLUSTER NODES: line %d: address %q: %w", i+1, hostport, err)
		}
		hostname, _, _ = strings.Cut(hostname, ",") // later Redis adds more fields after a comma
		n := clusterNodeInfo{ClusterNode: ClusterNode{
			ID:          id,
			Announced:   hostport,
			Hostname:    hostname,
			Master:      slices.Contains(flags, "master"),
			ConfigEpoch: epoch,
		}, failed: slices.Contains(flags, "fail")}
		if n.failed {
			n.Health = "fail"
		}
		if !n.Master {
			if !validNodeID(master) {
				return nil, fmt.Errorf("CLUSTER NODES: line %d: replica of %q", i+1, master)
			}
			n.MasterID = master
		}
		nodes[id] = n
	}
	return nodes, nil
}

func validNodeID(id string) bool {
	if len(id) != 40 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// clusterLayout is what CLUSTER SHARDS or CLUSTER SLOTS say: who serves
// which slots, and how each node is announced.
type clusterLayout struct {
	ranges []slotRange
	nodes  map[string]layoutNode
}

type slotRange struct {
	first, last int
	id          string // the master serving them
}

type layoutNode struct {
	announced string // endpoint:port, or ip:port when the endpoint is unknown
	hostname  string
	health    string
}

// parseClusterShards reads CLUSTER SHARDS: an array of shards, each a map
// (a flat array in RESP2) with "slots" (pairs of first and last slot) and
// "nodes" (maps with id, port, tls-port, ip, endpoint, hostname, role,
// health...). A node's address is at its tls-port for a watcher that
// speaks TLS (overTLS), at its port otherwise, at the one it has when it
// has one only: a node with tls-cluster tells both, whatever the
// connection it is asked on.
func parseClusterShards(v respValue, overTLS bool) (clusterLayout, error) {
	if v.kind == '-' {
		return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: %s", v.str)
	}
	if v.kind != '*' {
		return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: reply %s, want an array", v.describe())
	}
	l := clusterLayout{nodes: make(map[string]layoutNode)}
	for i, shard := range v.arr {
		fields, err := respMap(shard)
		if err != nil {
			return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: %w", i, err)
		}
		slots, nodes := fields["slots"], fields["nodes"]
		if slots.kind != '*' || len(slots.arr)%2 != 0 || nodes.kind != '*' {
			return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: want slots in pairs and nodes", i)
		}
		master := ""
		for j, node := range nodes.arr {
			nf, err := respMap(node)
			if err != nil {
				return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: nodes[%d]: %w", i, j, err)
			}
			id := nf["id"].str
			if !validNodeID(id) {
				return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: nodes[%d]: node ID %q", i, j, id)
			}
			host := nf["endpoint"].str
			if host == "" || host == "?" {
				host = nf["ip"].str
			}
			want, other := "port", "tls-port"
			if overTLS {
				want, other = other, want
			}
			port, ok := nf[want]
			if !ok {
				port = nf[other]
			}
			addr, err := roleAddr(respValue{kind: '$', str: host}, port)
			if err != nil {
				return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: nodes[%d]: %w", i, j, err)
			}
			l.nodes[id] = layoutNode{announced: addr, hostname: nf["hostname"].str, health: nf["health"].str}
			if nf["role"].str == "master" {
				if master != "" {
					return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: two masters", i)
				}
				master = id
			}
		}
		if len(slots.arr) > 0 && master == "" {
			return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: slots and no master", i)
		}
		for j := 0; j < len(slots.arr); j += 2 {
			r, err := parseSlotRange(slots.arr[j], slots.arr[j+1], master)
			if err != nil {
				return clusterLayout{}, fmt.Errorf("CLUSTER SHARDS: shards[%d]: %w", i, err)
			}
			l.ranges = append(l.ranges, r)
		}
	}
	return l, nil
}

// parseClusterSlots reads CLUSTER SLOTS: an array of [first, last, master,
// replica...], each node [ip, port, id, (Redis 7) metadata map].
func parseClusterSlots(v respValue) (clusterLayout, error) {
	if v.kind == '-' {
		return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: %s", v.str)
	}
	if v.kind != '*' {
		return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: reply %s, want an array", v.describe())
	}
	l := clusterLayout{nodes: make(map[string]layoutNode)}
	for i, e := range v.arr {
		if e.kind != '*' || len(e.arr) < 3 {
			return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: [%d]: %s, want [first, last, master, ...]", i, e.describe())
		}
		var master string
		for j, node := range e.arr[2:] {
			if node.kind != '*' || len(node.arr) < 3 || !isRESPText(node.arr[0]) || !isRESPText(node.arr[2]) {
				return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: [%d]: node %d: %s, want [ip, port, id, ...]", i, j, node.describe())
			}
			id := node.arr[2].str
			if !validNodeID(id) {
				return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: [%d]: node %d: node ID %q", i, j, id)
			}
			host := node.arr[0].str
			if host == "" || host == "?" {
				continue // Redis 7 says "?" for an unknown endpoint; NODES has the IP
			}
			addr, err := roleAddr(node.arr[0], node.arr[1])
			if err != nil {
				return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: [%d]: node %d: %w", i, j, err)
			}
			ln := layoutNode{announced: addr}
			if len(node.arr) > 3 {
				if meta, err := respMap(node.arr[3]); err == nil {
					ln.hostname = meta["hostname"].str
				}
			}
			l.nodes[id] = ln
			if j == 0 {
				master = id
			}
		}
		if master == "" {
			master = e.arr[2].arr[2].str
		}
		r, err := parseSlotRange(e.arr[0], e.arr[1], master)
		if err != nil {
			return clusterLayout{}, fmt.Errorf("CLUSTER SLOTS: [%d]: %w", i, err)
		}
		l.ranges = append(l.ranges, r)
	}
	return l, nil
}

func parseSlotRange(first, last respValue, id string) (slotRange, error) {
	a, err1 := respInt(first)
	b, err2 := respInt(last)
	if err1 != nil || err2 != nil || a < 0 || b >= hashring.SlotCount || a > b {
		return slotRange{}, fmt.Errorf("slots %q-%q: not a range of slots", first.str, last.str)
	}
	return slotRange{first: int(a), last: int(b), id: id}, nil
}

// respMap reads a map sent as a flat array of names and values (RESP2),
// keeping the values as they are.
func respMap(v respValue) (map[string]respValue, error) {
	if v.kind != '*' || len(v.arr)%2 != 0 {
		return nil, fmt.Errorf("reply %s, want an array of names and values", v.describe())
	}
	out := make(map[string]respValue, len(v.arr)/2)
	for i := 0; i < len(v.arr); i += 2 {
		if !isRESPText(v.arr[i]) {
			return nil, fmt.Errorf("name %s, want a string", v.arr[i].describe())
		}
		out[v.arr[i].str] = v.arr[i+1]
	}
	return out, nil
}
