package dataplane

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/flow"
	"github.com/govs/govs/internal/cacheline"
	"github.com/govs/govs/sched"
)

// Receiver is the receive side of one interface's ring as a worker reads it (Worker.Receive).
// afpacket.Socket implements it; tests supply in-memory ports (dataplanetest.Port).
type Receiver interface {
	// NextBatch fills fs with the next received frames, at most len(fs), and returns how many, 0
	// when none is waiting. The frames stay valid, and writable, until the next call.
	NextBatch(fs []afpacket.Frame) int
}

// Transmitter is the transmit side of one interface's TX ring as a worker writes it.
// afpacket.Socket implements it; tests and the offline benchmark harness supply in-memory ports
// (dataplanetest.Port).
//
// The worker calls TxSend through it once per frame, and that call stays indirect in every build:
// the PGO profile (cmd/govs/default.pgo) is recorded from a replay, whose hot TxSend is
// dataplanetest.Port's, a type this package does not import, so PGO devirtualises nothing here.
// The concrete socket would spare the live data plane that indirect call but leave tests, the
// replay and make bench-instr without in-memory ports; bench-instr counts the same indirect call
// the live data plane makes.
type Transmitter interface {
	// TxFrame returns a free transmit slot or nil when the ring is full.
	TxFrame() []byte
	// TxCommit queues the slot TxFrame returned with n bytes.
	TxCommit(n int, vnet afpacket.VnetHdr)
	// TxSend copies frame into a free transmit slot and queues it; false, queueing nothing, when
	// the ring is full or the frame does not fit a slot.
	TxSend(frame []byte, vnet afpacket.VnetHdr) bool
	// Flush hands queued slots to the device.
	Flush() (int, error)
}

var (
	_ Receiver    = (*afpacket.Socket)(nil)
	_ Transmitter = (*afpacket.Socket)(nil)
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	// rxBudget bounds how many frames a worker takes from one port before it serves the others
	// and kicks its transmit rings.
	rxBudget = 256
	// A worker's expiry sweeps its connection table once every expireSweep, looking at between
	// expireMinLooks and expireMaxLooks entries per table tick (see Worker.Expire). With the
	// largest tables (2^26 entries per worker) a sweep takes about 17 s.
	expireSweep    = 2 * time.Second
	expireMinLooks = 512
	expireMaxLooks = 4096
)

// Worker forwards frames between its ports. Everything it writes is its own: its connection
// table, its scheduler instances and its counters. It reads the Tables the engine publishes.
//
// A Worker is not safe for concurrent use; the engine runs each in its own goroutine.
type Worker struct {
	id    int
	ports []Transmitter
	macs  [][6]byte // per port: the interface's own MAC (the source of what we send)

	tables *Tables
	scheds []sched.Scheduler // indexed by service ID, rebuilt when Tables changes
	ct     *conntrack.Table

	now   int64
	dirty uint64        // bit i: transmit port i (see txPort) has frames committed but not flushed
	large []Transmitter // per port, a transmit port with large slots, or nil
	slot  []int         // per port, the size of its transmit slots

	inner  frame.Parsed             // icmpError: the packet an ICMP error quotes
	rx     [MaxBatch]afpacket.Frame // Receive's batch
	batch  [MaxBatch]frame.Parsed   // ProcessBatch's parses
	acts   [MaxBatch]uint8          // ProcessBatch: what each frame of the batch needs
	hashes [MaxBatch]uint64         // ProcessBatch: connection-table hashes of the frames to forward
	hints  [MaxBatch]uint32         // ProcessBatch: the table's guesses at their entries (Prefetch)
	key    flow.Tuple               // icmpError's lookup key
	ipID   uint16                   // the last IPv4 ID of a packet govs made (writeTunnelHeader, writeFragNeeded)
	tkey   flow.Tuple               // persistence template key
	miss   conntrack.Miss           // forward's lookup, for newConn's insert

	tooBigTokens int   // the ICMP too-big budget (tooBigAllowed)
	tooBigAt     int64 // when it was last refilled

	c    counters
	pub  *published
	seen uint32 // last Tables generation the worker adapted to

	rt  []realTally // worker-local per-real traffic, indexed by real-server ID
	rcN []uint64    // worker-local per-real connections scheduled, indexed by real-server ID

	expireTick int64 // table tick of the last expiry sweep step

	hosts *hostAddrs // the balancer's own addresses, kept current by the engine; nil: none

	expireFn func(uint32, *conntrack.Conn) // w.onExpire, bound once so expiry does not allocate

	sync *workerSync // HA connection sync; nil without [ha]

	log *workerConnLog // the connection log; nil while it is off (connlog.go)

	fr fragState // fragments (frags.go)

	// With io = "afxdp" and several workers (steer.go): the rings to the other workers by id (nil
	// for this one), and the rings from them.
	handOut []*handoffRing
	handIn  []*handoffRx

	sockErrLogged time.Time // when the engine last logged a receive socket's error for this worker

	fn fullnatState // FullNAT local port allocation (fullnat.go)

	// The allocator may put two workers side by side: this line keeps the fields one writes per
	// packet (its counters here at the end, the clock and queue state at the start) off the other's
	// cache lines.
	_ [cacheline.Size]byte
}

