package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/frame"
)

// fullnatCase is one FullNAT service: its VIP, real server and local addresses.
type fullnatCase struct {
	name, client, vip, real string
	proto                   uint8
	locals                  []string
}

var fullnatCases = []fullnatCase{
	{"ipv4/tcp", "198.18.1.10", "198.18.0.100:80", "198.18.2.1:8080", 6, []string{"198.18.3.2", "198.18.3.3"}},
	{"ipv4/udp", "198.18.1.10", "198.18.0.100:4000", "198.18.2.1:4001", 17, []string{"198.18.3.2"}},
	{"ipv6/tcp", "2001:2:0:1::10", "[2001:2::100]:80", "[2001:2:0:2::1]:8080", 6, []string{"2001:2:0:3::2", "2001:2:0:3::3"}},
	{"ipv6/udp", "2001:2:0:1::10", "[2001:2::100]:4000", "[2001:2:0:2::1]:4001", 17, []string{"2001:2:0:3::2"}},
}

// fullnatTables is one FullNAT service of tc with its local ports lo..hi (0, 0: the default).
func fullnatTables(tc fullnatCase, lo, hi uint16) *Tables {
	t := buildTables(1, svcSpec{id: 0, vip: tc.vip, proto: tc.proto, method: MethodFullNAT,
		reals: []realSpec{{id: 0, addr: tc.real, weight: 1, mac: macRS[0]}}})
	s := t.Services[0]
	for _, l := range tc.locals {
		s.Locals = append(s.Locals, netip.MustParseAddr(l))
	}
	s.LocalPortMin, s.LocalPortMax = lo, hi
	t.Finish()
	return t
}

// later is the flags of a connection's later packets: an ACK for TCP.
func (tc fullnatCase) later() uint8 {
	if tc.proto == 6 {
		return tcpACK
	}
	return 0
}

// via returns how a test runs a frame through r: "general" is r.one, "express" ProcessBatch
// (express lane included).
func (r *rig) via(name string) func(testing.TB, int, []byte, afpacket.RxMeta) sent {
	if name == "express" {
		return func(tb testing.TB, in int, b []byte, _ afpacket.RxMeta) sent { return r.batchOne(tb, in, b) }
	}
	return r.one
}

// clientSideError is a router's ICMP error (destination unreachable or packet too big) to the VIP
// about the reply vip → client of a connection of protocol proto.
func clientSideError(t *testing.T, vip, client netip.AddrPort, proto uint8) []byte {
	router, typ, code := netip.MustParseAddr("198.18.1.1"), uint8(3), uint8(4)
	if client.Addr().Is6() {
		router, typ, code = netip.MustParseAddr("2001:2:0:1::1"), 2, 0
	}
	reply := pkt{src: vip, dst: client, proto: proto, flags: tcpSYN | tcpACK}
	return icmpFrame(t, macRouter, macPort0, router, vip.Addr(), typ, code, 1400, quotedPacket(t, reply))
}

// first is the flags of a connection's first packet: a SYN for TCP.
func (tc fullnatCase) first() uint8 {
	if tc.proto == 6 {
		return tcpSYN
	}
	return 0
}

// fullnatConnect opens a connection of client port 40000 through tc's service on a new rig, checks
// its first packet (to the real server, from tc's first local address, checksums valid) and
// returns the rig, the endpoints and the connection's local endpoint.
func fullnatConnect(t *testing.T, tc fullnatCase) (r *rig, client, vip, rs, local netip.AddrPort) {
	t.Helper()
	r = newRig(t, fullnatTables(tc, 0, 0), 64)
	client = netip.AddrPortFrom(netip.MustParseAddr(tc.client), 40000)
	vip, rs = mustAP(tc.vip), mustAP(tc.real)
	out := r.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, tc.first())), afpacket.RxMeta{})
	checkChecksums(t, out.frame)
	local, dst := tuple(t, out.frame)
	if dmac, _ := macs(out.frame); out.port != 1 || dmac != macRS[0] || dst != rs {
		t.Fatalf("first packet left port %d to %x, %v; want port 1 to %x, %v", out.port, dmac, dst, macRS[0], rs)
	}
	if local.Addr().String() != tc.locals[0] || local.Port() < DefaultLocalPorts[0] {
		t.Fatalf("source %v, want local address %s and a port from %d", local, tc.locals[0], DefaultLocalPorts[0])
	}
	return r, client, vip, rs, local
}

