// Package checksum is the Internet checksum (RFC 1071) in one place: the data plane's rewrites,
// the announcer's neighbour advertisements, the benchmark's generated frames and the tests' crafted
// ones all sum through it, so a fix or a faster loop reaches every user at once.
package checksum

import (
	"encoding/binary"
	"math/bits"
)

// Sum returns the RFC 1071 ones' complement sum of b, added to initial, folded to 16 bits. It is
// the sum, not its complement: a checksum field is set to ^Sum(...) with the field zeroed, and data
// that includes a correct checksum field sums to 0xffff. initial carries a partial sum in, for example a
// pseudo-header's.
//
// The loop adds 8 bytes per step into a 64-bit accumulator with end-around carry; because 2^64 and 2^16
// are both congruent to 1 modulo 0xffff, folding that 64-bit sum gives the 16-bit ones' complement sum
// (RFC 1071 section 2(C), "parallel summation"). It loads words in little-endian order, which needs no
// byte swap on common CPUs, and swaps the folded result once (RFC 1071 section 2(B), byte order
// independence).
func Sum(b []byte, initial uint32) uint16 {
	var s, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	s, c = bits.Add64(s, 0, c)
	s += c // if that add carried, s is 0 now, so this cannot carry again
	// At most 7 bytes are left; their little-endian value fits in 56 bits.
	var t uint64
	switch len(b) {
	case 7:
		t = uint64(b[6]) << 48
		fallthrough
	case 6:
		t |= uint64(binary.LittleEndian.Uint16(b[4:])) << 32
		t |= uint64(binary.LittleEndian.Uint32(b))
	case 5:
		t = uint64(b[4])<<32 | uint64(binary.LittleEndian.Uint32(b))
	case 4:
		t = uint64(binary.LittleEndian.Uint32(b))
	case 3:
		t = uint64(b[2])<<16 | uint64(binary.LittleEndian.Uint16(b))
	case 2:
		t = uint64(binary.LittleEndian.Uint16(b))
	case 1:
		t = uint64(b[0])
	}
	s, c = bits.Add64(s, t, 0)
	s += c
	return Fold32(uint32(bits.ReverseBytes16(Fold64(s))) + uint32(Fold32(initial)))
}

// Fold64 folds a 64-bit ones' complement sum to 16 bits.
func Fold64(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	return Fold32(uint32(s>>16) + uint32(s&0xffff))
}

// Fold32 folds a 32-bit ones' complement sum to 16 bits. A non-zero sum never folds to zero.
func Fold32(s uint32) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// Pseudo is the ones' complement sum, as big-endian 16-bit words ready to be Sum's initial, of the
// TCP/UDP/ICMPv6 pseudo-header (RFC 793, RFC 768, RFC 8200 section 8.1): both addresses (4 bytes
// each for IPv4, 16 for IPv6), the protocol and the upper-layer length.
func Pseudo(src, dst []byte, proto uint8, length uint32) uint32 {
	s := uint64(proto) + uint64(length)
	for len(src) >= 4 && len(dst) >= 4 {
		s += uint64(binary.BigEndian.Uint32(src)) + uint64(binary.BigEndian.Uint32(dst))
		src, dst = src[4:], dst[4:]
	}
	return uint32(Fold64(s))
}

// Transport returns the checksum field of a TCP, UDP or ICMPv6 segment seg (its own field zeroed)
// between src and dst. UDP's zero becomes 0xffff, since zero there means no checksum (RFC 768).
func Transport(src, dst []byte, proto uint8, seg []byte) uint16 {
	c := ^Sum(seg, Pseudo(src, dst, proto, uint32(len(seg))))
	if proto == 17 && c == 0 {
		c = 0xffff
	}
	return c
}

// IPv4Header returns the header checksum field of IPv4 header h (its own field zeroed).
func IPv4Header(h []byte) uint16 { return ^Sum(h, 0) }