// NewWorker builds a worker over ports (macs[i] is port i's own MAC) with its own connection
// table. It starts nothing; call ProcessBatch with received frames or let the engine run it.
func NewWorker(id int, ports []Transmitter, macs [][6]byte, ct conntrack.Config) (*Worker, error) {
	if len(ports) > MaxPorts {
		return nil, fmt.Errorf("failed to create worker %d: %d interfaces, at most %d", id, len(ports), MaxPorts)
	}
	table, err := conntrack.New(ct)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		id:    id,
		ports: ports,
		macs:  macs,
		ct:    table,
		pub:   &published{},
		fr:    newFragState(),
	}
	w.expireFn = w.onExpire
	w.tooBigTokens = tooBigBurst
	for _, p := range ports {
		w.slot = append(w.slot, len(p.TxFrame())) // learn the slot size; nothing is committed
	}
	return w, nil
}

// SetTables adapts the worker to a new Tables: new scheduler instances for changed services,
// larger per-real counters. Called by the worker's own goroutine between batches.
func (w *Worker) SetTables(t *Tables) {
	if t == w.tables {
		return
	}
	old := w.tables
	w.tables = t
	scheds := make([]sched.Scheduler, len(t.Services))
	for i, s := range t.Services {
		if s == nil {
			continue
		}
		// Keep the scheduler's position when the service's real servers did not change, so a
		// neighbour refresh does not restart round robin.
		if old != nil && i < len(w.scheds) && w.scheds[i] != nil && i < len(old.Services) &&
			sameDests(old.Services[i], s) {
			scheds[i] = w.scheds[i]
			continue
		}
		sc, err := sched.New(s.Scheduler, s.Dests, s.SchedOptions)
		if err != nil {
			// The daemon validated the scheduler name; a failure here is a programming error.
			panic("dataplane: " + err.Error())
		}
		scheds[i] = sc
	}
	w.scheds = scheds
	if n := len(t.Reals); n > len(w.rt) {
		rt := newRealTallies(n) // written per packet: not on a line another worker's counters use
		copy(rt, w.rt)
		w.rt = rt
		rcN := cacheline.Uint64s(n)
		copy(rcN, w.rcN)
		w.rcN = rcN
		w.pub.reals.Store(&realCounters{reals: make([]realPublished, n)})
	}
	w.seen = t.Gen
}

func sameDests(a, b *Service) bool {
	if a == nil || b == nil || a.Scheduler != b.Scheduler || len(a.Dests) != len(b.Dests) {
		return false
	}
	for i := range a.Dests {
		if a.Dests[i] != b.Dests[i] || a.RealIDs[i] != b.RealIDs[i] {
			return false
		}
	}
	return true
}

// MaxPorts is the most ports a worker serves: its transmit ports (a small- and a large-slot one per
// port) are tracked in a 64-bit mask. config.MaxInterfaces keeps configurations within it.
const MaxPorts = 32

// MaxBatch is the most frames ProcessBatch handles in one pass; it takes longer batches in pieces.
const MaxBatch = 32

// ProcessBatch handles frames received from port in, in order, and returns a bit mask of the
// frames it queued for transmission (bit i: fs[i]; bits only for the first 64). The frames may be
// modified in place. It never allocates.
//
// It parses the whole batch first and has the connection table prefetch every frame's entry
// (conntrack.Table.Prefetch), so the batch's cache misses overlap instead of each frame waiting for
// its own: with a million connections that halves the cost of a lookup.
func (w *Worker) ProcessBatch(in int, fs []afpacket.Frame, now int64) (sent uint64) {
	w.now = now
	for base := 0; base < len(fs); base += MaxBatch {
		batch := fs[base:min(base+MaxBatch, len(fs))]
		nh := 0
		w.c[cRxFrames] += uint64(len(batch))
		for i := range batch {
			f := &batch[i]
			p := &w.batch[i]
			w.acts[i] = actForward // the common frame, taken in a few checks
			if f.Meta.Len > uint32(len(f.Data)) || !frame.ParseFast(f.Data, p) {
				w.acts[i] = w.classify(f.Data, &f.Meta, p)
			}
			if w.acts[i] == actForward {
				if f.Meta.Status&statusCsumUnknown != 0 && frame.PartialL4Checksum(f.Data, p) {
					f.Meta.Status |= afpacket.StatusCsumNotReady
				}
				w.hashes[nh] = w.ct.Hash(&p.Tuple)
				nh++
			}
		}
		w.ct.Prefetch(w.hashes[:nh], w.hints[:nh])
		nh = 0
		for i := range batch {
			f := &batch[i]
			var ok bool
			switch w.acts[i] {
			case actForward:
				var done bool
				if ok, done = w.express(f, &w.batch[i], w.hints[nh]); !done {
					ok = w.forward(in, f.Data, &f.Meta, &w.batch[i], w.hashes[nh], w.hints[nh])
				} else if w.log != nil {
					// The express lane took the frame by its hint: the hint names the entry. Here
					// rather than in express, where the check cost spills around the send.
					id, dir := conntrack.HintEntry(w.hints[nh])
					w.log.count(id, dir, w.batch[i].End-w.batch[i].L3Off)
				}
				nh++
			case actICMPError:
				ok = w.icmpError(in, f.Data, &f.Meta, &w.batch[i])
			case actFragment:
				ok = w.fragment(in, f.Data, &f.Meta, &w.batch[i])
			}
			if ok && base+i < 64 {
				sent |= 1 << (uint(base+i) & 63)
			}
		}
	}
	return sent
}

