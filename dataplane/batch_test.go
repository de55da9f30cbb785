package dataplane

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/frame"
)

// batchStream is a mixed stream of frames with the port each arrives on: SYNs, data and FINs of
// many NAT and DR flows, real servers' replies (some from the server the flow went to, some not),
// ICMP errors about them, partial checksums and truncated or cut frames.
type inFrame struct {
	port int
	b    []byte
	meta afpacket.RxMeta
}

func batchStream(tb testing.TB, rng *rand.Rand) []inFrame {
	var s []inFrame
	add := func(port int, b []byte, meta afpacket.RxMeta) {
		if meta.Len == 0 {
			meta.Len = uint32(len(b))
		}
		s = append(s, inFrame{port, b, meta})
	}
	for i := range 60 {
		tc := natCases[i%len(natCases)]
		cport := uint16(30000 + i)
		add(0, build(tb, clientPkt(tc.clientAt(cport), tc.vip, tc.proto, tc.first())), afpacket.RxMeta{})
		rs := rng.IntN(2)
		add(1, build(tb, tc.replyPkt(rs, cport)), afpacket.RxMeta{})
		data := build(tb, clientPkt(tc.clientAt(cport), tc.vip, tc.proto, tcpACK))
		add(0, data, afpacket.RxMeta{})
		p := append([]byte(nil), data...)
		add(0, p, afpacket.RxMeta{Vnet: makePartial(tb, p)})
		if i%5 == 0 { // a router on the client side cannot forward the VIP's reply
			router, typ, code := netip.MustParseAddr("198.18.1.1"), uint8(3), uint8(4)
			if strings.Contains(tc.client, ":") {
				router, typ, code = netip.MustParseAddr("2001:2:0:1::1"), 2, 0
			}
			rp := tc.replyPkt(rs, cport)
			rp.src = netip.MustParseAddrPort(tc.vip)
			add(0, icmpFrame(tb, macRouter, macPort0, router, rp.src.Addr(), typ, code, 1400, quotedPacket(tb, rp)), afpacket.RxMeta{})
		}
		if i%7 == 0 { // cut short
			add(0, data[:rng.IntN(len(data))], afpacket.RxMeta{})
		}
		if i%11 == 0 { // captured shorter than on the wire
			add(0, data, afpacket.RxMeta{Len: uint32(len(data) + 10)})
		}
		dr := build(tb, clientPkt("[2001:2:0:1::10]:"+strconv.Itoa(int(cport)), "[2001:2::200]:80", 6, tcpSYN))
		add(0, dr, afpacket.RxMeta{})
		if tc.proto == 6 {
			add(0, build(tb, clientPkt(tc.clientAt(cport), tc.vip, tc.proto, tcpFIN|tcpACK)), afpacket.RxMeta{})
		}
	}
	// Shuffle lightly: neighbours swap, so flows interleave but keep their SYN first mostly.
	for i := 1; i < len(s); i++ {
		if rng.IntN(3) == 0 {
			s[i-1], s[i] = s[i], s[i-1]
		}
	}
	return s
}

