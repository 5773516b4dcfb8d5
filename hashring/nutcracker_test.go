package hashring_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// The differential test: keys are written through a real nutcracker 0.5.0
// into real redis-servers, each server is asked which keys it holds, and
// hashring must name the same server for every key.

// ncServer is one line of a pool's servers: list, on its own redis-server.
type ncServer struct {
	redis  *proxytest.Redis
	name   string // "" for a line without a name
	weight int
}

func (s ncServer) line() string {
	l := fmt.Sprintf("%s:%d", s.redis.Addr, s.weight)
	if s.name != "" {
		l += " " + s.name
	}
	return l
}

func (s ncServer) node() hashring.Node {
	return hashring.Node{Name: s.name, Addr: s.redis.Addr, Weight: s.weight}
}

// label is how failures name a server: its ring name as the config says it.
func (s ncServer) label() string {
	if s.name != "" {
		return s.name
	}
	return s.redis.Addr
}

type ncPool struct {
	servers      []ncServer // in config order
	hash         string
	distribution string
	hashTag      string
	eject        bool // auto_eject_hosts with one failure and a 10-minute retry
}

func (p ncPool) yaml(listen string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "placement:\n  listen: %s\n  redis: true\n  hash: %s\n  distribution: %s\n",
		listen, p.hash, p.distribution)
	if p.hashTag != "" {
		fmt.Fprintf(&b, "  hash_tag: %q\n", p.hashTag)
	}
	if p.eject {
		b.WriteString("  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n")
	}
	b.WriteString("  servers:\n")
	for _, s := range p.servers {
		fmt.Fprintf(&b, "   - %s\n", s.line())
	}
	return b.String()
}

func (p ncPool) options(t *testing.T) hashring.Options {
	t.Helper()
	d, err := hashring.ParseDistribution(p.distribution)
	if err != nil {
		t.Fatal(err)
	}
	return hashring.Options{Hash: p.hash, Distribution: d, HashTag: p.hashTag}
}

// ring builds the ring nutcracker should agree with: the nodes sorted with
// SortNodes. It returns the servers in the ring's node order.
func (p ncPool) ring(t *testing.T, opts hashring.Options) (*hashring.Ring, []ncServer) {
	t.Helper()
	byAddr := make(map[string]ncServer)
	nodes := make([]hashring.Node, len(p.servers))
	for i, s := range p.servers {
		nodes[i] = s.node()
		byAddr[s.redis.Addr] = s
	}
	hashring.SortNodes(nodes)
	order := make([]ncServer, len(nodes))
	for i, n := range nodes {
		order[i] = byAddr[n.Addr]
	}
	return newRing(t, nodes, opts), order
}

// unsortedRing builds a ring over the servers in config order, which
// nutcracker does not use.
func (p ncPool) unsortedRing(t *testing.T, opts hashring.Options) (*hashring.Ring, []ncServer) {
	t.Helper()
	nodes := make([]hashring.Node, len(p.servers))
	for i, s := range p.servers {
		nodes[i] = s.node()
	}
	return newRing(t, nodes, opts), p.servers
}

func newRing(t *testing.T, nodes []hashring.Node, opts hashring.Options) *hashring.Ring {
	t.Helper()
	r, err := hashring.New(nodes, opts)
	if err != nil {
		t.Fatalf("New(%v, %+v): %v", nodes, opts, err)
	}
	return r
}

// ncNutcrackerHashes are nutcracker's hashes, HashNames without "farm".
func ncNutcrackerHashes(t *testing.T) []string {
	t.Helper()
	names := hashring.HashNames()
	if len(names) < 12 {
		t.Fatalf("HashNames() = %q, want nutcracker's 12 hashes first", names)
	}
	return names[:12]
}

// ncWrongHash returns another of nutcracker's hashes than hash.
func ncWrongHash(t *testing.T, hash string) string {
	hashes := ncNutcrackerHashes(t)
	return hashes[(slices.Index(hashes, hash)+5)%len(hashes)]
}

func ncRedisServers(t *testing.T, n int) []*proxytest.Redis {
	t.Helper()
	servers := make([]*proxytest.Redis, n)
	for i := range servers {
		servers[i] = proxytest.StartRedis(t)
	}
	return servers
}

// ncWithWeights puts one server line on each redis-server, in reverse order
// of ring names, so that config order is never nutcracker's order. names and
// weights cycle; no names gives "host:port" lines.
func ncWithWeights(redis []*proxytest.Redis, names []string, weights ...int) []ncServer {
	servers := make([]ncServer, len(redis))
	for i, r := range redis {
		servers[i].redis = r
	}
	if names == nil {
		slices.SortFunc(servers, func(a, b ncServer) int { return strings.Compare(b.redis.Addr, a.redis.Addr) })
	}
	for i := range servers {
		servers[i].weight = weights[i%len(weights)]
		if names != nil {
			servers[i].name = names[i]
		}
	}
	return servers
}

