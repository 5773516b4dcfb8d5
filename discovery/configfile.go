package discovery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// DefaultDebounce is the wait after the last file system event before the
// file is re-read, when ConfigFileOptions.Debounce is 0. The kubelet's
// ConfigMap update and an editor's save are a handful of events within a
// few milliseconds.
const DefaultDebounce = 100 * time.Millisecond

// ConfigFileOptions configures a config file watch.
type ConfigFileOptions struct {
	// Path of the config file. Its directory is watched. Required.
	Path string
	// Debounce is the wait after the last event before re-reading.
	// 0 = DefaultDebounce (100ms).
	Debounce time.Duration
	// Logger receives read and watch errors. nil discards.
	Logger *slog.Logger
	// OnChange is called with the file's new bytes when their SHA-256
	// differs from the last bytes seen (and on Reload, see there). Calls come
	// from the Run goroutine, one at a time. Required.
	OnChange func(data []byte)
}

// ConfigFile watches one config file and hands changed contents to
// OnChange. Run does the watching; Reload forces a re-read, for SIGHUP.
//
// It watches the file's directory, never the file: Kubernetes updates a
// ConfigMap volume by swapping the ..data symlink, and editors save by
// writing a new file and renaming it over the old one; a watch on the file
// itself would follow the old inode and go quiet. Any event in the
// directory starts (or restarts) the debounce timer; when it fires, the
// file is read through its symlinks, as start-up reads it (config.ReadFile:
// a regular file of bounded size), and its hash compared with the last
// bytes seen, so events for other files cost one read and no call.
//
// Write the file by rename, as editors and the kubelet do. An empty file is
// never handed over (a writer that truncates in place is mid-write); a
// writer that pauses longer than Debounce after writing part of the file
// can have that part handed over (the strict parse downstream usually
// rejects it, and the end of the write brings another read). A file mounted
// with subPath is never updated by the kubelet; mount the whole ConfigMap
// as a directory.
type ConfigFile struct {
	path     string
	dir      string
	debounce time.Duration
	logger   *slog.Logger
	onChange func([]byte)
	reload   chan struct{} // capacity 1: a forced re-read is pending
	started  atomic.Bool

	// Owned by the Run goroutine.
	last [sha256.Size]byte // hash of the last bytes seen
	seen bool              // last is set
}

// NewConfigFile prepares a watch of opts.Path. initial is the content the
// caller has already loaded and is running; a later read with the same
// bytes calls no OnChange. With a nil initial, the first successful read is
// handed over.
func NewConfigFile(opts ConfigFileOptions, initial []byte) (*ConfigFile, error) {
	if opts.Path == "" {
		return nil, errors.New("discovery: config file: no Path")
	}
	if opts.OnChange == nil {
		return nil, errors.New("discovery: config file: no OnChange")
	}
	if opts.Debounce < 0 {
		return nil, fmt.Errorf("discovery: config file: debounce %v is negative", opts.Debounce)
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("discovery: config file %q: %w", opts.Path, err)
	}
	debounce := opts.Debounce
	if debounce == 0 {
		debounce = DefaultDebounce
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &ConfigFile{
		path:     path,
		dir:      filepath.Dir(path),
		debounce: debounce,
		logger:   logger.With("config", path),
		onChange: opts.OnChange,
		reload:   make(chan struct{}, 1),
	}
	if initial != nil {
		c.last = sha256.Sum256(initial)
		c.seen = true
	}
	return c, nil
}

// WatchConfigFile watches opts.Path until ctx ends; see ConfigFile. It
// returns an error only if the watch cannot be set up, and nil when ctx
// ends. Use NewConfigFile and Run instead to also have Reload.
func WatchConfigFile(ctx context.Context, opts ConfigFileOptions, initial []byte) error {
	c, err := NewConfigFile(opts, initial)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// Reload asks Run to re-read the file now, without waiting for an event,
// and to call OnChange with its bytes even if they equal the last bytes
// seen: an operator's SIGHUP means "apply the file", and the earlier apply
// may have failed for a reason outside the file. It never blocks; reloads
// requested while one is pending are merged. A reload requested before Run
// starts is done when it starts.
func (c *ConfigFile) Reload() {
	select {
	case c.reload <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends and returns nil then. It returns an error only
// if the directory watch cannot be set up; after that every error (the file
// missing for a moment, a read error, an fsnotify error) is logged and the
// loop goes on. Right after the watch is in place the file is read once, so
// a change made between the caller's own read and Run is not missed. Call
// Run once.
func (c *ConfigFile) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		panic("discovery: ConfigFile.Run called twice")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("discovery: config file %q: %w", c.path, err)
	}
	defer w.Close()
	if err := w.Add(c.dir); err != nil {
		return fmt.Errorf("discovery: config file %q: watch directory: %w", c.path, err)
	}
	c.logger.Debug("watching config directory", "dir", c.dir, "debounce", c.debounce)
	c.check(false)

	timer := time.NewTimer(c.debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil // only after Close
			}
			c.logger.Debug("config directory event", "event", ev.String())
			timer.Reset(c.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// Typically an inotify queue overflow: events were lost, so
			// re-read as if something changed.
			c.logger.Warn("config directory watch error; re-reading", "err", err)
			timer.Reset(c.debounce)
		case <-timer.C:
			c.check(false)
		case <-c.reload:
			timer.Stop()
			c.check(true)
		}
	}
}

// check reads the file and calls OnChange if its hash differs from the last
// seen, or always when forced.
func (c *ConfigFile) check(force bool) {
	data, err := config.ReadFile(c.path) // follows ..data and other symlinks
	if err != nil {
		// Between a delete and a re-create, or mid-swap on some file
		// systems; or the path is not a regular file, or is over
		// config.ReadFile's bound. The next event brings another read.
		c.logger.Warn("cannot read config file; keeping the running config", "err", err)
		return
	}
	if len(data) == 0 {
		// A writer that truncates in place is between its truncate and
		// its write; no valid config is empty. Its write brings an event.
		c.logger.Warn("config file is empty; keeping the running config")
		return
	}
	sum := sha256.Sum256(data)
	if c.seen && sum == c.last && !force {
		c.logger.Debug("config file unchanged", "sha256", hex.EncodeToString(sum[:]))
		return
	}
	c.last, c.seen = sum, true
	c.logger.Debug("config file changed", "sha256", hex.EncodeToString(sum[:]), "bytes", len(data), "forced", force)
	c.onChange(data)
}
