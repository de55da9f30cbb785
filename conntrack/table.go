package conntrack

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// Key is one direction's 5-tuple. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d).
// Key is comparable with ==.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// Conn is what the data plane stores per connection. It holds no pointers, so the GC never scans
// the table.
type Conn struct {
	VS, RS    uint16  // virtual/real server indexes in the compiled table
	Gen       uint32  // config generation the indexes belong to
	State     State   // protocol state
	Flags     uint8   // data-plane flags (opaque to this package)
	InPort    uint8   // data-plane port the client side came in on
	ClientMAC [6]byte // next hop towards the client
	LastSeen  int64   // monotonic nanoseconds of the last packet
	Timeout   int64   // nanoseconds of idle allowed in the current state
	Packets   uint64  // both directions
	Bytes     uint64  // both directions
}

// entry is a connection's bookkeeping: both tuples and its place in the live list.
type entry struct {
	key      [2]Key // by Dir
	pos      uint32 // index in Table.live; free when == free
	hasReply bool
}

// slot is one cell of the open-addressing index: a hash tag and a reference to (id, dir).
type slot struct {
	tag uint32 // high bits of the hash
	ref uint32 // id<<1 | dir, plus 1; 0 = empty
}

const free = ^uint32(0)

// Table is a fixed-capacity connection table for one data-plane worker.
//
// A Table is not safe for concurrent use: the worker that owns it is its only user (PACKET_FANOUT
// sends both directions of a connection to the same worker), so it takes no locks.
//
// Layout: conns and ents are indexed by connection id; index is a linear-probing hash index over
// both tuples of every connection, at most half full, with backward-shift deletion (no tombstones);
// live lists the ids in use so Expire visits only live connections.
type Table struct {
	conns    []Conn
	ents     []entry
	index    []slot
	mask     uint32
	live     []uint32 // ids in use, dense
	freeIDs  []uint32 // stack of unused ids
	cursor   uint32   // Expire's position in live
	seed     [4]uint64
	capacity int
}

// New returns a table for up to capacity live connections, with all memory allocated up front.
// It panics if capacity is not in [1, 1<<29] (a programmer error).
func New(capacity int) *Table {
	if capacity < 1 || capacity > 1<<29 {
		panic("conntrack: capacity out of range")
	}
	nslots := 1 << bits.Len(uint(4*capacity-1)) // >= 2 tuples per connection at load <= 0.5
	t := &Table{
		conns:    make([]Conn, capacity),
		ents:     make([]entry, capacity),
		index:    make([]slot, nslots),
		mask:     uint32(nslots - 1),
		live:     make([]uint32, 0, capacity),
		freeIDs:  make([]uint32, capacity),
		capacity: capacity,
	}
	for i := range t.freeIDs {
		t.freeIDs[i] = uint32(capacity - 1 - i) // pop low ids first
		t.ents[i].pos = free
	}
	for i := range t.seed {
		t.seed[i] = rand.Uint64() | 1
	}
	return t
}

// Len returns the number of live connections.
func (t *Table) Len() int { return len(t.live) }

