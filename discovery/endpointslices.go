package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
)

// Endpoint is one pod of the watched Service as its EndpointSlices list it.
type Endpoint struct {
	Pod         string // targetRef.name when targetRef.kind is Pod, else hostname
	Address     string // first address (IPv4 or IPv6, as in the slice)
	Ready       bool   // conditions.ready; nil means true (API docs)
	Serving     bool   // conditions.serving; nil means true (API docs)
	Terminating bool   // conditions.terminating; nil means false (API docs)
	Node, Zone  string // nodeName and zone, "" when unset
	Slice       string // name of the EndpointSlice this entry came from
	// Ports are the slice's ports as "name=port" items joined by ",", in
	// the slice's order (a string so that Endpoint stays comparable); see
	// Port.
	Ports string
}

// Port is the endpoint's port named name, or, when no port has that name,
// its only port; 0 when it has neither.
func (e Endpoint) Port(name string) int {
	only, n := 0, 0
	for item := range strings.SplitSeq(e.Ports, ",") {
		pname, num, ok := strings.Cut(item, "=")
		if !ok {
			continue
		}
		p, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		if pname == name {
			return p
		}
		only, n = p, n+1
	}
	if n == 1 {
		return only
	}
	return 0
}

// Usable reports whether new requests may go to the endpoint: ready and not
// terminating. Serving is checked too because a Service with
// publishNotReadyAddresses makes the EndpointSlice controller set ready=true
// on every endpoint; serving still carries the pod's Ready condition.
func (e Endpoint) Usable() bool { return e.Ready && e.Serving && !e.Terminating }

// EndpointSlicesOptions configures NewEndpointSlices.
type EndpointSlicesOptions struct {
	// Client talks to the API server (NewClient, or a fake in tests). Required.
	Client kubernetes.Interface
	// Namespace of the Service. Required.
	Namespace string
	// Service is the name of the (headless) Service whose EndpointSlices are
	// watched, by their kubernetes.io/service-name label. Required.
	Service string
	// Logger receives state changes (synced, API unreachable, recovered).
	// nil discards.
	Logger *slog.Logger
	// OnChange receives the full snapshot, keyed by pod name, once the cache
	// has synced (even when empty) and after every change after that.
	// Changes that arrive while it runs are coalesced into one later call
	// with the newest snapshot. It is called from one goroutine, never
	// concurrently, and owns the map it is given. nil: no calls; use Snapshot.
	OnChange func(map[string]Endpoint)
	// Resync is the informer's periodic resync. 0 = no periodic resync (the
	// watch alone keeps the cache current; a resync that finds nothing new
	// calls no OnChange).
	Resync time.Duration
	// AddressType selects the slices read. "" reads IPv4 and IPv6 slices;
	// when a dual-stack Service lists a pod in both, the IPv4 entry wins so
	// the address does not flip between families. discoveryv1.AddressTypeIPv4
	// or AddressTypeIPv6 reads only that family. FQDN slices are never read.
	AddressType discoveryv1.AddressType
}

// Status is the watcher's health, for /readyz and stats.
type Status struct {
	Synced       bool      // the initial list has been delivered
	Healthy      bool      // the last List or Watch call to the API server succeeded
	LastError    string    // last API error, "" if none yet
	LastErrorAt  time.Time // when LastError happened
	LastChangeAt time.Time // when the snapshot last changed
	Endpoints    int       // entries in the snapshot
}

// EndpointSlices watches the EndpointSlices of one Service and keeps a
// snapshot of its endpoints keyed by pod name.
type EndpointSlices struct {
	opts     EndpointSlicesOptions
	logger   *slog.Logger
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration

	kick     chan struct{} // capacity 1: a snapshot changed since notifyLoop last looked
	syncedCh chan struct{} // closed once the initial list has been handed to OnChange
	started  atomic.Bool

	mu           sync.Mutex             // guards everything below
	slices       map[string]*sliceState // by EndpointSlice name
	seq          uint64                 // last sliceState.seq handed out
	snap         map[string]Endpoint
	synced       bool
	health       health
	lastErr      string
	lastErrAt    time.Time
	lastChangeAt time.Time
}

// sliceState is what one EndpointSlice contributes.
type sliceState struct {
	seq       uint64 // order in which this watcher saw the content change; higher is newer
	family    discoveryv1.AddressType
	endpoints []Endpoint
}

type health int

const (
	healthUnknown health = iota // nothing heard from the API server yet
	healthOK
	healthFailing
)

