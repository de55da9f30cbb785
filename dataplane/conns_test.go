package dataplane

import (
	"context"
	"net/netip"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/frame"
)

// ipLen is the IP packet length of frame b, what the per-real byte counts add.
func ipLen(tb testing.TB, b []byte) uint64 {
	tb.Helper()
	var p frame.Parsed
	if err := frame.Parse(b, &p); err != frame.ErrNone {
		tb.Fatalf("frame does not parse: %v", err)
	}
	return uint64(p.End - p.L3Off)
}

// TestRealStats: a real server's connections, and its packets and bytes in each direction, are
// counted per worker and summed by Stats; RealPackets stays the sum of both directions.
func TestRealStats(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	r1, r2 := newRig(t, tabs, 64), newRig(t, tabs, 64)
	tc := natCases[0]
	syn := build(t, clientPkt(tc.clientAt(40000), tc.vip, 6, tcpSYN))
	ack := build(t, clientPkt(tc.clientAt(40000), tc.vip, 6, tcpACK))
	reply := build(t, tc.replyPkt(0, 40000))
	r1.one(t, 0, syn, afpacket.RxMeta{}) // rr: the first real server, ID 0
	r1.one(t, 1, reply, afpacket.RxMeta{})
	r1.one(t, 0, ack, afpacket.RxMeta{})
	r2.one(t, 0, syn, afpacket.RxMeta{}) // another worker's connection with the same tuple
	dr := build(t, clientPkt("198.18.1.10:40000", "198.18.0.200:80", 6, tcpSYN))
	r2.one(t, 0, dr, afpacket.RxMeta{})
	r1.w.Publish()
	r2.w.Publish()
	st := (&Engine{workers: []*Worker{r1.w, r2.w}}).Stats()
	if len(st.Reals) != len(tabs.Reals) {
		t.Fatalf("%d real stats, want %d", len(st.Reals), len(tabs.Reals))
	}
	want := RealStats{Conns: 2, PacketsIn: 3, PacketsOut: 1,
		BytesIn: 2*ipLen(t, syn) + ipLen(t, ack), BytesOut: ipLen(t, reply)}
	if got := st.Reals[0]; got != want {
		t.Errorf("NAT real server: %+v, want %+v", got, want)
	}
	if want := (RealStats{Conns: 1, PacketsIn: 1, BytesIn: ipLen(t, dr)}); st.Reals[8] != want {
		t.Errorf("DR real server: %+v, want %+v", st.Reals[8], want)
	}
	if st.RealPackets[0] != 4 || st.RealPackets[8] != 1 {
		t.Errorf("RealPackets %v, want 4 for ID 0 and 1 for ID 8", st.RealPackets)
	}
	for id, r := range st.Reals {
		if id != 0 && id != 8 && r != (RealStats{}) {
			t.Errorf("real server %d: %+v, want nothing", id, r)
		}
	}
}

