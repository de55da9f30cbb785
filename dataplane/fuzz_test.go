package dataplane

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
)

// fuzzWorker returns a worker with the standard NAT and DR services and a few live connections,
// so that mutated replies and ICMP errors reach the established paths.
func fuzzWorker(tabs *Tables, warm [][]byte, ports []*dataplanetest.Port) *Worker {
	w := mustWorker(nil, 0, []Transmitter{ports[0], ports[1]}, [][6]byte{macPort0, macPort1}, 16)
	w.SetTables(tabs)
	for _, b := range warm {
		w.Process(0, append([]byte(nil), b...), &afpacket.RxMeta{Len: uint32(len(b))}, 1)
	}
	w.FlushAll()
	return w
}

// fuzzSeeds returns real frames with the metadata they come with: SYNs, replies, an ICMP error,
// VLAN and partial checksums.
type fuzzSeed struct {
	name                                           string
	b                                              []byte
	status                                         uint32
	flags, gso, hdrLen, gsoSize, cstart, coff, tci uint16
	port1                                          bool
}

func fuzzSeeds(tb testing.TB) (seeds []fuzzSeed, warm [][]byte) {
	for _, tc := range natCases {
		syn := build(tb, clientPkt(tc.clientAt(40000), tc.vip, tc.proto, tc.first()))
		warm = append(warm, syn)
		seeds = append(seeds, fuzzSeed{name: "syn-" + tc.name, b: syn})
		rep := build(tb, tc.replyPkt(0, 40000))
		seeds = append(seeds, fuzzSeed{name: "reply-" + tc.name, b: rep, port1: true})
		p := append([]byte(nil), rep...)
		v := makePartial(tb, p)
		seeds = append(seeds, fuzzSeed{name: "partial-" + tc.name, b: p, port1: true, flags: uint16(v.Flags),
			cstart: v.CsumStart, coff: v.CsumOffset})
		seeds = append(seeds, fuzzSeed{name: "vlan-" + tc.name, b: syn, status: afpacket.StatusVLANValid, tci: 100})
	}
	tc := natCases[1]
	client := tc.clientAt(40000)
	rp := tc.replyPkt(0, 40000)
	q := clientPkt(client, tc.reals[0], 17, 0)
	f := icmpFrame(tb, macRS[0], macPort1, rp.src.Addr(), q.src.Addr(), 3, 3, 0, quotedPacket(tb, q))
	seeds = append(seeds, fuzzSeed{name: "icmp-port-unreachable", b: f, port1: true})
	in := clientPkt("198.18.1.10:40000", "198.18.0.100:80", 6, tcpACK)
	in.payload = 2000
	g := build(tb, in)
	v := makePartial(tb, g)
	seeds = append(seeds, fuzzSeed{name: "gso-tcpv4", b: g, status: afpacket.StatusGSOTCP, flags: uint16(v.Flags),
		gso: afpacket.VnetHdrGSOTCPv4, hdrLen: 54, gsoSize: 1448, cstart: v.CsumStart, coff: v.CsumOffset})
	dr := build(tb, clientPkt("[2001:2:0:1::10]:40000", "[2001:2::200]:80", 6, tcpSYN))
	seeds = append(seeds, fuzzSeed{name: "dr-ipv6", b: dr})
	// FullNAT (fuzzTables): a connection per family, whose local endpoints are the worker's first
	// two candidates; the real server's reply to each, and its port unreachable about the first.
	for i, c := range []struct{ name, client, vip, real, local string }{
		{"ipv4", "198.18.1.10:40000", "198.18.0.100:5000", "198.18.2.1:5001", "198.18.3.2:1024"},
		{"ipv6", "[2001:2:0:1::10]:40000", "[2001:2::100]:5000", "[2001:2:0:2::1]:5001", "[2001:2:0:3::2]:1025"},
	} {
		proto, flags := uint8(17), uint8(0)
		if i == 1 {
			proto, flags = 6, tcpSYN
		}
		syn := build(tb, clientPkt(c.client, c.vip, proto, flags))
		warm = append(warm, syn)
		rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: mustAP(c.real), dst: mustAP(c.local), proto: proto, flags: flags | tcpACK, payload: 5}
		seeds = append(seeds, fuzzSeed{name: "fullnat-syn-" + c.name, b: syn},
			fuzzSeed{name: "fullnat-reply-" + c.name, b: build(tb, rp), port1: true})
		if i == 0 {
			q := pkt{src: mustAP(c.local), dst: mustAP(c.real), proto: proto}
			f := icmpFrame(tb, macRS[0], macPort1, q.dst.Addr(), q.src.Addr(), 3, 3, 0, quotedPacket(tb, q))
			seeds = append(seeds, fuzzSeed{name: "fullnat-icmp-port-unreachable", b: f, port1: true})
		}
	}
	names, seqs, ports := fragmentSeeds(tb)
	for i, name := range names {
		if !strings.HasPrefix(name, "frag-reversed") {
			seeds = append(seeds, fuzzSeed{name: name + "-first", b: seqs[i][0], port1: ports[i][0]},
				fuzzSeed{name: name + "-later", b: seqs[i][1], port1: ports[i][1]})
		}
	}
	return seeds, warm
}

