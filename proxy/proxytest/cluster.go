package proxytest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
)

// ClusterNodeTimeout is the cluster-node-timeout StartCluster sets: a
// master that stops answering is flagged failing this long after its last
// reply, and its replica is promoted a moment later.
const ClusterNodeTimeout = 2 * time.Second

// ClusterTimeout bounds how long StartCluster, Reshard and WaitStable wait
// for the cluster to agree, a failover included.
const ClusterTimeout = 60 * time.Second

// Cluster is a Redis Cluster started by StartCluster.
type Cluster struct {
	Nodes    []*ClusterNode // in the order they were started
	password string
	cli      string
}

// ClusterNode is one redis-server of a Cluster and its cluster node ID,
// which survives Restart (nodes.conf is kept in Dir).
type ClusterNode struct {
	*Redis
	ID string
}

// StartCluster starts masters*(1+replicasPerMaster) redis-server processes
// with --cluster-enabled, joins them with redis-cli --cluster create, and
// waits until every node says cluster_state:ok and all agree on who serves
// every slot. redis-cli picks which nodes become masters; ask Masters and
// Replicas. opts apply to every node; with RedisPassword the nodes also use
// it as masterauth. With RedisTLS the nodes also speak TLS to each other,
// on the cluster bus and for replication (tls-cluster, tls-replication),
// and are joined over TLS: a client connected with TLS is told the nodes'
// TLS addresses (TLSAddr), a plain one their plain ones (Addr), as Redis
// does. Everything is killed in t's cleanup.
func StartCluster(t testing.TB, masters, replicasPerMaster int, opts ...RedisOption) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("proxytest: StartCluster: %d masters; redis-cli --cluster create needs at least 3", masters)
	}
	var o redisOptions
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{password: o.password, cli: lookBinary(t, "redis-cli", "apt-get install redis-tools")}
	args := []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf", // relative to --dir, which is the node's own
		"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10),
		// Promote a replica however long its link was down, so a test's
		// failover never stalls on data age.
		"--cluster-replica-validity-factor", "0",
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
	}
	if o.password != "" {
		args = append(args, "--masterauth", o.password)
	}
	create := []string{"--cluster", "create"}
	if o.tls != nil {
		args = append(args, "--tls-cluster", "yes", "--tls-replication", "yes")
		// The cluster bus is meant at the addresses the nodes are
		// joined at: their TLS ones.
		create = append([]string{"--tls", "--cacert", o.tls.CA, "--cert", o.tls.Cert, "--key", o.tls.Key}, create...)
	}
	nodeOpts := append([]RedisOption{RedisArgs(args...)}, opts...)
	for range masters * (1 + replicasPerMaster) {
		r := StartRedis(t, nodeOpts...)
		c.Nodes = append(c.Nodes, &ClusterNode{Redis: r})
		if r.tls != nil {
			create = append(create, r.TLSAddr)
		} else {
			create = append(create, r.Addr)
		}
	}
	for _, n := range c.Nodes {
		rep := c.do(t, n, "CLUSTER", "MYID")
		if rep.Type != '$' || len(rep.Str) == 0 {
			t.Fatalf("proxytest: CLUSTER MYID on %s = %v", n.Addr, rep)
		}
		n.ID = string(rep.Str)
	}
	create = append(create, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	c.redisCLI(t, create...)
	c.WaitStable(t)
	return c
}

