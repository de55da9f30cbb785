package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/internal/checksum"
)

var (
	tunSrc4 = netip.MustParseAddr("198.18.2.254")
	tunSrc6 = netip.MustParseAddr("2001:2:0:2::fe")
)

// tunTables is one tun service per family and protocol, two real servers each, with encapsulation
// tn (GUE to port 6080).
func tunTables(tn Tunnel) *Tables {
	t := buildTables(1,
		svcSpec{id: 0, vip: "198.18.0.150:80", proto: 6, method: MethodTun, reals: []realSpec{
			{id: 0, addr: "198.18.2.1:80", weight: 1, mac: macRS[0]}, {id: 1, addr: "198.18.2.2:80", weight: 1, mac: macRS[1]}}},
		svcSpec{id: 1, vip: "198.18.0.150:4000", proto: 17, method: MethodTun, reals: []realSpec{
			{id: 2, addr: "198.18.2.1:4000", weight: 1, mac: macRS[0]}, {id: 3, addr: "198.18.2.2:4000", weight: 1, mac: macRS[1]}}},
		svcSpec{id: 2, vip: "[2001:2::150]:80", proto: 6, method: MethodTun, reals: []realSpec{
			{id: 4, addr: "[2001:2:0:2::1]:80", weight: 1, mac: macRS[0]}, {id: 5, addr: "[2001:2:0:2::2]:80", weight: 1, mac: macRS[1]}}},
		svcSpec{id: 3, vip: "[2001:2::150]:4000", proto: 17, method: MethodTun, reals: []realSpec{
			{id: 6, addr: "[2001:2:0:2::1]:4000", weight: 1, mac: macRS[0]}, {id: 7, addr: "[2001:2:0:2::2]:4000", weight: 1, mac: macRS[1]}}},
	)
	for _, s := range t.Services {
		s.Tunnel = tn
		if tn == TunnelGUE {
			s.TunnelPort = 6080
		}
	}
	for _, r := range t.Reals {
		r.TunnelSrc = tunSrc6
		if r.Addr.Addr().Is4() {
			r.TunnelSrc = tunSrc4
		}
	}
	t.Finish()
	return t
}

// tunnelled is a decapsulated frame as a real server's tunnel sees it.
type tunnelled struct {
	src, dst  netip.Addr // outer addresses
	proto     uint8      // outer IPv4 protocol / IPv6 next header
	df        bool       // outer IPv4 don't fragment
	id        uint16     // outer IPv4 identification
	label     uint32     // outer IPv6 flow label
	sport     uint16     // GUE: UDP ports
	dport     uint16
	udpSum    uint16
	innerFrom int // offset of the inner IP packet in the frame
}

// decap checks the outer header of a frame the worker tunnelled (lengths, the IPv4 header checksum,
// the UDP checksum when not zero, the GUE header) and returns what it says.
func decap(tb testing.TB, b []byte, v4 bool) tunnelled {
	tb.Helper()
	var d tunnelled
	et := binary.BigEndian.Uint16(b[12:])
	off := 14
	if v4 {
		if et != 0x0800 {
			tb.Fatalf("EtherType %#04x, want IPv4", et)
		}
		h := b[off : off+20]
		if h[0] != 0x45 || int(binary.BigEndian.Uint16(h[2:])) != len(b)-off || h[8] != tunnelTTL {
			tb.Fatalf("outer IPv4 header %x: want version 4, IHL 5, total length %d, TTL %d", h, len(b)-off, tunnelTTL)
		}
		if checksum.Sum(h, 0) != 0xffff {
			tb.Fatalf("outer IPv4 header checksum is wrong: %x", h)
		}
		d.src, _ = netip.AddrFromSlice(h[12:16])
		d.dst, _ = netip.AddrFromSlice(h[16:20])
		d.proto, d.df, d.id = h[9], h[6]&0x40 != 0, binary.BigEndian.Uint16(h[4:])
		off += 20
	} else {
		if et != 0x86dd {
			tb.Fatalf("EtherType %#04x, want IPv6", et)
		}
		h := b[off : off+40]
		if h[0]>>4 != 6 || int(binary.BigEndian.Uint16(h[4:])) != len(b)-off-40 || h[7] != tunnelTTL {
			tb.Fatalf("outer IPv6 header %x: want version 6, payload length %d, hop limit %d", h, len(b)-off-40, tunnelTTL)
		}
		d.src, _ = netip.AddrFromSlice(h[8:24])
		d.dst, _ = netip.AddrFromSlice(h[24:40])
		d.proto, d.label = h[6], binary.BigEndian.Uint32(h[0:4])&0xfffff
		off += 40
	}
	if d.proto == frame.ProtoUDP {
		u := b[off:]
		d.sport, d.dport, d.udpSum = binary.BigEndian.Uint16(u[0:]), binary.BigEndian.Uint16(u[2:]), binary.BigEndian.Uint16(u[6:])
		if int(binary.BigEndian.Uint16(u[4:])) != len(u) {
			tb.Fatalf("UDP length %d, want %d", binary.BigEndian.Uint16(u[4:]), len(u))
		}
		if d.udpSum != 0 {
			pseudo := checksum.Pseudo(d.src.AsSlice(), d.dst.AsSlice(), frame.ProtoUDP, uint32(len(u)))
			if checksum.Sum(u, pseudo) != 0xffff {
				tb.Fatalf("GUE UDP checksum %#04x is wrong", d.udpSum)
			}
		}
		want := []byte{0, protoIPIP, 0, 0}
		if !v4 {
			want[1] = protoIPv6
		}
		if !bytes.Equal(u[8:12], want) {
			tb.Fatalf("GUE header %x, want %x (variant 0, inner protocol, no flags)", u[8:12], want)
		}
		off += 12
	}
	d.innerFrom = off
	return d
}

