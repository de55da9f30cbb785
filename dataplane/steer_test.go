package dataplane

import (
	"fmt"
	"testing"

	"github.com/govs/govs/dataplane/afpacket"
)

// TestSteerHandOff: a batch read from an AF_XDP socket keeps the frames steered to its own worker
// (and unmarked ones) in order; the others are copied to their worker's ring, which forwards them
// as if it had received them: UDP datagrams to a NAT VIP leave worker 1 rewritten, each counted
// once as received, by the worker that forwarded it, and handed_off by the one that read it. A full
// ring drops a frame as handoff_full.
func TestSteerHandOff(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	r0, r1 := newRig(t, tabs, 1024), newRig(t, tabs, 1024)
	r1.w.id = 1
	ring := newHandoffRing(4, 2048)
	r0.w.handOut = []*handoffRing{nil, ring}
	r1.w.handIn = []*handoffRx{{r: ring}}
	o := &steerOut{w: r0.w, in: 0, out: r0.w.handOut}

	var bufs [][]byte
	to := []int32{1, 0, 1, -1, 1, 1, 1, 1}
	for i := range to {
		bufs = append(bufs, build(t, clientPkt(fmt.Sprintf("198.18.1.%d:5000", i+1), "198.18.0.100:4000", 17, 0)))
	}
	copy(o.to[:], to)
	fs := make([]afpacket.Frame, len(bufs))
	k := o.keep(bufs, fs)
	if k != 2 || &fs[0].Data[0] != &bufs[1][0] || &fs[1].Data[0] != &bufs[3][0] {
		t.Fatalf("kept %d frames, want frames 1 and 3 (in place)", k)
	}
	if fs[0].Meta.Status&statusCsumUnknown == 0 || fs[0].Meta.Len != uint32(len(bufs[1])) {
		t.Errorf("kept frame's meta %+v: want its length and the unknown-checksum mark", fs[0].Meta)
	}
	if got := r0.w.c[cHandedOff]; got != 4 {
		t.Errorf("handed_off = %d, want 4 (the ring holds 4)", got)
	}
	if got := r0.w.c[cDropBase+int(DropHandoffFull)]; got != 2 || r0.w.c[cRxFrames] != 2 {
		t.Errorf("handoff_full = %d, rx_frames = %d; want the 2 frames that found the ring full, counted as received", got, r0.w.c[cRxFrames])
	}
	if r0.w.fr.woken != 1<<1 {
		t.Errorf("woken = %b, want worker 1's bit", r0.w.fr.woken)
	}
	last := bufs[0][len(bufs[0])-1]
	bufs[0][len(bufs[0])-1] ^= 0xff // the ring holds a copy: the socket's frame goes back to the kernel

	if !handedOffPending(r1.w.handIn) {
		t.Fatal("worker 1 sees no frame handed to it")
	}
	got := r1.w.receiveHandedOff(r1.w.handIn, 1e6)
	out := r1.flushed()
	if got != 4 || len(out) != 4 || r1.w.c[cRxFrames] != 4 || r1.w.c[cForwarded] != 4 {
		t.Fatalf("worker 1 took %d frames and sent %d (rx_frames %d, forwarded %d); want 4 each", got, len(out), r1.w.c[cRxFrames], r1.w.c[cForwarded])
	}
	if b := out[0].frame; b[len(b)-1] != last {
		t.Error("the handed frame changed with the socket's frame: the ring holds no copy")
	}
	for i, s := range out {
		src, dst := tuple(t, s.frame)
		if want := fmt.Sprintf("198.18.1.%d:5000", []int{1, 3, 5, 6}[i]); src.String() != want || dst.Port() != 4001 {
			t.Errorf("frame %d left as %v -> %v; want %s -> a real server's port 4001", i, src, dst, want)
		}
	}
	if handedOffPending(r1.w.handIn) || ring.peek() != nil {
		t.Error("the ring still holds frames after worker 1 took them")
	}
}

// TestHandoffRxByInterface: the frames of one ring are handed out in runs of one interface each, in
// order, and released only when the next run is asked for.
func TestHandoffRxByInterface(t *testing.T) {
	ring := newHandoffRing(8, 64)
	ins := []int{0, 0, 1, 1, 1, 0}
	for i, in := range ins {
		if !ring.push(in, []byte{byte(i)}, &afpacket.RxMeta{Len: 1}) {
			t.Fatal("push refused")
		}
	}
	h := &handoffRx{r: ring}
	var got []string
	fs := make([]afpacket.Frame, 2) // smaller than a run
	for {
		in, ok := h.next()
		if !ok {
			break
		}
		h.in = in
		for n := h.NextBatch(fs); n > 0; n = h.NextBatch(fs) {
			for _, f := range fs[:n] {
				got = append(got, fmt.Sprintf("%d@%d", f.Data[0], in))
			}
		}
	}
	if fmt.Sprint(got) != "[0@0 1@0 2@1 3@1 4@1 5@0]" {
		t.Errorf("handed out %v", got)
	}
	if ring.peek() != nil || h.held != 0 {
		t.Errorf("frames left in the ring (held %d)", h.held)
	}
}

// BenchmarkSteerHandOff is the reading worker's and the receiving worker's cost of handing over
// 64-byte frames (what the copy and the ring add to a frame read by the wrong worker): a batch
// of MaxBatch frames, every other one steered to the other worker, handed over and taken off the
// ring.
// Reported per handed frame; no allocation.
func BenchmarkSteerHandOff(b *testing.B) {
	tabs := buildTables(1, standardSpecs()...)
	r0 := newRig(b, tabs, 1024)
	ring := newHandoffRing(1024, 2048)
	r0.w.handOut = []*handoffRing{nil, ring}
	o := &steerOut{w: r0.w, in: 0, out: r0.w.handOut}
	h := &handoffRx{r: ring}
	frame := build(b, clientPkt("198.18.1.1:5000", "198.18.0.100:4000", 17, 0))[:64]
	bufs := make([][]byte, MaxBatch)
	for i := range bufs {
		bufs[i] = append([]byte(nil), frame...)
		o.to[i] = int32(i % 2)
	}
	fs := make([]afpacket.Frame, MaxBatch)
	got := make([]afpacket.Frame, MaxBatch)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		o.keep(bufs, fs)
		for in, ok := h.next(); ok; in, ok = h.next() {
			h.in = in
			for h.NextBatch(got) > 0 {
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*MaxBatch/2), "ns/handed-frame")
}
