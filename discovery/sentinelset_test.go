package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Set keeps the watcher of a spec that did not change, replaces the one of
// a spec that did, and stops the watchers of specs that are gone; Stop
// stops the rest.
func TestSentinelSetKeepsReplacesStops(t *testing.T) {
	m := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "g0", m.Addr, 1)
	set := NewSentinelSet(nil)
	ctx := context.Background()
	spec := func(key string, poll time.Duration) SentinelSpec {
		return SentinelSpec{Key: key, Options: SentinelOptions{Sentinels: []string{s.Addr}, Masters: []string{"g0"}, Poll: poll}}
	}
	if err := set.Set(ctx, []SentinelSpec{spec("a", time.Second), spec("b", time.Second)}); err != nil {
		t.Fatal(err)
	}
	a, b := set.watchers["a"], set.watchers["b"]
	if err := set.Set(ctx, []SentinelSpec{spec("a", time.Second), spec("b", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if set.watchers["a"] != a {
		t.Error("an unchanged spec got a new watcher")
	}
	if set.watchers["b"] == b {
		t.Error("a changed spec kept its watcher")
	}
	select {
	case <-b.done:
	default:
		t.Error("the replaced watcher still runs")
	}
	deadline := time.Now().Add(10 * time.Second)
	for set.Snapshot()["a"]["g0"].Addr != m.Addr {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot = %+v, want g0 at %s", set.Snapshot(), m.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := set.Set(ctx, []SentinelSpec{spec("b", 2*time.Second)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	default:
		t.Error("the watcher of a removed spec still runs")
	}
	b2 := set.watchers["b"]
	set.Stop()
	select {
	case <-b2.done:
	default:
		t.Error("Stop left a watcher running")
	}
	if err := set.Set(ctx, []SentinelSpec{{Key: "bad"}}); err == nil {
		t.Error("a spec without Sentinels was accepted")
	}
}

// A watcher whose OnChange pokes the set while Set replaces that watcher
// must not deadlock Set.
func TestSentinelSetReplaceDuringPokingOnChange(t *testing.T) {
	m := proxytest.StartRedis(t)
	s := proxytest.StartSentinel(t, "g0", m.Addr, 1)
	set := NewSentinelSet(nil)
	t.Cleanup(set.Stop)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	onChange := func(map[string]SentinelMaster) {
		once.Do(func() {
			close(entered)
			<-release
			set.Poke("a", "g0")
		})
	}
	spec := func(poll time.Duration) SentinelSpec {
		return SentinelSpec{Key: "a", Options: SentinelOptions{Sentinels: []string{s.Addr}, Masters: []string{"g0"}, Poll: poll, OnChange: onChange}}
	}
	if err := set.Set(context.Background(), []SentinelSpec{spec(time.Second)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("OnChange was not called")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		set.Set(context.Background(), []SentinelSpec{spec(2 * time.Second)})
	}()
	time.Sleep(100 * time.Millisecond) // let Set begin to replace the watcher
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Set did not return while the replaced watcher's OnChange poked the set")
	}
}
