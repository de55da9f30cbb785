package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
)

type natCase struct {
	name    string
	client  string // client address without port
	vip     string
	proto   uint8
	reals   []string // the service's real servers, in config order
	unknown string   // an address:port that is no service
}

var natCases = []natCase{
	{"ipv4/tcp", "198.18.1.10", "198.18.0.100:80", 6, []string{"198.18.2.1:8080", "198.18.2.2:8080"}, "198.18.0.99:80"},
	{"ipv4/udp", "198.18.1.10", "198.18.0.100:4000", 17, []string{"198.18.2.1:4001", "198.18.2.2:4001"}, "198.18.0.100:4002"},
	{"ipv6/tcp", "2001:2:0:1::10", "[2001:2::100]:80", 6, []string{"[2001:2:0:2::1]:8080", "[2001:2:0:2::2]:8080"}, "[2001:2::99]:80"},
	{"ipv6/udp", "2001:2:0:1::10", "[2001:2::100]:4000", 17, []string{"[2001:2:0:2::1]:4001", "[2001:2:0:2::2]:4001"}, "[2001:2::100]:4002"},
}

func (c natCase) clientAt(port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(c.client), port).String()
}

// first is the flags of a connection's first packet: a SYN for TCP.
func (c natCase) first() uint8 {
	if c.proto == 6 {
		return tcpSYN
	}
	return 0
}

// replyPkt is the real server's answer to the client at clientPort.
func (c natCase) replyPkt(rs int, clientPort uint16) pkt {
	flags := uint8(0)
	if c.proto == 6 {
		flags = tcpSYN | tcpACK
	}
	return pkt{srcMAC: macRS[rs], dstMAC: macPort1, src: netip.MustParseAddrPort(c.reals[rs]),
		dst: netip.MustParseAddrPort(c.clientAt(clientPort)), proto: c.proto, flags: flags, payload: 5}
}

func TestNAT(t *testing.T) {
	for _, tc := range natCases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 1024)
			vip := netip.MustParseAddrPort(tc.vip)

			// Flows from three client ports: rr sends them to rs0, rs1, rs0.
			wantRS := []int{0, 1, 0}
			for i, rs := range wantRS {
				cport := uint16(40000 + i)
				in := clientPkt(tc.clientAt(cport), tc.vip, tc.proto, tc.first())
				out := r.one(t, 0, build(t, in), afpacket.RxMeta{})
				if out.port != 1 {
					t.Fatalf("flow %d: sent on port %d, want 1", i, out.port)
				}
				dmac, smac := macs(out.frame)
				if dmac != macRS[rs] || smac != macPort1 {
					t.Fatalf("flow %d: MACs %x→%x, want %x→%x", i, smac, dmac, macPort1, macRS[rs])
				}
				src, dst := tuple(t, out.frame)
				if src != in.src || dst.String() != tc.reals[rs] {
					t.Fatalf("flow %d: forwarded %v→%v, want %v→%v", i, src, dst, in.src, tc.reals[rs])
				}
				checkChecksums(t, out.frame)

				// The real server's reply goes back to the client's MAC, from the VIP.
				rep := r.one(t, 1, build(t, tc.replyPkt(rs, cport)), afpacket.RxMeta{})
				if rep.port != 0 {
					t.Fatalf("reply %d: sent on port %d, want 0", i, rep.port)
				}
				dmac, smac = macs(rep.frame)
				if dmac != macClient || smac != macPort0 {
					t.Fatalf("reply %d: MACs %x→%x, want %x→%x", i, smac, dmac, macPort0, macClient)
				}
				src, dst = tuple(t, rep.frame)
				if src != vip || dst != in.src {
					t.Fatalf("reply %d: %v→%v, want %v→%v", i, src, dst, vip, in.src)
				}
				checkChecksums(t, rep.frame)
			}

			// Later packets of a flow stick to its real server.
			for i, rs := range wantRS {
				in := clientPkt(tc.clientAt(uint16(40000+i)), tc.vip, tc.proto, tcpACK)
				out := r.one(t, 0, build(t, in), afpacket.RxMeta{})
				if _, dst := tuple(t, out.frame); dst.String() != tc.reals[rs] {
					t.Fatalf("flow %d moved to %v, want %v", i, dst, tc.reals[rs])
				}
			}

			if tc.proto == 6 {
				for _, flags := range []uint8{tcpACK, tcpSYN | tcpACK, tcpRST, tcpFIN | tcpACK} {
					r.none(t, 0, build(t, clientPkt(tc.clientAt(50000), tc.vip, 6, flags)), afpacket.RxMeta{}, DropNoConnection)
				}
			}
			r.none(t, 0, build(t, clientPkt(tc.clientAt(40000), tc.unknown, tc.proto, tc.first())), afpacket.RxMeta{}, DropNoService)

			st := r.w.c
			if st[cForwarded] != 6 || st[cReplied] != 3 || st[cConnsCreated] != 3 {
				t.Fatalf("forwarded %d replied %d created %d, want 6, 3, 3", st[cForwarded], st[cReplied], st[cConnsCreated])
			}
		})
	}
}