// batchOne runs b through ProcessBatch (express lane included) on port in and returns what left.
func (r *rig) batchOne(tb testing.TB, in int, b []byte) sent {
	tb.Helper()
	r.now += 1e6
	for i := range r.out {
		r.out[i].Frames, r.out[i].Vnets = nil, nil
	}
	fs := []afpacket.Frame{{Data: append([]byte(nil), b...), Meta: afpacket.RxMeta{Len: uint32(len(b))}}}
	r.w.ProcessBatch(in, fs, r.now)
	out := r.flushed()
	if len(out) != 1 {
		tb.Fatalf("transmitted %d frames, want 1; counters: %v", len(out), nonZero(r.w))
	}
	return out[0]
}

// TestFullNATForward sends a connection both ways through a FullNAT service: the client's packets
// leave with a local address and port as source and the real server as destination, the real
// server's replies to that local endpoint leave with the VIP as source and the client as
// destination, checksums valid, in the general path and in the express lane.
func TestFullNATForward(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			r, client, vip, rs, local := fullnatConnect(t, tc)
			var out sent
			for i, via := range []string{"general", "express"} {
				run := r.one
				if via == "express" {
					run = func(tb testing.TB, in int, b []byte, _ afpacket.RxMeta) sent { return r.batchOne(tb, in, b) }
				}
				express := r.w.c[cExpress]
				rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: local, proto: tc.proto, flags: tcpSYN | tcpACK, payload: 20 + i}
				if tc.proto != 6 {
					rp.flags = 0
				}
				out = run(t, 1, build(t, rp), afpacket.RxMeta{})
				checkChecksums(t, out.frame)
				s, d := tuple(t, out.frame)
				if dmac, _ := macs(out.frame); out.port != 0 || dmac != macClient || s != vip || d != client {
					t.Fatalf("%s: reply left port %d to %x as %v→%v; want port 0 to %x as %v→%v", via, out.port, dmac, s, d, macClient, vip, client)
				}
				flags := uint8(tcpACK)
				if tc.proto != 6 {
					flags = 0
				}
				out = run(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, flags)), afpacket.RxMeta{})
				checkChecksums(t, out.frame)
				if s, d := tuple(t, out.frame); s != local || d != rs {
					t.Fatalf("%s: client's packet left as %v→%v, want %v→%v (the connection's local endpoint)", via, s, d, local, rs)
				}
				if via == "express" && r.w.c[cExpress] != express+2 {
					t.Fatalf("express lane took %d of 2 frames; counters %v", r.w.c[cExpress]-express, nonZero(r.w))
				}
			}
			// To a local address but no connection: dropped, never forwarded.
			stray := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: netip.AddrPortFrom(local.Addr(), local.Port()+1), proto: tc.proto, flags: tcpACK}
			r.none(t, 1, build(t, stray), afpacket.RxMeta{}, DropNoConnection)
		})
	}
}

// TestFullNATPortAllocation checks the allocation of local ports: a worker gives out only the
// ports of its residue class, never the same (local address, port) twice towards a real server
// while the connection lives, refuses a connection cleanly when none is left (counted), and gives
// a port out again once its connection has expired.
func TestFullNATPortAllocation(t *testing.T) {
	tc := fullnatCases[1] // UDP: a datagram opens a connection
	tc.locals = []string{"198.18.3.2", "198.18.3.3"}
	r := newRig(t, fullnatTables(tc, 2000, 2009), 64)
	r.w.SetWorkers(2) // worker 0 of 2: the even ports 2000..2008, five per local address
	seen := map[netip.AddrPort]bool{}
	send := func(cport int) []sent {
		return r.process(0, build(t, clientPkt(fmt.Sprintf("198.18.1.10:%d", cport), tc.vip, 17, 0)), afpacket.RxMeta{})
	}
	for i := range 10 {
		out := send(30000 + i)
		if len(out) != 1 {
			t.Fatalf("connection %d: sent %d frames; counters %v", i, len(out), nonZero(r.w))
		}
		src, _ := tuple(t, out[0].frame)
		if seen[src] || src.Port()%2 != 0 || src.Port() < 2000 || src.Port() > 2009 {
			t.Fatalf("connection %d got local endpoint %v (taken before: %v); want a fresh even port in 2000-2009", i, src, seen[src])
		}
		seen[src] = true
	}
	// Every local endpoint of the class is taken: refused, counted, nothing sent.
	r.none(t, 0, build(t, clientPkt("198.18.1.10:31000", tc.vip, 17, 0)), afpacket.RxMeta{}, DropFullNATNoPort)
	// A live connection keeps its endpoint meanwhile.
	if out := send(30003); len(out) != 1 {
		t.Fatalf("a live connection's datagram: sent %d frames", len(out))
	}
	// Past the UDP timeout every connection expires, and the ports are free again.
	r.now += int64(r.w.ct.Timeout(r.w.ct.Get(0))) + 2e9
	r.w.ct.Expire(r.now, 1000, r.w.expireFn)
	if n := r.w.ct.Len(); n != 0 {
		t.Fatalf("%d entries left after expiry", n)
	}
	out := send(31000)
	if len(out) != 1 {
		t.Fatalf("after expiry: sent %d frames; counters %v", len(out), nonZero(r.w))
	}
	if src, _ := tuple(t, out[0].frame); !seen[src] {
		t.Fatalf("after expiry got %v, not one of the class's endpoints %v", src, seen)
	}
}

