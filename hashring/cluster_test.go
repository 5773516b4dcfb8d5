package hashring_test

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// clusterSlotKeys returns keys that exercise Redis Cluster's hash tag rule:
// '{' and '}' at every position of a short key, empty, nested and repeated
// tags, binary bytes, and random bytes drawn mostly from "{}ab\x00\xff".
func clusterSlotKeys() [][]byte {
	var keys [][]byte
	add := func(k []byte) { keys = append(keys, bytes.Clone(k)) }
	for _, k := range []string{
		"", "{", "}", "{}", "}{", "{}{}", "{{}}", "{}a", "a{}", "a{}{b}", "a{b}{}", "{{a}}", "{a}}",
		"a{b{c}d}e", "}a{b}", "{\x00}", "\xff{\x80}\x7f", "user{1000}:following", "{user1000}.followers",
		"foo", "bar", "123456789", string(make([]byte, 1000)), "{" + string(bytes.Repeat([]byte("x"), 5000)) + "}",
	} {
		add([]byte(k))
	}
	base := []byte("user:1000:profile")
	for i := 0; i <= len(base); i++ {
		for j := i; j <= len(base); j++ {
			k := append(append(append([]byte{}, base[:i]...), '{'), base[i:j]...)
			k = append(append(k, '}'), base[j:]...)
			add(k) // a tag from i to j, empty when i == j
			k = append(append(append([]byte{}, base[:i]...), '}'), base[i:j]...)
			k = append(append(k, '{'), base[j:]...)
			add(k) // the braces the wrong way round
		}
		add(append(append(append([]byte{}, base[:i]...), '{'), base[i:]...))
		add(append(append(append([]byte{}, base[:i]...), '}'), base[i:]...))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "{}ab\x00\xff"
	for range 3000 {
		k := make([]byte, rng.IntN(24))
		for i := range k {
			if rng.IntN(4) == 0 {
				k[i] = byte(rng.UintN(256))
			} else {
				k[i] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		add(k)
	}
	for range 500 {
		k := make([]byte, rng.IntN(200))
		for i := range k {
			k[i] = byte(rng.UintN(256))
		}
		add(k)
	}
	return keys
}

// KeySlot answers what a real Redis Cluster node's CLUSTER KEYSLOT answers.
func TestKeySlotRedisCluster(t *testing.T) {
	nodes := filepath.Join(t.TempDir(), "nodes.conf")
	r := proxytest.StartRedis(t, proxytest.RedisArgs("--cluster-enabled", "yes", "--cluster-config-file", nodes))
	c := r.Client(t)
	keys := clusterSlotKeys()
	const batch = 500 // read now and then: redis-server stops reading while its replies wait
	for start := 0; start < len(keys); start += batch {
		part := keys[start:min(start+batch, len(keys))]
		for _, k := range part {
			if err := c.Send("CLUSTER", "KEYSLOT", string(k)); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range part {
			rep, err := c.Read()
			if err != nil {
				t.Fatal(err)
			}
			if rep.Type != ':' {
				t.Fatalf("CLUSTER KEYSLOT %q: %v", k, rep)
			}
			if got := hashring.KeySlot(k); int64(got) != rep.Int {
				t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, rep.Int)
			}
		}
	}
	if len(keys) < 3000 {
		t.Errorf("%d keys, want thousands", len(keys))
	}
}
