package dataplane

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/flow"
)

// Fragments
//
// Only the first fragment of an IP datagram carries the transport header, so the fanout program
// cannot hash the others by ports: it hashes every fragment, the first included, by its client
// side's address alone (bpfgen.FanoutProgramSpec). All fragments of a datagram, and of its reply
// under NAT, therefore reach one worker, the fragment worker, in the order they arrived. The
// flow's other packets hash by address and port and may reach another one, the flow worker, which
// holds the connection. The fragment worker reads the ports of the first fragment, computes the
// flow worker as the fanout program would (bpfgen.FanoutMember under the rule in force, the Go
// copy HA sync also uses) and, if that is another worker, hands the first fragment and every later
// one of the datagram over to it through a bounded single-producer, single-consumer ring of
// frame copies (handoffRing), remembering (source, destination, protocol, fragment ID) -> flow
// worker. The flow worker forwards the first fragment like any packet of the flow (scheduling a
// new connection, NAT rewrite with the transport checksum adjusted incrementally: it covers the
// whole datagram) and remembers (source, destination, protocol, fragment ID) -> connection; the
// later fragments, which a ring delivers after their first, follow it with their IP header
// rewritten only. Where the two workers are one, nothing is handed over.
//
// Why this way: it leaves the spread of unfragmented traffic, and its per-packet cost, exactly as
// it was; only fragments are copied, once, between two workers that share nothing else. The
// alternatives: hashing every packet of fragment-prone services by address alone sends all of a
// client's flows (a resolver's thousands of DNS queries) to one worker; hashing the first
// fragment by ports and the later ones elsewhere makes the later ones race the first one's
// record between two workers, so every datagram would need holding, not only reordered ones.
//
// A later fragment that arrives before its first one (reordered on the way) is held, copied, for
// at most fragReorderWait in one of fragHoldSlots slots per worker, and follows its first fragment
// when that comes; one that finds no slot, or whose first fragment does not come in time, is
// dropped as "fragment". Both tables are per worker, fixed in size and free of pointers, so a
// flood of fragments costs a bounded amount of memory and evicts only expired entries. A
// datagram's entry lives fragTimeout after each of its fragments, but only fragHoldTime after its
// last one, when no more than a fragment reordered around the last is to come: the table holds
// datagrams in flight, fragTableSize per fragHoldTime and worker at full use.
//
// The hold bounds are chosen for reordering, not loss: a sender emits a datagram's fragments back
// to back (Linux in order), so a later fragment that beats its first one was overtaken on a path
// with several links, by microseconds to a few milliseconds, or inside this host, where RPS hashes
// a first fragment (ports) and the later ones (addresses only) to different CPUs' backlogs, by as
// long as the busier CPU leaves its backlog waiting: over 50 ms on a loaded two-core machine
// (TestFragments/ipv6/fullnat lost two datagrams so). fragReorderWait allows for that, and is
// still short enough that a flood of orphan fragments cycles the slots quickly. fragHoldTime, how
// long a datagram's entry outlives its last fragment, stays short: it sets how many datagrams a
// second the table keeps up with. In the lab
// (TestFragments: 300 datagrams of 3000 and 9000 bytes, 100 at a time, two workers) nothing was
// held and nothing dropped, and TestFragmentsTwoWorkers delivers datagrams sent last fragment first.
const (
	fragTableSize   = 4096                   // datagrams a worker remembers (a power of two)
	fragProbe       = 8                      // slots a key may sit from its home slot
	fragTimeout     = time.Second            // a datagram's entry lives this long after each fragment
	fragHoldSlots   = 16                     // later fragments held per worker until their first
	fragHoldTime    = 50 * time.Millisecond  // how long a datagram's entry outlives its last fragment
	fragReorderWait = 250 * time.Millisecond // how long a held fragment waits for its first
	fragSlotSize    = 9216 + 14 + 8          // a frame of a 9216-byte (jumbo) MTU with two VLAN tags
	fragRingBudget  = 32 << 20               // bytes of handover rings between all pairs of workers
	fragRingMin     = 16                     // frames a handover ring holds at least
	fragRingMax     = 512                    // and at most
	fragToSelf      = -1                     // fragEntry.to: this worker forwards the datagram
	fragToNone      = -2                     // its first fragment was not forwarded: drop the rest
	fragMaxWorkers  = 64                     // workers a fragment worker can wake (fragState.woken)
)

