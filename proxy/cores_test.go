package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNextCores(t *testing.T) {
	for _, tc := range []struct {
		cur, max int
		busy     float64
		calm     int // calm before
		want     int
		wantCalm int
	}{
		{cur: 1, max: 4, busy: 0.5, want: 1},
		{cur: 1, max: 4, busy: 0.84, want: 1},
		{cur: 1, max: 4, busy: 0.86, want: 2},                      // nearly saturated: double
		{cur: 2, max: 4, busy: 1.9, calm: 2, want: 4},              // and again; calm resets
		{cur: 4, max: 4, busy: 3.9, want: 4},                       // at the cap
		{cur: 2, max: 3, busy: 1.8, want: 3},                       // doubling stops at the cap
		{cur: 2, max: 4, busy: 0.7, calm: 3, want: 2},              // one P would be over 0.6 busy
		{cur: 2, max: 4, busy: 0.5, calm: 0, want: 2, wantCalm: 1}, // low, but not for long yet
		{cur: 2, max: 4, busy: 0.5, calm: 3, want: 1},              // low for coreCalmSamples samples
		{cur: 4, max: 4, busy: 1.0, calm: 3, want: 3},              // one step down at a time
		{cur: 1, max: 1, busy: 1.0, want: 1},
	} {
		calm := tc.calm
		if got := nextCores(tc.cur, tc.max, tc.busy, &calm); got != tc.want || calm != tc.wantCalm {
			t.Errorf("nextCores(%d, %d, %.2f, calm %d) = %d, calm %d; want %d, calm %d",
				tc.cur, tc.max, tc.busy, tc.calm, got, calm, tc.want, tc.wantCalm)
		}
	}
}

// The scaler starts at one P, grows while the process burns CPU and comes
// back down once it stops, then leaves Max when it ends. GOMAXPROCS itself
// is left alone: the test watches the values the scaler sets.
func TestCoreScalerFollowsLoad(t *testing.T) {
	var mu sync.Mutex
	var set []int
	last := func() int {
		mu.Lock()
		defer mu.Unlock()
		if len(set) == 0 {
			return 0
		}
		return set[len(set)-1]
	}
	s := &CoreScaler{Max: 2, Interval: 20 * time.Millisecond, set: func(n int) {
		mu.Lock()
		set = append(set, n)
		mu.Unlock()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	waitFor := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for last() != want {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: scaler set %v, want it to reach %d", what, set, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(1, "at start")

	var stop atomic.Bool
	var burners sync.WaitGroup
	for i := 0; i < 2; i++ {
		burners.Add(1)
		go func() {
			defer burners.Done()
			x := 0
			for !stop.Load() {
				for j := 0; j < 1000; j++ {
					x += j
				}
			}
			_ = x
		}()
	}
	waitFor(2, "while two goroutines burn CPU")
	stop.Store(true)
	burners.Wait()
	waitFor(1, "once the load is gone")

	cancel()
	<-done
	if got := last(); got != 2 {
		t.Fatalf("after Run returned GOMAXPROCS was set to %d, want Max (2)", got)
	}
}
