package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/internal/checksum"
)

// pmtuCase is one family and encapsulation of the path MTU tests: a client and the VIP of the TCP
// service, a router on the way to the real servers, and the real server the first connection goes to.
type pmtuCase struct {
	tn             Tunnel
	v4             bool
	client, vip    string
	router, src    netip.Addr
	typ, code      uint8
	floor, routeMT int // the path MTU's lower bound, the route's MTU
}

func pmtuCases() []pmtuCase {
	var cs []pmtuCase
	for _, tn := range []Tunnel{TunnelIPIP, TunnelGUE} {
		cs = append(cs,
			pmtuCase{tn, true, "198.18.1.10:40000", "198.18.0.150:80", netip.MustParseAddr("198.18.2.253"), tunSrc4, 3, 4, pmtuMin4, 1500},
			pmtuCase{tn, false, "[2001:2:0:1::10]:40000", "[2001:2::150]:80", netip.MustParseAddr("2001:2:0:2::fd"), tunSrc6, 2, 0,
				pmtuMin6 + tunnelOverhead(&Service{Tunnel: tn}, 6), 1500}) // 1280 left inside the tunnel
	}
	return cs
}

// pmtuRig is a worker whose tun real servers have a route MTU of c.routeMT, with one connection
// set up; outer is the outer packet (IP header onwards) of its SYN as it left, DF set and its
// length made a full-size packet's, as a router would quote it.
func pmtuRig(t *testing.T, c pmtuCase) (r *rig, outer []byte) {
	t.Helper()
	tb := tunTables(c.tn)
	for _, x := range tb.Reals {
		x.MTU = c.routeMT
	}
	tb.Finish()
	r = newRig(t, tb, 64)
	out := r.one(t, 0, build(t, clientPkt(c.client, c.vip, 6, tcpSYN)), afpacket.RxMeta{})
	outer = append([]byte(nil), out.frame[14:]...)
	if c.v4 {
		outer[6] |= ipv4FlagDF
		binary.BigEndian.PutUint16(outer[2:], uint16(c.routeMT))
	} else {
		binary.BigEndian.PutUint16(outer[4:], uint16(c.routeMT-frame.IPv6MinimumSize))
	}
	return r, outer
}

// tooBigAbout is the router's ICMP too-big error to c's tunnel source about outer, reporting mtu.
func tooBigAbout(t testing.TB, c pmtuCase, outer []byte, mtu int) []byte {
	return icmpFrame(t, macRouter, macPort1, c.router, c.src, c.typ, c.code, uint32(mtu), outer)
}

// sendSized sends the connection's client packet of size bytes (IP header onwards) and reports
// whether it went into the tunnel (true) or got the client a too-big error (false, with its MTU).
func sendSized(t *testing.T, r *rig, c pmtuCase, size int) (tunnelled bool, mtu int) {
	t.Helper()
	p := clientPkt(c.client, c.vip, 6, tcpACK)
	p.payload = size - 40
	if !c.v4 {
		p.payload = size - 60
	}
	b := build(t, p)
	if c.v4 {
		b[14+6] |= ipv4FlagDF
		b[14+10], b[14+11] = 0, 0
		binary.BigEndian.PutUint16(b[14+10:], checksum.IPv4Header(b[14:34]))
	}
	out := r.one(t, 0, b, afpacket.RxMeta{})
	if out.port == 1 {
		return true, 0
	}
	icmp := out.frame[14+20:]
	if !c.v4 {
		return false, int(binary.BigEndian.Uint32(out.frame[14+40+4:]))
	}
	return false, int(binary.BigEndian.Uint16(icmp[6:]))
}

// TestPathMTULearned: a router's fragmentation needed / packet too big about a packet govs
// tunnelled lowers that real server's path MTU: the client's next packet that no longer fits is
// answered with the MTU left inside the tunnel, a packet that fits still goes; a higher MTU is
// ignored while the lower one lasts, the same one renews it, a lower one replaces it; a report
// below the floor gives the floor; after pmtuExpires the route's MTU is back.
func TestPathMTULearned(t *testing.T) {
	for _, c := range pmtuCases() {
		t.Run(fmt.Sprintf("%v/v4=%v", c.tn, c.v4), func(t *testing.T) {
			r, outer := pmtuRig(t, c)
			over := tunnelOverhead(r.tables.Services[0], map[bool]uint8{true: 4, false: 6}[c.v4])
			if ok, _ := sendSized(t, r, c, c.routeMT-over); !ok {
				t.Fatal("a packet of the route's MTU did not go into the tunnel")
			}
			learn := func(mtu int, want uint64) {
				t.Helper()
				before := r.w.c[cTunnelPMTULearned]
				if out := r.process(1, tooBigAbout(t, c, outer, mtu), afpacket.RxMeta{}); len(out) != 0 {
					t.Fatalf("the router's error about the tunnel was forwarded: %d frames", len(out))
				}
				if got := r.w.c[cTunnelPMTULearned] - before; got != want {
					t.Fatalf("MTU %d: tunnel_pmtu_learned +%d, want +%d; counters %v", mtu, got, want, nonZero(r.w))
				}
			}
			check := func(pathMTU int) {
				t.Helper()
				if ok, _ := sendSized(t, r, c, pathMTU-over); !ok {
					t.Fatalf("a packet of the path MTU %d did not go into the tunnel", pathMTU)
				}
				want := pathMTU - over
				if !c.v4 {
					want = max(want, ipv6MinMTU) // no IPv6 link is narrower (RFC 8200)
				}
				if ok, mtu := sendSized(t, r, c, pathMTU-over+1); ok || mtu != want {
					t.Fatalf("one byte over the path MTU %d: tunnelled %v, the client told MTU %d; want %d", pathMTU, ok, mtu, want)
				}
			}
			learn(1400, 1)
			check(1400)
			learn(1450, 0) // higher: ignored while 1400 lasts
			check(1400)
			learn(1400, 1) // the same: renewed
			learn(1350, 1)
			check(1350)
			if n := r.w.c[cDropBase+int(DropICMPNoConnection)]; n != 0 {
				t.Fatalf("icmp_no_connection %d: the router's errors were taken for strangers", n)
			}
			r.now += pmtuExpires
			check(c.routeMT)
			learn(100, 1)
			check(c.floor)
		})
	}
}