// redisCLI runs redis-cli with args, the password in REDISCLI_AUTH (so it
// is not warned about on the command line), and fails t with its output
// if it fails.
func (c *Cluster) redisCLI(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.cli, args...)
	cmd.Env = os.Environ()
	if c.password != "" {
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+c.password)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("proxytest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do runs one command on n and fails t if n does not answer.
func (c *Cluster) do(t testing.TB, n *ClusterNode, args ...string) Reply {
	t.Helper()
	rep, err := c.ask(n, args...)
	if err != nil {
		t.Fatalf("proxytest: %q on %s: %v\nredis.log:\n%s", args, n.Addr, err, n.Log())
	}
	return rep
}

// ask runs one command on n within a second, authenticated. A paused or
// killed node is an error.
func (c *Cluster) ask(n *ClusterNode, args ...string) (Reply, error) {
	nc, err := net.DialTimeout("tcp", n.Addr, time.Second)
	if err != nil {
		return Reply{}, err
	}
	conn := NewConn(nc)
	defer conn.Close()
	conn.Timeout = time.Second
	if c.password != "" {
		if rep, err := conn.Do("AUTH", c.password); err != nil || rep.Type != '+' {
			return Reply{}, fmt.Errorf("AUTH: %v %v", rep, err)
		}
	}
	return conn.Do(args...)
}

// Seeds returns every node's address, the way a proxy is configured.
func (c *Cluster) Seeds() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *ClusterNode {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Masters returns the nodes that say master in ROLE now; a node that does
// not answer within a second (killed, paused) is left out.
func (c *Cluster) Masters() []*ClusterNode { return c.withRole("master") }

// Replicas returns the nodes that say slave in ROLE now; a node that does
// not answer within a second is left out.
func (c *Cluster) Replicas() []*ClusterNode { return c.withRole("slave") }

func (c *Cluster) withRole(role string) []*ClusterNode {
	var out []*ClusterNode
	for _, n := range c.Nodes {
		rep, err := c.ask(n, "ROLE")
		if err == nil && rep.Type == '*' && len(rep.Elems) > 0 && string(rep.Elems[0].Str) == role {
			out = append(out, n)
		}
	}
	return out
}

// Reshard moves slots slots from the master with ID from to the one with
// ID to, keys included, with redis-cli --cluster reshard, and returns when
// every node agrees on the result.
func (c *Cluster) Reshard(t testing.TB, from, to string, slots int) {
	t.Helper()
	c.WaitStable(t)
	var via *ClusterNode
	for _, n := range c.Nodes {
		if _, err := c.ask(n, "PING"); err == nil {
			via = n
			break
		}
	}
	if via == nil {
		t.Fatal("proxytest: Reshard: no node answers")
	}
	c.redisCLI(t, "--cluster", "reshard", via.Addr, "--cluster-from", from, "--cluster-to", to,
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes")
	c.WaitStable(t)
}

// ClusterView is what one node says about the cluster in CLUSTER NODES.
type ClusterView struct {
	Owners [hashring.SlotCount]string // the master ID serving each slot; "" for none
	Flags  map[string][]string        // every node ID it knows, with its flags (myself, master, slave, fail?, fail, ...)
	Master map[string]string          // replica ID -> its master's ID
	Open   bool                       // a slot is migrating or importing
}

// View returns n's CLUSTER NODES, parsed. It fails t if n does not answer.
func (c *Cluster) View(t testing.TB, n *ClusterNode) ClusterView {
	t.Helper()
	v, err := c.view(n)
	if err != nil {
		t.Fatalf("proxytest: CLUSTER NODES on %s: %v", n.Addr, err)
	}
	return v
}

func (c *Cluster) view(n *ClusterNode) (ClusterView, error) {
	rep, err := c.ask(n, "CLUSTER", "NODES")
	if err != nil {
		return ClusterView{}, err
	}
	if rep.Type != '$' {
		return ClusterView{}, fmt.Errorf("reply %v", rep)
	}
	v := ClusterView{Flags: make(map[string][]string), Master: make(map[string]string)}
	for _, line := range strings.Split(strings.TrimSpace(string(rep.Str)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return ClusterView{}, fmt.Errorf("line %q", line)
		}
		id, flags := f[0], strings.Split(f[2], ",")
		v.Flags[id] = flags
		if f[3] != "-" {
			v.Master[id] = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				v.Open = true
				continue
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a < 0 || b >= hashring.SlotCount || a > b {
				return ClusterView{}, fmt.Errorf("slots %q in line %q", r, line)
			}
			for s := a; s <= b; s++ {
				v.Owners[s] = id
			}
		}
	}
	return v, nil
}

// WaitStable waits until the cluster is settled: every node that answers
// says cluster_state:ok, they all list the same nodes and the same owner
// for every slot, no slot is migrating, and every slot's owner answers and
// is flagged failing by none. So after a master is killed or paused it
// waits for its replica to be promoted. It fails t after ClusterTimeout.
func (c *Cluster) WaitStable(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(ClusterTimeout)
	for {
		why := c.unstable()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, n := range c.Nodes {
				fmt.Fprintf(&logs, "--- %s %s\n%s", n.Addr, n.ID, n.Log())
			}
			t.Fatalf("proxytest: cluster not stable after %v: %s\n%s", ClusterTimeout, why, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unstable says why the cluster is not settled, or "" when it is.
func (c *Cluster) unstable() string {
	var first *ClusterView
	var firstAddr string
	live := make(map[string]bool)
	for _, n := range c.Nodes {
		info, err := c.ask(n, "CLUSTER", "INFO")
		if err != nil {
			continue // killed or paused
		}
		live[n.ID] = true
		if !strings.Contains(string(info.Str), "cluster_state:ok") {
			return n.Addr + " says cluster_state is not ok"
		}
		v, err := c.view(n)
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER NODES: %v", n.Addr, err)
		}
		if v.Open {
			return n.Addr + " has a slot migrating or importing"
		}
		for id, flags := range v.Flags {
			if slices.Contains(flags, "handshake") || slices.Contains(flags, "noaddr") {
				return fmt.Sprintf("%s sees %s in %v", n.Addr, id, flags)
			}
		}
		if first == nil {
			first, firstAddr = &v, n.Addr
			continue
		}
		if len(v.Flags) != len(first.Flags) {
			return fmt.Sprintf("%s knows %d nodes, %s %d", n.Addr, len(v.Flags), firstAddr, len(first.Flags))
		}
		if v.Owners != first.Owners {
			return fmt.Sprintf("%s and %s disagree on the slots", n.Addr, firstAddr)
		}
		for id, flags := range first.Flags {
			if _, ok := v.Flags[id]; !ok {
				return fmt.Sprintf("%s does not know %s", n.Addr, id)
			}
			if slices.Contains(flags, "master") != slices.Contains(v.Flags[id], "master") || first.Master[id] != v.Master[id] {
				return fmt.Sprintf("%s and %s disagree on the role of %s", n.Addr, firstAddr, id)
			}
		}
	}
	if first == nil {
		return "no node answers"
	}
	for s, owner := range first.Owners {
		if owner == "" {
			return fmt.Sprintf("slot %d has no owner", s)
		}
		if !live[owner] {
			return fmt.Sprintf("slot %d's owner %s does not answer", s, owner)
		}
	}
	// Every live node's view has been compared with first's; flags of
	// owners are checked in first, which agrees with the others on owners.
	for id, flags := range first.Flags {
		if live[id] && (slices.Contains(flags, "fail") || slices.Contains(flags, "fail?")) {
			return fmt.Sprintf("%s flags %s %v", firstAddr, id, flags)
		}
	}
	return ""
}

// Owner returns the node serving slot, as the first node that answers
// says.
func (c *Cluster) Owner(t testing.TB, slot int) *ClusterNode {
	t.Helper()
	for _, n := range c.Nodes {
		v, err := c.view(n)
		if err != nil {
			continue
		}
		if o := c.Node(v.Owners[slot]); o != nil {
			return o
		}
		t.Fatalf("proxytest: %s says slot %d is served by %q, no node of the cluster", n.Addr, slot, v.Owners[slot])
	}
	t.Fatal("proxytest: Owner: no node answers")
	return nil
}

// KeySlot returns the hash slot of key, as CLUSTER KEYSLOT on a node that
// answers says.
func (c *Cluster) KeySlot(t testing.TB, key string) int {
	t.Helper()
	for _, n := range c.Nodes {
		rep, err := c.ask(n, "CLUSTER", "KEYSLOT", key)
		if err == nil && rep.Type == ':' {
			return int(rep.Int)
		}
	}
	t.Fatal("proxytest: KeySlot: no node answers")
	return 0
}
