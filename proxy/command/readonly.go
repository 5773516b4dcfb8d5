package command

// ReadOnly reports whether Redis flags the command readonly: it reads and
// never writes, so sending it twice changes nothing.
func (c *Spec) ReadOnly() bool { return c.flags&cmdReadonly != 0 && c.flags&cmdWrite == 0 }

// ReplicaRead reports whether a replica may serve the command in its
// master's stead: it is ReadOnly and runs no script (EVAL_RO, FCALL_RO
// stay with the master, whose scripts and functions are the ones loaded).
func (c *Spec) ReplicaRead() bool { return c.ReadOnly() && c.acl&aclScripting == 0 }