// NewEndpointSlices builds the informer; Run starts it.
func NewEndpointSlices(opts EndpointSlicesOptions) (*EndpointSlices, error) {
	if opts.Client == nil {
		return nil, errors.New("discovery: EndpointSlices: no Client")
	}
	if msgs := validation.IsDNS1123Label(opts.Namespace); len(msgs) > 0 {
		return nil, fmt.Errorf("discovery: EndpointSlices: namespace %q: %s", opts.Namespace, msgs[0])
	}
	if msgs := validation.IsDNS1035Label(opts.Service); len(msgs) > 0 {
		return nil, fmt.Errorf("discovery: EndpointSlices: service %q: %s", opts.Service, msgs[0])
	}
	switch opts.AddressType {
	case "", discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	default:
		return nil, fmt.Errorf("discovery: EndpointSlices: address type %q: want IPv4, IPv6 or empty", opts.AddressType)
	}
	if opts.Resync < 0 {
		return nil, fmt.Errorf("discovery: EndpointSlices: resync %v is negative", opts.Resync)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &EndpointSlices{
		opts:     opts,
		logger:   logger.With("namespace", opts.Namespace, "service", opts.Service),
		kick:     make(chan struct{}, 1),
		syncedCh: make(chan struct{}),
		slices:   make(map[string]*sliceState),
		snap:     make(map[string]Endpoint),
	}

	selector := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: opts.Service}).String()
	e.factory = informers.NewSharedInformerFactoryWithOptions(
		observedClient{Interface: opts.Client, obs: e},
		opts.Resync,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = selector }),
	)
	e.informer = e.factory.Discovery().V1().EndpointSlices().Informer()
	if err := e.informer.SetTransform(stripManagedFields); err != nil {
		return nil, fmt.Errorf("discovery: EndpointSlices: %w", err)
	}
	// client-go's default handler logs every failed retry at error level;
	// ours records the state and logs once per change.
	if err := e.informer.SetWatchErrorHandlerWithContext(e.watchError); err != nil {
		return nil, fmt.Errorf("discovery: EndpointSlices: %w", err)
	}
	reg, err := e.informer.AddEventHandler(eventHandler{e})
	if err != nil {
		return nil, fmt.Errorf("discovery: EndpointSlices: %w", err)
	}
	e.reg = reg
	return e, nil
}

// Run starts the informer and delivers snapshots to OnChange until ctx ends.
// It returns after the informer has stopped. Call it once.
func (e *EndpointSlices) Run(ctx context.Context) {
	if !e.started.CompareAndSwap(false, true) {
		panic("discovery: EndpointSlices.Run called twice")
	}
	e.logger.Debug("starting EndpointSlice informer")
	e.factory.Start(ctx.Done())
	e.notifyLoop(ctx)
	e.factory.Shutdown() // waits for the informer's goroutines
}

// WaitForSync waits until the initial list has been delivered or ctx ends,
// and reports whether the cache synced.
func (e *EndpointSlices) WaitForSync(ctx context.Context) bool {
	select {
	case <-e.syncedCh:
		return true
	case <-ctx.Done():
		return false
	}
}

// Snapshot returns a copy of the current endpoints, keyed by pod name.
// Before sync it holds what has been seen so far.
func (e *EndpointSlices) Snapshot() map[string]Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.snap)
}

// Status reports sync state and API health.
func (e *EndpointSlices) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{
		Synced:       e.synced,
		Healthy:      e.health == healthOK,
		LastError:    e.lastErr,
		LastErrorAt:  e.lastErrAt,
		LastChangeAt: e.lastChangeAt,
		Endpoints:    len(e.snap),
	}
}

// notifyLoop waits for the initial list, then hands every changed snapshot
// to OnChange. It is the only caller of OnChange, so calls never overlap, and
// a kick that arrives while OnChange runs yields one later call.
func (e *EndpointSlices) notifyLoop(ctx context.Context) {
	// Partial snapshots during the initial list would look like missing
	// pods; the first delivery waits until every listed slice is in.
	if !cache.WaitForCacheSync(ctx.Done(), e.reg.HasSynced) {
		return
	}
	var last map[string]Endpoint
	deliver := func(first bool) {
		snap := e.Snapshot()
		if !first && maps.Equal(snap, last) {
			return
		}
		last = maps.Clone(snap)
		if e.opts.OnChange != nil {
			e.opts.OnChange(snap)
		}
	}
	deliver(true)
	// Synced only now: who waits for it (readiness, locate) must find the
	// first list already applied.
	e.mu.Lock()
	e.synced = true
	n := len(e.snap)
	e.mu.Unlock()
	close(e.syncedCh)
	e.logger.Info("EndpointSlices synced", "endpoints", n)
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
			deliver(false)
		}
	}
}

