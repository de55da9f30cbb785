package dataplanetest

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/govs/govs/internal/checksum"
)

// Fragment splits the untagged Ethernet frame b, an IPv4 packet without options or an IPv6
// packet without extension headers, into fragments of at most mtu bytes of IP packet each, as a
// sending host does (RFC 791; RFC 8200 section 4.5, with a Fragment header right after the fixed
// header), with identification id (IPv4 uses its low 16 bits). A packet that fits is returned
// whole. The fragments are new slices; b is not changed.
func Fragment(b []byte, mtu int, id uint32) [][]byte {
	const eth = 14
	if len(b) < eth+20 {
		return [][]byte{b}
	}
	v4 := b[eth]>>4 == 4
	hdr := 40
	if v4 {
		hdr = 20
	}
	if len(b)-eth <= mtu {
		return [][]byte{slices.Clone(b)}
	}
	payload := b[eth+hdr:]
	room := mtu - hdr
	if !v4 {
		room -= 8
	}
	room &^= 7
	var out [][]byte
	for off := 0; off < len(payload); off += room {
		n := min(room, len(payload)-off)
		more := off+n < len(payload)
		f := slices.Clone(b[:eth+hdr])
		if v4 {
			ip := f[eth:]
			binary.BigEndian.PutUint16(ip[2:], uint16(hdr+n))
			binary.BigEndian.PutUint16(ip[4:], uint16(id))
			fo := uint16(off / 8)
			if more {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(ip[6:], fo)
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], checksum.IPv4Header(ip[:20]))
		} else {
			ip := f[eth:]
			next := ip[6]
			ip[6] = 44
			binary.BigEndian.PutUint16(ip[4:], uint16(8+n))
			fh := make([]byte, 8)
			fh[0] = next
			fo := uint16(off/8) << 3
			if more {
				fo |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], fo)
			binary.BigEndian.PutUint32(fh[4:], id)
			f = append(f, fh...)
		}
		out = append(out, append(f, payload[off:off+n]...))
	}
	return out
}

// Reassemble puts the fragments of one datagram (untagged Ethernet frames, in any order, as
// Fragment makes them) back into one frame, with the headers of the first fragment; it checks
// that they cover the datagram without gaps and agree on addresses.
func Reassemble(frags [][]byte) ([]byte, error) {
	const eth = 14
	type piece struct {
		off  int
		data []byte
		more bool
	}
	var ps []piece
	var first []byte
	var src, dst []byte
	for _, f := range frags {
		if len(f) < eth+40 {
			return nil, errors.New("fragment too short")
		}
		ip := f[eth:]
		var p piece
		var hdr int
		if ip[0]>>4 == 4 {
			hdr = int(ip[0]&0xf) * 4
			fo := binary.BigEndian.Uint16(ip[6:])
			p = piece{int(fo&0x1fff) * 8, ip[hdr:binary.BigEndian.Uint16(ip[2:])], fo&0x2000 != 0}
			if src == nil {
				src, dst = ip[12:16], ip[16:20]
			} else if string(src) != string(ip[12:16]) || string(dst) != string(ip[16:20]) {
				return nil, errors.New("fragments of different addresses")
			}
		} else {
			if ip[6] != 44 {
				return nil, errors.New("IPv6 packet without a Fragment header")
			}
			hdr = 48
			fo := binary.BigEndian.Uint16(ip[42:])
			p = piece{int(fo>>3) * 8, ip[hdr : 40+int(binary.BigEndian.Uint16(ip[4:]))], fo&1 != 0}
			if src == nil {
				src, dst = ip[8:24], ip[24:40]
			} else if string(src) != string(ip[8:24]) || string(dst) != string(ip[24:40]) {
				return nil, errors.New("fragments of different addresses")
			}
		}
		if p.off == 0 {
			first = f[:eth+hdr]
		}
		ps = append(ps, p)
	}
	if first == nil {
		return nil, errors.New("no first fragment")
	}
	slices.SortFunc(ps, func(a, b piece) int { return a.off - b.off })
	var payload []byte
	for i, p := range ps {
		if p.off != len(payload) {
			return nil, errors.New("fragments overlap or leave a gap")
		}
		if p.more != (i < len(ps)-1) {
			return nil, errors.New("more-fragments flags do not match the offsets")
		}
		payload = append(payload, p.data...)
	}
	out := slices.Clone(first)
	ip := out[eth:]
	if ip[0]>>4 == 4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(payload)))
		binary.BigEndian.PutUint16(ip[6:], 0)
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], checksum.IPv4Header(ip[:int(ip[0]&0xf)*4]))
	} else {
		ip[6] = ip[40] // the Fragment header's next header
		out = append(out[:eth+40], payload...)
		binary.BigEndian.PutUint16(out[eth+4:], uint16(len(payload)))
		return out, nil
	}
	return append(out, payload...), nil
}
