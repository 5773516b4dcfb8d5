package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// Services starts a watch per wanted Service, reports each Service's
// endpoints under its own key, and stops the watches no longer wanted.
func TestServices(t *testing.T) {
	client := fake.NewClientset([]runtime.Object{
		newSlice("redis-a", testSvc, podEP("redis-0", "10.0.0.1", cond(true, true, false))),
		newSlice("sessions-a", "sessions", podEP("sessions-0", "10.0.1.1", cond(true, true, false))),
	}...)
	var mu sync.Mutex
	got := map[ServiceKey]map[string]Endpoint{}
	s := NewServices(client, nil, func(k ServiceKey, eps map[string]Endpoint) {
		mu.Lock()
		got[k] = eps
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	redis, sessions := ServiceKey{testNS, testSvc}, ServiceKey{testNS, "sessions"}
	if err := s.Set(ctx, []ServiceKey{redis, sessions}); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, waitFor)
	defer wcancel()
	if !s.WaitForSync(wctx) {
		t.Fatal("WaitForSync = false")
	}
	deadline := time.Now().Add(waitFor)
	for {
		mu.Lock()
		n := len(got)
		r, c := got[redis]["redis-0"].Address, got[sessions]["sessions-0"].Address
		mu.Unlock()
		if n == 2 && r == "10.0.0.1" && c == "10.0.1.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OnChange got %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Set(ctx, []ServiceKey{redis}); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if _, ok := st[sessions]; ok || len(st) != 1 || !st[redis].Synced {
		t.Fatalf("Status after dropping sessions = %+v", st)
	}
	s.Stop()
	if len(s.Status()) != 0 {
		t.Fatalf("Status after Stop = %+v", s.Status())
	}
}
