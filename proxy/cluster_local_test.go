package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// startOneNodeCluster starts a redis-server with cluster support that owns
// every slot, and waits until its cluster is ok.
func startOneNodeCluster(t *testing.T) *proxytest.Redis {
	t.Helper()
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--cluster-enabled", "yes", "--cluster-announce-ip", "127.0.0.1"))
	c := dialRaw(t, r.Addr)
	if got := c.do("CLUSTER", "ADDSLOTSRANGE", "0", "16383"); got != "+OK\r\n" {
		t.Fatalf("CLUSTER ADDSLOTSRANGE = %q", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.do("CLUSTER", "INFO"), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster never became ok")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// clusterNorm makes a reply of the proxy and one of a redis-server
// comparable: the node's ID, its port and bus port, epochs and
// replication offset become placeholders, and a text reply's length is
// dropped (its type and format stay).
type clusterNorm struct {
	id, port string
}

var (
	clusterEpochField = regexp.MustCompile(`epoch:\d+`)
	clusterNodesEpoch = regexp.MustCompile(` - 0 0 \d+ connected`)
	clusterBusPort    = regexp.MustCompile(`@\d+`)
	clusterReplOffset = regexp.MustCompile(`replication-offset\r\n:\d+`)
	clusterTextHeader = regexp.MustCompile(`^([$=])\d+\r\n`)
)

func (n clusterNorm) apply(r string) string {
	r = clusterTextHeader.ReplaceAllString(r, "${1}N\r\n")
	r = strings.ReplaceAll(r, n.id, "<id>")
	r = strings.ReplaceAll(r, ":"+n.port+"\r\n", ":<port>\r\n")
	r = strings.ReplaceAll(r, ":"+n.port+"@", ":<port>@")
	r = clusterBusPort.ReplaceAllString(r, "@<cport>")
	r = clusterEpochField.ReplaceAllString(r, "epoch:<e>")
	r = clusterNodesEpoch.ReplaceAllString(r, " - 0 0 <e> connected")
	return clusterReplOffset.ReplaceAllString(r, "replication-offset\r\n:<offset>")
}

// bulkText is the text of a bulk string reply.
func bulkText(t *testing.T, r string) string {
	t.Helper()
	_, rest, ok := strings.Cut(r, "\r\n")
	if !ok || r[0] != '$' {
		t.Fatalf("reply %q is not a bulk string", r)
	}
	return strings.TrimSuffix(rest, "\r\n")
}

// The CLUSTER replies a cluster client reads as it connects are shaped as
// those of a one-node Redis 7.0 cluster that owns every slot, byte for
// byte once IDs, ports and epochs are set aside, in RESP2 and RESP3.
func TestClusterRepliesMatchOneNodeRedis(t *testing.T) {
	tp := startProxy(t, 3, "")
	single := startOneNodeCluster(t)
	_, proxyPort, _ := net.SplitHostPort(tp.addr)
	_, redisPort, _ := net.SplitHostPort(single.Addr)
	cmds := [][]string{
		{"CLUSTER", "INFO"}, {"CLUSTER", "MYID"}, {"CLUSTER", "SLOTS"}, {"CLUSTER", "SHARDS"},
		{"CLUSTER", "NODES"}, {"CLUSTER", "LINKS"}, {"cluster", "keyslot", "somekey"},
		{"CLUSTER", "KEYSLOT", "{user1000}.following"}, {"READONLY"}, {"READWRITE"},
		{"CLUSTER", "KEYSLOT"}, {"CLUSTER", "INFO", "extra"}, {"CLUSTER", "MYSHARDID"},
	}
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			via, one := dialRaw(t, tp.addr), dialRaw(t, single.Addr)
			via.do("HELLO", proto)
			one.do("HELLO", proto)
			viaNorm := clusterNorm{id: bulkText(t, via.do("CLUSTER", "MYID")), port: proxyPort}
			oneNorm := clusterNorm{id: bulkText(t, one.do("CLUSTER", "MYID")), port: redisPort}
			for _, cmd := range cmds {
				got, want := viaNorm.apply(via.do(cmd...)), oneNorm.apply(one.do(cmd...))
				if got != want {
					t.Errorf("%q = %q, redis says %q", cmd, got, want)
				}
			}
		})
	}
}