// TestNATClientMAC checks that replies go to the MAC the client's first packet came from, per flow.
func TestNATClientMAC(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	tc := natCases[0]
	other := [6]byte{0x02, 0xc1, 0, 0, 0, 0x77}
	in := clientPkt(tc.clientAt(40000), tc.vip, 6, tcpSYN)
	in.srcMAC = other
	r.one(t, 0, build(t, in), afpacket.RxMeta{})
	rep := r.one(t, 1, build(t, tc.replyPkt(0, 40000)), afpacket.RxMeta{})
	if dmac, _ := macs(rep.frame); dmac != other {
		t.Fatalf("reply to %x, want the SYN's source MAC %x", dmac, other)
	}
}

func TestDR(t *testing.T) {
	for _, tc := range []struct {
		name, client, vip string
		proto             uint8
	}{
		{"ipv4/tcp", "198.18.1.10:40000", "198.18.0.200:80", 6},
		{"ipv6/tcp", "[2001:2:0:1::10]:40000", "[2001:2::200]:80", 6},
		{"ipv4/udp", "198.18.1.10:40000", "198.18.0.200:4000", 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 64)
			for i, flags := range []uint8{tcpSYN, tcpACK, tcpACK | tcpFIN} {
				if tc.proto == 17 {
					flags = 0
				}
				in := build(t, clientPkt(tc.client, tc.vip, tc.proto, flags))
				out := r.one(t, 0, in, afpacket.RxMeta{})
				dmac, smac := macs(out.frame)
				if out.port != 1 || dmac != macRS[2] || smac != macPort1 {
					t.Fatalf("packet %d: port %d MACs %x→%x, want port 1 %x→%x", i, out.port, smac, dmac, macPort1, macRS[2])
				}
				if !bytes.Equal(out.frame[12:], in[12:]) {
					t.Fatalf("packet %d: DR changed bytes after the MACs:\n got %x\nwant %x", i, out.frame[12:], in[12:])
				}
			}
		})
	}
}

func TestPartialChecksum(t *testing.T) {
	for _, tc := range natCases {
		t.Run(tc.name+"/vnet", func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 64)
			in := build(t, clientPkt(tc.clientAt(40000), tc.vip, tc.proto, tc.first()))
			vnet := makePartial(t, in)
			vnet.Flags |= afpacket.VnetHdrFDataValid
			for dir, f := range [][]byte{in, nil} {
				meta := afpacket.RxMeta{Vnet: vnet}
				if f == nil { // the reply, also partial
					f = build(t, tc.replyPkt(0, 40000))
					meta.Vnet = makePartial(t, f)
				}
				out := r.one(t, dir, f, meta)
				if out.vnet.Flags != afpacket.VnetHdrFNeedsCsum || out.vnet.CsumStart != meta.Vnet.CsumStart ||
					out.vnet.CsumOffset != meta.Vnet.CsumOffset {
					t.Fatalf("dir %d: TX vnet %+v, want NEEDS_CSUM with the RX start/offset %+v", dir, out.vnet, meta.Vnet)
				}
				kernelComplete(out.frame, int(out.vnet.CsumStart), int(out.vnet.CsumOffset))
				checkChecksums(t, out.frame)
			}
			if n := r.w.c[cCsumCompleted]; n != 0 {
				t.Fatalf("%d checksums completed in software, want 0: the device should finish them", n)
			}
		})
		t.Run(tc.name+"/csumnotready", func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 64)
			in := build(t, clientPkt(tc.clientAt(40000), tc.vip, tc.proto, tc.first()))
			makePartial(t, in)
			out := r.one(t, 0, in, afpacket.RxMeta{Status: afpacket.StatusCsumNotReady})
			if out.vnet != (afpacket.VnetHdr{}) {
				t.Fatalf("TX vnet %+v, want none", out.vnet)
			}
			checkChecksums(t, out.frame)
			if n := r.w.c[cCsumCompleted]; n != 1 {
				t.Fatalf("%d checksums completed in software, want 1", n)
			}
		})
	}
	for _, tc := range natCases {
		// AF_XDP: no offload state comes with the frame; the worker finds the partial checksum
		// itself, both directions, and leaves a finished one alone.
		t.Run(tc.name+"/unknown", func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 64)
			// one is rig.one through ProcessBatch, which checks for the partial checksum.
			one := func(in int, b []byte) []byte {
				t.Helper()
				r.now += 1e6
				for i := range r.out {
					r.out[i].Frames, r.out[i].Vnets = nil, nil
				}
				r.w.ProcessBatch(in, []afpacket.Frame{{Data: b, Meta: afpacket.RxMeta{Len: uint32(len(b)), Status: statusCsumUnknown}}}, r.now)
				out := r.flushed()
				if len(out) != 1 {
					t.Fatalf("transmitted %d frames, want 1; counters: %v", len(out), nonZero(r.w))
				}
				return out[0].frame
			}
			in := build(t, clientPkt(tc.clientAt(40000), tc.vip, tc.proto, tc.first()))
			makePartial(t, in)
			checkChecksums(t, one(0, in))
			reply := build(t, tc.replyPkt(0, 40000))
			makePartial(t, reply)
			checkChecksums(t, one(1, reply))
			if n := r.w.c[cCsumCompleted]; n != 2 {
				t.Fatalf("%d checksums completed, want 2", n)
			}
			checkChecksums(t, one(0, build(t, clientPkt(tc.clientAt(40000), tc.vip, tc.proto, tc.first()))))
			if n := r.w.c[cCsumCompleted]; n != 2 {
				t.Fatalf("%d checksums completed after a finished one, want still 2", n)
			}
		})
	}
	t.Run("vnet/out-of-range", func(t *testing.T) {
		// A csum_start/offset outside the transport header: the worker finishes the checksum itself.
		tc := natCases[0]
		r := newRig(t, buildTables(1, standardSpecs()...), 64)
		in := build(t, clientPkt(tc.clientAt(40000), tc.vip, tc.proto, tc.first()))
		vnet := makePartial(t, in)
		vnet.CsumOffset = 2000
		out := r.one(t, 0, in, afpacket.RxMeta{Vnet: vnet})
		if out.vnet.Flags&afpacket.VnetHdrFNeedsCsum != 0 {
			t.Fatalf("TX vnet %+v still asks for a checksum", out.vnet)
		}
		checkChecksums(t, out.frame)
	})
}

