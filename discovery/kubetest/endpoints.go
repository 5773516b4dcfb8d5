package kubetest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// WaitEndpointSlices watches the EndpointSlices of service (those labelled
// kubernetes.io/service-name=service) in namespace until cond reports true
// for all of them, sorted by name, and returns the time it saw the change
// that made cond true (or the time of the first list, if cond was true
// then). It fails t after WaitTimeout, showing the slices it saw last.
func (cp *ControlPlane) WaitEndpointSlices(t testing.TB, namespace, service string, cond func([]discoveryv1.EndpointSlice) bool) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	api := cp.Client.DiscoveryV1().EndpointSlices(namespace)
	opts := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service}
	byName := make(map[string]discoveryv1.EndpointSlice)
	current := func() []discoveryv1.EndpointSlice {
		s := make([]discoveryv1.EndpointSlice, 0, len(byName))
		for _, es := range byName {
			s = append(s, es)
		}
		slices.SortFunc(s, func(a, b discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		return s
	}
	var lastErr error
	for ctx.Err() == nil {
		list, err := api.List(ctx, opts)
		if err != nil {
			lastErr = err
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		clear(byName)
		for _, es := range list.Items {
			byName[es.Name] = es
		}
		if cond(current()) {
			return time.Now()
		}
		w, err := api.Watch(ctx, metav1.ListOptions{LabelSelector: opts.LabelSelector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			lastErr = err
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		if seen, ok := watchSlices(w, byName, func() bool { return cond(current()) }); ok {
			return seen
		}
		// The watch ended (expired, or ctx is done): list again.
	}
	t.Fatalf("kubetest: waiting for the EndpointSlices of service %s/%s: %v (last error: %v); last seen:\n%s",
		namespace, service, ctx.Err(), lastErr, FormatEndpointSlices(current()))
	return time.Time{}
}

// watchSlices applies w's events to byName until check reports true, which
// it returns with the time, or until the watch ends.
func watchSlices(w watch.Interface, byName map[string]discoveryv1.EndpointSlice, check func() bool) (time.Time, bool) {
	defer w.Stop()
	for ev := range w.ResultChan() {
		es, ok := ev.Object.(*discoveryv1.EndpointSlice)
		switch {
		case ev.Type == watch.Error || !ok:
			return time.Time{}, false
		case ev.Type == watch.Deleted:
			delete(byName, es.Name)
		default:
			byName[es.Name] = *es
		}
		if check() {
			return time.Now(), true
		}
	}
	return time.Time{}, false
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// WaitEndpointReady waits until an EndpointSlice of service lists the
// address ip with condition ready=true and a targetRef to the pod podName
// (any pod if podName is ""), and returns the time it saw that.
func (cp *ControlPlane) WaitEndpointReady(t testing.TB, namespace, service, podName string, ip netip.Addr) time.Time {
	t.Helper()
	return cp.WaitEndpointSlices(t, namespace, service, func(s []discoveryv1.EndpointSlice) bool {
		pod, ok := ReadyAddresses(s)[ip]
		return ok && (podName == "" || pod == podName)
	})
}

// ReadyAddresses returns the addresses that slices list with condition
// ready=true, each with the name of the pod its targetRef names ("" if
// none). An endpoint whose ready condition is unset counts as ready, as the
// EndpointSlice API says.
func ReadyAddresses(slices []discoveryv1.EndpointSlice) map[netip.Addr]string {
	ready := make(map[netip.Addr]string)
	for _, es := range slices {
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			pod := ""
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				pod = ep.TargetRef.Name
			}
			for _, a := range ep.Addresses {
				if addr, err := netip.ParseAddr(a); err == nil {
					ready[addr] = pod
				}
			}
		}
	}
	return ready
}

// FormatEndpointSlices describes slices one endpoint a line, for failure
// messages:
//
//	redis-abcde IPv4 198.18.0.6 ready=true serving=true terminating=false pod=redis-0
func FormatEndpointSlices(slices []discoveryv1.EndpointSlice) string {
	if len(slices) == 0 {
		return "(no EndpointSlices)"
	}
	var b strings.Builder
	for _, es := range slices {
		if len(es.Endpoints) == 0 {
			fmt.Fprintf(&b, "%s %s (no endpoints)\n", es.Name, es.AddressType)
		}
		for _, ep := range es.Endpoints {
			fmt.Fprintf(&b, "%s %s %s ready=%s serving=%s terminating=%s", es.Name, es.AddressType,
				strings.Join(ep.Addresses, ","), boolPtr(ep.Conditions.Ready), boolPtr(ep.Conditions.Serving), boolPtr(ep.Conditions.Terminating))
			if ep.TargetRef != nil {
				fmt.Fprintf(&b, " %s=%s", strings.ToLower(ep.TargetRef.Kind), ep.TargetRef.Name)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func boolPtr(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}
