package dataplane

import (
	"fmt"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
)

// Health checks reach the data plane as flags of the tables: Real.Down (checked and down),
// Real.Standby (a sorry server not in use, or real servers while the sorry server stands in) and
// Service.NoQuorum. These tests run every frame both one by one (Process) and as a batch of one
// (ProcessBatch, whose express lane must leave such frames to forward).

// healthRig is a rig whose frames go through Process or, with batch, ProcessBatch.
type healthRig struct {
	*rig
	batch bool
}

func (h *healthRig) send(in int, b []byte) []sent {
	if !h.batch {
		return h.process(in, b, afpacket.RxMeta{})
	}
	h.now += 1e6
	for i := range h.out {
		h.out[i].Frames, h.out[i].Vnets = nil, nil
	}
	fs := []afpacket.Frame{{Data: append([]byte(nil), b...), Meta: afpacket.RxMeta{Len: uint32(len(b))}}}
	h.w.ProcessBatch(in, fs, h.now)
	h.w.FlushAll()
	var out []sent
	for i, c := range h.out {
		for j := range c.Frames {
			out = append(out, sent{port: i, frame: c.Frames[j], vnet: c.Vnets[j]})
		}
	}
	return out
}

func (h *healthRig) one(tb testing.TB, in int, b []byte) sent {
	tb.Helper()
	out := h.send(in, b)
	if len(out) != 1 {
		tb.Fatalf("transmitted %d frames, want 1; counters: %v", len(out), nonZero(h.w))
	}
	return out[0]
}

func (h *healthRig) none(tb testing.TB, in int, b []byte, d Drop) {
	tb.Helper()
	before := h.w.c[cDropBase+int(d)]
	if out := h.send(in, b); len(out) != 0 {
		tb.Fatalf("transmitted %d frames, want none (drop %v)", len(out), d)
	}
	if got := h.w.c[cDropBase+int(d)]; got != before+1 {
		tb.Fatalf("drop %v counted %d times, want 1; counters: %v", d, got-before, nonZero(h.w))
	}
}

// bothWays runs f once through Process and once through ProcessBatch.
func bothWays(t *testing.T, f func(t *testing.T, batch bool)) {
	for _, batch := range []bool{false, true} {
		name := "process"
		if batch {
			name = "batch"
		}
		t.Run(name, func(t *testing.T) { f(t, batch) })
	}
}

// twoReals is one service (proto 6 or 17, NAT, rr) with real servers 0 and 1; mutate changes the
// tables before Finish.
func twoReals(gen uint32, proto uint8, expire bool, mutate func(*Tables)) *Tables {
	t := buildTables(gen, svcSpec{id: 0, vip: "198.18.0.100:5353", proto: proto, method: MethodNAT, reals: []realSpec{
		{id: 0, addr: "198.18.2.1:5353", weight: 1, mac: macRS[0]}, {id: 1, addr: "198.18.2.2:5353", weight: 1, mac: macRS[1]}}})
	t.ExpireNodestConn = expire
	mutate(t)
	t.Finish()
	return t
}

func replyFrom(tb testing.TB, real int, client string) []byte {
	rep := clientPkt([]string{"198.18.2.1:5353", "198.18.2.2:5353"}[real], client, 17, 0)
	rep.srcMAC, rep.dstMAC = macRS[real], macPort1
	return build(tb, rep)
}

