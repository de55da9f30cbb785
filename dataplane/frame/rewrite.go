package frame

import (
	"encoding/binary"

	"github.com/govs/govs/internal/checksum"
)

// SetEthernet writes the destination and source MAC addresses of frame b. It does nothing to a frame
// shorter than the two addresses.
func SetEthernet(b []byte, dst, src [6]byte) {
	if len(b) < 12 {
		return
	}
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
}

// RewriteDst changes the IP destination address, and the TCP/UDP destination port, of the frame b
// that Parse described in p, in place. It updates the IPv4 header checksum and the transport checksum
// incrementally (RFC 1624); the ICMPv6 checksum follows the address because it covers the pseudo-header.
// An IPv4 UDP checksum of 0 (none) stays 0; a UDP checksum that would become 0 is sent as 0xffff
// (RFC 768, RFC 8200 section 8.1). For ICMP/ICMPv6 echo, port replaces the identifier; for other ICMP
// messages and for protocols without ports it is ignored. A later fragment only gets its address
// changed. p is updated to match.
//
// addr must be of the frame's family (IPv4-mapped for IPv4; only its last 4 bytes are written). The
// frame's transport checksum must be complete: call CompleteL4Checksum first on a frame received with
// a partial checksum (TP_STATUS_CSUMNOTREADY). A frame that did not parse (or ARP) is left alone.
func RewriteDst(b []byte, p *Parsed, addr [16]byte, port uint16) {
	if !RewriteFast(b, p, true, &addr, port) {
		rewrite(b, p, true, &addr, port)
	}
}

// RewriteSrc is RewriteDst for the IP source address and the TCP/UDP source port.
func RewriteSrc(b []byte, p *Parsed, addr [16]byte, port uint16) {
	if !RewriteFast(b, p, false, &addr, port) {
		rewrite(b, p, false, &addr, port)
	}
}

// RewriteFast is RewriteDst (dst true) or RewriteSrc for the common case, an unfragmented IPv4 TCP
// or UDP packet without IP options or IPv6 one without extension headers, in a few straight-line
// steps; it reports false, changing
// nothing, for every other packet. The data plane's express lane calls it directly.
//
// The headers are viewed as fixed-size arrays, so the field accesses need no bounds checks of their
// own (each check here was counted: together they were a third of the function).
func RewriteFast(b []byte, q *Parsed, dst bool, addr *[16]byte, port uint16) bool {
	if q.Family == 6 {
		return rewriteFast6(b, q, dst, addr, port)
	}
	if q.Family != 4 || q.Frag != FragNone || q.L4Off != q.L3Off+IPv4MinimumSize || q.L3Off == 0 ||
		uint64(q.End) > uint64(len(b)) || q.End < q.L4Off {
		return false
	}
	v := b[q.L3Off:q.End] // the IP packet
	var sum *[2]byte
	switch {
	case q.Proto == ProtoUDP && len(v) >= IPv4MinimumSize+UDPMinimumSize:
		sum = (*[2]byte)(v[IPv4MinimumSize+6 : IPv4MinimumSize+8])
	case q.Proto == ProtoTCP && len(v) >= IPv4MinimumSize+TCPMinimumSize:
		sum = (*[2]byte)(v[IPv4MinimumSize+16 : IPv4MinimumSize+18])
	default:
		return false
	}
	h := (*[IPv4MinimumSize + 4]byte)(v) // the IP header and the ports
	ao, po := 12, IPv4MinimumSize
	if dst {
		ao, po = 16, IPv4MinimumSize+2
	}
	a, pa := (*[4]byte)(h[ao:ao+4]), (*[2]byte)(h[po:po+2])
	// Ones' complement sum of the changes (RFC 1624): the address's two words, then the port's.
	oldA, newA := binary.BigEndian.Uint32(a[:]), binary.BigEndian.Uint32(addr[12:])
	adiff := uint32(^uint16(oldA>>16)) + uint32(^uint16(oldA)) + newA>>16 + newA&0xffff
	*a = [4]byte(addr[12:16])
	binary.BigEndian.PutUint16(h[10:], updateChecksum(binary.BigEndian.Uint16(h[10:]), adiff))
	oldP := binary.BigEndian.Uint16(pa[:])
	binary.BigEndian.PutUint16(pa[:], port)
	if old := binary.BigEndian.Uint16(sum[:]); q.Proto == ProtoTCP || old != 0 { // IPv4 UDP 0: no checksum (RFC 768)
		s := updateChecksum(old, adiff+wordDiff(oldP, port))
		if s == 0 && q.Proto == ProtoUDP {
			s = 0xffff
		}
		binary.BigEndian.PutUint16(sum[:], s)
	}
	// p's IPv4 addresses are already IPv4-mapped: only their last four bytes change.
	if dst {
		*(*[4]byte)(q.Dst[12:]) = *a
		q.DstPort = port
	} else {
		*(*[4]byte)(q.Src[12:]) = *a
		q.SrcPort = port
	}
	return true
}

