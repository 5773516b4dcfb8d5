package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	testNS  = "cache"
	testSvc = "redis"
	// waitFor bounds every wait for something the fake clientset delivers
	// in milliseconds; it is generous so a loaded machine does not flake.
	waitFor = 10 * time.Second
	// waitRetry bounds waits that include client-go's retry backoff
	// (0.8 s doubling, with jitter).
	waitRetry = 30 * time.Second
)

// --- Rung 1: pure EndpointSlice -> Endpoint functions. ---

func TestSliceEndpoints(t *testing.T) {
	tests := []struct {
		name string
		ep   discoveryv1.Endpoint
		want []Endpoint // nil: skipped
	}{
		{
			name: "pod targetRef names the endpoint",
			ep:   podEP("redis-0", "10.0.0.1", cond(true, true, false)),
			want: []Endpoint{{Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Slice: "s"}},
		},
		{
			name: "targetRef wins over hostname",
			ep:   withHostname(podEP("redis-0", "10.0.0.1", cond(true, true, false)), "other"),
			want: []Endpoint{{Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Slice: "s"}},
		},
		{
			name: "hostname when targetRef is not a Pod",
			ep: discoveryv1.Endpoint{
				Addresses: []string{"10.0.0.2"},
				Hostname:  ptr("redis-1"),
				TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "node-a"},
			},
			want: []Endpoint{{Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Slice: "s"}},
		},
		{
			name: "hostname without targetRef",
			ep:   discoveryv1.Endpoint{Addresses: []string{"10.0.0.3"}, Hostname: ptr("redis-2")},
			want: []Endpoint{{Pod: "redis-2", Address: "10.0.0.3", Ready: true, Serving: true, Slice: "s"}},
		},
		{
			name: "neither targetRef nor hostname is skipped",
			ep:   discoveryv1.Endpoint{Addresses: []string{"10.0.0.4"}},
		},
		{
			name: "no address is skipped",
			ep:   podEP("redis-0", "", cond(true, true, false)),
		},
		{
			name: "nil conditions: ready and serving, not terminating",
			ep:   discoveryv1.Endpoint{Addresses: []string{"10.0.0.5"}, TargetRef: podRef("redis-5")},
			want: []Endpoint{{Pod: "redis-5", Address: "10.0.0.5", Ready: true, Serving: true, Slice: "s"}},
		},
		{
			name: "publishNotReadyAddresses: ready but not serving",
			ep:   podEP("redis-0", "10.0.0.1", cond(true, false, false)),
			want: []Endpoint{{Pod: "redis-0", Address: "10.0.0.1", Ready: true, Slice: "s"}},
		},
		{
			name: "terminating",
			ep:   podEP("redis-0", "10.0.0.1", cond(false, true, true)),
			want: []Endpoint{{Pod: "redis-0", Address: "10.0.0.1", Serving: true, Terminating: true, Slice: "s"}},
		},
		{
			name: "first address, IPv6, node and zone",
			ep: discoveryv1.Endpoint{
				Addresses: []string{"fd00::1", "fd00::2"},
				TargetRef: podRef("redis-0"),
				NodeName:  ptr("node-a"),
				Zone:      ptr("zone-1"),
			},
			want: []Endpoint{{Pod: "redis-0", Address: "fd00::1", Ready: true, Serving: true, Node: "node-a", Zone: "zone-1", Slice: "s"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sliceEndpoints(newSlice("s", testSvc, tc.ep))
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !endpointsEqual(got, tc.want) {
				t.Errorf("sliceEndpoints = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEndpointUsable(t *testing.T) {
	tests := []struct {
		ep   Endpoint
		want bool
	}{
		{Endpoint{Ready: true, Serving: true}, true},
		{Endpoint{Ready: false, Serving: false}, false},
		{Endpoint{Ready: true, Serving: false}, false}, // publishNotReadyAddresses, pod not ready
		{Endpoint{Ready: false, Serving: true, Terminating: true}, false},
		{Endpoint{Ready: true, Serving: true, Terminating: true}, false}, // publishNotReadyAddresses, terminating
	}
	for _, tc := range tests {
		if got := tc.ep.Usable(); got != tc.want {
			t.Errorf("%+v.Usable() = %v, want %v", tc.ep, got, tc.want)
		}
	}
}

func TestMergeSlices(t *testing.T) {
	ready := func(slice, addr string) Endpoint {
		return Endpoint{Pod: "redis-1", Address: addr, Ready: true, Serving: true, Slice: slice}
	}
	notReady := func(slice, addr string) Endpoint {
		return Endpoint{Pod: "redis-1", Address: addr, Slice: slice}
	}
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	tests := []struct {
		name   string
		slices map[string]*sliceState
		want   Endpoint
	}{
		{
			name: "ready beats a newer not-ready entry",
			slices: map[string]*sliceState{
				"a": {seq: 1, family: v4, endpoints: []Endpoint{ready("a", "10.0.0.1")}},
				"b": {seq: 2, family: v4, endpoints: []Endpoint{notReady("b", "10.0.0.2")}},
			},
			want: ready("a", "10.0.0.1"),
		},
		{
			name: "newest slice among equally ready entries",
			slices: map[string]*sliceState{
				"a": {seq: 3, family: v4, endpoints: []Endpoint{ready("a", "10.0.0.1")}},
				"b": {seq: 2, family: v4, endpoints: []Endpoint{ready("b", "10.0.0.2")}},
			},
			want: ready("a", "10.0.0.1"),
		},
		{
			name: "IPv4 beats a newer IPv6 entry of a dual-stack Service",
			slices: map[string]*sliceState{
				"v6": {seq: 5, family: v6, endpoints: []Endpoint{ready("v6", "fd00::1")}},
				"v4": {seq: 4, family: v4, endpoints: []Endpoint{ready("v4", "10.0.0.1")}},
			},
			want: ready("v4", "10.0.0.1"),
		},
		{
			name: "usable beats ready-but-terminating",
			slices: map[string]*sliceState{
				"a": {seq: 1, family: v4, endpoints: []Endpoint{ready("a", "10.0.0.1")}},
				"b": {seq: 2, family: v4, endpoints: []Endpoint{{Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Terminating: true, Slice: "b"}}},
			},
			want: ready("a", "10.0.0.1"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 { // map order varies; the answer must not
				got := mergeSlices(tc.slices)
				if len(got) != 1 || got["redis-1"] != tc.want {
					t.Fatalf("mergeSlices = %+v, want redis-1: %+v", got, tc.want)
				}
			}
		})
	}
}

func TestNewEndpointSlicesValidation(t *testing.T) {
	client := fake.NewClientset()
	tests := []struct {
		name string
		opts EndpointSlicesOptions
		want string // substring of the error
	}{
		{"no client", EndpointSlicesOptions{Namespace: testNS, Service: testSvc}, "no Client"},
		{"no namespace", EndpointSlicesOptions{Client: client, Service: testSvc}, `namespace ""`},
		{"bad service", EndpointSlicesOptions{Client: client, Namespace: testNS, Service: "Redis_0"}, `service "Redis_0"`},
		{"fqdn", EndpointSlicesOptions{Client: client, Namespace: testNS, Service: testSvc, AddressType: discoveryv1.AddressTypeFQDN}, `address type "FQDN"`},
		{"negative resync", EndpointSlicesOptions{Client: client, Namespace: testNS, Service: testSvc, Resync: -time.Second}, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewEndpointSlices(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewEndpointSlices(%s) error = %v, want it to contain %q", tc.name, err, tc.want)
			}
		})
	}
}

// --- Rung 3: the informer against client-go's fake clientset. ---

func TestEndpointSlicesLifecycle(t *testing.T) {
	h := startHarness(t, nil)
	h.waitWatch()
	h.waitChange(map[string]Endpoint{}) // synced, empty

	a := newSlice("redis-a", testSvc,
		withNode(podEP("redis-0", "10.0.0.1", cond(true, true, false)), "node-a", "zone-1"),
		podEP("redis-1", "10.0.0.2", cond(true, true, false)),
	)
	steps := []struct {
		name string
		do   func()
		want map[string]Endpoint
	}{
		{
			name: "endpoints appear",
			do:   func() { h.create(a) },
			want: map[string]Endpoint{
				"redis-0": {Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Node: "node-a", Zone: "zone-1", Slice: "redis-a"},
				"redis-1": {Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Slice: "redis-a"},
			},
		},
		{
			name: "a pod comes back on a new IP",
			do: func() {
				a.Endpoints[1] = podEP("redis-1", "10.0.0.12", cond(true, true, false))
				h.update(a)
			},
			want: map[string]Endpoint{
				"redis-0": {Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Node: "node-a", Zone: "zone-1", Slice: "redis-a"},
				"redis-1": {Pod: "redis-1", Address: "10.0.0.12", Ready: true, Serving: true, Slice: "redis-a"},
			},
		},
		{
			name: "a pod turns not ready and stays listed",
			do: func() {
				a.Endpoints[0] = withNode(podEP("redis-0", "10.0.0.1", cond(false, false, false)), "node-a", "zone-1")
				h.update(a)
			},
			want: map[string]Endpoint{
				"redis-0": {Pod: "redis-0", Address: "10.0.0.1", Node: "node-a", Zone: "zone-1", Slice: "redis-a"},
				"redis-1": {Pod: "redis-1", Address: "10.0.0.12", Ready: true, Serving: true, Slice: "redis-a"},
			},
		},
		{
			name: "a pod terminates",
			do: func() {
				a.Endpoints[1] = podEP("redis-1", "10.0.0.12", cond(false, true, true))
				h.update(a)
			},
			want: map[string]Endpoint{
				"redis-0": {Pod: "redis-0", Address: "10.0.0.1", Node: "node-a", Zone: "zone-1", Slice: "redis-a"},
				"redis-1": {Pod: "redis-1", Address: "10.0.0.12", Serving: true, Terminating: true, Slice: "redis-a"},
			},
		},
		{
			name: "a pod disappears",
			do: func() {
				a.Endpoints = a.Endpoints[:1]
				h.update(a)
			},
			want: map[string]Endpoint{
				"redis-0": {Pod: "redis-0", Address: "10.0.0.1", Node: "node-a", Zone: "zone-1", Slice: "redis-a"},
			},
		},
		{
			name: "the slice is deleted",
			do:   func() { h.delete("redis-a") },
			want: map[string]Endpoint{},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := h.es.Status().LastChangeAt
			st.do()
			h.waitChange(st.want)
			if got := h.es.Snapshot(); !maps.Equal(got, st.want) {
				t.Errorf("Snapshot() = %v, want %v", got, st.want)
			}
			s := h.es.Status()
			if !s.Synced || !s.Healthy || s.Endpoints != len(st.want) || !s.LastChangeAt.After(before) {
				t.Errorf("Status() = %+v, want synced, healthy, %d endpoints, changed after %v", s, len(st.want), before)
			}
		})
	}
}

func TestEndpointSlicesSplitAcrossSlices(t *testing.T) {
	h := startHarness(t, nil)
	h.waitWatch()
	h.waitChange(map[string]Endpoint{})

	a := newSlice("redis-a", testSvc,
		podEP("redis-0", "10.0.0.1", cond(true, true, false)),
		podEP("redis-1", "10.0.0.2", cond(true, true, false)),
	)
	b := newSlice("redis-b", testSvc,
		podEP("redis-2", "10.0.0.3", cond(true, true, false)),
	)
	r0 := Endpoint{Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Slice: "redis-a"}
	r2 := Endpoint{Pod: "redis-2", Address: "10.0.0.3", Ready: true, Serving: true, Slice: "redis-b"}
	steps := []struct {
		name string
		do   func()
		want map[string]Endpoint
	}{
		{
			name: "two slices merge",
			do:   func() { h.create(a); h.create(b) },
			want: map[string]Endpoint{
				"redis-0": r0,
				"redis-1": {Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Slice: "redis-a"},
				"redis-2": r2,
			},
		},
		{
			name: "pod added to the second slice: the newest slice wins",
			do: func() {
				b.Endpoints = append(b.Endpoints, podEP("redis-1", "10.0.1.2", cond(true, true, false)))
				h.update(b)
			},
			want: map[string]Endpoint{
				"redis-0": r0,
				"redis-1": {Pod: "redis-1", Address: "10.0.1.2", Ready: true, Serving: true, Slice: "redis-b"},
				"redis-2": r2,
			},
		},
		{
			name: "ready in the older slice beats not ready in the newer",
			do: func() {
				b.Endpoints[1] = podEP("redis-1", "10.0.1.2", cond(false, false, false))
				h.update(b)
			},
			want: map[string]Endpoint{
				"redis-0": r0,
				"redis-1": {Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Slice: "redis-a"},
				"redis-2": r2,
			},
		},
		{
			name: "pod removed from the first slice: the move is complete",
			do: func() {
				a.Endpoints = a.Endpoints[:1]
				h.update(a)
			},
			want: map[string]Endpoint{
				"redis-0": r0,
				"redis-1": {Pod: "redis-1", Address: "10.0.1.2", Slice: "redis-b"},
				"redis-2": r2,
			},
		},
		{
			name: "the moved pod turns ready",
			do: func() {
				b.Endpoints[1] = podEP("redis-1", "10.0.1.2", cond(true, true, false))
				h.update(b)
			},
			want: map[string]Endpoint{
				"redis-0": r0,
				"redis-1": {Pod: "redis-1", Address: "10.0.1.2", Ready: true, Serving: true, Slice: "redis-b"},
				"redis-2": r2,
			},
		},
		{
			name: "deleting one slice keeps the other's endpoints",
			do:   func() { h.delete("redis-a") },
			want: map[string]Endpoint{
				"redis-1": {Pod: "redis-1", Address: "10.0.1.2", Ready: true, Serving: true, Slice: "redis-b"},
				"redis-2": r2,
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			h.waitChange(st.want)
		})
	}
}

func TestEndpointSlicesIgnoresOtherServices(t *testing.T) {
	h := startHarness(t, nil)
	h.waitWatch()
	h.waitChange(map[string]Endpoint{})

	other := newSlice("memcached-a", "memcached", podEP("memcached-0", "10.0.9.1", cond(true, true, false)))
	h.create(other)
	elsewhere := newSlice("redis-x", testSvc, podEP("redis-9", "10.0.9.2", cond(true, true, false)))
	elsewhere.Namespace = "other"
	h.create(elsewhere)
	unlabeled := newSlice("custom", "", podEP("custom-0", "10.0.9.3", cond(true, true, false)))
	delete(unlabeled.Labels, discoveryv1.LabelServiceName)
	h.create(unlabeled)
	fqdn := newSlice("redis-fqdn", testSvc, podEP("redis-7", "redis-7.example.com", cond(true, true, false)))
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	h.create(fqdn)

	ours := newSlice("redis-a", testSvc, podEP("redis-0", "10.0.0.1", cond(true, true, false)))
	h.create(ours)
	r0 := Endpoint{Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Slice: "redis-a"}
	h.waitChange(map[string]Endpoint{"redis-0": r0})

	// A change to another Service's slice, then one to ours: the next
	// snapshot must show ours alone.
	other.Endpoints = append(other.Endpoints, podEP("memcached-1", "10.0.9.4", cond(true, true, false)))
	h.update(other)
	ours.Endpoints = append(ours.Endpoints, podEP("redis-1", "10.0.0.2", cond(true, true, false)))
	h.update(ours)
	r1 := Endpoint{Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Slice: "redis-a"}
	h.waitChange(map[string]Endpoint{"redis-0": r0, "redis-1": r1})

	// A slice relabeled to another Service leaves.
	ours.Labels[discoveryv1.LabelServiceName] = "memcached"
	h.update(ours)
	h.waitChange(map[string]Endpoint{})
}

func TestEndpointSlicesInitialObjects(t *testing.T) {
	objs := []runtime.Object{
		newSlice("redis-a", testSvc, podEP("redis-0", "10.0.0.1", cond(true, true, false))),
		newSlice("redis-b", testSvc, podEP("redis-1", "10.0.0.2", cond(false, false, false))),
		newSlice("memcached-a", "memcached", podEP("memcached-0", "10.0.9.1", cond(true, true, false))),
	}
	h := startHarness(t, nil, objs...)
	want := map[string]Endpoint{
		"redis-0": {Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Slice: "redis-a"},
		"redis-1": {Pod: "redis-1", Address: "10.0.0.2", Slice: "redis-b"},
	}
	// The first call carries the whole initial list, never a part of it.
	select {
	case got := <-h.changes:
		if !maps.Equal(got, want) {
			t.Fatalf("first OnChange = %v, want %v", got, want)
		}
	case <-time.After(waitFor):
		t.Fatalf("no OnChange within %v", waitFor)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if !h.es.WaitForSync(ctx) {
		t.Fatal("WaitForSync = false, want true")
	}
	if s := h.es.Status(); !s.Synced || !s.Healthy || s.Endpoints != 2 || s.LastError != "" {
		t.Errorf("Status() = %+v, want synced, healthy, 2 endpoints, no error", s)
	}
}

// Sync is reported only once the first list has been handed to OnChange,
// so a proxy is not ready, nor a locate answered, before it has the pods'
// addresses.
func TestEndpointSlicesSyncedAfterFirstDelivery(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := startHarness(t, func(o *EndpointSlicesOptions) {
		inner := o.OnChange
		first := true
		o.OnChange = func(m map[string]Endpoint) {
			if first {
				first = false
				close(entered)
				<-release
			}
			inner(m)
		}
	}, newSlice("redis-a", testSvc, podEP("redis-0", "10.0.0.1", cond(true, true, false))))
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatalf("no OnChange within %v", waitFor)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if h.es.WaitForSync(ctx) {
		t.Error("WaitForSync = true while the first OnChange has not returned")
	}
	if h.es.Status().Synced {
		t.Error("Status().Synced = true while the first OnChange has not returned")
	}
	close(release)
	ctx2, cancel2 := context.WithTimeout(context.Background(), waitFor)
	defer cancel2()
	if !h.es.WaitForSync(ctx2) {
		t.Fatal("WaitForSync = false after the first OnChange returned")
	}
	if !h.es.Status().Synced {
		t.Error("Status().Synced = false after the first OnChange returned")
	}
}

func TestEndpointSlicesAddressType(t *testing.T) {
	v6 := newSlice("redis-v6", testSvc, podEP("redis-0", "fd00::1", cond(true, true, false)))
	v6.AddressType = discoveryv1.AddressTypeIPv6
	v4 := newSlice("redis-v4", testSvc, podEP("redis-0", "10.0.0.1", cond(true, true, false)))
	tests := []struct {
		name  string
		typ   discoveryv1.AddressType
		wantA string
	}{
		{"dual-stack prefers IPv4", "", "10.0.0.1"},
		{"IPv6 only", discoveryv1.AddressTypeIPv6, "fd00::1"},
		{"IPv4 only", discoveryv1.AddressTypeIPv4, "10.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, func(o *EndpointSlicesOptions) { o.AddressType = tc.typ }, v6.DeepCopy(), v4.DeepCopy())
			slice := "redis-v4"
			if tc.wantA == "fd00::1" {
				slice = "redis-v6"
			}
			h.waitChange(map[string]Endpoint{"redis-0": {Pod: "redis-0", Address: tc.wantA, Ready: true, Serving: true, Slice: slice}})
		})
	}
}

// Changes that arrive while OnChange runs are coalesced into one later call
// with the newest snapshot; OnChange never overlaps itself (the harness
// checks that in every test).
func TestEndpointSlicesOnChangeCoalesced(t *testing.T) {
	var block atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	h := startHarness(t, func(o *EndpointSlicesOptions) {
		inner := o.OnChange
		o.OnChange = func(m map[string]Endpoint) {
			inner(m)
			// Not the first, empty call: the test may set block between
			// reading it and this check.
			if block.Load() && len(m) > 0 {
				entered <- struct{}{}
				<-release
			}
		}
	})
	h.waitWatch()
	h.waitChange(map[string]Endpoint{})

	at := func(i int) map[string]Endpoint {
		addr := fmt.Sprintf("10.0.0.%d", i)
		return map[string]Endpoint{"redis-0": {Pod: "redis-0", Address: addr, Ready: true, Serving: true, Slice: "redis-a"}}
	}
	block.Store(true)
	s := newSlice("redis-a", testSvc, podEP("redis-0", "10.0.0.0", cond(true, true, false)))
	h.create(s)
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatalf("OnChange not called within %v", waitFor)
	}
	const n = 20
	for i := 1; i <= n; i++ {
		s.Endpoints[0] = podEP("redis-0", fmt.Sprintf("10.0.0.%d", i), cond(true, true, false))
		h.update(s)
	}
	waitUntil(t, waitFor, "the last update in the snapshot", func() bool { return maps.Equal(h.es.Snapshot(), at(n)) })
	block.Store(false)
	close(release)

	for _, want := range []map[string]Endpoint{at(0), at(n)} {
		select {
		case got := <-h.changes:
			if !maps.Equal(got, want) {
				t.Fatalf("OnChange(%v), want OnChange(%v)", got, want)
			}
		case <-time.After(waitFor):
			t.Fatalf("no OnChange(%v) within %v", want, waitFor)
		}
	}
	// The next call is the next change: nothing else was queued.
	s.Endpoints[0] = podEP("redis-0", "10.0.0.99", cond(true, true, false))
	h.update(s)
	select {
	case got := <-h.changes:
		if !maps.Equal(got, at(99)) {
			t.Fatalf("OnChange(%v) after the burst, want OnChange(%v)", got, at(99))
		}
	case <-time.After(waitFor):
		t.Fatalf("no OnChange within %v", waitFor)
	}
}

// A failing API server marks Status unhealthy, logged once per change of
// state however often client-go retries; the last snapshot keeps serving;
// recovery, including a watch re-open that client-go retries without
// calling the watch error handler, marks it healthy again.
func TestEndpointSlicesWatchErrors(t *testing.T) {
	h := newHarness(t, nil)
	injected := errors.New("injected: apiserver unavailable")
	h.fail.Store(&injected)
	h.run()

	// Phase 1: the initial list fails; client-go retries it.
	waitUntil(t, waitRetry, "two failed lists", func() bool { return h.failedLists.Load() >= 2 })
	s := h.es.Status()
	if s.Healthy || s.Synced || !strings.Contains(s.LastError, "injected") || s.LastErrorAt.IsZero() {
		t.Fatalf("Status() while listing fails = %+v, want unhealthy, not synced, LastError injected", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	synced := h.es.WaitForSync(ctx)
	cancel()
	if synced {
		t.Fatal("WaitForSync while listing fails = true, want false")
	}
	if n := h.logs.count("Kubernetes API unreachable"); n != 1 {
		t.Errorf("after %d failed lists, %d Warn lines, want 1\n%s", h.failedLists.Load(), n, h.logs)
	}

	h.fail.Store(nil)
	waitUntil(t, waitRetry, "healthy and synced", func() bool { s := h.es.Status(); return s.Healthy && s.Synced })
	if n := h.logs.count("Kubernetes API reachable again"); n != 1 {
		t.Errorf("after recovery, %d Info lines, want 1\n%s", n, h.logs)
	}
	h.waitWatch()
	h.waitChange(map[string]Endpoint{})
	h.create(newSlice("redis-a", testSvc, podEP("redis-0", "10.0.0.1", cond(true, true, false))))
	r0 := Endpoint{Pod: "redis-0", Address: "10.0.0.1", Ready: true, Serving: true, Slice: "redis-a"}
	h.waitChange(map[string]Endpoint{"redis-0": r0})

	// Phase 2: the watch drops and the API server refuses connections.
	refused := error(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	h.fail.Store(&refused)
	h.drainWatchSignals()
	h.stopWatches()
	waitUntil(t, waitRetry, "unhealthy after the watch dropped", func() bool { return !h.es.Status().Healthy })
	s = h.es.Status()
	if !strings.Contains(s.LastError, "connection refused") {
		t.Errorf("Status().LastError = %q, want connection refused", s.LastError)
	}
	if got := h.es.Snapshot(); !maps.Equal(got, map[string]Endpoint{"redis-0": r0}) {
		t.Errorf("Snapshot() while unreachable = %v, want the last snapshot", got)
	}
	h.fail.Store(nil)
	waitUntil(t, waitRetry, "healthy again", func() bool { return h.es.Status().Healthy })
	h.waitWatch()
	h.create(newSlice("redis-b", testSvc, podEP("redis-1", "10.0.0.2", cond(true, true, false))))
	h.waitChange(map[string]Endpoint{
		"redis-0": r0,
		"redis-1": {Pod: "redis-1", Address: "10.0.0.2", Ready: true, Serving: true, Slice: "redis-b"},
	})
	if w, i := h.logs.count("Kubernetes API unreachable"), h.logs.count("Kubernetes API reachable again"); w != 2 || i != 2 {
		t.Errorf("after two outages: %d Warn and %d Info lines, want 2 and 2\n%s", w, i, h.logs)
	}
}

// --- Harness. ---

type harness struct {
	t       *testing.T
	client  *fake.Clientset
	es      *EndpointSlices
	logs    *syncBuffer
	changes chan map[string]Endpoint

	inFlight atomic.Int32
	overlap  atomic.Bool

	fail        atomic.Pointer[error] // when set, List and Watch return it
	failedLists atomic.Int64

	watchStarted chan struct{}
	mu           sync.Mutex // guards watchers
	watchers     []watch.Interface
}

// startHarness starts an EndpointSlices on a fake clientset holding objs.
// edit, if not nil, adjusts the options.
func startHarness(t *testing.T, edit func(*EndpointSlicesOptions), objs ...runtime.Object) *harness {
	t.Helper()
	h := newHarness(t, edit, objs...)
	h.run()
	return h
}

func newHarness(t *testing.T, edit func(*EndpointSlicesOptions), objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{
		t:            t,
		client:       fake.NewClientset(objs...),
		logs:         &syncBuffer{},
		changes:      make(chan map[string]Endpoint, 1000),
		watchStarted: make(chan struct{}, 100),
	}
	h.client.PrependReactor("list", "endpointslices", h.listReactor)
	// The fake's watch misses objects created between its list and its
	// watch: tests wait for watchStarted before creating anything.
	h.client.PrependWatchReactor("*", h.watchReactor)

	opts := EndpointSlicesOptions{
		Client:    h.client,
		Namespace: testNS,
		Service:   testSvc,
		Logger:    slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnChange:  h.onChange,
	}
	if edit != nil {
		edit(&opts)
	}
	es, err := NewEndpointSlices(opts)
	if err != nil {
		t.Fatalf("NewEndpointSlices: %v", err)
	}
	h.es = es
	return h
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.es.Run(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
		if h.overlap.Load() {
			h.t.Error("OnChange ran concurrently with itself")
		}
		if h.t.Failed() {
			h.t.Logf("discovery log:\n%s", h.logs)
		}
	})
}

func (h *harness) onChange(m map[string]Endpoint) {
	if h.inFlight.Add(1) > 1 {
		h.overlap.Store(true)
	}
	defer h.inFlight.Add(-1)
	h.changes <- m
}

func (h *harness) listReactor(k8stesting.Action) (bool, runtime.Object, error) {
	if err := h.fail.Load(); err != nil {
		h.failedLists.Add(1)
		return true, nil, *err
	}
	return false, nil, nil
}

func (h *harness) watchReactor(action k8stesting.Action) (bool, watch.Interface, error) {
	if err := h.fail.Load(); err != nil {
		return true, nil, *err
	}
	var opts metav1.ListOptions
	if wa, ok := action.(k8stesting.WatchActionImpl); ok {
		opts = wa.ListOptions
	}
	w, err := h.client.Tracker().Watch(action.GetResource(), action.GetNamespace(), opts)
	if err != nil {
		return true, nil, err
	}
	h.mu.Lock()
	h.watchers = append(h.watchers, w)
	h.mu.Unlock()
	select {
	case h.watchStarted <- struct{}{}:
	default:
	}
	return true, w, nil
}

// waitWatch waits until the informer's watch is in place.
func (h *harness) waitWatch() {
	h.t.Helper()
	select {
	case <-h.watchStarted:
	case <-time.After(waitRetry):
		h.t.Fatalf("the informer started no watch within %v", waitRetry)
	}
}

// drainWatchSignals forgets watches already started, so the next waitWatch
// waits for a new one.
func (h *harness) drainWatchSignals() {
	for {
		select {
		case <-h.watchStarted:
		default:
			return
		}
	}
}

// stopWatches ends every open watch, as a dropped connection would.
func (h *harness) stopWatches() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.watchers {
		w.Stop()
	}
	h.watchers = nil
}

// waitChange reads OnChange snapshots until one equals want. Intermediate
// snapshots may be coalesced away, so it skips the ones that differ.
func (h *harness) waitChange(want map[string]Endpoint) {
	h.t.Helper()
	deadline := time.After(waitFor)
	var last map[string]Endpoint
	for {
		select {
		case got := <-h.changes:
			if maps.Equal(got, want) {
				return
			}
			last = got
		case <-deadline:
			h.t.Fatalf("no OnChange with %v within %v; last was %v", want, waitFor, last)
		}
	}
}

func (h *harness) create(s *discoveryv1.EndpointSlice) {
	h.t.Helper()
	if _, err := h.client.DiscoveryV1().EndpointSlices(s.Namespace).Create(context.Background(), s.DeepCopy(), metav1.CreateOptions{}); err != nil {
		h.t.Fatalf("create %s: %v", s.Name, err)
	}
}

func (h *harness) update(s *discoveryv1.EndpointSlice) {
	h.t.Helper()
	u := s.DeepCopy()
	u.ResourceVersion = "" // an empty resourceVersion makes the update unconditional
	if _, err := h.client.DiscoveryV1().EndpointSlices(s.Namespace).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		h.t.Fatalf("update %s: %v", s.Name, err)
	}
}

func (h *harness) delete(name string) {
	h.t.Helper()
	if err := h.client.DiscoveryV1().EndpointSlices(testNS).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatalf("delete %s: %v", name, err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- Builders. ---

func newSlice(name, service string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: testNS,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
}

func podEP(pod, addr string, c discoveryv1.EndpointConditions) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Conditions: c, TargetRef: podRef(pod)}
	if addr != "" {
		ep.Addresses = []string{addr}
	}
	return ep
}

func podRef(name string) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: name}
}

