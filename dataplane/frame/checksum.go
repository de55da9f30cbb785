package frame

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the RFC 1071 ones' complement sum of b, added to initial, folded to 16 bits. It is
// the sum, not its complement: a checksum field is set to ^Checksum(...) with the field zeroed, and data
// that includes a correct checksum field sums to 0xffff. initial carries a partial sum in, for example a
// pseudo-header's.
//
// The loop adds 8 bytes per step into a 64-bit accumulator with end-around carry; because 2^64 and 2^16
// are both congruent to 1 modulo 0xffff, folding that 64-bit sum gives the 16-bit ones' complement sum
// (RFC 1071 section 2(C), "parallel summation"). It loads words in little-endian order, which needs no
// byte swap on common CPUs, and swaps the folded result once (RFC 1071 section 2(B), byte order
// independence).
func Checksum(b []byte, initial uint32) uint16 {
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
	return fold32(uint32(bits.ReverseBytes16(fold64(s))) + uint32(fold32(initial)))
}

// headerSum20 is Checksum(h[:20], 0) for an IPv4 header without options, unrolled: five
// little-endian 32-bit words cannot overflow a 64-bit sum.
func headerSum20(h *[20]byte) uint16 {
	s := uint64(binary.LittleEndian.Uint32(h[0:])) + uint64(binary.LittleEndian.Uint32(h[4:])) +
		uint64(binary.LittleEndian.Uint32(h[8:])) + uint64(binary.LittleEndian.Uint32(h[12:])) +
		uint64(binary.LittleEndian.Uint32(h[16:]))
	// s < 5<<32: one end-around carry takes it to 32 bits, then to 16 (small enough to inline).
	x, c := bits.Add32(uint32(s), uint32(s>>32), 0)
	return bits.ReverseBytes16(fold32(x + c))
}

// fold64 folds a 64-bit ones' complement sum to 16 bits.
func fold64(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	return fold32(uint32(s>>16) + uint32(s&0xffff))
}

// fold32 folds a 32-bit ones' complement sum to 16 bits. A non-zero sum never folds to zero.
func fold32(s uint32) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// wordDiff is the ones' complement sum of the changes from old to new, for a 16-bit field: in ones'
// complement arithmetic -old is ^old, so the change is ^old + new (RFC 1624 section 3).
func wordDiff(old, new uint16) uint32 {
	return uint32(^old) + uint32(new)
}

// bytesDiff is the ones' complement sum of the changes from old to new, which have the same even length
// (4 or 16: addresses). It works on 32-bit words; 2^32 is congruent to 1 modulo 0xffff.
func bytesDiff(old, new []byte) uint32 {
	var s uint64
	for len(old) >= 4 && len(new) >= 4 {
		s += uint64(^binary.BigEndian.Uint32(old)) + uint64(binary.BigEndian.Uint32(new))
		old, new = old[4:], new[4:]
	}
	return uint32(fold64(s))
}

// updateChecksum applies a ones' complement sum of changes to a checksum field, as in RFC 1624
// equation 3: HC' = ~(~HC + ~m + m'). The result is 0 rather than 0xffff for an all-ones sum, like a
// checksum computed from scratch.
func updateChecksum(hc uint16, diff uint32) uint16 {
	return ^fold32(uint32(^hc) + diff)
}

// pseudoHeaderSum is the ones' complement sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793, RFC 768,
// RFC 8200 section 8.1): both addresses, the protocol and the upper-layer length. For IPv4 only the last
// 4 bytes of the mapped addresses count; their zero and 0xffff prefix words are not added.
func pseudoHeaderSum(family uint8, src, dst *[16]byte, proto uint8, length uint32) uint32 {
	var s uint64
	if family == 4 {
		s = uint64(binary.BigEndian.Uint32(src[12:])) + uint64(binary.BigEndian.Uint32(dst[12:]))
	} else {
		for i := 0; i < 16; i += 4 {
			s += uint64(binary.BigEndian.Uint32(src[i:])) + uint64(binary.BigEndian.Uint32(dst[i:]))
		}
	}
	s += uint64(proto) + uint64(length)
	return uint32(fold64(s))
}
