package discovery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RoleGroupOptions.
const (
	DefaultRolePoll    = 500 * time.Millisecond
	DefaultRoleTimeout = time.Second
)

// errNotAsked is the Err of a member not asked ROLE yet.
const errNotAsked = "not asked yet"

// roleClientName is what the watcher's connections call themselves (CLIENT
// SETNAME), so an operator's CLIENT LIST on a member shows them.
const roleClientName = "shardproxy-role-watcher"

// RoleGroupOptions configures a RoleGroupWatcher.
type RoleGroupOptions struct {
	// Groups maps each group's name to its members' host:port, in a stable
	// order. May be empty.
	Groups map[string][]string
	// Username and Password authenticate to the members (the pool's data
	// password, AUTH [user] pass); "" for none. A Username needs a
	// Password.
	Username, Password string
	Poll               time.Duration // how often every member is asked ROLE; 0 means DefaultRolePoll
	Timeout            time.Duration // dial + AUTH + one ROLE, per member; 0 means DefaultRoleTimeout
	// MapAddr maps the master address a replica reports in ROLE (master
	// host as Redis reports it, an IP or a hostname, and port, as
	// host:port) to a member's host:port; ok is false when it is no
	// member's. nil: compare with the members as written, IPs by value (so
	// "::1" and "0:0::1" are the same) and hostnames ignoring case. It is
	// called for every answer and must not block.
	MapAddr func(addr string) (string, bool)
	Logger  *slog.Logger // nil discards logs
	// TLS, when set, makes every connection to a member speak TLS, with
	// the config it returns for the member's group and host:port (the
	// pool's server_tls_* settings); nil dials plain TCP.
	TLS func(group, addr string) (*tls.Config, error)
	// OnChange gets the whole view (every group) whenever anything but
	// replication offsets changed; calls come from one goroutine, one at a
	// time, never concurrently. Required.
	OnChange func(map[string]RoleGroup)
}

// RoleGroup is the watcher's view of one group.
type RoleGroup struct {
	Master    string       // the confirmed master's host:port; "" when none is
	Replicas  []string     // members that are replicas of Master with their link "connected", sorted
	Reason    string       // when Master is "": why, in words naming the members
	Members   []RoleMember // every member, in the order given
	Reachable int          // members that answered ROLE at their last poll
}

// RoleMember is what one member of a group said at its last poll.
type RoleMember struct {
	Addr string
	Role string // "master", "slave", "sentinel", or "" when it did not answer
	// MasterAddr is, for a replica, the member it reports as its master,
	// mapped through MapAddr; "" when that is no member's, and then
	// UnknownMaster holds what it reported.
	MasterAddr    string
	UnknownMaster string
	Link          string // for a replica: ROLE's link state ("connect", "connecting", "sync", "connected", ...); "" otherwise
	Offset        int64  // the replication offset ROLE reports
	Err           string // why it did not answer; "" when it did
}

func (g RoleGroup) clone() RoleGroup {
	g.Replicas = slices.Clone(g.Replicas)
	g.Members = slices.Clone(g.Members)
	return g
}

// routedEqual reports whether g and o differ in nothing OnChange is called
// for: everything but the replication offsets.
func (g RoleGroup) routedEqual(o RoleGroup) bool {
	if g.Master != o.Master || !slices.Equal(g.Replicas, o.Replicas) || g.Reason != o.Reason ||
		g.Reachable != o.Reachable || len(g.Members) != len(o.Members) {
		return false
	}
	for i, m := range g.Members {
		n := o.Members[i]
		m.Offset, n.Offset = 0, 0
		if m != n {
			return false
		}
	}
	return true
}

