package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"unsafe"

	"github.com/govs/govs/flow"
	"github.com/govs/govs/internal/cacheline"
	"github.com/govs/govs/internal/hugepage"
)

// Flags are caller-owned bits stored with a connection; the table never reads them.
type Flags uint8

const (
	FlagPersistent Flags = 1 << iota // belongs to a persistent service
	FlagOnePacket                    // UDP one-packet scheduling: remove after forwarding
	FlagSynced                       // installed by HA connection sync (Import), not scheduled here
)

// Conn is one entry: a connection or a persistence template. It holds no pointers, so the GC
// never scans the table, and it is 64 bytes, one cache line (the real server's address is a handle
// into the table's realAddrs). Exported fields belong to the caller; the rest is the table's and is
// read through methods.
//
// A FullNAT connection (NewConn.Local) has the reply tuple real server → local address and port
// instead of real server → client. Its handle names the real server's address and port and the
// local address together, and its rport field holds the local port: the entry stays one cache
// line. Table.Real and Table.Local read them.
type Conn struct {
	client, vip         [16]byte
	cport, vport, rport uint16
	ra                  uint16 // the real server's address: a realAddrs handle
	VS                  uint16 // virtual service index (opaque to the table)
	rs                  uint16
	proto               uint8
	state               State
	ctl                 uint8
	Flags               Flags
	Method              uint8   // forwarding method (opaque to the table)
	InPort              uint8   // data-plane port the client side came in on
	mac                 [6]byte // a connection: next hop towards the client; a template: bytes 0-3 hold its timeout in ticks
	lastSeen            uint32  // ticks
	aux                 uint32  // connection: template id+1 (0: none); template: live connections; free: next free id+1
}

// ctl bits.
const (
	ctlLive     uint8 = 1 << iota // in use
	ctlReply                      // the reply tuple is indexed
	ctlTemplate                   // a persistence template
	ctlDead                       // a deleted template kept until its last connection ends
	ctlFullNAT                    // FullNAT: the reply tuple goes to a local address (see Conn)
)

// RS returns the real server index the connection was scheduled to.
func (c *Conn) RS() uint16 { return c.rs }

// State returns the connection's protocol state.
func (c *Conn) State() State { return c.state }

// Proto returns the IP protocol of the connection (0 for a template).
func (c *Conn) Proto() uint8 { return c.proto }

// Client returns the client's address and port (a template's masked client address and port 0).
func (c *Conn) Client() ([16]byte, uint16) { return c.client, c.cport }

// VIP returns the virtual address and port the client connected to.
func (c *Conn) VIP() ([16]byte, uint16) { return c.vip, c.vport }

// ClientMAC returns the next hop towards the client, as NewConn gave it (zero for a template).
func (c *Conn) ClientMAC() [6]byte {
	if c.ctl&ctlTemplate != 0 {
		return [6]byte{}
	}
	return c.mac
}

// HasReply reports whether the reply tuple (real server → client) is in the table.
func (c *Conn) HasReply() bool { return c.ctl&ctlReply != 0 }

// IsTemplate reports whether the entry is a persistence template.
func (c *Conn) IsTemplate() bool { return c.ctl&ctlTemplate != 0 }

// Template returns the id of the persistence template the connection is attached to.
func (c *Conn) Template() (uint32, bool) {
	if c.ctl&ctlTemplate != 0 || c.aux == 0 {
		return 0, false
	}
	return c.aux - 1, true
}

// Refs returns a template's number of live connections (0 for a connection).
func (c *Conn) Refs() int {
	if c.ctl&ctlTemplate == 0 {
		return 0
	}
	return int(c.aux)
}

// LastSeenTick returns the time of the last packet in ticks (now>>TickShift, truncated to 32 bits).
func (c *Conn) LastSeenTick() uint32 { return c.lastSeen }

// Real returns the real server's address and port of entry c.
func (t *Table) Real(c *Conn) ([16]byte, uint16) {
	if c.ctl&ctlFullNAT != 0 {
		return t.reals.addr[c.ra], t.reals.port[c.ra]
	}
	return t.reals.addr[c.ra], c.rport
}

// Local returns a FullNAT connection's local address and port, the source its packets to the real
// server carry; ok is false for any other entry.
func (t *Table) Local(c *Conn) (addr [16]byte, port uint16, ok bool) {
	if c.ctl&ctlFullNAT == 0 {
		return addr, 0, false
	}
	return t.reals.local[c.ra], c.rport, true
}

// IsFullNAT reports whether c is a FullNAT connection (see Local).
func (c *Conn) IsFullNAT() bool { return c.ctl&ctlFullNAT != 0 }

// Timeout returns the idle time entry c is allowed in its current state, in nanoseconds (rounded
// up to ticks).
func (t *Table) Timeout(c *Conn) int64 { return int64(t.timeoutOf(c)) << TickShift }

func (t *Table) timeoutOf(c *Conn) uint32 {
	if c.ctl&ctlTemplate != 0 {
		return binary.LittleEndian.Uint32(c.mac[:4])
	}
	return t.ticks[c.state]
}

// Tuple returns entry c's tuple in direction d (the reply tuple even when not indexed).
func (t *Table) Tuple(c *Conn, d Dir) flow.Tuple {
	if d == DirReply {
		if c.ctl&ctlFullNAT != 0 {
			return flow.Tuple{Src: t.reals.addr[c.ra], Dst: t.reals.local[c.ra], SrcPort: t.reals.port[c.ra], DstPort: c.rport, Proto: c.proto}
		}
		return flow.Tuple{Src: t.reals.addr[c.ra], Dst: c.client, SrcPort: c.rport, DstPort: c.cport, Proto: c.proto}
	}
	return flow.Tuple{Src: c.client, Dst: c.vip, SrcPort: c.cport, DstPort: c.vport, Proto: c.proto}
}

