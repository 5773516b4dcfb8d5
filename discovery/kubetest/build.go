package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Versions of the control plane that Binaries builds.
const (
	KubernetesVersion = "v1.37.2"
	// StagingVersion is the published version of the k8s.io staging modules
	// (k8s.io/api, k8s.io/apiserver, ...) that go with KubernetesVersion.
	StagingVersion = "v0.37.2"
	EtcdVersion    = "v3.7.3"
)

// CacheEnv names an environment variable that, when set, is the directory
// the binaries are cached in, instead of CacheDir's default. CI can point it
// at a directory it keeps between runs.
const CacheEnv = "SHARDPROXY_E2E_CACHE"

// Paths are the absolute paths of the control plane's binaries.
type Paths struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
}

// CacheDir returns the directory Binaries keeps the binaries in:
// $SHARDPROXY_E2E_CACHE if set, else os.UserCacheDir()/shardproxy-e2e,
// followed by a name made of the versions and the platform, for example
// ~/.cache/shardproxy-e2e/k8s-v1.37.2-etcd-v3.7.3-linux-amd64.
func CacheDir() (string, error) {
	root := os.Getenv(CacheEnv)
	if root == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("kubetest: no cache directory (set %s): %w", CacheEnv, err)
		}
		root = filepath.Join(dir, "shardproxy-e2e")
	}
	return filepath.Join(root, fmt.Sprintf("k8s-%s-etcd-%s-%s-%s",
		KubernetesVersion, EtcdVersion, runtime.GOOS, runtime.GOARCH)), nil
}

func (p Paths) all() []string { return []string{p.Etcd, p.KubeAPIServer, p.KubeControllerManager} }

func pathsIn(dir string) Paths {
	return Paths{
		Etcd:                  filepath.Join(dir, "etcd"),
		KubeAPIServer:         filepath.Join(dir, "kube-apiserver"),
		KubeControllerManager: filepath.Join(dir, "kube-controller-manager"),
	}
}

var built struct {
	mu    sync.Mutex // guards paths
	paths *Paths
}

// Binaries returns the paths of etcd, kube-apiserver and
// kube-controller-manager, building them into CacheDir first if they are not
// there. Building needs the go command and the module proxy, and takes 8 to
// 15 minutes on two cores; a file lock keeps two test processes from building
// at once, and the result is renamed into place only when complete. Progress
// goes to t.Logf. Binaries fails t if the build fails.
func Binaries(t testing.TB) Paths {
	t.Helper()
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.paths != nil {
		return *built.paths
	}
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if deadline, ok := testDeadline(t); ok && !complete(pathsIn(dir)) && time.Until(deadline) < 20*time.Minute {
		t.Logf("kubetest: the control plane is not built yet and the test binary ends in %v; "+
			"if the build does not fit, run once: go test ./discovery/kubetest -run TestBuild -timeout 30m",
			time.Until(deadline).Round(time.Second))
	}
	p, err := ensureBinaries(t.Context(), dir, t.Logf)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	built.paths = &p
	return p
}

// testDeadline is (*testing.T).Deadline, which testing.TB lacks.
func testDeadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

func complete(p Paths) bool {
	for _, f := range p.all() {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// ensureBinaries returns the binaries in dir, building them under a lock if
// they are missing.
func ensureBinaries(ctx context.Context, dir string, logf func(string, ...any)) (Paths, error) {
	p := pathsIn(dir)
	if complete(p) {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return p, err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return p, err
	}
	defer lock.Close() // releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		logf("kubetest: another process is building %s; waiting for its lock", dir)
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return p, fmt.Errorf("lock %s.lock: %w", dir, err)
		}
	}
	if complete(p) { // built by the process that held the lock
		return p, nil
	}
	// Temporary directories of builds that died with their test process.
	if stale, _ := filepath.Glob(dir + ".tmp-*"); len(stale) > 0 {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	start := time.Now()
	logf("kubetest: building kube-apiserver, kube-controller-manager %s and etcd %s into %s; "+
		"the first build takes 8 to 15 minutes on two cores", KubernetesVersion, EtcdVersion, dir)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return p, err
	}
	defer os.RemoveAll(tmp)
	stop := tick(logf, start)
	err = build(ctx, tmp, logf)
	stop()
	if err != nil {
		return p, err
	}
	os.RemoveAll(dir) // an incomplete directory left by hand
	if err := os.Rename(filepath.Join(tmp, "bin"), dir); err != nil {
		return p, err
	}
	logf("kubetest: built the control plane in %v", time.Since(start).Round(time.Second))
	return p, nil
}