// fragKey names a datagram: its addresses, protocol and identification (RFC 791, RFC 8200).
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
}

// fragEntry is what a worker remembers of a datagram whose first fragment it saw: the worker
// that forwards it, and, where that is this one, how (the connection's real server and service,
// direction, and the client's port and MAC for replies). It holds copies, not the connection's
// id, which the table may give to another connection meanwhile.
type fragEntry struct {
	key     fragKey
	expires int64 // 0: free
	to      int16 // a worker's id, fragToSelf or fragToNone
	last    bool  // the datagram's last fragment has passed
	dir     conntrack.Dir
	inPort  uint8
	rs, vs  uint16
	mac     [6]byte
	flow    uint32 // the first fragment's flow hash, folded: a tun service's outer entropy (tunnel)
	// A FullNAT connection's (fnat, by the entry: whatever its service's method is now): the
	// source a client's fragment gets (the local address) or the destination a real server's gets
	// (the client).
	fnat bool
	addr [16]byte
}

// fragTable is a worker's fixed-size, open-addressed table of datagrams.
type fragTable struct {
	e    []fragEntry
	seed uint64
}

func (t *fragTable) home(k *fragKey) uint64 {
	h := t.seed ^ uint64(k.id)<<8 ^ uint64(k.proto)
	for i := 0; i < 16; i += 8 {
		h ^= binary.LittleEndian.Uint64(k.src[i:])
		h = (h ^ h>>29) * 0xbf58476d1ce4e5b9
		h ^= binary.LittleEndian.Uint64(k.dst[i:])
		h = (h ^ h>>32) * 0x94d049bb133111eb
	}
	return h ^ h>>31
}

// find returns k's live entry, or nil.
func (t *fragTable) find(k *fragKey, now int64) *fragEntry {
	h := t.home(k)
	for i := range uint64(fragProbe) {
		e := &t.e[(h+i)&(fragTableSize-1)]
		if e.expires > now && e.key == *k {
			return e
		}
	}
	return nil
}

// insert returns a fresh entry for k, replacing k's own or an expired one; nil when every slot k
// may use holds a live datagram.
func (t *fragTable) insert(k *fragKey, now int64) *fragEntry {
	h := t.home(k)
	var free *fragEntry
	for i := range uint64(fragProbe) {
		e := &t.e[(h+i)&(fragTableSize-1)]
		if e.expires > now && e.key == *k {
			free = e
			break
		}
		if free == nil && e.expires <= now {
			free = e
		}
	}
	if free != nil {
		*free = fragEntry{key: *k, expires: now + int64(fragTimeout)}
	}
	return free
}

// heldFrag is a later fragment that came before its first one.
type heldFrag struct {
	key  fragKey
	at   int64
	n    int // 0: free
	in   int
	meta afpacket.RxMeta
	buf  []byte
}

// fragState is a worker's part in forwarding fragments.
type fragState struct {
	table fragTable
	held  [fragHoldSlots]heldFrag
	nHeld int

	members int                         // workers in the fanout group; <= 1: no handover
	fan     *atomic.Pointer[fanoutPlan] // the hash rules in force; nil: the configured ones
	out     []*handoffRing              // by worker id: the ring to it (nil for this worker)
	in      []*handoffRing              // the rings from the other workers
	wake    func(to int)                // tells worker to that its ring has frames; nil: none needed
	woken   uint64                      // bit i: worker i got frames since the last wakePeers

	p    frame.Parsed // a handed-over or held frame's parse
	key  fragKey
	hkey fragKey    // a held fragment's
	last bool       // the fragment at hand is its datagram's last
	orig flow.Tuple // a first fragment's tuple before its rewrite
}

func newFragState() fragState {
	s := fragState{table: fragTable{e: make([]fragEntry, fragTableSize), seed: rand.Uint64()}}
	buf := make([]byte, fragHoldSlots*fragSlotSize)
	for i := range s.held {
		s.held[i].buf = buf[i*fragSlotSize : (i+1)*fragSlotSize : (i+1)*fragSlotSize]
	}
	return s
}

