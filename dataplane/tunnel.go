package dataplane

import (
	"encoding/binary"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/internal/checksum"
)

// Method tun (LVS's tunnelling): the client's IP packet goes to the real server unchanged, inside an
// outer header from this host to the real server, IPv4 in IPv4 or IPv6 in IPv6.
//
// The outgoing frame is built in the transmit slot: the receive ring has no room before a frame's
// Ethernet header (the kernel places the frame at a fixed offset in its slot and the slot before is
// another frame's), and every other method copies the frame into a transmit slot anyway (TxSend), so
// writing the new headers there and the packet after them costs that same one copy and no
// allocation.
//
// Entropy for the real server's receive-side scaling, which hashes the outer header unless its NIC
// parses the inner one: GUE carries a hash of the inner flow in the UDP source port; IPv6 carries it
// in the flow label (RFC 6438). An IPv4 IPIP header has no field for it: the source is this host's
// address on the link to the real server, as LVS uses its local address, because a varying source
// would need addresses the host does not own and that the real server's tunnel would have to accept.
//
// Checksums: the outer IPv4 header's is computed. GUE's UDP checksum is zero over IPv4 (RFC 768; the
// inner packet carries its own transport checksum, as the GUE draft allows) and computed over IPv6:
// RFC 6935/6936 allow a zero checksum for tunnels over IPv6 only where both ends are configured to
// accept it, which an ordinary UDP socket or fou/gue receiver is not, so govs pays one pass over the
// packet rather than ask that of every real server.

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	gueHeaderLen  = 4 // variant 0, no optional fields: version, C, Hlen, proto, flags

	protoIPIP   = 4  // IPv4 in IPv4 (RFC 2003)
	protoIPv6   = 41 // IPv6 in IPv6 (RFC 2473)
	protoUDP    = 17
	tunnelTTL   = 64
	ipv4FlagDF  = 0x40   // in the byte at offset 6 of an IPv4 header
	guePortBase = 0xc000 // GUE source ports: the ephemeral range 49152-65535
)

// tunnelOverhead is how many bytes the encapsulation of svc adds in front of an IP packet of family
// (4 or 6).
func tunnelOverhead(svc *Service, family uint8) int {
	n := ipv4HeaderLen
	if family == 6 {
		n = ipv6HeaderLen
	}
	if svc.Tunnel == TunnelGUE {
		n += udpHeaderLen + gueHeaderLen
	}
	return n
}

// tunnel encapsulates the IP packet of frame b (parsed into p) to real server r of svc and queues
// it on r's port; h is the inner flow's hash, the outer header's entropy. It reports whether it
// queued the frame. The frame's checksum must be finished (see finishChecksum).
func (w *Worker) tunnel(r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, h uint64) bool {
	l2 := int(p.L3Off) // Ethernet header with any inline VLAN tags, ending in the (inner = outer) EtherType
	inner := b[l2:p.End]
	tag := 0
	if meta.Status&afpacket.StatusVLANValid != 0 {
		tag = 4
	}
	hdr := tunnelOverhead(svc, p.Family)
	need := l2 + tag + hdr + len(inner)
	port, ti, buf := w.txSlot(r.Port, need)
	if buf == nil {
		return false
	}
	// The MACs go into the received frame first, as transmit puts them (the offline replay reads
	// where a frame went from there), and from it into the slot.
	*(*[6]byte)(b[0:6]) = r.MAC
	*(*[6]byte)(b[6:12]) = w.macs[r.Port]
	copy(buf[:12], b[:12])
	if tag != 0 {
		tpid := meta.VLANTPID
		if tpid == 0 {
			tpid = 0x8100
		}
		binary.BigEndian.PutUint16(buf[12:], tpid)
		binary.BigEndian.PutUint16(buf[14:], meta.VLANTCI)
	}
	copy(buf[12+tag:l2+tag], b[12:l2])
	copy(buf[l2+tag+hdr:need], inner)
	entropy := uint32(h ^ h>>32)
	writeTunnelHeader(buf[l2+tag:need], svc, r, p.Family, inner, entropy, &w.ipID)
	port.TxCommit(need, afpacket.VnetHdr{})
	w.dirty |= 1 << (uint(ti) & 63)
	return true
}