// RoleGroupWatcher decides the master of each group of Redis servers that
// no Sentinel runs, by asking ROLE of every member. Pod labels and the
// order of the members are never trusted, and when the answers do not
// agree the group has no master: writes fail rather than go to a server
// that may lose them.
//
// Each round asks every member of a group at once and decides from that
// one round of answers. Member M is the group's master if and only if all
// of:
//
//  1. ROLE on M says master;
//  2. every member that answered as a replica reports M as its master,
//     after MapAddr (a replica of a non-member, or of another member, means
//     the group is mid-change);
//  3. at least one replica reports M with its link "connected", or the
//     group has exactly one member, or M was the confirmed master at the
//     group's previous decision, the watcher's connection to M has stayed
//     open since, and no other member says master;
//  4. no other member meets 1 to 3 (none can: the replicas name one
//     master, and only one was the master before).
//
// So another member saying master does not unseat one its replicas follow
// (an old master that comes back empty, claiming master, has none), but
// it does unseat one that only kept its place (a replica promoted while
// the old master still takes writes would lose them when the old one is
// pointed at it: they are refused instead), and two masters each with
// replicas of their own (a split brain) leave the group without one.
// Clause 3 keeps a master whose replicas are briefly away serving, but a
// master that restarted (its connection broke) is not confirmed again
// until a replica is attached to it: an old master that comes back
// claiming master never gets writes on its word alone. A member that does
// not answer (its connection failed, or ROLE got an error reply such as
// -NOAUTH or -NOPERM) is listed with Err and blocks no decision by itself,
// except through clause 3. A member that answers as a Sentinel blocks
// nothing either. Otherwise Master is "" and Reason says which clause
// failed, naming the members.
type RoleGroupWatcher struct {
	opts    RoleGroupOptions
	logger  *slog.Logger
	changed chan struct{} // one pending OnChange
	connSeq atomic.Uint64 // numbers the connections to members, from 1
	running atomic.Bool

	mu      sync.Mutex // guards groups, and runCtx, stopped and runWG's Add
	groups  map[string]*roleGroupState
	runCtx  context.Context // Run's context while it runs
	stopped bool            // Run is returning: start no group loop
	runWG   sync.WaitGroup  // the group loops
}

// roleGroupState is one group's membership, last answers and decision.
type roleGroupState struct {
	members []string
	answers map[string]roleAnswer // by member address, from the last round that asked it
	view    RoleGroup
	decided bool // a decision was made (the view is not just the initial one)
	// confirmedConn is the connection Master answered on when it was
	// confirmed last (clause 4); 0 without a Master.
	confirmedConn uint64
	// lastMaster is the last confirmed master and lastMasterConn the
	// connection it answered on, kept when the group loses it, to say
	// "since it restarted".
	lastMaster     string
	lastMasterConn uint64
	loop           *roleGroupLoop // nil when Run is not running it
}

// roleAnswer is one member's answer as decide sees it.
type roleAnswer struct {
	RoleMember
	conn uint64 // the connection it answered on; 0 when it did not answer
}

// NewRoleGroupWatcher checks opts and returns a watcher that does nothing
// until Run.
func NewRoleGroupWatcher(opts RoleGroupOptions) (*RoleGroupWatcher, error) {
	if opts.OnChange == nil {
		return nil, errors.New("discovery: role group watcher: no OnChange")
	}
	if opts.Username != "" && opts.Password == "" {
		return nil, errors.New("discovery: role group watcher: a Username needs a Password")
	}
	if opts.Poll < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("discovery: role group watcher: Poll %v and Timeout %v must not be negative", opts.Poll, opts.Timeout)
	}
	if err := CheckRoleGroups(opts.Groups); err != nil {
		return nil, err
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultRolePoll
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultRoleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &RoleGroupWatcher{
		opts:    opts,
		logger:  opts.Logger.With("component", "role-groups"),
		changed: make(chan struct{}, 1),
		groups:  make(map[string]*roleGroupState),
	}
	for name, members := range opts.Groups {
		w.groups[name] = newRoleGroupState(members)
	}
	w.opts.Groups = nil // SetGroups changes them; w.groups is what is current
	return w, nil
}