func TestTunnel(t *testing.T) {
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		for _, tc := range []struct {
			name, client, vip string
			proto             uint8
		}{
			{"ipv4/tcp", "198.18.1.10", "198.18.0.150:80", 6},
			{"ipv4/udp", "198.18.1.10", "198.18.0.150:4000", 17},
			{"ipv6/tcp", "2001:2:0:1::10", "[2001:2::150]:80", 6},
			{"ipv6/udp", "2001:2:0:1::10", "[2001:2::150]:4000", 17},
		} {
			t.Run(tn.String()+"/"+tc.name, func(t *testing.T) {
				r := newRig(t, tunTables(tn), 64)
				v4 := netip.MustParseAddrPort(tc.vip).Addr().Is4()
				src, reals := tunSrc6, []netip.Addr{netip.MustParseAddr("2001:2:0:2::1"), netip.MustParseAddr("2001:2:0:2::2")}
				if v4 {
					src, reals = tunSrc4, []netip.Addr{netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr("198.18.2.2")}
				}
				entropy := map[uint32]bool{}
				for flow := range 8 {
					client := netip.AddrPortFrom(netip.MustParseAddr(tc.client), uint16(40000+flow)).String()
					var first tunnelled
					for i, flags := range []uint8{tcpSYN, tcpACK, tcpACK | tcpFIN} {
						if tc.proto == 17 {
							flags = 0
						}
						in := build(t, clientPkt(client, tc.vip, tc.proto, flags))
						out := r.one(t, 0, in, afpacket.RxMeta{})
						want := macRS[flow%2] // round robin over the two real servers
						if dmac, smac := macs(out.frame); out.port != 1 || dmac != want || smac != macPort1 {
							t.Fatalf("flow %d packet %d: port %d MACs %x→%x, want port 1 %x→%x", flow, i, out.port, smac, dmac, macPort1, want)
						}
						if out.vnet != (afpacket.VnetHdr{}) {
							t.Fatalf("TX vnet %+v, want none", out.vnet)
						}
						d := decap(t, out.frame, v4)
						if d.src != src || d.dst != reals[flow%2] {
							t.Fatalf("flow %d: outer %v→%v, want %v→%v", flow, d.src, d.dst, src, reals[flow%2])
						}
						var p frame.Parsed
						frame.Parse(in, &p)
						if ip := in[14:p.End]; !bytes.Equal(out.frame[d.innerFrom:], ip) { // without Ethernet padding
							t.Fatalf("flow %d packet %d: inner packet changed:\n got %x\nwant %x", flow, i, out.frame[d.innerFrom:], ip)
						}
						switch {
						case tn == TunnelIPIP && v4 && d.proto != protoIPIP,
							tn == TunnelIPIP && !v4 && d.proto != protoIPv6,
							tn == TunnelGUE && d.proto != frame.ProtoUDP:
							t.Fatalf("outer protocol %d", d.proto)
						}
						if tn == TunnelGUE {
							if d.dport != 6080 || d.sport < 49152 {
								t.Fatalf("GUE ports %d→%d, want an ephemeral source port → 6080", d.sport, d.dport)
							}
							if v4 != (d.udpSum == 0) {
								t.Fatalf("GUE UDP checksum %#04x: want zero over IPv4, computed over IPv6", d.udpSum)
							}
						}
						if v4 && (!d.df || d.id != 0) {
							t.Fatalf("outer DF %v ID %d: the inner packet has DF, so must the outer, and then needs no ID", d.df, d.id)
						}
						if !v4 && d.label == 0 {
							t.Fatal("outer IPv6 flow label is 0, want the inner flow's entropy")
						}
						if i == 0 {
							first = d
						} else if d.sport != first.sport || d.label != first.label {
							t.Fatalf("flow %d packet %d: entropy changed within the flow: port %d label %#x, first %d %#x",
								flow, i, d.sport, d.label, first.sport, first.label)
						}
					}
					entropy[uint32(first.sport)<<20|first.label] = true
				}
				if (tn == TunnelGUE || !v4) && len(entropy) < 4 {
					t.Fatalf("8 flows got %d distinct outer source ports / flow labels, want them spread", len(entropy))
				}
			})
		}
	}
}