// TickShift converts monotonic nanoseconds to the table's 32-bit ticks: tick = now >> TickShift
// (about 1.05 ms). Comparisons wrap, so timeouts must stay below 2^30 ticks (about 13 days) and
// Expire must sweep the table more often than that.
const TickShift = 20

const maxTimeoutTicks = 1 << 30

func tick(now int64) uint32 { return uint32(now >> TickShift) }

func toTicks(ns int64) uint32 {
	t := (ns + 1<<TickShift - 1) >> TickShift
	if t < 1 {
		t = 1
	}
	if t > maxTimeoutTicks {
		t = maxTimeoutTicks
	}
	return uint32(t)
}

// FullPolicy says what InsertMissed does when the table is full.
type FullPolicy uint8

const (
	// DropNew refuses the new connection (ErrFull).
	DropNew FullPolicy = iota
	// EvictOldestIdle removes the longest-idle connection that is not ESTABLISHED (or any
	// connection already past its timeout) among a bounded sample, and refuses the new
	// connection only when the sample holds none.
	EvictOldestIdle
)

// MaxEntriesLimit is the largest Config.MaxEntries.
const MaxEntriesLimit = 1 << 26

// A slot keeps its tuple's distance from its home slot in distBits bits (distSat: that far or
// farther, look the entry up), so deletion shifts a probe chain back without reading entries.
const (
	distBits = 3
	distSat  = 1<<distBits - 1
)

// Config sizes a Table. All memory is allocated by New.
type Config struct {
	MaxEntries int        // connections plus templates, 1..MaxEntriesLimit
	FullPolicy FullPolicy // what InsertMissed does when the table is full
	Timeouts   Timeouts   // per-state idle timeouts; zero fields mean IPVS's defaults
}

// InsertMissed's and InsertTemplate's refusals. They are sentinels: comparing with == costs no allocation.
var (
	ErrFull       = errors.New("conntrack: table full")
	ErrExists     = errors.New("conntrack: a tuple of the new connection is already in the table")
	ErrNoTemplate = errors.New("conntrack: template id is not a live template")
	// ErrNoHandle: the table has room, but every real server handle (see realAddrs) is held: as
	// many distinct real server addresses, or FullNAT (real server address, port, local address)
	// combinations, as there are handles (65536, fewer in a smaller table) have live entries.
	ErrNoHandle = errors.New("conntrack: no real server handle left")
)

// Stats counts what a Table did since New.
type Stats struct {
	Inserted    uint64 // connections and templates added
	Clashes     uint64 // inserts refused with ErrExists
	DroppedFull uint64 // inserts refused with ErrFull
	NoHandle    uint64 // inserts refused with ErrNoHandle
	Evicted     uint64 // entries removed by EvictOldestIdle
	Expired     uint64 // entries removed by Expire
	Deleted     uint64 // entries removed by Delete
}

// evictSample is how many entries EvictOldestIdle looks at to find a victim.
const evictSample = 64

// Table is a fixed-capacity connection table for one data-plane worker. It is not safe for
// concurrent use and takes no locks: its worker is its only user (see the package doc).
//
// Layout: conns is indexed by entry id and stores each connection's client, VIP and real server
// endpoints once, from which both tuples are compared (64 bytes per entry, aligned: one cache
// line; the real server's address is interned in reals); index is a
// linear-probing hash index of 4-byte slots (hash tag | distance from home | id<<1|dir + 1) over
// every indexed tuple, sized for at most ~62% load (13 bytes per entry), with backward-shift
// deletion (no tombstones, so no rehash pauses). Free ids form a list threaded through conns.
// Expire walks ids with a cursor, a bounded slice per call. Both arrays are asked for transparent
// huge pages.
type Table struct {
	conns      []Conn
	index      []uint32
	reals      realAddrs
	nslots     uint32
	refBits    uint32 // low bits of a slot: id<<1 | dir, plus 1 (0 = empty slot)
	refMask    uint32
	refAndDist uint32 // the low bits of a slot below its tag
	tagShift   uint32 // a slot's tag is the hash's top 32-refBits-distBits bits
	seed       [4]uint64

	n        int    // entries in use (including deleted templates waiting for their connections)
	hwm      uint32 // ids below hwm have been used
	freeHead uint32 // first free id+1, 0 when the list is empty
	cursor   uint32 // Expire's next id
	ecursor  uint32 // eviction sample's next id
	now      uint32 // latest tick seen
	nowSet   bool

	ticks  [numStates]uint32
	policy FullPolicy
	counts []int32 // per real server index: active, inactive, templates
	stats  Stats
	sink   uint32 // keeps Prefetch's loads from being optimised away
	gen    uint32 // removals from the index: a Miss's end holds while it is unchanged

	_ [cacheline.Size]byte // written per packet: off the cache lines of the next worker's Table
}

const connSize = int(unsafe.Sizeof(Conn{}))

func indexSlots(maxEntries int) int { return maxEntries*13/4 + 8 } // 2 tuples per entry at load <= 0.62

// MemoryFor returns the bytes New allocates for maxEntries entries.
func MemoryFor(maxEntries int) int {
	return maxEntries*connSize + indexSlots(maxEntries)*4 + 3*(1<<16)*4 + realAddrsBytes(maxEntries)
}

