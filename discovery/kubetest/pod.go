package kubetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// RedisPort is the port redis-server listens on in a pod started by
// StartRedisPod.
const RedisPort = 6379

// StopGrace is how long (*Pod).Delete waits after SIGTERM before it kills a
// pod's processes, like a pod's terminationGracePeriodSeconds.
const StopGrace = 10 * time.Second

// Pod is one incarnation of a pod that the test plays scheduler and kubelet
// for: bound to a Node, with a network namespace of its own. A pod deleted
// and recreated under the same name is a new Pod, with a new UID and
// address and the same Dir.
type Pod struct {
	Namespace string
	Name      string
	UID       types.UID
	Node      string
	IP        netip.Addr // the pod's address, on eth0 in NetNS: .2 of a /30 in PodCIDR
	HostIP    netip.Addr // the host side of the veth pair: .1 of that /30
	NetNS     string     // the network namespace, for ip netns exec
	// Dir holds the pod's data and the logs of its processes. It is the
	// same directory for every incarnation of Namespace/Name in one
	// ControlPlane, like a StatefulSet's PersistentVolume.
	Dir string

	cp  *ControlPlane
	ip  string // iproute2's ip
	net *podNet

	mu      sync.Mutex // guards procs and deleted
	procs   []*process
	deleted bool
}

// StartPod plays the scheduler and the kubelet's network setup for the pod
// namespace/name that a controller creates: it waits until the pod exists,
// Pending and without an address, binds it to node (the Binding
// subresource) and gives it a network namespace with a fresh /30. It does
// not mark the pod ready: start its programs with Run, then call SetReady.
// The network and the programs are removed in t's cleanup if Delete has not
// removed them.
func (cp *ControlPlane) StartPod(t testing.TB, namespace, name, node string) *Pod {
	t.Helper()
	bin := ipCommand(t)
	p := &Pod{
		Namespace: namespace,
		Name:      name,
		Node:      node,
		Dir:       cp.path(filepath.Join("pods", namespace, name)),
		cp:        cp,
		ip:        bin,
	}
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		t.Fatalf("kubetest: %v", err)
	}

	var pod *corev1.Pod
	cp.poll(t, fmt.Sprintf("pod %s/%s to be created Pending", namespace, name), func(ctx context.Context) (bool, error) {
		got, err := cp.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, ignoreNotFound(err)
		}
		if got.DeletionTimestamp != nil || got.Status.PodIP != "" || got.Status.Phase != corev1.PodPending {
			return false, nil // the last incarnation, not yet gone
		}
		if got.Spec.NodeName != "" && got.Spec.NodeName != node {
			return false, fmt.Errorf("pod is bound to node %q, not %q", got.Spec.NodeName, node)
		}
		pod = got
		return true, nil
	})
	p.UID = pod.UID
	if pod.Spec.NodeName == "" {
		ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
		defer cancel()
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}
		if err := cp.Client.CoreV1().Pods(namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatalf("kubetest: bind pod %s/%s to node %s: %v", namespace, name, node, err)
		}
	}

	n, err := newPodNet(t)
	if err != nil {
		t.Fatalf("kubetest: network for pod %s/%s: %v", namespace, name, err)
	}
	p.net, p.NetNS, p.IP, p.HostIP = n, n.netns, n.podIP, n.hostIP
	t.Cleanup(p.teardown)
	return p
}

// Command returns a command that runs name with args in the pod's network
// namespace (ip netns exec). Start it with Run.
func (p *Pod) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(p.ip, append([]string{"netns", "exec", p.NetNS, name}, args...)...)
	cmd.Dir = p.Dir
	return cmd
}

