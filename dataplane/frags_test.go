package dataplane

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
)

// fragRig is two linked workers, each with two in-memory ports (0: clients, 1: real servers),
// fed the way the fanout program feeds them: fragments by client address alone.
type fragRig struct {
	ws   []*Worker
	outs [2][2]*dataplanetest.Collector // [worker][port]
	now  int64
}

func newFragRig(tb testing.TB, t *Tables) *fragRig {
	return newFragRigSized(tb, t, 1<<17, 64, 0)
}

// newFragRigSized is newFragRig with ports of txSlots slots of slot bytes and handover rings of
// ringSlots frames (0: the engine's size).
func newFragRigSized(tb testing.TB, t *Tables, slot, txSlots, ringSlots int) *fragRig {
	r := &fragRig{now: 1e9}
	for wi := range 2 {
		ps := make([]Transmitter, 2)
		for pi := range ps {
			p := dataplanetest.NewPort(slot, txSlots)
			r.outs[wi][pi] = &dataplanetest.Collector{}
			p.Sink = r.outs[wi][pi].Sink
			ps[pi] = p
		}
		w := mustWorker(tb, wi, ps, [][6]byte{macPort0, macPort1}, 1024)
		w.SetTables(t)
		r.ws = append(r.ws, w)
	}
	linkFragments(r.ws, nil, nil, ringSlots)
	return r
}

// run hands frames received on port in to worker wi as one batch, lets both workers take what
// was handed over, and returns what left on port out, from either worker.
func (r *fragRig) run(wi, in, out int, frames [][]byte) [][]byte {
	r.now += 1e6
	fs := make([]afpacket.Frame, len(frames))
	for i, f := range frames {
		fs[i] = afpacket.Frame{Data: slices.Clone(f), Meta: afpacket.RxMeta{Len: uint32(len(f))}}
	}
	r.ws[wi].ProcessBatch(in, fs, r.now)
	for _, w := range r.ws {
		w.DrainFragments(r.now)
		w.FlushAll()
	}
	var got [][]byte
	for wi := range r.outs {
		for pi, c := range r.outs[wi] {
			if pi == out {
				got = append(got, c.Frames...)
			}
			c.Frames, c.Vnets = nil, nil
		}
	}
	return got
}

func (r *fragRig) sum(slot int) (n uint64) {
	for _, w := range r.ws {
		n += w.c[slot]
	}
	return n
}

// addrWorker is where the fanout program sends a fragment: by client address alone.
func addrWorker(client netip.Addr) int {
	return bpfgen.FanoutMember(client, 0, 0, bpfgen.HashRule{}, 2)
}

