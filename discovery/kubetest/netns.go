package kubetest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// PodCIDR is where pod addresses come from: 198.18.0.0/15, set aside for
// network benchmarks (RFC 2544), so it routes nowhere real.
var PodCIDR = netip.MustParsePrefix("198.18.0.0/15")

const (
	netnsDir    = "/run/netns" // where ip netns keeps its names
	netnsPrefix = "spk-"       // spk-<index>-<pid>
	vethPrefix  = "spkh"       // spkh<index>, the host side; the pod side is eth0
	maxNets     = 1 << (32 - 15 - 2)
)

// podNet is one pod's network: the namespace spk-<index>-<pid>, the veth
// pair spkh<index> (host) and eth0 (pod), and the index'th /30 of PodCIDR,
// whose .1 is the host's side and .2 the pod's.
type podNet struct {
	index  int
	netns  string
	veth   string
	hostIP netip.Addr
	podIP  netip.Addr
}

var nets struct {
	mu      sync.Mutex // guards next and cleaned; the file lock guards across processes
	next    int        // the index to try first: every pod gets a fresh /30
	cleaned bool       // leftovers of dead test processes were removed
}

// ipCommand returns the path of iproute2's ip, failing t if it is missing or
// the test is not root: pods cannot be played without them, and CI has both.
func ipCommand(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("kubetest: pods need root for network namespaces and veth pairs (euid %d); CI runs the end-to-end tests as root", os.Geteuid())
	}
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("kubetest: iproute2's ip not found in PATH, /usr/sbin or /sbin (apt-get install iproute2; .ci/run installs it)")
	return ""
}

func ip(bin string, args ...string) error {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newPodNet makes a network namespace with a veth pair and a /30 that no
// other pod of this process had before and no other process uses now.
func newPodNet(t testing.TB) (*podNet, error) {
	t.Helper()
	bin := ipCommand(t)
	nets.mu.Lock()
	defer nets.mu.Unlock()
	unlock, err := lockNets()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !nets.cleaned {
		if err := removeLeftovers(bin); err != nil {
			return nil, fmt.Errorf("remove leftovers of earlier runs: %w", err)
		}
		nets.cleaned = true
	}
	// A deleted pod's address must not be sent to the default gateway: a
	// route for all of PodCIDR, less specific than each pod's /30, answers
	// "no route to host" instead.
	if err := ip(bin, "route", "replace", "unreachable", PodCIDR.String()); err != nil {
		return nil, err
	}
	used, err := usedIndexes()
	if err != nil {
		return nil, err
	}
	for range maxNets {
		i := nets.next
		nets.next = (nets.next + 1) % maxNets
		if used[i] {
			continue
		}
		n := &podNet{
			index: i,
			netns: fmt.Sprintf("%s%d-%d", netnsPrefix, i, os.Getpid()),
			veth:  vethPrefix + strconv.Itoa(i),
		}
		base := PodCIDR.Addr().As4()
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3]) + uint32(4*i)
		n.hostIP = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v + 1)})
		n.podIP = n.hostIP.Next()
		if err := n.create(bin); err != nil {
			n.remove(bin)
			return nil, err
		}
		return n, nil
	}
	return nil, errors.New("no free /30 left in " + PodCIDR.String())
}

func (n *podNet) create(bin string) error {
	host, pod := n.hostIP.String()+"/30", n.podIP.String()+"/30"
	for _, args := range [][]string{
		{"netns", "add", n.netns},
		{"link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.netns},
		{"addr", "add", host, "dev", n.veth},
		{"link", "set", n.veth, "up"},
		{"-n", n.netns, "link", "set", "lo", "up"},
		{"-n", n.netns, "addr", "add", pod, "dev", "eth0"},
		{"-n", n.netns, "link", "set", "eth0", "up"},
		{"-n", n.netns, "route", "add", "default", "via", n.hostIP.String()},
	} {
		if err := ip(bin, args...); err != nil {
			return err
		}
	}
	// Pods reach each other (a replica its master, Sentinel every node)
	// through the host: forward what comes in on this veth, and only that;
	// the host's own forwarding setting is left alone.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+n.veth+"/forwarding", []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("forwarding on %s: %w", n.veth, err)
	}
	return nil
}

