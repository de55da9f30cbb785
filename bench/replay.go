package bench

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/internal/cacheline"
)

// ReplyMode says what a replay does with the server→client packets of a capture.
type ReplyMode uint8

const (
	replyInvalid ReplyMode = iota
	// ReplySimulate presents each server→client packet as coming from the real server govs chose
	// for its flow, so NAT's reverse path is measured too. (DR replies never reach govs: skipped.)
	ReplySimulate
	// ReplyDrop leaves server→client packets out.
	ReplyDrop
)

// ParseReplyMode parses "simulate" or "drop".
func ParseReplyMode(s string) (ReplyMode, error) {
	switch s {
	case "simulate":
		return ReplySimulate, nil
	case "drop":
		return ReplyDrop, nil
	}
	return replyInvalid, fmt.Errorf("replies %q is not valid; write simulate or drop", s)
}

// ReplayConfig is one offline replay.
type ReplayConfig struct {
	Config  *config.Config // virtual and real servers; its interfaces are not looked up
	Workers int            // worker goroutines (default 1); flows are split by a hash of the client side
	Loops   int            // times to replay the capture (default 1)
	// RewriteDst maps every flow's server address (the destination of its first packet) to the
	// VIP of the same family, keeping the port. Zero addresses leave that family alone.
	RewriteDst4, RewriteDst6 netip.Addr
	Replies                  ReplyMode // default ReplySimulate
	// Out, when set, receives a pcap of every frame govs transmitted (slows the replay down).
	Out io.Writer
	// Conns is each worker's connection-table capacity; 0 sizes it to the worker's flows (at
	// least the daemon's 1<<18).
	Conns int
	// Progress, when set, is called about every Interval with the packets done so far and the
	// total, from the goroutine that called Replay.
	Progress func(done, total uint64)
	Interval time.Duration // default 100ms; also the throughput sampling period
	// CPUProfile, when set, receives a pprof CPU profile of the replay phase only (loading the
	// capture and building the tables are left out).
	CPUProfile io.Writer
}

// Report is the result of a replay. Field names in JSON are the contract of `govs bench replay -json`.
type Report struct {
	Packets         uint64  `json:"packets"` // frames fed to the workers (all loops)
	Loops           int     `json:"loops"`
	Workers         int     `json:"workers"`
	Seconds         float64 `json:"seconds"`
	PPS             float64 `json:"pps"`
	NsPerPacket     float64 `json:"ns_per_packet"`     // wall time per packet
	NsPerPacketCore float64 `json:"ns_per_packet_cpu"` // summed worker time per packet (cost on one core)
	// NsPerPacketDataplane is the part of NsPerPacketCore spent in the data plane's own code
	// (ProcessBatch, FlushAll, Expire), without the harness's work of copying frames out of the
	// capture and presenting replies as coming from the chosen real server.
	NsPerPacketDataplane float64 `json:"ns_per_packet_dataplane"`
	AllocsPerPacket      float64 `json:"allocs_per_packet"`
	// FramesPerBatch is the average length of the batches handed to the data plane (at most 32):
	// a batch's connection-table misses overlap, so short batches cost more per packet.
	FramesPerBatch float64 `json:"frames_per_batch"`
	// BaselineNsPerPacket is a loop that only copies each frame once, measured in the same run:
	// the memory-bandwidth floor of any replay.
	BaselineNsPerPacket float64 `json:"baseline_ns_per_packet"`
	// ParallelSpeedup is the summed busy time of the workers over the wall time (1 for 1 worker).
	ParallelSpeedup float64 `json:"parallel_speedup"`

	Forwarded    uint64            `json:"forwarded"` // client → real server
	Replied      uint64            `json:"replied"`   // real server → client (NAT)
	ICMPErrors   uint64            `json:"icmp_errors_forwarded"`
	DroppedTotal uint64            `json:"dropped_total"`
	Dropped      map[string]uint64 `json:"dropped"` // by reason, non-zero only
	// Skipped counts server→client packets not fed (ReplyDrop, or DR whose replies bypass govs).
	Skipped uint64 `json:"skipped_replies"`

	Flows int `json:"flows"` // TCP/UDP flows (5-tuples) in the capture
	// StickyViolations counts packets sent to another real server than their connection's: a
	// live connection split. A flow's tuple may start a new connection, scheduled afresh, where
	// IPVS starts one too (see sticky.go); that is no violation.
	StickyViolations uint64 `json:"sticky_violations"`
	// Rescheduled counts the new connections flows started within a loop after their first one
	// (tuple reused after a FIN exchange or a RST, after the idle timeout, one_packet datagrams).
	Rescheduled uint64       `json:"rescheduled"`
	Reals       []RealReport `json:"real_servers"`

	ConntrackPeak     int    `json:"conntrack_peak"`     // most live connections (summed over workers' peaks)
	ConntrackCapacity int    `json:"conntrack_capacity"` // summed over workers
	ConntrackBytes    uint64 `json:"conntrack_bytes"`    // heap the workers' tables took

	Throughput []Sample `json:"throughput,omitempty"`
}

