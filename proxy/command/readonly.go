package command

// ReadOnly reports whether Redis flags the command readonly: it reads and
// never writes, so sending it twice changes nothing.
func (c *Spec) ReadOnly() bool { return c.flags&cmdReadonly != 0 && c.flags&cmdWrite == 0 }