// linkFragments connects workers ws (ws[i].id == i) with handover rings of slots frames each, so
// that the fragment worker of a datagram can hand it to its flow worker. fan, if not nil, holds
// the fanout plan in force; wake, if not nil, wakes a worker that may be asleep. With slots 0 the
// rings are sized so that all of them together take about fragRingBudget bytes, within
// fragRingMin and fragRingMax frames each; the memory is touched only as fragments pass.
func linkFragments(ws []*Worker, fan *atomic.Pointer[fanoutPlan], wake func(int), slots int) {
	n := len(ws)
	if slots <= 0 {
		slots = fragRingMax
		if n > 1 {
			slots = min(max(fragRingBudget/(n*(n-1)*fragSlotSize), fragRingMin), fragRingMax)
		}
	}
	for _, w := range ws {
		w.fr.members, w.fr.fan, w.fr.wake = n, fan, wake
		w.fr.out = make([]*handoffRing, n)
	}
	if n > fragMaxWorkers {
		// The wake mask has 64 bits; with more workers fragments are forwarded by the worker that
		// receives them (see flowWorker).
		for _, w := range ws {
			w.fr.out = nil
		}
		return
	}
	for _, from := range ws {
		for _, to := range ws {
			if from != to {
				r := newHandoffRing(slots, fragSlotSize)
				from.fr.out[to.id] = r
				to.fr.in = append(to.fr.in, r)
			}
		}
	}
}

// LinkFragments connects workers that run outside an Engine (the offline replay: ws[i] has id i)
// with fragment handover rings, under the fanout rules of a fresh start. Each worker must then
// call DrainFragments between its batches, and once all have stopped, until none takes a frame.
func LinkFragments(ws []*Worker) { linkFragments(ws, nil, nil, 0) }

// fragment forwards a fragment received from port in (see Fragments above): a first fragment of
// another worker's flow is handed to it, any other by its datagram's entry. It reports whether
// this worker queued the frame for transmission.
func (w *Worker) fragment(in int, b []byte, meta *afpacket.RxMeta, p *frame.Parsed) bool {
	k := &w.fr.key
	if !fragKeyOf(b, p, k, &w.fr.last) {
		w.drop(DropFragment)
		return false
	}
	if p.Frag == frame.FragFirst {
		if to := w.flowWorker(p); to != w.id {
			e := w.fr.table.insert(k, w.now)
			if e == nil {
				w.drop(DropFragmentTableFull)
				return false
			}
			e.to = int16(to)
			w.handOff(to, in, b, meta)
			w.releaseHeld(k)
			return false
		}
		return w.firstFragment(in, b, meta, p, k)
	}
	e := w.fr.table.find(k, w.now)
	if e == nil {
		w.hold(in, b, meta, k)
		return false
	}
	return w.laterFragment(in, b, meta, p, e)
}

// firstFragment forwards the first fragment of a datagram of this worker's flow and records how
// its later fragments follow it.
func (w *Worker) firstFragment(in int, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, k *fragKey) bool {
	e := w.fr.table.insert(k, w.now)
	if e == nil {
		w.drop(DropFragmentTableFull)
		return false
	}
	w.c[cFragFirst]++
	e.to = fragToNone
	w.fr.orig = p.Tuple
	h := w.ct.Hash(&p.Tuple)
	sent := w.forward(in, b, meta, p, h, 0)
	if id, dir, ok := w.ct.Lookup(&w.fr.orig); ok {
		c := w.ct.Get(id)
		e.to, e.dir, e.rs, e.vs, e.inPort, e.mac = fragToSelf, dir, c.RS(), c.VS, c.InPort, c.ClientMAC()
		e.flow = uint32(h ^ h>>32)
		if la, _, ok := w.ct.Local(c); ok && dir == conntrack.DirOriginal {
			e.fnat, e.addr = true, la
		} else if ok {
			e.fnat = true
			e.addr, _ = c.Client()
		}
	}
	w.releaseHeld(k)
	return sent
}