// TestTunnelNoDF: an IPv4 packet that may be fragmented goes in an outer packet that may be
// fragmented too, with an ID of its own.
func TestTunnelNoDF(t *testing.T) {
	r := newRig(t, tunTables(TunnelIPIP), 64)
	ids := map[uint16]bool{}
	for i := range 3 {
		in := build(t, clientPkt("198.18.1.10:40000", "198.18.0.150:4000", 17, 0))
		in[14+6] &^= 0x40 // clear DF
		binary.BigEndian.PutUint16(in[14+10:], 0)
		binary.BigEndian.PutUint16(in[14+10:], checksum.IPv4Header(in[14:34]))
		out := r.one(t, 0, in, afpacket.RxMeta{})
		d := decap(t, out.frame, true)
		if d.df {
			t.Fatalf("packet %d: outer DF set for an inner packet without it", i)
		}
		ids[d.id] = true
	}
	if len(ids) != 3 {
		t.Fatalf("3 outer packets had %d distinct IDs", len(ids))
	}
}

// TestTunnelPartialChecksum: a local sender's partial checksum is finished before the packet is
// encapsulated (no device finishes it inside a tunnel), and GSO super-frames are dropped.
func TestTunnelPartialChecksum(t *testing.T) {
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		t.Run(tn.String(), func(t *testing.T) {
			r := newRig(t, tunTables(tn), 64)
			in := build(t, clientPkt("198.18.1.10:40000", "198.18.0.150:80", 6, tcpSYN))
			vnet := makePartial(t, in)
			out := r.one(t, 0, in, afpacket.RxMeta{Vnet: vnet})
			if out.vnet != (afpacket.VnetHdr{}) {
				t.Fatalf("TX vnet %+v, want none", out.vnet)
			}
			d := decap(t, out.frame, true)
			// The inner packet with an Ethernet header, as the real server's tunnel delivers it.
			checkChecksums(t, append(append([]byte(nil), out.frame[:14]...), out.frame[d.innerFrom:]...))
			if n := r.w.c[cCsumCompleted]; n != 1 {
				t.Fatalf("%d checksums completed in software, want 1", n)
			}

			// UDP segmentation offload is not undone: dropped, counted.
			u := clientPkt("198.18.1.10:40000", "198.18.0.150:4000", 17, 0)
			u.payload = 3 * 1400
			b := build(t, u)
			vnet = makePartial(t, b)
			vnet.GSOType, vnet.GSOSize, vnet.HdrLen = afpacket.VnetHdrGSOUDPL4, 1400, 14+20+8
			r.none(t, 0, b, afpacket.RxMeta{Vnet: vnet}, DropTunnelGSO)
		})
	}
}

