package dataplane

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/sched"
)

// Port is one interface's frame I/O as one worker sees it: the receive side of its ring and the
// transmit side of its TX ring. afpacket.Socket implements it; tests and the offline benchmark
// harness supply in-memory ports.
type Port interface {
	// Next returns the next received frame; the slice is valid until the next call to Next.
	Next() (frame []byte, meta *afpacket.RxMeta, ok bool)
	// TxFrame returns a free transmit slot or nil when the ring is full.
	TxFrame() []byte
	// TxCommit queues the slot TxFrame returned with n bytes.
	TxCommit(n int, vnet afpacket.VnetHdr)
	// Flush hands queued slots to the device.
	Flush() (int, error)
}

var _ Port = (*afpacket.Socket)(nil)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	// rxBudget bounds how many frames a worker takes from one port before it serves the others
	// and kicks its transmit rings.
	rxBudget = 256
	// expireBudget bounds the connection-table entries a worker expires per loop, so expiry never
	// stalls forwarding.
	expireBudget = 64
)

// Worker forwards frames between its ports. Everything it writes is its own: its connection
// table, its scheduler instances and its counters. It reads the Tables the engine publishes.
//
// A Worker is not safe for concurrent use; the engine runs each in its own goroutine.
type Worker struct {
	id    int
	ports []Port
	macs  [][6]byte // per port: the interface's own MAC (the source of what we send)

	tables *Tables
	scheds []sched.Scheduler // indexed by service ID, rebuilt when Tables changes
	ct     *conntrack.Table
	to     conntrack.Timeouts

	now     int64
	dirty   uint64 // bit i: port i has frames committed but not flushed
	partial int    // offset of a partial checksum field inverted for rewriting, or -1

	p, inner frame.Parsed
	key      conntrack.Key
	rkey     conntrack.Key

	c    counters
	pub  *published
	rcN  []int64  // worker-local per-real connection counts
	rpN  []uint64 // worker-local per-real packet counts
	seen uint32   // last Tables generation the worker adapted to

	expireFn func(uint32, *conntrack.Conn) // w.onExpire, bound once so expiry does not allocate
}