// laterFragment forwards a fragment by its datagram's entry e: hands it over, or rewrites its IP
// header as its first fragment's was and sends it the same way.
func (w *Worker) laterFragment(in int, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, e *fragEntry) bool {
	// Once the last fragment has passed, only a fragment reordered around it is still to come:
	// the entry lives fragHoldTime more, not fragTimeout, so that the table holds datagrams in
	// flight rather than finished ones.
	switch {
	case e.last:
	case w.fr.last:
		e.last, e.expires = true, w.now+int64(fragHoldTime)
	default:
		e.expires = w.now + int64(fragTimeout)
	}
	switch {
	case e.to == fragToNone:
		if w.hosts.has(p.Dst) {
			w.c[cToHost]++ // like its first fragment: the balancer's own traffic, not a drop
		} else {
			w.drop(DropFragment)
		}
		return false
	case e.to != fragToSelf:
		w.handOff(int(e.to), in, b, meta)
		return false
	}
	r, svc := w.tables.real(e.rs), w.tables.serviceAt(e.vs)
	if r == nil || r.Service != e.vs || svc == nil {
		w.drop(DropRealRemoved)
		return false
	}
	tally := &w.rt[r.ID][e.dir&1]
	tally.packets++
	tally.bytes += uint64(p.End - p.L3Off)
	if e.dir == conntrack.DirOriginal {
		if !r.Resolved {
			w.drop(DropUnresolved)
			return false
		}
		switch m := svc.Method; {
		case e.fnat:
			frame.RewriteSrc(b, p, e.addr, 0)
			frame.RewriteDst(b, p, r.addr, 0)
		case m == MethodNAT || m == MethodFullNAT: // FullNAT: a NAT connection from before a reload
			frame.RewriteDst(b, p, r.addr, 0) // a later fragment: the address, the IP checksum
		case m == MethodTun:
			// In the tunnel its first fragment took, with the same entropy.
			if !w.tunnel(in, r, svc, b, meta, p, uint64(e.flow), w.pathMTU(r)) {
				return false
			}
			w.c[cForwarded]++
			w.c[cFragLater]++
			return true
		}
		if !w.transmit(r.Port, b, meta, r.MAC) {
			return false
		}
		w.c[cForwarded]++
		w.c[cFragLater]++
		return true
	}
	frame.RewriteSrc(b, p, svc.addr, 0)
	if e.fnat {
		frame.RewriteDst(b, p, e.addr, 0)
	}
	if !w.transmit(int(e.inPort), b, meta, e.mac) {
		return false
	}
	w.c[cReplied]++
	w.c[cFragLater]++
	return true
}

// handOff copies a fragment into the ring to worker to.
func (w *Worker) handOff(to, in int, b []byte, meta *afpacket.RxMeta) {
	if to >= len(w.fr.out) || w.fr.out[to] == nil || !w.fr.out[to].push(in, b, meta) {
		w.drop(DropFragmentHandoffFull)
		return
	}
	w.fr.woken |= 1 << (uint(to) & 63)
	w.c[cFragHandedOff]++
}

// wakePeers wakes the workers this one handed fragments to since it last did; the engine calls it
// once per round.
func (w *Worker) wakePeers() {
	for w.fr.woken != 0 {
		to := 0
		for w.fr.woken&(1<<uint(to)) == 0 {
			to++
		}
		w.fr.woken &^= 1 << uint(to)
		if w.fr.wake != nil {
			w.fr.wake(to)
		}
	}
}

// DrainFragments forwards the fragments other workers handed to this one, and drops held
// fragments whose first fragment did not come in time. It returns how many frames it took. The
// engine calls it once per round; a handed-over fragment is this worker's to forward, whatever
// its hash.
func (w *Worker) DrainFragments(now int64) int {
	w.now = now
	got := 0
	for _, r := range w.fr.in {
		for s := r.peek(); s != nil; s = r.peek() {
			b := s.data[:s.n]
			p := &w.fr.p // counted as received by the worker that handed it over
			if err := frame.Parse(b, p); err != frame.ErrNone || p.Frag == frame.FragNone || !fragKeyOf(b, p, &w.fr.key, &w.fr.last) {
				w.drop(DropFragment) // another worker parsed it: cannot happen
			} else if p.Frag == frame.FragFirst {
				w.firstFragment(s.in, b, &s.meta, p, &w.fr.key)
			} else if e := w.fr.table.find(&w.fr.key, now); e != nil && e.to == fragToSelf {
				w.laterFragment(s.in, b, &s.meta, p, e)
			} else {
				w.drop(DropFragment) // its first fragment found no room
			}
			r.pop()
			got++
		}
	}
	if w.fr.nHeld > 0 {
		w.expireHeld()
	}
	return got
}