func TestGSO(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	in := clientPkt("198.18.1.10:40000", "198.18.0.100:80", 6, tcpSYN)
	r.one(t, 0, build(t, in), afpacket.RxMeta{})
	in.flags, in.payload = tcpACK, 3*1448
	b := build(t, in)
	vnet := makePartial(t, b)
	vnet.GSOType, vnet.GSOSize, vnet.HdrLen = afpacket.VnetHdrGSOTCPv4, 1448, 14+20+20
	out := r.one(t, 0, b, afpacket.RxMeta{Vnet: vnet, Status: afpacket.StatusGSOTCP})
	if out.vnet != vnet {
		t.Fatalf("TX vnet %+v, want the RX one %+v", out.vnet, vnet)
	}
	if len(out.frame) != len(b) {
		t.Fatalf("sent %d bytes, want %d", len(out.frame), len(b))
	}
	kernelComplete(out.frame, int(out.vnet.CsumStart), int(out.vnet.CsumOffset))
	checkChecksums(t, out.frame)
	if _, dst := tuple(t, out.frame); dst.String() != "198.18.2.1:8080" {
		t.Fatalf("GSO frame sent to %v", dst)
	}
}

func TestVLAN(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status uint32
		tpid   uint16
		want   layers.EthernetType
	}{
		{"8021q", afpacket.StatusVLANValid, 0, layers.EthernetTypeDot1Q},
		{"8021ad", afpacket.StatusVLANValid | afpacket.StatusVLANTPIDValid, 0x88a8, layers.EthernetTypeQinQ},
	} {
		for _, nc := range natCases {
			t.Run(tc.name+"/"+nc.name, func(t *testing.T) {
				in := build(t, clientPkt(nc.clientAt(40000), nc.vip, nc.proto, nc.first()))
				plain := newRig(t, buildTables(1, standardSpecs()...), 64).one(t, 0, in, afpacket.RxMeta{})
				r := newRig(t, buildTables(1, standardSpecs()...), 64)
				out := r.one(t, 0, in, afpacket.RxMeta{Status: tc.status, VLANTCI: 0x2064, VLANTPID: tc.tpid})
				if len(out.frame) != len(plain.frame)+4 {
					t.Fatalf("tagged frame is %d bytes, want %d", len(out.frame), len(plain.frame)+4)
				}
				if !bytes.Equal(out.frame[:12], plain.frame[:12]) || !bytes.Equal(out.frame[16:], plain.frame[12:]) {
					t.Fatalf("tagged frame differs from the untagged one beyond the tag:\n got %x\nwant %x", out.frame, plain.frame)
				}
				pk := decoded(t, out.frame)
				if et := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).EthernetType; et != tc.want {
					t.Fatalf("TPID %v, want %v", et, tc.want)
				}
				q, ok := pk.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
				if !ok || q.VLANIdentifier != 100 || q.Priority != 1 {
					t.Fatalf("tag %+v, want VLAN 100 priority 1", q)
				}
				checkChecksums(t, out.frame)
			})
		}
	}
}

// icmpFrame builds an Ethernet frame carrying an ICMP (v4) or ICMPv6 error from src to dst that
// quotes the packet quoted (IP header onwards).
func icmpFrame(tb testing.TB, srcMAC, dstMAC [6]byte, src, dst netip.Addr, typ, code uint8, rest uint32, quoted []byte) []byte {
	tb.Helper()
	var r [4]byte
	binary.BigEndian.PutUint32(r[:], rest)
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ipOf(src), DstIP: ipOf(dst)}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: uint16(rest >> 16), Seq: uint16(rest)}
		return serialize(tb, ethFor(srcMAC, dstMAC, true), ip, ic, gopacket.Payload(quoted))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: ipOf(src), DstIP: ipOf(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := ic.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ethFor(srcMAC, dstMAC, false), ip, ic, gopacket.Payload(append(r[:], quoted...)))
}