// NewWorker builds a worker over ports (macs[i] is port i's own MAC) with a connection table of
// capacity entries. It starts nothing; call Process for each frame or let the engine run it.
func NewWorker(id int, ports []Port, macs [][6]byte, capacity int, to conntrack.Timeouts) *Worker {
	w := &Worker{
		id:    id,
		ports: ports,
		macs:  macs,
		ct:    conntrack.New(capacity),
		to:    to,
		pub:   &published{},
	}
	w.expireFn = w.onExpire
	return w
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
		sc, err := sched.New(s.Scheduler, s.Dests)
		if err != nil {
			// The daemon validated the scheduler name; a failure here is a programming error.
			panic("dataplane: " + err.Error())
		}
		scheds[i] = sc
	}
	w.scheds = scheds
	if n := len(t.Reals); n > len(w.rcN) {
		rcN := make([]int64, n)
		copy(rcN, w.rcN)
		w.rcN = rcN
		rpN := make([]uint64, n)
		copy(rpN, w.rpN)
		w.rpN = rpN
		w.pub.reals.Store(&realCounters{
			conns:   make([]atomic.Int64, n),
			packets: make([]atomic.Uint64, n),
		})
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

// Process handles one received frame from port in. now is monotonic nanoseconds. The frame may be
// modified in place. It never allocates.
func (w *Worker) Process(in int, b []byte, meta *afpacket.RxMeta, now int64) {
	w.now = now
	w.partial = -1
	w.c[cRxFrames]++
	if meta.Len > uint32(len(b)) {
		w.drop(DropCaptureTruncated)
		return
	}
	p := &w.p
	if err := frame.Parse(b, p); err != frame.ErrNone {
		w.c[cParseBase+int(err)]++
		return
	}
	if p.Family == 0 {
		w.drop(DropNotIP)
		return
	}
	if p.Frag == frame.FragLater {
		// TODO(govs): forward later fragments by a (src, dst, IP ID) cache filled by the first.
		w.drop(DropFragment)
		return
	}
	if frame.IsICMPError(p) {
		w.icmpError(in, b, meta)
		return
	}
	// A local sender (or GRO/GSO) left the transport checksum partial: the field holds only the
	// pseudo-header sum and the device is to finish it. Keep it partial (the TX ring's virtio
	// header asks the kernel or the NIC to finish it) and adjust the pseudo-header part while
	// rewriting; where that is impossible, finish it here.
	csum := -1
	if meta.Vnet.Flags&afpacket.VnetHdrFNeedsCsum != 0 {
		csum = int(meta.Vnet.CsumStart) + int(meta.Vnet.CsumOffset)
		if meta.Status&afpacket.StatusVLANValid != 0 {
			csum -= 4 // the kernel counts the stripped VLAN tag as if it were in the frame
		}
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
	if csum >= 0 {
		invertPartial(b, csum)
		w.partial = csum // transmit turns it back before the frame leaves
	}

	k := &w.key
	k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto = p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto
	id, dir, ok := w.ct.Lookup(k)
	if ok {
		c := w.ct.Get(id)
		if dir == conntrack.DirOriginal && p.Proto == 6 && p.TCPFlags&(tcpSYN|tcpACK) == tcpSYN &&
			c.State == conntrack.StateClose {
			// A new connection reusing the tuple of a closed one: schedule it afresh.
			w.removeConn(id, c)
			ok = false
		}
	}
	if !ok {
		id, ok = w.newConn(in, b, p)
		if !ok {
			return
		}
		dir = conntrack.DirOriginal
	}
	c := w.ct.Get(id)
	r := w.tables.real(c.RS)
	if r == nil {
		w.removeConn(id, c)
		w.drop(DropRealRemoved)
		return
	}
	c.LastSeen = now
	c.Packets++
	c.Bytes += uint64(len(b))
	if p.Proto == 6 {
		c.State, c.Timeout = conntrack.NextTCPState(c.State, dir, p.TCPFlags, &w.to)
	}
	w.rpN[c.RS]++
	svc := w.tables.Services[r.Service]
	if dir == conntrack.DirOriginal {
		if !r.Resolved {
			w.drop(DropUnresolved)
			return
		}
		if svc.Method == MethodNAT {
			frame.RewriteDst(b, p, r.addr, r.Addr.Port())
		}
		if w.transmit(r.Port, b, meta, r.MAC) {
			w.c[cForwarded]++
		}
		return
	}
	// A reply from the real server (NAT): back to the client as if from the VIP.
	frame.RewriteSrc(b, p, svc.addr, svc.VIP.Port())
	if w.transmit(int(c.InPort), b, meta, c.ClientMAC) {
		w.c[cReplied]++
	}
}

// newConn schedules a new connection for a frame to a virtual service and enters it in the table.
func (w *Worker) newConn(in int, b []byte, p *frame.Parsed) (uint32, bool) {
	svc := w.tables.service(p.Dst, p.DstPort, p.Proto)
	if svc == nil {
		w.drop(DropNoService)
		return 0, false
	}
	if p.Proto == 6 && p.TCPFlags&(tcpSYN|tcpACK|tcpRST) != tcpSYN {
		w.drop(DropNoConnection)
		return 0, false
	}
	i := w.scheds[svc.ID].Pick(svc.Dests)
	if i < 0 {
		w.drop(DropNoRealServer)
		return 0, false
	}
	r := w.tables.Reals[svc.RealIDs[i]]
	conn := conntrack.Conn{
		VS:       svc.ID,
		RS:       r.ID,
		Gen:      w.tables.Gen,
		InPort:   uint8(in),
		LastSeen: w.now,
	}
	copy(conn.ClientMAC[:], b[6:12])
	if p.Proto == 6 {
		conn.State, conn.Timeout = conntrack.StateSynRecv, w.to.TCPSynRecv
	} else {
		conn.State, conn.Timeout = conntrack.StateUDP, w.to.UDP
	}
	var reply *conntrack.Key
	if svc.Method == MethodNAT {
		rk := &w.rkey
		rk.Src, rk.Dst, rk.SrcPort, rk.DstPort, rk.Proto = r.addr, p.Src, r.Addr.Port(), p.SrcPort, p.Proto
		reply = rk
	}
	id, ok := w.ct.Insert(&w.key, reply, &conn)
	if !ok {
		w.drop(DropTableFull)
		return 0, false
	}
	w.c[cConnsCreated]++
	w.rcN[r.ID]++
	return id, true
}

// icmpError forwards an ICMP error about a known connection: from the client side towards the
// real server (about a reply we sent) or from the server side towards the client.
func (w *Worker) icmpError(in int, b []byte, meta *afpacket.RxMeta) {
	p, q := &w.p, &w.inner
	if err := frame.ParseICMPError(b, p, q); err != frame.ErrNone {
		w.c[cParseBase+int(err)]++
		return
	}
	// The quoted packet travelled the other way: its reverse is the tuple of our table.
	k := &w.key
	k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto = q.Dst, q.Src, q.DstPort, q.SrcPort, q.Proto
	id, dir, ok := w.ct.Lookup(k)
	if !ok {
		w.drop(DropICMPNoConnection)
		return
	}
	c := w.ct.Get(id)
	r := w.tables.real(c.RS)
	if r == nil {
		w.drop(DropRealRemoved)
		return
	}
	svc := w.tables.Services[r.Service]
	if dir == conntrack.DirOriginal {
		// About a packet the VIP sent to the client: it goes to the real server.
		if !r.Resolved {
			w.drop(DropUnresolved)
			return
		}
		if svc.Method == MethodNAT {
			frame.RewriteDst(b, p, r.addr, 0)
			frame.RewriteInnerSrc(b, p, q, r.addr, r.Addr.Port())
		}
		if w.transmit(r.Port, b, meta, r.MAC) {
			w.c[cICMPErrors]++
		}
		return
	}
	// About a packet we sent to the real server: the client must see it as about the VIP.
	if p.Src == r.addr {
		frame.RewriteSrc(b, p, svc.addr, 0)
	}
	frame.RewriteInnerDst(b, p, q, svc.addr, svc.VIP.Port())
	if w.transmit(int(c.InPort), b, meta, c.ClientMAC) {
		w.c[cICMPErrors]++
	}
}

// transmit copies b into a TX slot of port out with new MAC addresses, re-inserting a VLAN tag the
// receive path stripped, and keeps large (GSO) frames' offload header.
func (w *Worker) transmit(out int, b []byte, meta *afpacket.RxMeta, dst [6]byte) bool {
	port := w.ports[out]
	buf := port.TxFrame()
	if buf == nil {
		w.flush(out)
		if buf = port.TxFrame(); buf == nil {
			w.drop(DropTxRingFull)
			return false
		}
	}
	if w.partial >= 0 {
		invertPartial(b, w.partial)
		w.partial = -1
	}
	frame.SetEthernet(b, dst, w.macs[out])
	n := len(b)
	vnet := meta.Vnet
	if meta.Status&afpacket.StatusVLANValid != 0 {
		if n+4 > len(buf) {
			w.drop(DropTooLarge)
			return false
		}
		copy(buf[:12], b[:12])
		tpid := meta.VLANTPID
		if tpid == 0 {
			tpid = 0x8100
		}
		binary.BigEndian.PutUint16(buf[12:], tpid)
		binary.BigEndian.PutUint16(buf[14:], meta.VLANTCI)
		copy(buf[16:], b[12:])
		n += 4
		if vnet.HdrLen != 0 {
			vnet.HdrLen += 4 // csum_start already counts the tag (see Process)
		}
	} else {
		if n > len(buf) {
			w.drop(DropTooLarge)
			return false
		}
		copy(buf, b)
	}
	port.TxCommit(n, vnet)
	w.dirty |= 1 << uint(out)
	return true
}

func (w *Worker) flush(out int) {
	n, err := w.ports[out].Flush()
	w.c[cTxKicks]++
	w.c[cTxFrames] += uint64(n)
	if err != nil {
		w.c[cTxErrors]++
	}
	w.dirty &^= 1 << uint(out)
}

// FlushAll kicks every port with queued frames.
func (w *Worker) FlushAll() {
	for w.dirty != 0 {
		for i := range w.ports {
			if w.dirty&(1<<uint(i)) != 0 {
				w.flush(i)
			}
		}
	}
}

func (w *Worker) removeConn(id uint32, c *conntrack.Conn) {
	if int(c.RS) < len(w.rcN) {
		w.rcN[c.RS]--
	}
	w.ct.Delete(id)
}

// Expire removes idle connections, a bounded number per call.
func (w *Worker) Expire(now int64) {
	w.ct.Expire(now, expireBudget, w.expireFn)
}

func (w *Worker) onExpire(_ uint32, c *conntrack.Conn) {
	if int(c.RS) < len(w.rcN) {
		w.rcN[c.RS]--
	}
	w.c[cConnsExpired]++
}

func (w *Worker) drop(d Drop) { w.c[cDropBase+int(d)]++ }

// Publish copies the worker's counters where Stats can read them.
func (w *Worker) Publish() {
	for i := range w.c {
		w.pub.slots[i].Store(w.c[i])
	}
	if rc := w.pub.reals.Load(); rc != nil {
		for i := range rc.conns {
			rc.conns[i].Store(w.rcN[i])
			rc.packets[i].Store(w.rpN[i])
		}
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
