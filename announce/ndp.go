package announce

import (
	"encoding/binary"
	"net/netip"

	"github.com/govs/govs/internal/checksum"
)

// Frame layout of the only IPv6 packets the Announcer reads and writes: Ethernet II, a fixed IPv6
// header with no extension headers, then ICMPv6 (RFC 4861 §4.3, §4.4).
const (
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	icmpOff       = ethHeaderLen + ipv6HeaderLen
	// nsMinimumSize is an NS or NA without options: type, code, checksum, reserved/flags, target.
	nsMinimumSize = 24
	// naFrameLen is a Neighbor Advertisement carrying one Target Link-Layer Address option.
	naFrameLen = icmpOff + nsMinimumSize + 8

	etherTypeIPv6        = 0x86dd
	protoICMPv6          = 58
	icmpTypeNS           = 135
	icmpTypeNA           = 136
	optSourceLinkAddress = 1
	optTargetLinkAddress = 2
	ndpHopLimit          = 255

	naFlagSolicited = 0x40
	naFlagOverride  = 0x20
)

var (
	allNodes    = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01})
	allNodesMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}
)

// nsView holds the fields of a validated Neighbor Solicitation that the Announcer acts on.
type nsView struct {
	EthSrc   [6]byte
	Src, Dst netip.Addr
	Target   netip.Addr
	SLLA     [6]byte // Source Link-Layer Address option, when HasSLLA
	HasSLLA  bool
}

// dropReason says why a received frame was not answered. It doubles as a counter index.
type dropReason uint8

const (
	_ dropReason = iota
	dropTruncated
	dropNotNS       // not IPv6/ICMPv6 type 135 code 0, or extension headers present
	dropHopLimit    // RFC 4861 §7.1.1: hop limit must be 255 (the sender is on-link)
	dropChecksum    // bad ICMPv6 checksum
	dropBadOption   // option with length zero or running past the packet
	dropBadDAD      // unspecified source with a non-solicited-node destination or an SLLA option
	dropBadTarget   // multicast target
	dropNotOurs     // target is not a VIP held now
	dropOwnFrame    // we sent it (a gratuitous ARP looping back)
	dropConflict    // someone else announced one of our VIPs
	dropNotRequest  // an ARP packet that is not a request for IPv4 over Ethernet
	dropWriteFailed // the reply could not be sent
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	"invalid", "truncated", "not_ns", "hop_limit", "checksum", "bad_option", "bad_dad",
	"bad_target", "not_ours", "own_frame", "conflict", "not_request", "write_failed",
}

func (r dropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "invalid"
}

// parseNS validates frame as a Neighbor Solicitation per RFC 4861 §7.1.1 and returns its fields.
// It never allocates and never panics, whatever frame holds.
func parseNS(frame []byte) (nsView, dropReason) {
	var ns nsView
	if len(frame) < icmpOff+nsMinimumSize {
		return ns, dropTruncated
	}
	ip := frame[ethHeaderLen:]
	if binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 || ip[0]>>4 != 6 || ip[6] != protoICMPv6 {
		return ns, dropNotNS
	}
	icmp := frame[icmpOff:]
	if icmp[0] != icmpTypeNS || icmp[1] != 0 {
		return ns, dropNotNS
	}
	if ip[7] != ndpHopLimit {
		return ns, dropHopLimit
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < nsMinimumSize || plen > len(icmp) {
		return ns, dropTruncated
	}
	icmp = icmp[:plen] // drop Ethernet padding
	ns.Src = netip.AddrFrom16([16]byte(ip[8:24]))
	ns.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
	if icmpChecksum(ns.Src, ns.Dst, icmp) != 0 {
		return ns, dropChecksum
	}
	copy(ns.EthSrc[:], frame[6:12])
	ns.Target = netip.AddrFrom16([16]byte(icmp[8:24]))
	if ns.Target.IsMulticast() {
		return ns, dropBadTarget
	}
	for opts := icmp[nsMinimumSize:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return ns, dropBadOption
		}
		n := int(opts[1]) * 8
		if opts[0] == optSourceLinkAddress && n == 8 {
			copy(ns.SLLA[:], opts[2:8])
			ns.HasSLLA = true
		}
		opts = opts[n:]
	}
	if ns.Src.IsUnspecified() && (ns.HasSLLA || !isSolicitedNode(ns.Dst)) {
		return ns, dropBadDAD
	}
	return ns, 0
}

// isSolicitedNode reports whether a is a solicited-node multicast address, ff02::1:ffXX:XXXX
// (RFC 4291 §2.7.1).
func isSolicitedNode(a netip.Addr) bool {
	b := a.As16()
	return a.Is6() && b[0] == 0xff && b[1] == 0x02 && b[11] == 0x01 && b[12] == 0xff &&
		[9]byte(b[2:11]) == [9]byte{}
}

// solicitedNodeMAC is the Ethernet multicast group that receives Neighbor Solicitations for a:
// 33:33 followed by the last 32 bits of ff02::1:ffXX:XXXX (RFC 2464 §7).
func solicitedNodeMAC(a netip.Addr) [6]byte {
	b := a.As16()
	return [6]byte{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// multicastMAC maps an IPv6 multicast address to its Ethernet group (RFC 2464 §7).
func multicastMAC(a netip.Addr) [6]byte {
	b := a.As16()
	return [6]byte{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// naReply returns where and how to answer ns for target: a solicited NA to the sender, or, for
// Duplicate Address Detection (unspecified source), an NA to all nodes with S clear
// (RFC 4861 §7.2.4).
func naReply(ns nsView) (dstMAC [6]byte, dst netip.Addr, flags byte) {
	if ns.Src.IsUnspecified() {
		return allNodesMAC, allNodes, naFlagOverride
	}
	dstMAC = ns.EthSrc
	if ns.HasSLLA {
		dstMAC = ns.SLLA
	}
	return dstMAC, ns.Src, naFlagSolicited | naFlagOverride
}

// buildNA writes a Neighbor Advertisement for target, sent from srcMAC with source address target
// (the VIP itself, so no address needs configuring on the interface) and a Target Link-Layer
// Address option of srcMAC, into b. It returns the frame length, or 0 if b is shorter than
// naFrameLen. The Router flag is never set: govs is not a router for the VIP's link.
func buildNA(b []byte, srcMAC, dstMAC [6]byte, dst, target netip.Addr, flags byte) int {
	if len(b) < naFrameLen {
		return 0
	}
	b = b[:naFrameLen]
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)

	ip := b[ethHeaderLen:icmpOff]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28)
	binary.BigEndian.PutUint16(ip[4:6], naFrameLen-icmpOff)
	ip[6], ip[7] = protoICMPv6, ndpHopLimit
	src16, dst16 := target.As16(), dst.As16()
	copy(ip[8:24], src16[:])
	copy(ip[24:40], dst16[:])

	icmp := b[icmpOff:]
	icmp[0], icmp[1] = icmpTypeNA, 0
	icmp[2], icmp[3] = 0, 0
	icmp[4], icmp[5], icmp[6], icmp[7] = flags, 0, 0, 0
	copy(icmp[8:24], src16[:])
	icmp[24], icmp[25] = optTargetLinkAddress, 1
	copy(icmp[26:32], srcMAC[:])
	binary.BigEndian.PutUint16(icmp[2:4], icmpChecksum(target, dst, icmp))
	return naFrameLen
}

// icmpChecksum is the ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and msg. Over a
// message whose checksum field is filled in, it is 0 when the checksum is correct.
func icmpChecksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	return ^checksum.Sum(msg, checksum.Pseudo(s[:], d[:], protoICMPv6, uint32(len(msg))))
}