// CheckRoleGroups reports the first group whose name is empty or whose
// members are not all distinct host:port addresses. SetGroups cannot fail:
// it leaves a member that is not host:port unasked, with Err saying so,
// and takes a member listed twice once.
func CheckRoleGroups(groups map[string][]string) error {
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		if name == "" {
			return errors.New("discovery: role group watcher: a group with no name")
		}
		seen := make(map[string]bool)
		for i, addr := range groups[name] {
			if err := checkHostPort(addr); err != nil {
				return fmt.Errorf("discovery: role group watcher: group %q: members[%d]: %q: %w", name, i, addr, err)
			}
			if seen[addr] {
				return fmt.Errorf("discovery: role group watcher: group %q: members[%d]: %q: listed twice", name, i, addr)
			}
			seen[addr] = true
		}
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 || host == "" {
		return errors.New("not host:port")
	}
	return nil
}

func newRoleGroupState(members []string) *roleGroupState {
	var uniq []string
	for _, m := range members {
		if !slices.Contains(uniq, m) {
			uniq = append(uniq, m)
		}
	}
	s := &roleGroupState{members: uniq, answers: make(map[string]roleAnswer)}
	s.view = RoleGroup{Reason: errNotAsked, Members: s.currentMembers()}
	return s
}

// currentMembers returns the last answers of the current members, in
// their order; a member not asked yet has Err saying so.
func (s *roleGroupState) currentMembers() []RoleMember {
	out := make([]RoleMember, len(s.members))
	for i, addr := range s.members {
		if a, ok := s.answers[addr]; ok {
			out[i] = a.RoleMember
		} else {
			out[i] = RoleMember{Addr: addr, Err: errNotAsked}
		}
	}
	return out
}

// Run asks ROLE of every member of every group each Poll until ctx ends,
// then closes every connection and returns ctx's error once every
// goroutine it started has ended. It may be called once.
func (w *RoleGroupWatcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("discovery: role group watcher: Run called twice")
	}
	var notifyWG sync.WaitGroup
	notifyWG.Add(1)
	go w.notifyLoop(ctx, &notifyWG)
	w.mu.Lock()
	w.runCtx = ctx
	for _, name := range slices.Sorted(maps.Keys(w.groups)) {
		w.startLoop(name, w.groups[name])
	}
	w.mu.Unlock()
	<-ctx.Done()
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.runWG.Wait()
	notifyWG.Wait()
	return ctx.Err()
}

// startLoop starts the loop that polls a group. w.mu is held.
func (w *RoleGroupWatcher) startLoop(name string, s *roleGroupState) {
	if w.runCtx == nil || w.stopped {
		return
	}
	ctx, cancel := context.WithCancel(w.runCtx)
	l := &roleGroupLoop{
		w:       w,
		name:    name,
		logger:  w.logger.With("group", name),
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		members: make(map[string]*roleMemberConn),
	}
	s.loop = l
	w.runWG.Add(1)
	go l.run(ctx, &w.runWG)
}

// SetGroups replaces the groups and their members, as pods come and go.
// It takes effect at once: a group that is gone leaves the view, a group
// whose members changed is decided again from the answers of the members
// it kept, and new or changed groups are polled now. A member kept keeps
// its connection. It is safe to call before and while Run.
func (w *RoleGroupWatcher) SetGroups(groups map[string][]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := false
	for name, s := range w.groups {
		if _, ok := groups[name]; !ok {
			if s.loop != nil {
				s.loop.cancel()
			}
			delete(w.groups, name)
			w.logger.Info("role group removed", "group", name)
			changed = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		fresh := newRoleGroupState(groups[name])
		s, ok := w.groups[name]
		if !ok {
			w.groups[name] = fresh
			w.startLoop(name, fresh)
			changed = true
			continue
		}
		if slices.Equal(s.members, fresh.members) {
			continue
		}
		s.members = fresh.members
		for addr := range s.answers {
			if !slices.Contains(s.members, addr) {
				delete(s.answers, addr)
			}
		}
		if s.decided {
			w.decideLocked(name, s)
		} else {
			s.view.Members = s.currentMembers()
		}
		if s.loop != nil {
			s.loop.poke()
		}
		changed = true
	}
	if changed {
		w.signalChange()
	}
}

// Poke polls every member of group now, as the proxy does when a master
// answers -READONLY or stops answering. Pokes that come while a round is
// under way are folded into one more round; a member whose connection
// failed is dialed again only at its next retry. An unknown group is
// ignored.
func (w *RoleGroupWatcher) Poke(group string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s, ok := w.groups[group]; ok && s.loop != nil {
		s.loop.poke()
	}
}

// Snapshot returns the current view of every group, a copy.
func (w *RoleGroupWatcher) Snapshot() map[string]RoleGroup {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]RoleGroup, len(w.groups))
	for name, s := range w.groups {
		out[name] = s.view.clone()
	}
	return out
}

