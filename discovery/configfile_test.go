package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// changeBound is how long a test waits for an OnChange. The design target
// is well under a second (100 ms debounce plus a read); the bound is
// generous so a loaded machine does not flake. Latencies are logged.
const changeBound = 5 * time.Second

func TestConfigFileEditInPlace(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)

	at := time.Now()
	writeFile(t, path, "alpha: 2\n") // os.WriteFile truncates and writes
	w.expect("alpha: 2\n", at)

	at = time.Now()
	writeFile(t, path, "alpha: 3\n")
	w.expect("alpha: 3\n", at)
}

func TestConfigFileRenameOver(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)

	for i := 2; i <= 3; i++ {
		want := fmt.Sprintf("alpha: %d\n", i)
		tmp := writeFile(t, filepath.Join(dir, ".nutcracker.yml.swp"), want)
		at := time.Now()
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		w.expect(want, at)
	}
}

// The kubelet's atomic writer: a new timestamped directory, a ..data_tmp
// symlink to it renamed over ..data, then the old directory removed. The
// file the proxy opens is a symlink through ..data and never changes.
func TestConfigFileConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mkdir(t, filepath.Join(dir, "..2026_11_25_1"))
	writeFile(t, filepath.Join(dir, "..2026_11_25_1", "nutcracker.yml"), "alpha: 1\n")
	symlink(t, "..2026_11_25_1", filepath.Join(dir, "..data"))
	symlink(t, filepath.Join("..data", "nutcracker.yml"), filepath.Join(dir, "nutcracker.yml"))
	path := filepath.Join(dir, "nutcracker.yml")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)

	for i := 2; i <= 3; i++ {
		want := fmt.Sprintf("alpha: %d\n", i)
		oldTS := fmt.Sprintf("..2026_11_25_%d", i-1)
		newTS := fmt.Sprintf("..2026_11_25_%d", i)
		mkdir(t, filepath.Join(dir, newTS))
		writeFile(t, filepath.Join(dir, newTS, "nutcracker.yml"), want)
		symlink(t, newTS, filepath.Join(dir, "..data_tmp"))
		at := time.Now()
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, oldTS)); err != nil {
			t.Fatal(err)
		}
		w.expect(want, at)
	}
}

// A write of the same bytes must not call OnChange.
func TestConfigFileIdenticalBytes(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)
	unchanged := w.logs.count("config file unchanged") // the check at start

	writeFile(t, path, "alpha: 1\n")
	waitUntil(t, changeBound, "the identical write read", func() bool {
		return w.logs.count("config file unchanged") > unchanged
	})
	tmp := writeFile(t, filepath.Join(dir, "tmp"), "alpha: 1\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, changeBound, "the identical rename read", func() bool {
		return w.logs.count("config file unchanged") > unchanged+1
	})

	at := time.Now()
	writeFile(t, path, "alpha: 2\n")
	w.expect("alpha: 2\n", at) // the next call, so no call came before it
}

// A burst of writes is coalesced: OnChange sees the final bytes, far fewer
// calls than writes, and never the empty file between a truncate and its
// write. A loaded machine can pause the writer longer than the debounce
// between two writes, so a burst may be split: every call then carries a
// whole version, in write order.
func TestConfigFileBurst(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "v0\n")
	w := startConfigWatch(t, path, []byte("v0\n"), 500*time.Millisecond)

	const writes = 20
	var at time.Time
	for i := 1; i <= writes; i++ {
		at = time.Now()
		writeFile(t, path, fmt.Sprintf("v%d\n", i))
		time.Sleep(time.Millisecond)
	}
	last, calls := 0, 0
	for last < writes {
		c := w.next(at)
		calls++
		var v int
		if _, err := fmt.Sscanf(string(c.data), "v%d\n", &v); err != nil || v <= last || v > writes {
			t.Fatalf("OnChange(%q) after v%d, want a later whole version", c.data, last)
		}
		last = v
	}
	if calls > writes/2 {
		t.Errorf("%d writes made %d OnChange calls, want them coalesced", writes, calls)
	}
	// A sentinel change is the next call: nothing from the burst followed.
	at = time.Now()
	writeFile(t, path, "sentinel\n")
	w.expect("sentinel\n", at)
}

// A file truncated in place and written after a pause longer than the
// debounce: the empty file in between is logged and never handed over.
func TestConfigFileTruncatedThenWritten(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, changeBound, "the empty file logged", func() bool {
		return w.logs.count("config file is empty") > 0
	})
	at := time.Now()
	writeFile(t, path, "alpha: 2\n")
	w.expect("alpha: 2\n", at) // the next call, so "" never came
}

// A file deleted for a while is logged, not fatal; its return is seen.
func TestConfigFileDeletedThenRecreated(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, changeBound, "the missing file logged", func() bool {
		return w.logs.count("cannot read config file") > 0
	})
	at := time.Now()
	writeFile(t, path, "alpha: 2\n")
	w.expect("alpha: 2\n", at)
}

