package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
)

// TestConnLogEvents: a NAT connection's SYN, data and reply leave a created event and, when it
// expires, an expired event with its endpoints, reason and per-direction tallies.
func TestConnLogEvents(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	r.w.EnableConnLog()
	const client, vip = "198.18.1.10:40000", "198.18.0.100:80"
	syn := r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{})
	_, real := tuple(t, syn.frame)
	data := build(t, clientPkt(client, vip, 6, tcpACK))
	r.one(t, 0, data, afpacket.RxMeta{})
	rep := clientPkt(real.String(), client, 6, tcpACK)
	rep.srcMAC, rep.dstMAC = macRS[0], macPort1
	reply := build(t, rep)
	r.one(t, 1, reply, afpacket.RxMeta{})
	// And the same two frames through the express lane (ProcessBatch), which counts them too.
	express := r.w.c[cExpress]
	for _, f := range []struct {
		in int
		b  []byte
	}{{0, data}, {1, reply}} {
		r.now += 1e6
		buf := append([]byte(nil), f.b...)
		r.w.ProcessBatch(f.in, []afpacket.Frame{{Data: buf, Meta: afpacket.RxMeta{Len: uint32(len(buf))}}}, r.now)
	}
	r.w.FlushAll()
	if r.w.c[cExpress] != express+2 {
		t.Fatalf("express lane took %d frames, want 2; counters %v", r.w.c[cExpress]-express, nonZero(r.w))
	}
	r.w.Expire(r.now + 1e12)

	var evs [4]ConnEvent
	if n := r.w.log.ring.pop(evs[:]); n != 2 {
		t.Fatalf("%d events, want 2: %+v", n, evs[:n])
	}
	a16 := func(s string) ([16]byte, uint16) {
		ap := netip.MustParseAddrPort(s)
		return ap.Addr().As16(), ap.Port()
	}
	for i, kind := range []ConnEventKind{ConnCreated, ConnExpired} {
		ev := &evs[i]
		if ev.Kind != kind || ev.Proto != 6 || ev.Method != MethodNAT {
			t.Errorf("event %d: %v proto %d method %v, want %v tcp nat", i, ev.Kind, ev.Proto, ev.Method, kind)
		}
		for _, e := range []struct {
			name string
			addr [16]byte
			port uint16
			want string
		}{{"client", ev.Client, ev.CPort, client}, {"vip", ev.VIP, ev.VPort, vip}, {"real", ev.Real, ev.RPort, real.String()}} {
			if a, p := a16(e.want); a != e.addr || p != e.port {
				t.Errorf("event %d: %s %v:%d, want %s", i, e.name, netip.AddrFrom16(e.addr).Unmap(), e.port, e.want)
			}
		}
		if ev.Local != [16]byte{} || ev.LPort != 0 {
			t.Errorf("event %d: a local address under nat", i)
		}
	}
	ex := &evs[1]
	ipLen := func(b []byte) uint64 { return uint64(binary.BigEndian.Uint16(b[14+2:])) }
	if want := [2]uint64{3, 2}; ex.Packets != want {
		t.Errorf("packets %v, want %v", ex.Packets, want)
	}
	if want := [2]uint64{ipLen(data) * 3, ipLen(reply) * 2}; ex.Bytes != want {
		t.Errorf("bytes %v, want %v (IP lengths of SYN and data twice; of the reply twice)", ex.Bytes, want)
	}
	if ex.End != EndTimeout || ex.Created != evs[0].Time || ex.Last < ex.Created || ex.Time <= ex.Last {
		t.Errorf("expired: end %v created %d last %d at %d; created at %d", ex.End, ex.Created, ex.Last, ex.Time, evs[0].Time)
	}
	if r.w.log.tally[0] != (connTally{}) {
		t.Errorf("tally of the removed entry left: %+v", r.w.log.tally[0])
	}
}

// TestConnLogReused: a new SYN on a closed connection's tuple ends the old connection (reason
// reused) and creates a new one.
func TestConnLogReused(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	r.w.EnableConnLog()
	const client, vip = "198.18.1.10:40000", "198.18.0.100:80"
	syn := r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{})
	_, real := tuple(t, syn.frame)
	rep := clientPkt(real.String(), client, 6, tcpSYN|tcpACK)
	rep.srcMAC, rep.dstMAC = macRS[0], macPort1
	r.one(t, 1, build(t, rep), afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpACK)), afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpRST|tcpACK)), afpacket.RxMeta{})
	r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{})
	var evs [4]ConnEvent
	n := r.w.log.ring.pop(evs[:])
	if n != 3 || evs[0].Kind != ConnCreated || evs[1].Kind != ConnExpired || evs[1].End != EndReused ||
		evs[1].State != conntrack.StateClose || evs[1].Packets != [2]uint64{3, 1} || evs[2].Kind != ConnCreated {
		t.Fatalf("events %+v, want created, expired (reused, CLOSE, 3 packets in, 1 out), created", evs[:n])
	}
}

