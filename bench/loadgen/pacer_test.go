package main

import (
	"testing"
	"time"
)

// A --rate worker sleeps once per unit: that must not allocate.
func TestPacerSleepAllocatesNothing(t *testing.T) {
	for name, p := range map[string]pacer{"newPacer": newPacer(), "timer": newTimerPacer()} {
		if allocs := testing.AllocsPerRun(100, func() {
			if !p.sleep(time.Microsecond) {
				t.Fatal("sleep = false before halt")
			}
		}); allocs != 0 {
			t.Errorf("%s: sleep allocates %v times, want 0", name, allocs)
		}
		p.halt()
	}
}

// halt wakes a worker that sleeps until its next unit, so a stopped run
// ends even when the rate is low.
func TestPacerHaltWakesSleep(t *testing.T) {
	for name, p := range map[string]pacer{"newPacer": newPacer(), "timer": newTimerPacer()} {
		woke := make(chan bool)
		go func() { woke <- p.sleep(time.Hour) }()
		time.Sleep(20 * time.Millisecond)
		p.halt()
		select {
		case ok := <-woke:
			if ok {
				t.Errorf("%s: sleep = true after halt, want false", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: sleep still waiting 10s after halt", name)
		}
	}
}
