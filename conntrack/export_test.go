package conntrack

import "github.com/govs/govs/flow"

// The tests' entry points into the table: the data plane reaches the same code through
// LookupMiss/InsertMissed and TouchConn, which take what it already holds (a hash and a miss, an
// entry in hand); the tests name connections by tuple and id instead.

// LookupHinted is Lookup with k's hash already computed by Hash, and a hint from Prefetch: when the
// hinted entry holds k, it is the answer and the index is not walked again. A hint may be stale
// (entries came and went since Prefetch) or 0 (none); the answer is the same, only slower.
func (t *Table) LookupHinted(k *flow.Tuple, h uint64, hint uint32) (id uint32, dir Dir, ok bool) {
	if c, d := t.HintedConn(k, hint); c != nil {
		return (hint - 1) >> 1, d, true
	}
	r, ok := t.find(k, h)
	return r >> 1, Dir(r & 1), ok
}

// Insert adds a connection with original tuple orig (client → VIP) and returns its id. When the
// table is full, Config.FullPolicy decides: DropNew refuses with ErrFull; EvictOldestIdle removes an
// idle entry first, calling onEvict (if not nil) with it just before (so the caller can undo what
// it counted), and refuses with ErrFull only if none was found. Nothing is stored, and ErrExists
// returned, when a tuple is already in the table (for example two VIPs mapping one client port to
// the same real server port: the second reply tuple would be ambiguous). ErrNoTemplate: nc.Template
// is not a live template. onEvict must not modify the table.
func (t *Table) Insert(orig *flow.Tuple, nc *NewConn, now int64, onEvict func(id uint32, c *Conn)) (uint32, error) {
	ho := t.hashKey(orig)
	return t.insert(orig, ho, t.home(ho), nc, now, onEvict)
}

// Touch records a packet of entry id travelling in dir with TCP header flags tcpFlags at now: it
// refreshes the last-seen time and, for TCP, moves the state by IPVS's tables and sets the state's
// timeout. It returns the states before and after; the table's per-real counts already follow
// (IsActive(old) != IsActive(new) tells the caller that a least-connection weight changed).
func (t *Table) Touch(id uint32, dir Dir, tcpFlags uint8, now int64) (old, new State) {
	if id >= uint32(len(t.conns)) {
		return StateNone, StateNone
	}
	c := &t.conns[id]
	if c.ctl&(ctlLive|ctlDead) != ctlLive {
		return StateNone, StateNone
	}
	return t.TouchConn(c, dir, tcpFlags, now)
}