// TestTunnelGSO: a TCP GSO super-frame (a local sender's TSO) is cut into the segments its sender
// asked for, each encapsulated, as the kernel would have sent them: consecutive sequence numbers and
// IPv4 IDs, PSH (and FIN) on the last only, valid checksums, the payload whole and in order.
func TestTunnelGSO(t *testing.T) {
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		for _, v4 := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/v4=%v", tn, v4), func(t *testing.T) {
				r := newRig(t, tunTables(tn), 64)
				client, vip, gso, l3 := "198.18.1.10:40000", "198.18.0.150:80", uint8(afpacket.VnetHdrGSOTCPv4), 20
				if !v4 {
					client, vip, gso, l3 = "[2001:2:0:1::10]:40000", "[2001:2::150]:80", afpacket.VnetHdrGSOTCPv6, 40
				}
				r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{})
				p := clientPkt(client, vip, 6, tcpACK|tcpFIN)
				p.payload, p.ipID = 3*1000+123, 7
				b := build(t, p)
				vnet := makePartial(t, b)
				vnet.GSOType, vnet.GSOSize, vnet.HdrLen = gso, 1000, uint16(14+l3+20)
				out := r.process(0, b, afpacket.RxMeta{Vnet: vnet, Status: afpacket.StatusGSOTCP})
				if len(out) != 4 {
					t.Fatalf("%d frames sent, want 4 segments; counters %v", len(out), nonZero(r.w))
				}
				var payload []byte
				for i, o := range out {
					d := decap(t, o.frame, v4)
					if o.port != 1 || o.vnet != (afpacket.VnetHdr{}) {
						t.Fatalf("segment %d: port %d vnet %+v", i, o.port, o.vnet)
					}
					seg := append(append([]byte(nil), o.frame[:14]...), o.frame[d.innerFrom:]...)
					checkChecksums(t, seg)
					var q frame.Parsed
					if err := frame.Parse(seg, &q); err != frame.ErrNone {
						t.Fatalf("segment %d does not parse: %v", i, err)
					}
					tcp := seg[q.L4Off:]
					want := 1000
					if i == 3 {
						want = 123
					}
					if got := len(seg) - int(q.L4Off) - 20; got != want {
						t.Fatalf("segment %d has %d bytes of payload, want %d", i, got, want)
					}
					if seq := binary.BigEndian.Uint32(tcp[4:]); seq != 1000+uint32(1000*i) {
						t.Fatalf("segment %d: seq %d, want %d", i, seq, 1000+1000*i)
					}
					if f, last := tcp[13], i == 3; (f&(tcpPSH|tcpFIN) != 0) != last || f&tcpACK == 0 {
						t.Fatalf("segment %d: flags %#x", i, f)
					}
					if v4 {
						if id := binary.BigEndian.Uint16(seg[14+4:]); id != 7+uint16(i) {
							t.Fatalf("segment %d: IPv4 ID %d, want %d", i, id, 7+i)
						}
					}
					payload = append(payload, tcp[20:]...)
				}
				var q frame.Parsed
				frame.Parse(b, &q)
				if !bytes.Equal(payload, b[q.L4Off+20:q.End]) {
					t.Fatal("the segments' payload is not the super-frame's")
				}
				if r.w.c[cTunnelSegmented] != 1 || r.w.c[cForwarded] != 2 {
					t.Fatalf("tunnel_segmented %d forwarded %d, want 1 and 2", r.w.c[cTunnelSegmented], r.w.c[cForwarded])
				}
			})
		}
	}
}

// TestTunnelICMPError: an ICMP error from the client side about a tunnelled connection reaches its
// real server the way the connection's packets do: encapsulated, with the flow's entropy.
func TestTunnelICMPError(t *testing.T) {
	for _, v4 := range []bool{true, false} {
		t.Run(fmt.Sprint("v4=", v4), func(t *testing.T) {
			r := newRig(t, tunTables(TunnelGUE), 64)
			client, vip, router := mustAP("198.18.1.10:40000"), mustAP("198.18.0.150:80"), netip.MustParseAddr("198.18.1.1")
			typ, code := uint8(3), uint8(4)
			if !v4 {
				client, vip, router = mustAP("[2001:2:0:1::10]:40000"), mustAP("[2001:2::150]:80"), netip.MustParseAddr("2001:2:0:1::1")
				typ, code = 2, 0
			}
			first := decap(t, r.one(t, 0, build(t, clientPkt(client.String(), vip.String(), 6, tcpSYN)), afpacket.RxMeta{}).frame, v4)

			// The real server's answer (VIP → client) is too big for a router on the client side.
			reply := pkt{srcMAC: macRS[0], dstMAC: macClient, src: vip, dst: client, proto: 6, flags: tcpACK, payload: 11}
			f := icmpFrame(t, macRouter, macPort0, router, vip.Addr(), typ, code, 1400, quotedPacket(t, reply))
			out := r.one(t, 0, f, afpacket.RxMeta{})
			if dmac, _ := macs(out.frame); out.port != 1 || dmac != macRS[0] {
				t.Fatalf("ICMP error went out port %d to %x, want port 1 to %x", out.port, dmac, macRS[0])
			}
			d := decap(t, out.frame, v4)
			if d.dst != first.dst || d.sport != first.sport || d.label != first.label {
				t.Fatalf("ICMP error tunnelled to %v port %d label %#x, the connection's packets to %v port %d label %#x",
					d.dst, d.sport, d.label, first.dst, first.sport, first.label)
			}
			if !bytes.Equal(out.frame[d.innerFrom:], f[14:]) {
				t.Fatal("the ICMP error was changed inside the tunnel")
			}
			if n := r.w.c[cICMPErrors]; n != 1 {
				t.Fatalf("icmp_errors_forwarded = %d, want 1", n)
			}
		})
	}
}

