package frame

import (
	"encoding/binary"

	"github.com/govs/govs/flow"
	"github.com/govs/govs/internal/checksum"
)

// EtherTypes, IP protocol numbers and header sizes Parse knows.
const (
	EtherTypeIPv4     = 0x0800
	EtherTypeARP      = 0x0806
	EtherTypeIPv6     = 0x86dd
	EtherTypeVLAN     = 0x8100 // IEEE 802.1Q customer tag
	EtherTypeQinQ     = 0x88a8 // IEEE 802.1ad service tag
	ProtoICMP         = 1
	ProtoTCP          = 6
	ProtoUDP          = 17
	ProtoICMPv6       = 58
	EthernetSize      = 14
	VLANTagSize       = 4
	ARPMinimumSize    = 28 // Ethernet/IPv4 ARP (RFC 826)
	IPv4MinimumSize   = 20
	IPv6MinimumSize   = 40
	TCPMinimumSize    = 20
	UDPMinimumSize    = 8
	ICMPMinimumSize   = 8 // type, code, checksum and the 4-byte rest of header, for ICMPv4 and ICMPv6
	maxVLANs          = 2
	maxIPv6ExtHeaders = 8
	maxIPLength       = 0xffff // largest IPv4 total length / IPv6 payload length a header can say
)

// IPv6 extension headers (RFC 8200 section 4, RFC 4302 for AH, RFC 4303 for ESP).
const (
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6Fragment    = 44
	ipv6ESP         = 50
	ipv6AH          = 51
	ipv6NoNext      = 59
	ipv6DestOptions = 60
)

// FragKind says which part of a fragmented IP datagram a frame holds.
type FragKind uint8

const (
	FragNone  FragKind = iota // not a fragment (an IPv6 atomic fragment, offset 0 without M, counts as none)
	FragFirst                 // offset 0 with more fragments: holds the transport header
	FragLater                 // offset > 0: holds no transport header
)

// Parsed is what Parse learned about a frame: offsets into it and copies of the fields the data plane
// keys on. It holds no reference to the frame, so it stays valid after the frame's ring slot is released,
// but its offsets only mean something for the bytes it was parsed from.
//
// The frame's tuple is an embedded flow.Tuple (p.Src, p.Dst, p.SrcPort, p.DstPort, p.Proto), so the
// data plane looks a frame's connection up and schedules it with &p.Tuple as parsed, without copying it:
//   - Src, Dst: the IP addresses, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d);
//   - SrcPort, DstPort: the TCP/UDP ports; for ICMP/ICMPv6 echo request/reply both hold the
//     identifier; else 0;
//   - Proto: the transport protocol after IPv6 extension headers (6, 17, 1, 58, ...).
type Parsed struct {
	flow.Tuple

	EtherType uint16   // after VLAN tags: 0x0800, 0x86dd, 0x0806 (ARP: parse stops after L2)
	VLANs     uint8    // number of inline 802.1Q/802.1ad tags (0..2)
	Family    uint8    // 4 or 6 (0 for ARP)
	Frag      FragKind // fragment position
	TCPFlags  uint8    // TCP flags byte (CWR..FIN) when Proto is TCP

	ICMPType, ICMPCode uint8

	// L3Off is where the IP (or ARP) header starts. L4Off is where the transport header starts; it is
	// non-zero only for a TCP, UDP, ICMP (IPv4) or ICMPv6 (IPv6) header that Parse validated, so it is 0
	// for later fragments, ESP, "no next header" and protocols Parse does not know.
	L3Off, L4Off uint32
	// End is L3Off + IP total length; bytes after End are Ethernet padding. For ARP it is L3Off + 28.
	End uint32
}

// Parse parses the Ethernet frame b into p, overwriting all of p, and returns ErrNone or why the frame
// is malformed. It validates every header it walks (rules below) and never reads past len(b). It does not allocate and keeps no reference to b.
//
// Rules: Ethernet II with up to 2 inline VLAN tags (0x8100, 0x88a8); ARP needs 28 bytes; IPv4 version 4,
// IHL >= 5, IHL*4 <= total length <= bytes present, header checksum verified, options skipped; IPv6
// version 6, payload length fits, up to 8 extension headers (hop-by-hop first only, routing, fragment,
// destination options, AH); ESP and "no next header" end the chain without a transport header; TCP data
// offset >= 5 and within the IP payload; UDP length >= 8 and within the payload, equal to it when not
// fragmented; ICMP/ICMPv6 at least 8 bytes. Trailing bytes after the IP packet are padding.
//
// BIG TCP: the kernel passes IPv4 and IPv6 GSO packets larger than 64 KiB with a total/payload length of
// 0 (see iph_totlen and ipv6_has_hopopt_jumbo in the kernel). Parse accepts a zero length as "up to the
// end of the frame" only when the frame is too long for any real length field to describe.
func Parse(b []byte, p *Parsed) Error {
	if ParseFast(b, p) {
		return ErrNone
	}
	return parse(b, p)
}