// checkICMP verifies an ICMP error frame: outer checksums (with gopacket) and the quoted packet's
// IPv4 header and transport checksums; it returns the quoted packet's tuple.
func checkICMP(tb testing.TB, b []byte) (src, dst netip.AddrPort) {
	tb.Helper()
	checkChecksums(tb, b)
	var p, q frame.Parsed
	if e := frame.Parse(b, &p); e != frame.ErrNone {
		tb.Fatalf("sent ICMP error does not parse: %v", e)
	}
	if e := frame.ParseICMPError(b, &p, &q); e != frame.ErrNone {
		tb.Fatalf("sent ICMP error's quote does not parse: %v", e)
	}
	quote := b[q.L3Off:]
	first := layers.LayerTypeIPv4
	if p.Family == 6 {
		first = layers.LayerTypeIPv6
	}
	// The tests quote whole packets, so the quoted packet's checksums can be verified from scratch.
	eth := append(make([]byte, 12), 0x08, 0x00)
	if p.Family == 6 {
		eth[12], eth[13] = 0x86, 0xdd
	}
	_ = first
	checkChecksums(tb, append(eth, quote...))
	qa := func(a [16]byte, port uint16) netip.AddrPort {
		ad := netip.AddrFrom16(a).Unmap()
		return netip.AddrPortFrom(ad, port)
	}
	return qa(q.Src, q.SrcPort), qa(q.Dst, q.DstPort)
}

// quotedPacket is the IP packet (no Ethernet) of p.
func quotedPacket(tb testing.TB, p pkt) []byte {
	return serialize(tb, l3l4(tb, p)...)
}

func TestICMPErrors(t *testing.T) {
	for _, tc := range natCases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, buildTables(1, standardSpecs()...), 64)
			client := netip.MustParseAddrPort(tc.clientAt(40000))
			vip := netip.MustParseAddrPort(tc.vip)
			rs := netip.MustParseAddrPort(tc.reals[0])
			r.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, tc.first())), afpacket.RxMeta{})

			// A router on the client side cannot forward our reply (VIP → client): fragmentation
			// needed / packet too big. It must reach the real server, about the real server's packet.
			router := netip.MustParseAddr("198.18.1.1")
			typ, code := uint8(3), uint8(4)
			if client.Addr().Is6() {
				router, typ, code = netip.MustParseAddr("2001:2:0:1::1"), 2, 0
			}
			rp := tc.replyPkt(0, 40000)
			rp.src = vip
			quote := quotedPacket(t, rp)
			f := icmpFrame(t, macRouter, macPort0, router, vip.Addr(), typ, code, 1400, quote)
			out := r.one(t, 0, f, afpacket.RxMeta{})
			if dmac, smac := macs(out.frame); out.port != 1 || dmac != macRS[0] || smac != macPort1 {
				t.Fatalf("frag-needed went out port %d to %x from %x, want port 1 to %x", out.port, dmac, smac, macRS[0])
			}
			var p frame.Parsed
			frame.Parse(out.frame, &p)
			if got := netip.AddrFrom16(p.Dst).Unmap(); got != rs.Addr() || netip.AddrFrom16(p.Src).Unmap() != router {
				t.Fatalf("frag-needed outer %v→%v, want %v→%v", netip.AddrFrom16(p.Src).Unmap(), got, router, rs.Addr())
			}
			qs, qd := checkICMP(t, out.frame)
			if qs != rs || qd != client {
				t.Fatalf("frag-needed quotes %v→%v, want %v→%v", qs, qd, rs, client)
			}

			// The real server's port unreachable about client → real server reaches the client as
			// about client → VIP, from the VIP.
			typ, code = 3, 3
			if client.Addr().Is6() {
				typ, code = 1, 4
			}
			cp := clientPkt(client.String(), rs.String(), tc.proto, tc.first())
			quote = quotedPacket(t, cp)
			f = icmpFrame(t, macRS[0], macPort1, rs.Addr(), client.Addr(), typ, code, 0, quote)
			out = r.one(t, 1, f, afpacket.RxMeta{})
			if dmac, smac := macs(out.frame); out.port != 0 || dmac != macClient || smac != macPort0 {
				t.Fatalf("port unreachable went out port %d to %x from %x, want port 0 to %x", out.port, dmac, smac, macClient)
			}
			frame.Parse(out.frame, &p)
			if s, d := netip.AddrFrom16(p.Src).Unmap(), netip.AddrFrom16(p.Dst).Unmap(); s != vip.Addr() || d != client.Addr() {
				t.Fatalf("port unreachable outer %v→%v, want %v→%v", s, d, vip.Addr(), client.Addr())
			}
			qs, qd = checkICMP(t, out.frame)
			if qs != client || qd != vip {
				t.Fatalf("port unreachable quotes %v→%v, want %v→%v", qs, qd, client, vip)
			}
			if n := r.w.c[cICMPErrors]; n != 2 {
				t.Fatalf("icmp_errors_forwarded = %d, want 2", n)
			}

			// About no connection: dropped.
			cp.src = netip.AddrPortFrom(client.Addr(), 1)
			f = icmpFrame(t, macRS[0], macPort1, rs.Addr(), client.Addr(), typ, code, 0, quotedPacket(t, cp))
			r.none(t, 1, f, afpacket.RxMeta{}, DropICMPNoConnection)
		})
	}
}

