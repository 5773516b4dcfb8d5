package hashring

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"

	"github.com/dgryski/go-farm"
)

// HashFunc hashes a key as nutcracker's hashkit does.
type HashFunc func(key []byte) uint32

// hashes lists nutcracker's hash functions in nutcracker's order
// (src/hashkit/nc_hashkit.h HASH_CODEC), then ours.
var hashes = [...]struct {
	name string
	fn   HashFunc
}{
	{"one_at_a_time", oneAtATime},
	{"md5", md5Hash},
	{"crc16", crc16},
	{"crc32", crc32Memcached},
	{"crc32a", crc32a},
	{"fnv1_64", fnv1_64},
	{"fnv1a_64", fnv1a64},
	{"fnv1_32", fnv1_32},
	{"fnv1a_32", fnv1a32},
	{"hsieh", hsieh},
	{"murmur", murmur},
	{"jenkins", jenkins},
	// Not in nutcracker: for new deployments only (see the package doc).
	{"farm", farm.Fingerprint32},
}

// Hash returns the hash function nutcracker knows by name ("one_at_a_time",
// "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1a_64", "fnv1_32",
// "fnv1a_32", "hsieh", "murmur", "jenkins"), or "farm". Names are
// case-sensitive, as in nutcracker.
func Hash(name string) (HashFunc, error) {
	for _, h := range hashes {
		if h.name == name {
			return h.fn, nil
		}
	}
	return nil, fmt.Errorf("unknown hash %q", name)
}

// HashNames lists every name Hash accepts: nutcracker's twelve in
// nutcracker's order, then "farm".
func HashNames() []string {
	names := make([]string, len(hashes))
	for i, h := range hashes {
		names[i] = h.name
	}
	return names
}

// sx is a byte read through a C "const char *" on x86-64, where char is
// signed: bytes >= 0x80 sign-extend (0x80 becomes 0xffffff80). nutcracker's
// one_at_a_time, fnv* and hsieh's 3-byte tail depend on it, and keys with
// such bytes would move to other servers without it.
func sx(b byte) uint32 { return uint32(int32(int8(b))) }

// sx64 is sx widened to 64 bits, for fnv1_64's 64-bit state.
func sx64(b byte) uint64 { return uint64(int64(int8(b))) }

// oneAtATime is Bob Jenkins' one-at-a-time hash over signed bytes.
func oneAtATime(key []byte) uint32 {
	var h uint32
	for _, b := range key {
		h += sx(b)
		h += h << 10
		h ^= h >> 6
	}
	h += h << 3
	h ^= h >> 11
	h += h << 15
	return h
}

// md5Hash is the first four bytes of the MD5 digest, little-endian.
func md5Hash(key []byte) uint32 {
	d := md5.Sum(key)
	return binary.LittleEndian.Uint32(d[:4])
}

// crc16Table is CRC-16/XMODEM (polynomial 0x1021, not reflected).
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 runs CRC-16/XMODEM in a 32-bit register that nutcracker never masks:
// the low 16 bits are the CRC, the high 16 bits are what was shifted out.
// It is not the Redis Cluster slot function.
func crc16(key []byte) uint32 {
	var crc uint32
	for _, b := range key {
		crc = crc<<8 ^ uint32(crc16Table[byte(crc>>8)^b])
	}
	return crc
}

// crc32Memcached is libmemcached's "crc32": bits 16..30 of CRC-32/IEEE, so
// 0..32767 only.
func crc32Memcached(key []byte) uint32 {
	return crc32.ChecksumIEEE(key) >> 16 & 0x7fff
}

// crc32a is plain CRC-32/IEEE.
func crc32a(key []byte) uint32 {
	return crc32.ChecksumIEEE(key)
}

// fnv1_64 is 64-bit FNV-1 over signed bytes, truncated to the low 32 bits.
func fnv1_64(key []byte) uint32 {
	h := uint64(0xcbf29ce484222325)
	for _, b := range key {
		h *= 0x100000001b3
		h ^= sx64(b)
	}
	return uint32(h)
}

// fnv1a64 is nutcracker's default hash: FNV-1a computed in 32 bits with the
// low halves of the 64-bit offset basis and prime, over signed bytes.
func fnv1a64(key []byte) uint32 {
	h := uint32(0x84222325)
	for _, b := range key {
		h ^= sx(b)
		h *= 0x1b3
	}
	return h
}

// fnv1_32 is 32-bit FNV-1 over signed bytes.
func fnv1_32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h *= 16777619
		h ^= sx(b)
	}
	return h
}

// fnv1a32 is 32-bit FNV-1a over signed bytes.
func fnv1a32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h ^= sx(b)
		h *= 16777619
	}
	return h
}

// hsieh is Paul Hsieh's SuperFastHash as nutcracker has it: the state starts
// at 0 rather than at the length, and only the third byte of a 3-byte tail is
// read as a signed char.
func hsieh(key []byte) uint32 {
	if len(key) == 0 {
		return 0
	}
	var h uint32
	for len(key) >= 4 {
		h += uint32(binary.LittleEndian.Uint16(key))
		tmp := uint32(binary.LittleEndian.Uint16(key[2:]))<<11 ^ h
		h = h<<16 ^ tmp
		h += h >> 11
		key = key[4:]
	}
	switch len(key) {
	case 3:
		h += uint32(binary.LittleEndian.Uint16(key))
		h ^= h << 16
		h ^= sx(key[2]) << 18
		h += h >> 11
	case 2:
		h += uint32(binary.LittleEndian.Uint16(key))
		h ^= h << 11
		h += h >> 17
	case 1:
		h += uint32(key[0])
		h ^= h << 10
		h += h >> 1
	}
	h ^= h << 3
	h += h >> 5
	h ^= h << 4
	h += h >> 17
	h ^= h << 25
	h += h >> 6
	return h
}

// murmur is MurmurHash2 with libmemcached's length-dependent seed
// 0xdeadbeef*len.
func murmur(key []byte) uint32 {
	const m = 0x5bd1e995
	n := uint32(len(key))
	h := 0xdeadbeef*n ^ n
	for len(key) >= 4 {
		k := binary.LittleEndian.Uint32(key)
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
		key = key[4:]
	}
	switch len(key) {
	case 3:
		h ^= uint32(key[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(key[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(key[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// jenkins is Bob Jenkins' lookup3 hashlittle with initval 13. An empty key
// returns the initial state without the final mix, as lookup3 does.
func jenkins(key []byte) uint32 {
	a := 0xdeadbeef + uint32(len(key)) + 13
	b, c := a, a
	if len(key) == 0 {
		return c
	}
	for len(key) > 12 {
		a += binary.LittleEndian.Uint32(key)
		b += binary.LittleEndian.Uint32(key[4:])
		c += binary.LittleEndian.Uint32(key[8:])
		a, b, c = jenkinsMix(a, b, c)
		key = key[12:]
	}
	// The last 1..12 bytes, zero-padded, as three little-endian words.
	var tail [12]byte
	copy(tail[:], key)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	return jenkinsFinal(a, b, c)
}

func jenkinsMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func jenkinsFinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}