// Receive hands up to about rxBudget frames of r to ProcessBatch as port in, a batch at a time,
// and returns how many. The engine calls it for each of its rings in turn.
//
// It calls r through the interface once per batch of up to MaxBatch frames (the engine's sockets
// are not devirtualised: no profile has the engine's loop), which costs the live data plane a
// couple of instructions per batch, a tenth of one per frame or less; in return tests and the
// engine run one receive loop.
func (w *Worker) Receive(in int, r Receiver, now int64) int {
	w.adoptConnLog() // before the frames: a sleeping worker publishes only after them
	got := 0
	for got < rxBudget {
		n := r.NextBatch(w.rx[:])
		if n == 0 {
			break
		}
		w.ProcessBatch(in, w.rx[:n], now)
		got += n
	}
	return got
}

// statusCsumUnknown in a frame's RxMeta.Status marks a frame received without the kernel's
// checksum offload state (AF_XDP): a local sender's partial checksum looks like any other there,
// so the worker checks a TCP or UDP frame for one (frame.PartialL4Checksum) and treats it as
// afpacket.StatusCsumNotReady. tp_status never has bit 31.
const statusCsumUnknown = 1 << 31

// What classify found a frame to need.
const (
	actDone      uint8 = iota // counted and dropped
	actForward                // a TCP/UDP/ICMP query frame: look its tuple up and forward it
	actICMPError              // an ICMP error: forward it by the connection it quotes
	actFragment               // a fragment: forward it with its datagram (frags.go)
)

// classify parses a received frame into p and says what it needs; frames that cannot be forwarded
// are counted as dropped. The caller counts the frame as received.
func (w *Worker) classify(b []byte, meta *afpacket.RxMeta, p *frame.Parsed) uint8 {
	if meta.Len > uint32(len(b)) {
		w.drop(DropCaptureTruncated)
		return actDone
	}
	if err := frame.Parse(b, p); err != frame.ErrNone {
		w.c[cParseBase+int(err)]++
		return actDone
	}
	if p.Family == 0 {
		w.drop(DropNotIP)
		return actDone
	}
	if frame.IsICMPError(p) {
		return actICMPError
	}
	if p.Frag != frame.FragNone {
		return actFragment
	}
	return actForward
}

// forward looks up (or schedules) the connection of a parsed frame whose tuple hashes to h (hint: the
// table's guess at its entry, or 0), rewrites the frame and queues it for transmission; it reports
// whether it did.
func (w *Worker) forward(in int, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, h uint64, hint uint32) bool {
	partial := -1 // the offset of the transport checksum field while it is partial
	if meta.Vnet.Flags != 0 || meta.Status&afpacket.StatusCsumNotReady != 0 {
		partial = w.receivedChecksum(b, meta, p)
	}

	id, dir, ok := w.ct.LookupMiss(&p.Tuple, h, hint, &w.miss)
	var c *conntrack.Conn
	var r *Real
	if ok {
		c = w.ct.Get(id)
		r = w.tables.real(c.RS())
		// Each datagram of a one-packet service, or a new connection (a bare SYN) reusing the tuple
		// of a closed one or of one whose real server no longer takes connections: schedule afresh
		// (IPVS conn_reuse_mode, without its one-second stall).
		if dir == conntrack.DirOriginal && (c.Flags&conntrack.FlagOnePacket != 0 ||
			(p.Proto == frame.ProtoTCP && p.TCPFlags&tcpSYN != 0 &&
				conntrack.NeedsReschedule(c.State(), dir, p.TCPFlags, usable(r, c)))) {
			w.removeConn(id, c, EndReused)
			ok = false
		}
	}
	if !ok {
		id, ok = w.newConn(in, b, p)
		if !ok {
			return false
		}
		dir = conntrack.DirOriginal
		c = w.ct.Get(id)
		r = w.tables.real(c.RS())
	}
	// A reload may give a removed real server's ID to a real server of another service; the
	// connection must not follow the ID there (TestReloadRealIDReused). A reload that removes the
	// whole virtual server ends its connections (TestReloadServiceRemoved).
	svc := w.tables.serviceAt(c.VS)
	if r == nil || r.Service != c.VS || svc == nil || r.expire {
		down := r != nil && r.Service == c.VS && r.Down
		w.removeConn(id, c, EndRealGone)
		if !down || dir != conntrack.DirOriginal || p.Proto != frame.ProtoUDP {
			if down {
				w.drop(DropRealDown)
			} else {
				w.drop(DropRealRemoved)
			}
			return false
		}
		// A datagram of a flow whose real server went down: the flow moves to a server that is
		// up (the new connection's real server is one, as it is available).
		if id, ok = w.newConn(in, b, p); !ok {
			return false
		}
		c = w.ct.Get(id)
		r, svc = w.tables.real(c.RS()), w.tables.serviceAt(c.VS)
	}
	if old, cur := w.ct.TouchConn(c, dir, p.TCPFlags, w.now); old != cur {
		activeChanged(r, old, cur)
		w.exportConn(conntrack.SyncSet, c)
	}
	tally := &w.rt[r.ID][dir&1]
	tally.packets++
	tally.bytes += uint64(p.End - p.L3Off)
	if w.log != nil {
		w.log.count(id, dir, p.End-p.L3Off)
	}
	if dir == conntrack.DirOriginal {
		if !r.Resolved {
			w.drop(DropUnresolved)
			return false
		}
		// By what the entry holds first: a reload may have changed the service's method since the
		// connection started, and it keeps the rewrite it started with until it ends.
		switch m := svc.Method; {
		case c.IsFullNAT():
			w.fullnatOut(b, p, partial, c, r)
		case m == MethodNAT || m == MethodFullNAT: // FullNAT: a NAT connection from before a reload
			rewriteDst(b, p, partial, r.addr, realPort(r, p.DstPort))
		case m == MethodTun:
			return w.forwardTunnel(in, r, svc, b, meta, p, partial, h)
		}
		if !w.transmit(r.Port, b, meta, r.MAC) {
			return false
		}
		w.c[cForwarded]++
		return true
	}
	// A reply from the real server (NAT, FullNAT): back to the client as if from the VIP.
	if c.IsFullNAT() {
		fullnatBack(b, p, partial, c)
	} else {
		rewriteSrc(b, p, partial, svc.addr, virtualPort(svc, p.SrcPort))
	}
	if !w.transmit(int(c.InPort), b, meta, c.ClientMAC()) {
		return false
	}
	w.c[cReplied]++
	return true
}