// TestPathMTUForged: too-big errors that do not quote a packet govs tunnelled, or report nothing to
// learn, change nothing; those that look like one are counted as tunnel_pmtu_ignored.
func TestPathMTUForged(t *testing.T) {
	for _, c := range pmtuCases() {
		t.Run(fmt.Sprintf("%v/v4=%v", c.tn, c.v4), func(t *testing.T) {
			r, outer := pmtuRig(t, c)
			other := netip.MustParseAddr("198.18.2.99")
			if !c.v4 {
				other = netip.MustParseAddr("2001:2:0:2::99")
			}
			srcAt, protoAt := 12, 9
			if !c.v4 {
				srcAt, protoAt = 8, 6
			}
			edit := func(f func(q []byte)) []byte {
				q := append([]byte(nil), outer...)
				f(q)
				return q
			}
			type forged struct {
				name    string
				frame   []byte
				ignored bool // counted as tunnel_pmtu_ignored (else icmp_no_connection)
			}
			cases := []forged{
				{"to another address", icmpFrame(t, macRouter, macPort1, c.router, other, c.typ, c.code, 1400, outer), true},
				{"quoting another source", icmpFrame(t, macRouter, macPort1, c.router, other, c.typ, c.code, 1400,
					edit(func(q []byte) { copy(q[srcAt:], other.AsSlice()) })), true},
				{"quoting a packet no longer than the MTU", tooBigAbout(t, c, outer, c.routeMT), true},
				{"an MTU not below the route's", tooBigAbout(t, c, edit(func(q []byte) {
					if c.v4 {
						binary.BigEndian.PutUint16(q[2:], 9000)
					} else {
						binary.BigEndian.PutUint16(q[4:], 9000)
					}
				}), c.routeMT), true},
			}
			wrongProto := uint8(frame.ProtoUDP) // UDP to no GUE port of an IPIP real server: not a tunnel packet
			if c.tn == TunnelGUE {
				wrongProto = protoIPIP // IPIP to a GUE real server
				if !c.v4 {
					wrongProto = protoIPv6
				}
			}
			cases = append(cases, forged{"another protocol", tooBigAbout(t, c, edit(func(q []byte) { q[protoAt] = wrongProto }), 1400), c.tn == TunnelGUE})
			if c.v4 {
				cases = append(cases, forged{"without DF", tooBigAbout(t, c, edit(func(q []byte) { q[6] &^= ipv4FlagDF }), 1400), true})
			}
			for _, f := range cases {
				ign, strangers := r.w.c[cTunnelPMTUIgnored], r.w.c[cDropBase+int(DropICMPNoConnection)]
				if out := r.process(1, f.frame, afpacket.RxMeta{}); len(out) != 0 {
					t.Fatalf("%s: forwarded %d frames", f.name, len(out))
				}
				dIgn, dStr := r.w.c[cTunnelPMTUIgnored]-ign, r.w.c[cDropBase+int(DropICMPNoConnection)]-strangers
				if (f.ignored && (dIgn != 1 || dStr != 0)) || (!f.ignored && (dIgn != 0 || dStr != 1)) {
					t.Fatalf("%s: tunnel_pmtu_ignored +%d, icmp_no_connection +%d; want it ignored=%v", f.name, dIgn, dStr, f.ignored)
				}
				if r.w.c[cTunnelPMTULearned] != 0 || effectiveMTU(r.tables.Reals[0], r.now) != c.routeMT {
					t.Fatalf("%s: a path MTU was learned", f.name)
				}
			}
		})
	}
}