// rewriteFast6 is RewriteFast for IPv6: no header checksum, and the transport checksum covers the
// whole addresses (pseudo-header). An IPv6 UDP checksum is never "none": a 0 is updated like any
// other value, as rewrite does. Its checks mirror RewriteFast's with IPv6's constants: code shared
// with IPv4, the header size a variable, would cost 35 more instructions a packet (counted), since
// its bounds checks would not fold away.
func rewriteFast6(b []byte, q *Parsed, dst bool, addr *[16]byte, port uint16) bool {
	if q.Frag != FragNone || q.L4Off != q.L3Off+IPv6MinimumSize || q.L3Off == 0 ||
		uint64(q.End) > uint64(len(b)) || q.End < q.L4Off {
		return false
	}
	v := b[q.L3Off:q.End] // the IP packet
	var sum *[2]byte
	switch {
	case q.Proto == ProtoUDP && len(v) >= IPv6MinimumSize+UDPMinimumSize:
		sum = (*[2]byte)(v[IPv6MinimumSize+6 : IPv6MinimumSize+8])
	case q.Proto == ProtoTCP && len(v) >= IPv6MinimumSize+TCPMinimumSize:
		sum = (*[2]byte)(v[IPv6MinimumSize+16 : IPv6MinimumSize+18])
	default:
		return false
	}
	h := (*[IPv6MinimumSize + 4]byte)(v) // the IP header and the ports
	ao, po := 8, IPv6MinimumSize
	if dst {
		ao, po = 24, IPv6MinimumSize+2
	}
	a, pa := (*[16]byte)(h[ao:ao+16]), (*[2]byte)(h[po:po+2])
	adiff := bytesDiff(a[:], addr[:])
	*a = *addr
	oldP := binary.BigEndian.Uint16(pa[:])
	binary.BigEndian.PutUint16(pa[:], port)
	s := updateChecksum(binary.BigEndian.Uint16(sum[:]), adiff+wordDiff(oldP, port))
	if s == 0 && q.Proto == ProtoUDP {
		s = 0xffff
	}
	binary.BigEndian.PutUint16(sum[:], s)
	if dst {
		q.Dst, q.DstPort = *addr, port
	} else {
		q.Src, q.SrcPort = *addr, port
	}
	return true
}