// Reload re-reads now and hands the bytes over even when unchanged.
func TestConfigFileReload(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), time.Hour) // no debounced read can fire

	at := time.Now()
	w.cf.Reload()
	w.expect("alpha: 1\n", at)

	// Reload sees a change that no event announced yet.
	writeFile(t, path, "alpha: 2\n")
	at = time.Now()
	w.cf.Reload()
	w.expect("alpha: 2\n", at)

	// A reload of a missing file is logged and the watch goes on.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.cf.Reload()
	waitUntil(t, changeBound, "the failed reload logged", func() bool {
		return w.logs.count("cannot read config file") > 0
	})
	writeFile(t, path, "alpha: 3\n")
	at = time.Now()
	w.cf.Reload()
	w.expect("alpha: 3\n", at)
}

// A config path that is a FIFO or a file larger than the config's bound is
// refused without blocking the watch, and the watch goes on.
func TestConfigFileNotRegularOrTooLarge(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "nutcracker.yml"), "alpha: 1\n")
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), time.Hour) // only Reload reads
	refused := func(what string) {
		t.Helper()
		before := w.logs.count("cannot read config file")
		w.cf.Reload()
		waitUntil(t, changeBound, what+" refused", func() bool {
			return w.logs.count("cannot read config file") > before
		})
	}

	big := writeFile(t, filepath.Join(dir, "big.tmp"), "#"+strings.Repeat("x", 8<<20)) // over the 4 MiB bound
	if err := os.Rename(big, path); err != nil {
		t.Fatal(err)
	}
	refused("the oversized file")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, let a reader stuck in opening the FIFO go, so
	// that the watch can stop.
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	refused("the FIFO")

	select {
	case c := <-w.calls:
		t.Fatalf("OnChange with %d bytes, want none", len(c.data))
	default:
	}
	tmp := writeFile(t, filepath.Join(dir, "next.tmp"), "alpha: 2\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	w.cf.Reload()
	w.expect("alpha: 2\n", at)
}

// A change between the caller's read and Run is handed over at start.
func TestConfigFileChangedBeforeRun(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "alpha: 2\n")
	at := time.Now()
	w := startConfigWatch(t, path, []byte("alpha: 1\n"), 0)
	w.expect("alpha: 2\n", at)
}

// With no initial bytes the first read is handed over.
func TestConfigFileNilInitial(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "nutcracker.yml"), "alpha: 1\n")
	at := time.Now()
	w := startConfigWatch(t, path, nil, 0)
	w.expect("alpha: 1\n", at)
}

func TestWatchConfigFileErrors(t *testing.T) {
	ok := func([]byte) {}
	missingDir := filepath.Join(t.TempDir(), "no-such-dir", "nutcracker.yml")
	tests := []struct {
		name string
		opts ConfigFileOptions
		want string
	}{
		{"no path", ConfigFileOptions{OnChange: ok}, "no Path"},
		{"no OnChange", ConfigFileOptions{Path: "x.yml"}, "no OnChange"},
		{"negative debounce", ConfigFileOptions{Path: "x.yml", OnChange: ok, Debounce: -1}, "negative"},
		{"directory missing", ConfigFileOptions{Path: missingDir, OnChange: ok}, "watch directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), changeBound)
			defer cancel()
			err := WatchConfigFile(ctx, tc.opts, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WatchConfigFile(%s) = %v, want an error containing %q", tc.name, err, tc.want)
			}
		})
	}
}

// --- Harness. ---

type configWatch struct {
	t     *testing.T
	cf    *ConfigFile
	logs  *syncBuffer
	calls chan configCall

	inFlight atomic.Int32
	overlap  atomic.Bool
}

type configCall struct {
	data []byte
	at   time.Time
}

// startConfigWatch runs a ConfigFile on path until the test ends, and waits
// until its directory watch is in place.
func startConfigWatch(t *testing.T, path string, initial []byte, debounce time.Duration) *configWatch {
	t.Helper()
	w := &configWatch{t: t, logs: &syncBuffer{}, calls: make(chan configCall, 100)}
	cf, err := NewConfigFile(ConfigFileOptions{
		Path:     path,
		Debounce: debounce,
		Logger:   slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnChange: w.onChange,
	}, initial)
	if err != nil {
		t.Fatalf("NewConfigFile: %v", err)
	}
	w.cf = cf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cf.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if w.overlap.Load() {
			t.Error("OnChange ran concurrently with itself")
		}
		if t.Failed() {
			t.Logf("config watch log:\n%s", w.logs)
		}
	})
	waitUntil(t, changeBound, "watching", func() bool { return w.logs.count("watching config directory") > 0 })
	return w
}

func (w *configWatch) onChange(data []byte) {
	if w.inFlight.Add(1) > 1 {
		w.overlap.Store(true)
	}
	defer w.inFlight.Add(-1)
	w.calls <- configCall{data: data, at: time.Now()}
}

// expect waits for the next OnChange and checks its bytes; since is when
// the change was made, for the latency log.
func (w *configWatch) expect(want string, since time.Time) {
	w.t.Helper()
	c := w.next(since)
	if !bytes.Equal(c.data, []byte(want)) {
		w.t.Fatalf("OnChange(%q), want OnChange(%q)", c.data, want)
	}
}

// next waits for the next OnChange and logs its latency since the change.
func (w *configWatch) next(since time.Time) configCall {
	w.t.Helper()
	select {
	case c := <-w.calls:
		w.t.Logf("OnChange(%q) %v after the change", c.data, c.at.Sub(since).Round(time.Millisecond))
		return c
	case <-time.After(changeBound):
		w.t.Fatalf("no OnChange within %v", changeBound)
		return configCall{}
	}
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