func TestReload(t *testing.T) {
	spec := func(w1 int32, drop1 bool) svcSpec {
		s := svcSpec{id: 0, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, reals: []realSpec{
			{id: 0, addr: "198.18.2.1:8080", weight: 1, mac: macRS[0]}}}
		if !drop1 {
			s.reals = append(s.reals, realSpec{id: 1, addr: "198.18.2.2:8080", weight: w1, mac: macRS[1]})
		}
		return s
	}
	r := newRig(t, buildTables(1, spec(1, false)), 64)
	send := func(port uint16, flags uint8) []sent {
		return r.process(0, build(t, clientPkt(fmt.Sprintf("198.18.1.10:%d", port), "198.18.0.100:80", 6, flags)), afpacket.RxMeta{})
	}
	dstOf := func(out []sent) string {
		t.Helper()
		if len(out) != 1 {
			t.Fatalf("sent %d frames, want 1; counters %v", len(out), nonZero(r.w))
		}
		_, d := tuple(t, out[0].frame)
		return d.String()
	}
	if d := dstOf(send(1000, tcpSYN)); d != "198.18.2.1:8080" {
		t.Fatalf("flow A to %v", d)
	}
	if d := dstOf(send(1001, tcpSYN)); d != "198.18.2.2:8080" {
		t.Fatalf("flow B to %v", d)
	}

	// Generation 2: real server 1 quiesced (weight 0).
	r.w.SetTables(buildTables(2, spec(0, false)))
	if d := dstOf(send(1001, tcpACK)); d != "198.18.2.2:8080" {
		t.Fatalf("after quiescing, flow B moved to %v", d)
	}
	for p := uint16(2000); p < 2010; p++ {
		if d := dstOf(send(p, tcpSYN)); d != "198.18.2.1:8080" {
			t.Fatalf("new flow %d went to quiesced %v", p, d)
		}
	}
	// The quiesced server still answers its flow.
	rep := natCases[0].replyPkt(1, 1001)
	rep.src = netip.MustParseAddrPort("198.18.2.2:8080")
	rep.dst = netip.MustParseAddrPort("198.18.1.10:1001")
	if out := r.process(1, build(t, rep), afpacket.RxMeta{}); len(out) != 1 {
		t.Fatalf("quiesced server's reply: sent %d frames", len(out))
	}

	// Generation 3: real server 1 removed. Its flow is dropped, and forgotten.
	r.w.SetTables(buildTables(3, spec(0, true)))
	r.none(t, 0, build(t, clientPkt("198.18.1.10:1001", "198.18.0.100:80", 6, tcpACK)), afpacket.RxMeta{}, DropRealRemoved)
	r.none(t, 0, build(t, clientPkt("198.18.1.10:1001", "198.18.0.100:80", 6, tcpACK)), afpacket.RxMeta{}, DropNoConnection)
	if d := dstOf(send(1000, tcpACK)); d != "198.18.2.1:8080" {
		t.Fatalf("flow A to %v after reload", d)
	}
	// rr restarted for the changed destination list; only real 0 remains.
	if d := dstOf(send(3000, tcpSYN)); d != "198.18.2.1:8080" {
		t.Fatalf("new flow to %v", d)
	}
}

// TestReloadRealIDReused: a connection's real-server ID given to a real server of another service
// (the daemon recycles IDs once its counter wraps) must not carry the connection to that server.
func TestReloadRealIDReused(t *testing.T) {
	a := svcSpec{id: 0, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, reals: []realSpec{
		{id: 0, addr: "198.18.2.1:8080", weight: 1, mac: macRS[0]}}}
	r := newRig(t, buildTables(1, a), 64)
	r.one(t, 0, build(t, clientPkt("198.18.1.10:1000", "198.18.0.100:80", 6, tcpSYN)), afpacket.RxMeta{})
	b := svcSpec{id: 1, vip: "198.18.0.101:80", proto: 6, method: MethodNAT, reals: []realSpec{
		{id: 0, addr: "198.18.2.9:9999", weight: 1, mac: macRS[2]}}}
	r.w.SetTables(buildTables(2, b))
	r.none(t, 0, build(t, clientPkt("198.18.1.10:1000", "198.18.0.100:80", 6, tcpACK)), afpacket.RxMeta{}, DropRealRemoved)
}

