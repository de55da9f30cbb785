package sched

import (
	"time"

	"github.com/govs/govs/flow"
)

// Locality-based schedulers remember, per destination address of the flow (the cache server's
// target in IPVS's web-cache use case), which real server took it. Their memory is a fixed
// set-associative table allocated by New: a full set evicts its least recently used entry, which
// stands in for IPVS's garbage collection of entries idle for 6 minutes when the table outgrows
// 16 × its buckets. Entries unused for LBLCExpiration are forgotten (sysctl lblc_expiration and
// lblcr_expiration, 24 hours by default).

const (
	// LBLCExpiration is how long an idle lblc/lblcr entry is remembered, and how often lblcr drops
	// the busiest server from a replicated set.
	LBLCExpiration = 24 * time.Hour

	lblcSets    = 1024 // power of two
	lblcWays    = 4    // entries per set: 4096 destination addresses per scheduler instance
	lblcrSetMax = 8    // servers in one lblcr replica set
)

// epoch anchors the schedulers' monotonic clock.
var epoch = time.Now()

// monoNow is nanoseconds on the monotonic clock.
func monoNow() int64 { return int64(time.Since(epoch)) }

// lblcOverloaded is lblc's and lblcr's is_overloaded: d has more active connections than its weight
// while some usable server is less than half loaded.
func lblcOverloaded(dests []Dest, d *Dest) bool {
	if active(d) <= int64(d.Weight) {
		return false
	}
	for i := range dests {
		o := &dests[i]
		if active(o)*2 < int64(o.Weight) && usable(o) {
			return true
		}
	}
	return false
}

// lblcSet returns the first entry of the set that f.Dst maps to.
func lblcSet(addr *[16]byte) int {
	return int(hashAddrPort(addr, 0, 0x6c626c63)&(lblcSets-1)) * lblcWays
}

// remap returns a function from the indices of old to those of dests (-1 = gone), matching servers by
// address and port.
func remap(old []destKey, dests []Dest) func(i int32) int32 {
	idx := make(map[destKey]int32, len(dests))
	for i := len(dests) - 1; i >= 0; i-- { // the first of duplicates wins
		idx[keyOf(&dests[i])] = int32(i)
	}
	return func(i int32) int32 {
		if i < 0 || int(i) >= len(old) {
			return -1
		}
		if j, ok := idx[old[i]]; ok {
			return j
		}
		return -1
	}
}

func keysOf(dests []Dest) []destKey {
	k := make([]destKey, len(dests))
	for i := range dests {
		k[i] = keyOf(&dests[i])
	}
	return k
}

type lblcEntry struct {
	addr    [16]byte
	dest    int32 // -1 = empty
	lastuse int64 // monoNow
}

// LocalityBasedLeastConnection is IPVS "lblc": a flow goes to the server that last took its
// destination address, unless that server is unusable or overloaded (more active connections than
// its weight while another server is under half its weight); then, and for new addresses, the wlc
// choice is made and remembered (ip_vs_lblc.c). Unlike IPVS, the remembered server's connection
// thresholds (ipvsadm -x) are honoured too. Create it with New.
type LocalityBasedLeastConnection struct {
	table [lblcSets * lblcWays]lblcEntry
	keys  []destKey // the servers at the last Update, to carry the table over a change
	now   func() int64
}

var _ Scheduler = (*LocalityBasedLeastConnection)(nil)

func newLBLC() *LocalityBasedLeastConnection {
	s := &LocalityBasedLeastConnection{now: monoNow}
	for i := range s.table {
		s.table[i].dest = -1
	}
	return s
}

// Name returns "lblc".
func (*LocalityBasedLeastConnection) Name() string { return "lblc" }

// Update keeps the remembered servers that are still in dests, by address and port.
func (s *LocalityBasedLeastConnection) Update(dests []Dest) {
	m := remap(s.keys, dests)
	for i := range s.table {
		if e := &s.table[i]; e.dest >= 0 {
			e.dest = m(e.dest)
		}
	}
	s.keys = keysOf(dests)
}

// Pick returns the server remembered for f.Dst if it can take the flow, else the wlc choice, or -1.
func (s *LocalityBasedLeastConnection) Pick(dests []Dest, f *flow.Tuple) int {
	if len(dests) != len(s.keys) {
		s.Update(dests)
	}
	if f == nil {
		f = &zeroFlow
	}
	now := s.now()
	set := s.table[lblcSet(&f.Dst):][:lblcWays]
	var e *lblcEntry
	for k := range set {
		if c := &set[k]; c.dest >= 0 && c.addr == f.Dst {
			if now-c.lastuse > int64(LBLCExpiration) {
				c.dest = -1
				break
			}
			e = c
			break
		}
	}
	if e != nil {
		e.lastuse = now
		if d := &dests[e.dest]; usable(d) && !lblcOverloaded(dests, d) {
			return int(e.dest)
		}
	}
	i := weightedLeast(dests)
	if i < 0 {
		return -1
	}
	if e == nil {
		e = &set[0]
		for k := range set { // an empty or expired way, else the least recently used
			c := &set[k]
			if c.dest < 0 || now-c.lastuse > int64(LBLCExpiration) {
				e = c
				break
			}
			if c.lastuse < e.lastuse {
				e = c
			}
		}
		e.addr = f.Dst
	}
	e.dest, e.lastuse = int32(i), now
	return i
}

