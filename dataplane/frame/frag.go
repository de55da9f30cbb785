package frame

import "encoding/binary"

// FragmentID returns the identification field of the fragment p describes in b, which with the
// addresses and the protocol names the datagram the fragment belongs to (RFC 791, RFC 8200 section
// 4.5): IPv4's 16-bit ID, or the 32-bit ID of the IPv6 Fragment header; and whether more fragments
// follow (false: the datagram's last one). It reports ok false for a frame that is not a
// fragment, or whose fragment header is not where Parse found it. It reads the headers again
// rather than have Parse keep the ID, so that frames that are not fragments, nearly all of them,
// pay nothing for it.
func FragmentID(b []byte, p *Parsed) (id uint32, more, ok bool) {
	if p.Frag == FragNone || uint64(p.End) > uint64(len(b)) || p.L3Off >= p.End {
		return 0, false, false
	}
	h := b[p.L3Off:p.End]
	if p.Family == 4 {
		if len(h) < IPv4MinimumSize {
			return 0, false, false
		}
		return uint32(binary.BigEndian.Uint16(h[4:])), h[6]&0x20 != 0, true
	}
	if p.Family != 6 || len(h) < IPv6MinimumSize {
		return 0, false, false
	}
	// Walk the chain as Parse did, up to the Fragment header.
	next, off := h[6], uint32(IPv6MinimumSize)
	for range maxIPv6ExtHeaders {
		if uint32(len(h))-off < 8 {
			return 0, false, false
		}
		e := h[off : off+8]
		switch next {
		case ipv6Fragment:
			return binary.BigEndian.Uint32(e[4:]), e[3]&1 != 0, true
		case ipv6HopByHop, ipv6Routing, ipv6DestOptions:
			off += (uint32(e[1]) + 1) * 8
		case ipv6AH:
			off += (uint32(e[1]) + 2) * 4
		default:
			return 0, false, false
		}
		next = e[0]
		if off > uint32(len(h)) {
			return 0, false, false
		}
	}
	return 0, false, false
}