// TestProcessBatchSameAsProcess runs one stream through a worker frame by frame (Process) and
// through another in batches of random sizes (ProcessBatch): both must transmit the same frames in
// the same order and count the same, and the batch's sent mask must name exactly the frames sent.
func TestProcessBatchSameAsProcess(t *testing.T) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 99))
		stream := batchStream(t, rng)
		one := newRig(t, buildTables(1, standardSpecs()...), 1024)
		bat := newRig(t, buildTables(1, standardSpecs()...), 1024)
		now := int64(1e9)
		sentMask := 0
		for i := 0; i < len(stream); {
			// A batch comes from one port, like one ring's block.
			n := 1 + rng.IntN(2*MaxBatch)
			j := i
			for j < len(stream) && j-i < n && stream[j].port == stream[i].port {
				j++
			}
			fs := make([]afpacket.Frame, 0, j-i)
			for _, f := range stream[i:j] {
				m := f.meta
				one.w.Process(f.port, append([]byte(nil), f.b...), &m, now)
				fs = append(fs, afpacket.Frame{Data: append([]byte(nil), f.b...), Meta: f.meta})
			}
			before := bat.w.c[cForwarded] + bat.w.c[cReplied] + bat.w.c[cICMPErrors]
			mask := bat.w.ProcessBatch(stream[i].port, fs, now)
			got := bat.w.c[cForwarded] + bat.w.c[cReplied] + bat.w.c[cICMPErrors] - before
			if want := uint64(bitsSet(mask, len(fs))); got != want {
				t.Fatalf("seed %d: batch of %d sent %d frames, mask %b names %d", seed, len(fs), got, mask, want)
			}
			sentMask += int(got)
			one.w.FlushAll()
			bat.w.FlushAll()
			now += 1e6
			i = j
		}
		// Every counter but the express lane's own agrees.
		oc, bc := one.w.c, bat.w.c
		oc[cExpress], bc[cExpress] = 0, 0
		if oc != bc {
			t.Fatalf("seed %d: counters differ:\nProcess      %v\nProcessBatch %v", seed, nonZero(one.w), nonZero(bat.w))
		}
		// The express lane (ProcessBatch only) must leave the same state behind: connections,
		// their states and the real servers' counts.
		if one.w.ct.Len() != bat.w.ct.Len() || one.w.ct.Stats() != bat.w.ct.Stats() {
			t.Fatalf("seed %d: tables differ: %d entries %+v one by one, %d %+v in batches", seed,
				one.w.ct.Len(), one.w.ct.Stats(), bat.w.ct.Len(), bat.w.ct.Stats())
		}
		if !slices.Equal(one.w.rt, bat.w.rt) || !slices.Equal(one.w.rcN, bat.w.rcN) {
			t.Fatalf("seed %d: per-real traffic differs:\nProcess      %v %v\nProcessBatch %v %v", seed, one.w.rt, one.w.rcN, bat.w.rt, bat.w.rcN)
		}
		for id, r := range one.w.tables.Reals {
			if r == nil {
				continue
			}
			a, b := r.Counts, bat.w.tables.Reals[id].Counts
			if a.Active.Load() != b.Active.Load() || a.Inactive.Load() != b.Inactive.Load() {
				t.Fatalf("seed %d: real %d counts active/inactive %d/%d one by one, %d/%d in batches", seed, id,
					a.Active.Load(), a.Inactive.Load(), b.Active.Load(), b.Inactive.Load())
			}
			a1, i1, t1 := one.w.ct.RealConns(uint16(id))
			a2, i2, t2 := bat.w.ct.RealConns(uint16(id))
			if a1 != a2 || i1 != i2 || t1 != t2 {
				t.Fatalf("seed %d: real %d table counts %d/%d/%d one by one, %d/%d/%d in batches", seed, id, a1, i1, t1, a2, i2, t2)
			}
		}
		if bat.w.c[cExpress] == 0 || one.w.c[cExpress] != 0 {
			t.Fatalf("seed %d: express lane took %d frames in batches (want some), %d one by one (want none)", seed, bat.w.c[cExpress], one.w.c[cExpress])
		}
		bat.w.Publish()
		if got := WorkerStats(bat.w).Counters["express_frames"]; got != bat.w.c[cExpress] {
			t.Fatalf("seed %d: stats report express_frames %d, the worker counted %d", seed, got, bat.w.c[cExpress])
		}
		for p := range one.out {
			a, b := one.out[p].Frames, bat.out[p].Frames
			if len(a) != len(b) {
				t.Fatalf("seed %d port %d: %d frames sent one by one, %d in batches", seed, p, len(a), len(b))
			}
			for k := range a {
				if !bytes.Equal(a[k], b[k]) {
					t.Fatalf("seed %d port %d: frame %d differs", seed, p, k)
				}
			}
		}
		if sentMask == 0 || one.w.c[cReplied] == 0 || one.w.c[cICMPErrors] == 0 || one.w.c[cDropBase+int(DropCaptureTruncated)] == 0 {
			t.Fatalf("seed %d: the stream misses a path: %v", seed, nonZero(one.w))
		}
	}
}

func bitsSet(mask uint64, n int) int {
	c := 0
	for i := range min(n, 64) {
		if mask&(1<<uint(i)) != 0 {
			c++
		}
	}
	return c
}