// express forwards a frame of an established connection that the table's hint (see ProcessBatch)
// found, the way forward would, in fewer steps: most frames are such frames. It reports done
// false, having changed nothing, for a frame that needs more than the common case, which forward
// then handles: a client's SYN or a one-packet service (either may need a new connection), a
// real server that is gone, removed, down or not resolved, checksum offload state, a VLAN tag, IP
// options or IPv6 extension headers, and a tun packet too big for the tunnel (tunnelExpress). (RewriteFast changes nothing when it declines.)
func (w *Worker) express(f *afpacket.Frame, p *frame.Parsed, hint uint32) (sent, done bool) {
	b, meta := f.Data, &f.Meta
	if meta.Vnet.Flags != 0 || meta.Status&(afpacket.StatusCsumNotReady|afpacket.StatusVLANValid) != 0 {
		return false, false
	}
	c, dir := w.ct.HintedConn(&p.Tuple, hint)
	if c == nil || c.Flags&conntrack.FlagOnePacket != 0 ||
		(dir == conntrack.DirOriginal && p.Proto == frame.ProtoTCP && p.TCPFlags&tcpSYN != 0) {
		return false, false
	}
	r, svc := w.tables.real(c.RS()), w.tables.serviceAt(c.VS)
	if r == nil || r.Service != c.VS || r.gone || svc == nil {
		return false, false
	}
	// The next hop's MAC is read where it lies (the real server's, or the entry's client MAC copied
	// once for a reply), not copied for both directions.
	var out, counter int
	var mac *[6]byte
	var client [6]byte
	if dir == conntrack.DirOriginal {
		// The rewrite by the entry first, as forward's.
		switch m := svc.Method; {
		case !r.Resolved:
			return false, false
		case c.IsFullNAT():
			if !w.fullnatOutFast(b, p, c, r) {
				return false, false
			}
		case m == MethodNAT:
			if !frame.RewriteFast(b, p, true, &r.addr, realPort(r, p.DstPort)) {
				return false, false
			}
		case m == MethodDR:
		default: // tun, or a NAT connection under FullNAT (forward's)
			if mtu := w.pathMTU(r); tunnelExpress(svc, mtu, p, meta) {
				return w.expressTunnel(c, r, svc, b, meta, p, mtu), true
			}
			return false, false
		}
		out, mac, counter = r.Port, &r.MAC, cForwarded
	} else {
		if c.IsFullNAT() {
			if !fullnatBackFast(b, p, c) {
				return false, false
			}
		} else if !frame.RewriteFast(b, p, false, &svc.addr, virtualPort(svc, p.SrcPort)) {
			return false, false
		}
		client = c.ClientMAC()
		out, mac, counter = int(c.InPort), &client, cReplied
	}
	if p.Proto == frame.ProtoTCP {
		if old, cur := w.ct.TouchConn(c, dir, p.TCPFlags, w.now); old != cur {
			activeChanged(r, old, cur)
			w.exportConn(conntrack.SyncSet, c)
		}
	} else {
		w.ct.Refresh(c, w.now)
	}
	tally := &w.rt[r.ID][dir&1]
	tally.packets++
	tally.bytes += uint64(p.End - p.L3Off)
	if !w.send(out, b, meta.Vnet, mac) && !w.transmitSlow(out, b, meta, *mac) {
		return false, true
	}
	w.c[counter]++
	w.c[cExpress]++
	return true, true
}

// activeChanged moves a connection of r between the active and inactive counts when its state
// change from old to cur crossed between them.
func activeChanged(r *Real, old, cur conntrack.State) {
	switch {
	case conntrack.IsActive(old) == conntrack.IsActive(cur):
	case conntrack.IsActive(cur):
		r.Counts.Active.Add(1)
		r.Counts.Inactive.Add(-1)
	default:
		r.Counts.Active.Add(-1)
		r.Counts.Inactive.Add(1)
	}
}