// RealReport is one real server's share.
type RealReport struct {
	Service string `json:"service"`
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	Packets uint64 `json:"packets"` // both directions of its flows
	// Flows counts the connections scheduled to it: each flow's first one in each loop, and each
	// one a flow started anew within a loop (Report.Rescheduled).
	Flows uint64 `json:"flows"`
}

// Sample is the replay rate over one sampling period.
type Sample struct {
	Seconds float64 `json:"t"`
	PPS     float64 `json:"pps"`
}

// item is one packet in one worker's schedule.
type item struct {
	pkt  uint32
	flow uint32 // worker-local flow index | replyBit, or noFlow
	// aux is, for a reply, the index in plan.parsed of its parse (ReplySimulate, else 0); for a
	// client's packet, its TCP flags | its IP protocol << 8.
	aux uint32
}

const (
	replyBit = 1 << 31
	noFlow   = ^uint32(0)
	batch    = 256 // frames per round, like the engine's rxBudget
)

type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
}

// plan is a capture split into per-worker schedules.
type plan struct {
	items  [][]item
	nflows []int            // per worker
	parsed [][]frame.Parsed // per worker: the replies' parses (item.aux), for faking their source
	flows  int
	span   int64 // capture duration, ns
	first  int64
}

// makePlan classifies every frame into flows, rewrites the server address when asked, and deals
// flows to workers by the fanout program's hash of the client side (bpfgen.FanoutMember), as the
// kernel's fanout does, and a datagram's fragments with its flow. A flow's client is
// the side that is not a virtual service: the source of its first packet, unless that packet
// comes from a virtual service (a capture that starts mid-connection, a stray reply) and goes to
// none. With RewriteDst, the destination of a flow's first packet is its server, whatever it is.
func makePlan(c *Capture, rc *ReplayConfig, t *dataplane.Tables) *plan {
	pl := &plan{items: make([][]item, rc.Workers), nflows: make([]int, rc.Workers), parsed: make([][]frame.Parsed, rc.Workers)}
	type flowInfo struct{ worker, local uint32 }
	flows := make(map[flowKey]flowInfo)
	seed := maphash.MakeSeed()
	vips := vipSet(t)
	// The flow of every datagram the capture has a first fragment of. The data plane hands a
	// datagram's fragments to its flow's worker (see dataplane/frags.go); the harness deals them
	// there at once, so that it follows them to their flow like the flow's other packets.
	var p frame.Parsed
	firsts := make(map[fragKey]flowKey)
	for i := range c.pkts {
		pk := &c.pkts[i]
		b := c.data[pk.off : pk.off+int64(pk.n)]
		if !frame.ParseFast(b, &p) && frame.Parse(b, &p) == frame.ErrNone && p.Frag == frame.FragFirst && p.L4Off != 0 {
			firsts[fragKeyOf(b, &p)] = flowKey{p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto}
		}
	}
	var v4, v6 [16]byte
	if rc.RewriteDst4.IsValid() {
		v4 = rc.RewriteDst4.As16()
	}
	if rc.RewriteDst6.IsValid() {
		v6 = rc.RewriteDst6.As16()
	}
	if len(c.pkts) > 0 {
		pl.first = c.pkts[0].ts
		pl.span = max(c.pkts[len(c.pkts)-1].ts-pl.first, 0)
	}
	for i := range c.pkts {
		pk := &c.pkts[i]
		b := c.data[pk.off : pk.off+int64(pk.n)]
		it := item{pkt: uint32(i), flow: noFlow}
		w := 0
		// A frame the capture cut short (its snap length) is dropped by the data plane whatever
		// its headers say (capture_truncated): it belongs to no flow.
		perr := frame.Parse(b, &p)
		ok := perr == frame.ErrNone && pk.wire <= pk.n && p.Family != 0 && (p.Proto == 6 || p.Proto == 17)
		k := flowKey{p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto}
		if ok && p.Frag != frame.FragNone {
			// A datagram's fragments are its flow's packets, wherever in the capture its first
			// fragment (the one with ports) is.
			k, ok = firsts[fragKeyOf(b, &p)]
		}
		if !ok || p.Frag == frame.FragNone && p.L4Off == 0 {
			// No flow to keep together: spread by source address like a fanout hash would.
			if p.Family != 0 {
				w = int(maphash.Comparable(seed, p.Src) % uint64(rc.Workers))
			}
			pl.items[w] = append(pl.items[w], it)
			continue
		}
		rev := flowKey{k.b, k.a, k.pb, k.pa, k.proto}
		fi, ok := flows[k]
		reply := false
		if !ok {
			if fi, ok = flows[rev]; ok {
				reply = true
			}
		}
		if !ok {
			rewrite := p.Family == 4 && rc.RewriteDst4.IsValid() || p.Family == 6 && rc.RewriteDst6.IsValid()
			if !rewrite && !vips.has(k.b, k.pb, k.proto) && vips.has(k.a, k.pa, k.proto) {
				k, reply = rev, true // from the server: the destination is the client
			}
			// A persistent service's flows go to workers by client network, as the engine's
			// fanout sends them (the service is the one at the destination after the rewrite).
			dst := k.b
			if p.Family == 4 && rc.RewriteDst4.IsValid() {
				dst = v4
			} else if p.Family == 6 && rc.RewriteDst6.IsValid() {
				dst = v6
			}
			rule, _ := t.HashRule(dst, k.pb, p.Proto)
			w = bpfgen.FanoutMember(netip.AddrFrom16(k.a), k.pa, p.Proto, rule, rc.Workers)
			fi = flowInfo{uint32(w), uint32(pl.nflows[w])}
			pl.nflows[w]++
			flows[k] = fi
		}
		w = int(fi.worker)
		it.flow = fi.local
		if reply {
			it.flow |= replyBit
			if rc.Replies == ReplySimulate {
				it.aux = uint32(len(pl.parsed[w]))
				pl.parsed[w] = append(pl.parsed[w], p)
			}
		} else {
			it.aux = uint32(p.TCPFlags) | uint32(p.Proto)<<8
			switch {
			case p.Family == 4 && rc.RewriteDst4.IsValid() && p.Dst != v4:
				frame.RewriteDst(b, &p, v4, p.DstPort)
			case p.Family == 6 && rc.RewriteDst6.IsValid() && p.Dst != v6:
				frame.RewriteDst(b, &p, v6, p.DstPort)
			}
		}
		pl.items[w] = append(pl.items[w], it)
	}
	pl.flows = len(flows)
	if rc.Workers > 1 {
		groupByWorker(c, pl)
	}
	return pl
}

