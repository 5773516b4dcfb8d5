package backend

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shardproxy/shardproxy/proxy/resp"
)

// A group is a server that is a master with replicas, watched by Redis
// Sentinel: its upstream's Key has the group's name, its address is where
// discovery says the master is, and every connection to it, shared,
// dedicated or subscription, checks with ROLE in its handshake that the
// node is a master before it carries anything, so that no write reaches a
// node that is a replica, or an old master back from the dead before
// Sentinel demotes it.

// ErrNotMaster is why a connection to a group was refused: ROLE on the
// node did not say master.
var ErrNotMaster = errors.New("not the master")

// notMasterError is ErrNotMaster with the group and the role found.
type notMasterError struct {
	group, role string
}

func (e *notMasterError) Error() string {
	return fmt.Sprintf("the node is not the master of group %s: ROLE says %s", e.group, e.role)
}

func (e *notMasterError) Unwrap() error { return ErrNotMaster }

// checkRole returns nil if reply, the reply to ROLE, says master, else an
// error naming group and the role.
func checkRole(group string, reply []byte) error {
	if resp.IsError(reply) {
		return fmt.Errorf("ROLE refused: %s", trimCRLF(string(reply[1:])))
	}
	role := firstBulk(reply)
	if role == "master" {
		return nil
	}
	if role == "" {
		role = "nothing readable"
	}
	return &notMasterError{group: group, role: role}
}

// firstBulk returns the first element of an array reply of bulk strings,
// or "" if reply is not one.
func firstBulk(reply []byte) string {
	if len(reply) == 0 || reply[0] != '*' {
		return ""
	}
	i := indexCRLF(reply)
	if i < 0 || i+2 >= len(reply) || reply[i+2] != '$' {
		return ""
	}
	rest := reply[i+2:]
	j := indexCRLF(rest)
	if j < 0 {
		return ""
	}
	n, err := strconv.Atoi(string(rest[1:j]))
	if err != nil || n < 0 || j+2+n > len(rest) {
		return ""
	}
	return string(rest[j+2 : j+2+n])
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}

// CheckMaster dials addr as a connection to u would be (AUTH, SELECT),
// asks ROLE, and closes it: nil means the node at addr is a master now; an
// error wrapping ErrNotMaster that it is not. It does not count as u's
// failure, nor does it tell the pool the master may have moved.
func (u *Upstream) CheckMaster(addr string, timeout time.Duration) error {
	d := u.dialer
	d.doubt = nil
	if d.group == "" {
		d.group = "?"
	}
	conn, err := d.dial(addr, timeout)
	if err != nil {
		return err
	}
	return conn.Close()
}

// doubt tells the pool that uses u that its group's master may have moved:
// a connection to it was lost or refused, or ROLE said it is no master.
func (u *Upstream) doubt() {
	if u.key.Group == "" {
		return
	}
	if f := u.config.Load().MasterDoubt; f != nil {
		f()
	}
}

// IsGroup reports whether u is a group's (its Key names one).
func (u *Upstream) IsGroup() bool { return u.key.Group != "" }
