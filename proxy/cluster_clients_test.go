package proxy

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// Clients with their default options, in plain and in cluster mode, work
// against a redis_cluster pool: they read and write keys of every slot,
// MGET and DEL across slots, and run MULTI/EXEC on one hash tag. A client
// in cluster mode finds one node, the proxy, and is never redirected. The
// subtests share one cluster and one proxy; each uses keys of its own.
func TestClusterPoolClients(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxy(t, c)
	host, port, _ := net.SplitHostPort(cp.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// checkOnOwners reads keys back from the masters that own their slots,
	// where each client's writes must have gone.
	checkOnOwners := func(t *testing.T, keys []string, value func(k string) string) {
		t.Helper()
		for _, k := range keys {
			owner := c.Owner(t, c.KeySlot(t, k))
			r := owner.Client(t)
			if got, want := do(t, r, "GET", k), bulk(value(k)); got != want {
				t.Fatalf("GET %s on its owner %s = %q, want %q", k, owner.Addr, got, want)
			}
		}
	}

	t.Run("redis-cli", func(t *testing.T) {
		keys := slotKeys("cli:")
		var script strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&script, "SET %s v%s\n", k, k)
		}
		for _, k := range keys {
			fmt.Fprintf(&script, "GET %s\n", k)
		}
		cmd := exec.Command("redis-cli", "-h", host, "-p", port)
		cmd.Stdin = strings.NewReader(script.String())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli: %v\n%.2000s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2*len(keys) {
			t.Fatalf("redis-cli printed %d lines for %d commands:\n%.2000s", len(lines), 2*len(keys), out)
		}
		for i, k := range keys {
			if lines[i] != "OK" || lines[len(keys)+i] != "v"+k {
				t.Fatalf("redis-cli SET/GET %s: %q, %q", k, lines[i], lines[len(keys)+i])
			}
		}
		checkOnOwners(t, keys[:64], func(k string) string { return "v" + k })
		run := func(args ...string) string {
			t.Helper()
			out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		if got := run("MGET", keys[0], keys[5000], keys[16000]); got != strings.Join([]string{"v" + keys[0], "v" + keys[5000], "v" + keys[16000]}, "\n") {
			t.Fatalf("redis-cli MGET across slots = %q", got)
		}
		if got := run("DEL", keys[0], keys[5000], keys[16000]); got != "3" {
			t.Fatalf("redis-cli DEL across slots = %q", got)
		}
		cmd = exec.Command("redis-cli", "-h", host, "-p", port)
		cmd.Stdin = strings.NewReader("MULTI\nSET {cli}a 1\nINCR {cli}b\nEXEC\n")
		if out, err := cmd.CombinedOutput(); err != nil || strings.Fields(string(out))[0] != "OK" || !strings.Contains(string(out), "QUEUED") {
			t.Fatalf("redis-cli MULTI/EXEC: %v\n%s", err, out)
		}
		if got := run("GET", "{cli}b"); got != "1" {
			t.Fatalf("GET {cli}b after the transaction = %q", got)
		}
	})

	t.Run("redis-cli -c", func(t *testing.T) {
		keys := slotKeys("clic:")
		for _, k := range keys[:200] {
			out, err := exec.Command("redis-cli", "-c", "-h", host, "-p", port, "SET", k, "x").CombinedOutput()
			// A redirect would print "-> Redirected to slot ..." first.
			if err != nil || strings.TrimSpace(string(out)) != "OK" {
				t.Fatalf("redis-cli -c SET %s: %q, %v", k, out, err)
			}
		}
		out, err := exec.Command("redis-cli", "-c", "-h", host, "-p", port, "GET", keys[7]).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "x" {
			t.Fatalf("redis-cli -c GET: %q, %v", out, err)
		}
	})

	t.Run("redis-py", func(t *testing.T) {
		script := fmt.Sprintf(`
import sys
import redis
r = redis.Redis(host=%q, port=%s)
keys = sys.stdin.read().split()
assert len(keys) == 16384
p = r.pipeline(transaction=False)
for k in keys:
    p.set(k, "v" + k)
assert all(p.execute())
assert r.mget(keys) == [("v" + k).encode() for k in keys]
assert r.get(keys[100]) == ("v" + keys[100]).encode()
p = r.pipeline()   # transaction=True: MULTI ... EXEC
p.set("{py}:x", "1").incr("{py}:y")
assert p.execute() == [True, 1]
assert r.delete(*keys[:1000]) == 1000
assert r.exists(*keys[:1000]) == 0
assert r.exists(*keys[1000:2000]) == 1000
print("ok")
`, host, port)
		cmd := exec.Command("/usr/bin/python3", "-c", script)
		cmd.Stdin = strings.NewReader(strings.Join(slotKeys("py:"), "\n"))
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("redis-py (Debian python3-redis) with default options: %v\n%s", err, out)
		}
		checkOnOwners(t, []string{"{py}:x"}, func(string) string { return "1" })
	})

	t.Run("go-redis", func(t *testing.T) {
		rdb := redis.NewClient(&redis.Options{Addr: cp.addr})
		defer rdb.Close()
		keys := slotKeys("gr:")
		pipe := rdb.Pipeline()
		for _, k := range keys {
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
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{gr}:a", "1", 0)
			p.Incr(ctx, "{gr}:b")
			return nil
		}); err != nil {
			t.Fatalf("MULTI/EXEC on one hash tag: %v", err)
		}
		if n, err := rdb.Del(ctx, keys[:500]...).Result(); err != nil || n != 500 {
			t.Fatalf("DEL across slots = %d, %v", n, err)
		}
		checkOnOwners(t, keys[500:564], func(k string) string { return "v" + k })
	})

	t.Run("go-redis ClusterClient", func(t *testing.T) {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{cp.addr}})
		defer rdb.Close()
		if err := rdb.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
			if shard.Options().Addr != cp.addr {
				return fmt.Errorf("shard at %s, want the proxy %s", shard.Options().Addr, cp.addr)
			}
			return shard.Ping(ctx).Err()
		}); err != nil {
			t.Fatalf("ForEachShard: %v", err)
		}
		keys := slotKeys("gc:")
		for _, k := range keys[:100] {
			if err := rdb.Set(ctx, k, "v"+k, 0).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
		}
		pipe := rdb.Pipeline()
		for _, k := range keys[100:] {
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
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{gc}:a", "1", 0)
			p.Incr(ctx, "{gc}:b")
			return nil
		}); err != nil {
			t.Fatalf("MULTI/EXEC on one hash tag: %v", err)
		}
		checkOnOwners(t, keys[:64], func(k string) string { return "v" + k })
	})
}