// TestReloadServiceRemoved: a reload that removes a whole virtual server leaves its real server
// entries (marked removed) while connections remain, and no service at the connection's ID (nil,
// or past the end of Services). Frames of those connections still in the rings, or replies from a
// real server another service shares, end the connection: they must not crash the worker.
func TestReloadServiceRemoved(t *testing.T) {
	a := svcSpec{id: 1, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, reals: []realSpec{
		{id: 1, addr: "198.18.2.1:8080", weight: 1, mac: macRS[0]}}}
	b := svcSpec{id: 0, vip: "198.18.0.101:80", proto: 6, method: MethodNAT, reals: []realSpec{
		{id: 0, addr: "198.18.2.9:9999", weight: 1, mac: macRS[2]}}}
	// The daemon keeps a real server's counts across reloads: the removed entry shares them.
	removed := func(orig *Tables, withB bool) *Tables {
		rm := *orig.Reals[1]
		rm.Removed = true
		gen := orig.Gen + 1
		var t *Tables
		if withB {
			t = buildTables(gen, b) // Services = [b]: a's ID 1 is past the end
		} else {
			t = buildTables(gen)
		}
		setAtTest(&t.Reals, 1, &rm)
		t.Finish()
		return t
	}
	for _, tc := range []struct {
		name  string
		withB bool
		frame func(t *testing.T) []byte
		in    int
		drop  Drop
	}{
		{"client frame, service past the end", true,
			func(t *testing.T) []byte {
				return build(t, clientPkt("198.18.1.10:1000", "198.18.0.100:80", 6, tcpACK))
			}, 0, DropRealRemoved},
		{"client frame, no services", false,
			func(t *testing.T) []byte {
				return build(t, clientPkt("198.18.1.10:1000", "198.18.0.100:80", 6, tcpACK))
			}, 0, DropRealRemoved},
		{"reply", true,
			func(t *testing.T) []byte {
				return build(t, pkt{srcMAC: macRS[0], dstMAC: macPort1, src: netip.MustParseAddrPort("198.18.2.1:8080"),
					dst: netip.MustParseAddrPort("198.18.1.10:1000"), proto: 6, flags: tcpACK, payload: 5})
			}, 1, DropRealRemoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := buildTables(1, a, b)
			r := newRig(t, orig, 64)
			r.one(t, 0, build(t, clientPkt("198.18.1.10:1000", "198.18.0.100:80", 6, tcpSYN)), afpacket.RxMeta{})
			tbl := removed(orig, tc.withB)
			r.w.SetTables(tbl)
			r.none(t, tc.in, tc.frame(t), afpacket.RxMeta{}, tc.drop)
			// The connection is gone, and so is its count.
			r.none(t, 0, build(t, clientPkt("198.18.1.10:1000", "198.18.0.100:80", 6, tcpACK)), afpacket.RxMeta{}, DropNoService)
			if c := tbl.Reals[1].Counts; c.Active.Load()+c.Inactive.Load() != 0 {
				t.Errorf("the removed service's real server still counts %d+%d connections", c.Active.Load(), c.Inactive.Load())
			}
		})
	}
}

func setAtTest[T any](s *[]*T, i int, v *T) {
	for len(*s) <= i {
		*s = append(*s, nil)
	}
	(*s)[i] = v
}