// fragmentsPending reports whether another worker has handed w fragments it has not taken yet.
func (w *Worker) fragmentsPending() bool {
	for _, r := range w.fr.in {
		if r.peek() != nil {
			return true
		}
	}
	return false
}

// flowWorker returns the worker the fanout program sends the unfragmented packets of p's flow to
// (p has ports: a first fragment), under the rule in force for its service: the client is the
// source of a packet to a VIP, else the destination (a real server's reply under NAT).
func (w *Worker) flowWorker(p *frame.Parsed) int {
	if w.fr.members <= 1 || w.fr.out == nil || w.tables == nil {
		return w.id
	}
	var rules map[serviceKey]bpfgen.HashRule
	if w.fr.fan != nil {
		if plan := w.fr.fan.Load(); plan != nil {
			rules = plan.rules
		}
	}
	rule := func(s *Service) bpfgen.HashRule {
		if r, ok := rules[keyOf(s)]; ok || w.fr.fan != nil {
			return r
		}
		return s.hashRule // no plan (tests): a fresh start's rules
	}
	if w.tables.isLocal(p.Dst) {
		return bpfgen.LocalMember(p.DstPort, w.fr.members) // a FullNAT reply: by its local port
	}
	client, port := p.Src, p.SrcPort
	var hr bpfgen.HashRule
	if s := w.tables.service(p.Dst, p.DstPort, p.Proto); s != nil {
		hr = rule(s)
	} else {
		client, port = p.Dst, p.DstPort
		if s := w.tables.realOwner(p.Src, p.SrcPort, p.Proto); s != nil {
			hr = rule(s)
		}
	}
	return bpfgen.FanoutMember(netip.AddrFrom16(client), port, p.Proto, hr, w.fr.members)
}

// hold keeps a later fragment whose first one has not come, in a free or expired slot.
func (w *Worker) hold(in int, b []byte, meta *afpacket.RxMeta, k *fragKey) {
	for i := range w.fr.held {
		h := &w.fr.held[i]
		if h.n != 0 && w.now-h.at > int64(fragReorderWait) {
			h.n = 0
			w.fr.nHeld--
			w.drop(DropFragment)
		}
		if h.n == 0 && len(b) <= len(h.buf) && len(b) > 0 {
			h.key, h.at, h.in, h.meta = *k, w.now, in, *meta
			h.n = copy(h.buf, b)
			w.fr.nHeld++
			w.c[cFragHeld]++
			return
		}
	}
	w.drop(DropFragment)
}

// releaseHeld forwards the held fragments of datagram k, whose first fragment has just come.
func (w *Worker) releaseHeld(k *fragKey) {
	if w.fr.nHeld == 0 {
		return
	}
	for i := range w.fr.held {
		h := &w.fr.held[i]
		if h.n == 0 || h.key != *k {
			continue
		}
		b, p := h.buf[:h.n], &w.fr.p
		e := w.fr.table.find(k, w.now)
		if e == nil || frame.Parse(b, p) != frame.ErrNone || !fragKeyOf(b, p, &w.fr.hkey, &w.fr.last) {
			w.drop(DropFragment)
		} else {
			w.laterFragment(h.in, b, &h.meta, p, e)
		}
		h.n = 0
		w.fr.nHeld--
	}
}

// expireHeld drops held fragments whose first fragment did not come within fragReorderWait.
func (w *Worker) expireHeld() {
	for i := range w.fr.held {
		if h := &w.fr.held[i]; h.n != 0 && w.now-h.at > int64(fragReorderWait) {
			h.n = 0
			w.fr.nHeld--
			w.drop(DropFragment)
		}
	}
}

// fragKeyOf fills k with the datagram p, a fragment of frame b, belongs to, and *last with
// whether it is the datagram's last fragment.
func fragKeyOf(b []byte, p *frame.Parsed, k *fragKey, last *bool) bool {
	id, more, ok := frame.FragmentID(b, p)
	if !ok {
		return false
	}
	k.src, k.dst, k.id, k.proto = p.Src, p.Dst, id, p.Proto
	*last = !more
	return true
}