// TestProcessBatchAllocs: a batch of established NAT frames, both directions, allocates nothing.
func TestProcessBatchAllocs(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 1024)
	tc := natCases[0]
	var fwd, rep [][]byte
	for i := range MaxBatch {
		cport := uint16(20000 + i)
		out := r.one(t, 0, build(t, clientPkt(tc.clientAt(cport), tc.vip, tc.proto, tcpSYN)), afpacket.RxMeta{})
		rs := 0
		if !bytes.Equal(out.frame[:6], macRS[0][:]) {
			rs = 1
		}
		fwd = append(fwd, build(t, clientPkt(tc.clientAt(cport), tc.vip, tc.proto, tcpACK)))
		rep = append(rep, build(t, tc.replyPkt(rs, cport)))
	}
	r.ports[0].Sink, r.ports[1].Sink = nil, nil
	fs := make([]afpacket.Frame, MaxBatch)
	bufs := make([][]byte, MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	load := func(src [][]byte) {
		for i, b := range src {
			fs[i] = afpacket.Frame{Data: bufs[i][:copy(bufs[i], b)], Meta: afpacket.RxMeta{Len: uint32(len(b))}}
		}
	}
	var sent uint64
	allocs := testing.AllocsPerRun(100, func() {
		r.now += 1000
		load(fwd)
		sent = r.w.ProcessBatch(0, fs, r.now)
		load(rep)
		sent &= r.w.ProcessBatch(1, fs, r.now)
		r.w.FlushAll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per two batches of %d, want 0", allocs, MaxBatch)
	}
	if sent != 1<<MaxBatch-1 {
		t.Fatalf("sent mask %b: every frame of both batches should have been sent; counters %v", sent, nonZero(r.w))
	}
}

// TestExpirePacedByTime: expiry takes one step per table tick, however often it is called, and a
// step removes a bounded number of connections; steps in later ticks remove the rest.
func TestExpirePacedByTime(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 4096)
	r.ports[0].Sink, r.ports[1].Sink = nil, nil
	tc := natCases[1] // UDP: one datagram makes a connection
	const conns = 1000
	for i := range conns {
		r.process(0, build(t, clientPkt(tc.clientAt(uint16(10000+i)), tc.vip, tc.proto, 0)), afpacket.RxMeta{})
	}
	if n := r.w.ct.Len(); n != conns {
		t.Fatalf("%d connections, want %d", n, conns)
	}
	now := r.now + int64(time.Hour) // past the UDP timeout
	r.w.Expire(now)
	step := conns - r.w.ct.Len()
	if step == 0 || step == conns {
		t.Fatalf("one expiry step removed %d of %d due connections: want some, not all", step, conns)
	}
	for range 10 {
		r.w.Expire(now) // same tick: nothing more
	}
	if got := conns - r.w.ct.Len(); got != step {
		t.Fatalf("calls within one tick removed %d more", got-step)
	}
	ticks := 1
	for r.w.ct.Len() > 0 && ticks < 100 {
		now += 1 << conntrack.TickShift
		r.w.Expire(now)
		ticks++
	}
	if r.w.ct.Len() != 0 || ticks != (conns+step-1)/step {
		t.Fatalf("%d connections left after %d ticks of %d removals; want none after %d", r.w.ct.Len(), ticks, step, (conns+step-1)/step)
	}
}

// TestReceive: Receive takes frames from a port in batches up to the receive budget, forwards them
// and reports how many it took; the next call takes the rest, in order.
func TestReceive(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 1024)
	tc := natCases[1] // UDP: each datagram of a new client port makes a connection
	const n = rxBudget + MaxBatch + 5
	for i := range n {
		r.ports[0].Inject(build(t, clientPkt(tc.clientAt(uint16(10000+i)), tc.vip, tc.proto, 0)), afpacket.RxMeta{})
	}
	var got []int
	for range 3 {
		got = append(got, r.w.Receive(0, r.ports[0], r.now))
		r.w.FlushAll()
	}
	if got[0] != rxBudget || got[1] != n-rxBudget || got[2] != 0 {
		t.Fatalf("Receive took %v frames in three calls, want [%d %d 0]", got, rxBudget, n-rxBudget)
	}
	if fw, sent := r.w.c[cForwarded], len(r.out[1].Frames); fw != n || sent != n {
		t.Fatalf("%d frames forwarded, %d sent to the real servers, want %d; counters %v", fw, sent, n, nonZero(r.w))
	}
	var p frame.Parsed
	for i, b := range r.out[1].Frames {
		if frame.Parse(b, &p) != frame.ErrNone || p.SrcPort != uint16(10000+i) {
			t.Fatalf("frame %d sent is from client port %d, want %d: out of order", i, p.SrcPort, 10000+i)
		}
	}
}