// Run starts cmd (usually from Command), with its output appended to
// Dir/logName, in a process group that Delete and t's cleanup end.
func (p *Pod) Run(t testing.TB, cmd *exec.Cmd, logName string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deleted {
		t.Fatalf("kubetest: pod %s/%s (uid %s) is deleted", p.Namespace, p.Name, p.UID)
	}
	logPath := filepath.Join(p.Dir, logName)
	header := fmt.Sprintf("--- kubetest: %s pod %s uid %s ip %s: %s\n",
		time.Now().Format(time.RFC3339Nano), p.Name, p.UID, p.IP, strings.Join(cmd.Args, " "))
	appendFile(logPath, header)
	proc, err := startProcess(filepath.Base(cmd.Path), cmd, logPath)
	if err != nil {
		t.Fatalf("kubetest: pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	p.procs = append(p.procs, proc)
}

// SetReady plays the kubelet's status report: it sets the pod's phase to
// Running, its podIP and podIPs to IP, every container to running and
// ready, and the conditions Initialized, ContainersReady, Ready and
// PodReadyToStartContainers to True.
func (p *Pod) SetReady(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	pods := p.cp.Client.CoreV1().Pods(p.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pod.UID != p.UID {
			return fmt.Errorf("pod has uid %s, want %s", pod.UID, p.UID)
		}
		now := metav1.Now()
		st := &pod.Status
		st.Phase = corev1.PodRunning
		st.PodIP = p.IP.String()
		st.PodIPs = []corev1.PodIP{{IP: p.IP.String()}}
		if st.StartTime == nil {
			st.StartTime = &now
		}
		for _, c := range []corev1.PodConditionType{
			corev1.PodScheduled, corev1.PodReadyToStartContainers, corev1.PodInitialized,
			corev1.ContainersReady, corev1.PodReady,
		} {
			setCondition(st, c, now)
		}
		st.ContainerStatuses = nil
		started := true
		for _, c := range pod.Spec.Containers {
			st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
				Name:        c.Name,
				Image:       c.Image,
				ContainerID: "kubetest://" + p.NetNS + "/" + c.Name,
				Ready:       true,
				Started:     &started,
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("kubetest: set pod %s/%s ready: %v", p.Namespace, p.Name, err)
	}
}

func setCondition(st *corev1.PodStatus, typ corev1.PodConditionType, now metav1.Time) {
	for i := range st.Conditions {
		if c := &st.Conditions[i]; c.Type == typ {
			if c.Status != corev1.ConditionTrue {
				c.Status, c.LastTransitionTime, c.Reason, c.Message = corev1.ConditionTrue, now, "", ""
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

// Delete plays the kubelet for a pod that goes away: it stops the pod's
// processes (SIGTERM, then SIGKILL after StopGrace), removes its network
// and deletes the pod object with grace period 0, and waits until it is
// gone. The StatefulSet controller then recreates it under the same name,
// Pending: StartPod or StartRedisPod bring it back with a new address and
// the same Dir.
func (p *Pod) Delete(t testing.TB) {
	t.Helper()
	if err := p.stop(StopGrace); err != nil {
		t.Fatalf("kubetest: pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), WaitTimeout)
	defer cancel()
	pods := p.cp.Client.CoreV1().Pods(p.Namespace)
	zero := int64(0)
	err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &p.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) { // conflict: another uid
		t.Fatalf("kubetest: delete pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	p.cp.poll(t, fmt.Sprintf("pod %s/%s uid %s to be gone", p.Namespace, p.Name, p.UID), func(ctx context.Context) (bool, error) {
		got, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && got.UID != p.UID, err
	})
}

// stop ends the processes and removes the network, once.
func (p *Pod) stop(grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deleted {
		return nil
	}
	p.deleted = true
	var wg sync.WaitGroup
	for _, proc := range p.procs {
		wg.Go(func() { proc.Stop(grace) })
	}
	wg.Wait()
	return p.net.release(p.ip)
}

func (p *Pod) teardown() {
	if err := p.stop(0); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: pod %s/%s: %v\n", p.Namespace, p.Name, err)
	}
}

// Addr returns "IP:port".
func (p *Pod) Addr(port int) string { return net.JoinHostPort(p.IP.String(), strconv.Itoa(port)) }

// Log returns what the pod's processes have written to Dir/name so far,
// across incarnations.
func (p *Pod) Log(name string) string { return readFile(filepath.Join(p.Dir, name)) }

// StartRedisPod is StartPod followed by a redis-server in the pod,
//
//	redis-server --bind <IP> --port 6379 --dir <Dir> --save 3600 1 --appendonly no ...
//
// with its log in Dir/redis.log, and SetReady once it answers PING from
// the host. redisArgs are appended to its command line. redis-server saves
// its data to Dir/dump.rdb when Delete stops it with SIGTERM, and loads it
// again when the pod comes back.
func (cp *ControlPlane) StartRedisPod(t testing.TB, namespace, name, node string, redisArgs ...string) *Pod {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("kubetest: redis-server not found in PATH or /usr/bin (apt-get install redis-server; .ci/run installs it)")
		}
	}
	p := cp.StartPod(t, namespace, name, node)
	args := append([]string{
		"--bind", p.IP.String(),
		"--port", strconv.Itoa(RedisPort),
		"--dir", p.Dir,
		"--save", "3600", "1",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", "",
	}, redisArgs...)
	logStart := len(p.Log("redis.log")) // earlier incarnations wrote before
	p.Run(t, p.Command(bin, args...), "redis.log")
	log := func() string { return tail(p.Log("redis.log")[logStart:], 30) }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubetest: pod %s/%s uid %s redis.log:\n%s", namespace, name, p.UID, log())
		}
	})
	p.mu.Lock()
	proc := p.procs[len(p.procs)-1]
	p.mu.Unlock()
	if err := proc.WaitUntil(StartTimeout, func() bool { return pingable(p.Addr(RedisPort)) }); err != nil {
		t.Fatalf("kubetest: redis-server in pod %s/%s at %s: %v\nredis.log:\n%s",
			namespace, name, p.Addr(RedisPort), err, log())
	}
	p.SetReady(t)
	return p
}

// pingable reports whether a redis-server answers PING at addr.
func pingable(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c := proxytest.NewConn(nc)
	defer c.Close()
	c.Timeout = time.Second
	rep, err := c.Do("PING")
	// A server with requirepass answers NOAUTH: it is up all the same.
	return err == nil && (rep.Type == '+' || rep.Type == '-' && strings.HasPrefix(string(rep.Str), "NOAUTH"))
}

func appendFile(path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	f.WriteString(s)
	f.Close()
}