// TestTunnelNoAllocs: encapsulating allocates nothing.
func TestTunnelNoAllocs(t *testing.T) {
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		r := newRig(t, tunTables(tn), 64)
		syn := build(t, clientPkt("[2001:2:0:1::10]:40000", "[2001:2::150]:80", 6, tcpSYN))
		r.one(t, 0, syn, afpacket.RxMeta{})
		for _, p := range r.ports {
			p.Sink = nil // the test's collector copies; the data plane must not allocate
		}
		ack := build(t, clientPkt("[2001:2:0:1::10]:40000", "[2001:2::150]:80", 6, tcpACK))
		buf := make([]byte, len(ack))
		var p frame.Parsed
		if frame.Parse(ack, &p) != frame.ErrNone {
			t.Fatal("test frame does not parse")
		}
		allocs := testing.AllocsPerRun(100, func() {
			copy(buf, ack)
			r.now += 1e6
			r.w.Process(0, buf, &afpacket.RxMeta{Len: uint32(len(buf))}, r.now)
			r.w.FlushAll()
		})
		if allocs != 0 {
			t.Fatalf("%v: %v allocations per frame, want 0", tn, allocs)
		}
	}
}

// TestTunnelTooBig: a packet that would exceed the path MTU to its real server once encapsulated is
// not sent; the client gets, from the VIP, fragmentation needed (IPv4 with DF) or packet too big
// (IPv6) with the MTU left inside the tunnel, quoting the start of its packet; a packet that fits
// exactly is tunnelled. The answers are rate-limited per worker.
func TestTunnelTooBig(t *testing.T) {
	const pathMTU = 1400
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		for _, v4 := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/v4=%v", tn, v4), func(t *testing.T) {
				tb := tunTables(tn)
				for _, r := range tb.Reals {
					r.MTU = pathMTU
				}
				r := newRig(t, tb, 64)
				client, vip, l3 := "198.18.1.10:40000", "198.18.0.150:80", 20+20
				if !v4 {
					client, vip, l3 = "[2001:2:0:1::10]:40000", "[2001:2::150]:80", 40+20
				}
				fam := uint8(4)
				if !v4 {
					fam = 6
				}
				room := pathMTU - tunnelOverhead(tb.Services[0], fam) // the MTU inside the tunnel
				r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{})

				p := clientPkt(client, vip, 6, tcpACK)
				p.payload = room - l3 // fits exactly
				out := r.one(t, 0, build(t, p), afpacket.RxMeta{})
				if d := decap(t, out.frame, v4); out.port != 1 || d.innerFrom+room != len(out.frame) {
					t.Fatalf("a packet of the tunnel's MTU went out port %d, %d bytes", out.port, len(out.frame))
				}

				p.payload++ // one byte too many
				big := build(t, p)
				out = r.one(t, 0, big, afpacket.RxMeta{})
				if dmac, smac := macs(out.frame); out.port != 0 || dmac != macClient || smac != macPort0 {
					t.Fatalf("too big: sent port %d %x→%x, want the ICMP error back out port 0 to the client", out.port, smac, dmac)
				}
				checkChecksums(t, out.frame)
				var e, q frame.Parsed
				if err := frame.Parse(out.frame, &e); err != frame.ErrNone {
					t.Fatalf("the ICMP error does not parse: %v", err)
				}
				if err := frame.ParseICMPError(out.frame, &e, &q); err != frame.ErrNone {
					t.Fatalf("the ICMP error's quote does not parse: %v", err)
				}
				from, to := netip.AddrFrom16(e.Src).Unmap(), netip.AddrFrom16(e.Dst).Unmap()
				if from != mustAP(vip).Addr() || to != mustAP(client).Addr() {
					t.Fatalf("ICMP error %v→%v, want from the VIP to the client", from, to)
				}
				qs := netip.AddrPortFrom(netip.AddrFrom16(q.Src).Unmap(), q.SrcPort)
				if qs != mustAP(client) {
					t.Fatalf("the ICMP error quotes a packet from %v", qs)
				}
				icmp := out.frame[e.L4Off:]
				var mtu int
				if v4 {
					if icmp[0] != 3 || icmp[1] != 4 {
						t.Fatalf("ICMP type %d code %d, want 3/4 (fragmentation needed)", icmp[0], icmp[1])
					}
					mtu = int(binary.BigEndian.Uint16(icmp[6:]))
					if len(out.frame)-14 > 576 {
						t.Fatalf("IPv4 ICMP error of %d bytes, more than 576", len(out.frame)-14)
					}
				} else {
					if icmp[0] != 2 || icmp[1] != 0 {
						t.Fatalf("ICMPv6 type %d code %d, want 2/0 (packet too big)", icmp[0], icmp[1])
					}
					mtu = int(binary.BigEndian.Uint32(icmp[4:]))
					if len(out.frame)-14 > 1280 {
						t.Fatalf("ICMPv6 error of %d bytes, more than 1280", len(out.frame)-14)
					}
				}
				if mtu != room {
					t.Fatalf("the ICMP error says MTU %d, want %d", mtu, room)
				}
				if got := r.w.c[cDropBase+int(DropTunnelTooBig)]; got != 1 {
					t.Fatalf("tunnel_too_big = %d, want 1", got)
				}

				// A flood of too-big packets: the first tooBigBurst are answered, the rest only counted,
				// until time refills the budget.
				answered := 0
				for range 2 * tooBigBurst {
					buf := append([]byte(nil), big...)
					r.w.Process(0, buf, &afpacket.RxMeta{Len: uint32(len(buf))}, r.now)
					r.w.FlushAll()
				}
				answered = int(r.w.c[cTooBigSent])
				if answered != tooBigBurst || r.w.c[cTooBigLimited] != tooBigBurst+1 {
					t.Fatalf("%d answered, %d rate-limited of %d too big at once; want %d and %d",
						answered, r.w.c[cTooBigLimited], 2*tooBigBurst+1, tooBigBurst, tooBigBurst+1)
				}
				r.now += 1e9
				r.one(t, 0, big, afpacket.RxMeta{})
			})
		}
	}
	t.Run("no DF", func(t *testing.T) {
		tb := tunTables(TunnelIPIP)
		for _, r := range tb.Reals {
			r.MTU = pathMTU
		}
		r := newRig(t, tb, 64)
		p := clientPkt("198.18.1.10:40000", "198.18.0.150:4000", 17, 0)
		p.payload = pathMTU
		in := build(t, p)
		in[14+6] &^= 0x40
		binary.BigEndian.PutUint16(in[14+10:], 0)
		binary.BigEndian.PutUint16(in[14+10:], checksum.IPv4Header(in[14:34]))
		if outs := r.process(0, in, afpacket.RxMeta{}); len(outs) != 2 {
			t.Fatalf("%d frames for a datagram without DF twice the tunnel's room, want 2 fragments", len(outs))
		}
		if n := r.w.c[cTooBigSent]; n != 0 {
			t.Fatalf("%d ICMP errors for a packet that may be fragmented, want none", n)
		}
	})
}