// TestFragmentsTwoWorkers sends UDP datagrams of 3000 and 9000 bytes, fragmented at a 1500-byte
// MTU, through two workers fed as the fanout program feeds them, for NAT (IPv4, IPv6) and DR:
// every fragment of a datagram reaches one real server, the datagram reassembles with valid
// checksums, the flow's unfragmented packets (at their flow's worker) find the connection its
// first fragment made, and the real server's fragmented answer comes back whole as from the VIP.
// Some datagrams arrive last fragment first: their later fragments wait for their first.
func TestFragmentsTwoWorkers(t *testing.T) {
	tables := buildTables(1, standardSpecs()...)
	cases := []struct {
		name   string
		client string
		vip    string
		nat    bool
	}{
		{"ipv4-nat", "198.18.1.7", "198.18.0.100:4000", true},
		{"ipv6-nat", "2001:2:0:1::7", "[2001:2::100]:4000", true},
		{"ipv4-dr", "198.18.1.7", "198.18.0.200:4000", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newFragRig(t, tables)
			vip := mustAP(tc.vip)
			fw := addrWorker(netip.MustParseAddr(tc.client))
			for _, size := range []int{3000, 9000} {
				for port := uint16(20000); port < 20024; port++ {
					client := netip.AddrPortFrom(netip.MustParseAddr(tc.client), port)
					b := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: client, dst: vip, proto: 17, payload: size})
					frags := dataplanetest.Fragment(b, 1500, uint32(port)+uint32(size))
					if port%4 == 3 {
						slices.Reverse(frags) // reordered on the way: the first fragment comes last
					}
					got := r.run(fw, 0, 1, frags)
					if len(got) != len(frags) {
						t.Fatalf("%d bytes from %v: %d of %d fragments forwarded; counters %v %v", size, client, len(got), len(frags), nonZero(r.ws[0]), nonZero(r.ws[1]))
					}
					whole, err := dataplanetest.Reassemble(got)
					if err != nil {
						t.Fatalf("%d bytes from %v: %v", size, client, err)
					}
					checkChecksums(t, whole)
					dstMAC, _ := macs(got[0])
					for _, f := range got[1:] {
						if m, _ := macs(f); m != dstMAC {
							t.Fatalf("%v: fragments went to %x and %x", client, dstMAC, m)
						}
					}
					src, dst := tuple(t, whole)
					if src != client || (tc.nat && dst.Port() != 4001) || (!tc.nat && dst != vip) {
						t.Fatalf("%v: datagram arrives as %v -> %v", client, src, dst)
					}
					// The flow's unfragmented datagram, at the flow's worker, goes to the same server.
					small := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: client, dst: vip, proto: 17, payload: 20})
					one := r.run(bpfgen.FanoutMember(client.Addr(), port, 17, bpfgen.HashRule{}, 2), 0, 1, [][]byte{small})
					if len(one) != 1 {
						t.Fatalf("%v: unfragmented datagram: %d frames forwarded", client, len(one))
					}
					if m, _ := macs(one[0]); m != dstMAC {
						t.Fatalf("%v: unfragmented datagram went to %x, its fragments to %x", client, m, dstMAC)
					}
					if _, d := tuple(t, one[0]); d != dst {
						t.Fatalf("%v: unfragmented datagram went to %v, its fragments to %v", client, d, dst)
					}
					if !tc.nat {
						continue
					}
					// The real server's answer, as large, comes back fragmented to the client's
					// fragment worker.
					reply := build(t, pkt{srcMAC: dstMAC, dstMAC: macPort1, src: dst, dst: client, proto: 17, payload: size})
					rfrags := dataplanetest.Fragment(reply, 1500, uint32(port)*3)
					back := r.run(fw, 1, 0, rfrags)
					if len(back) != len(rfrags) {
						t.Fatalf("%v: %d of %d reply fragments came back; counters %v %v", client, len(back), len(rfrags), nonZero(r.ws[0]), nonZero(r.ws[1]))
					}
					whole, err = dataplanetest.Reassemble(back)
					if err != nil {
						t.Fatalf("%v: reply: %v", client, err)
					}
					checkChecksums(t, whole)
					if s, d := tuple(t, whole); s != vip || d != client {
						t.Fatalf("%v: reply arrives as %v -> %v", client, s, d)
					}
				}
			}
			if r.sum(cFragHandedOff) == 0 || r.sum(cFragHeld) == 0 || r.sum(cFragLater) == 0 {
				t.Errorf("want fragments handed off, held and forwarded; counters %v %v", nonZero(r.ws[0]), nonZero(r.ws[1]))
			}
			for _, d := range []Drop{DropFragment, DropFragmentTableFull, DropFragmentHandoffFull} {
				if n := r.sum(cDropBase + int(d)); n != 0 {
					t.Errorf("drop %v counted %d times", d, n)
				}
			}
		})
	}
}