// writeTunnelHeader writes the outer header(s) of svc's tunnel to r at the start of pkt, which ends
// with inner, the packet encapsulated (family 4 or 6); entropy is the inner flow's hash. *ipID
// numbers outer IPv4 packets that may be fragmented.
func writeTunnelHeader(pkt []byte, svc *Service, r *Real, family uint8, inner []byte, entropy uint32, ipID *uint16) {
	next := uint8(protoIPIP)
	if family == 6 {
		next = protoIPv6
	}
	off := ipv4HeaderLen
	if family == 6 {
		off = ipv6HeaderLen
	}
	if svc.Tunnel == TunnelGUE {
		next = protoUDP
	}
	if family == 4 {
		h := (*[ipv4HeaderLen]byte)(pkt)
		h[0] = 0x45
		h[1] = inner[1] // DSCP and ECN as the inner packet's (RFC 2003, RFC 6040 normal mode)
		binary.BigEndian.PutUint16(h[2:], uint16(len(pkt)))
		// An inner packet that must not be fragmented makes the outer one so too, as in LVS: the
		// sender then learns the path MTU. Only an outer packet that may be fragmented needs an ID
		// that differs from its predecessors' (RFC 6864).
		var id uint16
		df := inner[6] & ipv4FlagDF
		if df == 0 {
			*ipID++
			id = *ipID
		}
		binary.BigEndian.PutUint16(h[4:], id)
		h[6], h[7] = df, 0
		h[8], h[9] = tunnelTTL, next
		h[10], h[11] = 0, 0
		copy(h[12:16], r.src[12:])
		copy(h[16:20], r.addr[12:])
		binary.BigEndian.PutUint16(h[10:], checksum.IPv4Header(h[:]))
	} else {
		h := (*[ipv6HeaderLen]byte)(pkt)
		// Traffic class as the inner packet's; the flow label carries the inner flow's entropy
		// (RFC 6438), never 0 ("no label").
		tc := (binary.BigEndian.Uint32(inner[0:4]) >> 20) & 0xff
		label := entropy & 0xfffff
		if label == 0 {
			label = 1
		}
		binary.BigEndian.PutUint32(h[0:4], 6<<28|tc<<20|label)
		binary.BigEndian.PutUint16(h[4:], uint16(len(pkt)-ipv6HeaderLen))
		h[6], h[7] = next, tunnelTTL
		copy(h[8:24], r.src[:])
		copy(h[24:40], r.addr[:])
	}
	if svc.Tunnel != TunnelGUE {
		return
	}
	u := pkt[off:]
	binary.BigEndian.PutUint16(u[0:], guePortBase|uint16(entropy>>16^entropy)&0x3fff)
	binary.BigEndian.PutUint16(u[2:], svc.TunnelPort)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	u[6], u[7] = 0, 0
	// GUE variant 0 without optional fields: version 0, C 0, Hlen 0, then the inner protocol and
	// no flags.
	proto := uint8(protoIPIP)
	if family == 6 {
		proto = protoIPv6
	}
	u[8], u[9], u[10], u[11] = 0, proto, 0, 0
	if family == 6 {
		sum := ^checksum.Sum(u, checksum.Pseudo(r.src[:], r.addr[:], protoUDP, uint32(len(u))))
		if sum == 0 {
			sum = 0xffff // 0 would mean "no checksum", which IPv6 forbids
		}
		binary.BigEndian.PutUint16(u[6:], sum)
	}
}

// finishChecksum completes a transport checksum the frame's sender left partial (a local sender's
// offload; see receivedChecksum), as a tunnelled frame must leave whole: a device would not find the
// checksum to finish inside the encapsulation, and the real server's tunnel does not finish it.
// partial is what receivedChecksum returned.
func (w *Worker) finishChecksum(b []byte, meta *afpacket.RxMeta, p *frame.Parsed, partial int) {
	if partial >= 0 {
		frame.CompleteL4Checksum(b, p)
		w.c[cCsumCompleted]++
	}
	meta.Vnet = afpacket.VnetHdr{}
}

// forwardTunnel is forward's last step for a client's frame to a tun service: encapsulate it to r.
func (w *Worker) forwardTunnel(r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, partial int, h uint64) bool {
	if meta.Vnet.GSOType&^afpacket.VnetHdrGSOECN != afpacket.VnetHdrGSONone {
		w.drop(DropTunnelGSO)
		return false
	}
	w.finishChecksum(b, meta, p, partial)
	if !w.tunnel(r, svc, b, meta, p, h) {
		return false
	}
	w.c[cForwarded]++
	return true
}
