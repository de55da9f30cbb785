//go:build linux

package afpacket

import (
	"bytes"
	"testing"
	"time"
)

// TestNextBatch checks NextBatch on both ring kinds: every frame arrives once and in order, a
// batch never holds more than asked, the frames of a batch are all still intact when the batch is
// read (they stay in the ring until the next call), and a v3 batch takes frames from one block
// only, so batches are bounded by what the kernel retired.
func TestNextBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		maxSeen int // largest batch the ring kind may return
	}{
		{"v3", Config{BlockSize: 1 << 16, NumBlocks: 8}, 16},
		{"v2", Config{FrameRing: true, RxFrames: 256}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t)
			cfg := tc.cfg
			cfg.Interface = p.B
			rx := openIn(t, p.NSB, cfg)
			peer := openRaw(t, p.NSA, p.A)
			hw := rx.HardwareAddr()
			const n = 200
			sent := make([][]byte, n)
			for i := range sent {
				sent[i] = testFrame(hw[:], peer.hw, uint32(i), 60+(i%7)*150)
			}
			var fs [16]Frame
			next, biggest := 0, 0
			// Send in bursts of 50 (the rings hold them all), read them back in batches.
			for burst := 0; burst < n; burst += 50 {
				for i := burst; i < burst+50; i++ {
					peer.send(t, sent[i])
				}
				deadline := time.Now().Add(3 * time.Second)
				for next < burst+50 && time.Now().Before(deadline) {
					got := rx.NextBatch(fs[:])
					if got == 0 {
						rx.Wait(10 * time.Millisecond)
						continue
					}
					if got > len(fs) {
						t.Fatalf("NextBatch returned %d frames into a batch of %d", got, len(fs))
					}
					biggest = max(biggest, got)
					// Check the whole batch only now: every frame must still be what was sent.
					for _, f := range fs[:got] {
						seq, ok := testSeq(f.Data)
						if !ok {
							continue // stray frames (IPv6 router solicitations and the like)
						}
						if int(seq) != next {
							t.Fatalf("frame %d arrived, want %d (order)", seq, next)
						}
						if !bytes.Equal(f.Data, sent[seq]) || int(f.Meta.Len) != len(f.Data) || f.Meta.Status&StatusUser == 0 {
							t.Fatalf("frame %d: %d bytes (tp_len %d, status %#x), not the %d bytes sent",
								seq, len(f.Data), f.Meta.Len, f.Meta.Status, len(sent[seq]))
						}
						next++
					}
				}
				if next < burst+50 {
					t.Fatalf("got %d frames of %d", next, burst+50)
				}
			}
			if biggest > tc.maxSeen {
				t.Errorf("largest batch %d, want at most %d", biggest, tc.maxSeen)
			}
			if tc.maxSeen > 1 && biggest < 2 {
				t.Errorf("largest batch %d: a v3 block of 50 frames should give batches of several", biggest)
			}
			t.Logf("%d frames, largest batch %d", next, biggest)
		})
	}
}