func (w *RoleGroupWatcher) signalChange() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// notifyLoop calls OnChange, one call at a time, with the newest view.
// Changes that come during a call are folded into one more call.
func (w *RoleGroupWatcher) notifyLoop(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.changed:
			w.opts.OnChange(w.Snapshot())
		}
	}
}

// record takes one round of a group's answers and decides again. Answers
// of members that left the group meanwhile are dropped.
func (w *RoleGroupWatcher) record(name string, loop *roleGroupLoop, answers []roleAnswer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.groups[name]
	if !ok || s.loop != loop {
		return
	}
	for _, a := range answers {
		if slices.Contains(s.members, a.Addr) {
			s.answers[a.Addr] = a
		}
	}
	w.decideLocked(name, s)
}

// decideLocked makes a group's decision from its members' last answers,
// logs a change of master and signals OnChange when the view changed.
// w.mu is held.
func (w *RoleGroupWatcher) decideLocked(name string, s *roleGroupState) {
	answers := make([]roleAnswer, len(s.members))
	for i, addr := range s.members {
		if a, ok := s.answers[addr]; ok {
			// The answer was mapped when the members were others: a master
			// that left the group is no member now.
			if a.MasterAddr != "" && !slices.Contains(s.members, a.MasterAddr) {
				a.UnknownMaster, a.MasterAddr = a.MasterAddr, ""
			}
			answers[i] = a
		} else {
			answers[i] = roleAnswer{RoleMember: RoleMember{Addr: addr, Err: errNotAsked}}
		}
	}
	old, wasDecided := s.view, s.decided
	d := decideRoleGroup(answers, roleDecisionState{
		confirmed:      old.Master,
		confirmedConn:  s.confirmedConn,
		lastMaster:     s.lastMaster,
		lastMasterConn: s.lastMasterConn,
	})
	s.view, s.decided = d.group, true
	s.confirmedConn = d.conn
	if d.group.Master != "" {
		s.lastMaster, s.lastMasterConn = d.group.Master, d.conn
	}
	logger := w.logger.With("group", name)
	switch {
	case d.group.Master != "" && d.group.Master != old.Master:
		logger.Info("role group master confirmed", "master", d.group.Master, "previous", old.Master,
			"replicas", d.group.Replicas)
	case d.group.Master == "" && (old.Master != "" || !wasDecided):
		logger.Warn("role group has no master", "reason", d.group.Reason, "previous", old.Master)
	case d.group.Master == "" && d.group.Reason != old.Reason:
		logger.Debug("role group still has no master", "reason", d.group.Reason)
	}
	if !wasDecided || !d.group.routedEqual(old) {
		w.signalChange()
	}
}

// roleDecisionState is what a group's decision carries from one round to
// the next.
type roleDecisionState struct {
	confirmed      string // the master at the previous decision; "" for none
	confirmedConn  uint64 // the connection it answered on then
	lastMaster     string // the last master ever confirmed
	lastMasterConn uint64 // the connection it answered on then
}

// roleDecision is a group's view and, when it has a Master, the connection
// Master answered on.
type roleDecision struct {
	group RoleGroup
	conn  uint64
}

