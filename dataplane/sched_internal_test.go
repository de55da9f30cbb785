package dataplane

import (
	"fmt"
	"testing"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
)

// realOf returns which real server (by MAC) a forwarded frame went to.
func realOf(tb testing.TB, s sent) int {
	tb.Helper()
	dst, _ := macs(s.frame)
	for i, m := range macRS {
		if dst == m {
			return i
		}
	}
	tb.Fatalf("frame went to %v, no real server", hw(dst))
	return -1
}

func udpService(mutate func(*Service)) *Tables {
	t := buildTables(1, svcSpec{id: 0, vip: "198.18.0.100:5353", proto: 17, method: MethodNAT, reals: []realSpec{
		{id: 0, addr: "198.18.2.1:5353", weight: 1, mac: macRS[0]}, {id: 1, addr: "198.18.2.2:5353", weight: 1, mac: macRS[1]}}})
	mutate(t.Services[0])
	return t
}

// TestOnePacket: with one_packet every datagram of a flow is scheduled on its own (rr alternates),
// and the reply to the latest one still finds its way back to the client.
func TestOnePacket(t *testing.T) {
	r := newRig(t, udpService(func(s *Service) { s.OnePacket = true }), 64)
	q := build(t, clientPkt("198.18.1.10:5000", "198.18.0.100:5353", 17, 0))
	seen := map[int]int{}
	var last int
	for i := 0; i < 6; i++ {
		last = realOf(t, r.one(t, 0, q, afpacket.RxMeta{}))
		seen[last]++
	}
	if seen[0] != 3 || seen[1] != 3 {
		t.Fatalf("six datagrams of one flow went %v, want 3 and 3 (each scheduled on its own)", seen)
	}
	rs := []string{"198.18.2.1:5353", "198.18.2.2:5353"}[last]
	reply := clientPkt(rs, "198.18.1.10:5000", 17, 0)
	reply.srcMAC, reply.dstMAC = macRS[last], macPort1
	out := r.one(t, 1, build(t, reply), afpacket.RxMeta{})
	if src, _ := tuple(t, out.frame); src.String() != "198.18.0.100:5353" {
		t.Fatalf("reply left from %v, want the VIP", src)
	}
	if r.w.ct.Len() != 1 {
		t.Fatalf("%d entries for one one-packet flow, want 1 (the latest datagram's)", r.w.ct.Len())
	}
}

// TestPersistence: clients in one /24 keep their real server across flows while the template
// lives; a client of another /24 is scheduled on its own.
func TestPersistence(t *testing.T) {
	r := newRig(t, udpService(func(s *Service) { s.Persistence = 60e9; s.PersistenceBits = 24 }), 64)
	first := realOf(t, r.one(t, 0, build(t, clientPkt("198.18.1.10:5000", "198.18.0.100:5353", 17, 0)), afpacket.RxMeta{}))
	for i, src := range []string{"198.18.1.10:5001", "198.18.1.10:5002", "198.18.1.77:6000", "198.18.1.200:7000"} {
		if got := realOf(t, r.one(t, 0, build(t, clientPkt(src, "198.18.0.100:5353", 17, 0)), afpacket.RxMeta{})); got != first {
			t.Fatalf("flow %d from %s went to real %d, want %d (same /24, persistent)", i, src, got, first)
		}
	}
	// Another /24: its own template, scheduled by rr onto the other real server.
	if got := realOf(t, r.one(t, 0, build(t, clientPkt("198.18.9.10:5000", "198.18.0.100:5353", 17, 0)), afpacket.RxMeta{})); got == first {
		t.Fatalf("a client of another /24 went to real %d too; rr should have picked the other", got)
	}
	// Five connections and their template, plus the other client's connection and template.
	if n := r.w.ct.Len(); n != 8 {
		t.Fatalf("%d table entries, want 8 (6 connections, 2 templates)", n)
	}
}