// tick logs every minute that the build is still running, so a test run
// with -v does not look stuck.
func tick(logf func(string, ...any), start time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(time.Minute)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				logf("kubetest: still building (%v)", time.Since(start).Round(time.Second))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// build builds the three binaries into tmp/bin, using tmp for the modules it
// generates.
func build(ctx context.Context, tmp string, logf func(string, ...any)) error {
	goBin, err := goCommand()
	if err != nil {
		return err
	}
	bin := filepath.Join(tmp, "bin")
	k8s := filepath.Join(tmp, "k8s")
	etcd := filepath.Join(tmp, "etcd")
	for _, d := range []string{bin, k8s, etcd} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	run := func(dir string, args ...string) ([]byte, error) {
		return runGo(ctx, goBin, dir, args...)
	}

	// k8s.io/kubernetes replaces its k8s.io/* dependencies with
	// ./staging/src/..., which is not part of the module zip; a wrapper
	// module replaces them with their published versions instead.
	logf("kubetest: go mod download k8s.io/kubernetes@%s", KubernetesVersion)
	out, err := run(k8s, "mod", "download", "-json", "k8s.io/kubernetes@"+KubernetesVersion)
	if err != nil {
		return err
	}
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &dl); err != nil {
		return fmt.Errorf("go mod download -json: %w", err)
	}
	if dl.Error != "" {
		return fmt.Errorf("go mod download k8s.io/kubernetes@%s: %s", KubernetesVersion, dl.Error)
	}
	upstream, err := os.ReadFile(dl.GoMod)
	if err != nil {
		return err
	}
	staging := stagingModules(upstream)
	if len(staging) == 0 {
		return fmt.Errorf("no ./staging replace directives in %s", dl.GoMod)
	}
	if err := os.WriteFile(filepath.Join(k8s, "go.mod"), wrapperGoMod(staging), 0o644); err != nil {
		return err
	}
	logf("kubetest: go build kube-apiserver kube-controller-manager (%d staging modules at %s)", len(staging), StagingVersion)
	ldflags := versionLDFlags()
	if _, err := run(k8s, "build", "-ldflags", ldflags, "-o", bin+string(filepath.Separator),
		"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager"); err != nil {
		return err
	}

	// etcd's server module has package main at its root.
	gomod := fmt.Sprintf("module kubetest/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n", EtcdVersion)
	if err := os.WriteFile(filepath.Join(etcd, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	logf("kubetest: go build etcd %s", EtcdVersion)
	if _, err := run(etcd, "build", "-o", filepath.Join(bin, "etcd"), "go.etcd.io/etcd/server/v3"); err != nil {
		return err
	}
	if !complete(pathsIn(bin)) {
		return errors.New("go build left a binary missing")
	}
	return nil
}

// runGo runs the go command in dir and returns its standard output, also
// when it fails. The command dies with the test binary, and is killed when
// ctx is done.
func runGo(ctx context.Context, goBin, dir string, args ...string) ([]byte, error) {
	cmd := exec.Command(goBin, args...)
	cmd.Dir = dir
	cmd.Env = buildEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	p, err := startProcess("go", cmd, "")
	if err != nil {
		return nil, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), ctx.Err())
	}
	if !cmd.ProcessState.Success() {
		return stdout.Bytes(), fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), cmd.ProcessState, tail(stderr.String(), 40))
	}
	return stdout.Bytes(), nil
}

// goCommand finds the go command: in PATH, else in $GOROOT/bin.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the go command is not in PATH or $GOROOT/bin; it is needed to build the control plane")
}

// buildEnv is the test's environment with what would change the build
// overridden: -mod=mod lets the generated modules resolve their
// requirements, and the binaries are static and for this machine.
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "GOWORK", "CGO_ENABLED", "GOOS", "GOARCH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off", "CGO_ENABLED=0",
		"GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
}

// versionLDFlags stamps the version kube-apiserver reports at /version, as
// Kubernetes' own build does.
func versionLDFlags() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	var b strings.Builder
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
			pkg, KubernetesVersion, pkg, major, pkg, minor, pkg)
	}
	return strings.TrimSpace(b.String())
}

var stagingReplace = regexp.MustCompile(`^(?:replace\s+)?(k8s\.io/\S+)\s+=>\s+\./staging/`)

// stagingModules returns the modules that k8s.io/kubernetes's go.mod
// replaces with a directory under ./staging.
func stagingModules(gomod []byte) []string {
	var mods []string
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if m := stagingReplace.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			mods = append(mods, m[1])
		}
	}
	return mods
}

// wrapperGoMod returns a go.mod that requires k8s.io/kubernetes and replaces
// each staging module with its published StagingVersion.
func wrapperGoMod(staging []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "module kubetest/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", KubernetesVersion)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, StagingVersion)
	}
	b.WriteString(")\n")
	return b.Bytes()
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