// decideRoleGroup applies the rule in RoleGroupWatcher's doc to one round
// of answers, given in the members' order.
func decideRoleGroup(answers []roleAnswer, prev roleDecisionState) roleDecision {
	g := RoleGroup{Members: make([]RoleMember, len(answers))}
	var masters []int
	for i, a := range answers {
		g.Members[i] = a.RoleMember
		if a.Err == "" && a.Role != "" {
			g.Reachable++
		}
		if a.Err == "" && a.Role == "master" {
			masters = append(masters, i)
		}
	}
	fail := func(reason string) roleDecision {
		g.Reason = reason
		return roleDecision{group: g}
	}
	switch {
	case len(answers) == 0:
		return fail("the group has no members")
	case len(masters) == 0: // clause 1
		return fail(fmt.Sprintf("no member says master (%s)", describeMembers(answers)))
	}
	// At most one master can qualify: every replica that answered names
	// it, so another master has none of them, and only one was the
	// master before.
	var reasons []string
	for _, i := range masters {
		replicas, reason := qualifies(answers, i, len(masters) > 1, prev)
		if reason != "" {
			reasons = append(reasons, reason)
			continue
		}
		m := answers[i]
		g.Master, g.Replicas = m.Addr, replicas
		return roleDecision{group: g, conn: m.conn}
	}
	if len(masters) == 1 {
		return fail(reasons[0])
	}
	addrs := make([]string, len(masters))
	for i, m := range masters {
		addrs[i] = answers[m].Addr
	}
	verb := "both say"
	if len(addrs) > 2 {
		verb = "all say"
	}
	return fail(fmt.Sprintf("%s and %s %s master, and none is the group's (%s)",
		strings.Join(addrs[:len(addrs)-1], ", "), addrs[len(addrs)-1], verb, strings.Join(reasons, "; ")))
}

// qualifies checks clauses 2 and 3 of the rule for the member at index mi,
// which says master (rivals: so does another member): its attached
// replicas, sorted, or why it is not the group's master.
func qualifies(answers []roleAnswer, mi int, rivals bool, prev roleDecisionState) (replicas []string, reason string) {
	m := answers[mi]
	var waiting []string
	for i, a := range answers {
		if i == mi {
			continue
		}
		if a.Err != "" || a.Role != "slave" {
			if a.Err != "" || a.Role == "" {
				waiting = append(waiting, a.Addr+": "+describeAnswer(a))
			}
			continue
		}
		switch {
		case a.MasterAddr == "": // clause 3
			return nil, fmt.Sprintf("%s is a replica of %s, which is no member", a.Addr, a.UnknownMaster)
		case a.MasterAddr != m.Addr:
			return nil, fmt.Sprintf("%s is a replica of %s, not of %s", a.Addr, a.MasterAddr, m.Addr)
		case a.Link == "connected":
			replicas = append(replicas, a.Addr)
		default:
			waiting = append(waiting, a.Addr+": "+describeAnswer(a))
		}
	}
	kept := prev.confirmed == m.Addr && prev.confirmedConn != 0 && prev.confirmedConn == m.conn && !rivals
	if len(replicas) == 0 && len(answers) > 1 && !kept { // clause 3
		since := ""
		if prev.lastMaster == m.Addr && prev.lastMasterConn != m.conn {
			since = " since it restarted"
		}
		return nil, fmt.Sprintf("no replica is attached to %s%s (%s)", m.Addr, since, strings.Join(waiting, "; "))
	}
	slices.Sort(replicas)
	return replicas, ""
}

// describeMembers says in a few words what each member answered, for a
// Reason.
func describeMembers(answers []roleAnswer) string {
	parts := make([]string, len(answers))
	for i, a := range answers {
		parts[i] = a.Addr + ": " + describeAnswer(a)
	}
	return strings.Join(parts, "; ")
}

func describeAnswer(a roleAnswer) string {
	switch {
	case a.Err != "":
		return a.Err
	case a.Role == "slave" && a.MasterAddr != "":
		return fmt.Sprintf("replica of %s, link %s", a.MasterAddr, a.Link)
	case a.Role == "slave":
		return fmt.Sprintf("replica of %s (no member), link %s", a.UnknownMaster, a.Link)
	case a.Role == "sentinel":
		return "a Sentinel"
	}
	return a.Role
}