// fragKey names an IP datagram: addresses, protocol, identification.
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
}

// fragKeyOf returns the datagram fragment p (of frame b) belongs to.
func fragKeyOf(b []byte, p *frame.Parsed) fragKey {
	id, _, _ := frame.FragmentID(b, p)
	return fragKey{p.Src, p.Dst, id, p.Proto}
}

// vips is the set of t's virtual services' addresses, ports and protocols.
type vips map[flowKey]struct{} // a, pa, proto

func vipSet(t *dataplane.Tables) vips {
	v := vips{}
	for _, s := range t.Services {
		if s != nil {
			v[flowKey{a: s.VIP.Addr().As16(), pa: s.VIP.Port(), proto: s.Proto}] = struct{}{}
		}
	}
	return v
}

// has reports whether a packet to addr and port reaches a virtual service: one on that port, or
// one on all ports (port 0) of addr.
func (v vips) has(addr [16]byte, port uint16, proto uint8) bool {
	_, ok := v[flowKey{a: addr, pa: port, proto: proto}]
	if !ok {
		_, ok = v[flowKey{a: addr, proto: proto}]
	}
	return ok
}

// groupByWorker moves the capture's bytes so that, within each stretch of groupSpan frames, the
// frames of one worker lie together, in capture order. Each worker then reads its frames as one
// stream, as a real worker reads its own ring; read in capture order, both workers would touch
// nearly every cache line of the capture (frames are smaller than two lines) and the harness would
// slow down with two workers where the data plane does not. Stretches bound the scratch memory (a
// 10M-flow capture is 5 GB).
var groupSpan = 1 << 16