// TestTunnelSplit: an IPv4 packet without DF that does not fit the tunnel is cut into inner
// fragments that each fit it encapsulated, IPIP and GUE, with options (only the copied one
// repeats); put together, they are the client's packet. (TestTunnelFragments has the client's own
// fragments cut further.)
func TestTunnelSplit(t *testing.T) {
	const pathMTU = 600
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		for _, tc := range []struct {
			name    string
			options []byte
		}{
			{"plain", nil},
			{"options", []byte{0x94, 4, 0, 0, 1, 0x07, 3, 0}}, // router alert (copied), NOP, record route (not)
		} {
			t.Run(fmt.Sprintf("%v/%s", tn, tc.name), func(t *testing.T) {
				tb := tunTables(tn)
				for _, r := range tb.Reals {
					r.MTU = pathMTU
				}
				r := newRig(t, tb, 64)
				p := clientPkt("198.18.1.10:40000", "198.18.0.150:4000", 17, 0)
				p.payload = 1700
				plain := build(t, p)
				ip := plain[14:]
				in := append(append(append([]byte(nil), plain[:14+20]...), tc.options...), ip[20:]...)
				h := in[14:]
				h[0] = 0x45 + uint8(len(tc.options)/4)
				binary.BigEndian.PutUint16(h[2:], uint16(len(h)))
				binary.BigEndian.PutUint16(h[4:], 0x1234)
				binary.BigEndian.PutUint16(h[6:], 0)
				h[10], h[11] = 0, 0
				binary.BigEndian.PutUint16(h[10:], checksum.IPv4Header(h[:20+len(tc.options)]))
				before := r.w.c[cTunnelFragmented]
				outs := r.process(0, in, afpacket.RxMeta{})
				if len(outs) < 3 || r.w.c[cTunnelFragmented] != before+1 {
					t.Fatalf("%d frames, tunnel_fragmented +%d for a %d-byte packet through a %d-byte path MTU; want 3 or more fragments, +1",
						len(outs), r.w.c[cTunnelFragmented]-before, len(h), pathMTU)
				}
				data := make([]byte, 0, len(h))
				next := 0
				for i, o := range outs {
					d := decap(t, o.frame, true)
					f := o.frame[d.innerFrom:]
					if len(o.frame)-14 > pathMTU || d.df || o.port != 1 {
						t.Fatalf("fragment %d: %d bytes outer (path MTU %d), DF %v, port %d", i, len(o.frame)-14, pathMTU, d.df, o.port)
					}
					if checksum.Sum(f[:int(f[0]&0xf)*4], 0) != 0xffff || int(binary.BigEndian.Uint16(f[2:])) != len(f) {
						t.Fatalf("fragment %d: header checksum or length wrong: %x", i, f[:20])
					}
					hl := int(f[0]&0xf) * 4
					field := binary.BigEndian.Uint16(f[6:])
					wantOpts := tc.options
					if i > 0 && tc.options != nil {
						wantOpts = []byte{0x94, 4, 0, 0}
					}
					if !bytes.Equal(f[20:hl], wantOpts) || binary.BigEndian.Uint16(f[4:]) != 0x1234 {
						t.Fatalf("fragment %d: options %x ID %#x, want %x and the client's ID", i, f[20:hl], binary.BigEndian.Uint16(f[4:]), wantOpts)
					}
					if int(field&0x1fff)*8 != next {
						t.Fatalf("fragment %d at offset %d, want %d", i, int(field&0x1fff)*8, next)
					}
					last := i == len(outs)-1
					if more := field&0x2000 != 0; more == last {
						t.Fatalf("fragment %d of %d: MF %v", i, len(outs), more)
					}
					if !last && (len(f)-hl)%8 != 0 {
						t.Fatalf("fragment %d carries %d bytes, not a multiple of 8", i, len(f)-hl)
					}
					data = append(data, f[hl:]...)
					next += len(f) - hl
				}
				if !bytes.Equal(data, h[20+len(tc.options):]) {
					t.Fatal("the fragments' data is not the client's packet's")
				}
			})
		}
	}
}