func withHostname(ep discoveryv1.Endpoint, hostname string) discoveryv1.Endpoint {
	ep.Hostname = &hostname
	return ep
}

func withNode(ep discoveryv1.Endpoint, node, zone string) discoveryv1.Endpoint {
	ep.NodeName, ep.Zone = &node, &zone
	return ep
}

func cond(ready, serving, terminating bool) discoveryv1.EndpointConditions {
	return discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating}
}

func ptr[T any](v T) *T { return &v }

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) count(s string) int { return strings.Count(b.String(), s) }

// An endpoint's port is the one of the asked-for name, else the slice's
// only port.
func TestEndpointPort(t *testing.T) {
	port := func(name string, p int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &p}
	}
	for _, tc := range []struct {
		name  string
		ports []discoveryv1.EndpointPort
		want  int
	}{
		{"named", []discoveryv1.EndpointPort{port("redis", 6379), port("sentinel", 26379)}, 26379},
		{"only", []discoveryv1.EndpointPort{port("", 5000)}, 5000},
		{"only, other name", []discoveryv1.EndpointPort{port("tcp", 5001)}, 5001},
		{"several, none named", []discoveryv1.EndpointPort{port("a", 1), port("b", 2)}, 0},
		{"none", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSlice("s", testSvc, podEP("sentinel-0", "10.0.0.1", discoveryv1.EndpointConditions{}))
			s.Ports = tc.ports
			eps := sliceEndpoints(s)
			if got := eps[0].Port("sentinel"); got != tc.want {
				t.Errorf("Port(sentinel) = %d, want %d (Ports %q)", got, tc.want, eps[0].Ports)
			}
		})
	}
}
