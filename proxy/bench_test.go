package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/command"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// benchmarkProxy sends GETs through the proxy from one connection with the
// given pipeline depth and reads every reply. Allocations are counted over
// the whole process, so they include the proxy's per-request work.
func benchmarkProxy(b *testing.B, depth int) {
	benchmarkProxyAs(b, depth, "", nil)
}

// benchmarkProxyAs is benchmarkProxy with extra in the pool's YAML and
// auth sent first.
func benchmarkProxyAs(b *testing.B, depth int, extra string, auth []byte) {
	tp := startProxy(&testing.T{}, 3, extra)
	conn, err := net.Dial("tcp", tp.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if auth != nil {
		conn.Write(auth)
		if _, err := io.ReadFull(conn, make([]byte, 5)); err != nil {
			b.Fatal(err)
		}
	}
	var req []byte
	for i := 0; i < depth; i++ {
		req = append(req, fmt.Sprintf("*2\r\n$3\r\nGET\r\n$6\r\nkey:%02d\r\n", i)...)
	}
	reply := []byte("$-1\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	buf := make([]byte, len(reply)*depth)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProxyGet(b *testing.B)           { benchmarkProxy(b, 1) }
func BenchmarkProxyGetPipeline16(b *testing.B) { benchmarkProxy(b, 16) }

// BenchmarkProxyGetACLUser is BenchmarkProxyGet as a user of an acl_file
// whose permissions are checked on every request: a key pattern, a
// denied category and a selector.
func BenchmarkProxyGetACLUser(b *testing.B) {
	path := b.TempDir() + "/users.acl"
	if err := os.WriteFile(path, []byte("user app on >apass ~key:* &* +@all -@dangerous (~sel:* +get)\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	benchmarkProxyAs(b, 1, "  acl_file: "+path+"\n", proxytest.AppendCommand(nil, "AUTH", "app", "apass"))
}

func BenchmarkDirectRedisGet(b *testing.B) {
	tp := startProxy(&testing.T{}, 1, "")
	conn, err := net.Dial("tcp", tp.redises[0].Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("*2\r\n$3\r\nGET\r\n$6\r\nkey:01\r\n")
	buf := make([]byte, 5)
	b.ReportAllocs()
	for b.Loop() {
		conn.Write(req)
		io.ReadFull(conn, buf)
	}
}

// BenchmarkProxySetParallel is redis-benchmark's shape: 50 connections,
// one SET at a time each.
func BenchmarkProxySetParallel(b *testing.B) {
	tp := startProxy(&testing.T{}, 3, "")
	b.SetParallelism(25)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("tcp", tp.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		req := []byte("*3\r\n$3\r\nSET\r\n$6\r\nkey:01\r\n$5\r\nvalue\r\n")
		buf := make([]byte, 5)
		for pb.Next() {
			conn.Write(req)
			if _, err := io.ReadFull(conn, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// keyRoutingCases are requests whose command lookup, key extraction and
// SORT pattern check run on the request path.
var keyRoutingCases = []string{
	"GET k",
	"set k v EX 10",
	"MSET a 1 b 2 c 3",
	"object ENCODING k",
	"XINFO STREAM k FULL COUNT 10",
	"XREADGROUP GROUP g c COUNT 1 STREAMS s1 s2 > >",
	"XREAD BLOCK 0 STREAMS s $",
	"GEORADIUS k 15 37 200 km ASC STORE {k}d STOREDIST {k}e",
	"SORT {k}l BY {k}w_* GET # GET {k}o_*->f LIMIT 0 10 STORE {k}d",
	"EVAL s 2 {k}a {k}b x",
	"ZUNIONSTORE {k}d 2 {k}a {k}b WEIGHTS 1 2",
	"MIGRATE h 1 \"\" 0 10 AUTH pw KEYS a b",
}

// routeKeys does what dispatch and owner do for args before any server is
// involved, and reports the owner of the first key.
func routeKeys(ring placement.Placement, args [][]byte, keys []int) int {
	def := command.Lookup(args[0])
	if def.HasSubcommands() && len(args) > 1 {
		def = def.Subcommand(args[1])
	}
	if !def.ArityOK(len(args)) || def.Blocks(args) {
		return -1
	}
	keys, _ = def.AppendKeys(keys[:0], args)
	if len(keys) == 0 {
		return -1
	}
	idx := ring.Lookup(args[keys[0]])
	all := def.AppendSortPatterns(keys, args)
	if patterns := all[len(keys):]; len(patterns) > 0 && !sortPatternsOn(args, patterns, ring, idx) {
		return -1
	}
	return idx
}

func keyRoutingSetup(tb testing.TB) (placement.Placement, [][][]byte) {
	ring, err := placement.NewRing([]hashring.Node{{Addr: "a:1", Weight: 1}, {Addr: "b:1", Weight: 1}, {Addr: "c:1", Weight: 1}},
		hashring.Options{HashTag: "{}"})
	if err != nil {
		tb.Fatal(err)
	}
	var reqs [][][]byte
	for _, line := range keyRoutingCases {
		var args [][]byte
		for _, a := range strings.Fields(line) {
			args = append(args, []byte(strings.ReplaceAll(a, `""`, "")))
		}
		reqs = append(reqs, args)
	}
	return ring, reqs
}

// Command lookup (subcommands included) and key extraction allocate nothing.
func TestKeyRoutingAllocatesNothing(t *testing.T) {
	ring, reqs := keyRoutingSetup(t)
	keys := make([]int, 0, 16)
	for i, args := range reqs {
		if n := testing.AllocsPerRun(100, func() { routeKeys(ring, args, keys) }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", keyRoutingCases[i], n)
		}
	}
}

func BenchmarkKeyRouting(b *testing.B) {
	ring, reqs := keyRoutingSetup(b)
	keys := make([]int, 0, 16)
	for i, args := range reqs {
		b.Run(strings.Fields(keyRoutingCases[i])[0]+"_"+fmt.Sprint(i), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				routeKeys(ring, args, keys)
			}
		})
	}
}

// benchmarkMGet sends one MGET of n keys at a time to the pool at addr,
// whose keys are all unset, and reads the whole reply: the split, the
// sub-requests and the merge.
func benchmarkMGet(b *testing.B, addr string, n int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	args := []string{"MGET"}
	for i := 0; i < n; i++ {
		args = append(args, fmt.Sprint("key:", i))
	}
	req := proxytest.AppendCommand(nil, args...)
	want := fmt.Sprintf("*%d\r\n%s", n, strings.Repeat("$-1\r\n", n))
	br := bufio.NewReaderSize(conn, 64<<10)
	buf := make([]byte, len(want))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			b.Fatal(err)
		}
		if string(buf) != want {
			b.Fatalf("MGET of %d keys = %.60q..., want %d nulls", n, buf, n)
		}
	}
}

// BenchmarkProxyMGet5000 splits an MGET of 5000 keys over a ring of three.
func BenchmarkProxyMGet5000(b *testing.B) {
	tp := startProxy(&testing.T{}, 3, "")
	benchmarkMGet(b, tp.addr, 5000)
}

// BenchmarkClusterMGet5000 splits an MGET of 5000 keys over a cluster of
// three masters, one sub-request per slot: thousands of them.
func BenchmarkClusterMGet5000(b *testing.B) {
	c := proxytest.StartCluster(b, 3, 0)
	addr := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(b))
	yaml := poolYAML(addr, "  redis_cluster: true\n", c.Seeds()[0]+":1")
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	var m ClusterMap
	index := map[string]int32{}
	for _, n := range c.Masters() {
		index[n.ID] = int32(len(m.Masters))
		m.Masters = append(m.Masters, n.Addr)
	}
	for s, id := range c.View(b, c.Nodes[0]).Owners {
		m.Slots[s] = -1
		if i, ok := index[id]; ok {
			m.Slots[s] = i
		}
	}
	srv.SetClusterMap("alpha", m)
	benchmarkMGet(b, addr, 5000)
}