// TestFullNATPortClass checks the classes of several workers: each worker's ports are those the
// fanout sends to it (bpfgen.LocalMember), over the whole default range.
func TestFullNATPortClass(t *testing.T) {
	tc := fullnatCases[0]
	for _, n := range []int{1, 3} {
		for id := range n {
			w := mustWorker(t, id, nil, nil, 64)
			w.SetWorkers(n)
			s := fullnatTables(tc, 0, 0).Services[0]
			first, step, count := w.localPorts(s)
			last := first + (count-1)*step
			if int(first)%n != id || first-uint32(DefaultLocalPorts[0]) >= uint32(n) || last > 65535 || 65535-last >= step {
				t.Errorf("worker %d of %d: ports %d..%d step %d (%d): not its class over the whole range", id, n, first, last, step, count)
			}
		}
	}
}

// TestFullNATICMPErrors checks that ICMP errors about a FullNAT connection are rewritten
// consistently both ways: a client-side router's error about a reply (VIP → client) reaches the
// real server as about real server → local endpoint, from the local address; the real server's
// port unreachable about local endpoint → real server reaches the client as about client → VIP,
// from the VIP. Outer and quoted checksums are verified.
func TestFullNATICMPErrors(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			r, client, vip, rs, local := fullnatConnect(t, tc)

			router, typ, code := netip.MustParseAddr("198.18.1.1"), uint8(3), uint8(4)
			if client.Addr().Is6() {
				router, typ, code = netip.MustParseAddr("2001:2:0:1::1"), 2, 0
			}
			reply := pkt{src: vip, dst: client, proto: tc.proto, flags: tcpSYN | tcpACK}
			f := icmpFrame(t, macRouter, macPort0, router, vip.Addr(), typ, code, 1400, quotedPacket(t, reply))
			out := r.one(t, 0, f, afpacket.RxMeta{})
			var p frame.Parsed
			frame.Parse(out.frame, &p)
			if s, d := netip.AddrFrom16(p.Src).Unmap(), netip.AddrFrom16(p.Dst).Unmap(); out.port != 1 || s != local.Addr() || d != rs.Addr() {
				t.Fatalf("client-side error left port %d as %v→%v, want port 1 as %v→%v", out.port, s, d, local.Addr(), rs.Addr())
			}
			if qs, qd := checkICMP(t, out.frame); qs != rs || qd != local {
				t.Fatalf("client-side error quotes %v→%v, want %v→%v", qs, qd, rs, local)
			}

			typ, code = 3, 3
			if client.Addr().Is6() {
				typ, code = 1, 4
			}
			fwd := pkt{src: local, dst: rs, proto: tc.proto, flags: tcpSYN}
			f = icmpFrame(t, macRS[0], macPort1, rs.Addr(), local.Addr(), typ, code, 0, quotedPacket(t, fwd))
			out = r.one(t, 1, f, afpacket.RxMeta{})
			frame.Parse(out.frame, &p)
			if s, d := netip.AddrFrom16(p.Src).Unmap(), netip.AddrFrom16(p.Dst).Unmap(); out.port != 0 || s != vip.Addr() || d != client.Addr() {
				t.Fatalf("real server's error left port %d as %v→%v, want port 0 as %v→%v", out.port, s, d, vip.Addr(), client.Addr())
			}
			if qs, qd := checkICMP(t, out.frame); qs != client || qd != vip {
				t.Fatalf("real server's error quotes %v→%v, want %v→%v", qs, qd, client, vip)
			}
			if n := r.w.c[cICMPErrors]; n != 2 {
				t.Fatalf("icmp_errors_forwarded = %d, want 2", n)
			}
		})
	}
}