func TestCounters(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	r1 := newRig(t, tabs, 64)
	r2 := newRig(t, tabs, 64)
	tc := natCases[0]
	syn := build(t, clientPkt(tc.clientAt(40000), tc.vip, 6, tcpSYN))
	badsum := append([]byte(nil), syn...)
	badsum[14+10] ^= 0xff
	arp := append(append([]byte(nil), syn[:12]...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	udpBadLen := build(t, clientPkt(natCases[1].clientAt(40000), natCases[1].vip, 17, 0))
	udpBadLen[14+20+4]++ // UDP length one more than the payload
	for _, f := range []struct {
		r    *rig
		in   int
		b    []byte
		meta afpacket.RxMeta
	}{
		{r1, 0, syn, afpacket.RxMeta{}},                                                             // forwarded, conn created
		{r1, 1, build(t, tc.replyPkt(0, 40000)), afpacket.RxMeta{}},                                 // replied
		{r2, 0, syn, afpacket.RxMeta{}},                                                             // forwarded, conn created
		{r2, 0, syn[:10], afpacket.RxMeta{}},                                                        // truncated_ethernet
		{r2, 0, badsum, afpacket.RxMeta{}},                                                          // bad_ipv4_checksum
		{r1, 0, badsum, afpacket.RxMeta{}},                                                          // bad_ipv4_checksum
		{r1, 0, arp, afpacket.RxMeta{}},                                                             // not_ip
		{r1, 0, udpBadLen, afpacket.RxMeta{}},                                                       // bad_udp_length
		{r2, 0, syn, afpacket.RxMeta{Len: uint32(len(syn) + 100)}},                                  // capture_truncated
		{r2, 0, build(t, clientPkt(tc.clientAt(1), tc.vip, 6, tcpACK)), afpacket.RxMeta{}},          // no_connection
		{r2, 0, build(t, clientPkt(tc.clientAt(1), "198.18.0.1:80", 6, tcpSYN)), afpacket.RxMeta{}}, // no_service
	} {
		f.r.process(f.in, f.b, f.meta)
	}
	r1.w.Publish()
	r2.w.Publish()
	e := &Engine{workers: []*Worker{r1.w, r2.w}}
	st := e.Stats()
	for name, want := range map[string]uint64{
		"rx_frames": 11, "forwarded": 2, "replied": 1, "conns_created": 2, "tx_frames": 3, "checksums_completed": 0,
	} {
		if got := st.Counters[name]; got != want {
			t.Errorf("counter %s = %d, want %d", name, got, want)
		}
	}
	wantDrops := map[string]uint64{
		"truncated_ethernet": 1, "bad_ipv4_checksum": 2, "not_ip": 1, "bad_udp_length": 1, "capture_truncated": 1,
		"no_connection": 1, "no_service": 1,
	}
	var total uint64
	for name, got := range st.Drops {
		if got != wantDrops[name] {
			t.Errorf("drop %s = %d, want %d", name, got, wantDrops[name])
		}
		total += wantDrops[name]
	}
	if st.DropsTotal != total || total != 8 {
		t.Errorf("DropsTotal = %d, want %d (8)", st.DropsTotal, total)
	}
	c := tabs.Reals[0].Counts
	if conns := c.Active.Load() + c.Inactive.Load(); len(st.RealPackets) != len(tabs.Reals) || conns != 2 || st.RealPackets[0] != 3 {
		t.Errorf("real 0: conns %v packets %v, want 2 and 3", conns, st.RealPackets)
	}
}

func TestTxRingFull(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	ports := []*dataplanetest.Port{dataplanetest.NewPort(2048, 8), dataplanetest.NewPort(2048, 2)}
	ports[1].Refuse = true
	w := mustWorker(t, 0, []Transmitter{ports[0], ports[1]}, [][6]byte{macPort0, macPort1}, 64)
	w.SetTables(tabs)
	tc := natCases[1]
	for i := range 5 {
		b := build(t, clientPkt(tc.clientAt(uint16(40000+i)), tc.vip, 17, 0))
		w.Process(0, b, &afpacket.RxMeta{Len: uint32(len(b))}, int64(i))
	}
	w.FlushAll()
	if w.c[cForwarded] != 2 || w.c[cDropBase+int(DropTxRingFull)] != 3 {
		t.Fatalf("forwarded %d tx_ring_full %d, want 2 and 3", w.c[cForwarded], w.c[cDropBase+int(DropTxRingFull)])
	}
	// The device takes frames again: the queued two leave and forwarding resumes.
	ports[1].Refuse = false
	b := build(t, clientPkt(tc.clientAt(40000), tc.vip, 17, 0))
	w.Process(0, b, &afpacket.RxMeta{Len: uint32(len(b))}, 10)
	w.FlushAll()
	if ports[1].Sent != 3 || w.c[cTxFrames] != 3 {
		t.Fatalf("sent %d (tx_frames %d), want 3", ports[1].Sent, w.c[cTxFrames])
	}
}

// TestTooLarge: a frame bigger than a TX slot is dropped and counted, with or without a VLAN tag to add.
func TestTooLarge(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	tc := natCases[1]
	b := build(t, clientPkt(tc.clientAt(40000), tc.vip, 17, 0))
	for _, meta := range []afpacket.RxMeta{{}, {Status: afpacket.StatusVLANValid, VLANTCI: 5}} {
		for _, slot := range []int{len(b) - 1, len(b) + 3} {
			if meta.Status == 0 && slot > len(b) {
				continue
			}
			ports := []Transmitter{dataplanetest.NewPort(2048, 8), dataplanetest.NewPort(slot, 8)}
			w := mustWorker(t, 0, ports, [][6]byte{macPort0, macPort1}, 64)
			w.SetTables(tabs)
			m := meta
			m.Len = uint32(len(b))
			w.Process(0, append([]byte(nil), b...), &m, 1)
			if w.c[cDropBase+int(DropTooLarge)] != 1 {
				t.Fatalf("slot %d meta %+v: counters %v, want frame_too_large", slot, meta, nonZero(w))
			}
		}
	}
}

// TestICMPErrorPartialChecksum: an ICMP error whose checksum the sender left partial is finished
// before its quote is rewritten, and no offload state travels with it.
func TestICMPErrorPartialChecksum(t *testing.T) {
	for _, tc := range []natCase{natCases[1], natCases[3]} {
		for _, meta := range []afpacket.RxMeta{
			{Status: afpacket.StatusCsumNotReady},
			{Vnet: afpacket.VnetHdr{Flags: afpacket.VnetHdrFNeedsCsum | afpacket.VnetHdrFDataValid}},
		} {
			t.Run(fmt.Sprintf("%s/%#x/%d", tc.name, meta.Status, meta.Vnet.Flags), func(t *testing.T) {
				r := newRig(t, buildTables(1, standardSpecs()...), 64)
				client := netip.MustParseAddrPort(tc.clientAt(40000))
				rs := netip.MustParseAddrPort(tc.reals[0])
				r.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, 0)), afpacket.RxMeta{})
				typ, code := uint8(3), uint8(3)
				if client.Addr().Is6() {
					typ, code = 1, 4
				}
				f := icmpFrame(t, macRS[0], macPort1, rs.Addr(), client.Addr(), typ, code, 0,
					quotedPacket(t, clientPkt(client.String(), rs.String(), tc.proto, 0)))
				var p frame.Parsed
				frame.Parse(f, &p)
				sum := uint16(0) // ICMPv4 has no pseudo-header
				if p.Family == 6 {
					sum = pseudoSum(&p)
				}
				binary.BigEndian.PutUint16(f[p.L4Off+2:], sum)
				m := meta
				m.Vnet.CsumStart, m.Vnet.CsumOffset = uint16(p.L4Off), 2
				out := r.one(t, 1, f, m)
				if out.vnet != (afpacket.VnetHdr{}) {
					t.Fatalf("TX vnet %+v, want none", out.vnet)
				}
				checkICMP(t, out.frame)
			})
		}
	}
}

// TestPartialStateEndsWithItsFrame: a frame with a partial checksum that is dropped before it is
// sent (here: to a port without a service) must leave nothing behind for the next frame; the ICMP
// error that follows leaves exactly as it does without it.
func TestPartialStateEndsWithItsFrame(t *testing.T) {
	tc := natCases[1]
	client := netip.MustParseAddrPort(tc.clientAt(40000))
	rs := netip.MustParseAddrPort(tc.reals[0])
	icmp := icmpFrame(t, macRS[0], macPort1, rs.Addr(), client.Addr(), 3, 3, 0,
		quotedPacket(t, clientPkt(client.String(), rs.String(), tc.proto, 0)))
	stray := build(t, clientPkt(client.String(), "198.18.0.100:4999", tc.proto, 0))
	var out [2][]byte
	for i := range out {
		r := newRig(t, buildTables(1, standardSpecs()...), 64)
		r.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, 0)), afpacket.RxMeta{})
		if i == 1 {
			p := append([]byte(nil), stray...)
			if got := r.process(0, p, afpacket.RxMeta{Vnet: makePartial(t, p)}); len(got) != 0 {
				t.Fatalf("a frame to a port without a service was sent: %d frames", len(got))
			}
		}
		out[i] = r.one(t, 1, icmp, afpacket.RxMeta{}).frame
	}
	if !bytes.Equal(out[0], out[1]) {
		t.Fatalf("the ICMP error changed after a dropped partial-checksum frame:\n%x\n%x", out[0], out[1])
	}
}

