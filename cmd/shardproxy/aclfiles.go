package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/shardproxy/shardproxy/discovery"
	"github.com/shardproxy/shardproxy/proxy/config"
)

// aclFiles watches the pools' acl_files, as the config file is watched
// (discovery.ConfigFile: the directory, through symlinks, by hash), and
// re-applies the configuration when one changes: the reload reads every
// acl_file again, so a bad one leaves the running users in place, is
// logged and counted as a rejected reload, like a bad config file.
type aclFiles struct {
	logger *slog.Logger
	reload func() // the config watch's Reload

	mu      sync.Mutex                    // guards running
	running map[string]context.CancelFunc // by path
}

func newACLFiles(logger *slog.Logger, reload func()) *aclFiles {
	return &aclFiles{logger: logger, reload: reload, running: map[string]context.CancelFunc{}}
}

// update watches the acl_files cfg names, and stops watching those it no
// longer names.
func (w *aclFiles) update(ctx context.Context, cfg *config.Config) {
	want := map[string]bool{}
	for _, p := range cfg.Pools {
		if p.ACLFile != "" {
			want[p.ACLFile] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for path, cancel := range w.running {
		if !want[path] {
			cancel()
			delete(w.running, path)
		}
	}
	for path := range want {
		if w.running[path] != nil {
			continue
		}
		// The bytes as of now: the config just loaded read them a moment
		// ago, and Run reads the file again once its watch is in place.
		initial, err := config.ReadFile(path)
		if err != nil {
			initial = nil
		}
		cf, err := discovery.NewConfigFile(discovery.ConfigFileOptions{Path: path, Logger: w.logger, OnChange: w.changed}, initial)
		if err != nil {
			w.logger.Error("acl_file watch", "file", path, "err", err)
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w.running[path] = cancel
		go w.run(wctx, cf, path)
	}
}

// run watches one acl_file until its context ends.
func (w *aclFiles) run(ctx context.Context, cf *discovery.ConfigFile, path string) {
	if err := cf.Run(ctx); err != nil {
		w.logger.Error("acl_file watch failed; reload with SIGHUP", "file", path, "err", err)
	}
}

// changed re-applies the configuration, which reads the acl_files again.
func (w *aclFiles) changed([]byte) { w.reload() }

// stop ends every watch.
func (w *aclFiles) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for path, cancel := range w.running {
		cancel()
		delete(w.running, path)
	}
}