// roleGroupLoop polls one group's members while Run runs and the group
// exists.
type roleGroupLoop struct {
	w      *RoleGroupWatcher
	name   string
	logger *slog.Logger
	cancel context.CancelFunc
	wake   chan struct{} // a poke is pending

	// Used by run only.
	members map[string]*roleMemberConn
}

func (l *roleGroupLoop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run polls the group each Poll, and at once when poked, one round at a
// time. While a member's connection is failing, the next round comes no
// later than its retry.
func (l *roleGroupLoop) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		for _, m := range l.members {
			m.closeConn()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-l.wake:
		}
		next := l.round(ctx)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(next)
	}
}

// round asks every current member ROLE at once, records the answers, and
// returns how long to wait for the next round.
func (l *roleGroupLoop) round(ctx context.Context) time.Duration {
	l.w.mu.Lock()
	var members []string
	if s, ok := l.w.groups[l.name]; ok {
		members = slices.Clone(s.members)
	}
	l.w.mu.Unlock()
	for addr, m := range l.members {
		if !slices.Contains(members, addr) {
			m.closeConn()
			delete(l.members, addr)
		}
	}
	now := time.Now()
	deadline := now.Add(l.w.opts.Timeout)
	var wg sync.WaitGroup
	for _, addr := range members {
		m := l.members[addr]
		if m == nil {
			m = &roleMemberConn{w: l.w, group: l.name, addr: addr, logger: l.logger.With("member", addr)}
			l.members[addr] = m
		}
		if m.conn == nil && now.Before(m.retryAt) {
			continue // keeps its last answer, the error
		}
		wg.Add(1)
		go m.poll(ctx, deadline, &wg)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0
	}
	next := l.w.opts.Poll
	answers := make([]roleAnswer, len(members))
	for i, addr := range members {
		m := l.members[addr]
		answers[i] = l.w.mapAnswer(m.answer, members)
		if !m.retryAt.IsZero() {
			next = min(next, max(time.Until(m.retryAt), 0))
		}
	}
	l.w.record(l.name, l, answers)
	return next
}

// mapAnswer fills in a replica's MasterAddr: the member its reported
// master is, through MapAddr when set.
func (w *RoleGroupWatcher) mapAnswer(a roleAnswer, members []string) roleAnswer {
	if a.Role != "slave" || a.UnknownMaster == "" {
		return a
	}
	reported := a.UnknownMaster
	if w.opts.MapAddr != nil {
		mapped, ok := w.opts.MapAddr(reported)
		if !ok {
			return a
		}
		reported = mapped
	}
	for _, m := range members {
		if sameHostPort(reported, m) {
			a.MasterAddr, a.UnknownMaster = m, ""
			return a
		}
	}
	return a
}

// sameHostPort reports whether two host:port addresses are the same: IPs
// compared by value, hostnames ignoring case.
func sameHostPort(a, b string) bool {
	ah, ap, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	bh, bp, err := net.SplitHostPort(b)
	if err != nil || ap != bp {
		return false
	}
	aip, bip := net.ParseIP(ah), net.ParseIP(bh)
	if aip != nil || bip != nil {
		return aip.Equal(bip)
	}
	return strings.EqualFold(ah, bh)
}

// roleMemberConn is the watcher's connection to one member of a group.
// Only its group's loop uses it, one poll at a time.
type roleMemberConn struct {
	w      *RoleGroupWatcher
	group  string // the group's name, for its TLS server name
	addr   string
	logger *slog.Logger

	conn   net.Conn
	reader *bufio.Reader
	connID uint64
	answer roleAnswer // the last one
	retry
}

// poll asks the member ROLE, dialing first if there is no connection, and
// keeps the answer. On any error the connection is closed, so that clause
// 4 of the rule sees the break, and the member is retried after a backoff
// that doubles from 100 ms up to 5 s (or Poll, when that is longer).
func (m *roleMemberConn) poll(ctx context.Context, deadline time.Time, wg *sync.WaitGroup) {
	defer wg.Done()
	member, err := m.ask(ctx, deadline)
	if err != nil {
		m.closeConn()
		m.answer = roleAnswer{RoleMember: RoleMember{Addr: m.addr, Err: err.Error()}}
		if ctx.Err() == nil {
			m.failed(m.logger, "role group member", err, m.w.opts.Poll)
		}
		return
	}
	m.succeeded(m.logger, "role group member")
	m.answer = roleAnswer{RoleMember: member, conn: m.connID}
}

