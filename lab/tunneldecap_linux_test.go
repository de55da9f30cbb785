package lab

import (
	"encoding/binary"
	"testing"

	"github.com/govs/govs/internal/checksum"
)

// ipipFrame is an Ethernet frame carrying inner in IPv4 protocol 4 (or in UDP to port, with a GUE
// header, when port is not 0), its outer checksums valid.
func ipipFrame(inner []byte, port uint16) []byte {
	b := make([]byte, 14, 14+20+12+len(inner))
	b[12], b[13] = 0x08, 0x00
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 4
	copy(ip[12:], []byte{198, 18, 0, 1})
	copy(ip[16:], []byte{198, 18, 0, 11})
	payload := inner
	if port != 0 {
		ip[9] = 17
		u := make([]byte, 12, 12+len(inner))
		binary.BigEndian.PutUint16(u[0:], 50000)
		binary.BigEndian.PutUint16(u[2:], port)
		binary.BigEndian.PutUint16(u[4:], uint16(12+len(inner)))
		u[9] = 4
		payload = append(u, inner...)
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(ip[10:], checksum.IPv4Header(ip))
	return append(append(b, ip...), payload...)
}

// TestTunnelDecapParse: the tunnel end takes IPIP and GUE frames apart and tells frames for the
// tunnel with a wrong outer header (counted as malformed) from frames that are not for it.
func TestTunnelDecapParse(t *testing.T) {
	d := &TunnelDecap{guePort: 6080}
	inner := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 10, 198, 18, 0, 100}
	for _, port := range []uint16{0, 6080} {
		f := ipipFrame(inner, port)
		o, got, ok, mine := d.decap(f)
		if !ok || !mine || string(got) != string(inner) || o.Len != len(f)-14 {
			t.Fatalf("port %d: decap = %+v %x ok %v mine %v", port, o, got, ok, mine)
		}
		bad := append([]byte(nil), f...)
		bad[14+8]-- // the TTL, under the IPv4 header checksum
		if _, _, ok, mine := d.decap(bad); ok || !mine {
			t.Fatalf("port %d: a wrong outer checksum: ok %v mine %v, want a malformed tunnel frame", port, ok, mine)
		}
	}
	other := ipipFrame(inner, 53) // UDP, not to the GUE port
	if _, _, _, mine := d.decap(other); mine {
		t.Fatal("a UDP datagram to another port was taken for the tunnel")
	}
}

// FuzzTunnelDecap: any frame is taken apart or refused, never a panic; a frame taken apart gives
// exactly the outer packet's payload behind its headers (its IP length, not the frame's: Ethernet
// pads short frames), its outer IPv4 header checksum right.
func FuzzTunnelDecap(f *testing.F) {
	inner := []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 10, 198, 18, 0, 100}
	f.Add(ipipFrame(inner, 0))
	f.Add(ipipFrame(inner, 6080))
	f.Add(append(ipipFrame(inner, 0), make([]byte, 14)...)) // padded to 60 bytes, as on the wire
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &TunnelDecap{guePort: 6080}
		o, inner, ok, _ := d.decap(b)
		if !ok {
			return
		}
		ip := b[14:]
		hdr := 40
		if ip[0]>>4 == 4 {
			hdr = int(ip[0]&0xf) * 4
			if checksum.Sum(ip[:hdr], 0) != 0xffff {
				t.Fatalf("accepted an outer IPv4 header with a wrong checksum: %x", ip[:hdr])
			}
		}
		if o.Proto == 17 {
			hdr += 8 + 4 // UDP and GUE
		}
		// inner is a slice of b: where it starts and ends in b.
		from := cap(b) - cap(inner)
		if o.Len > len(ip) || from != 14+hdr || from+len(inner) != 14+o.Len {
			t.Fatalf("inner packet at [%d:%d] of a %d-byte frame whose outer packet is %d bytes with %d of headers",
				from, from+len(inner), len(b), o.Len, hdr)
		}
	})
}
