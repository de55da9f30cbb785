package dataplane

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/internal/checksum"
)

// benchFrames returns n 60-byte IPv4 UDP frames (64 bytes on the wire with the FCS) to the NAT
// UDP service, one per flow: clients 198.18.128.0/17, 32 source ports each.
func benchFrames(tb testing.TB, n int) []byte {
	tmpl := build(tb, pkt{srcMAC: macClient, dstMAC: macPort0, src: mustAP("198.18.128.0:1024"),
		dst: mustAP("198.18.0.100:4000"), proto: 17, payload: 18})
	if len(tmpl) != 60 {
		tb.Fatalf("template is %d bytes, want 60", len(tmpl))
	}
	all := make([]byte, 0, n*60)
	var p frame.Parsed
	for i := range n {
		b := append(all[len(all):], tmpl...)
		host := uint32(i / 32)
		binary.BigEndian.PutUint32(b[26:], 198<<24|18<<16|0x8000+host)
		binary.BigEndian.PutUint16(b[34:], uint16(1024+i%32))
		b[24], b[25] = 0, 0
		binary.BigEndian.PutUint16(b[24:], ^checksum.Sum(b[14:34], 0))
		if frame.Parse(b, &p) != frame.ErrNone {
			tb.Fatal("bench frame does not parse")
		}
		frame.CompleteL4Checksum(b, &p)
		all = all[:len(all)+60]
	}
	return all
}

// BenchmarkWorker forwards established 64-byte UDP flows one frame at a time through Process
// ("process", frames taken from an in-memory port) and in batches through ProcessBatch ("batch",
// as the engine does with a ring block), with FlushAll every rxBudget frames. ns/op is ns per packet.
func BenchmarkWorker(b *testing.B) {
	for _, bc := range []struct {
		name  string
		flows int
	}{
		{"flows=64k", 1 << 16},
		{"flows=1M", 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) { benchWorker(b, bc.flows, buildTables(1, standardSpecs()...)) })
	}
}

// BenchmarkWorkerMethod is BenchmarkWorker's 64k flows through a UDP service of each forwarding
// method, two real servers each: what a method costs per packet next to NAT's.
func BenchmarkWorkerMethod(b *testing.B) {
	for _, m := range []struct {
		name   string
		method Method
		tunnel Tunnel
	}{{"nat", MethodNAT, 0}, {"dr", MethodDR, 0}, {"tun-ipip", MethodTun, TunnelIPIP}, {"tun-gue", MethodTun, TunnelGUE}, {"fullnat", MethodFullNAT, 0}} {
		b.Run("method="+m.name, func(b *testing.B) {
			t := buildTables(1, svcSpec{id: 0, vip: "198.18.0.100:4000", proto: 17, method: m.method, reals: []realSpec{
				{id: 0, addr: "198.18.2.1:4000", weight: 1, mac: macRS[0]}, {id: 1, addr: "198.18.2.2:4000", weight: 1, mac: macRS[1]}}})
			t.Services[0].Tunnel, t.Services[0].TunnelPort = m.tunnel, 6080
			t.Services[0].Locals = []netip.Addr{netip.MustParseAddr("198.18.3.2")}
			for _, r := range t.Reals {
				r.TunnelSrc, r.MTU = tunSrc4, 1500
			}
			t.Finish()
			benchWorker(b, 1<<16, t)
		})
	}
}

// BenchmarkWorkerConnLog is BenchmarkWorker's 64k flows with the connection log on: what its
// per-packet tally costs (bench/instr.sh counts it with the case name connlog).
func BenchmarkWorkerConnLog(b *testing.B) {
	b.Run("connlog", func(b *testing.B) {
		benchWorker(b, 1<<16, buildTables(1, standardSpecs()...), (*Worker).EnableConnLog)
	})
}

// benchWorker runs BenchmarkWorker's process and batch cases over flows flows with tables t, whose
// service 198.18.0.100:4000/udp takes them; setup, if any, prepares the worker first.
func benchWorker(b *testing.B, flows int, t *Tables, setup ...func(*Worker)) {
	frames := benchFrames(b, flows)
	rx := dataplanetest.NewPort(2048, 1)
	tx := dataplanetest.NewPort(2048, rxBudget)
	w := mustWorker(b, 0, []Transmitter{rx, tx}, [][6]byte{macPort0, macPort1}, flows+flows/4)
	w.SetTables(t)
	for _, f := range setup {
		f(w)
	}
	for i := 0; i < len(frames); i += 60 {
		rx.Inject(frames[i:i+60], afpacket.RxMeta{})
	}
	rx.Loop(true)
	now := int64(1)
	var one [1]afpacket.Frame
	step := func(n int) {
		for j := 0; j < n; j++ {
			rx.NextBatch(one[:])
			w.Process(0, one[0].Data, &one[0].Meta, now)
			if j%rxBudget == rxBudget-1 {
				w.FlushAll()
				now += 1000
			}
		}
		w.FlushAll()
	}
	// The engine's way: batches of MaxBatch frames, copied next to each other as the
	// kernel writes them into a ring block.
	var fs [MaxBatch]afpacket.Frame
	block := make([]byte, MaxBatch*64)
	next := 0
	batched := func(n int) {
		for j := 0; j < n; j += MaxBatch {
			k := min(MaxBatch, n-j)
			for x := range k {
				d := block[x*64 : x*64+60]
				copy(d, frames[next*60:next*60+60])
				fs[x] = afpacket.Frame{Data: d, Meta: afpacket.RxMeta{Len: 60}}
				if next++; next == flows {
					next = 0
				}
			}
			w.ProcessBatch(0, fs[:k], now)
			if j%rxBudget+k >= rxBudget {
				w.FlushAll()
				now += 1000
			}
		}
		w.FlushAll()
	}
	step(flows) // create every flow
	if w.ct.Len() != flows {
		b.Fatalf("%d connections after warm-up, want %d; counters %v", w.ct.Len(), flows, nonZero(w))
	}
	created := w.c[cConnsCreated]
	for _, m := range []struct {
		name string
		run  func(int)
	}{{"process", step}, {"batch", batched}} {
		b.Run(m.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(60)
			m.run(b.N)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
			if w.c[cConnsCreated] != created {
				b.Fatalf("flows were re-created while established")
			}
		})
	}
}