type lblcrEntry struct {
	addr    [16]byte
	n       int32              // servers in set; 0 = empty entry
	set     [lblcrSetMax]int32 // newest first
	lastuse int64
	lastmod int64 // when set last changed
}

// LocalityBasedLeastConnectionReplication is IPVS "lblcr": each destination address has a set of
// servers; a flow goes to the least loaded (connections per weight) of them, unless it is overloaded
// as in lblc, in which case the wlc choice joins the set. A set that has not changed for
// LBLCExpiration loses its busiest member (ip_vs_lblcr.c). Sets hold at most 8 servers; adding a
// ninth drops the busiest. Create it with New.
type LocalityBasedLeastConnectionReplication struct {
	table [lblcSets * lblcWays]lblcrEntry
	keys  []destKey
	now   func() int64
}

var _ Scheduler = (*LocalityBasedLeastConnectionReplication)(nil)

func newLBLCR() *LocalityBasedLeastConnectionReplication {
	return &LocalityBasedLeastConnectionReplication{now: monoNow}
}

// Name returns "lblcr".
func (*LocalityBasedLeastConnectionReplication) Name() string { return "lblcr" }

// Update keeps the servers of each set that are still in dests, by address and port.
func (s *LocalityBasedLeastConnectionReplication) Update(dests []Dest) {
	m := remap(s.keys, dests)
	for i := range s.table {
		e := &s.table[i]
		n := int32(0)
		for _, d := range e.set[:e.n] {
			if j := m(d); j >= 0 {
				e.set[n] = j
				n++
			}
		}
		e.n = n
	}
	s.keys = keysOf(dests)
}

// Pick returns the least loaded server of f.Dst's set if it can take the flow, else the wlc choice
// (added to the set), or -1.
func (s *LocalityBasedLeastConnectionReplication) Pick(dests []Dest, f *flow.Tuple) int {
	if len(dests) != len(s.keys) {
		s.Update(dests)
	}
	if f == nil {
		f = &zeroFlow
	}
	now := s.now()
	set := s.table[lblcSet(&f.Dst):][:lblcWays]
	var e *lblcrEntry
	for k := range set {
		if c := &set[k]; c.n > 0 && c.addr == f.Dst {
			if now-c.lastuse > int64(LBLCExpiration) {
				c.n = 0
				break
			}
			e = c
			break
		}
	}
	if e == nil {
		i := weightedLeast(dests)
		if i < 0 {
			return -1
		}
		e = &set[0]
		for k := range set {
			c := &set[k]
			if c.n == 0 || now-c.lastuse > int64(LBLCExpiration) {
				e = c
				break
			}
			if c.lastuse < e.lastuse {
				e = c
			}
		}
		*e = lblcrEntry{addr: f.Dst, n: 1, lastuse: now, lastmod: now}
		e.set[0] = int32(i)
		return i
	}
	e.lastuse = now
	i := e.least(dests)
	if e.n > 1 && now-e.lastmod > int64(LBLCExpiration) {
		e.erase(e.most(dests))
		e.lastmod = now
	}
	if i >= 0 && !lblcOverloaded(dests, &dests[i]) {
		return i
	}
	i = weightedLeast(dests)
	if i < 0 {
		return -1
	}
	e.insert(dests, int32(i), now)
	return i
}

// least is ip_vs_dest_set_min: the usable member with the fewest connections per weight, or -1.
func (e *lblcrEntry) least(dests []Dest) int {
	least, loh, lw := -1, int64(0), int64(0)
	for _, i := range e.set[:e.n] {
		d := &dests[i]
		if !usable(d) {
			continue
		}
		doh, dw := overhead(d), int64(d.Weight)
		if least < 0 || loh*dw > doh*lw {
			least, loh, lw = int(i), doh, dw
		}
	}
	return least
}

// most is ip_vs_dest_set_max: the member with a positive weight and the most connections per weight,
// or -1.
func (e *lblcrEntry) most(dests []Dest) int32 {
	most, moh, mw := int32(-1), int64(0), int64(0)
	for _, i := range e.set[:e.n] {
		d := &dests[i]
		if d.Weight <= 0 {
			continue
		}
		doh, dw := overhead(d), int64(d.Weight)
		if most < 0 || moh*dw < doh*mw {
			most, moh, mw = i, doh, dw
		}
	}
	return most
}

// erase removes server i from the set, keeping the order of the others.
func (e *lblcrEntry) erase(i int32) {
	for k, d := range e.set[:e.n] {
		if d == i {
			copy(e.set[k:], e.set[k+1:e.n])
			e.n--
			return
		}
	}
}

// insert adds server i at the head of the set (ip_vs_dest_set_insert), making room by dropping the
// busiest member (or the oldest, if none has a positive weight) when the set is full.
func (e *lblcrEntry) insert(dests []Dest, i int32, now int64) {
	for _, d := range e.set[:e.n] {
		if d == i {
			return
		}
	}
	if e.n == lblcrSetMax {
		if m := e.most(dests); m >= 0 {
			e.erase(m)
		} else {
			e.n--
		}
	}
	copy(e.set[1:e.n+1], e.set[:e.n])
	e.set[0] = i
	e.n++
	e.lastmod = now
}
