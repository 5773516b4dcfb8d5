// Package hashring places keys on servers exactly as twemproxy (nutcracker
// 0.5.0) does, so that shardproxy can replace a running nutcracker without
// moving a single key. It is pure: no I/O, no logging, nothing from the rest
// of shardproxy.
//
// # Pipeline
//
// For each key a pool looks up, nutcracker and Ring.Lookup do the same:
//
//  1. A pool of exactly one server returns it without hashing.
//  2. With hash_tag set (two bytes, such as "{}"), only the part between the
//     first opening byte and the first closing byte after it is hashed; when
//     either is missing or the part is empty ("a{}{b}"), the whole key is
//     (see TagKey).
//  3. The key is hashed with the pool's hash; an empty key hashes to 0
//     without calling the hash function.
//  4. The distribution maps the hash to a server: ketama takes the owner of
//     the first continuum point >= hash, wrapping past the last; modula takes
//     slot hash % Σweights, where each live server has weight consecutive
//     slots; random ignores the key and picks a live server uniformly
//     (weights ignored), independently for every key.
//
// # Hashes
//
// The hash option names one of nutcracker's twelve functions: one_at_a_time,
// md5, crc16, crc32, crc32a, fnv1_64, fnv1a_64 (the default), fnv1_32,
// fnv1a_32, hsieh, murmur and jenkins. They are bit-exact with nutcracker on
// x86-64, quirks included. nutcracker reads keys through a C "char *", which
// is signed on x86-64, so one_at_a_time, the four fnv hashes and the 3-byte
// tail of hsieh see bytes >= 0x80 as negative numbers; a key such as "café"
// hashes differently from true FNV (and from a nutcracker built for arm64,
// where char is unsigned). fnv1a_64 runs in 32 bits; crc16 keeps an unmasked
// 32-bit register; crc32 is libmemcached's 15-bit variant, which puts almost
// every key on one ketama server; murmur seeds with 0xdeadbeef*len; jenkins
// is lookup3 with initval 13; hsieh starts from 0.
//
// "farm" (farm.Fingerprint32 from github.com/dgryski/go-farm) is ours, not
// nutcracker's: it is fast and well spread, for new deployments only. A pool
// that is moving from nutcracker must keep nutcracker's hash, or nearly all
// of its keys change servers.
//
// # Servers
//
// A server line of nutcracker.yml, `host:port:weight [name]` or
// `/path.sock:weight [name]`, is a Node. Its ring name (Node.RingName) is
// what ketama hashes for its points and what the stats JSON is keyed by: the
// explicit name if given, else "host:port" exactly as written (a leading zero
// in the port stays), else the host alone when the port is 11211, else for a
// unix socket the path plus a trailing ":". The weight is never part of it.
// Weights count for named servers too. nutcracker orders a pool's servers by
// ring name, shorter first, then bytewise; that order gives the server
// indexes modula and random use and breaks ketama ties, so callers sort with
// SortNodes before New to match nutcracker.
//
// # Ketama
//
// Each live server gets floor(weight/Σweights·160/4·nlive)·4 points,
// computed step by step in float32 as nutcracker's C does. The rounding
// gives every server of an equal-weight pool 156 points instead of 160 for
// some pool sizes (25, 47, 50, ...), and a server far lighter than the
// others none at all (weights 100000 and 1 give 316 and 0). Point i of a
// server is the MD5 of "<ring name>-<i>" (at most 272 bytes), cut into four
// little-endian uint32 values; the points are sorted stably by value, so
// ties go to the lower server index.
//
// # Redis Cluster slots
//
// A Redis Cluster places keys by slot, not on a ring: KeySlot is the slot
// CLUSTER KEYSLOT answers, the CRC-16/XMODEM (polynomial 0x1021: the crc16
// hash without its unmasked high bits) of the key modulo 16384, folded in
// eight bytes at a time. Every key has a hash tag rule, with no option:
// when the key holds a '{' with a '}' after it and something between them,
// only the part between the first '{' and the first '}' after it is hashed
// (ClusterTag), the same rule as hash_tag "{}".
//
// # Ejection and reload
//
// With auto_eject_hosts, nutcracker takes a server that failed
// server_failure_limit times in a row out of the distribution for
// server_retry_timeout, then puts it back without a health check. It
// rebuilds the distribution over the live servers only, keeping every
// server's index: ketama recomputes all points with the live count and live
// total weight (26 servers losing one become 25 with 156 points each), and
// modula and random use the live servers alone, which moves most modula
// keys. Ring.Without builds that ring; the failure counting and timers
// belong to the caller.
//
// A Ring never changes after New. The proxy keeps the current ring of each
// pool in an atomic.Pointer[hashring.Ring], reads it with Load on every
// request (no lock), and on reload, discovery or ejection builds a new ring
// and Stores it. Lookup is safe for concurrent use and allocates nothing.
package hashring