// TestFragmentUnmatched: a later fragment whose first one never comes is held for fragReorderWait,
// then dropped and counted as "fragment"; the hold slots are bounded.
func TestFragmentUnmatched(t *testing.T) {
	r := newFragRig(t, buildTables(1, standardSpecs()...))
	client := mustAP("198.18.1.9:5000")
	b := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: client, dst: mustAP("198.18.0.100:4000"), proto: 17, payload: 3000})
	fw := addrWorker(client.Addr())
	var later [][]byte
	for id := range uint32(fragHoldSlots + 5) {
		later = append(later, dataplanetest.Fragment(b, 1500, id)[1])
	}
	if got := r.run(fw, 0, 1, later); len(got) != 0 {
		t.Fatalf("%d unmatched fragments forwarded", len(got))
	}
	w := r.ws[fw]
	if w.c[cFragHeld] != fragHoldSlots || w.c[cDropBase+int(DropFragment)] != 5 {
		t.Fatalf("held %d, dropped %d; want %d and 5", w.c[cFragHeld], w.c[cDropBase+int(DropFragment)], fragHoldSlots)
	}
	r.now += int64(fragReorderWait) / 2
	r.run(fw, 0, 1, nil)
	if w.fr.nHeld != fragHoldSlots {
		t.Fatalf("half the wait later: still held %d, want %d", w.fr.nHeld, fragHoldSlots)
	}
	r.now += int64(fragReorderWait)
	r.run(fw, 0, 1, nil)
	if w.c[cDropBase+int(DropFragment)] != fragHoldSlots+5 || w.fr.nHeld != 0 {
		t.Fatalf("after the hold time: dropped %d, still held %d", w.c[cDropBase+int(DropFragment)], w.fr.nHeld)
	}
}

// TestFragmentID reads the identification of IPv4 and IPv6 fragments.
func TestFragmentID(t *testing.T) {
	for _, c := range []struct{ src, dst string }{{"198.18.1.1:1", "198.18.0.100:4000"}, {"[2001:2:0:1::1]:1", "[2001:2::100]:4000"}} {
		b := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: mustAP(c.src), dst: mustAP(c.dst), proto: 17, payload: 2000})
		frags := dataplanetest.Fragment(b, 1280, 0xbeef)
		for i, f := range frags {
			var p frame.Parsed
			if err := frame.Parse(f, &p); err != frame.ErrNone {
				t.Fatalf("%s fragment %d: %v", c.src, i, err)
			}
			id, more, ok := frame.FragmentID(f, &p)
			if !ok || id != 0xbeef || (i == 0) != (p.Frag == frame.FragFirst) || more != (i < len(frags)-1) {
				t.Fatalf("%s fragment %d of %d: id %#x %v, more %v, kind %v", c.src, i, len(frags), id, ok, more, p.Frag)
			}
		}
		var p frame.Parsed
		if err := frame.Parse(b, &p); err != frame.ErrNone {
			t.Fatalf("%s: %v", c.src, err)
		}
		if _, _, ok := frame.FragmentID(b, &p); ok {
			t.Fatalf("%s: an unfragmented packet has a fragment ID", c.src)
		}
	}
}