// parseIPv6Fast is ParseFast for untagged IPv6 without extension headers carrying a
// well-formed TCP or UDP header.
func parseIPv6Fast(b []byte, p *Parsed) bool {
	if len(b) < EthernetSize+IPv6MinimumSize+UDPMinimumSize || len(b) > 1<<31 ||
		b[12] != 0x86 || b[13] != 0xdd || b[14]>>4 != 6 {
		return false
	}
	h := (*[IPv6MinimumSize]byte)(b[EthernetSize : EthernetSize+IPv6MinimumSize])
	plen := uint32(binary.BigEndian.Uint16(h[4:]))
	if plen < UDPMinimumSize || plen > uint32(len(b))-EthernetSize-IPv6MinimumSize {
		return false
	}
	end := EthernetSize + IPv6MinimumSize + plen
	flags, ok := fastL4(b[EthernetSize+IPv6MinimumSize:end], h[6])
	if !ok {
		return false
	}
	l4 := b[EthernetSize+IPv6MinimumSize:]
	p.EtherType, p.VLANs, p.Family, p.Proto, p.Frag, p.TCPFlags = EtherTypeIPv6, 0, 6, h[6], FragNone, flags
	p.ICMPType, p.ICMPCode = 0, 0
	p.L3Off, p.L4Off, p.End = EthernetSize, EthernetSize+IPv6MinimumSize, end
	p.Src, p.Dst = [16]byte(h[8:24]), [16]byte(h[24:40])
	p.SrcPort = binary.BigEndian.Uint16(l4[0:])
	p.DstPort = binary.BigEndian.Uint16(l4[2:])
	return true
}

// fastL4 checks the TCP or UDP header at the start of l4 (the rest of the IP packet) as parseL4
// does for an unfragmented packet and returns the TCP flags; false for anything else.
func fastL4(l4 []byte, proto uint8) (flags uint8, ok bool) {
	switch proto {
	case ProtoTCP:
		if len(l4) < TCPMinimumSize {
			return 0, false
		}
		if doff := int(l4[12]>>4) * 4; doff < TCPMinimumSize || doff > len(l4) {
			return 0, false
		}
		return l4[13], true
	case ProtoUDP:
		return 0, len(l4) >= UDPMinimumSize && int(binary.BigEndian.Uint16(l4[4:])) == len(l4)
	}
	return 0, false
}

// ParseFast parses the frames most traffic is made of, untagged IPv4 without options and IPv6
// without extension headers, unfragmented, carrying a well-formed TCP or UDP header, in a few
// straight-line checks, and reports whether b was such a frame. For those, p is what Parse
// returns (FuzzParseFast); for any other frame it reports false and p is to be overwritten by
// Parse, which also tells what is wrong with a malformed frame. The data plane tries it before
// Parse.
func ParseFast(b []byte, p *Parsed) bool {
	if len(b) < EthernetSize+IPv4MinimumSize+UDPMinimumSize || len(b) > 1<<31 ||
		b[12] != 0x08 || b[13] != 0x00 || b[14] != 0x45 {
		return parseIPv6Fast(b, p)
	}
	h := (*[IPv4MinimumSize + UDPMinimumSize]byte)(b[EthernetSize:]) // the IP header and the first 8 bytes after it
	total := uint32(binary.BigEndian.Uint16(h[2:]))
	if total < IPv4MinimumSize+UDPMinimumSize || total > uint32(len(b))-EthernetSize ||
		binary.BigEndian.Uint16(h[6:])&0x3fff != 0 { // MF or an offset: a fragment
		return false
	}
	end := EthernetSize + total
	proto := h[9]
	flags, ok := fastL4(b[EthernetSize+IPv4MinimumSize:end], proto)
	if !ok || headerSum20((*[IPv4MinimumSize]byte)(h[:IPv4MinimumSize])) != 0xffff {
		return false
	}
	// Field by field: a composite literal is built on the stack and copied (counted: 30
	// instructions a frame more).
	p.EtherType, p.VLANs, p.Family, p.Proto, p.Frag, p.TCPFlags = EtherTypeIPv4, 0, 4, proto, FragNone, flags
	p.ICMPType, p.ICMPCode = 0, 0
	p.L3Off, p.L4Off, p.End = EthernetSize, EthernetSize+IPv4MinimumSize, end
	binary.LittleEndian.PutUint64(p.Src[:8], 0)
	binary.LittleEndian.PutUint64(p.Dst[:8], 0)
	binary.LittleEndian.PutUint64(p.Src[8:], 0xffff<<16|uint64(binary.LittleEndian.Uint32(h[12:]))<<32)
	binary.LittleEndian.PutUint64(p.Dst[8:], 0xffff<<16|uint64(binary.LittleEndian.Uint32(h[16:]))<<32)
	p.SrcPort = binary.BigEndian.Uint16(h[IPv4MinimumSize:])
	p.DstPort = binary.BigEndian.Uint16(h[IPv4MinimumSize+2:])
	return true
}