// TestFullNATSync: a FullNAT connection the active worker created reaches the backup with its
// local endpoint (a SyncLocal entry, then the SyncSet); on the backup the client's packets leave
// from the same local endpoint and the real server's replies to it reach the client. A SyncSet
// whose local endpoint was lost is refused, and so is one whose local port belongs to another
// worker of the backup (other worker counts).
func TestFullNATSync(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			active, client, vip, rs, local := fullnatConnect(t, tc)
			backup := newRig(t, fullnatTables(tc, 0, 0), 64)
			active.w.EnableSync()
			backup.w.EnableSync()
			flags := tc.later()
			active.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, flags)), afpacket.RxMeta{})
			active.w.exportConn(conntrack.SyncSet, active.w.ct.Get(0)) // as a change or a snapshot would
			// UDP: the export above; TCP: the ACK's state change too. Each is a pair.
			if n := relay(t, active, backup); n != 2 && !(n == 4 && tc.proto == 6) {
				t.Fatalf("relayed %d entries, want pairs of local endpoint and connection", n)
			}
			if s := backup.w.sync; s.refused.Load() != 0 || backup.w.ct.Len() != 1 {
				t.Fatalf("backup refused %d, holds %d entries", s.refused.Load(), backup.w.ct.Len())
			}
			out := backup.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, flags)), afpacket.RxMeta{})
			if s, d := tuple(t, out.frame); s != local || d != rs {
				t.Fatalf("backup sent the client's packet as %v→%v, want %v→%v", s, d, local, rs)
			}
			rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: local, proto: tc.proto, flags: flags}
			out = backup.one(t, 1, build(t, rp), afpacket.RxMeta{})
			if s, d := tuple(t, out.frame); s != vip || d != client {
				t.Fatalf("backup sent the reply as %v→%v, want %v→%v", s, d, vip, client)
			}

			// The connection set without its local endpoint, and with a local port of another
			// worker's class: refused, nothing installed.
			var buf [4]conntrack.SyncEntry
			active.w.exportConn(conntrack.SyncSet, active.w.ct.Get(0))
			n := active.w.sync.out.pop(buf[:])
			other := newRig(t, fullnatTables(tc, 0, 0), 64)
			other.w.EnableSync()
			other.w.sync.in.push(&buf[n-1])
			other.w.SetWorkers(2)
			buf[0].RPort |= 1 // an odd port: worker 1's of 2, not worker 0's
			other.w.sync.in.push(&buf[0])
			other.w.sync.in.push(&buf[1])
			other.w.drainSync()
			if s := other.w.sync; s.refused.Load() != 2 || other.w.ct.Len() != 0 {
				t.Fatalf("refused %d, holds %d entries; want 2, 0", s.refused.Load(), other.w.ct.Len())
			}
		})
	}
}

// TestFullNATPersistence: under persistence a client's connections keep their real server, each
// with a local endpoint of its own.
func TestFullNATPersistence(t *testing.T) {
	tc := fullnatCases[0]
	tabs := buildTables(1, svcSpec{id: 0, vip: tc.vip, proto: 6, method: MethodFullNAT, sched: "rr", reals: []realSpec{
		{id: 0, addr: "198.18.2.1:8080", weight: 1, mac: macRS[0]}, {id: 1, addr: "198.18.2.2:8080", weight: 1, mac: macRS[1]}}})
	s := tabs.Services[0]
	s.Locals = []netip.Addr{netip.MustParseAddr("198.18.3.2")}
	s.Persistence, s.PersistenceBits = 300e9, 32
	tabs.Finish()
	r := newRig(t, tabs, 64)
	var real netip.AddrPort
	locals := map[netip.AddrPort]bool{}
	for i := range 6 {
		out := r.one(t, 0, build(t, clientPkt(fmt.Sprintf("198.18.1.10:%d", 40000+i), tc.vip, 6, tcpSYN)), afpacket.RxMeta{})
		src, dst := tuple(t, out.frame)
		if i > 0 && dst != real {
			t.Fatalf("connection %d went to %v, the client's first to %v", i, dst, real)
		}
		if locals[src] {
			t.Fatalf("connection %d got local endpoint %v again", i, src)
		}
		real, locals[src] = dst, true
	}
}

