package frame

import (
	"encoding/binary"
	"math/bits"

	"github.com/govs/govs/internal/checksum"
)

// headerSum20 is checksum.Sum(h[:20], 0) for an IPv4 header without options, unrolled: five
// little-endian 32-bit words cannot overflow a 64-bit sum.
func headerSum20(h *[20]byte) uint16 {
	s := uint64(binary.LittleEndian.Uint32(h[0:])) + uint64(binary.LittleEndian.Uint32(h[4:])) +
		uint64(binary.LittleEndian.Uint32(h[8:])) + uint64(binary.LittleEndian.Uint32(h[12:])) +
		uint64(binary.LittleEndian.Uint32(h[16:]))
	// s < 5<<32: one end-around carry takes it to 32 bits, then to 16 (small enough to inline).
	x, c := bits.Add32(uint32(s), uint32(s>>32), 0)
	return bits.ReverseBytes16(checksum.Fold32(x + c))
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
	return uint32(checksum.Fold64(s))
}

// updateChecksum applies a ones' complement sum of changes to a checksum field, as in RFC 1624
// equation 3: HC' = ~(~HC + ~m + m'). The result is 0 rather than 0xffff for an all-ones sum, like a
// checksum computed from scratch.
func updateChecksum(hc uint16, diff uint32) uint16 {
	return ^checksum.Fold32(uint32(^hc) + diff)
}

// pseudoHeaderSum is the ones' complement sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793, RFC 768,
// RFC 8200 section 8.1): both addresses, the protocol and the upper-layer length. For IPv4 only the last
// 4 bytes of the mapped addresses count; their zero and 0xffff prefix words are not added.
func pseudoHeaderSum(family uint8, src, dst *[16]byte, proto uint8, length uint32) uint32 {
	if family == 4 {
		return checksum.Pseudo(src[12:], dst[12:], proto, length)
	}
	return checksum.Pseudo(src[:], dst[:], proto, length)
}