// TestDraining: with Tables.Draining, established connections (and UDP flows) are still
// forwarded both ways, and new ones are refused as "draining".
func TestDraining(t *testing.T) {
	tables := buildTables(1, standardSpecs()...)
	r := newRig(t, tables, 64)
	const vip, udpVIP = "198.18.0.100:80", "198.18.0.100:4000"
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40000", vip, 6, tcpSYN)), afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40001", udpVIP, 17, 0)), afpacket.RxMeta{})

	draining := buildTables(2, standardSpecs()...)
	draining.Draining = true
	r.w.SetTables(draining)
	out := r.one(t, 0, build(t, clientPkt("198.18.1.10:40000", vip, 6, tcpACK)), afpacket.RxMeta{})
	_, dst := tuple(t, out.frame)
	reply := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: dst, dst: netip.MustParseAddrPort("198.18.1.10:40000"), proto: 6, flags: tcpACK | tcpSYN, payload: 11}
	r.one(t, 1, build(t, reply), afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40001", udpVIP, 17, 0)), afpacket.RxMeta{})
	r.none(t, 0, build(t, clientPkt("198.18.1.10:40002", vip, 6, tcpSYN)), afpacket.RxMeta{}, DropDraining)
	r.none(t, 0, build(t, clientPkt("198.18.1.10:40003", udpVIP, 17, 0)), afpacket.RxMeta{}, DropDraining)

	r.w.SetTables(buildTables(3, standardSpecs()...))
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40002", vip, 6, tcpSYN)), afpacket.RxMeta{})
}

// TestUnresolvedRealTakesNoNewConnections: a client's bare SYN on the tuple of a connection whose
// real server's next hop is not resolved (a reload re-added it and its neighbour entry is being
// looked up again, or its neighbour entry failed) starts a new connection on a resolved real
// server, as for a quiesced one: an unresolved real server gets no new connections. Without
// that, the SYN was dropped as unresolved_neighbor. Frames of the connection other than a SYN
// still wait for the real server (counted as unresolved_neighbor).
func TestUnresolvedRealTakesNoNewConnections(t *testing.T) {
	spec := func(unresolved0 bool) svcSpec {
		return svcSpec{id: 0, vip: "198.18.0.200:80", proto: 6, method: MethodDR, reals: []realSpec{
			{id: 0, addr: "198.18.2.11:80", weight: 1, mac: macRS[0], unresolved: unresolved0},
			{id: 1, addr: "198.18.2.12:80", weight: 1, mac: macRS[1]}}}
	}
	r := newRig(t, buildTables(1, spec(false)), 64)
	flow := func(flags uint8) []byte {
		return build(t, clientPkt("198.18.1.10:1000", "198.18.0.200:80", 6, flags))
	}
	if got := realOf(t, r.one(t, 0, flow(tcpSYN), afpacket.RxMeta{})); got != 0 {
		t.Fatalf("first connection went to real %d, want 0 (rr)", got)
	}
	r.one(t, 0, flow(tcpACK), afpacket.RxMeta{})
	r.one(t, 0, flow(tcpFIN|tcpACK), afpacket.RxMeta{}) // DR: govs sees the client's side only

	// Generation 2: real 0's next hop is unresolved.
	r.w.SetTables(buildTables(2, spec(true)))
	r.none(t, 0, flow(tcpACK), afpacket.RxMeta{}, DropUnresolved)
	// The client reuses the tuple for a new connection.
	if got := realOf(t, r.one(t, 0, flow(tcpSYN), afpacket.RxMeta{})); got != 1 {
		t.Fatalf("a new connection on the old tuple went to real %d, want 1 (0 is unresolved)", got)
	}
	// A SYN retransmitted while the chosen real server is unresolved is scheduled afresh too.
	r.w.SetTables(buildTables(3, svcSpec{id: 0, vip: "198.18.0.200:80", proto: 6, method: MethodDR, reals: []realSpec{
		{id: 0, addr: "198.18.2.11:80", weight: 1, mac: macRS[0]},
		{id: 1, addr: "198.18.2.12:80", weight: 1, mac: macRS[1], unresolved: true}}}))
	if got := realOf(t, r.one(t, 0, flow(tcpSYN), afpacket.RxMeta{})); got != 0 {
		t.Fatalf("a retransmitted SYN went to real %d, want 0 (1 is unresolved now)", got)
	}
	if n := r.w.c[cDropBase+int(DropUnresolved)]; n != 1 {
		t.Fatalf("unresolved_neighbor counted %d, want 1 (the ACK only)", n)
	}
}