// usable reports whether real server r takes new connections of c's service, as the schedulers see
// it. One whose next hop is not resolved takes none: a bare SYN on the tuple of a connection bound
// to it is scheduled afresh instead of waiting, dropped, for the neighbour entry. So is one on the
// tuple of a connection to a server that is down, quiesced (weight 0) or on standby.
func usable(r *Real, c *conntrack.Conn) bool {
	return r != nil && r.Service == c.VS && r.avail && r.Weight > 0
}

// receivedChecksum prepares the checksum of a frame received with offload state for rewriting: it
// returns the offset of the transport checksum field if that stays partial, else -1.
//
// A local sender (or GRO/GSO) left the transport checksum partial: the field holds only the
// pseudo-header sum and the device is to finish it. It stays partial (the TX ring's virtio header
// asks the kernel or the NIC to finish it) and the rewrite adjusts the pseudo-header part
// (rewriteDst, rewriteSrc); where the field is not where a partial checksum can be, it is
// finished here.
func (w *Worker) receivedChecksum(b []byte, meta *afpacket.RxMeta, p *frame.Parsed) int {
	csum := -1
	if meta.Vnet.Flags&afpacket.VnetHdrFNeedsCsum != 0 {
		csum = int(meta.Vnet.CsumStart) + int(meta.Vnet.CsumOffset)
		if csum < int(p.L4Off) || csum+2 > int(p.End) || p.L4Off == 0 {
			csum = -1
			meta.Vnet.Flags &^= afpacket.VnetHdrFNeedsCsum
			frame.CompleteL4Checksum(b, p)
			w.c[cCsumCompleted]++
		}
	} else if meta.Status&afpacket.StatusCsumNotReady != 0 {
		frame.CompleteL4Checksum(b, p)
		w.c[cCsumCompleted]++
	}
	meta.Vnet.Flags &= afpacket.VnetHdrFNeedsCsum // never claim a checksum was verified
	return csum
}

// rewriteDst is frame.RewriteDst for a frame whose transport checksum field at offset partial
// holds a partial checksum (partial < 0: none, the checksum is finished).
func rewriteDst(b []byte, p *frame.Parsed, partial int, addr [16]byte, port uint16) {
	if partial < 0 {
		frame.RewriteDst(b, p, addr, port)
		return
	}
	old := p.DstPort
	invertPartial(b, partial)
	frame.RewriteDst(b, p, addr, port)
	unadjustPartialPort(b, p, partial, old, p.DstPort)
	invertPartial(b, partial)
}

// rewriteSrc is frame.RewriteSrc for a frame whose transport checksum field at offset partial
// holds a partial checksum (partial < 0: none).
func rewriteSrc(b []byte, p *frame.Parsed, partial int, addr [16]byte, port uint16) {
	if partial < 0 {
		frame.RewriteSrc(b, p, addr, port)
		return
	}
	old := p.SrcPort
	invertPartial(b, partial)
	frame.RewriteSrc(b, p, addr, port)
	unadjustPartialPort(b, p, partial, old, p.SrcPort)
	invertPartial(b, partial)
}

// unadjustPartialPort takes a port change from old to new back out of the partial checksum field
// at offset partial, which is in finished form (see invertPartial).
//
// frame.RewriteDst and RewriteSrc update the transport checksum field for the address and the
// port change, as for a finished checksum. A partial field holds only the pseudo-header sum, which
// has the addresses but no ports (the device sums the ports with the rest of the segment), so the
// port change must not be in it (TestPartialChecksum). The rewrite adjusts only the transport
// checksum field, so only a partial field there is corrected.
func unadjustPartialPort(b []byte, p *frame.Parsed, partial int, old, new uint16) {
	if old == new || p.L4Off == 0 {
		return
	}
	switch {
	case p.Proto == frame.ProtoTCP && partial == int(p.L4Off)+16:
	case p.Proto == frame.ProtoUDP && partial == int(p.L4Off)+6:
	default:
		return
	}
	// F' = ^(^F + d) with d = ^old + new; adding -d = old + ^new gives F back.
	v := binary.BigEndian.Uint16(b[partial:])
	s := uint32(^v) + uint32(old) + uint32(^new)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	binary.BigEndian.PutUint16(b[partial:], ^uint16(s))
}