// New returns a table with all memory allocated up front (see MemoryFor).
func New(cfg Config) (*Table, error) {
	if cfg.MaxEntries < 1 || cfg.MaxEntries > MaxEntriesLimit {
		return nil, fmt.Errorf("failed to create connection table: max_entries %d is out of range; set [conntrack] max_entries between 1 and %d", cfg.MaxEntries, MaxEntriesLimit)
	}
	if cfg.FullPolicy > EvictOldestIdle {
		return nil, fmt.Errorf("failed to create connection table: unknown full policy %d; use drop_new or evict_oldest_idle", cfg.FullPolicy)
	}
	t := &Table{policy: cfg.FullPolicy}
	for s := State(0); s < StateTemplate; s++ {
		ns := cfg.Timeouts.Of(s)
		if ns>>TickShift >= maxTimeoutTicks {
			return nil, fmt.Errorf("failed to create connection table: timeout %v for %v exceeds %d s; lower it in [timeouts]", ns, s, int64(maxTimeoutTicks)<<TickShift/1e9)
		}
		t.ticks[s] = toTicks(ns)
	}
	nslots := indexSlots(cfg.MaxEntries)
	t.conns = make([]Conn, cfg.MaxEntries)
	t.index = make([]uint32, nslots)
	t.nslots = uint32(nslots)
	t.refBits = uint32(bits.Len32(uint32(2 * cfg.MaxEntries)))
	t.refMask = 1<<t.refBits - 1
	t.refAndDist = 1<<(t.refBits+distBits) - 1
	t.tagShift = 64 - (32 - t.refBits - distBits)
	t.counts = make([]int32, 3<<16)
	hugepage.Advise(unsafe.Pointer(&t.conns[0]), uintptr(len(t.conns))*unsafe.Sizeof(Conn{}))
	hugepage.Advise(unsafe.Pointer(&t.index[0]), uintptr(len(t.index))*4)
	for i := range t.seed {
		t.seed[i] = rand.Uint64() | 1
	}
	t.reals = newRealAddrs(cfg.MaxEntries, rand.Uint64())
	return t, nil
}

// Len returns the number of entries in use (connections and templates).
func (t *Table) Len() int { return t.n }

// Span returns how many entry ids have ever been used: what a full Expire sweep walks.
func (t *Table) Span() int { return int(t.hwm) }

// Cap returns the maximum number of entries.
func (t *Table) Cap() int { return len(t.conns) }

// MemoryBytes returns the bytes the table holds (fixed at New).
func (t *Table) MemoryBytes() int { return MemoryFor(len(t.conns)) }

// Stats returns the table's counters.
func (t *Table) Stats() Stats { return t.stats }