// exportPair enables HA sync on both rigs and returns what the active one exports for its
// connection 0: its local endpoint (SyncLocal), then the connection.
func exportPair(t *testing.T, active, backup *rig) [2]conntrack.SyncEntry {
	t.Helper()
	active.w.EnableSync()
	backup.w.EnableSync()
	active.w.exportConn(conntrack.SyncSet, active.w.ct.Get(0))
	var pair [2]conntrack.SyncEntry
	if n := active.w.sync.out.pop(pair[:]); n != 2 || pair[0].Op != conntrack.SyncLocal {
		t.Fatalf("exported %d entries (%v), want the local endpoint and the connection", n, pair[0].Op)
	}
	return pair
}

// TestFullNATSyncReusedLocal: the backup holds a synced FullNAT connection whose removal never
// reached it (sync is best effort), and the active node gave its local endpoint to a new client;
// when that connection is synced, the stale one goes: the real server's replies to the local
// endpoint reach the new client, not the old one.
func TestFullNATSyncReusedLocal(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			active, client, vip, rs, local := fullnatConnect(t, tc)
			backup := newRig(t, fullnatTables(tc, 0, 0), 64)
			pair := exportPair(t, active, backup)
			for i := range pair {
				backup.w.sync.in.push(&pair[i])
			}
			for i := range pair { // the new client, port 40001, on the same local endpoint
				pair[i].CPort++
				backup.w.sync.in.push(&pair[i])
			}
			backup.w.drainSync()
			if s := backup.w.sync; s.installed.Load() != 2 || backup.w.ct.Len() != 1 {
				t.Fatalf("backup installed %d (refused %d), holds %d entries; want 2 and 1", s.installed.Load(), s.refused.Load(), backup.w.ct.Len())
			}
			flags := uint8(tcpSYN | tcpACK)
			if tc.proto != 6 {
				flags = 0
			}
			rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: local, proto: tc.proto, flags: flags}
			out := backup.one(t, 1, build(t, rp), afpacket.RxMeta{})
			want := netip.AddrPortFrom(client.Addr(), client.Port()+1)
			if s, d := tuple(t, out.frame); s != vip || d != want {
				t.Fatalf("backup sent the reply as %v→%v, want %v→%v", s, d, vip, want)
			}
		})
	}
}

// TestFullNATMethodReload: a reload that turns a NAT service into a FullNAT one (same service and
// real server IDs) leaves its live NAT connections forwarded as NAT, by what their entries hold,
// in the general path and the express lane: never with a local endpoint they do not have.
func TestFullNATMethodReload(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			nat := buildTables(1, svcSpec{id: 0, vip: tc.vip, proto: tc.proto, method: MethodNAT,
				reals: []realSpec{{id: 0, addr: tc.real, weight: 1, mac: macRS[0]}}})
			r := newRig(t, nat, 64)
			client, rs := netip.AddrPortFrom(netip.MustParseAddr(tc.client), 40000), mustAP(tc.real)
			r.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, tc.first())), afpacket.RxMeta{})
			r.w.SetTables(fullnatTables(tc, 0, 0))
			for _, via := range []string{"general", "express"} {
				out := r.via(via)(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, tc.later())), afpacket.RxMeta{})
				checkChecksums(t, out.frame)
				if s, d := tuple(t, out.frame); s != client || d != rs {
					t.Fatalf("%s: the NAT connection's packet left as %v→%v, want %v→%v", via, s, d, client, rs)
				}
			}
			// A client-side ICMP error about it reaches the real server as NAT's does.
			out := r.one(t, 0, clientSideError(t, mustAP(tc.vip), client, tc.proto), afpacket.RxMeta{})
			var p frame.Parsed
			frame.Parse(out.frame, &p)
			if d := netip.AddrFrom16(p.Dst).Unmap(); out.port != 1 || d != rs.Addr() {
				t.Fatalf("client-side error left port %d to %v, want port 1 to %v", out.port, d, rs.Addr())
			}
			if qs, qd := checkICMP(t, out.frame); qs != rs || qd != client {
				t.Fatalf("client-side error quotes %v→%v, want %v→%v", qs, qd, rs, client)
			}
		})
	}
}