// The node is the pool's own listener, the same in every reply, with an
// ID of 40 hex digits that depends only on the pool's name and listen
// directive.
func TestClusterNodeIsTheListener(t *testing.T) {
	tp := startProxy(t, 2, "")
	c := dialRaw(t, tp.addr)
	id := bulkText(t, c.do("CLUSTER", "MYID"))
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(id) || id != clusterNodeID("alpha", tp.cfg.Pools[0].Listen) {
		t.Fatalf("CLUSTER MYID = %q", id)
	}
	host, port, _ := net.SplitHostPort(tp.addr)
	wantSlots := fmt.Sprintf("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$%d\r\n%s\r\n:%s\r\n$40\r\n%s\r\n*0\r\n", len(host), host, port, id)
	if got := c.do("CLUSTER", "SLOTS"); got != wantSlots {
		t.Errorf("CLUSTER SLOTS = %q, want %q", got, wantSlots)
	}
	wantNodes := fmt.Sprintf("%s %s:%s@0 myself,master - 0 0 1 connected 0-16383\n", id, host, port)
	if got := bulkText(t, c.do("CLUSTER", "NODES")); got != wantNodes {
		t.Errorf("CLUSTER NODES = %q, want %q", got, wantNodes)
	}
}

// A pool that listens on a host name reports the address the client
// connected to, which it can dial, and the name as the node's hostname.
func TestClusterNodeOfAHostName(t *testing.T) {
	r := proxytest.StartRedis(t)
	port := proxytest.FreePort(t)
	startServer(t, fmt.Sprintf("alpha:\n  listen: localhost:%d\n  redis: true\n  servers:\n    - %s:1\n", port, r.Addr), Options{})
	nc, err := net.Dial("tcp", fmt.Sprintf("localhost:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c := &rawConn{t: t, nc: nc}
	t.Cleanup(func() { nc.Close() })
	ip := nc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
	id := clusterNodeID("alpha", fmt.Sprintf("localhost:%d", port))
	wantSlots := fmt.Sprintf("*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$%d\r\n%s\r\n:%d\r\n$40\r\n%s\r\n*2\r\n$8\r\nhostname\r\n$9\r\nlocalhost\r\n", len(ip), ip, port, id)
	if got := c.do("CLUSTER", "SLOTS"); got != wantSlots {
		t.Errorf("CLUSTER SLOTS = %q, want %q", got, wantSlots)
	}
	wantNodes := fmt.Sprintf("%s %s:%d@0,localhost myself,master - 0 0 1 connected 0-16383\n", id, ip, port)
	if got := bulkText(t, c.do("CLUSTER", "NODES")); got != wantNodes {
		t.Errorf("CLUSTER NODES = %q, want %q", got, wantNodes)
	}
	if got := c.do("CLUSTER", "SHARDS"); !strings.Contains(got, "$8\r\nhostname\r\n$9\r\nlocalhost\r\n") || !strings.Contains(got, "$8\r\nendpoint\r\n$"+strconv.Itoa(len(ip))+"\r\n"+ip+"\r\n") {
		t.Errorf("CLUSTER SHARDS = %q, want the hostname and the IP as endpoint", got)
	}
}

// A unix-socket pool has no address a cluster client could dial: the
// topology commands say so, and CLUSTER INFO still answers.
func TestClusterUnixSocketPool(t *testing.T) {
	r := proxytest.StartRedis(t)
	sock := fmt.Sprintf("/tmp/shardproxy-test-%d.sock", proxytest.FreePort(t))
	t.Cleanup(func() { os.Remove(sock) })
	startServer(t, fmt.Sprintf("alpha:\n  listen: %s\n  redis: true\n  servers:\n    - %s:1\n", sock, r.Addr), Options{})
	c := proxytest.Dial(t, sock)
	for _, sub := range []string{"SLOTS", "SHARDS", "NODES"} {
		want := "-ERR unsupported command 'cluster|" + strings.ToLower(sub) + "' in shardproxy: " + whyUnixCluster + "\r\n"
		if got := do(t, c, "CLUSTER", sub); got != want {
			t.Errorf("CLUSTER %s = %q, want %q", sub, got, want)
		}
	}
	if got := do(t, c, "CLUSTER", "INFO"); !strings.Contains(got, "cluster_state:ok\r\n") {
		t.Errorf("CLUSTER INFO = %q", got)
	}
}

// What a pool cannot answer as a cluster node is refused with the reason.
func TestClusterRefusals(t *testing.T) {
	tp := startProxy(t, 2, "")
	c := tp.client(t)
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"CLUSTER", "COUNTKEYSINSLOT", "1"}, "-" + refusal("cluster|countkeysinslot", whyNoSlots) + "\r\n"},
		{[]string{"CLUSTER", "GETKEYSINSLOT", "1", "10"}, "-" + refusal("cluster|getkeysinslot", whyNoSlots) + "\r\n"},
		{[]string{"CLUSTER", "ADDSLOTS", "1"}, "-" + refusal("cluster|addslots", whyAdmin) + "\r\n"},
		{[]string{"CLUSTER", "MEET", "127.0.0.1", "7000"}, "-" + refusal("cluster|meet", whyAdmin) + "\r\n"},
		{[]string{"CLUSTER", "FAILOVER"}, "-" + refusal("cluster|failover", whyAdmin) + "\r\n"},
		{[]string{"CLUSTER", "RESET"}, "-" + refusal("cluster|reset", whyAdmin) + "\r\n"},
		{[]string{"CLUSTER", "NOSUCH"}, "-ERR unknown subcommand 'NOSUCH'. Try CLUSTER HELP.\r\n"},
		{[]string{"CLUSTER"}, "-ERR wrong number of arguments for 'cluster' command\r\n"},
	} {
		if got := do(t, c, tc.cmd...); got != tc.want {
			t.Errorf("%q = %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

// CLUSTER KEYSLOT is Redis Cluster's slot of the key, hash tags and all.
func TestClusterKeySlotMatchesRedis(t *testing.T) {
	tp := startProxy(t, 1, "")
	single := startOneNodeCluster(t)
	via, one := tp.client(t), proxytest.Dial(t, single.Addr)
	keys := []string{"", "{", "}", "{}", "{}a", "a{}", "{a}", "x{a}y", "{a}{b}", "{{a}}", "a{b", "a}b{c}", "\x00\xff", "foo", "123456789"}
	for i := range 2000 {
		keys = append(keys, fmt.Sprintf("key:%d", i), fmt.Sprintf("{user%d}:profile", i), fmt.Sprintf("%d{%d", i, i))
	}
	for _, k := range keys {
		if got, want := do(t, via, "CLUSTER", "KEYSLOT", k), do(t, one, "CLUSTER", "KEYSLOT", k); got != want {
			t.Fatalf("CLUSTER KEYSLOT %q = %q, redis says %q", k, got, want)
		}
	}
}

// go-redis' ClusterClient pointed at a ring pool sees one node and sends
// everything to it: single keys, MGET, MSET and pipelines over keys of
// every server, with no error.
func TestClusterGoRedisClusterClient(t *testing.T) {
	tp := startProxy(t, 3, "")
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{tp.addr}})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := rdb.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
		if shard.Options().Addr != tp.addr {
			return fmt.Errorf("shard at %s, want %s", shard.Options().Addr, tp.addr)
		}
		return shard.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("ForEachShard: %v", err)
	}
	var keys []string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("gc:%d", i))
	}
	for _, r := range tp.redises {
		keys = append(keys, tp.keyOn(t, r, "gc:")) // every server, whatever the ring's spread
	}
	for _, k := range keys[:50] {
		if err := rdb.Set(ctx, k, "v"+k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "v"+k {
			t.Fatalf("GET %s = %q, %v", k, v, err)
		}
	}
	pipe := rdb.Pipeline()
	for _, k := range keys[50:] {
		pipe.Set(ctx, k, "v"+k, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("pipelined SETs: %v", err)
	}
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		t.Fatalf("MGET: %v", err)
	}
	for i, v := range vals {
		if v != "v"+keys[i] {
			t.Fatalf("MGET[%d] (%s) = %v", i, keys[i], v)
		}
	}
	if err := rdb.MSet(ctx, "gc:a", "1", "gc:b", "2", "gc:c", "3").Err(); err != nil {
		t.Fatalf("MSET: %v", err)
	}
	plain := tp.client(t)
	owners := map[*proxytest.Redis]bool{}
	for _, k := range keys {
		owners[tp.owner(t, k)] = true
		if got := do(t, plain, "GET", k); got != "$"+strconv.Itoa(len("v"+k))+"\r\nv"+k+"\r\n" {
			t.Fatalf("GET %s through a plain connection = %q", k, got)
		}
	}
	if len(owners) != len(tp.redises) {
		t.Fatalf("the keys are on %d servers of %d", len(owners), len(tp.redises))
	}
}