// TestDownUDPFlowMoves: a UDP flow whose real server goes down is not forwarded to it any more:
// its entry is dropped at the flow's next datagram, which is scheduled afresh to the server that
// is up, whose reply reaches the client; the down server's counts lose the connection. Under
// expire_nodest_conn too.
func TestDownUDPFlowMoves(t *testing.T) {
	for _, expire := range []bool{false, true} {
		t.Run(fmt.Sprintf("expire_nodest_conn=%v", expire), func(t *testing.T) {
			bothWays(t, func(t *testing.T, batch bool) {
				tabs := twoReals(1, 17, expire, func(*Tables) {})
				h := &healthRig{newRig(t, tabs, 64), batch}
				const client = "198.18.1.10:5000"
				q := build(t, clientPkt(client, "198.18.0.100:5353", 17, 0))
				first := realOf(t, h.one(t, 0, q))
				h.one(t, 1, replyFrom(t, first, client))
				realOf(t, h.one(t, 0, q)) // established: the express lane's case in a batch

				down := twoReals(2, 17, expire, func(t *Tables) {
					t.Reals[first].Down = true
					for i, r := range t.Reals { // the same servers: their counts go on, as compile has it
						r.Counts = tabs.Reals[i].Counts
					}
				})
				h.w.SetTables(down)
				if got := realOf(t, h.one(t, 0, q)); got != 1-first {
					t.Fatalf("the flow's next datagram went to real %d, want %d (its own is down)", got, 1-first)
				}
				if n := h.w.ct.Len(); n != 1 {
					t.Fatalf("%d entries, want 1: the flow's new one", n)
				}
				if c := down.Reals[first].Counts; c.Active.Load()+c.Inactive.Load() != 0 {
					t.Fatalf("the down server still counts %d connections", c.Active.Load()+c.Inactive.Load())
				}
				if c := down.Reals[1-first].Counts; c.Inactive.Load() != 1 {
					t.Fatalf("the server that is up counts %d connections, want 1", c.Inactive.Load())
				}
				out := h.one(t, 1, replyFrom(t, 1-first, client))
				if src, _ := tuple(t, out.frame); src.String() != "198.18.0.100:5353" {
					t.Fatalf("the new server's reply left from %v, want the VIP", src)
				}
				// A late reply of the down server finds no connection any more.
				h.none(t, 1, replyFrom(t, first, client), DropNoService)
			})
		})
	}
}

// TestDownUDPReplyEndsEntry: a reply from a real server that went down ends its flow's entry (it
// is not forwarded), so the client's next datagram is scheduled afresh.
func TestDownUDPReplyEndsEntry(t *testing.T) {
	bothWays(t, func(t *testing.T, batch bool) {
		h := &healthRig{newRig(t, twoReals(1, 17, false, func(*Tables) {}), 64), batch}
		const client = "198.18.1.10:5000"
		first := realOf(t, h.one(t, 0, build(t, clientPkt(client, "198.18.0.100:5353", 17, 0))))
		h.w.SetTables(twoReals(2, 17, false, func(t *Tables) { t.Reals[first].Down = true }))
		h.none(t, 1, replyFrom(t, first, client), DropRealDown)
		if n := h.w.ct.Len(); n != 0 {
			t.Fatalf("%d entries left, want none", n)
		}
	})
}

// TestDownTCP: a TCP connection to a real server that goes down is forwarded until it ends, as a
// removed server's is, unless expire_nodest_conn drops it at its next packet (counted as
// real_server_down). Either way new connections, a bare SYN reusing its tuple included, go to
// the server that is up.
func TestDownTCP(t *testing.T) {
	for _, expire := range []bool{false, true} {
		t.Run(fmt.Sprintf("expire_nodest_conn=%v", expire), func(t *testing.T) {
			bothWays(t, func(t *testing.T, batch bool) {
				h := &healthRig{newRig(t, twoReals(1, 6, expire, func(*Tables) {}), 64), batch}
				flow := func(port int, flags uint8) []byte {
					return build(t, clientPkt(fmt.Sprintf("198.18.1.10:%d", port), "198.18.0.100:5353", 6, flags))
				}
				first := realOf(t, h.one(t, 0, flow(1000, tcpSYN)))
				h.one(t, 0, flow(1000, tcpACK))
				h.w.SetTables(twoReals(2, 6, expire, func(t *Tables) { t.Reals[first].Down = true }))
				if expire {
					h.none(t, 0, flow(1000, tcpACK), DropRealDown)
					h.none(t, 0, flow(1000, tcpACK), DropNoConnection) // forgotten
				} else if got := realOf(t, h.one(t, 0, flow(1000, tcpACK))); got != first {
					t.Fatalf("the established connection moved to real %d, want it on %d until it ends", got, first)
				}
				for p := 2000; p < 2004; p++ {
					if got := realOf(t, h.one(t, 0, flow(p, tcpSYN))); got == first {
						t.Fatalf("a new connection went to the down real server")
					}
				}
				if got := realOf(t, h.one(t, 0, flow(1000, tcpSYN))); got == first {
					t.Fatalf("a SYN reusing the tuple went to the down real server")
				}
			})
		})
	}
}