// TestFullNATMethodChangeAway: a reload that turns a FullNAT service into a NAT or DR one (same
// service and real server IDs) leaves its live FullNAT connections forwarded as FullNAT, by what
// their entries hold, until they end: the client's packets leave from the local endpoint, the
// real server's replies to it reach the client from the VIP, in the general path and the express
// lane, and a client-side ICMP error reaches the real server as about the local endpoint.
func TestFullNATMethodChangeAway(t *testing.T) {
	for _, tc := range fullnatCases {
		for _, m := range []Method{MethodNAT, MethodDR} {
			t.Run(tc.name+"/"+m.String(), func(t *testing.T) {
				r, client, vip, rs, local := fullnatConnect(t, tc)
				r.w.SetTables(buildTables(1, svcSpec{id: 0, vip: tc.vip, proto: tc.proto, method: m,
					reals: []realSpec{{id: 0, addr: tc.real, weight: 1, mac: macRS[0]}}}))
				flags := tc.later()
				for i, via := range []string{"general", "express"} {
					run := r.via(via)
					out := run(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, flags)), afpacket.RxMeta{})
					checkChecksums(t, out.frame)
					if s, d := tuple(t, out.frame); out.port != 1 || s != local || d != rs {
						t.Fatalf("%s: client's packet left port %d as %v→%v, want port 1 as %v→%v", via, out.port, s, d, local, rs)
					}
					rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: local, proto: tc.proto, flags: flags, payload: 20 + i}
					out = run(t, 1, build(t, rp), afpacket.RxMeta{})
					checkChecksums(t, out.frame)
					if s, d := tuple(t, out.frame); out.port != 0 || s != vip || d != client {
						t.Fatalf("%s: reply left port %d as %v→%v, want port 0 as %v→%v", via, out.port, s, d, vip, client)
					}
				}
				out := r.one(t, 0, clientSideError(t, vip, client, tc.proto), afpacket.RxMeta{})
				var p frame.Parsed
				frame.Parse(out.frame, &p)
				if s, d := netip.AddrFrom16(p.Src).Unmap(), netip.AddrFrom16(p.Dst).Unmap(); out.port != 1 || s != local.Addr() || d != rs.Addr() {
					t.Fatalf("client-side error left port %d as %v→%v, want port 1 as %v→%v", out.port, s, d, local.Addr(), rs.Addr())
				}
				if qs, qd := checkICMP(t, out.frame); qs != rs || qd != local {
					t.Fatalf("client-side error quotes %v→%v, want %v→%v", qs, qd, rs, local)
				}
			})
		}
	}
}

// TestFullNATSyncLocalMoved: the backup holds a FullNAT connection and the active node syncs the
// same connection with another local endpoint (a new connection on the tuple whose predecessor's
// removal never arrived): the backup takes the synced endpoint, so that after a takeover the
// client's packets leave from the endpoint the real server knows and its replies to it reach the
// client; the old endpoint's reply tuple is gone.
func TestFullNATSyncLocalMoved(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			active, client, vip, rs, local := fullnatConnect(t, tc)
			backup := newRig(t, fullnatTables(tc, 0, 0), 64)
			pair := exportPair(t, active, backup)
			for i := range pair {
				backup.w.sync.in.push(&pair[i])
			}
			pair[0].RPort++ // the same connection from the next local port
			moved := netip.AddrPortFrom(local.Addr(), local.Port()+1)
			for i := range pair {
				backup.w.sync.in.push(&pair[i])
			}
			backup.w.drainSync()
			if s := backup.w.sync; s.installed.Load() != 2 || backup.w.ct.Len() != 1 {
				t.Fatalf("backup installed %d (refused %d), holds %d entries; want 2 and 1", s.installed.Load(), s.refused.Load(), backup.w.ct.Len())
			}
			flags := tc.later()
			out := backup.one(t, 0, build(t, clientPkt(client.String(), tc.vip, tc.proto, flags)), afpacket.RxMeta{})
			if s, d := tuple(t, out.frame); s != moved || d != rs {
				t.Fatalf("backup sent the client's packet as %v→%v, want %v→%v", s, d, moved, rs)
			}
			rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: moved, proto: tc.proto, flags: flags}
			out = backup.one(t, 1, build(t, rp), afpacket.RxMeta{})
			if s, d := tuple(t, out.frame); s != vip || d != client {
				t.Fatalf("backup sent the reply to %v as %v→%v, want %v→%v", moved, s, d, vip, client)
			}
			rp.dst = local
			if outs := backup.process(1, build(t, rp), afpacket.RxMeta{}); len(outs) != 0 {
				t.Fatalf("a reply to the old local endpoint %v was forwarded", local)
			}
		})
	}
}