// Ring names whose nutcracker order (length first) is b, mid, zeta, alpha,
// longername: neither config order nor byte order.
var ncNames = []string{"zeta", "alpha", "mid", "b", "longername"}

func TestNutcrackerPlacement(t *testing.T) {
	proxytest.NutcrackerBinary(t)
	keys := ncKeys(3000)
	redis := ncRedisServers(t, 25)
	sets := make(chan []*proxytest.Redis, 5)
	for i := 0; i < 25; i += 5 {
		sets <- redis[i : i+5]
	}

	type tc struct {
		name string
		pool func(set []*proxytest.Redis) ncPool
	}
	var cases []tc
	for _, hash := range ncNutcrackerHashes(t) {
		for _, dist := range []string{"ketama", "modula"} {
			cases = append(cases,
				tc{hash + "/" + dist + "/named", func(set []*proxytest.Redis) ncPool {
					return ncPool{servers: ncWithWeights(set, ncNames, 1, 2, 3), hash: hash, distribution: dist}
				}},
				tc{hash + "/" + dist + "/weighted", func(set []*proxytest.Redis) ncPool {
					return ncPool{servers: ncWithWeights(set[:4], nil, 3, 1, 2), hash: hash, distribution: dist}
				}},
				tc{hash + "/" + dist + "/equal", func(set []*proxytest.Redis) ncPool {
					return ncPool{servers: ncWithWeights(set[:3], nil, 1), hash: hash, distribution: dist}
				}},
			)
		}
	}
	for _, tag := range []struct{ tag, hash string }{{"{}", "fnv1a_64"}, {"$$", "murmur"}} {
		for _, dist := range []string{"ketama", "modula"} {
			cases = append(cases, tc{tag.hash + "/" + dist + "/hash_tag " + tag.tag, func(set []*proxytest.Redis) ncPool {
				return ncPool{servers: ncWithWeights(set[:3], nil, 1), hash: tag.hash, distribution: dist, hashTag: tag.tag}
			}})
		}
	}

	t.Run("pools", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				set := <-sets
				defer func() { sets <- set }()
				ncCheckPool(t, c.pool(set), keys)
			})
		}
	})

	// 25 equal servers get 156 ketama points each instead of 160 (float32
	// rounding in nutcracker's ketama_update).
	t.Run("25 servers", func(t *testing.T) {
		for _, dist := range []string{"ketama", "modula"} {
			t.Run(dist, func(t *testing.T) {
				ncCheckPool(t, ncPool{servers: ncWithWeights(redis, nil, 1), hash: "fnv1a_64", distribution: dist}, keys)
			})
		}
	})

	t.Run("ejection", func(t *testing.T) {
		for i, dist := range []string{"ketama", "modula"} {
			set := redis[5*i : 5*i+5]
			t.Run(dist, func(t *testing.T) {
				t.Parallel()
				ncCheckEjection(t, ncPool{servers: ncWithWeights(set, nil, 1, 2), hash: "md5", distribution: dist, eject: true}, keys)
			})
		}
	})
}

// ncCheckPool writes keys through nutcracker and compares where they landed
// with the ring, and checks that rings built with a mistake do not match.
func ncCheckPool(t *testing.T, p ncPool, keys []string) {
	opts := p.options(t)
	ncFlush(t, p.servers)
	n := proxytest.StartNutcracker(t, p.yaml(fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))))
	ncWrite(t, n.Client(t, "placement"), keys)
	held := ncHeld(t, p.servers, keys)

	ring, order := p.ring(t, opts)
	ncCompare(t, "", ring, order, held, keys)

	wrong := opts
	wrong.Hash = ncWrongHash(t, p.hash)
	ring, order = p.ring(t, wrong)
	ncCompare(t, "hash "+wrong.Hash, ring, order, held, keys)
	if opts.Distribution == hashring.Modula {
		ring, order = p.unsortedRing(t, opts)
		ncCompare(t, "servers in config order", ring, order, held, keys)
	}
	if opts.HashTag != "" {
		untagged := opts
		untagged.HashTag = ""
		ring, order = p.ring(t, untagged)
		ncCompare(t, "no hash_tag", ring, order, held, keys)
	}
}