// parse is Parse for every frame.
func parse(b []byte, p *Parsed) Error {
	*p = Parsed{}
	n := uint32(len(b))
	if uint64(len(b)) > 1<<31 {
		n = 1 << 31 // offsets are uint32; no real frame comes near this
	}
	if n < EthernetSize {
		return ErrTruncatedEthernet
	}
	et := binary.BigEndian.Uint16(b[12:])
	off := uint32(EthernetSize)
	for et == EtherTypeVLAN || et == EtherTypeQinQ {
		if p.VLANs == maxVLANs {
			return ErrTooManyVLANs
		}
		if n-off < VLANTagSize {
			return ErrTruncatedVLAN
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += VLANTagSize
		p.VLANs++
	}
	p.EtherType = et
	p.L3Off = off
	switch et {
	case EtherTypeIPv4:
		return parseIPv4(b[:n], p)
	case EtherTypeIPv6:
		return parseIPv6(b[:n], p)
	case EtherTypeARP:
		if n-off < ARPMinimumSize {
			return ErrTruncatedARP
		}
		p.End = off + ARPMinimumSize
		return ErrNone
	}
	return ErrUnsupportedEtherType
}

func parseIPv4(b []byte, p *Parsed) Error {
	off := p.L3Off
	avail := uint32(len(b)) - off
	if avail < IPv4MinimumSize {
		return ErrTruncatedIPv4
	}
	h := b[off:]
	if h[0]>>4 != 4 {
		return ErrBadIPv4Version
	}
	ihl := uint32(h[0]&0xf) * 4
	if ihl < IPv4MinimumSize {
		return ErrBadIPv4IHL
	}
	if ihl > avail {
		return ErrTruncatedIPv4
	}
	total := uint32(binary.BigEndian.Uint16(h[2:]))
	if total == 0 && avail > maxIPLength {
		total = avail // BIG TCP
	}
	if total < ihl || total > avail {
		return ErrBadIPv4Length
	}
	if ihl == IPv4MinimumSize {
		if headerSum20((*[IPv4MinimumSize]byte)(h)) != 0xffff {
			return ErrBadIPv4Checksum
		}
	} else if checksum.Sum(h[:ihl], 0) != 0xffff {
		return ErrBadIPv4Checksum
	}
	p.Family = 4
	p.Proto = h[9]
	p.End = off + total
	p.Src[10], p.Src[11] = 0xff, 0xff
	p.Dst[10], p.Dst[11] = 0xff, 0xff
	copy(p.Src[12:], h[12:16])
	copy(p.Dst[12:], h[16:20])
	switch frag := binary.BigEndian.Uint16(h[6:]); {
	case frag&0x1fff != 0:
		p.Frag = FragLater
		return ErrNone
	case frag&0x2000 != 0:
		p.Frag = FragFirst
	}
	if p.Proto == ProtoICMPv6 {
		return ErrNone // ICMPv6 is meaningless over IPv4: no transport header we know
	}
	return parseL4(b, p, off+ihl)
}

func parseIPv6(b []byte, p *Parsed) Error {
	off := p.L3Off
	avail := uint32(len(b)) - off
	if avail < IPv6MinimumSize {
		return ErrTruncatedIPv6
	}
	h := b[off:]
	if h[0]>>4 != 6 {
		return ErrBadIPv6Version
	}
	plen := uint32(binary.BigEndian.Uint16(h[4:]))
	if plen == 0 && avail-IPv6MinimumSize > maxIPLength {
		plen = avail - IPv6MinimumSize // BIG TCP
	}
	if plen > avail-IPv6MinimumSize {
		return ErrBadIPv6Length
	}
	p.Family = 6
	p.End = off + IPv6MinimumSize + plen
	copy(p.Src[:], h[8:24])
	copy(p.Dst[:], h[24:40])
	proto, l4, frag, err := walkIPv6Ext(b, h[6], off+IPv6MinimumSize, p.End, ErrTruncatedIPv6Ext, ErrIPv6ExtChainTooLong)
	p.Proto, p.Frag = proto, frag
	if err != ErrNone || l4 == 0 || proto == ProtoICMP {
		return err
	}
	return parseL4(b, p, l4)
}

// walkIPv6Ext walks the extension header chain that starts at off with next header next, inside
// b[:end]. It returns the upper-layer protocol, its offset (0 when there is no upper-layer header: a
// later fragment, ESP or no next header) and the fragment kind.
func walkIPv6Ext(b []byte, next uint8, off, end uint32, errTrunc, errLong Error) (uint8, uint32, FragKind, Error) {
	frag := FragNone
	for i := 0; ; i++ {
		var hlen uint32
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOptions, ipv6Fragment, ipv6AH:
		case ipv6ESP, ipv6NoNext:
			return next, 0, frag, ErrNone
		default:
			return next, off, frag, ErrNone
		}
		if i == maxIPv6ExtHeaders {
			return next, 0, frag, errLong
		}
		if next == ipv6HopByHop && i != 0 {
			return next, 0, frag, ErrBadIPv6HopByHop
		}
		if end-off < 8 {
			return next, 0, frag, errTrunc
		}
		h := b[off : off+8]
		switch next {
		case ipv6Fragment:
			hlen = 8
			fo := binary.BigEndian.Uint16(h[2:])
			if fo&0xfff8 != 0 {
				return h[0], 0, FragLater, ErrNone
			}
			if fo&1 != 0 {
				frag = FragFirst
			}
		case ipv6AH:
			hlen = (uint32(h[1]) + 2) * 4 // RFC 4302 section 2.2: in 32-bit words, minus 2
		default:
			hlen = (uint32(h[1]) + 1) * 8 // RFC 8200 section 4.3: in 8-octet units, not counting the first
		}
		if end-off < hlen {
			return next, 0, frag, errTrunc
		}
		next = h[0]
		off += hlen
	}
}