// Four clients write through a redis_cluster pool while a master is
// SIGKILLed: writes to its slots fail only until the cluster has promoted
// its replica, and every write acknowledged after the kill is there
// afterwards. (A write the old master acknowledged just before it died
// may be lost: Redis replicates asynchronously.)
func TestClusterPoolFailoverWriters(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 1)
	cp := startClusterProxy(t, c)
	victim := c.Masters()[1]
	view := c.View(t, victim)
	var victimSlot [hashring.SlotCount]bool
	for s, owner := range view.Owners {
		victimSlot[s] = owner == victim.ID
	}

	type ack struct {
		key, value string
		at         time.Time
	}
	const writers = 4
	var stop atomic.Bool
	var wg sync.WaitGroup
	acked := make([][]ack, writers)
	failed := make([]int, writers)
	var killedAt atomic.Pointer[time.Time]
	resumed := make([]time.Time, writers) // each writer's first ack on the victim's slots after the kill
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := proxytest.Dial(t, cp.addr)
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("fw%d:%d", w, i%2048)
				v := strconv.Itoa(i)
				r, err := cl.Do("SET", k, v)
				if err != nil {
					t.Errorf("writer %d: SET %s: %v", w, k, err)
					return
				}
				if r.String() != "+OK" {
					failed[w]++
					time.Sleep(10 * time.Millisecond)
					continue
				}
				now := time.Now()
				acked[w] = append(acked[w], ack{k, v, now})
				if kill := killedAt.Load(); kill != nil && resumed[w].IsZero() && now.After(*kill) && victimSlot[hashring.KeySlot([]byte(k))] {
					resumed[w] = now
				}
			}
		}()
	}
	var replica *proxytest.ClusterNode
	for id, master := range view.Master {
		if master == victim.ID {
			replica = c.Node(id)
		}
	}
	if replica == nil {
		t.Fatalf("%s has no replica", victim.Addr)
	}
	time.Sleep(time.Second)
	victim.Kill()
	now := time.Now()
	killedAt.Store(&now)
	var promoted time.Time
	role := replica.Client(t)
	for promoted.IsZero() {
		if time.Since(now) > proxytest.ClusterTimeout {
			t.Fatalf("%s not promoted %v after its master was killed", replica.Addr, proxytest.ClusterTimeout)
		}
		if r, err := role.Do("ROLE"); err == nil && r.Type == '*' && len(r.Elems) > 0 && string(r.Elems[0].Str) == "master" {
			promoted = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.WaitStable(t)
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()

	// The last acknowledged value of each key, among writes after the kill.
	last := map[string]string{}
	total := 0
	for w := range writers {
		total += len(acked[w])
		for _, a := range acked[w] {
			if a.at.After(now) {
				last[a.key] = a.value
			}
		}
	}
	if len(last) == 0 {
		t.Fatalf("no write was acknowledged after the kill (%d before, %v failed)", total, failed)
	}
	cl := proxytest.Dial(t, cp.addr)
	for k, v := range last {
		if got := do(t, cl, "GET", k); got != bulk(v) {
			t.Errorf("GET %s = %q, want %q, acknowledged after the kill", k, got, v)
		}
	}
	var after []string
	for _, r := range resumed {
		if r.IsZero() {
			t.Errorf("a writer had no write to the killed master's slots acknowledged after the kill")
			continue
		}
		after = append(after, r.Sub(promoted).Round(time.Millisecond).String())
	}
	t.Logf("%d writes acknowledged, %d keys written after the kill; failed while the cluster failed over: %v; the replica was promoted %v after the kill, and writes to its slots resumed %v after that",
		total, len(last), failed, promoted.Sub(now).Round(time.Millisecond), after)
}

// The whole-pool commands of a redis_cluster pool reach every master, as
// they reach every server of a ring: SCAN and KEYS see the keys of all
// slots, SCRIPT LOAD makes EVALSHA work on each master's keys, and FLUSHDB
// empties every master.
func TestClusterPoolWholePoolCommands(t *testing.T) {
	c := proxytest.StartCluster(t, 3, 0)
	cp := startClusterProxy(t, c)
	cl := proxytest.Dial(t, cp.addr)
	var keys []string // in every fifth slot, so on every master
	for i, k := range slotKeys("wp:") {
		if i%5 == 0 {
			keys = append(keys, k)
		}
	}
	var cmds [][]string
	for _, k := range keys {
		cmds = append(cmds, []string{"SET", k, "v"})
	}
	for i, r := range pipelineChunks(t, cl, cmds) {
		if r != "+OK\r\n" {
			t.Fatalf("%v = %q", cmds[i], r)
		}
	}

	seen := map[string]int{}
	cursor := "0"
	for {
		r, err := cl.Do("SCAN", cursor, "COUNT", "500")
		if err != nil || r.Type != '*' || len(r.Elems) != 2 {
			t.Fatalf("SCAN %s = %v, %v", cursor, r, err)
		}
		for _, e := range r.Elems[1].Elems {
			seen[string(e.Str)]++
		}
		if cursor = string(r.Elems[0].Str); cursor == "0" {
			break
		}
	}
	for _, k := range keys {
		if seen[k] != 1 {
			t.Fatalf("SCAN returned %s %d times, want once (%d keys seen)", k, seen[k], len(seen))
		}
	}
	if r, err := cl.Do("KEYS", "wp:*"); err != nil || len(r.Elems) != len(keys) {
		t.Fatalf("KEYS wp:* = %d keys, %v, want %d", len(r.Elems), err, len(keys))
	}

	script := "return redis.call('GET', KEYS[1])"
	r, err := cl.Do("SCRIPT", "LOAD", script)
	if err != nil || r.Type != '$' {
		t.Fatalf("SCRIPT LOAD = %v, %v", r, err)
	}
	sha := string(r.Str)
	for _, m := range c.Masters() {
		var k string
		for _, key := range keys {
			if c.Owner(t, c.KeySlot(t, key)).ID == m.ID {
				k = key
				break
			}
		}
		if got := do(t, cl, "EVALSHA", sha, "1", k); got != bulk("v") {
			t.Errorf("EVALSHA on %s, a key of %s = %q", k, m.Addr, got)
		}
	}

	if got := do(t, cl, "FLUSHDB"); got != "+OK\r\n" {
		t.Fatalf("FLUSHDB = %q", got)
	}
	for _, m := range c.Masters() {
		if got := do(t, m.Client(t), "DBSIZE"); got != ":0\r\n" {
			t.Errorf("DBSIZE on master %s after FLUSHDB through the proxy = %q", m.Addr, got)
		}
	}
}