// TestPathMTUInherit: new tables take the learned path MTU of the tables in force for a real server
// whose path is the same (a reload, a neighbour refresh), and start afresh where the route's MTU
// changed; every Real with the address shares it.
func TestPathMTUInherit(t *testing.T) {
	c := pmtuCases()[0]
	r, outer := pmtuRig(t, c)
	r.process(1, tooBigAbout(t, c, outer, 1400), afpacket.RxMeta{})
	rs0 := r.tables.Reals[0]
	if got := effectiveMTU(rs0, r.now); got != 1400 {
		t.Fatalf("learned %d, want 1400", got)
	}
	if same := r.tables.Reals[2]; same.Addr.Addr() != rs0.Addr.Addr() || effectiveMTU(same, r.now) != 1400 {
		t.Fatalf("the UDP service's real server at the same address has path MTU %d, want 1400", effectiveMTU(same, r.now))
	}
	next := tunTables(c.tn)
	for _, x := range next.Reals {
		x.MTU = c.routeMT
	}
	next.Finish()
	next.inheritPaths(r.tables)
	if got := effectiveMTU(next.Reals[0], r.now); got != 1400 {
		t.Fatalf("after a reload: %d, want the learned 1400", got)
	}
	changed := tunTables(c.tn)
	for _, x := range changed.Reals {
		x.MTU = 1480
	}
	changed.Finish()
	changed.inheritPaths(next)
	if got := effectiveMTU(changed.Reals[0], r.now); got != 1480 {
		t.Fatalf("after the route's MTU changed: %d, want the route's 1480", got)
	}
}

// FuzzTunnelMTU feeds arbitrary frames to a worker with tun services whose real servers' path MTU
// is small (600), seeded with datagrams without DF to cut, packets with DF to refuse, a client's
// fragment and a router's too-big error about a tunnelled packet: nothing may panic, and no frame
// the worker sends towards the real servers for a frame from the client side is larger than the
// path MTU, learned or not.
func FuzzTunnelMTU(f *testing.F) {
	const pathMTU = 600
	big := clientPkt("198.18.1.10:40000", "198.18.0.150:4000", 17, 0)
	big.payload = 1700
	noDF := build(f, big)
	f.Add(noDF, false, false)
	f.Add(noDF, true, false)
	withDF := append([]byte(nil), noDF...)
	withDF[14+6] |= ipv4FlagDF
	f.Add(withDF, false, false)
	opts := append(append(append([]byte(nil), noDF[:14+20]...), 0x94, 4, 0, 0, 0x07, 3, 0, 0), noDF[14+20:]...)
	opts[14] = 0x47
	f.Add(opts, false, false)
	big6 := clientPkt("[2001:2:0:1::10]:40000", "[2001:2::150]:4000", 17, 0)
	big6.payload = 1700
	f.Add(build(f, big6), true, false)
	for _, fr := range dataplanetest.Fragment(noDF, 1000, 7) { // the client's own fragments
		f.Add(fr, false, false)
	}
	c := pmtuCases()[0]
	f.Add(tooBigAbout(f, c, append([]byte(nil), noDF[14:14+pathMTU]...), 560), false, true)
	f.Fuzz(func(t *testing.T, b []byte, gue, fromRS bool) {
		tn := TunnelIPIP
		if gue {
			tn = TunnelGUE
		}
		tb := tunTables(tn)
		for _, x := range tb.Reals {
			x.MTU = pathMTU
		}
		tb.Finish()
		r := newRig(t, tb, 64)
		in := 0
		if fromRS {
			in = 1
		}
		for range 2 {
			for _, o := range r.process(in, b, afpacket.RxMeta{}) {
				if in == 0 && o.port == 1 && len(o.frame)-14 > pathMTU {
					t.Fatalf("a %d-byte frame to the real servers, over the path MTU %d", len(o.frame), pathMTU)
				}
			}
		}
	})
}

// TestPathMTUHostErrors: an ICMP error to the tunnels' outer source, one of the balancer's own
// addresses, about a packet that is not govs's (the host's own traffic, which the socket filter
// lets in with the path MTU signals) is left to the kernel, not counted as a drop.
func TestPathMTUHostErrors(t *testing.T) {
	for _, c := range pmtuCases() {
		t.Run(fmt.Sprintf("%v/v4=%v", c.tn, c.v4), func(t *testing.T) {
			r, outer := pmtuRig(t, c)
			hosts := &hostAddrs{}
			hosts.store([]netip.Addr{c.src})
			r.w.hosts = hosts
			q := append([]byte(nil), outer...)
			if c.v4 {
				q[9] = frame.ProtoTCP // the host's own segment, not a tunnel packet
			} else {
				q[6] = frame.ProtoTCP
			}
			r.w.Process(1, tooBigAbout(t, c, q, 1400), &afpacket.RxMeta{}, r.now)
			if n := r.w.c[cDropBase+int(DropICMPNoConnection)]; n != 0 {
				t.Fatalf("icmp_no_connection %d, want 0; counters: %v", n, nonZero(r.w))
			}
			if n := r.w.c[cTunnelPMTUIgnored] + r.w.c[cTunnelPMTULearned]; n != 0 {
				t.Fatalf("path MTU counters %d, want 0", n)
			}
		})
	}
}