// RealConns returns real server rs's active (ESTABLISHED) and inactive (every other state)
// connections and its persistence templates in this table. The counts are exact: every change of
// state, RS or liveness goes through the table.
func (t *Table) RealConns(rs uint16) (active, inactive, templates int) {
	c := t.counts[int(rs)*3:]
	return int(c[0]), int(c[1]), int(c[2])
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash is a seeded multiply-mix over a tuple, finished with a murmur3-style avalanche. The seed is
// random per table, so a client cannot aim connections at one probe chain.
func (t *Table) hash(src, dst *[16]byte, sport, dport uint16, proto uint8) uint64 {
	s := &t.seed
	a := binary.LittleEndian.Uint64(src[:8]) ^ s[0]
	b := binary.LittleEndian.Uint64(src[8:]) ^ s[1]
	c := binary.LittleEndian.Uint64(dst[:8]) ^ s[2]
	d := binary.LittleEndian.Uint64(dst[8:]) ^ s[3]
	e := uint64(sport)<<32 | uint64(dport)<<16 | uint64(proto)
	h := mix(mix(a, b)^e^s[0], mix(c, d)^s[1])
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

func (t *Table) hashKey(k *flow.Tuple) uint64 {
	return t.hash(&k.Src, &k.Dst, k.SrcPort, k.DstPort, k.Proto)
}

func (t *Table) hashEntry(c *Conn, d Dir) uint64 {
	if d == DirReply {
		if c.ctl&ctlFullNAT != 0 {
			return t.hash(&t.reals.addr[c.ra], &t.reals.local[c.ra], t.reals.port[c.ra], c.rport, c.proto)
		}
		return t.hash(&t.reals.addr[c.ra], &c.client, c.rport, c.cport, c.proto)
	}
	return t.hash(&c.client, &c.vip, c.cport, c.vport, c.proto)
}

// home maps the hash's low half onto [0, nslots) by multiply-shift; the tag is the high bits.
func (t *Table) home(h uint64) uint32 { return uint32(uint64(uint32(h)) * uint64(t.nslots) >> 32) }

// tag returns the hash's tag in place in a slot (a slot's tag is the slot without refAndDist).
// The shift counts are masked to the operand width: the compiler then emits plain shifts, without
// the code for counts of 32 (64) or more that Go's semantics otherwise need (35 instructions a
// packet, counted).
func (t *Table) tag(h uint64) uint32 {
	return uint32(h>>(t.tagShift&63)) << ((t.refBits + distBits) & 31)
}

func (t *Table) distOf(s uint32) uint32 { return s >> (t.refBits & 31) & distSat }

func (t *Table) withDist(s, d uint32) uint32 {
	return s&^(distSat<<(t.refBits&31)) | min(d, distSat)<<(t.refBits&31)
}

// matches reports whether entry c's tuple in direction d is k, for any entry but a FullNAT
// connection's reply tuple (matchesLocal): kept small enough to be inlined into the lookups.
func (t *Table) matches(c *Conn, d Dir, k *flow.Tuple) bool {
	if d == DirReply {
		return c.client == k.Dst && t.reals.addr[c.ra] == k.Src && c.rport == k.SrcPort && c.cport == k.DstPort &&
			c.proto == k.Proto
	}
	return c.client == k.Src && c.vip == k.Dst && c.cport == k.SrcPort && c.vport == k.DstPort &&
		c.proto == k.Proto
}

// matchesLocal reports whether FullNAT entry c's reply tuple is k.
func (t *Table) matchesLocal(c *Conn, k *flow.Tuple) bool {
	return c.rport == k.DstPort && t.reals.port[c.ra] == k.SrcPort && t.reals.addr[c.ra] == k.Src &&
		t.reals.local[c.ra] == k.Dst && c.proto == k.Proto
}

// find returns the ref (id<<1 | dir) of the tuple equal to k.
func (t *Table) find(k *flow.Tuple, h uint64) (uint32, bool) {
	r, ok, _ := t.probe(k, h)
	return r, ok
}

// probe is find that also returns, when k is not found, the empty slot that ended the search:
// where addIndex would put k now (see addIndexFrom).
func (t *Table) probe(k *flow.Tuple, h uint64) (ref uint32, ok bool, end uint32) {
	return t.probeFrom(k, h, t.home(h))
}

// probeFrom is probe starting at slot from of h's chain, which must be the home slot or a slot up to
// which the chain is known not to hold k (a Miss's end).
func (t *Table) probeFrom(k *flow.Tuple, h uint64, from uint32) (ref uint32, ok bool, end uint32) {
	// The table's fields in locals: through t, the compiler would load them again on every step.
	// The loop needs no bound: the index is never full (load <= 0.62), so an empty slot ends it.
	index, tag, tagMask := t.index, t.tag(h), ^t.refAndDist
	for i := from; ; {
		s := index[i]
		if s == 0 {
			return 0, false, i
		}
		if s&tagMask == tag {
			r := s&t.refMask - 1
			c, d := &t.conns[r>>1], Dir(r&1)
			if c.ctl&ctlFullNAT != 0 && d == DirReply {
				if t.matchesLocal(c, k) {
					return r, true, 0
				}
			} else if t.matches(c, d, k) {
				return r, true, 0
			}
		}
		if i++; int(i) == len(index) {
			i = 0
		}
	}
}

// Lookup returns the entry whose original or reply tuple is k, and which of the two it is.
func (t *Table) Lookup(k *flow.Tuple) (id uint32, dir Dir, ok bool) {
	r, ok := t.find(k, t.hashKey(k))
	return r >> 1, Dir(r & 1), ok
}

// Hash returns k's hash in this table, for Prefetch and LookupMiss. It depends only on k and the
// table's seed, so it stays valid while entries come and go.
func (t *Table) Hash(k *flow.Tuple) uint64 { return t.hashKey(k) }

// HintedConn returns k's entry and direction if Prefetch's hint holds, else nil: then only
// LookupMiss can tell whether k is in the table. It is the data plane's shortcut for the frames of
// established connections.
func (t *Table) HintedConn(k *flow.Tuple, hint uint32) (*Conn, Dir) {
	if r := hint - 1; hint != 0 && r>>1 < uint32(len(t.conns)) {
		// Tuples in the table are unique, so a live entry holding k in direction d is k's entry,
		// provided that direction is indexed (a dead template's is not, nor a DR entry's reply).
		// Each direction compares its own tuple: the original one, the reply one (a FullNAT
		// entry's to its local endpoint).
		c, d := &t.conns[r>>1], Dir(r&1)
		switch ctl := c.ctl; {
		case ctl&(ctlLive|ctlDead) != ctlLive:
		case d == DirOriginal:
			if t.matches(c, DirOriginal, k) {
				return c, d
			}
		case ctl&ctlReply == 0:
		case ctl&ctlFullNAT != 0:
			if t.matchesLocal(c, k) {
				return c, d
			}
		case t.matches(c, DirReply, k):
			return c, d
		}
	}
	return nil, DirOriginal
}

// Prefetch brings into the CPU cache what lookups of the given hashes will read: each hash's home
// index slots and the entries they point to with a matching tag. It changes nothing in the table.
// hints (at least as long as hs) receives for each hash a guess at its entry, for LookupMiss and
// HintedConn: the first index slot with the hash's tag, which is almost always the one.
//
// Why: at a million entries and more, a lookup is two cache misses (index, then entry), and one
// after the other they cost two memory latencies (150-300 ns each on a VM). A worker that
// prefetches a batch of frames first has the batch's misses overlap: the loads of one pass do not
// depend on each other, so the CPU keeps many in flight, and the lookups that follow hit the cache.
// Go has no prefetch instruction to call, so the passes load for real and keep the loads alive
// through a sink; the loops are kept short so that many loads fit in the CPU's window.
func (t *Table) Prefetch(hs []uint64, hints []uint32) {
	var acc uint32
	index, conns := t.index, t.conns
	tagMask := ^t.refAndDist
	hints = hints[:len(hs)]
	// Pass 1, the index misses: nothing but independent loads.
	for j, h := range hs {
		hints[j] = index[t.home(h)]
	}
	// Pass 2, now from the cache: the first slot of each chain with the hash's tag. The slots of a
	// short chain share the home slot's cache line, or the next one. A home slot with another tag
	// sends the loop on along the chain, which is rare at the designed load.
	for j, h := range hs {
		s, tag := hints[j], t.tag(h)
		if s&tagMask != tag && s != 0 {
			i := t.home(h)
			for range 3 {
				if i++; i == t.nslots {
					i = 0
				}
				if s = index[i]; s == 0 || s&tagMask == tag {
					break
				}
			}
		}
		r := s & t.refMask
		if s&tagMask != tag {
			r = 0
		}
		hints[j] = r
	}
	// Pass 3, the entry misses: independent loads again. (A pass of its own: folded into pass 2,
	// the loads overlapped less and a lookup at a million entries took 20% longer, measured.) An
	// entry is one cache line. (No match touches entry 0: harmless.)
	for _, r := range hints {
		acc += conns[(r-min(r, 1))>>1].aux
	}
	t.sink += acc
}

// Get returns the entry with the given id, or nil if id is not in use. The pointer is valid until
// the entry is removed; write only its exported fields.
func (t *Table) Get(id uint32) *Conn {
	if id >= uint32(len(t.conns)) {
		return nil
	}
	c := &t.conns[id]
	if c.ctl&(ctlLive|ctlDead) != ctlLive {
		return nil
	}
	return c
}

func (t *Table) addIndex(h uint64, ref uint32) {
	t.addIndexFrom(h, ref, t.home(h))
}

// addIndexFrom is addIndex with the walk along h's chain starting at slot from instead of the home
// slot: every slot from home up to from must be taken (as probe left them: inserts since then only
// fill slots; a removal shifts slots back and voids from).
func (t *Table) addIndexFrom(h uint64, ref, from uint32) {
	index := t.index
	i, home := from, t.home(h)
	for index[i] != 0 {
		if i++; int(i) == len(index) {
			i = 0
		}
	}
	d := i - home
	if i < home {
		d += t.nslots
	}
	index[i] = t.withDist(t.tag(h)|(ref+1), d)
}

// removeIndex removes the slot holding ref and shifts later members of its probe chain back
// (Knuth's algorithm R), so lookups never need tombstones. The slots' distances say which may move,
// so only a member farther than distSat from home costs a look at its entry.
func (t *Table) removeIndex(h uint64, ref uint32) {
	t.gen++ // voids every Miss's end
	index, n, refMask := t.index, t.nslots, t.refMask
	i := t.home(h)
	for index[i]&refMask != ref+1 {
		if index[i] == 0 {
			return // not indexed: cannot happen
		}
		if i++; i == n {
			i = 0
		}
	}
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		s := index[j]
		if s == 0 {
			break
		}
		d := t.distOf(s)
		if d == distSat {
			r := s&refMask - 1
			home := t.home(t.hashEntry(&t.conns[r>>1], Dir(r&1)))
			if d = j - home; j < home {
				d += n
			}
		}
		gap := j - i // distance from the hole
		if j < i {
			gap += n
		}
		// Move s into the hole unless its home lies cyclically in (i, j].
		if d >= gap {
			index[i] = t.withDist(s, d-gap)
			i = j
		}
	}
	index[i] = 0
}

// NewConn describes an entry to InsertMissed or InsertTemplate.
type NewConn struct {
	Real     [16]byte // real server address (IPv4-mapped for IPv4)
	RealPort uint16
	Reply    bool // index the reply tuple Real:RealPort → client (NAT); false when replies bypass us (DR, tunnel)
	// FullNAT: with Reply, the reply tuple is Real:RealPort → Local:LocalPort (see Conn).
	FullNAT   bool
	Local     [16]byte
	LocalPort uint16
	VS, RS    uint16 // virtual and real server indexes; RS keys RealConns
	State     State  // initial state: StateSynRecv for a client SYN, StateUDP for datagrams
	Flags     Flags
	Method    uint8
	InPort    uint8
	ClientMAC [6]byte
	Template  uint32 // id+1 of a persistence template to attach to; 0 for none
}

// alloc takes a free id, evicting an entry for it when the policy says so.
func (t *Table) alloc(onEvict func(uint32, *Conn), protect uint32) (id uint32, err error) {
	if t.freeHead == 0 && t.hwm < uint32(len(t.conns)) {
		t.freeHead = t.hwm + 1
		t.conns[t.hwm].aux = 0
		t.hwm++
	}
	if t.freeHead == 0 {
		v, ok := uint32(0), false
		if t.policy == EvictOldestIdle {
			v, ok = t.victim(protect)
		}
		if !ok {
			t.stats.DroppedFull++
			return 0, ErrFull
		}
		if onEvict != nil {
			onEvict(v, &t.conns[v])
		}
		t.remove(v)
		t.stats.Evicted++
	}
	id = t.freeHead - 1
	t.freeHead = t.conns[id].aux
	t.n++
	return id, nil
}

// allocFor is alloc for an entry with real server address real: it also takes the address's handle.
// With every handle held by other addresses (FullNAT: combinations), it gives the id back and
// fails with ErrNoHandle.
func (t *Table) allocFor(nc *NewConn, onEvict func(uint32, *Conn), protect uint32) (id uint32, ra uint16, err error) {
	if id, err = t.alloc(onEvict, protect); err != nil {
		return 0, 0, err
	}
	var ok bool
	if nc.FullNAT && nc.Reply {
		ra, ok = t.reals.acquire(&nc.Real, nc.RealPort, &nc.Local)
	} else {
		ra, ok = t.reals.acquire(&nc.Real, 0, &[16]byte{})
	}
	if !ok {
		t.unalloc(id)
		t.stats.NoHandle++
		return 0, 0, ErrNoHandle
	}
	return id, ra, nil
}

// victim samples up to evictSample entries for the one to evict: any entry past its timeout, else
// the longest idle that is neither ESTABLISHED nor a template with connections.
func (t *Table) victim(protect uint32) (uint32, bool) {
	best, bestAge, found := uint32(0), int32(-1<<31), false
	n := uint32(len(t.conns))
	for range min(evictSample, n) {
		id := t.ecursor
		if t.ecursor++; t.ecursor >= n {
			t.ecursor = 0
		}
		c := &t.conns[id]
		if c.ctl&(ctlLive|ctlDead) != ctlLive || id == protect || (c.ctl&ctlTemplate != 0 && c.aux > 0) {
			continue
		}
		age := int32(t.now - c.lastSeen)
		if age-int32(t.timeoutOf(c)) > 0 {
			return id, true
		}
		if c.state == StateEstablished {
			continue
		}
		if age > bestAge {
			best, bestAge, found = id, age, true
		}
	}
	return best, found
}

func (t *Table) see(now uint32) {
	if int32(now-t.now) > 0 || !t.nowSet {
		t.now, t.nowSet = now, true
	}
}

func (t *Table) count(c *Conn, delta int32) {
	k := 1
	switch {
	case c.ctl&ctlTemplate != 0:
		k = 2
	case c.state == StateEstablished:
		k = 0
	}
	t.counts[int(c.rs)*3+k] += delta
}

// A Miss is what a lookup learned on the way, for InsertMissed: the tuple's hash and, when the
// tuple was not found, the empty index slot where the search ended. Adding a connection the data
// plane has just failed to find then does not hash the tuple or walk its chain a second time.
//
// Changes to the table after the lookup are allowed. Inserts only fill empty slots, so the chain
// from the tuple's home slot up to the end stays whole, and a tuple inserted since lies at the end
// or beyond. Only a removal can shift the chain back; the table counts removals and InsertMissed
// then walks from the home slot.
type Miss struct {
	h        uint64
	end, gen uint32
}

// LookupMiss is Lookup with k's hash already computed by Hash and a hint from Prefetch, and it
// records in m what InsertMissed needs to add k. When the hinted entry holds k, it is the answer and
// the index is not walked. A hint may be stale (entries came and went since Prefetch) or 0 (none);
// the answer is the same, only slower.
func (t *Table) LookupMiss(k *flow.Tuple, h uint64, hint uint32, m *Miss) (id uint32, dir Dir, ok bool) {
	if c, d := t.HintedConn(k, hint); c != nil {
		*m = Miss{h: h, gen: t.gen - 1} // found: no end to start from
		return (hint - 1) >> 1, d, true
	}
	r, ok, end := t.probe(k, h)
	*m = Miss{h: h, end: end, gen: t.gen}
	if ok {
		m.gen--
	}
	return r >> 1, Dir(r & 1), ok
}

// InsertMissed adds the connection whose original tuple orig (client → VIP) a LookupMiss
// (recording m) has just failed to find, and returns its id; m must come from a lookup of orig in
// this table. When the table is full, Config.FullPolicy decides: DropNew refuses with ErrFull;
// EvictOldestIdle removes an idle entry first, calling onEvict (if not nil) with it just before (so
// the caller can undo what it counted), and refuses with ErrFull only if none was found. Nothing is
// stored, and ErrExists returned, when a tuple is already in the table (for example two VIPs
// mapping one client port to the same real server port: the second reply tuple would be
// ambiguous). ErrNoTemplate: nc.Template is not a live template. ErrNoHandle: the entry would need
// a real server handle and all are held (see realAddrs). onEvict must not modify the table.
func (t *Table) InsertMissed(orig *flow.Tuple, m *Miss, nc *NewConn, now int64, onEvict func(id uint32, c *Conn)) (uint32, error) {
	from := m.end
	if m.gen != t.gen {
		from = t.home(m.h)
	}
	return t.insert(orig, m.h, from, nc, now, onEvict)
}

// insert is InsertMissed with orig's hash ho computed, and the search for orig starting at slot from:
// ho's home slot, or a Miss's end.
func (t *Table) insert(orig *flow.Tuple, ho uint64, from uint32, nc *NewConn, now int64, onEvict func(id uint32, c *Conn)) (uint32, error) {
	nowT := tick(now)
	t.see(nowT)
	// The reply tuple's home slot first: loaded now, its cache miss overlaps the original tuple's
	// search (whose branches on a slot not yet loaded would otherwise hold it back).
	var reply flow.Tuple
	var hr uint64
	if nc.Reply {
		reply = flow.Tuple{Src: nc.Real, Dst: orig.Src, SrcPort: nc.RealPort, DstPort: orig.SrcPort, Proto: orig.Proto}
		if nc.FullNAT {
			reply.Dst, reply.DstPort = nc.Local, nc.LocalPort
		}
		hr = t.hashKey(&reply)
		t.sink += t.index[t.home(hr)]
	}
	_, found, endo := t.probeFrom(orig, ho, from)
	if found {
		t.stats.Clashes++
		return 0, ErrExists
	}
	var endr uint32
	if nc.Reply {
		// The reply tuple equals the original only when the client talks to itself through a real
		// server that is the client.
		if reply == *orig {
			t.stats.Clashes++
			return 0, ErrExists
		}
		if _, found, endr = t.probe(&reply, hr); found {
			t.stats.Clashes++
			return 0, ErrExists
		}
	}
	protect := ^uint32(0)
	if nc.Template != 0 {
		tp := t.Get(nc.Template - 1)
		if tp == nil || tp.ctl&ctlTemplate == 0 {
			return 0, ErrNoTemplate
		}
		protect = nc.Template - 1
	}
	gen := t.gen
	id, ra, err := t.allocFor(nc, onEvict, protect)
	if err != nil {
		return 0, err
	}
	if t.gen != gen { // an eviction shifted slots back: the probes' ends are void
		endo, endr = t.home(ho), t.home(hr)
	}
	st := nc.State
	if st >= StateTemplate {
		st = StateUDP
	}
	// Every field, one by one: a composite literal is built in a temporary and copied (counted:
	// 23 instructions more).
	c := &t.conns[id]
	c.client, c.vip, c.ra = orig.Src, orig.Dst, ra
	c.cport, c.vport, c.rport = orig.SrcPort, orig.DstPort, nc.RealPort
	c.VS, c.rs, c.proto, c.state, c.ctl = nc.VS, nc.RS, orig.Proto, st, ctlLive
	c.Flags, c.Method, c.InPort, c.mac = nc.Flags, nc.Method, nc.InPort, nc.ClientMAC
	c.lastSeen, c.aux = nowT, nc.Template
	if nc.Template != 0 {
		t.conns[nc.Template-1].aux++
	}
	t.addIndexFrom(ho, id<<1, endo)
	if nc.Reply {
		c.ctl |= ctlReply
		if nc.FullNAT {
			c.ctl |= ctlFullNAT
			c.rport = nc.LocalPort
		}
		t.addIndexFrom(hr, id<<1|1, endr)
	}
	t.count(c, 1)
	t.stats.Inserted++
	return id, nil
}

// TemplateKey returns the lookup key of the persistence template for a client address already
// masked by the service's persistence_netmask and a virtual service index. Its protocol is 0, which
// no connection tuple uses.
func TemplateKey(maskedClient [16]byte, vs uint16) flow.Tuple {
	return flow.Tuple{Src: maskedClient, DstPort: vs}
}

// MaskAddr keeps the first bits of address a; for an IPv4-mapped address bits counts within the
// IPv4 address (persistence_netmask 255.255.255.0 is 24).
func MaskAddr(a [16]byte, bits int) [16]byte {
	if a[10] == 0xff && a[11] == 0xff && [10]byte(a[:10]) == [10]byte{} {
		bits += 96
	}
	for i := range a {
		switch keep := bits - 8*i; {
		case keep <= 0:
			a[i] = 0
		case keep < 8:
			a[i] &= ^byte(0xff >> keep)
		}
	}
	return a
}

// InsertTemplate adds a persistence template under k (from TemplateKey) pointing at real server
// nc.RS (nc.Real, nc.RealPort). It lives while connections are attached to it (NewConn.Template)
// and then idles out after timeout nanoseconds without use, like IPVS's templates. nc's State,
// Reply and Template are ignored. Errors and onEvict are as for InsertMissed.
func (t *Table) InsertTemplate(k *flow.Tuple, nc *NewConn, timeout int64, now int64, onEvict func(id uint32, c *Conn)) (uint32, error) {
	nowT := tick(now)
	t.see(nowT)
	h := t.hashKey(k)
	if _, found := t.find(k, h); found {
		t.stats.Clashes++
		return 0, ErrExists
	}
	tn := NewConn{Real: nc.Real} // a template's handle is its real server's address alone
	id, ra, err := t.allocFor(&tn, onEvict, ^uint32(0))
	if err != nil {
		return 0, err
	}
	c := &t.conns[id]
	*c = Conn{
		client: k.Src, vip: k.Dst, ra: ra,
		cport: k.SrcPort, vport: k.DstPort, rport: nc.RealPort,
		VS: nc.VS, rs: nc.RS, proto: k.Proto, state: StateTemplate, ctl: ctlLive | ctlTemplate,
		Flags: nc.Flags, Method: nc.Method, lastSeen: nowT,
	}
	binary.LittleEndian.PutUint32(c.mac[:4], toTicks(timeout))
	t.addIndex(h, id<<1)
	t.count(c, 1)
	t.stats.Inserted++
	return id, nil
}

// TouchConn records a packet of entry c (from Get, still in use) travelling in dir with TCP header
// flags tcpFlags at now: it refreshes the last-seen time and, for TCP, moves the state by IPVS's
// tables and sets the state's timeout. It returns the states before and after; the table's per-real
// counts already follow (IsActive(old) != IsActive(new) tells the caller that a least-connection
// weight changed).
func (t *Table) TouchConn(c *Conn, dir Dir, tcpFlags uint8, now int64) (old, new State) {
	t.Refresh(c, now)
	if c.proto != 6 || c.state >= numTCPStates {
		return c.state, c.state
	}
	return t.touchTCP(c, dir, tcpFlags)
}

// Refresh is TouchConn for a connection without protocol state (UDP, ICMP): it records a packet
// at now. It is small enough to be inlined into the data plane's loop.
func (t *Table) Refresh(c *Conn, now int64) {
	c.lastSeen = tick(now)
	t.see(c.lastSeen)
}

// touchTCP is TouchConn's state change for a TCP connection.
func (t *Table) touchTCP(c *Conn, dir Dir, tcpFlags uint8) (old, new State) {
	old = c.state
	new = NextTCPState(old, dir, tcpFlags, c.ctl&ctlReply == 0)
	if new != old {
		if IsActive(old) != IsActive(new) {
			t.count(c, -1)
			c.state = new
			t.count(c, 1)
		}
		c.state = new
	}
	return old, new
}

// Delete removes the entry with the given id; unknown ids are ignored. A template with live
// connections disappears from lookups at once and frees its slot when its last connection ends.
func (t *Table) Delete(id uint32) {
	if t.Get(id) == nil {
		return
	}
	t.remove(id)
	t.stats.Deleted++
}

func (t *Table) remove(id uint32) {
	c := &t.conns[id]
	t.removeIndex(t.hashEntry(c, DirOriginal), id<<1)
	if c.ctl&ctlReply != 0 {
		t.removeIndex(t.hashEntry(c, DirReply), id<<1|1)
	}
	t.count(c, -1)
	if c.ctl&ctlTemplate != 0 {
		if c.aux > 0 {
			c.ctl |= ctlDead
			return
		}
	} else if c.aux != 0 {
		tid := c.aux - 1
		tp := &t.conns[tid]
		if tp.aux--; tp.aux == 0 {
			if tp.ctl&ctlDead != 0 {
				t.free(tid)
			} else {
				tp.lastSeen = t.now
			}
		}
	}
	t.free(id)
}

func (t *Table) free(id uint32) {
	t.reals.release(t.conns[id].ra)
	t.unalloc(id)
}

// unalloc puts id back on the free list.
func (t *Table) unalloc(id uint32) {
	c := &t.conns[id]
	c.ctl = 0
	c.aux = t.freeHead
	t.freeHead = id + 1
	t.n--
}

// Expire removes entries idle past their timeout, at most budget of them, calling onExpire (if not
// nil) with each just before it is removed; onExpire must not modify the table. Templates with
// connections do not expire (their idle time restarts). It resumes where the last call stopped and
// looks at no more than 8*budget ids, so a periodic call with a small budget sweeps the table a
// slice at a time; a budget of at least Cap covers the whole table in one call. It returns the
// number removed.
func (t *Table) Expire(now int64, budget int, onExpire func(id uint32, c *Conn)) int {
	nowT := tick(now)
	t.see(nowT)
	removed, limit := 0, 8*budget
	for looked := 0; removed < budget && looked < limit && t.n > 0; looked++ {
		if t.cursor >= t.hwm {
			t.cursor = 0
		}
		id := t.cursor
		t.cursor++
		c := &t.conns[id]
		if c.ctl&(ctlLive|ctlDead) != ctlLive {
			continue
		}
		if c.ctl&ctlTemplate != 0 && c.aux > 0 {
			c.lastSeen = nowT
			continue
		}
		if int32(nowT-c.lastSeen-t.timeoutOf(c)) <= 0 {
			continue
		}
		if onExpire != nil {
			onExpire(id, c)
		}
		t.remove(id)
		t.stats.Expired++
		removed++
	}
	return removed
}

// Import installs a connection another node's table holds (HA connection sync): orig is its
// original tuple and nc describes it, nc.State included (any connection state). When orig is
// already in the table, Import brings that entry's state up to nc.State and keeps the rest: the
// local entry is the one the data plane has been forwarding with. It returns the entry's id.
// Errors are InsertMissed's; it never evicts (a synced entry is not worth a live one).
func (t *Table) Import(orig *flow.Tuple, nc *NewConn, now int64) (uint32, error) {
	h := t.hashKey(orig)
	if r, found := t.find(orig, h); found {
		c := &t.conns[r>>1]
		if r&1 != 0 || c.ctl&ctlTemplate != 0 {
			t.stats.Clashes++
			return 0, ErrExists
		}
		t.SetState(c, nc.State)
		c.Flags |= FlagSynced
		t.Refresh(c, now)
		return r >> 1, nil
	}
	policy := t.policy
	t.policy = DropNew
	id, err := t.insert(orig, h, t.home(h), nc, now, nil)
	t.policy = policy
	if err == nil {
		t.conns[id].Flags |= FlagSynced
	}
	return id, err
}

// ImportTemplate installs a persistence template another node's table holds (HA connection
// sync): k is its key (TemplateKey) and nc names its real server, as for InsertTemplate. When k is
// already in the table, ImportTemplate refreshes that template if it points at the same real
// server (nc.RS and nc.Real, nc.RealPort) and replaces it otherwise: the synced template is the
// choice the active node's clients were given, so it wins over one this node made while it was
// active itself. It returns the template's id. Errors are InsertTemplate's; it never evicts.
func (t *Table) ImportTemplate(k *flow.Tuple, nc *NewConn, timeout, now int64) (uint32, error) {
	if id, _, found := t.Lookup(k); found {
		c := &t.conns[id]
		if c.ctl&ctlTemplate == 0 {
			t.stats.Clashes++
			return 0, ErrExists
		}
		if c.rs == nc.RS && c.rport == nc.RealPort && t.reals.addr[c.ra] == nc.Real {
			binary.LittleEndian.PutUint32(c.mac[:4], toTicks(timeout))
			c.Flags |= FlagSynced
			t.Refresh(c, now)
			return id, nil
		}
		t.Delete(id) // with connections attached it lingers, out of lookups, until they end
	}
	policy := t.policy
	t.policy = DropNew
	id, err := t.InsertTemplate(k, nc, timeout, now, nil)
	t.policy = policy
	if err == nil {
		t.conns[id].Flags |= FlagSynced
	}
	return id, err
}

// SetState moves connection c (from Get) to state st, keeping the per-real counts, as a synced
// state change needs; templates and out-of-range states are ignored.
func (t *Table) SetState(c *Conn, st State) {
	if c.ctl&ctlTemplate != 0 || st >= numStates || st == StateTemplate || st == c.state {
		return
	}
	t.count(c, -1)
	c.state = st
	t.count(c, 1)
}