// TestTableFull: a full table refuses new connections (counted) and keeps forwarding the ones it has.
func TestTableFull(t *testing.T) {
	r := newRig(t, udpService(func(*Service) {}), 2)
	a := build(t, clientPkt("198.18.1.10:5000", "198.18.0.100:5353", 17, 0))
	r.one(t, 0, a, afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt("198.18.1.10:5001", "198.18.0.100:5353", 17, 0)), afpacket.RxMeta{})
	r.none(t, 0, build(t, clientPkt("198.18.1.10:5002", "198.18.0.100:5353", 17, 0)), afpacket.RxMeta{}, DropTableFull)
	r.one(t, 0, a, afpacket.RxMeta{})
}

// TestRemovedRealDrains: a real server a reload removed keeps its established connections
// (marked Removed, out of the scheduler's view) unless expire_nodest_conn drops them at once.
func TestRemovedRealDrains(t *testing.T) {
	for _, expire := range []bool{false, true} {
		tabs := udpService(func(*Service) {})
		r := newRig(t, tabs, 64)
		q := build(t, clientPkt("198.18.1.10:5000", "198.18.0.100:5353", 17, 0))
		first := realOf(t, r.one(t, 0, q, afpacket.RxMeta{}))
		// Reload: the flow's real server is removed from the service.
		next := udpService(func(*Service) {})
		next.Gen = 2
		gone := *next.Reals[first]
		gone.Removed = true
		next.Reals[first] = &gone
		svc := next.Services[0]
		svc.RealIDs = []uint16{uint16(1 - first)}
		next.ExpireNodestConn = expire
		next.Finish()
		r.w.SetTables(next)
		if expire {
			r.none(t, 0, q, afpacket.RxMeta{}, DropRealRemoved)
			continue
		}
		if got := realOf(t, r.one(t, 0, q, afpacket.RxMeta{})); got != first {
			t.Fatalf("the established flow moved to real %d, want it to stay on removed real %d", got, first)
		}
		// New flows never reach the removed server.
		for p := 6000; p < 6004; p++ {
			src := fmt.Sprintf("198.18.1.10:%d", p)
			if got := realOf(t, r.one(t, 0, build(t, clientPkt(src, "198.18.0.100:5353", 17, 0)), afpacket.RxMeta{})); got == first {
				t.Fatalf("a new flow went to the removed real server")
			}
		}
	}
}

// TestThresholdClearedWhenConnectionsEnd: a real server's overload flag, set when a pick found it
// at its upper threshold, is cleared when its connections end (IPVS's unbind rule), not only when
// the next pick looks.
func TestThresholdClearedWhenConnectionsEnd(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	for _, id := range []int{2, 3} { // the IPv4 UDP service's two real servers
		tabs.Reals[id].UpperThreshold = 1
	}
	tabs.Finish()
	r := newRig(t, tabs, 64)
	tc := natCases[1]
	r.one(t, 0, build(t, clientPkt(tc.clientAt(1000), tc.vip, tc.proto, 0)), afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt(tc.clientAt(1001), tc.vip, tc.proto, 0)), afpacket.RxMeta{})
	r.none(t, 0, build(t, clientPkt(tc.clientAt(1002), tc.vip, tc.proto, 0)), afpacket.RxMeta{}, DropNoRealServer)
	for _, id := range []int{2, 3} {
		if !tabs.Reals[id].Counts.IsOverloaded() {
			t.Fatalf("real %d at its upper threshold is not marked overloaded", id)
		}
	}
	now := r.now + int64(time.Hour)
	for i := 0; i < 10 && r.w.ct.Len() > 0; i++ {
		now += 1 << conntrack.TickShift
		r.w.Expire(now)
	}
	for _, id := range []int{2, 3} {
		if c := tabs.Reals[id].Counts; c.IsOverloaded() || c.Active.Load()+c.Inactive.Load() != 0 {
			t.Errorf("real %d after its connections expired: overloaded %v, %d connections", id, c.IsOverloaded(), c.Active.Load()+c.Inactive.Load())
		}
	}
}