func groupByWorker(c *Capture, pl *plan) {
	owner := make([]uint8, len(c.pkts))
	for w, its := range pl.items {
		for _, it := range its {
			owner[it.pkt] = uint8(w)
		}
	}
	var scratch []byte
	for lo := 0; lo < len(c.pkts); lo += groupSpan {
		hi := min(lo+groupSpan, len(c.pkts))
		// The stretch's bytes (frames are stored one after the other, but do not count on it).
		start, end := c.pkts[lo].off, int64(0)
		for _, pk := range c.pkts[lo:hi] {
			start, end = min(start, pk.off), max(end, pk.off+int64(pk.n))
		}
		scratch = append(scratch[:0], c.data[start:end]...)
		at := start
		for w := range pl.items {
			for i := lo; i < hi; i++ {
				if int(owner[i]) != w {
					continue
				}
				pk := &c.pkts[i]
				from := pk.off - start
				copy(c.data[at:], scratch[from:from+int64(pk.n)])
				pk.off = at
				at += int64(pk.n)
			}
		}
	}
}

// replayer is one worker goroutine's state.
type replayer struct {
	id          int
	w           *dataplane.Worker
	items       []item
	conns       []flowConn // per local flow: its connection in the data plane, as the harness follows it
	counted     []uint64   // per local flow, one bit: scheduled in this loop
	judge       *judge
	realPackets []uint64
	realFlows   []uint64
	sticky      uint64
	rescheduled uint64
	skipped     uint64
	fed         uint64
	batches     uint64 // ProcessBatch calls
	peak        int
	busy        time.Duration
	inDataplane time.Duration // time inside the worker's calls
	done        atomic.Uint64
	now         int64                // the clock at the end of the replay
	_           [cacheline.Size]byte // the next replayer's fields on other lines
}

