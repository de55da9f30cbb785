//go:build linux

package afpacket

import (
	"net"
	"sync"
	"testing"
	"time"
)

var sinkBytes int

// TestNoAllocs pins the per-frame path at zero allocations: Next, TxFrame, TxCommit, Flush
// and an empty Next/Flush.
func TestNoAllocs(t *testing.T) {
	p := newPair(t)
	rx := openIn(t, p.NSB, Config{Interface: p.B})
	tx := openIn(t, p.NSB, Config{Interface: p.B, TxFrames: 512})
	peer := openRaw(t, p.NSA, p.A)
	hw := rx.HardwareAddr()
	for i := range 300 {
		peer.send(t, testFrame(hw[:], peer.hw, uint32(i), 128))
	}
	if ready, _ := rx.Wait(time.Second); !ready {
		t.Fatal("no frames arrived")
	}
	time.Sleep(5 * time.Millisecond) // let the block(s) retire
	got := 0
	allocs := testing.AllocsPerRun(200, func() {
		if f, m, ok := rx.Next(); ok {
			got++
			if buf := tx.TxFrame(); buf != nil {
				tx.TxCommit(copy(buf, f), m.Vnet)
			}
		}
		if _, err := tx.Flush(); err != nil {
			t.Fatal(err)
		}
		sinkBytes += len(tx.TxFrame())
	})
	if allocs != 0 {
		t.Errorf("allocations per frame = %v, want 0", allocs)
	}
	if got == 0 {
		t.Error("the measured loop saw no frame")
	}
}

// BenchmarkForward forwards generated 64-byte frames from one veth to another through
// RX ring → copy → TX ring, the data plane's path without parsing. ns/op is per frame.
//
//	generator (TX ring) ─ veth ─ [RX ring → copy → TX ring] ─ veth ─ sink (kernel drops)
func BenchmarkForward(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"4k-blocks", Config{BlockSize: 4 << 10, NumBlocks: 1024, TxFrames: 1024}},
		{"4k-blocks-vnet", Config{BlockSize: 4 << 10, NumBlocks: 1024, TxFrameSize: 2048, TxFrames: 1024, VnetHdr: true}},
		{"128k-blocks-vnet", Config{VnetHdr: true, TxFrameSize: 2048, TxFrames: 1024}},
		{"v2-frames-vnet", Config{VnetHdr: true, FrameRing: true, TxFrameSize: 2048, TxFrames: 1024}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			requireRoot(b)
			nsG, nsF, nsS := newNS(b), newNS(b), newNS(b)
			in := newVeth(b, nsG, nsF, "", "")
			out := newVeth(b, nsF, nsS, "", "")
			gen := openIn(b, nsG, Config{Interface: in.A, TxFrameSize: 2048, TxFrames: 1024, QdiscBypass: true, VnetHdr: true})
			rcfg, tcfg := tc.cfg, tc.cfg
			tcfg.FrameRing = false // a frame ring has no TX ring
			rcfg.Interface, tcfg.Interface = in.B, out.A
			tcfg.QdiscBypass = true
			rx := openIn(b, nsF, rcfg)
			tx := openIn(b, nsF, tcfg)
			ghw, rhw := gen.HardwareAddr(), rx.HardwareAddr()
			frame := testFrame(net.HardwareAddr(rhw[:]), net.HardwareAddr(ghw[:]), 0, 64)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // generator: keep the input veth busy until stop
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					for buf := gen.TxFrame(); buf != nil; buf = gen.TxFrame() {
						gen.TxCommit(copy(buf, frame), VnetHdr{})
					}
					gen.Flush()
				}
			}()
			defer func() { close(stop); wg.Wait() }()

			b.ReportAllocs()
			b.ResetTimer()
			deadline := time.Now().Add(30 * time.Second)
			for n := 0; n < b.N; {
				f, m, ok := rx.Next()
				if !ok {
					tx.Flush()
					if time.Now().After(deadline) {
						b.Fatalf("only %d of %d frames in 30s", n, b.N)
					}
					rx.Wait(time.Millisecond)
					continue
				}
				buf := tx.TxFrame()
				if buf == nil {
					tx.Flush()
					buf = tx.TxFrame()
				}
				if buf != nil {
					tx.TxCommit(copy(buf, f), m.Vnet)
				}
				n++
				if n%64 == 0 {
					tx.Flush()
				}
			}
			tx.Flush()
			b.StopTimer()
			st, _ := rx.Stats()
			b.ReportMetric(float64(st.Drops)/float64(b.N), "rxdrops/op")
		})
	}
}