// TestConnLogRealGone: a UDP flow whose real server went down moves at its next datagram: the
// log ends the old connection (real_gone) and creates the new one, to the other server.
func TestConnLogRealGone(t *testing.T) {
	tabs := twoReals(1, 17, true, func(*Tables) {})
	r := newRig(t, tabs, 64)
	r.w.EnableConnLog()
	const client = "198.18.1.10:5000"
	q := build(t, clientPkt(client, "198.18.0.100:5353", 17, 0))
	first := realOf(t, r.one(t, 0, q, afpacket.RxMeta{}))
	r.w.SetTables(twoReals(2, 17, true, func(t *Tables) { t.Reals[first].Down = true }))
	r.one(t, 0, q, afpacket.RxMeta{})
	var evs [4]ConnEvent
	n := r.w.log.ring.pop(evs[:])
	if n != 3 || evs[1].Kind != ConnExpired || evs[1].End != EndRealGone || evs[1].Packets != [2]uint64{1, 0} ||
		evs[2].Kind != ConnCreated || evs[2].Real == evs[0].Real {
		t.Fatalf("events %+v, want created, expired (real_gone, 1 packet), created to the other server", evs[:n])
	}
}

// TestConnLogOff: a worker without the log records nothing and keeps no tallies.
func TestConnLogOff(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40000", "198.18.0.100:80", 6, tcpSYN)), afpacket.RxMeta{})
	if r.w.log != nil || r.w.pub.connLog.Load() != nil {
		t.Fatal("a connection log without EnableConnLog")
	}
}

// TestConnLogRingFull: a worker whose ring the writer does not drain drops events, counts them
// (connlog_dropped), and allocates nothing per new connection.
func TestConnLogRingFull(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 256)
	r.ports[0].Sink, r.ports[1].Sink = nil, nil
	r.w.EnableConnLog()
	churn := churner(t, r)
	for range ringSize {
		churn()
	}
	if allocs := testing.AllocsPerRun(500, churn); allocs != 0 {
		t.Fatalf("%v allocations per new connection with the log on, want 0", allocs)
	}
	total := 2 * (ringSize + 501) // AllocsPerRun runs once more to warm up
	dropped := r.w.c[cConnLogDropped]
	if dropped != uint64(total-ringSize) || r.w.log.ring.pending() != ringSize {
		t.Fatalf("connlog_dropped %d, %d queued; want %d and a full ring of %d", dropped, r.w.log.ring.pending(), total-ringSize, ringSize)
	}
	out := make([]ConnEvent, 100)
	if n := r.w.log.ring.pop(out); n != 100 {
		t.Fatalf("popped %d, want 100", n)
	}
	churn()
	if r.w.c[cConnLogDropped] != dropped {
		t.Fatal("an event dropped although the ring had room")
	}
}

// TestSetConnLog: the engine's switch reaches a worker between batches, and a log turned on
// later does not report connections it did not see created.
func TestSetConnLog(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	e := &Engine{workers: []*Worker{r.w}}
	const client, vip = "198.18.1.10:40000", "198.18.0.100:80"
	r.one(t, 0, build(t, clientPkt(client, vip, 6, tcpSYN)), afpacket.RxMeta{}) // before the log
	e.SetConnLog(true)
	r.w.Receive(0, emptyReceiver{}, r.now)
	if r.w.log == nil {
		t.Fatal("the worker did not take the log up")
	}
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40001", vip, 6, tcpSYN)), afpacket.RxMeta{})
	r.w.Expire(r.now + 1e12)
	out := make([]ConnEvent, 8)
	n := e.ConnLogDrain(out)
	if n != 2 || out[0].CPort != 40001 || out[1].CPort != 40001 || out[1].Kind != ConnExpired {
		t.Fatalf("events %+v, want the created and expired events of port 40001 only", out[:n])
	}
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40002", vip, 6, tcpSYN)), afpacket.RxMeta{})
	n = e.ConnLogDrain(out)
	var open []ConnEvent
	e.ConnLogRemaining(func(ev *ConnEvent) { open = append(open, *ev) })
	if n != 1 || len(open) != 1 || open[0].CPort != 40002 || open[0].End != EndShutdown || open[0].Packets != [2]uint64{1, 0} {
		t.Fatalf("%d drained, open at the stop %+v: want the connection of port 40002 only (not 40000's, older than the log)", n, open)
	}
	e.SetConnLog(false)
	r.w.Receive(0, emptyReceiver{}, r.now)
	if r.w.log != nil {
		t.Fatal("the worker kept the log turned off")
	}
}

type emptyReceiver struct{}

func (emptyReceiver) NextBatch([]afpacket.Frame) int { return 0 }

// TestConnLogOffDrains: the events a worker queued before the log was turned off are still drained
// (the writer's last drain writes them), then nothing more.
func TestConnLogOffDrains(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	e := &Engine{workers: []*Worker{r.w}}
	e.SetConnLog(true)
	r.w.Receive(0, emptyReceiver{}, r.now)
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40000", "198.18.0.100:80", 6, tcpSYN)), afpacket.RxMeta{})
	e.SetConnLog(false)
	r.w.Receive(0, emptyReceiver{}, r.now)
	out := make([]ConnEvent, 8)
	if n := e.ConnLogDrain(out); n != 1 || out[0].Kind != ConnCreated || out[0].CPort != 40000 {
		t.Fatalf("drained %+v after the log was turned off, want the created event of port 40000", out[:n])
	}
	r.one(t, 0, build(t, clientPkt("198.18.1.10:40001", "198.18.0.100:80", 6, tcpSYN)), afpacket.RxMeta{})
	if n := e.ConnLogDrain(out); n != 0 || r.w.pub.connLogOff.Load() != nil {
		t.Fatalf("drained %d more, kept the old ring %v; want none, and the ring dropped", n, r.w.pub.connLogOff.Load() != nil)
	}
}