// Replay feeds c through the data plane's workers as rc says and reports what they did. With
// RewriteDst set it rewrites c's frames in place (once; replaying c again is fine); with several
// workers it moves c's bytes so that each worker's frames lie together (Frame still returns each
// frame as it was).
func Replay(c *Capture, rc ReplayConfig) (*Report, error) {
	if rc.Config == nil {
		return nil, errors.New("replay needs a config")
	}
	if rc.Workers <= 0 {
		rc.Workers = 1
	}
	if rc.Workers > 64 {
		return nil, fmt.Errorf("at most 64 workers, not %d", rc.Workers)
	}
	if rc.Loops <= 0 {
		rc.Loops = 1
	}
	if rc.Replies == replyInvalid {
		rc.Replies = ReplySimulate
	}
	if rc.Interval <= 0 {
		rc.Interval = 100 * time.Millisecond
	}
	if rc.RewriteDst4.IsValid() && !rc.RewriteDst4.Is4() || rc.RewriteDst6.IsValid() && (!rc.RewriteDst6.Is6() || rc.RewriteDst6.Is4In6()) {
		return nil, errors.New("rewrite addresses must be an IPv4 VIP and an IPv6 VIP")
	}
	if len(c.pkts) >= 1<<32-1 {
		return nil, errors.New("capture too large for one replay; split it")
	}
	t, err := buildTables(rc.Config)
	if err != nil {
		return nil, err
	}
	nports := len(rc.Config.Dataplane.Interfaces)
	if nports > dataplane.MaxPorts {
		return nil, fmt.Errorf("at most %d interfaces, not %d", dataplane.MaxPorts, nports)
	}
	pl := makePlan(c, &rc, t)
	jd := newJudge(rc.Config, t)

	var outMu sync.Mutex
	var outErr error
	var pw interface {
		WritePacket(gopacket.CaptureInfo, []byte) error
	}
	if rc.Out != nil {
		w, err := newPcapWriter(rc.Out)
		if err != nil {
			return nil, err
		}
		pw = w
	}
	macs := make([][6]byte, nports)
	for i := range macs {
		macs[i] = portMAC(i)
	}
	rep := &Report{Loops: rc.Loops, Workers: rc.Workers, Flows: pl.flows}
	rs := make([]*replayer, rc.Workers)
	var ms runtime.MemStats
	for i := range rs {
		r := &replayer{id: i, items: pl.items[i]}
		ports := make([]dataplane.Transmitter, nports)
		for j := range ports {
			dp := dataplanetest.NewPort(16384, 256)
			if pw != nil {
				dp.Sink = func(f []byte, _ afpacket.VnetHdr) {
					outMu.Lock()
					defer outMu.Unlock()
					if outErr == nil {
						outErr = pw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(f), Length: len(f)}, f)
					}
				}
			}
			ports[j] = dp
		}
		ctc := compile.Conntrack(rc.Config, 1)
		capacity := rc.Conns
		if capacity <= 0 {
			capacity = max(1<<18, pl.nflows[i]+pl.nflows[i]/4)
		}
		ctc.MaxEntries = capacity
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		if r.w, err = dataplane.NewWorker(i, ports, macs, ctc); err != nil {
			return nil, err
		}
		if i == len(rs)-1 {
			ws := make([]*dataplane.Worker, len(rs))
			for j := range rs[:i] {
				ws[j] = rs[j].w
			}
			ws[i] = r.w
			dataplane.LinkFragments(ws)
		}
		runtime.ReadMemStats(&ms)
		rep.ConntrackBytes += ms.TotalAlloc - before
		rep.ConntrackCapacity += capacity
		r.w.SetTables(t)
		r.conns = make([]flowConn, pl.nflows[i])
		r.counted = make([]uint64, (pl.nflows[i]+63)/64)
		r.judge = jd
		// Counted per packet: on cache lines of their own, or the workers' counters slow each
		// other down (false sharing), as the per-batch fields of adjacent replayers would.
		r.realPackets = cacheline.Uint64s(len(t.Reals))
		r.realFlows = cacheline.Uint64s(len(t.Reals))
		rs[i] = r
	}
	var total uint64
	for i := range rs {
		total += uint64(len(rs[i].items)) * uint64(rc.Loops)
	}
	rep.BaselineNsPerPacket = baseline(c)

	runtime.GC()
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	if rc.CPUProfile != nil {
		if err := pprof.StartCPUProfile(rc.CPUProfile); err != nil {
			return nil, fmt.Errorf("failed to start the CPU profile: %w", err)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.routineReplay(c, pl, t, &rc, nports)
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(rc.Interval)
	var last uint64
	lastT := start
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case now := <-tick.C:
			var done uint64
			for _, r := range rs {
				done += r.done.Load()
			}
			if d := now.Sub(lastT).Seconds(); d > 0 {
				rep.Throughput = append(rep.Throughput, Sample{Seconds: now.Sub(start).Seconds(), PPS: float64(done-last) / d})
			}
			last, lastT = done, now
			if rc.Progress != nil {
				rc.Progress(done, total)
			}
		}
	}
	tick.Stop()
	// Fragments a worker handed to another after that one had finished its schedule, and held
	// fragments whose first fragment never came (a second is past any hold time).
	for more := true; more; {
		more = false
		for _, r := range rs {
			if r.w.DrainFragments(r.now+int64(time.Second)) > 0 {
				more = true
			}
			r.w.FlushAll()
			r.w.Publish()
		}
	}
	elapsed := time.Since(start)
	if rc.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	runtime.ReadMemStats(&ms)
	allocs := ms.Mallocs - mallocs
	if rc.Progress != nil {
		rc.Progress(total, total)
	}
	if outErr != nil {
		return nil, fmt.Errorf("failed to write the output capture: %w", outErr)
	}

	ws := make([]*dataplane.Worker, len(rs))
	var busy, inDataplane time.Duration
	var batches uint64
	for i, r := range rs {
		batches += r.batches
		ws[i] = r.w
		rep.Packets += r.fed
		rep.StickyViolations += r.sticky
		rep.Rescheduled += r.rescheduled
		rep.Skipped += r.skipped
		rep.ConntrackPeak += r.peak
		busy += r.busy
		inDataplane += r.inDataplane
	}
	st := dataplane.WorkerStats(ws...)
	rep.Forwarded = st.Counters["forwarded"]
	rep.Replied = st.Counters["replied"]
	rep.ICMPErrors = st.Counters["icmp_errors_forwarded"]
	rep.DroppedTotal = st.DropsTotal
	rep.Dropped = map[string]uint64{}
	for k, v := range st.Drops {
		if v != 0 {
			rep.Dropped[k] = v
		}
	}
	for _, r := range t.Reals {
		rr := RealReport{Service: t.Services[r.Service].Name, Address: r.Addr.String(), Weight: int(r.Weight)}
		for _, x := range rs {
			rr.Packets += x.realPackets[r.ID]
			rr.Flows += x.realFlows[r.ID]
		}
		rep.Reals = append(rep.Reals, rr)
	}
	rep.Seconds = elapsed.Seconds()
	if rep.Packets > 0 {
		rep.PPS = float64(rep.Packets) / rep.Seconds
		rep.NsPerPacket = float64(elapsed.Nanoseconds()) / float64(rep.Packets)
		rep.NsPerPacketCore = float64(busy.Nanoseconds()) / float64(rep.Packets)
		rep.NsPerPacketDataplane = float64(inDataplane.Nanoseconds()) / float64(rep.Packets)
		rep.AllocsPerPacket = float64(allocs) / float64(rep.Packets)
		rep.FramesPerBatch = float64(rep.Packets) / float64(max(batches, 1))
	}
	if elapsed > 0 {
		rep.ParallelSpeedup = float64(busy) / float64(elapsed)
	}
	return rep, nil
}