// Cap returns the maximum number of live connections.
func (t *Table) Cap() int { return t.capacity }

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash is a seeded multiply-mix over the key's 37 bytes, finished with a murmur3-style avalanche so
// the low bits (the home slot) depend on every input bit. The seed is random per table, so a client
// cannot aim connections at one probe chain without knowing the table's seed.
func (t *Table) hash(k *Key) uint64 {
	s := &t.seed
	a := binary.LittleEndian.Uint64(k.Src[:8]) ^ s[0]
	b := binary.LittleEndian.Uint64(k.Src[8:]) ^ s[1]
	c := binary.LittleEndian.Uint64(k.Dst[:8]) ^ s[2]
	d := binary.LittleEndian.Uint64(k.Dst[8:]) ^ s[3]
	e := uint64(k.SrcPort)<<32 | uint64(k.DstPort)<<16 | uint64(k.Proto)
	h := mix(mix(a, b)^e^s[0], mix(c, d)^s[1])
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// find returns the slot index holding k, or the empty slot where k would go, and whether k was found.
func (t *Table) find(k *Key, h uint64) (uint32, bool) {
	tag := uint32(h >> 32)
	i := uint32(h) & t.mask
	for range len(t.index) {
		s := &t.index[i]
		if s.ref == 0 {
			return i, false
		}
		if s.tag == tag {
			r := s.ref - 1
			if t.ents[r>>1].key[r&1] == *k {
				return i, true
			}
		}
		i = (i + 1) & t.mask
	}
	return 0, false // unreachable: the index is never more than half full
}

// Lookup returns the connection whose original or reply tuple is k, and which of the two it is.
func (t *Table) Lookup(k *Key) (id uint32, dir Dir, ok bool) {
	i, ok := t.find(k, t.hash(k))
	if !ok {
		return 0, 0, false
	}
	r := t.index[i].ref - 1
	return r >> 1, Dir(r & 1), true
}

// Insert adds a connection with tuples orig and reply (reply may be nil, e.g. for DR, where replies
// bypass the balancer) and returns its id. ok is false, and nothing is stored, when the table is full
// or a tuple is already in the table (for example two VIPs mapping one client port to the same real
// server port: the second connection's reply tuple would be ambiguous).
func (t *Table) Insert(orig, reply *Key, c *Conn) (id uint32, ok bool) {
	if len(t.freeIDs) == 0 {
		return 0, false
	}
	ho := t.hash(orig)
	io, found := t.find(orig, ho)
	if found {
		return 0, false
	}
	var hr uint64
	if reply != nil {
		if *reply == *orig {
			return 0, false
		}
		hr = t.hash(reply)
		if _, found := t.find(reply, hr); found {
			return 0, false
		}
	}
	id = t.freeIDs[len(t.freeIDs)-1]
	t.freeIDs = t.freeIDs[:len(t.freeIDs)-1]
	e := &t.ents[id]
	e.key[DirOriginal] = *orig
	e.hasReply = reply != nil
	e.pos = uint32(len(t.live))
	t.live = append(t.live, id)
	t.index[io] = slot{tag: uint32(ho >> 32), ref: id<<1 + 1}
	if reply != nil {
		e.key[DirReply] = *reply
		ir, _ := t.find(reply, hr) // orig may have taken reply's empty slot
		t.index[ir] = slot{tag: uint32(hr >> 32), ref: id<<1 | 1 + 1}
	} else {
		e.key[DirReply] = Key{}
	}
	t.conns[id] = *c
	return id, true
}

// Get returns the connection with the given id, or nil if id is not in use. The pointer is valid until
// the next Insert, Delete or Expire.
func (t *Table) Get(id uint32) *Conn {
	if id >= uint32(t.capacity) || t.ents[id].pos == free {
		return nil
	}
	return &t.conns[id]
}

// Delete removes the connection with the given id; unknown ids are ignored.
func (t *Table) Delete(id uint32) {
	if id >= uint32(t.capacity) || t.ents[id].pos == free {
		return
	}
	e := &t.ents[id]
	t.unindex(&e.key[DirOriginal])
	if e.hasReply {
		t.unindex(&e.key[DirReply])
	}
	// Swap-remove from the live list.
	last := t.live[len(t.live)-1]
	t.live[e.pos] = last
	t.ents[last].pos = e.pos
	t.live = t.live[:len(t.live)-1]
	e.pos = free
	t.freeIDs = append(t.freeIDs, id)
}

// unindex removes k's slot and shifts later members of its probe chain back (Knuth's algorithm R), so
// lookups never need tombstones.
func (t *Table) unindex(k *Key) {
	i, ok := t.find(k, t.hash(k))
	if !ok {
		return
	}
	j := i
	for {
		j = (j + 1) & t.mask
		s := t.index[j]
		if s.ref == 0 {
			break
		}
		r := s.ref - 1
		home := uint32(t.hash(&t.ents[r>>1].key[r&1])) & t.mask
		// Move s into the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.index[i] = s
			i = j
		}
	}
	t.index[i] = slot{}
}

// Expire removes connections idle past their timeout (LastSeen+Timeout < now), at most budget of
// them, calling onExpire (if not nil) with each just before it is removed; onExpire must not modify
// the table. It resumes where the last call stopped and looks at no more than 8*budget connections
// it keeps, so a periodic call with a small budget sweeps the table a slice at a time; a budget of
// at least Len covers the whole table in one call. It returns the number removed.
func (t *Table) Expire(now int64, budget int, onExpire func(id uint32, c *Conn)) int {
	removed, kept := 0, 0
	for removed < budget && kept < 8*budget && len(t.live) > 0 {
		if t.cursor >= uint32(len(t.live)) {
			t.cursor = 0
		}
		id := t.live[t.cursor]
		c := &t.conns[id]
		if c.LastSeen+c.Timeout >= now {
			t.cursor++
			kept++
			continue
		}
		if onExpire != nil {
			onExpire(id, c)
		}
		t.Delete(id) // moves the last live id to cursor: look at it next
		removed++
	}
	return removed
}