// newConn schedules a new connection for a frame to a virtual service and enters it in the table.
func (w *Worker) newConn(in int, b []byte, p *frame.Parsed) (uint32, bool) {
	svc := w.tables.service(p.Dst, p.DstPort, p.Proto)
	if svc == nil {
		if w.tables.isLocal(p.Dst) {
			w.drop(DropNoConnection) // to a FullNAT local address: a connection that ended
			return 0, false
		}
		if w.hosts.has(p.Dst) {
			// The balancer's own traffic, e.g. a real server's answer to a connection this host
			// opened: the kernel has its own copy of the frame. Not a drop.
			w.c[cToHost]++
			return 0, false
		}
		w.drop(DropNoService)
		return 0, false
	}
	if p.Proto == frame.ProtoTCP && p.TCPFlags&(tcpSYN|tcpACK|tcpRST) != tcpSYN {
		w.drop(DropNoConnection)
		return 0, false
	}
	if w.tables.Draining {
		w.drop(DropDraining)
		return 0, false
	}
	if svc.NoQuorum {
		w.drop(DropNoQuorum)
		return 0, false
	}
	nc := conntrack.NewConn{
		VS:     svc.ID,
		Method: uint8(svc.Method),
		InPort: uint8(in),
		Reply:  svc.Method == MethodNAT,
		State:  conntrack.StateUDP,
	}
	if p.Proto == frame.ProtoTCP {
		nc.State = conntrack.StateSynRecv
	}
	if svc.OnePacket {
		nc.Flags |= conntrack.FlagOnePacket
	}
	copy(nc.ClientMAC[:], b[6:12])

	var r *Real
	if svc.Persistence > 0 {
		// A client (masked) keeps its real server while the service's template for it lives.
		nc.Flags |= conntrack.FlagPersistent
		w.tkey = conntrack.TemplateKey(conntrack.MaskAddr(p.Src, svc.PersistenceBits), svc.ID)
		if tid, _, ok := w.ct.Lookup(&w.tkey); ok {
			t := w.ct.Get(tid)
			// A quiesced real server (weight 0) keeps its clients, as under IPVS; one that is
			// down, removed, unresolved, on standby or disabled does not.
			if tr := w.tables.real(t.RS()); tr != nil && tr.Service == svc.ID && tr.avail {
				r = tr
				nc.Template = tid + 1
				w.exportConn(conntrack.SyncSet, t) // refreshed: a backup's copy must not idle out
			} else {
				w.removeConn(tid, t, EndRealGone) // a template: not logged
			}
		}
	}
	if r == nil {
		i := w.scheds[svc.ID].Pick(svc.Dests, &p.Tuple)
		if i < 0 {
			w.drop(DropNoRealServer)
			return 0, false
		}
		r = w.tables.Reals[svc.RealIDs[i]]
	}
	nc.RS, nc.Real, nc.RealPort = r.ID, r.addr, realPort(r, p.DstPort)
	if svc.Method == MethodFullNAT && !w.allocLocal(svc, r, nc.RealPort, p.Proto, &nc) {
		return 0, false
	}
	if svc.Persistence > 0 && nc.Template == 0 {
		tid, err := w.ct.InsertTemplate(&w.tkey, &nc, svc.Persistence, w.now, w.expireFn)
		if err != nil {
			w.dropInsert(err)
			return 0, false
		}
		nc.Template = tid + 1
		w.exportConn(conntrack.SyncSet, w.ct.Get(tid))
	}
	id, err := w.ct.InsertMissed(&p.Tuple, &w.miss, &nc, w.now, w.expireFn)
	if err != nil {
		w.dropInsert(err)
		return 0, false
	}
	w.c[cConnsCreated]++
	w.rcN[r.ID]++
	r.Counts.Inactive.Add(1)
	c := w.ct.Get(id)
	w.exportConn(conntrack.SyncSet, c)
	if w.log != nil {
		w.logCreated(id, c)
	}
	return id, true
}

// dropInsert counts a refused table insert.
func (w *Worker) dropInsert(err error) {
	switch err {
	case conntrack.ErrExists:
		w.drop(DropTupleClash)
	case conntrack.ErrNoHandle:
		w.drop(DropRealHandlesFull)
	default:
		w.drop(DropTableFull)
	}
}

// icmpError forwards an ICMP error about a known connection: from the client side towards the
// real server (about a reply we sent) or from the server side towards the client.
func (w *Worker) icmpError(in int, b []byte, meta *afpacket.RxMeta, p *frame.Parsed) bool {
	q := &w.inner
	if err := frame.ParseICMPError(b, p, q); err != frame.ErrNone {
		w.c[cParseBase+int(err)]++
		return false
	}
	// The quoted packet travelled the other way: its reverse is the tuple of our table.
	k := &w.key
	k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto = q.Dst, q.Src, q.DstPort, q.SrcPort, q.Proto
	id, dir, ok := w.ct.Lookup(k)
	if !ok {
		if w.pathMTUSignal(b, p, q) || w.hosts.has(p.Dst) {
			// A path MTU signal, or an error about the balancer's own traffic to one of its
			// addresses (the tunnels' outer sources, which the socket filter admits ICMP to):
			// the kernel has its own copy of the frame. Not a drop.
			return false
		}
		w.drop(DropICMPNoConnection)
		return false
	}
	c := w.ct.Get(id)
	r, svc := w.tables.real(c.RS()), w.tables.serviceAt(c.VS)
	if r == nil || r.Service != c.VS || svc == nil { // a reload took them away, as in forward
		w.drop(DropRealRemoved)
		return false
	}
	// The incremental rewrites below need a finished checksum, and the offload state of the
	// received frame must not travel with the rewritten one (TestICMPErrorPartialChecksum).
	if meta.Vnet.Flags&afpacket.VnetHdrFNeedsCsum != 0 || meta.Status&afpacket.StatusCsumNotReady != 0 {
		frame.CompleteL4Checksum(b, p)
		w.c[cCsumCompleted]++
	}
	meta.Vnet = afpacket.VnetHdr{}
	if dir == conntrack.DirOriginal {
		// About a packet the VIP sent to the client: it goes to the real server.
		if !r.Resolved {
			w.drop(DropUnresolved)
			return false
		}
		switch m := svc.Method; { // by the entry first: a reload may have changed the method
		case c.IsFullNAT():
			w.fullnatICMPError(b, p, q, c, dir, r)
		case m == MethodNAT || m == MethodFullNAT:
			frame.RewriteDst(b, p, r.addr, 0)
			frame.RewriteInnerSrc(b, p, q, r.addr, realPort(r, q.SrcPort))
		case m == MethodTun:
			// Encapsulated as the connection's own packets are, with their entropy, so that it
			// reaches the real server the same way.
			if !w.tunnel(-1, r, svc, b, meta, p, w.ct.Hash(k), w.pathMTU(r)) {
				return false
			}
			w.c[cICMPErrors]++
			return true
		}
		if !w.transmit(r.Port, b, meta, r.MAC) {
			return false
		}
		w.c[cICMPErrors]++
		return true
	}
	// About a packet we sent to the real server: the client must see it as about the VIP.
	if c.IsFullNAT() {
		w.fullnatICMPError(b, p, q, c, dir, r)
	} else {
		if p.Src == r.addr {
			frame.RewriteSrc(b, p, svc.addr, 0)
		}
		frame.RewriteInnerDst(b, p, q, svc.addr, virtualPort(svc, q.DstPort))
	}
	if !w.transmit(int(c.InPort), b, meta, c.ClientMAC()) {
		return false
	}
	w.c[cICMPErrors]++
	return true
}