// runWorker calls w.Publish, as the engine's loop does between batches, until the returned stop
// is called.
func runWorker(w *Worker) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(time.Millisecond):
				w.Publish()
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// TestConns: Engine.Conns lists every worker's connections, each with its state, endpoints and
// remaining time, filtered by service, real server and client, at most Max of them while counting
// all that match.
func TestConns(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	r1, r2 := newRig(t, tabs, 64), newRig(t, tabs, 64)
	r2.w.id = 1
	v4, v6 := natCases[0], natCases[2]
	r1.one(t, 0, build(t, clientPkt(v4.clientAt(40000), v4.vip, 6, tcpSYN)), afpacket.RxMeta{})
	r1.one(t, 1, build(t, v4.replyPkt(0, 40000)), afpacket.RxMeta{})
	r1.one(t, 0, build(t, clientPkt(v4.clientAt(40000), v4.vip, 6, tcpACK)), afpacket.RxMeta{}) // ESTABLISHED
	r1.one(t, 0, build(t, clientPkt(v4.clientAt(40001), v4.vip, 6, tcpSYN)), afpacket.RxMeta{}) // to the second real
	r2.one(t, 0, build(t, clientPkt(v6.clientAt(40002), v6.vip, 6, tcpSYN)), afpacket.RxMeta{})
	r2.one(t, 0, build(t, clientPkt(natCases[1].clientAt(40003), natCases[1].vip, 17, 0)), afpacket.RxMeta{})
	defer runWorker(r1.w)()
	defer runWorker(r2.w)()
	e := &Engine{workers: []*Worker{r1.w, r2.w}}

	list := func(f ConnFilter) ([]ConnInfo, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cs, n, err := e.Conns(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Client.Port() < cs[j].Client.Port() })
		return cs, n
	}
	all, n := list(ConnFilter{Max: 10})
	if n != 4 || len(all) != 4 {
		t.Fatalf("listed %d of %d entries, want 4 of 4: %+v", len(all), n, all)
	}
	want := []struct {
		worker      int
		proto       uint8
		state       conntrack.State
		client, vip string
		real        string
		svc, rid    uint16
	}{
		{0, 6, conntrack.StateEstablished, v4.clientAt(40000), v4.vip, v4.reals[0], 0, 0},
		{0, 6, conntrack.StateSynRecv, v4.clientAt(40001), v4.vip, v4.reals[1], 0, 1},
		{1, 6, conntrack.StateSynRecv, v6.clientAt(40002), v6.vip, v6.reals[0], 2, 4},
		{1, 17, conntrack.StateUDP, natCases[1].clientAt(40003), natCases[1].vip, natCases[1].reals[0], 1, 2},
	}
	for i, w := range want {
		c := all[i]
		if c.Worker != w.worker || c.Proto != w.proto || c.State != w.state || c.Client.String() != w.client ||
			c.VIP.String() != w.vip || c.Real.String() != w.real || c.Service != w.svc || c.RealID != w.rid || c.Template {
			t.Errorf("entry %d: %+v, want %+v", i, c, w)
		}
		if c.Expires <= 0 || c.Expires > 15*time.Minute {
			t.Errorf("entry %d expires in %v, want within its state's timeout", i, c.Expires)
		}
	}
	for _, tc := range []struct {
		name  string
		f     ConnFilter
		ports []uint16 // client ports of the entries listed
		n     int
	}{
		{"service", ConnFilter{Service: 0, HasService: true, Max: 10}, []uint16{40000, 40001}, 2},
		{"real address and port", ConnFilter{Real: mustAP(v4.reals[1]), Max: 10}, []uint16{40001}, 1},
		{"real address", ConnFilter{Real: netip.AddrPortFrom(mustAP(v6.reals[0]).Addr(), 0), Max: 10}, []uint16{40002}, 1},
		{"client address", ConnFilter{Client: netip.AddrPortFrom(netip.MustParseAddr(v4.client), 0), Max: 10}, []uint16{40000, 40001, 40003}, 3},
		{"client address and port", ConnFilter{Client: mustAP(v4.clientAt(40001)), Max: 10}, []uint16{40001}, 1},
		{"nothing", ConnFilter{Client: mustAP("198.18.9.9:1"), Max: 10}, nil, 0},
		{"bounded", ConnFilter{Max: 1}, nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, n := list(tc.f)
			if n != tc.n {
				t.Errorf("%d entries match, want %d", n, tc.n)
			}
			if tc.name == "bounded" {
				if len(cs) != 1 {
					t.Errorf("listed %d, want Max 1", len(cs))
				}
				return
			}
			var ports []uint16
			for _, c := range cs {
				ports = append(ports, c.Client.Port())
			}
			if len(ports) != len(tc.ports) || (len(ports) > 0 && !equalPorts(ports, tc.ports)) {
				t.Errorf("listed client ports %v, want %v", ports, tc.ports)
			}
		})
	}
}