// retry is a polled node's backoff after failures, and whether its
// failure was logged.
type retry struct {
	backoff time.Duration
	retryAt time.Time // after a failure, when to dial again; zero otherwise
	failing bool      // the last poll failed and that was logged
}

// failed records a failed poll of what (the node's kind, for the log):
// the next dial waits a backoff that doubles from 100 ms up to 5 s (or
// poll); the first failure in a row is logged at Warn.
func (r *retry) failed(logger *slog.Logger, what string, err error, poll time.Duration) {
	r.backoff = nextBackoff(r.backoff, poll)
	r.retryAt = time.Now().Add(r.backoff)
	if !r.failing {
		logger.Warn(what+" unreachable", "err", err)
		r.failing = true
	} else {
		logger.Debug(what+" still unreachable", "err", err)
	}
}

// succeeded records a poll that answered, logging the recovery.
func (r *retry) succeeded(logger *slog.Logger, what string) {
	if r.failing {
		logger.Info(what + " reachable")
		r.failing = false
	}
	r.backoff, r.retryAt = 0, time.Time{}
}

func (m *roleMemberConn) ask(ctx context.Context, deadline time.Time) (RoleMember, error) {
	if err := checkHostPort(m.addr); err != nil {
		return RoleMember{}, fmt.Errorf("%q: %w", m.addr, err)
	}
	if m.conn == nil {
		h := redisHandshake{
			username:   m.w.opts.Username,
			password:   m.w.opts.Password,
			clientName: roleClientName,
			server:     "member",
			setting:    "redis_auth",
		}
		if m.w.opts.TLS != nil {
			h.tls = func(addr string) (*tls.Config, error) { return m.w.opts.TLS(m.group, addr) }
		}
		nc, br, err := dialRedis(ctx, m.addr, deadline, h)
		if err != nil {
			return RoleMember{}, err
		}
		m.conn, m.reader, m.connID = nc, br, m.w.connSeq.Add(1)
	}
	nc := m.conn // the AfterFunc may run after closeConn cleared m.conn
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if err := nc.SetDeadline(deadline); err != nil {
		return RoleMember{}, err
	}
	if _, err := nc.Write(appendRESPCommand(nil, "ROLE")); err != nil {
		return RoleMember{}, fmt.Errorf("ROLE: write: %w", err)
	}
	rep, err := readRESP(m.reader)
	if err != nil {
		return RoleMember{}, fmt.Errorf("ROLE: %w", err)
	}
	if err := refusedError(rep, "member", "redis_auth"); err != nil {
		return RoleMember{}, fmt.Errorf("ROLE: %w", err)
	}
	role, err := parseRole(rep)
	if err != nil {
		return RoleMember{}, err
	}
	member := RoleMember{Addr: m.addr, Role: role.role, Offset: role.offset}
	if role.role == "slave" {
		member.UnknownMaster = role.masterAddr // until mapAnswer finds the member
		member.Link = role.link
	}
	return member, nil
}

func (m *roleMemberConn) closeConn() {
	if m.conn != nil {
		m.conn.Close()
		m.conn, m.reader = nil, nil
	}
}

// roleReply is a parsed ROLE reply.
type roleReply struct {
	role   string // "master", "slave" or "sentinel"
	offset int64  // a master's own offset, a replica's processed offset (-1 before it synced)
	// A master's replicas as it lists them, host:port.
	replicas []string
	// A replica's master as it was configured (an IP or a hostname), host:port, and its link state.
	masterAddr, link string
	// A Sentinel's master names.
	masterNames []string
}

