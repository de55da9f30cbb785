package dataplane

import (
	"encoding/binary"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
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
		b := append(all[len(all):len(all)], tmpl...)
		host := uint32(i / 32)
		binary.BigEndian.PutUint32(b[26:], 198<<24|18<<16|0x8000+host)
		binary.BigEndian.PutUint16(b[34:], uint16(1024+i%32))
		b[24], b[25] = 0, 0
		binary.BigEndian.PutUint16(b[24:], ^frame.Checksum(b[14:34], 0))
		if frame.Parse(b, &p) != frame.ErrNone {
			tb.Fatal("bench frame does not parse")
		}
		frame.CompleteL4Checksum(b, &p)
		all = all[:len(all)+60]
	}
	return all
}

// BenchmarkWorker forwards established 64-byte UDP flows through Process and FlushAll, frames taken
// from an in-memory port as the engine takes them from a ring. ns/op is ns per packet.
func BenchmarkWorker(b *testing.B) {
	for _, bc := range []struct {
		name  string
		flows int
	}{
		{"flows=64k", 1 << 16},
		{"flows=1M", 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			frames := benchFrames(b, bc.flows)
			rx := dataplanetest.NewPort(2048, 1)
			tx := dataplanetest.NewPort(2048, rxBudget)
			w := mustWorker(b, 0, []Port{rx, tx}, [][6]byte{macPort0, macPort1}, bc.flows+bc.flows/4)
			w.SetTables(buildTables(1, standardSpecs()...))
			for i := 0; i < len(frames); i += 60 {
				rx.Inject(frames[i:i+60], afpacket.RxMeta{})
			}
			rx.Loop(true)
			now := int64(1)
			step := func(n int) {
				for j := 0; j < n; j++ {
					f, m, _ := rx.Next()
					w.Process(0, f, m, now)
					if j%rxBudget == rxBudget-1 {
						w.FlushAll()
						now += 1000
					}
				}
				w.FlushAll()
			}
			step(bc.flows) // create every flow
			if w.ct.Len() != bc.flows {
				b.Fatalf("%d connections after warm-up, want %d; counters %v", w.ct.Len(), bc.flows, nonZero(w))
			}
			created := w.c[cConnsCreated]
			b.ReportAllocs()
			b.SetBytes(60)
			b.ResetTimer()
			step(b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/packet")
			if w.c[cConnsCreated] != created {
				b.Fatalf("flows were re-created while established")
			}
		})
	}
}