// release removes the network under the lock.
func (n *podNet) release(bin string) error {
	nets.mu.Lock()
	defer nets.mu.Unlock()
	unlock, err := lockNets()
	if err != nil {
		return err
	}
	defer unlock()
	err = n.remove(bin)
	if netns, _, lerr := listNets(); lerr == nil && len(netns) == 0 {
		// The last pod network on this machine is gone.
		if rerr := ip(bin, "route", "del", "unreachable", PodCIDR.String()); rerr != nil && !strings.Contains(rerr.Error(), "No such process") {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// remove kills what still runs in the namespace, then deletes it and the
// veth pair. It goes on after errors and returns them all.
func (n *podNet) remove(bin string) error {
	var errs []error
	if out, err := exec.Command(bin, "netns", "pids", n.netns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(netnsDir, n.netns)); err == nil {
		errs = append(errs, ip(bin, "netns", "del", n.netns))
	}
	// Deleting the namespace destroys the pair once the kernel frees it;
	// deleting the host side now makes the /30 unreachable at once.
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.veth)); err == nil {
		if err := ip(bin, "link", "del", n.veth); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lockNets takes a file lock that every test process holds while it creates
// or removes pod networks.
func lockNets() (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), "shardproxy-kubetest-netns.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// parseNetns splits "spk-<index>-<pid>".
func parseNetns(name string) (index, pid int, ok bool) {
	rest, found := strings.CutPrefix(name, netnsPrefix)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	index, err1 := strconv.Atoi(a)
	pid, err2 := strconv.Atoi(b)
	return index, pid, err1 == nil && err2 == nil && index >= 0 && index < maxNets
}

// parseVeth splits "spkh<index>".
func parseVeth(name string) (index int, ok bool) {
	rest, found := strings.CutPrefix(name, vethPrefix)
	if !found {
		return 0, false
	}
	index, err := strconv.Atoi(rest)
	return index, err == nil && index >= 0 && index < maxNets
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// removeLeftovers removes the namespaces of test processes that no longer
// run, and host-side veths without a namespace. The caller holds the lock,
// so no other process is half-way through making one.
func removeLeftovers(bin string) error {
	netns, veths, err := listNets()
	if err != nil {
		return err
	}
	owned := make(map[int]bool)
	var errs []error
	for _, name := range netns {
		index, pid, _ := parseNetns(name)
		if pid == os.Getpid() || alive(pid) {
			owned[index] = true
			continue
		}
		n := &podNet{index: index, netns: name, veth: vethPrefix + strconv.Itoa(index)}
		errs = append(errs, n.remove(bin))
	}
	for _, name := range veths {
		if index, _ := parseVeth(name); !owned[index] {
			if err := ip(bin, "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// usedIndexes returns the indexes of existing namespaces and host veths.
func usedIndexes() (map[int]bool, error) {
	netns, veths, err := listNets()
	if err != nil {
		return nil, err
	}
	used := make(map[int]bool)
	for _, name := range netns {
		index, _, _ := parseNetns(name)
		used[index] = true
	}
	for _, name := range veths {
		index, _ := parseVeth(name)
		used[index] = true
	}
	return used, nil
}

// listNets returns the names of the namespaces and host veths that look like
// kubetest's.
func listNets() (netns, veths []string, err error) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	for _, e := range entries {
		if _, _, ok := parseNetns(e.Name()); ok {
			netns = append(netns, e.Name())
		}
	}
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, nil, err
	}
	for _, e := range links {
		if _, ok := parseVeth(e.Name()); ok {
			veths = append(veths, e.Name())
		}
	}
	return netns, veths, nil
}