// rewrite changes the source or destination address and port of the IP packet q describes, fixing the
// IPv4 header checksum and the transport checksum if its field lies inside b[:q.End]. It returns the
// ones' complement sum of all word changes it made, which an enclosing ICMP error's checksum needs.
// Every field it touches is 16-bit aligned relative to the start of the IP header.
func rewrite(b []byte, q *Parsed, dst bool, addr *[16]byte, port uint16) (outer uint32) {
	end := q.End
	if uint64(end) > uint64(len(b)) || q.L3Off > end {
		return 0 // not a Parsed of this frame; refuse rather than panic
	}
	var adiff uint32 // change of the address words, which the pseudo-header sees too
	switch q.Family {
	case 4:
		if end-q.L3Off < IPv4MinimumSize {
			return 0
		}
		h := b[q.L3Off:end]
		a := h[12:16]
		if dst {
			a = h[16:20]
		}
		adiff = bytesDiff(a, addr[12:16])
		copy(a, addr[12:16])
		old := binary.BigEndian.Uint16(h[10:])
		sum := updateChecksum(old, adiff)
		binary.BigEndian.PutUint16(h[10:], sum)
		outer = adiff + wordDiff(old, sum)
	case 6:
		if end-q.L3Off < IPv6MinimumSize {
			return 0
		}
		h := b[q.L3Off:end]
		a := h[8:24]
		if dst {
			a = h[24:40]
		}
		adiff = bytesDiff(a, addr[:])
		copy(a, addr[:])
		outer = adiff
	default:
		return 0
	}
	if dst {
		q.Dst = *addr
	} else {
		q.Src = *addr
	}
	if q.Family == 4 {
		q.Dst[10], q.Dst[11], q.Src[10], q.Src[11] = 0xff, 0xff, 0xff, 0xff
		clear(q.Dst[:10])
		clear(q.Src[:10])
	}
	if q.L4Off == 0 || q.L4Off > end || end-q.L4Off < ICMPMinimumSize {
		return outer
	}
	l4 := b[q.L4Off:end]
	var portOff, sumOff int // portOff -1: no port field
	pseudo := true
	switch q.Proto {
	case ProtoTCP:
		portOff, sumOff = 0, 16
		if dst {
			portOff = 2
		}
	case ProtoUDP:
		portOff, sumOff = 0, 6
		if dst {
			portOff = 2
		}
	case ProtoICMP, ProtoICMPv6:
		sumOff, portOff = 2, -1
		pseudo = q.Proto == ProtoICMPv6
		if isEcho(q.Proto, l4[0]) {
			portOff = 4
		}
	default:
		return outer
	}
	var l4diff uint32
	if pseudo {
		l4diff = adiff
	}
	if portOff >= 0 {
		old := binary.BigEndian.Uint16(l4[portOff:])
		binary.BigEndian.PutUint16(l4[portOff:], port)
		d := wordDiff(old, port)
		l4diff += d
		outer += d
		switch {
		case q.Proto == ProtoICMP || q.Proto == ProtoICMPv6:
			q.SrcPort, q.DstPort = port, port
		case dst:
			q.DstPort = port
		default:
			q.SrcPort = port
		}
	}
	if len(l4) < sumOff+2 {
		return outer // an ICMP error quoted too little of the inner TCP header
	}
	old := binary.BigEndian.Uint16(l4[sumOff:])
	if q.Proto == ProtoUDP && old == 0 && q.Family == 4 {
		return outer // RFC 768: no checksum
	}
	sum := updateChecksum(old, l4diff)
	if q.Proto == ProtoUDP && sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(l4[sumOff:], sum)
	return outer + wordDiff(old, sum)
}

// CompleteL4Checksum fills in the transport checksum of a frame whose checksum the sender left partial
// (AF_PACKET TP_STATUS_CSUMNOTREADY / CHECKSUM_PARTIAL: the field holds only the pseudo-header sum).
// It computes the full checksum from scratch over pseudo-header + L4 segment (TCP, UDP, ICMPv6; ICMP
// has no pseudo-header and is computed over the message). It does nothing for fragments, frames without a
// transport header, or a GSO super-frame's segments (the checksum it writes is that of the whole frame,
// which is only right if the frame is sent unsegmented).
func CompleteL4Checksum(b []byte, p *Parsed) {
	if p.L4Off == 0 || p.Frag != FragNone || uint64(p.End) > uint64(len(b)) || p.L4Off > p.End {
		return
	}
	l4 := b[p.L4Off:p.End]
	var sumOff int
	switch p.Proto {
	case ProtoTCP:
		sumOff = 16
	case ProtoUDP:
		sumOff = 6
	case ProtoICMP, ProtoICMPv6:
		sumOff = 2
	default:
		return
	}
	if len(l4) < sumOff+2 {
		return
	}
	var initial uint32
	if p.Proto != ProtoICMP {
		initial = pseudoHeaderSum(p.Family, &p.Src, &p.Dst, p.Proto, uint32(len(l4)))
	}
	l4[sumOff], l4[sumOff+1] = 0, 0
	sum := ^checksum.Sum(l4, initial)
	if p.Proto == ProtoUDP && sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(l4[sumOff:], sum)
}

// PartialL4Checksum reports whether the TCP or UDP checksum field of a parsed, unfragmented frame
// holds just the pseudo-header sum: what a local sender leaves for the device to finish
// (CHECKSUM_PARTIAL). Where the frame arrives without the kernel's offload state (AF_XDP), this
// is how a partial checksum is told from a finished one. A finished checksum equals that sum once
// in 65536 frames; CompleteL4Checksum then recomputes the same value, so it does no harm.
func PartialL4Checksum(b []byte, p *Parsed) bool {
	if p.L4Off == 0 || p.Frag != FragNone || uint64(p.End) > uint64(len(b)) || p.L4Off > p.End {
		return false
	}
	var off uint32
	switch p.Proto {
	case ProtoTCP:
		off = p.L4Off + 16
	case ProtoUDP:
		off = p.L4Off + 6
	default:
		return false
	}
	if off+2 > p.End {
		return false
	}
	field := binary.BigEndian.Uint16(b[off:])
	return field != 0 && field == checksum.Fold32(pseudoHeaderSum(p.Family, &p.Src, &p.Dst, p.Proto, p.End-p.L4Off))
}