// TestTunnelVLAN: a VLAN tag the receive path stripped is put back in front of the encapsulated
// frame, as transmit does for the other methods, and in front of a too-big answer.
func TestTunnelVLAN(t *testing.T) {
	in := build(t, clientPkt("198.18.1.10:40000", "198.18.0.150:80", 6, tcpSYN))
	meta := afpacket.RxMeta{Status: afpacket.StatusVLANValid, VLANTCI: 0x2064}
	plain := newRig(t, tunTables(TunnelGUE), 64).one(t, 0, in, afpacket.RxMeta{})
	out := newRig(t, tunTables(TunnelGUE), 64).one(t, 0, in, meta)
	want := append(append(append([]byte(nil), plain.frame[:12]...), 0x81, 0x00, 0x20, 0x64), plain.frame[12:]...)
	copy(want[14+4+20:], out.frame[14+4+20:14+4+22]) // the GUE source port: each rig's table hashes with a seed of its own
	if !bytes.Equal(out.frame, want) {
		t.Fatalf("tagged tunnelled frame:\n got %x\nwant %x", out.frame, want)
	}

	tb := tunTables(TunnelIPIP)
	for _, r := range tb.Reals {
		r.MTU = 60 // the 51-byte SYN does not fit with 20 bytes of IPIP
	}
	out = newRig(t, tb, 64).one(t, 0, in, meta)
	if out.port != 0 || !bytes.Equal(out.frame[12:16], []byte{0x81, 0x00, 0x20, 0x64}) {
		t.Fatalf("too-big answer on port %d starts %x, want port 0 and the tag", out.port, out.frame[:16])
	}
	untagged := append(append([]byte(nil), out.frame[:12]...), out.frame[16:]...)
	checkChecksums(t, untagged)
}