// eventHandler receives the informer's events on its single processing
// goroutine; it is a separate type so that EndpointSlices does not export
// OnAdd and friends.
//
// Events do not mark the API healthy: they reach the handler after a queue,
// so one sent before an outage could be handled after it began, and a
// periodic resync replays the cache without asking the server. Every event
// comes through a List or Watch, and observedClient marks those.
type eventHandler struct{ e *EndpointSlices }

func (h eventHandler) OnAdd(obj any, _ bool) { h.e.applySlice(obj) }
func (h eventHandler) OnUpdate(_, obj any)   { h.e.applySlice(obj) }
func (h eventHandler) OnDelete(obj any)      { h.e.sliceDeleted(obj) }

func (e *EndpointSlices) applySlice(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		e.logger.Warn("EndpointSlice informer delivered an unexpected object", "type", fmt.Sprintf("%T", obj))
		return
	}
	if !e.wanted(s) {
		// The label selector already filters on the server; a slice whose
		// label changed away from the Service, or a watch that does not
		// filter (client-go's fake), ends up here.
		e.removeSlice(s.Name)
		return
	}
	eps := sliceEndpoints(s)
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.slices[s.Name]
	if old != nil && old.family == s.AddressType && endpointsEqual(old.endpoints, eps) {
		return // a resync, relist, or a change to fields we do not read
	}
	e.seq++
	e.slices[s.Name] = &sliceState{seq: e.seq, family: s.AddressType, endpoints: eps}
	e.rebuildLocked()
}

func (e *EndpointSlices) sliceDeleted(obj any) {
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		e.removeSlice(o.Name)
	case cache.DeletedFinalStateUnknown:
		// The watch missed the delete; the relist noticed the slice gone.
		_, name, err := cache.SplitMetaNamespaceKey(o.Key)
		if err != nil {
			e.logger.Warn("EndpointSlice deleted with a bad key", "key", o.Key, "err", err)
			return
		}
		e.removeSlice(name)
	default:
		e.logger.Warn("EndpointSlice informer deleted an unexpected object", "type", fmt.Sprintf("%T", obj))
	}
}

func (e *EndpointSlices) removeSlice(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.slices[name]; !ok {
		return
	}
	delete(e.slices, name)
	e.rebuildLocked()
}

// wanted reports whether s belongs to the watched Service and address family.
func (e *EndpointSlices) wanted(s *discoveryv1.EndpointSlice) bool {
	if s.Namespace != e.opts.Namespace || s.Labels[discoveryv1.LabelServiceName] != e.opts.Service {
		return false
	}
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		return e.opts.AddressType == "" || e.opts.AddressType == s.AddressType
	}
	return false // FQDN slices name no address to connect to
}

// rebuildLocked merges all slices into a new snapshot and, if it differs
// from the current one, stores it and wakes notifyLoop. e.mu must be held.
func (e *EndpointSlices) rebuildLocked() {
	next := mergeSlices(e.slices)
	if maps.Equal(next, e.snap) {
		return
	}
	e.snap = next
	e.lastChangeAt = time.Now()
	select {
	case e.kick <- struct{}{}:
	default: // a wake-up is already pending; it will read the newest snapshot
	}
}

// mergeSlices merges the endpoints of all slices by pod name. A pod listed
// twice (while the EndpointSlice controller moves it between slices, or in
// both families of a dual-stack Service) is taken from the entry that is
// usable, then ready, then IPv4, then from the slice whose content changed
// last, then from the slice whose name sorts first.
func mergeSlices(slices map[string]*sliceState) map[string]Endpoint {
	n := 0
	for _, s := range slices {
		n += len(s.endpoints)
	}
	out := make(map[string]Endpoint, n)
	from := make(map[string]*sliceState, n) // pod -> slice its entry came from
	for _, s := range slices {
		for _, ep := range s.endpoints {
			cur, dup := out[ep.Pod]
			if dup && !better(ep, s, cur, from[ep.Pod]) {
				continue
			}
			out[ep.Pod] = ep
			from[ep.Pod] = s
		}
	}
	return out
}

// better reports whether endpoint a from slice as should replace b from bs.
func better(a Endpoint, as *sliceState, b Endpoint, bs *sliceState) bool {
	if a.Usable() != b.Usable() {
		return a.Usable()
	}
	if a.Ready != b.Ready {
		return a.Ready
	}
	if as.family != bs.family {
		return as.family == discoveryv1.AddressTypeIPv4
	}
	if as.seq != bs.seq {
		return as.seq > bs.seq
	}
	return a.Slice < b.Slice
}