func equalPorts(a, b []uint16) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestConnsTemplates: a persistent service's templates are listed as templates, with the masked
// client and the real server they pin.
func TestConnsTemplates(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	tabs.Services[0].Persistence = int64(time.Minute)
	tabs.Services[0].PersistenceBits = 24
	tabs.Finish()
	r := newRig(t, tabs, 64)
	tc := natCases[0]
	r.one(t, 0, build(t, clientPkt(tc.clientAt(40000), tc.vip, 6, tcpSYN)), afpacket.RxMeta{})
	defer runWorker(r.w)()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, n, err := (&Engine{workers: []*Worker{r.w}}).Conns(ctx, ConnFilter{Max: 10})
	if err != nil {
		t.Fatal(err)
	}
	var tmpl *ConnInfo
	for i := range cs {
		if cs[i].Template {
			tmpl = &cs[i]
		}
	}
	if n != 2 || tmpl == nil {
		t.Fatalf("listed %+v (%d), want a connection and its template", cs, n)
	}
	if tmpl.Client.String() != "198.18.1.0:0" || tmpl.Real.String() != tc.reals[0] || tmpl.State != conntrack.StateTemplate ||
		tmpl.Expires < 59*time.Second {
		t.Errorf("template %+v, want client 198.18.1.0:0 (masked), real %s, the full minute left while a connection uses it", *tmpl, tc.reals[0])
	}
}

// TestConnsSliced: a worker walks its table for a snapshot a slice at a time, one slice per
// Publish, so a large table does not hold up forwarding.
func TestConnsSliced(t *testing.T) {
	defer func(n int) { connWalkSlice = n }(connWalkSlice)
	connWalkSlice = 2
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	tc := natCases[1]
	for i := range 5 {
		r.one(t, 0, build(t, clientPkt(tc.clientAt(uint16(40000+i)), tc.vip, 17, 0)), afpacket.RxMeta{})
	}
	req := &connRequest{out: make([]ConnInfo, 0, 10), done: make(chan struct{})}
	r.w.pub.conns.Store(req)
	for i := range 3 {
		select {
		case <-req.done:
			t.Fatalf("done after %d slices of 2 entries, want 3 for 5 entries", i)
		default:
		}
		r.w.Publish()
		if i < 2 {
			r.one(t, 0, build(t, clientPkt(tc.clientAt(40000), tc.vip, 17, 0)), afpacket.RxMeta{}) // forwarding goes on between slices
		}
	}
	select {
	case <-req.done:
	default:
		t.Fatal("not done after 3 slices")
	}
	if req.matched != 5 || len(req.out) != 5 || r.w.pub.conns.Load() != nil {
		t.Errorf("matched %d, listed %d, request still pending: %v; want 5, 5, false", req.matched, len(req.out), r.w.pub.conns.Load() != nil)
	}
}

// TestConnsGiveUp: a snapshot that a worker does not serve in time fails with the context's error
// and is withdrawn, so the worker does not serve it later.
func TestConnsGiveUp(t *testing.T) {
	r := newRig(t, buildTables(1, standardSpecs()...), 64)
	e := &Engine{workers: []*Worker{r.w}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := e.Conns(ctx, ConnFilter{Max: 10}); err != context.DeadlineExceeded {
		t.Fatalf("Conns with no worker running: %v, want %v", err, context.DeadlineExceeded)
	}
	if r.w.pub.conns.Load() != nil {
		t.Error("the request is still pending after Conns gave up")
	}
}

// TestRealTallyAligned: each direction's packet and byte counts of a real server lie in one
// 16-byte-aligned pair, so a packet's two adds touch one cache line.
func TestRealTallyAligned(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 100, 5000} {
		rt := newRealTallies(n)
		for i := range rt {
			for d := range rt[i] {
				if a := uintptr(unsafe.Pointer(&rt[i][d])); a%16 != 0 {
					t.Fatalf("newRealTallies(%d): tally %d direction %d at %#x, not 16-byte aligned", n, i, d, a)
				}
			}
		}
	}
}