// ncCheckEjection stops one server, lets nutcracker eject it, and compares
// fresh keys with Ring.Without.
func ncCheckEjection(t *testing.T, p ncPool, keys []string) {
	opts := p.options(t)
	ncFlush(t, p.servers)
	n := proxytest.StartNutcracker(t, p.yaml(fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))))
	c := n.Client(t, "placement")
	full, order := p.ring(t, opts)
	warm := make([]string, 200)
	for i := range warm {
		warm[i] = fmt.Sprintf("warm-up:%d", i)
	}
	ncWrite(t, c, warm)
	ncCompare(t, "", full, order, ncHeld(t, p.servers, warm), warm)

	const victim = 2
	ejected := make([]bool, len(order))
	ejected[victim] = true
	order[victim].redis.Stop()
	probe := ""
	for _, k := range keys {
		if full.Lookup([]byte(k)) == victim {
			probe = k
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c.Do("SET", probe, "v")
		if err != nil {
			t.Fatalf("SET %q after stopping %s: %v", probe, order[victim].label(), err)
		}
		if string(r.Raw()) == "+OK\r\n" {
			break
		}
		if time.Now().After(deadline) {
			stats, _ := n.Stats()
			t.Fatalf("nutcracker did not eject %s within 10 s: SET %q = %v\nstats: %s\nlog:\n%s",
				order[victim].label(), probe, r, stats, n.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}

	var live []ncServer
	for i, s := range order {
		if !ejected[i] {
			live = append(live, s)
		}
	}
	ncFlush(t, live)
	ncWrite(t, c, keys)
	held := ncHeld(t, live, keys)
	ncCompare(t, "", full.Without(ejected), order, held, keys)
	ncCompare(t, "the ring before the ejection", full, order, held, keys)
}

func ncFlush(t *testing.T, servers []ncServer) {
	t.Helper()
	for _, s := range servers {
		if r, err := s.redis.Client(t).Do("FLUSHALL"); err != nil || r.Type != '+' {
			t.Fatalf("FLUSHALL on %s: %v, %v", s.redis.Addr, r, err)
		}
	}
}

// ncWrite SETs every key through c, pipelined in batches.
func ncWrite(t *testing.T, c *proxytest.Conn, keys []string) {
	t.Helper()
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 256)]
		keys = keys[len(batch):]
		for _, k := range batch {
			if err := c.Send("SET", k, "v"); err != nil {
				t.Fatalf("SET %q: %v", ncShort(k), err)
			}
		}
		for _, k := range batch {
			r, err := c.Read()
			if err != nil || string(r.Raw()) != "+OK\r\n" {
				t.Fatalf("SET %q through nutcracker = %v, %v; want +OK", ncShort(k), r, err)
			}
		}
	}
}

