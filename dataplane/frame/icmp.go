package frame

import "encoding/binary"

// IsICMPError reports whether p is an ICMP error that quotes the packet it is about: for IPv4
// destination unreachable (3), time exceeded (11) and parameter problem (12) (RFC 792); for IPv6
// destination unreachable (1), packet too big (2), time exceeded (3) and parameter problem (4) (RFC 4443).
func IsICMPError(p *Parsed) bool {
	if p.L4Off == 0 {
		return false
	}
	switch {
	case p.Family == 4 && p.Proto == ProtoICMP:
		return p.ICMPType == 3 || p.ICMPType == 11 || p.ICMPType == 12
	case p.Family == 6 && p.Proto == ProtoICMPv6:
		return p.ICMPType >= 1 && p.ICMPType <= 4
	}
	return false
}

// ParseICMPError parses the packet quoted by the ICMP error that Parse described in p: its IP header
// (of the outer family) and, when the quote reaches it, the first 8 bytes of its TCP, UDP or ICMP
// header. inner's offsets are relative to the whole frame b, and inner.End is p.End, the end of the
// quote, not the quoted packet's own length; inner's Src/Dst/ports are those of the original packet, so
// they are the outer packet's reversed. It checks only what it needs: the quoted IPv4 header checksum and
// lengths are not verified, since routers quote what they got.
func ParseICMPError(b []byte, p *Parsed, inner *Parsed) Error {
	*inner = Parsed{}
	if !IsICMPError(p) || uint64(p.End) > uint64(len(b)) || p.L4Off > p.End || p.End-p.L4Off < ICMPMinimumSize {
		return ErrNotICMPError
	}
	off := p.L4Off + ICMPMinimumSize
	end := p.End
	avail := end - off
	inner.EtherType, inner.VLANs, inner.Family = p.EtherType, p.VLANs, p.Family
	inner.L3Off, inner.End = off, end
	if p.Family == 4 {
		if avail < IPv4MinimumSize {
			return ErrTruncatedInnerIP
		}
		h := b[off:end]
		if h[0]>>4 != 4 {
			return ErrBadInnerIPVersion
		}
		ihl := uint32(h[0]&0xf) * 4
		if ihl < IPv4MinimumSize {
			return ErrBadInnerIPv4IHL
		}
		if ihl > avail {
			return ErrTruncatedInnerIP
		}
		inner.Proto = h[9]
		inner.Src[10], inner.Src[11] = 0xff, 0xff
		inner.Dst[10], inner.Dst[11] = 0xff, 0xff
		copy(inner.Src[12:], h[12:16])
		copy(inner.Dst[12:], h[16:20])
		switch frag := binary.BigEndian.Uint16(h[6:]); {
		case frag&0x1fff != 0:
			inner.Frag = FragLater
			return ErrNone
		case frag&0x2000 != 0:
			inner.Frag = FragFirst
		}
		return parseInnerL4(b, inner, off+ihl)
	}
	if avail < IPv6MinimumSize {
		return ErrTruncatedInnerIP
	}
	h := b[off:end]
	if h[0]>>4 != 6 {
		return ErrBadInnerIPVersion
	}
	copy(inner.Src[:], h[8:24])
	copy(inner.Dst[:], h[24:40])
	proto, l4, frag, err := walkIPv6Ext(b, h[6], off+IPv6MinimumSize, end, ErrTruncatedInnerIPv6Ext, ErrInnerIPv6ExtChainTooLong)
	inner.Proto, inner.Frag = proto, frag
	if err != ErrNone || l4 == 0 {
		return err
	}
	return parseInnerL4(b, inner, l4)
}

// parseInnerL4 reads the first 8 bytes of a quoted transport header: enough for ports, the ICMP
// identifier, and the UDP and ICMP checksums (the TCP checksum is at byte 16 and may be cut off).
func parseInnerL4(b []byte, inner *Parsed, off uint32) Error {
	switch {
	case inner.Proto == ProtoTCP, inner.Proto == ProtoUDP,
		inner.Proto == ProtoICMP && inner.Family == 4, inner.Proto == ProtoICMPv6 && inner.Family == 6:
	default:
		return ErrNone
	}
	if inner.End-off < 8 {
		return ErrTruncatedInnerL4
	}
	h := b[off : off+8]
	switch inner.Proto {
	case ProtoTCP, ProtoUDP:
		inner.SrcPort = binary.BigEndian.Uint16(h[0:])
		inner.DstPort = binary.BigEndian.Uint16(h[2:])
		if inner.Proto == ProtoTCP && inner.End-off >= 14 {
			inner.TCPFlags = b[off+13]
		}
	default:
		inner.ICMPType, inner.ICMPCode = h[0], h[1]
		if isEcho(inner.Proto, h[0]) {
			inner.SrcPort = binary.BigEndian.Uint16(h[4:])
			inner.DstPort = inner.SrcPort
		}
	}
	inner.L4Off = off
	return ErrNone
}

// RewriteInnerSrc rewrites the source address and port of the packet quoted by an ICMP error (NAT of
// ICMP errors), fixing the quoted IPv4 header checksum, the quoted transport checksum when the quote
// includes its field (TCP needs 18 quoted bytes), and the outer ICMP/ICMPv6 checksum, all incrementally.
// p and inner come from Parse and ParseICMPError on b; inner is updated to match. The outer addresses
// are not touched: rewrite them with RewriteSrc/RewriteDst, which keep the ICMPv6 checksum right too.
func RewriteInnerSrc(b []byte, p, inner *Parsed, addr [16]byte, port uint16) {
	rewriteInner(b, p, inner, false, &addr, port)
}

// RewriteInnerDst is RewriteInnerSrc for the quoted packet's destination address and port.
func RewriteInnerDst(b []byte, p, inner *Parsed, addr [16]byte, port uint16) {
	rewriteInner(b, p, inner, true, &addr, port)
}

func rewriteInner(b []byte, p, inner *Parsed, dst bool, addr *[16]byte, port uint16) {
	if !IsICMPError(p) || inner.Family != p.Family || inner.End != p.End || inner.L3Off < p.L4Off+ICMPMinimumSize ||
		(inner.L3Off-p.L4Off)%2 != 0 || uint64(p.End) > uint64(len(b)) {
		return
	}
	diff := rewrite(b, inner, dst, addr, port)
	c := b[p.L4Off+2 : p.L4Off+4]
	binary.BigEndian.PutUint16(c, updateChecksum(binary.BigEndian.Uint16(c), diff))
}