// sliceEndpoints converts the endpoints of one slice. An endpoint without an
// address, or with neither a Pod targetRef nor a hostname, cannot be placed
// and is skipped.
func sliceEndpoints(s *discoveryv1.EndpointSlice) []Endpoint {
	out := make([]Endpoint, 0, len(s.Endpoints))
	var ports []string
	for _, p := range s.Ports {
		if p.Port != nil {
			ports = append(ports, stringOr(p.Name)+"="+strconv.Itoa(int(*p.Port)))
		}
	}
	for _, ep := range s.Endpoints {
		pod := podName(ep)
		if pod == "" || len(ep.Addresses) == 0 || ep.Addresses[0] == "" {
			continue
		}
		ready := boolOr(ep.Conditions.Ready, true)
		out = append(out, Endpoint{
			Pod:         pod,
			Address:     ep.Addresses[0],
			Ready:       ready,
			Serving:     boolOr(ep.Conditions.Serving, true),
			Terminating: boolOr(ep.Conditions.Terminating, false),
			Node:        stringOr(ep.NodeName),
			Zone:        stringOr(ep.Zone),
			Slice:       s.Name,
			Ports:       strings.Join(ports, ","),
		})
	}
	return out
}

// podName is the name a shard is known by: the Pod the endpoint points at,
// or, for endpoints not backed by a Pod, its hostname.
func podName(ep discoveryv1.Endpoint) string {
	if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.TargetRef.Name != "" {
		return ep.TargetRef.Name
	}
	return stringOr(ep.Hostname)
}

func endpointsEqual(a, b []Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func stringOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// stripManagedFields drops managedFields before the informer stores a slice:
// they are often larger than the endpoints and nothing here reads them.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// watchError is the informer's watch error handler. client-go calls it when
// a List fails or a Watch cannot be opened, then backs off and retries.
func (e *EndpointSlices) watchError(_ context.Context, _ *cache.Reflector, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		// A closed or expired watch is routine; the reflector relists.
		e.logger.Debug("EndpointSlice watch closed", "err", err)
	default:
		e.apiFailed(err)
	}
}

// apiOK records that the API server answered.
func (e *EndpointSlices) apiOK() {
	e.mu.Lock()
	was := e.health
	e.health = healthOK
	n := len(e.snap)
	e.mu.Unlock()
	if was == healthFailing {
		e.logger.Info("Kubernetes API reachable again", "endpoints", n)
	}
}

// apiFailed records an API error. It logs at Warn when the state turns
// failing, not on every retry.
func (e *EndpointSlices) apiFailed(err error) {
	now := time.Now()
	e.mu.Lock()
	was := e.health
	e.health = healthFailing
	e.lastErr = err.Error()
	e.lastErrAt = now
	n := len(e.snap)
	e.mu.Unlock()
	if was != healthFailing {
		e.logger.Warn("Kubernetes API unreachable; keeping the last endpoints while client-go retries", "err", err, "endpoints", n)
	} else {
		e.logger.Debug("Kubernetes API still unreachable", "err", err)
	}
}

// observedClient wraps the clientset so that every List and Watch of
// EndpointSlices reports its outcome. The watch error handler alone cannot
// tell health: client-go retries a refused Watch itself without calling it,
// and a relist that finds nothing new delivers no event, so only the calls
// themselves show that the API server is back.
type observedClient struct {
	kubernetes.Interface
	obs *EndpointSlices
}

func (c observedClient) DiscoveryV1() discoveryv1client.DiscoveryV1Interface {
	return observedDiscovery{DiscoveryV1Interface: c.Interface.DiscoveryV1(), obs: c.obs}
}

// IsWatchListSemanticsUnSupported passes on client-go's probe: its fake
// clientset answers true so the reflector lists instead of streaming, and
// the embedded interface would hide that method.
func (c observedClient) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.Interface)
}

type observedDiscovery struct {
	discoveryv1client.DiscoveryV1Interface
	obs *EndpointSlices
}

func (d observedDiscovery) EndpointSlices(namespace string) discoveryv1client.EndpointSliceInterface {
	return observedSlices{EndpointSliceInterface: d.DiscoveryV1Interface.EndpointSlices(namespace), obs: d.obs}
}

type observedSlices struct {
	discoveryv1client.EndpointSliceInterface
	obs *EndpointSlices
}

func (s observedSlices) List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error) {
	l, err := s.EndpointSliceInterface.List(ctx, opts)
	s.obs.callDone(ctx, err)
	return l, err
}

func (s observedSlices) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := s.EndpointSliceInterface.Watch(ctx, opts)
	s.obs.callDone(ctx, err)
	return w, err
}

func (e *EndpointSlices) callDone(ctx context.Context, err error) {
	switch {
	case err == nil:
		e.apiOK()
	case ctx.Err() != nil:
		// Shutting down, not an API failure.
	case apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		// The reflector relists from scratch; the server is answering.
		e.apiOK()
	default:
		e.apiFailed(err)
	}
}