// routineReplay is one worker's goroutine: the engine's loop (batches of frames through
// ProcessBatch up to the engine's receive budget, then FlushAll and Expire) over the worker's
// schedule, with capture time as the clock.
func (r *replayer) routineReplay(c *Capture, pl *plan, t *dataplane.Tables, rc *ReplayConfig, nports int) {
	start := time.Now()
	defer func() { r.busy = time.Since(start) }()
	// The frames of a batch sit one after the other in scratch, each copied from the capture as
	// the kernel would write it into a ring block.
	const maxFrame = 65536
	scratch := make([]byte, dataplane.MaxBatch*maxFrame)
	var fs [dataplane.MaxBatch]afpacket.Frame
	var its [dataplane.MaxBatch]item
	var p frame.Parsed
	round := make([]item, 0, batch)
	var base int64
	for loop := 0; loop < rc.Loops; loop++ {
		// The data plane keeps its connections from one loop to the next, and so does r.conns;
		// each loop schedules every flow once more.
		clear(r.counted)
		var now int64
		base = int64(loop) * (pl.span + int64(time.Second))
		for i := 0; i < len(r.items); i += batch {
			end := min(i+batch, len(r.items))
			// With several interfaces, the round's client-side frames first, then the real servers'
			// replies, each in capture order: the engine drains one port's ring, then the next, up
			// to rxBudget frames each. With one interface (one-armed) both come from one ring, in
			// capture order. A reply never comes before its flow's request (replies of flows not yet
			// scheduled wait for their request below).
			round = round[:0]
			if nports == 1 {
				round = append(round, r.items[i:end]...)
			} else {
				for _, it := range r.items[i:end] {
					if it.flow == noFlow || it.flow&replyBit == 0 {
						round = append(round, it)
					}
				}
				for _, it := range r.items[i:end] {
					if it.flow != noFlow && it.flow&replyBit != 0 {
						round = append(round, it)
					}
				}
			}
			for j := 0; j < len(round); {
				// Fill one ProcessBatch batch: the packets of this round the harness feeds, each
				// with its port: clients on the first, real servers' replies on their real server's.
				n, off, in := 0, 0, -1
				for ; j < len(round) && n < len(fs); j++ {
					it := round[j]
					pk := &c.pkts[it.pkt]
					reply := it.flow != noFlow && it.flow&replyBit != 0
					var rid uint16 // real ID + 1 of the flow's connection, 0 unknown
					if it.flow != noFlow {
						rid = r.conns[it.flow&^replyBit].real
					}
					var real *dataplane.Real
					if reply {
						if rc.Replies == ReplyDrop {
							r.skipped++
							continue
						}
						if rid != 0 {
							real = t.Reals[rid-1]
							if m := t.Services[real.Service].Method; m != dataplane.MethodNAT && m != dataplane.MethodFullNAT {
								r.skipped++ // dr, tun: the real server answers the client directly
								continue
							}
						}
						// Client frames are only in a batch from the first port.
						if in == 0 && pending(its[:n], it.flow&^replyBit, rid, r.judge) {
							break // its flow is (re)scheduled by a frame of this batch: learn where first
						}
					}
					// A reply of a flow never scheduled stays as captured, from the server side to
					// the client, and comes in with the clients.
					port := 0
					if real != nil {
						port = real.Port
					}
					if in >= 0 && port != in {
						break // a batch comes from one port, as from one ring
					}
					in = port
					now = max(now, base+pk.ts-pl.first) // the clock never goes back, though a round is fed port by port
					b := scratch[off : off+int(pk.n)]
					copy(b, c.data[pk.off:pk.off+int64(pk.n)])
					off += (int(pk.n) + 63) &^ 63
					if real != nil {
						// As from the real server the flow's connection has.
						p = pl.parsed[r.id][it.aux]
						rp := real.Addr.Port()
						if rp == 0 {
							rp = p.SrcPort
						}
						frame.RewriteSrc(b, &p, real.Addr.Addr().As16(), rp)
						if s := t.Services[real.Service]; s.Method == dataplane.MethodFullNAT {
							// To the local endpoint the flow's connection has (learned below).
							f := &r.conns[it.flow&^replyBit]
							frame.RewriteDst(b, &p, s.Locals[min(int(f.local), len(s.Locals)-1)].As16(), f.lport)
						}
					}
					fs[n] = afpacket.Frame{Data: b, Meta: afpacket.RxMeta{Len: pk.wire}}
					its[n] = it
					n++
				}
				if n == 0 {
					continue
				}
				t0 := time.Now()
				sent := r.w.ProcessBatch(in, fs[:n], now)
				r.inDataplane += time.Since(t0)
				r.fed += uint64(n)
				r.batches++
				for k, it := range its[:n] {
					if sent&(1<<uint(k)) == 0 || it.flow == noFlow {
						continue
					}
					lf := it.flow &^ replyBit
					f := &r.conns[lf]
					if it.flow&replyBit != 0 {
						if f.real != 0 && rc.Replies == ReplySimulate {
							q := &pl.parsed[r.id][it.aux]
							r.judge.reply(f, q.Proto, q.TCPFlags, now)
							r.realPackets[f.real-1]++
						}
						continue
					}
					// transmit wrote the next hop's MAC into the frame before copying it out.
					id, ok := realOfMAC(fs[k].Data[:6])
					if !ok || int(id) >= len(t.Reals) {
						continue
					}
					switch r.judge.client(f, id, uint8(it.aux>>8), uint8(it.aux), now) {
					case split:
						r.sticky++
					case firstConn, nextConn:
						if r.counted[lf/64]&(1<<(lf%64)) == 0 {
							r.counted[lf/64] |= 1 << (lf % 64)
						} else {
							r.rescheduled++
						}
						r.realFlows[id]++
					case sameConn:
						if r.counted[lf/64]&(1<<(lf%64)) == 0 {
							r.counted[lf/64] |= 1 << (lf % 64) // the connection of an earlier loop
							r.realFlows[id]++
						}
					}
					r.realPackets[id]++
					if s := t.Services[t.Reals[id].Service]; s.Method == dataplane.MethodFullNAT {
						learnLocal(f, s, fs[k].Data)
					}
				}
			}
			t0 := time.Now()
			r.w.DrainFragments(now)
			r.w.FlushAll()
			r.w.Expire(now)
			r.inDataplane += time.Since(t0)
			if live, _ := r.w.Conns(); live > r.peak {
				r.peak = live
			}
			r.done.Add(uint64(end - i))
		}
	}
	r.w.FlushAll()
	r.w.Publish()
	r.now = base + pl.span
}

