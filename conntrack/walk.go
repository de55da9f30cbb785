package conntrack

// Live returns entry id if it is in use, a connection or a persistence template, and false for a
// free id or a deleted template kept only until its last connection ends. Ids run from 0 to Span;
// a caller lists the table by walking them, a slice at a time if it must not hold the table for
// long.
func (t *Table) Live(id uint32) (*Conn, bool) {
	if id >= t.hwm {
		return nil, false
	}
	c := &t.conns[id]
	if c.ctl&(ctlLive|ctlDead) != ctlLive {
		return nil, false
	}
	return c, true
}

// Remaining returns how much longer entry c may stay idle before it expires, in nanoseconds,
// counted from the latest time the table has seen (its latest insert, touch or Expire call); it is
// 0 or less for an entry overdue that Expire has not reached yet. A template with connections
// does not expire: its full timeout is returned.
func (t *Table) Remaining(c *Conn) int64 {
	timeout := t.timeoutOf(c)
	if c.ctl&ctlTemplate != 0 && c.aux > 0 {
		return int64(timeout) << TickShift
	}
	return int64(int32(timeout-(t.now-c.lastSeen))) << TickShift
}

// HintEntry returns the entry id and direction that a Prefetch hint names; meaningful when
// HintedConn found the hint's entry to hold the tuple.
func HintEntry(hint uint32) (id uint32, dir Dir) {
	r := hint - 1
	return r >> 1, Dir(r & 1)
}