// ncHeld asks every server for its keys (KEYS *, binary-safe) and returns
// which server holds each key, failing t unless every key is held exactly
// once and nothing else is held.
func ncHeld(t *testing.T, servers []ncServer, keys []string) map[string]string {
	t.Helper()
	held := make(map[string]string, len(keys))
	for _, s := range servers {
		r, err := s.redis.Client(t).Do("KEYS", "*")
		if err != nil || r.Type != '*' {
			t.Fatalf("KEYS * on %s: %v, %v", s.redis.Addr, r, err)
		}
		for _, e := range r.Elems {
			k := string(e.Str)
			if other, dup := held[k]; dup {
				t.Errorf("key %q is on both %s and %s", ncShort(k), other, s.label())
			}
			held[k] = s.label()
		}
	}
	written := make(map[string]bool, len(keys))
	for _, k := range keys {
		written[k] = true
		if _, ok := held[k]; !ok {
			t.Errorf("key %q is on no server", ncShort(k))
		}
	}
	for k, s := range held {
		if !written[k] {
			t.Errorf("%s holds key %q, which was not written", s, ncShort(k))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return held
}

// ncCompare checks ring against where nutcracker put the keys. With mistake
// == "" every key must match; otherwise ring was built with that mistake and
// must disagree on some key, or the test could not tell the two apart.
func ncCompare(t *testing.T, mistake string, ring *hashring.Ring, order []ncServer, held map[string]string, keys []string) {
	t.Helper()
	wrong := 0
	for _, k := range keys {
		got := "none"
		if i := ring.Lookup([]byte(k)); i >= 0 {
			got = order[i].label()
		}
		if got == held[k] {
			continue
		}
		wrong++
		if mistake == "" && wrong <= 10 {
			t.Errorf("Lookup(%q) = server %s, nutcracker put it on %s", ncShort(k), got, held[k])
		}
	}
	switch {
	case mistake == "" && wrong > 0:
		t.Errorf("%d of %d keys placed differently from nutcracker", wrong, len(keys))
	case mistake != "" && wrong == 0:
		t.Errorf("a ring built with %s places all %d keys as nutcracker does; the keys cannot tell the difference", mistake, len(keys))
	}
}

// ncShort shortens long keys for messages.
func ncShort(k string) string {
	if len(k) <= 64 {
		return k
	}
	return fmt.Sprintf("%s...(%d bytes)", k[:48], len(k))
}

// ncKeys returns n distinct keys, the same on every run: plain ASCII, hash
// tags, empty and unclosed tags, tags at the end, $-tags, UTF-8, bytes
// 0x80-0xff, CR/LF/NUL and spaces, keys over 1 KB, and the empty key.
func ncKeys(n int) []string {
	rnd := rand.New(rand.NewPCG(2021, 713))
	seen := make(map[string]bool, n)
	keys := make([]string, 0, n)
	add := func(k string) {
		if !seen[k] && len(keys) < n {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, k := range []string{
		"", "foo", "bar", "hello", "user:1000", "key:1", "session:abc", "中文", "\x80\xff",
		"{", "}", "{}", "}{", "{{}}", "a{}{b}", "x{y}", "user{", "{user1000}.following",
		"$", "$$", "a$$b", "$tag$rest", "\r\n", " ", "\x00",
	} {
		add(k)
	}
	bytesFrom := func(alphabet string, lo, hi int) string {
		b := make([]byte, lo+rnd.IntN(hi-lo+1))
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		return string(b)
	}
	const (
		ascii  = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.{}$ /"
		alnum  = "abcdefghijklmnopqrstuvwxyz0123456789"
		digits = "0123456789"
	)
	var high, all bytes.Buffer
	for b := 0x80; b <= 0xff; b++ {
		high.WriteByte(byte(b))
	}
	for b := range 256 {
		all.WriteByte(byte(b))
	}
	runes := []string{"é", "ß", "ж", "中", "文", "日本", "🙂", "€", "ü"}
	utf8 := func() string {
		var b strings.Builder
		for range 1 + rnd.IntN(8) {
			if rnd.IntN(3) == 0 {
				b.WriteString(bytesFrom(alnum, 1, 3))
			} else {
				b.WriteString(runes[rnd.IntN(len(runes))])
			}
		}
		return b.String()
	}
	tag := func() string { return bytesFrom(alnum, 1, 6) }
	for i := 0; len(keys) < n; i++ {
		switch i % 12 {
		case 0:
			add(fmt.Sprintf("user:%d", rnd.IntN(1_000_000)))
		case 1:
			add(bytesFrom(ascii, 1, 40))
		case 2:
			add(fmt.Sprintf("%s{%s}%s", bytesFrom(alnum, 0, 8), tag(), bytesFrom(ascii, 0, 8)))
		case 3:
			add(fmt.Sprintf("{user%d}:%s", rnd.IntN(50), bytesFrom(alnum, 1, 6)))
		case 4:
			switch rnd.IntN(5) {
			case 0:
				add(bytesFrom(alnum, 0, 5) + "{}" + bytesFrom(ascii, 0, 8))
			case 1:
				add(bytesFrom(alnum, 1, 8) + "{")
			case 2:
				add(bytesFrom(alnum, 1, 8) + "{" + tag() + "}")
			case 3:
				add("}" + tag() + "{" + bytesFrom(alnum, 0, 5))
			default:
				add(bytesFrom(alnum, 0, 4) + "{}{" + tag() + "}")
			}
		case 5:
			switch rnd.IntN(4) {
			case 0:
				add("$" + tag() + "$" + bytesFrom(alnum, 0, 8))
			case 1:
				add(bytesFrom(alnum, 1, 8) + "$$" + bytesFrom(alnum, 0, 4))
			case 2:
				add(bytesFrom(alnum, 1, 8) + "$")
			default:
				add(bytesFrom(alnum, 0, 4) + "$" + tag() + "$")
			}
		case 6:
			add(utf8())
		case 7:
			add(bytesFrom(high.String(), 1, 24))
		case 8:
			add(bytesFrom(all.String(), 1, 32))
		case 9:
			add(bytesFrom(all.String(), 1, 3))
		case 10:
			if rnd.IntN(3) == 0 {
				add(bytesFrom(ascii, 1025, 3000) + "{" + tag() + "}" + bytesFrom(high.String(), 0, 40))
			} else {
				add(bytesFrom(digits, 1, 12))
			}
		case 11:
			add(utf8() + "{" + utf8() + "}" + bytesFrom(high.String(), 0, 4))
		}
	}
	return keys
}