// parseL4 validates the transport header at off (inside b[:p.End]) and copies its fields into p.
func parseL4(b []byte, p *Parsed, off uint32) Error {
	avail := p.End - off
	switch p.Proto {
	case ProtoTCP:
		if avail < TCPMinimumSize {
			return ErrTruncatedTCP
		}
		h := b[off : off+TCPMinimumSize]
		doff := uint32(h[12]>>4) * 4
		if doff < TCPMinimumSize || doff > avail {
			return ErrBadTCPOffset
		}
		p.SrcPort = binary.BigEndian.Uint16(h[0:])
		p.DstPort = binary.BigEndian.Uint16(h[2:])
		p.TCPFlags = h[13]
	case ProtoUDP:
		if avail < UDPMinimumSize {
			return ErrTruncatedUDP
		}
		h := b[off : off+UDPMinimumSize]
		ulen := uint32(binary.BigEndian.Uint16(h[4:]))
		if ulen < UDPMinimumSize || (p.Frag == FragNone && ulen != avail) || (p.Frag == FragFirst && ulen <= avail) {
			return ErrBadUDPLength
		}
		p.SrcPort = binary.BigEndian.Uint16(h[0:])
		p.DstPort = binary.BigEndian.Uint16(h[2:])
	case ProtoICMP, ProtoICMPv6:
		if avail < ICMPMinimumSize {
			return ErrTruncatedICMP
		}
		h := b[off : off+ICMPMinimumSize]
		p.ICMPType, p.ICMPCode = h[0], h[1]
		if isEcho(p.Proto, h[0]) {
			p.SrcPort = binary.BigEndian.Uint16(h[4:])
			p.DstPort = p.SrcPort
		}
	default:
		return ErrNone
	}
	p.L4Off = off
	return ErrNone
}

// isEcho reports whether an ICMP(v6) type is echo request or reply (RFC 792, RFC 4443 section 4).
func isEcho(proto, typ uint8) bool {
	if proto == ProtoICMP {
		return typ == 8 || typ == 0
	}
	return typ == 128 || typ == 129
}