// rueidis with its defaults finds the pool to be a cluster of one node,
// the proxy, and works through it.
func TestClusterRueidisDefaults(t *testing.T) {
	tp := startProxy(t, 3, "")
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{tp.addr}})
	if err != nil {
		t.Fatalf("rueidis.NewClient: %v", err)
	}
	defer client.Close()
	if mode := client.Mode(); mode != rueidis.ClientModeCluster {
		t.Fatalf("rueidis is in %s mode, want %s", mode, rueidis.ClientModeCluster)
	}
	nodes := client.Nodes()
	if len(nodes) != 1 || nodes[tp.addr] == nil {
		t.Fatalf("rueidis sees nodes %v, want only %s", nodes, tp.addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cmds rueidis.Commands
	for i := range 100 {
		cmds = append(cmds, client.B().Set().Key(fmt.Sprintf("rc:%d", i)).Value(strconv.Itoa(i)).Build())
	}
	for i, r := range client.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatalf("SET rc:%d: %v", i, err)
		}
	}
	for i := range 100 {
		if v, err := client.Do(ctx, client.B().Get().Key(fmt.Sprintf("rc:%d", i)).Build()).ToString(); err != nil || v != strconv.Itoa(i) {
			t.Fatalf("GET rc:%d = %q, %v", i, v, err)
		}
	}
}

// redis-cli -c works against the pool, which never redirects it.
func TestClusterRedisCLI(t *testing.T) {
	tp := startProxy(t, 3, "")
	host, port, _ := net.SplitHostPort(tp.addr)
	for i := range 10 {
		k := fmt.Sprintf("cli:%d", i)
		out, err := exec.Command("redis-cli", "-c", "-h", host, "-p", port, "SET", k, "x").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli -c SET %s: %q, %v", k, out, err)
		}
		out, err = exec.Command("redis-cli", "-c", "-h", host, "-p", port, "GET", k).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "x" {
			t.Fatalf("redis-cli -c GET %s: %q, %v", k, out, err)
		}
	}
	out, err := exec.Command("redis-cli", "-h", host, "-p", port, "CLUSTER", "INFO").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "cluster_state:ok") {
		t.Fatalf("redis-cli CLUSTER INFO: %q, %v", out, err)
	}
}