// TestFragmentAllocs: fragments allocate nothing, handed over or not, held or not, in either
// direction: a datagram and its answer, in order and last fragment first, through two workers.
func TestFragmentAllocs(t *testing.T) {
	r := newFragRig(t, buildTables(1, standardSpecs()...))
	client := mustAP("198.18.1.7:20000")
	fw := addrWorker(client.Addr())
	var batches [][]afpacket.Frame
	var ins []int
	for port := range uint16(8) { // flows on both workers
		c := netip.AddrPortFrom(client.Addr(), 20000+port)
		b := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: c, dst: mustAP("198.18.0.100:4000"), proto: 17, payload: 3000})
		frags := dataplanetest.Fragment(b, 1500, uint32(port))
		if port%2 == 1 {
			slices.Reverse(frags)
		}
		got := r.run(fw, 0, 1, frags) // schedules the flow
		_, real := tuple(t, got[0])
		rep := build(t, pkt{srcMAC: macRS[0], dstMAC: macPort1, src: real, dst: c, proto: 17, payload: 3000})
		for _, fs := range [][][]byte{frags, dataplanetest.Fragment(rep, 1500, uint32(port)+100)} {
			var batch []afpacket.Frame
			for _, f := range fs {
				batch = append(batch, afpacket.Frame{Data: slices.Clone(f), Meta: afpacket.RxMeta{Len: uint32(len(f))}})
			}
			batches = append(batches, batch)
		}
		ins = append(ins, 0, 1)
	}
	for _, w := range r.ws { // the collectors would allocate
		for _, p := range w.ports {
			p.(*dataplanetest.Port).Sink = nil
		}
	}
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	fs := make([]afpacket.Frame, 16)
	before := r.sum(cFragLater)
	allocs := testing.AllocsPerRun(50, func() {
		for bi, batch := range batches {
			r.now += 1e6
			for i, f := range batch {
				fs[i] = afpacket.Frame{Data: bufs[i][:copy(bufs[i], f.Data)], Meta: f.Meta}
			}
			r.ws[fw].ProcessBatch(ins[bi], fs[:len(batch)], r.now)
			for _, w := range r.ws {
				w.DrainFragments(r.now)
				w.FlushAll()
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per round of fragments, want 0", allocs)
	}
	if r.sum(cFragLater) == before || r.sum(cFragHandedOff) == 0 || r.sum(cFragHeld) == 0 {
		t.Fatalf("the rounds forwarded no later fragment, or handed none over, or held none; counters %v %v", nonZero(r.ws[0]), nonZero(r.ws[1]))
	}
}

// TestFragmentEntryLifetime: a datagram's entry outlives its last fragment by fragHoldTime, so a
// fragment reordered behind the last one still follows, and then frees its slot; while fragments
// keep coming without the last, it lives fragTimeout after each.
func TestFragmentEntryLifetime(t *testing.T) {
	r := newFragRig(t, buildTables(1, standardSpecs()...))
	client := mustAP("198.18.1.9:5000")
	b := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: client, dst: mustAP("198.18.0.100:4000"), proto: 17, payload: 4000})
	frags := dataplanetest.Fragment(b, 1500, 9)
	if len(frags) != 3 {
		t.Fatalf("%d fragments, want 3", len(frags))
	}
	fw := addrWorker(client.Addr())
	if got := r.run(fw, 0, 1, [][]byte{frags[0]}); len(got) != 1 {
		t.Fatalf("first fragment: %d frames forwarded", len(got))
	}
	r.now += int64(fragTimeout) / 2 // the entry lives fragTimeout after each fragment
	if got := r.run(fw, 0, 1, [][]byte{frags[2]}); len(got) != 1 {
		t.Fatalf("last fragment after %v: %d frames forwarded", fragTimeout/2, len(got))
	}
	r.now += int64(fragHoldTime) / 2
	if got := r.run(fw, 0, 1, [][]byte{frags[1]}); len(got) != 1 {
		t.Fatalf("middle fragment behind the last: %d frames forwarded", len(got))
	}
	r.now += int64(fragHoldTime)
	held := r.sum(cFragHeld)
	if got := r.run(fw, 0, 1, [][]byte{frags[1]}); len(got) != 0 || r.sum(cFragHeld) != held+1 {
		t.Fatalf("a fragment %v after the last: %d frames forwarded, held %d; want its entry gone", fragHoldTime, len(got), r.sum(cFragHeld)-held)
	}
}

// TestFragmentsToHost: a fragmented datagram to the balancer's own address (a real server's
// answer to a health check, say) is the host's traffic, counted as to_host, first and later
// fragments alike, not dropped.
func TestFragmentsToHost(t *testing.T) {
	r := newFragRig(t, buildTables(1, standardSpecs()...))
	hosts := &hostAddrs{}
	hosts.store([]netip.Addr{netip.MustParseAddr("198.18.2.254")})
	for _, w := range r.ws {
		w.hosts = hosts
	}
	b := build(t, pkt{srcMAC: macRS[0], dstMAC: macPort1, src: mustAP("198.18.2.1:4001"), dst: mustAP("198.18.2.254:33000"), proto: 17, payload: 3000})
	frags := dataplanetest.Fragment(b, 1500, 5)
	if got := r.run(addrWorker(netip.MustParseAddr("198.18.2.254")), 1, 0, frags); len(got) != 0 {
		t.Fatalf("%d fragments for the host forwarded", len(got))
	}
	if n := r.sum(cToHost); n != uint64(len(frags)) {
		t.Errorf("to_host %d, want %d; counters %v %v", n, len(frags), nonZero(r.ws[0]), nonZero(r.ws[1]))
	}
	for _, d := range []Drop{DropFragment, DropNoService} {
		if n := r.sum(cDropBase + int(d)); n != 0 {
			t.Errorf("drop %v counted %d times", d, n)
		}
	}
}