// TestDropRealHandlesFull: a table out of real server handles is its own drop reason, not a full
// table.
func TestDropRealHandlesFull(t *testing.T) {
	r := newRig(t, fullnatTables(fullnatCases[0], 0, 0), 64)
	r.w.dropInsert(conntrack.ErrNoHandle)
	if got := nonZero(r.w); got["drop:real_handles_full"] != 1 || got["drop:conntrack_full"] != 0 {
		t.Fatalf("counters %v, want real_handles_full 1 and no conntrack_full", got)
	}
}

// TestDrainingLocalsTaken: a draining local address (Tables.DrainingLocals: no service lists it,
// connections still use it) is one whose frames the socket filter admits, of any protocol, the
// fanout sends by local port, and the data plane knows as local.
func TestDrainingLocalsTaken(t *testing.T) {
	tc := fullnatCases[0]
	tb := buildTables(1, svcSpec{id: 0, vip: tc.vip, proto: tc.proto, method: MethodNAT,
		reals: []realSpec{{id: 0, addr: tc.real, weight: 1, mac: macRS[0]}}})
	l := netip.MustParseAddr(tc.locals[0])
	if slices.Contains(filterSpec(tb).VIPs, bpfgen.Endpoint{Addr: l}) || tb.isLocal(l.As16()) {
		t.Fatal("a local address no service lists and none drains is taken")
	}
	tb.DrainingLocals = []netip.Addr{l}
	tb.Finish()
	if !slices.Contains(filterSpec(tb).VIPs, bpfgen.Endpoint{Addr: l}) {
		t.Errorf("the socket filter does not admit frames to draining %v: %+v", l, filterSpec(tb).VIPs)
	}
	if locals := (&fanoutPlan{}).spec(tb).Locals; !slices.Contains(locals, l) {
		t.Errorf("the fanout does not send frames to draining %v by local port: %v", l, locals)
	}
	if !tb.isLocal(l.As16()) {
		t.Errorf("draining %v is not local to the workers", l)
	}
}

// TestFullNATSyncMethodChanged: a FullNAT connection synced to a backup whose service is now NAT
// (both nodes reloaded from fullnat to nat while it lives) is installed as FullNAT, with its
// local endpoint: after a takeover the real server's replies to it reach the client.
func TestFullNATSyncMethodChanged(t *testing.T) {
	for _, tc := range fullnatCases {
		t.Run(tc.name, func(t *testing.T) {
			active, client, vip, rs, local := fullnatConnect(t, tc)
			backup := newRig(t, buildTables(1, svcSpec{id: 0, vip: tc.vip, proto: tc.proto, method: MethodNAT,
				reals: []realSpec{{id: 0, addr: tc.real, weight: 1, mac: macRS[0]}}}), 64)
			pair := exportPair(t, active, backup)
			for i := range pair {
				backup.w.sync.in.push(&pair[i])
			}
			backup.w.drainSync()
			if s := backup.w.sync; s.installed.Load() != 1 || backup.w.ct.Len() != 1 {
				t.Fatalf("backup installed %d (refused %d), holds %d entries; want 1 and 1", s.installed.Load(), s.refused.Load(), backup.w.ct.Len())
			}
			flags := tc.later()
			rp := pkt{srcMAC: macRS[0], dstMAC: macPort1, src: rs, dst: local, proto: tc.proto, flags: flags}
			out := backup.one(t, 1, build(t, rp), afpacket.RxMeta{})
			if s, d := tuple(t, out.frame); s != vip || d != client {
				t.Fatalf("backup sent the reply to %v as %v→%v, want %v→%v", local, s, d, vip, client)
			}
		})
	}
}