// transmit copies b into a TX slot of port out with new MAC addresses, re-inserting a VLAN tag the
// receive path stripped, and keeps large (GSO) frames' offload header.
func (w *Worker) transmit(out int, b []byte, meta *afpacket.RxMeta, dst [6]byte) bool {
	// The common frame first, in few steps: untagged, for a small slot. The rest, and a full ring,
	// take the general way.
	if meta.Status&afpacket.StatusVLANValid == 0 && w.send(out, b, meta.Vnet, &dst) {
		return true
	}
	return w.transmitSlow(out, b, meta, dst)
}

// send is transmit's short way for an untagged frame: new MAC addresses, then one TxSend into a
// small slot of port out. It reports false, having queued nothing, when the frame needs more (too
// large, ring full, no such port); transmitSlow then takes it.
func (w *Worker) send(out int, b []byte, vnet afpacket.VnetHdr, dst *[6]byte) bool {
	if uint(out) >= uint(len(w.ports)) || len(b) < 12 || len(b) > w.slot[out] {
		return false
	}
	if w.large != nil { // frames for one link leave in order: queued large ones first
		if other := out + len(w.ports); w.dirty&(1<<(uint(other)&63)) != 0 {
			w.flush(other)
		}
	}
	*(*[6]byte)(b[0:6]) = *dst
	*(*[6]byte)(b[6:12]) = w.macs[out]
	if !w.ports[out].TxSend(b, vnet) {
		return false
	}
	w.dirty |= 1 << (uint(out) & 63)
	return true
}

// transmitSlow is transmit for every frame.
func (w *Worker) transmitSlow(out int, b []byte, meta *afpacket.RxMeta, dst [6]byte) bool {
	vlan := meta.Status&afpacket.StatusVLANValid != 0
	need := len(b)
	if vlan {
		need += 4
	}
	port, ti, buf := w.txSlot(out, need)
	if buf == nil {
		return false
	}
	frame.SetEthernet(b, dst, w.macs[out])
	vnet := meta.Vnet
	if vlan {
		copy(buf[:12], b[:12])
		tpid := meta.VLANTPID
		if tpid == 0 {
			tpid = 0x8100
		}
		binary.BigEndian.PutUint16(buf[12:], tpid)
		binary.BigEndian.PutUint16(buf[14:], meta.VLANTCI)
		copy(buf[16:], b[12:])
		// af_packet counts csum_start in the frame as received, without the stripped tag
		// (packet_rcv_vnet passes vlan_hlen 0); the frame we send has the tag in it.
		if vnet.Flags&afpacket.VnetHdrFNeedsCsum != 0 {
			vnet.CsumStart += 4
		}
		if vnet.HdrLen != 0 {
			vnet.HdrLen += 4
		}
	} else {
		copy(buf, b)
	}
	port.TxCommit(need, vnet)
	w.dirty |= 1 << (uint(ti) & 63)
	return true
}

// txSlot returns a free transmit slot of at least need bytes for port out, the transmit port it
// belongs to and that port's index (see txPort), for TxCommit and the dirty mask; a nil slot, the
// drop counted, when there is none. Frames up to the MTU go through the port's ring of small
// slots; large (GSO) frames through its ring of large slots. Frames for one link leave in the
// order they came: queued frames of the other size class go first.
func (w *Worker) txSlot(out, need int) (Transmitter, int, []byte) {
	ti := out
	if need > w.slot[out] {
		if w.large == nil {
			w.drop(DropTooLarge)
			return nil, 0, nil
		}
		ti = out + len(w.ports)
	}
	if w.large != nil {
		other := ti + len(w.ports)
		if ti >= len(w.ports) {
			other = out
		}
		if w.dirty&(1<<(uint(other)&63)) != 0 {
			w.flush(other)
		}
	}
	port := w.txPort(ti)
	buf := port.TxFrame()
	if buf == nil {
		w.flush(ti)
		if buf = port.TxFrame(); buf == nil {
			w.drop(DropTxRingFull)
			return nil, 0, nil
		}
	}
	if need > len(buf) {
		w.drop(DropTooLarge)
		return nil, 0, nil
	}
	return port, ti, buf
}