// TestSorryServerStandby: a real server on standby takes no new connections and keeps its established ones.
func TestSorryServerStandby(t *testing.T) {
	bothWays(t, func(t *testing.T, batch bool) {
		h := &healthRig{newRig(t, twoReals(1, 17, true, func(*Tables) {}), 64), batch}
		q := build(t, clientPkt("198.18.1.10:5000", "198.18.0.100:5353", 17, 0))
		first := realOf(t, h.one(t, 0, q))
		h.w.SetTables(twoReals(2, 17, true, func(t *Tables) { t.Reals[first].Standby = true }))
		if got := realOf(t, h.one(t, 0, q)); got != first {
			t.Fatalf("the established flow moved to real %d, want it to stay on %d (standby)", got, first)
		}
		for p := 6000; p < 6004; p++ {
			if got := realOf(t, h.one(t, 0, build(t, clientPkt(fmt.Sprintf("198.18.1.10:%d", p), "198.18.0.100:5353", 17, 0)))); got == first {
				t.Fatalf("a new flow went to the real server on standby")
			}
		}
	})
}

// TestNoQuorum: a service below its quorum drops new connections (counted as no_quorum) and keeps
// forwarding its established ones.
func TestNoQuorum(t *testing.T) {
	bothWays(t, func(t *testing.T, batch bool) {
		h := &healthRig{newRig(t, twoReals(1, 6, false, func(*Tables) {}), 64), batch}
		flow := func(port int, flags uint8) []byte {
			return build(t, clientPkt(fmt.Sprintf("198.18.1.10:%d", port), "198.18.0.100:5353", 6, flags))
		}
		first := realOf(t, h.one(t, 0, flow(1000, tcpSYN)))
		h.w.SetTables(twoReals(2, 6, false, func(t *Tables) { t.Services[0].NoQuorum = true }))
		if got := realOf(t, h.one(t, 0, flow(1000, tcpACK))); got != first {
			t.Fatalf("the established connection moved to real %d", got)
		}
		h.none(t, 0, flow(2000, tcpSYN), DropNoQuorum)
		h.w.SetTables(twoReals(3, 6, false, func(*Tables) {}))
		h.one(t, 0, flow(2000, tcpSYN))
	})
}

// TestDownPersistence: a persistent client whose template names a real server that went down is
// scheduled afresh; one whose server is only quiesced (weight 0) keeps it, as under IPVS.
func TestDownPersistence(t *testing.T) {
	for _, quiesce := range []bool{false, true} {
		t.Run(fmt.Sprintf("quiesce=%v", quiesce), func(t *testing.T) {
			persist := func(t *Tables) { t.Services[0].Persistence = 60e9; t.Services[0].PersistenceBits = 32 }
			h := &healthRig{newRig(t, twoReals(1, 17, false, persist), 64), false}
			first := realOf(t, h.one(t, 0, build(t, clientPkt("198.18.1.10:5000", "198.18.0.100:5353", 17, 0))))
			h.w.SetTables(twoReals(2, 17, false, func(t *Tables) {
				persist(t)
				if quiesce {
					t.Reals[first].Weight = 0
				} else {
					t.Reals[first].Down = true
				}
			}))
			got := realOf(t, h.one(t, 0, build(t, clientPkt("198.18.1.10:5001", "198.18.0.100:5353", 17, 0))))
			if quiesce != (got == first) {
				t.Fatalf("the client's next flow went to real %d (its template names %d, quiesced %v)", got, first, quiesce)
			}
		})
	}
}
