package discovery

import (
	"context"
	"log/slog"
	"slices"
	"sync"
)

// SentinelSpec is one watch a SentinelSet keeps running: a pool's
// Sentinels and the masters of its groups, under the pool's name.
type SentinelSpec struct {
	Key     string // the pool's name
	Options SentinelOptions
	// TLS names the settings behind Options.TLS, which a func cannot be
	// compared by: a spec whose TLS changed gets a new watcher.
	TLS string
}

// SentinelSet runs a SentinelWatcher per spec, as the configuration asks
// for them: Set starts the watchers of new or changed specs and stops
// those of specs that are gone, so a reload that keeps a pool's Sentinels
// keeps its watcher and what it knows.
type SentinelSet struct {
	logger *slog.Logger

	mu       sync.Mutex
	watchers map[string]*runningSentinels
}

// runningSentinels is one spec's watcher while it runs.
type runningSentinels struct {
	spec    SentinelSpec
	watcher *SentinelWatcher
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewSentinelSet returns an empty set that logs to logger (nil discards).
func NewSentinelSet(logger *slog.Logger) *SentinelSet {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &SentinelSet{logger: logger, watchers: map[string]*runningSentinels{}}
}

// Set makes the running watchers those of specs: a spec whose Sentinels,
// credentials, masters, timings or TLS changed gets a new watcher. Watchers
// run until ctx ends or Stop. The error is the first spec refused by
// NewSentinelWatcher; the other specs are set all the same.
func (s *SentinelSet) Set(ctx context.Context, specs []SentinelSpec) error {
	var stopped []*runningSentinels
	// Wait for stopped watchers without the lock: one may be in its
	// OnChange, which may Poke.
	defer func() {
		for _, r := range stopped {
			r.stop()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	var firstErr error
	keep := map[string]bool{}
	for _, spec := range specs {
		keep[spec.Key] = true
		if old := s.watchers[spec.Key]; old != nil {
			if sameSentinelSpec(old.spec, spec) {
				continue
			}
			old.cancel()
			stopped = append(stopped, old)
			delete(s.watchers, spec.Key)
		}
		w, err := NewSentinelWatcher(spec.Options)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		r := &runningSentinels{spec: spec, watcher: w, cancel: cancel, done: make(chan struct{})}
		s.watchers[spec.Key] = r
		go r.run(wctx, s.logger)
	}
	for key, r := range s.watchers {
		if !keep[key] {
			r.cancel()
			stopped = append(stopped, r)
			delete(s.watchers, key)
		}
	}
	return firstErr
}

func (r *runningSentinels) run(ctx context.Context, logger *slog.Logger) {
	defer close(r.done)
	if err := r.watcher.Run(ctx); err != nil && ctx.Err() == nil {
		logger.Error("sentinel watch ended", "pool", r.spec.Key, "err", err)
	}
}

func (r *runningSentinels) stop() {
	r.cancel()
	<-r.done
}

// sameSentinelSpec reports whether b asks for what a runs, callbacks
// aside.
func sameSentinelSpec(a, b SentinelSpec) bool {
	x, y := a.Options, b.Options
	return slices.Equal(x.Sentinels, y.Sentinels) && slices.Equal(x.Masters, y.Masters) &&
		x.Username == y.Username && x.Password == y.Password &&
		x.Poll == y.Poll && x.Timeout == y.Timeout && a.TLS == b.TLS
}

// Poke asks the Sentinels of spec key about master now.
func (s *SentinelSet) Poke(key, master string) {
	s.mu.Lock()
	r := s.watchers[key]
	s.mu.Unlock()
	if r != nil {
		r.watcher.Poke(master)
	}
}

// Snapshot is every running watcher's view, by spec key.
func (s *SentinelSet) Snapshot() map[string]map[string]SentinelMaster {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]SentinelMaster, len(s.watchers))
	for key, r := range s.watchers {
		out[key] = r.watcher.Snapshot()
	}
	return out
}

// Stop stops every watcher and waits for them to end.
func (s *SentinelSet) Stop() {
	s.mu.Lock()
	running := s.watchers
	s.watchers = map[string]*runningSentinels{}
	s.mu.Unlock()
	for _, r := range running {
		r.stop()
	}
}