// parseRole reads a ROLE reply: ["master", offset, [[ip, port, offset], ...]],
// ["slave", host, port, state, offset] or ["sentinel", [name, ...]].
// The reply comes from the network, so every shape is checked.
func parseRole(v respValue) (roleReply, error) {
	if v.kind == '-' {
		return roleReply{}, fmt.Errorf("ROLE: %s", v.str)
	}
	if v.kind != '*' || len(v.arr) == 0 {
		return roleReply{}, fmt.Errorf("ROLE: reply %s, want an array", v.describe())
	}
	r := roleReply{role: v.arr[0].str}
	if !isRESPText(v.arr[0]) {
		return roleReply{}, fmt.Errorf("ROLE: role %s, want a string", v.arr[0].describe())
	}
	switch r.role {
	case "master":
		if len(v.arr) != 3 || v.arr[2].kind != '*' {
			return roleReply{}, fmt.Errorf("ROLE: master reply of %d elements, want offset and replicas", len(v.arr))
		}
		var err error
		if r.offset, err = respInt(v.arr[1]); err != nil {
			return roleReply{}, fmt.Errorf("ROLE: master offset: %w", err)
		}
		for i, e := range v.arr[2].arr {
			if e.kind != '*' || len(e.arr) < 2 || !isRESPText(e.arr[0]) {
				return roleReply{}, fmt.Errorf("ROLE: master replicas[%d]: %s, want [ip, port, offset]", i, e.describe())
			}
			addr, err := roleAddr(e.arr[0], e.arr[1])
			if err != nil {
				return roleReply{}, fmt.Errorf("ROLE: master replicas[%d]: %w", i, err)
			}
			r.replicas = append(r.replicas, addr)
		}
	case "slave":
		if len(v.arr) != 5 || !isRESPText(v.arr[1]) || !isRESPText(v.arr[3]) {
			return roleReply{}, fmt.Errorf("ROLE: replica reply of %d elements, want host, port, state and offset", len(v.arr))
		}
		addr, err := roleAddr(v.arr[1], v.arr[2])
		if err != nil {
			return roleReply{}, fmt.Errorf("ROLE: replica's master: %w", err)
		}
		r.masterAddr, r.link = addr, v.arr[3].str
		if r.link == "" {
			return roleReply{}, errors.New("ROLE: replica with an empty link state")
		}
		if r.offset, err = respInt(v.arr[4]); err != nil {
			return roleReply{}, fmt.Errorf("ROLE: replica offset: %w", err)
		}
	case "sentinel":
		if len(v.arr) != 2 || v.arr[1].kind != '*' {
			return roleReply{}, fmt.Errorf("ROLE: sentinel reply of %d elements, want a list of masters", len(v.arr))
		}
		for _, e := range v.arr[1].arr {
			r.masterNames = append(r.masterNames, e.str)
		}
	default:
		return roleReply{}, fmt.Errorf("ROLE: unknown role %q", r.role)
	}
	return r, nil
}

func isRESPText(v respValue) bool { return (v.kind == '$' && !v.null) || v.kind == '+' }

// respInt reads an integer sent as an integer reply or as text (ROLE
// sends a master's replicas' ports and offsets as bulk strings).
func respInt(v respValue) (int64, error) {
	if v.kind != ':' && !isRESPText(v) {
		return 0, fmt.Errorf("%s, want a number", v.describe())
	}
	n, err := strconv.ParseInt(v.str, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: not a number", v.str)
	}
	return n, nil
}

// roleAddr joins a host and port from a ROLE reply. A host that would not
// read back from host:port (a "]" in it, say) is refused, so that every
// address compared with the members is one SplitHostPort takes.
func roleAddr(host, port respValue) (string, error) {
	n, err := respInt(port)
	if err != nil || n <= 0 || n > 65535 || host.str == "" {
		return "", fmt.Errorf("host %q port %q: not an address", host.str, port.str)
	}
	addr := net.JoinHostPort(host.str, strconv.FormatInt(n, 10))
	if h, _, err := net.SplitHostPort(addr); err != nil || h != host.str {
		return "", fmt.Errorf("host %q: not a host", host.str)
	}
	return addr, nil
}