// txPort returns transmit port ti: ports[ti], or large[ti-len(ports)].
func (w *Worker) txPort(ti int) Transmitter {
	if ti < len(w.ports) {
		return w.ports[ti]
	}
	return w.large[ti-len(w.ports)]
}

func (w *Worker) flush(ti int) {
	n, err := w.txPort(ti).Flush()
	w.c[cTxKicks]++
	w.c[cTxFrames] += uint64(n)
	if err != nil {
		w.c[cTxErrors]++
	}
	w.dirty &^= 1 << (uint(ti) & 63)
}

// FlushAll kicks every port with queued frames.
func (w *Worker) FlushAll() {
	for w.dirty != 0 {
		for ti := 0; ti < 64; ti++ {
			if w.dirty&(1<<uint(ti)) != 0 {
				w.flush(ti)
			}
		}
	}
}

// SetLargePorts gives the worker, for each of its ports, a second transmit port with slots for
// frames larger than the first one's (GSO frames up to 64 KiB), so the common ring can have many
// small slots. Call it before the first frame.
func (w *Worker) SetLargePorts(large []Transmitter) {
	w.large = large
}

// removeConn removes entry id (c) from the table, for reason why (the connection log's).
func (w *Worker) removeConn(id uint32, c *conntrack.Conn, why ConnEnd) {
	if w.log != nil {
		w.logEnded(id, c, why)
	}
	w.uncount(c)
	w.exportConn(conntrack.SyncRemove, c)
	w.ct.Delete(id)
}

// Expire removes idle connections. Its pace is set by time, not by packets: the first call in each
// table tick (about 1 ms) looks at enough entries to sweep the whole table every expireSweep, at
// least expireMinLooks and at most expireMaxLooks, so a busy worker pays per second, not per frame,
// and no call stalls forwarding for long. Later calls in the same tick return at once.
func (w *Worker) Expire(now int64) {
	tk := now >> conntrack.TickShift
	if tk == w.expireTick {
		return
	}
	w.expireTick, w.now = tk, now // now: the time of what the removals record (connection log)
	looks := w.ct.Span() / int(expireSweep>>conntrack.TickShift)
	looks = min(max(looks, expireMinLooks), expireMaxLooks)
	w.ct.Expire(now, looks/8, w.expireFn) // Expire looks at up to 8 entries per removal allowed
}

// onExpire is called for every entry the table expires or evicts.
func (w *Worker) onExpire(id uint32, c *conntrack.Conn) {
	if w.log != nil {
		why := EndTimeout
		if w.ct.Remaining(c) > 0 {
			why = EndEvicted
		}
		w.logEnded(id, c, why)
	}
	w.uncount(c)
	w.exportConn(conntrack.SyncRemove, c)
	if !c.IsTemplate() {
		w.c[cConnsExpired]++
	}
}

// uncount takes a connection that ends out of its real server's counts.
func (w *Worker) uncount(c *conntrack.Conn) {
	if c.IsTemplate() {
		return
	}
	r := w.tables.real(c.RS())
	if r == nil || r.Service != c.VS {
		return
	}
	if conntrack.IsActive(c.State()) {
		r.Counts.Active.Add(-1)
	} else {
		r.Counts.Inactive.Add(-1)
	}
	r.Counts.Unbound(r.UpperThreshold, r.LowerThreshold)
}

func (w *Worker) drop(d Drop) { w.c[cDropBase+int(d)]++ }

// Publish copies the worker's counters where Stats can read them.
func (w *Worker) Publish() {
	for i := range w.c {
		w.pub.slots[i].Store(w.c[i])
	}
	if rc := w.pub.reals.Load(); rc != nil {
		for i := range rc.reals {
			p, t := &rc.reals[i], &w.rt[i]
			p.packets[0].Store(t[0].packets)
			p.packets[1].Store(t[1].packets)
			p.bytes[0].Store(t[0].bytes)
			p.bytes[1].Store(t[1].bytes)
			p.conns.Store(w.rcN[i])
		}
	}
	w.pub.ctEntries.Store(uint64(w.ct.Len()))
	w.pub.ctCapacity.Store(uint64(w.ct.Cap()))
	w.pub.ctEvictions.Store(w.ct.Stats().Evicted)
	if req := w.pub.conns.Load(); req != nil {
		w.serveConns(req)
	}
}

// invertPartial turns a partial checksum field (the folded pseudo-header sum, not complemented)
// into the form of a finished checksum and back. In between, RFC 1624 incremental updates keep
// it right: a finished checksum is ~sum, a partial one is sum. 0xffff and 0 are the same value in
// ones' complement; 0 is used so that an IPv4 UDP "no checksum" field never appears.
func invertPartial(b []byte, off int) {
	v := binary.BigEndian.Uint16(b[off:])
	if v == 0xffff {
		v = 0
	}
	binary.BigEndian.PutUint16(b[off:], ^v)
}

// realPort is the port a connection to port reaches on r: r's own, or, for a real server
// without a port (of an all-ports service), the port the client asked for.
func realPort(r *Real, port uint16) uint16 {
	if p := r.Addr.Port(); p != 0 {
		return p
	}
	return port
}

// virtualPort is the service port a reply from port appears to come from: the service's own, or,
// for an all-ports service, the port unchanged (its real servers keep the client's port).
func virtualPort(s *Service, port uint16) uint16 {
	if p := s.VIP.Port(); p != 0 {
		return p
	}
	return port
}