// learnLocal records in f the local endpoint of a FullNAT service s that the data plane gave the
// flow's client packet b (as sent: its source), for the replies the harness simulates.
func learnLocal(f *flowConn, s *dataplane.Service, b []byte) {
	var p frame.Parsed
	if frame.Parse(b, &p) != frame.ErrNone {
		return
	}
	for i, a := range s.Locals {
		if a.As16() == p.Src {
			f.local, f.lport = uint8(i), p.SrcPort
			return
		}
	}
}

// pending reports whether a client packet of local flow lf among its may give the flow's
// connection another real server than rid (real ID + 1, 0 none yet): its first packet, a bare SYN
// (which starts a new connection on a closed tuple), a datagram of a one_packet service.
func pending(its []item, lf uint32, rid uint16, j *judge) bool {
	for _, it := range its {
		if it.flow != lf {
			continue
		}
		proto, flags := uint8(it.aux>>8), uint8(it.aux)
		const synMask = conntrack.TCPFlagSYN | conntrack.TCPFlagACK | conntrack.TCPFlagFIN | conntrack.TCPFlagRST
		if rid == 0 || proto == 6 && flags&synMask == conntrack.TCPFlagSYN || proto == 17 && j.real[rid-1]&realOnePacket != 0 {
			return true
		}
	}
	return false
}

// baseline measures a loop that only copies each frame once (ns per frame): the floor any replay
// pays for moving the bytes.
func baseline(c *Capture) float64 {
	if len(c.pkts) == 0 {
		return 0
	}
	scratch := make([]byte, 65536)
	var x byte
	start := time.Now()
	for i := range c.pkts {
		pk := &c.pkts[i]
		n := copy(scratch, c.data[pk.off:pk.off+int64(pk.n)])
		x += scratch[n/2]
	}
	el := time.Since(start)
	runtime.KeepAlive(x) // the loop must not be optimised away
	return float64(el.Nanoseconds()) / float64(len(c.pkts))
}