// fuzzTables is the standard services and a FullNAT service per family (UDP over IPv4, TCP over
// IPv6), one local address each.
func fuzzTables() *Tables {
	specs := append(standardSpecs(),
		svcSpec{id: 7, vip: "198.18.0.100:5000", proto: 17, method: MethodFullNAT, reals: []realSpec{
			{id: 11, addr: "198.18.2.1:5001", weight: 1, mac: macRS[0]}}},
		svcSpec{id: 8, vip: "[2001:2::100]:5000", proto: 6, method: MethodFullNAT, reals: []realSpec{
			{id: 12, addr: "[2001:2:0:2::1]:5001", weight: 1, mac: macRS[0]}}})
	t := buildTables(1, specs...)
	t.Services[7].Locals = []netip.Addr{netip.MustParseAddr("198.18.3.2")}
	t.Services[8].Locals = []netip.Addr{netip.MustParseAddr("2001:2:0:3::2")}
	t.Finish()
	return t
}

// FuzzProcess feeds arbitrary frames with arbitrary ring metadata to a worker with NAT, DR and
// FullNAT services: Process and ProcessBatch must never panic, whatever the bytes, status and
// virtio header say.
func FuzzProcess(f *testing.F) {
	seeds, warm := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s.b, s.status, s.flags, s.gso, s.hdrLen, s.gsoSize, s.cstart, s.coff, s.tci, s.port1)
	}
	tabs := fuzzTables()
	// The ports outlive each input (every input ends with FlushAll, which empties them); the
	// worker and its connection table are new per input, so an input's outcome is its own.
	ports := []*dataplanetest.Port{dataplanetest.NewPort(4096, 4), dataplanetest.NewPort(4096, 4)}
	f.Fuzz(func(t *testing.T, b []byte, status uint32, flags, gso, hdrLen, gsoSize, cstart, coff, tci uint16, port1 bool) {
		w := fuzzWorker(tabs, warm, ports)
		in := 0
		if port1 {
			in = 1
		}
		meta := afpacket.RxMeta{Status: status, Len: uint32(len(b)), VLANTCI: tci, VLANTPID: tci >> 4,
			Vnet: afpacket.VnetHdr{Flags: uint8(flags), GSOType: uint8(gso), HdrLen: hdrLen, GSOSize: gsoSize,
				CsumStart: cstart, CsumOffset: coff}}
		if status&0x8000_0000 != 0 {
			meta.Len += status & 0xff // claim a longer frame than captured
		}
		orig := append([]byte(nil), b...)
		for i := range 3 { // the same frame again, and then on the other port
			buf := append([]byte(nil), orig...)
			m := meta
			w.Process(in, buf, &m, int64(2+i))
			if i == 1 {
				in ^= 1
			}
		}
		// And twice in one batch, the engine's way.
		fs := []afpacket.Frame{{Data: append([]byte(nil), orig...), Meta: meta}, {Data: append([]byte(nil), orig...), Meta: meta}}
		w.ProcessBatch(in, fs, 5)
		// Once more, now that its connection exists: the table's hint finds it (the express lane).
		w.ProcessBatch(in, []afpacket.Frame{{Data: append([]byte(nil), orig...), Meta: meta}}, 6)
		w.FlushAll()
		w.Expire(1 << 62)
		w.Publish()
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzProcess from fuzzSeeds when GOVS_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("GOVS_WRITE_SEEDS") != "1" {
		t.Skip("set GOVS_WRITE_SEEDS=1 to rewrite testdata/fuzz/FuzzProcess")
	}
	seeds, _ := fuzzSeeds(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzProcess")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.b)) + ")\n" + fmt.Sprintf("uint32(%d)\n", s.status)
		for _, v := range []uint16{s.flags, s.gso, s.hdrLen, s.gsoSize, s.cstart, s.coff, s.tci} {
			body += fmt.Sprintf("uint16(%d)\n", v)
		}
		body += fmt.Sprintf("bool(%v)\n", s.port1)
		if err := os.WriteFile(filepath.Join(dir, strings.ReplaceAll(s.name, "/", "-")), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fragmentSeeds returns datagrams of the standard NAT and DR services cut into fragments, each a
// list of frames with the port it arrives on: in order, last fragment first, and the answers.
func fragmentSeeds(tb testing.TB) (names []string, seqs [][][]byte, ports [][]bool) {
	add := func(name string, frags [][]byte, port1 bool) {
		names, seqs = append(names, name), append(seqs, frags)
		p := make([]bool, len(frags))
		for i := range p {
			p[i] = port1
		}
		ports = append(ports, p)
	}
	for _, c := range []struct{ name, client, vip, real string }{
		{"ipv4", "198.18.1.7:20000", "198.18.0.100:4000", "198.18.2.1:4001"},
		{"ipv6", "[2001:2:0:1::7]:20000", "[2001:2::100]:4000", "[2001:2:0:2::1]:4001"},
		{"dr", "198.18.1.7:20001", "198.18.0.200:4000", ""},
	} {
		b := build(tb, pkt{srcMAC: macClient, dstMAC: macPort0, src: mustAP(c.client), dst: mustAP(c.vip), proto: 17, payload: 1400})
		frags := dataplanetest.Fragment(b, 600, 77)
		add("frag-"+c.name, frags, false)
		rev := append([][]byte(nil), frags...)
		slices.Reverse(rev)
		add("frag-reversed-"+c.name, rev, false)
		if c.real != "" {
			r := build(tb, pkt{srcMAC: macRS[0], dstMAC: macPort1, src: mustAP(c.real), dst: mustAP(c.client), proto: 17, payload: 1400})
			add("frag-reply-"+c.name, dataplanetest.Fragment(r, 600, 78), true)
		}
	}
	return names, seqs, ports
}

// packFrames encodes frames, each with its port, as one fuzz input: per frame a byte for the
// port, two for the length, then the frame.
func packFrames(frames [][]byte, port1 []bool) []byte {
	var out []byte
	for i, f := range frames {
		p := byte(0)
		if port1[i] {
			p = 1
		}
		out = append(out, p, byte(len(f)>>8), byte(len(f)))
		out = append(out, f...)
	}
	return out
}

// FuzzFragments feeds sequences of arbitrary frames, seeded with fragmented datagrams, to two
// linked workers the way the fanout program would (fragments by client address): nothing may
// panic, every fragment held or handed over stays within the fixed bounds, and after the hold
// time nothing is held any more.
func FuzzFragments(f *testing.F) {
	names, seqs, ports := fragmentSeeds(f)
	for i := range names {
		f.Add(packFrames(seqs[i], ports[i]), uint64(i))
	}
	tabs := buildTables(1, standardSpecs()...)
	f.Fuzz(func(t *testing.T, in []byte, steps uint64) {
		// A rig of its own for each input, with small rings and ports, so that an input's
		// outcome is its own. (Its inputs are large: fuzz with -fuzzminimizetime 2s or so, or
		// minimising each new one takes the default minute.)
		fuzzFragmentsBody(t, newFragRigSized(t, tabs, 1<<14, 8, fragRingMin), in, steps)
	})
}

// fuzzFragmentsBody is one input of FuzzFragments.
func fuzzFragmentsBody(t *testing.T, r *fragRig, in []byte, steps uint64) {
	for len(in) >= 3 {
		port := int(in[0] & 1)
		n := min(int(in[1])<<8|int(in[2]), len(in)-3)
		b := in[3 : 3+n]
		in = in[3+n:]
		var p frame.Parsed
		wi := int(steps & 1)
		if frame.Parse(b, &p) == frame.ErrNone && p.Family != 0 {
			client := netip.AddrFrom16(p.Src)
			if port == 1 {
				client = netip.AddrFrom16(p.Dst)
			}
			wi = addrWorker(client.Unmap())
		}
		steps >>= 1
		r.run(wi, port, 1-port, [][]byte{b})
		if steps&1 != 0 {
			r.now += int64(fragHoldTime) / 2
		}
		for _, w := range r.ws {
			if w.fr.nHeld < 0 || w.fr.nHeld > fragHoldSlots {
				t.Fatalf("worker %d holds %d fragments", w.id, w.fr.nHeld)
			}
		}
	}
	r.now += int64(fragHoldTime) + 1
	r.run(0, 0, 1, nil)
	for _, w := range r.ws {
		if w.fr.nHeld != 0 {
			t.Fatalf("worker %d still holds %d fragments after the hold time", w.id, w.fr.nHeld)
		}
		for _, ring := range w.fr.in {
			if ring.peek() != nil {
				t.Fatalf("worker %d left handed-over fragments in its ring", w.id)
			}
		}
	}
}
