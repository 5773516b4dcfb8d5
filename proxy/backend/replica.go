package backend

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// A group's replica that takes reads (read_from) is an upstream of its
// own, keyed like the group's with the replica's address and Replica set:
// every connection to it checks with ROLE in its handshake that the node
// is a replica whose link to its master is connected, so that no read goes
// to a node that is a master now, or a replica that lost its master.

// ErrNotReplica is why a connection to a group's replica was refused: ROLE
// on the node did not say a replica with its master link connected.
var ErrNotReplica = errors.New("not a connected replica")

// notReplicaError is ErrNotReplica with the group and what ROLE said.
type notReplicaError struct {
	group, role, state string
}

func (e *notReplicaError) Error() string {
	if e.state != "" {
		return fmt.Sprintf("the node is not a connected replica of group %s: ROLE says %s, link %s", e.group, e.role, e.state)
	}
	return fmt.Sprintf("the node is not a connected replica of group %s: ROLE says %s", e.group, e.role)
}

func (e *notReplicaError) Unwrap() error { return ErrNotReplica }

// Role is what a ROLE reply says of a node.
type Role struct {
	Role string // "master", "slave", "sentinel"
	// Offset is a master's replication offset, or the offset a replica
	// has processed.
	Offset int64
	// State is a replica's master link: "connected" when it is up.
	State string
	// Replicas are a master's replicas, "host:port", with the offset
	// each last acknowledged.
	Replicas map[string]int64
}

// ParseRole reads a ROLE reply, RESP2 or RESP3.
func ParseRole(reply []byte) (Role, error) {
	var r Role
	typ, v, next, ok := respItem(reply, 0)
	if !ok || typ != '*' {
		return r, fmt.Errorf("ROLE: not an array reply: %q", clip(reply))
	}
	n, _ := strconv.Atoi(string(v))
	var items [][]byte
	pos := next
	for i := 0; i < n; i++ {
		typ, v, next, ok = respItem(reply, pos)
		if !ok {
			return r, fmt.Errorf("ROLE: malformed reply: %q", clip(reply))
		}
		if typ == '*' && len(items) == 2 && string(items[0]) == "master" {
			// The master's replicas: each an array of ip, port, offset.
			if r.Replicas, next, ok = parseRoleReplicas(reply, v, next); !ok {
				return r, fmt.Errorf("ROLE: malformed replica list: %q", clip(reply))
			}
		}
		items, pos = append(items, v), next
	}
	if len(items) == 0 {
		return r, fmt.Errorf("ROLE: empty reply")
	}
	r.Role = string(items[0])
	switch r.Role {
	case "master":
		if len(items) > 1 {
			r.Offset, _ = strconv.ParseInt(string(items[1]), 10, 64)
		}
	case "slave":
		if len(items) > 3 {
			r.State = string(items[3])
		}
		if len(items) > 4 {
			r.Offset, _ = strconv.ParseInt(string(items[4]), 10, 64)
		}
	}
	return r, nil
}

// parseRoleReplicas reads the count-long list of a master's replicas that
// starts at pos, and returns where it ends.
func parseRoleReplicas(reply, count []byte, pos int) (map[string]int64, int, bool) {
	n, err := strconv.Atoi(string(count))
	if err != nil || n < 0 {
		return nil, pos, false
	}
	out := make(map[string]int64, n)
	for i := 0; i < n; i++ {
		typ, v, next, ok := respItem(reply, pos)
		if !ok || typ != '*' || string(v) != "3" {
			return nil, pos, false
		}
		pos = next
		var f [3][]byte
		for j := range f {
			if _, f[j], pos, ok = respItem(reply, pos); !ok {
				return nil, pos, false
			}
		}
		off, _ := strconv.ParseInt(string(f[2]), 10, 64)
		out[net.JoinHostPort(string(f[0]), string(f[1]))] = off
	}
	return out, pos, true
}

// respItem reads the header of the RESP item at reply[pos:]: its type and,
// for a bulk string its contents, else the rest of its line (an array's
// count, an integer's digits). next is where the following item starts.
func respItem(reply []byte, pos int) (typ byte, v []byte, next int, ok bool) {
	if pos >= len(reply) {
		return 0, nil, pos, false
	}
	i := indexCRLF(reply[pos:])
	if i < 1 {
		return 0, nil, pos, false
	}
	typ, line := reply[pos], reply[pos+1:pos+i]
	next = pos + i + 2
	if typ != '$' {
		return typ, line, next, true
	}
	n, err := strconv.Atoi(string(line))
	if err != nil || n < 0 || next+n+2 > len(reply) {
		return 0, nil, pos, false
	}
	return typ, reply[next : next+n], next + n + 2, true
}

// clip shortens a reply for an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// checkReplicaRole returns nil if reply, the reply to ROLE, says a replica
// whose master link is connected, else an error naming group.
func checkReplicaRole(group string, reply []byte) error {
	if len(reply) > 0 && reply[0] == '-' {
		return fmt.Errorf("ROLE refused: %s", trimCRLF(string(reply[1:])))
	}
	r, err := ParseRole(reply)
	if err != nil {
		return &notReplicaError{group: group, role: "nothing readable"}
	}
	if r.Role != "slave" || r.State != "connected" {
		return &notReplicaError{group: group, role: r.Role, state: r.State}
	}
	return nil
}

// ProbeReplica dials u's replica as its connections are dialled (AUTH,
// SELECT, ROLE) and closes the connection: nil if ROLE says a replica
// whose master link is connected, else why not, with what ROLE said when
// it answered. A replica whose link is down refuses new connections, so
// this is how its link state is known then.
func (u *Upstream) ProbeReplica(timeout time.Duration) (Role, error) {
	d := u.dialer
	d.doubt = nil
	conn, err := d.dial(u.address.DialAddr(), timeout)
	if err == nil {
		conn.Close()
		return Role{Role: "slave", State: "connected"}, nil
	}
	var nr *notReplicaError
	if errors.As(err, &nr) {
		return Role{Role: nr.role, State: nr.state}, err
	}
	return Role{}, err
}

// IsReplica reports whether u is a group's replica (its Key says so).
func (u *Upstream) IsReplica() bool { return u.key.Replica }

// Proto is the protocol the connection speaks, RESP2 or RESP3.
func (b *Conn) Proto() int { return b.proto }