// TestTunnelExpress: ProcessBatch's express lane tunnels an established tun connection's frames
// exactly as forward does, and leaves to forward what it must not take: a frame too big for the
// tunnel (forward answers the client) and a frame with offload state.
func TestTunnelExpress(t *testing.T) {
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		for _, v4 := range []bool{true, false} {
			t.Run(fmt.Sprintf("%v/v4=%v", tn, v4), func(t *testing.T) {
				tb := tunTables(tn)
				for _, r := range tb.Reals {
					r.MTU = 1400
				}
				r := newRig(t, tb, 64)
				client, vip := "198.18.1.10:40000", "198.18.0.150:80"
				if !v4 {
					client, vip = "[2001:2:0:1::10]:40000", "[2001:2::150]:80"
				}
				r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{})
				batch := func(b []byte, meta afpacket.RxMeta) []sent {
					for i := range r.out {
						r.out[i].Frames, r.out[i].Vnets = nil, nil
					}
					meta.Len = uint32(len(b))
					r.now += 1e6
					r.w.ProcessBatch(0, []afpacket.Frame{{Data: append([]byte(nil), b...), Meta: meta}}, r.now)
					return r.flushed()
				}
				ack := build(t, clientPkt(client, vip, 6, tcpACK))
				want := r.one(t, 0, ack, afpacket.RxMeta{})
				express := r.w.c[cExpress]
				got := batch(ack, afpacket.RxMeta{})
				if len(got) != 1 || !bytes.Equal(got[0].frame, want.frame) || got[0].port != want.port {
					t.Fatalf("express lane sent %d frames, first %x; forward sent %x", len(got), got, want.frame)
				}
				if r.w.c[cExpress] != express+1 {
					t.Fatal("the established connection's frame did not take the express lane")
				}

				p := clientPkt(client, vip, 6, tcpACK)
				p.payload = 1400
				if out := batch(build(t, p), afpacket.RxMeta{}); len(out) != 1 || out[0].port != 0 || r.w.c[cTooBigSent] != 1 {
					t.Fatalf("too big in a batch: %d frames sent, too-big answers %d; want one answer back to the client", len(out), r.w.c[cTooBigSent])
				}
				partial := append([]byte(nil), ack...)
				vnet := makePartial(t, partial)
				out := batch(partial, afpacket.RxMeta{Vnet: vnet})
				if len(out) != 1 || r.w.c[cExpress] != express+1 || r.w.c[cCsumCompleted] != 1 {
					t.Fatalf("partial checksum in a batch: %d frames, express %d, completed %d", len(out), r.w.c[cExpress]-express, r.w.c[cCsumCompleted])
				}
			})
		}
	}
}

// TestTunnelFragments: every fragment of a datagram to a tun service goes through the tunnel its
// first fragment took (two workers fed as the fanout feeds them; some datagrams last fragment
// first), with the same outer entropy, and the inner fragments reassemble whole.
func TestTunnelFragments(t *testing.T) {
	for _, tc := range []struct {
		client, vip string
		mtu         int // the real servers' path MTU; 0: unchecked
	}{
		{"198.18.1.7", "198.18.0.150:4000", 0}, {"2001:2:0:1::7", "[2001:2::150]:4000", 0},
		{"198.18.1.7", "198.18.0.150:4000", 1000}, // each fragment cut again (tunnelFragments)
	} {
		t.Run(fmt.Sprintf("%s/mtu=%d", tc.client, tc.mtu), func(t *testing.T) {
			tb := tunTables(TunnelGUE)
			for _, r := range tb.Reals {
				r.MTU = tc.mtu
			}
			r := newFragRig(t, tb)
			vip := mustAP(tc.vip)
			v4 := vip.Addr().Is4()
			fw := addrWorker(netip.MustParseAddr(tc.client))
			for port := uint16(20000); port < 20008; port++ {
				client := netip.AddrPortFrom(netip.MustParseAddr(tc.client), port)
				b := build(t, pkt{srcMAC: macClient, dstMAC: macPort0, src: client, dst: vip, proto: 17, payload: 3000})
				frags := dataplanetest.Fragment(b, 1500, uint32(port))
				if port%2 == 1 {
					slices.Reverse(frags)
				}
				got := r.run(fw, 0, 1, frags)
				if len(got) < len(frags) || (tc.mtu == 0) != (len(got) == len(frags)) {
					t.Fatalf("%v: %d frames tunnelled for %d fragments; counters %v %v", client, len(got), len(frags), nonZero(r.ws[0]), nonZero(r.ws[1]))
				}
				var inner [][]byte
				var first tunnelled
				for i, f := range got {
					d := decap(t, f, v4)
					if tc.mtu > 0 && len(f)-14 > tc.mtu {
						t.Fatalf("%v: an outer packet of %d bytes, over the path MTU %d", client, len(f)-14, tc.mtu)
					}
					if i == 0 {
						first = d
					} else if d.dst != first.dst || d.sport != first.sport || d.label != first.label {
						t.Fatalf("%v: fragment %d tunnelled to %v port %d label %#x, fragment 0 to %v port %d label %#x",
							client, i, d.dst, d.sport, d.label, first.dst, first.sport, first.label)
					}
					inner = append(inner, append(append([]byte(nil), f[:14]...), f[d.innerFrom:]...))
				}
				whole, err := dataplanetest.Reassemble(inner)
				if err != nil {
					t.Fatalf("%v: %v", client, err)
				}
				checkChecksums(t, whole)
				if s, d := tuple(t, whole); s != client || d != vip {
					t.Fatalf("%v: datagram arrives as %v -> %v", client, s, d)
				}
			}
			if r.sum(cFragLater) == 0 || r.sum(cFragHeld) == 0 {
				t.Errorf("want later fragments held and forwarded; counters %v %v", nonZero(r.ws[0]), nonZero(r.ws[1]))
			}
		})
	}
}
