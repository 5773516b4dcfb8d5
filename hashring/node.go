package hashring

import (
	"slices"
	"strings"
)

// Node is one server as the config lists it.
type Node struct {
	// Name is the explicit name from the config line
	// (`host:port:weight name`), "" when none.
	Name string
	// Addr is the address exactly as written: "host:port" or
	// "/path/to.sock". A leading "/" marks a unix socket, as in nutcracker.
	Addr string
	// Weight is the server's weight, >= 1. New rejects anything less.
	Weight int
}

// memcachedPort is the port nutcracker leaves out of a ring name, for
// libmemcached compatibility (CONF_DEFAULT_KETAMA_PORT).
const memcachedPort = 11211

// RingName is the string nutcracker hashes for ketama points and uses as the
// server's key in the stats JSON:
//   - the explicit Name when there is one;
//   - for a unix socket, the path followed by ":" (nutcracker takes the
//     path plus the separator before the weight);
//   - the host alone when the port is 11211 (also when written "011211");
//   - otherwise Addr exactly as written, so "127.0.0.1:06379" keeps its zero.
//
// The weight is never part of the name.
func (n Node) RingName() string {
	if n.Name != "" {
		return n.Name
	}
	if strings.HasPrefix(n.Addr, "/") {
		return n.Addr + ":"
	}
	i := strings.LastIndexByte(n.Addr, ':')
	if i >= 0 && portIs(n.Addr[i+1:], memcachedPort) {
		return n.Addr[:i]
	}
	return n.Addr
}

// portIs reports whether s is a string of decimal digits whose value is
// want, leading zeros allowed, the way nutcracker's nc_atoi reads a port.
func portIs(s string, want int) bool {
	if s == "" {
		return false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		v = v*10 + int(c-'0')
		if v > want {
			return false
		}
	}
	return v == want
}

// SortNodes sorts nodes into nutcracker's server order: by ring name, a
// shorter name first, then bytewise (nutcracker's string_compare compares
// lengths before bytes). The sort is stable. This order decides the server
// index that modula and random use and that breaks ketama ties, so it must
// match nutcracker's for keys to land on the same servers.
func SortNodes(nodes []Node) {
	slices.SortStableFunc(nodes, func(a, b Node) int {
		return compareRingNames(a.RingName(), b.RingName())
	})
}

func compareRingNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
