package proxy

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// CoreScaler sets GOMAXPROCS to the number of cores the proxy's load keeps
// busy, between 1 and Max.
//
// A proxy spends most of its CPU on syscalls and on waking goroutines. With
// more Ps than the load needs, every wake-up may start or stop another OS
// thread, and each of those is a futex call and a context switch: at a load
// one core could carry, two Ps spend about 13% more CPU per request than
// one (bench/RESULTS.md). So the scaler starts at one P, doubles the count
// as soon as the Ps are nearly all busy, and gives one back only after the
// load has stayed well below what one fewer could carry.
type CoreScaler struct {
	// Max is the most Ps to use: the cores available to the process.
	Max int
	// Interval is how often CPU use is sampled.
	Interval time.Duration
	// Logger receives one debug line per change.
	Logger *slog.Logger
	// set changes GOMAXPROCS; tests replace it.
	set func(int)
}

// Thresholds of the scaler, as a fraction of the cores in use.
const (
	// coreScaleUp: the Ps are this busy, so the load may need more.
	coreScaleUp = 0.85
	// coreScaleDown: one fewer P would still be at most this busy.
	coreScaleDown = 0.6
	// coreCalmSamples is how many samples in a row must allow a smaller
	// count before it is taken, so a short lull does not shrink it.
	coreCalmSamples = 4
)

// DefaultCoreScaleInterval is the sampling period of a CoreScaler.
const DefaultCoreScaleInterval = 250 * time.Millisecond

// nextCores returns the number of Ps to use after a sample in which the
// process kept busy cores busy (CPU seconds per second) with cur Ps. calm
// counts the samples in a row that allowed fewer; it is updated.
func nextCores(cur, max int, busy float64, calm *int) int {
	if busy >= coreScaleUp*float64(cur) && cur < max {
		*calm = 0
		return min(2*cur, max)
	}
	if cur > 1 && busy < coreScaleDown*float64(cur-1) {
		*calm++
		if *calm >= coreCalmSamples {
			*calm = 0
			return cur - 1
		}
		return cur
	}
	*calm = 0
	return cur
}

// Run scales until ctx ends, starting at one P, and leaves GOMAXPROCS at
// Max when it returns.
func (s *CoreScaler) Run(ctx context.Context) {
	if s.Max <= 1 || !canMeasureCPU {
		return
	}
	set := s.set
	if set == nil {
		set = func(n int) { runtime.GOMAXPROCS(n) }
	}
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultCoreScaleInterval
	}
	cur, calm := 1, 0
	set(cur)
	defer set(s.Max)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastCPU, lastAt := processCPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cpu, at := processCPU(), time.Now()
		busy := (cpu - lastCPU).Seconds() / at.Sub(lastAt).Seconds()
		lastCPU, lastAt = cpu, at
		if next := nextCores(cur, s.Max, busy, &calm); next != cur {
			if s.Logger != nil {
				s.Logger.Debug("cores in use changed", "from", cur, "to", next, "busy_cores", busy)
			}
			cur = next
			set(cur)
		}
	}
}
