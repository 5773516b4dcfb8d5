package main

import "time"

// A pacer puts a --rate worker to sleep until its next unit is due. Each
// worker owns one; halt, called from another goroutine when the run is
// stopped, wakes it for good. Neither allocates.
type pacer interface {
	// sleep waits for d and reports whether the run goes on: false once
	// halt has been called.
	sleep(d time.Duration) bool
	halt()
}

// timerPacer sleeps on a Go timer. Go's timers wake an otherwise idle
// process up to about a millisecond late, since the runtime waits for the
// network and for timers in epoll_wait, whose timeout is in milliseconds; so
// on Linux loadgen uses timerPacer only if it cannot make a timerfd.
type timerPacer struct {
	timer  *time.Timer
	halted chan struct{}
}

func newTimerPacer() *timerPacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerPacer{timer: t, halted: make(chan struct{})}
}

func (p *timerPacer) sleep(d time.Duration) bool {
	p.timer.Reset(d)
	select {
	case <-p.timer.C:
		return true
	case <-p.halted:
		p.timer.Stop()
		return false
	}
}

func (p *timerPacer) halt() {
	close(p.halted)
}
