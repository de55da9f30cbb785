package dataplane

import (
	"encoding/binary"

	"github.com/govs/govs/conntrack"
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
	gueHeaderLen = 4 // variant 0, no optional fields: version, C, Hlen, proto, flags

	protoIPIP   = 4  // IPv4 in IPv4 (RFC 2003)
	protoIPv6   = 41 // IPv6 in IPv6 (RFC 2473)
	tunnelTTL   = 64
	ipv4FlagDF  = 0x40   // in the byte at offset 6 of an IPv4 header
	guePortBase = 0xc000 // GUE source ports: the ephemeral range 49152-65535

	tcpPSH = 0x08
	tcpCWR = 0x80
)

// tunnelOverhead is how many bytes the encapsulation of svc adds in front of an IP packet of family
// (4 or 6).
func tunnelOverhead(svc *Service, family uint8) int {
	n := frame.IPv4MinimumSize
	if family == 6 {
		n = frame.IPv6MinimumSize
	}
	if svc.Tunnel == TunnelGUE {
		n += frame.UDPMinimumSize + gueHeaderLen
	}
	return n
}

// tunnel encapsulates the IP packet of frame b (parsed into p), received on port in, to real
// server r of svc and queues it on r's port; h is the inner flow's hash, the outer header's
// entropy. It reports whether it queued the frame. The frame's checksum must be finished (see
// finishChecksum). A packet that, encapsulated, would exceed mtu (r's path MTU, w.pathMTU(r),
// which the caller may have at hand) is split into fragments if it is IPv4 without DF
// (tunnelFragments), else dropped, and its sender told the MTU it has (tooBig) unless in is
// negative (an ICMP error, never answered with one).
func (w *Worker) tunnel(in int, r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, h uint64, mtu int) bool {
	l2 := int(p.L3Off) // Ethernet header with any inline VLAN tags, ending in the (inner = outer) EtherType
	inner := b[l2:p.End]
	tag := 0
	if meta.Status&afpacket.StatusVLANValid != 0 {
		tag = 4
	}
	hdr := tunnelOverhead(svc, p.Family)
	if mtu > 0 && hdr+len(inner) > mtu {
		if p.Family == 4 && inner[6]&ipv4FlagDF == 0 {
			return w.tunnelFragments(r, svc, b, meta, p, h, mtu-hdr)
		}
		w.drop(DropTunnelTooBig)
		if in >= 0 {
			w.tooBig(in, b, meta, p, mtu-hdr)
		}
		return false
	}
	need := l2 + tag + hdr + len(inner)
	port, ti, buf := w.txSlot(r.Port, need)
	if buf == nil {
		return false
	}
	w.tunnelL2(r, b)
	writeL2(buf, b, meta, l2)
	copy(buf[l2+tag+hdr:need], inner)
	writeTunnelHeader(buf[l2+tag:need], svc, r, p.Family, inner, uint32(h^h>>32), &w.ipID)
	port.TxCommit(need, afpacket.VnetHdr{})
	w.dirty |= 1 << (uint(ti) & 63)
	return true
}

// tunnelL2 puts the MACs of a frame to r into received frame b, as transmit puts them (the offline
// replay reads where a frame went from there); writeL2 copies them into the slot.
func (w *Worker) tunnelL2(r *Real, b []byte) {
	*(*[6]byte)(b[0:6]) = r.MAC
	*(*[6]byte)(b[6:12]) = w.macs[r.Port]
}

// tunnelFragments is tunnel for an IPv4 packet without DF that does not fit r's path MTU once
// encapsulated (room bytes of inner packet do): the inner packet is cut into IP fragments of at most
// room bytes (RFC 791: 8-byte units, the same ID, offsets and MF continuing those of a packet that
// was a fragment already, options without the copy flag only in the first), each encapsulated on
// its own. It reports whether it queued them all.
//
// The inner packet is fragmented, not the outer one (the kernel's ipip does the latter; RFC 2003
// §5.1 leaves the choice open): every outer packet is then a whole tunnel packet that the real
// server's tunnel decapsulates as it comes, and the real server's IP stack, the inner packet's
// destination, reassembles the client's datagram as it would any fragments, by the client's own
// IP ID. Fragmenting the outer packet would make the tunnel end reassemble first (RFC 4459 §3.1
// counts that cost against it), its 16-bit IDs shared by every flow to the real server, which
// wrap in a fraction of a second at the rates a balancer carries (RFC 4963); and a GUE receiver
// with a plain UDP socket would see only reassembled datagrams, with RSS hashing its fragments by
// address alone. An inner packet that carries DF is never split: its sender hears the MTU instead
// (tooBig).
func (w *Worker) tunnelFragments(r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, h uint64, room int) bool {
	l2 := int(p.L3Off)
	inner := b[l2:p.End]
	ihl := int(inner[0]&0xf) * 4
	var opts [40]byte
	later := frame.IPv4MinimumSize + copiedOptions(inner[frame.IPv4MinimumSize:ihl], &opts)
	field := binary.BigEndian.Uint16(inner[6:])
	base, mf := int(field&0x1fff)*8, field&0x2000
	data := inner[ihl:]
	// A path MTU too small for any fragment (not one the network lets through), or a fragment that
	// ends beyond the largest datagram (no offset field could say where its pieces go).
	if (room-ihl)&^7 < 8 || (room-later)&^7 < 8 || base+len(data) > 0xffff {
		w.drop(DropTunnelTooBig)
		return false
	}
	tag := 0
	if meta.Status&afpacket.StatusVLANValid != 0 {
		tag = 4
	}
	hdr := tunnelOverhead(svc, 4)
	entropy := uint32(h ^ h>>32)
	w.tunnelL2(r, b)
	for off, hl := 0, ihl; off < len(data); off, hl = off+(room-hl)&^7, later {
		n, more := (room-hl)&^7, uint16(0x2000)
		if off+n >= len(data) {
			n, more = len(data)-off, mf
		}
		port, ti, pkt := w.tunnelPiece(r, b, meta, l2, tag, hdr, hl+n)
		if pkt == nil {
			return false
		}
		f := pkt[hdr:]
		copy(f, inner[:frame.IPv4MinimumSize])
		if off == 0 {
			copy(f[frame.IPv4MinimumSize:hl], inner[frame.IPv4MinimumSize:ihl])
		} else {
			copy(f[frame.IPv4MinimumSize:hl], opts[:hl-frame.IPv4MinimumSize])
		}
		f[0] = 0x40 | uint8(hl/4)
		copy(f[hl:], data[off:off+n])
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		binary.BigEndian.PutUint16(f[6:], more|uint16((base+off)/8))
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], checksum.IPv4Header(f[:hl]))
		w.commitPiece(port, ti, l2+tag, pkt, svc, r, 4, entropy)
	}
	w.c[cTunnelFragmented]++
	return true
}

// copiedOptions writes into out the IPv4 options of opts that every fragment carries (the copied
// flag, RFC 791), padded with end-of-list to a multiple of 4 bytes, and returns their length.
func copiedOptions(opts []byte, out *[40]byte) int {
	n := 0
	for i := 0; i < len(opts); {
		typ := opts[i]
		if typ == 0 { // end of list
			break
		}
		if typ == 1 { // no operation
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			break // malformed: what follows is not copied
		}
		l := int(opts[i+1])
		if typ&0x80 != 0 {
			n += copy(out[n:], opts[i:i+l])
		}
		i += l
	}
	for n%4 != 0 {
		out[n] = 0
		n++
	}
	return n
}

// writeL2 writes into buf the link-layer header of frame b, which is l2 bytes long (the MACs, any
// inline VLAN tags and the EtherType), putting back the VLAN tag the receive path stripped, if any
// (4 bytes more).
func writeL2(buf, b []byte, meta *afpacket.RxMeta, l2 int) {
	copy(buf[:12], b[:12])
	tag := 0
	if meta.Status&afpacket.StatusVLANValid != 0 {
		tag = 4
		tpid := meta.VLANTPID
		if tpid == 0 {
			tpid = 0x8100
		}
		binary.BigEndian.PutUint16(buf[12:], tpid)
		binary.BigEndian.PutUint16(buf[14:], meta.VLANTCI)
	}
	copy(buf[12+tag:l2+tag], b[12:l2])
}

// tunnelSegments is tunnel for a TCP GSO super-frame (from a local sender: TSO over a veth): the
// kernel cannot segment it once encapsulated, so it is cut here into the segments the sender asked
// for (mss > 0, its GSO size, of payload each, as the kernel's TCP segmentation does: consecutive
// sequence numbers and IPv4 IDs, FIN and PSH on the last segment only, CWR on the first only,
// checksums computed), each encapsulated on its own. It reports whether it queued them all.
func (w *Worker) tunnelSegments(in int, r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, h uint64, mss int) bool {
	l2, l4 := int(p.L3Off), int(p.L4Off)
	thl := int(b[l4+12]>>4) * 4
	hl := l4 + thl - l2 // the inner IP and TCP headers
	data := b[l4+thl : p.End]
	tag := 0
	if meta.Status&afpacket.StatusVLANValid != 0 {
		tag = 4
	}
	hdr := tunnelOverhead(svc, p.Family)
	if mtu := w.pathMTU(r); mtu > 0 && hdr+hl+mss > mtu {
		w.drop(DropTunnelTooBig)
		w.tooBig(in, b, meta, p, mtu-hdr)
		return false
	}
	w.tunnelL2(r, b)
	seq := binary.BigEndian.Uint32(b[l4+4:])
	flags := b[l4+13]
	var id uint16
	if p.Family == 4 {
		id = binary.BigEndian.Uint16(b[l2+4:])
	}
	entropy := uint32(h ^ h>>32)
	for off, i := 0, 0; off < len(data); off, i = off+mss, i+1 {
		n := min(mss, len(data)-off)
		port, ti, pkt := w.tunnelPiece(r, b, meta, l2, tag, hdr, hl+n)
		if pkt == nil {
			return false
		}
		seg := pkt[hdr:]
		copy(seg, b[l2:l2+hl])
		copy(seg[hl:], data[off:off+n])
		ipl := l4 - l2
		if p.Family == 4 {
			binary.BigEndian.PutUint16(seg[2:], uint16(len(seg)))
			binary.BigEndian.PutUint16(seg[4:], id+uint16(i))
			seg[10], seg[11] = 0, 0
			binary.BigEndian.PutUint16(seg[10:], checksum.IPv4Header(seg[:ipl]))
		} else {
			binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)-frame.IPv6MinimumSize))
		}
		tcp := seg[ipl:]
		binary.BigEndian.PutUint32(tcp[4:], seq+uint32(off))
		f := flags
		if off+n < len(data) {
			f &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			f &^= tcpCWR
		}
		tcp[13] = f
		tcp[16], tcp[17] = 0, 0
		src, dst := p.Src[:], p.Dst[:]
		if p.Family == 4 {
			src, dst = p.Src[12:], p.Dst[12:]
		}
		binary.BigEndian.PutUint16(tcp[16:], checksum.Transport(src, dst, frame.ProtoTCP, tcp))
		w.commitPiece(port, ti, l2+tag, pkt, svc, r, p.Family, entropy)
	}
	return true
}

// tunnelPiece takes a transmit slot on r's port for one of several frames tunnelled for frame b (its
// link-layer header l2 bytes long; tag: 4 for a VLAN tag to put back) and writes its link-layer
// header; it returns the slot's outer packet, hdr bytes of tunnel headers and then n bytes of inner
// packet for the caller to write, or nil if the ring is full. commitPiece queues it.
func (w *Worker) tunnelPiece(r *Real, b []byte, meta *afpacket.RxMeta, l2, tag, hdr, n int) (Transmitter, int, []byte) {
	need := l2 + tag + hdr + n
	port, ti, buf := w.txSlot(r.Port, need)
	if buf == nil {
		return nil, 0, nil
	}
	writeL2(buf, b, meta, l2)
	return port, ti, buf[l2+tag : need]
}

// commitPiece writes the tunnel headers of pkt, a tunnelPiece's outer packet behind l2 bytes of
// link-layer header, whose inner packet is complete, and queues it on port (transmit port ti).
func (w *Worker) commitPiece(port Transmitter, ti, l2 int, pkt []byte, svc *Service, r *Real, family uint8, entropy uint32) {
	writeTunnelHeader(pkt, svc, r, family, pkt[tunnelOverhead(svc, family):], entropy, &w.ipID)
	port.TxCommit(l2+len(pkt), afpacket.VnetHdr{})
	w.dirty |= 1 << (uint(ti) & 63)
}

// writeTunnelHeader writes the outer header(s) of svc's tunnel to r at the start of pkt, which ends
// with inner, the packet encapsulated (family 4 or 6); entropy is the inner flow's hash. *ipID
// numbers outer IPv4 packets that may be fragmented.
func writeTunnelHeader(pkt []byte, svc *Service, r *Real, family uint8, inner []byte, entropy uint32, ipID *uint16) {
	next := uint8(protoIPIP)
	if family == 6 {
		next = protoIPv6
	}
	off := frame.IPv4MinimumSize
	if family == 6 {
		off = frame.IPv6MinimumSize
	}
	if svc.Tunnel == TunnelGUE {
		next = frame.ProtoUDP
	}
	if family == 4 {
		h := (*[frame.IPv4MinimumSize]byte)(pkt)
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
		h := (*[frame.IPv6MinimumSize]byte)(pkt)
		// Traffic class as the inner packet's; the flow label carries the inner flow's entropy
		// (RFC 6438), never 0 ("no label").
		tc := (binary.BigEndian.Uint32(inner[0:4]) >> 20) & 0xff
		label := entropy & 0xfffff
		if label == 0 {
			label = 1
		}
		binary.BigEndian.PutUint32(h[0:4], 6<<28|tc<<20|label)
		binary.BigEndian.PutUint16(h[4:], uint16(len(pkt)-frame.IPv6MinimumSize))
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
		// Transport turns a zero sum into 0xffff: 0 would mean "no checksum", which IPv6 forbids.
		binary.BigEndian.PutUint16(u[6:], checksum.Transport(r.src[:], r.addr[:], frame.ProtoUDP, u))
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

// forwardTunnel is forward's last step for a client's frame to a tun service, received on port in:
// encapsulate it to r.
func (w *Worker) forwardTunnel(in int, r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, partial int, h uint64) bool {
	switch meta.Vnet.GSOType &^ afpacket.VnetHdrGSOECN {
	case afpacket.VnetHdrGSONone:
	case afpacket.VnetHdrGSOTCPv4, afpacket.VnetHdrGSOTCPv6:
		if p.Proto != frame.ProtoTCP || p.L4Off == 0 || meta.Vnet.GSOSize == 0 || p.Frag != frame.FragNone {
			w.drop(DropTunnelGSO)
			return false
		}
		mss := int(meta.Vnet.GSOSize)
		meta.Vnet = afpacket.VnetHdr{} // every segment's checksum is computed
		if !w.tunnelSegments(in, r, svc, b, meta, p, h, mss) {
			return false
		}
		w.c[cForwarded]++
		w.c[cTunnelSegmented]++
		return true
	default: // UDP fragmentation offload and the like: not segmented here
		w.drop(DropTunnelGSO)
		return false
	}
	w.finishChecksum(b, meta, p, partial)
	if !w.tunnel(in, r, svc, b, meta, p, h, w.pathMTU(r)) {
		return false
	}
	w.c[cForwarded]++
	return true
}

// Path MTU (tooBig): like IPVS, govs tells a client whose packet does not fit the tunnel the MTU it
// has inside it, so the client's path MTU discovery converges on it. The answer comes from the VIP
// the packet was addressed to (as the IPVS director's stack answers for its local VIP), quoting as
// much of the packet as RFC 1812 (576-byte IPv4 error) and RFC 4443 (1280-byte IPv6 error) allow.
// Each worker sends at most tooBigRate of them per second, in bursts of up to tooBigBurst (the
// kernel's icmp_msgs_per_sec and icmp_msgs_burst defaults); the rest are counted, not sent.
const (
	tooBigRate  = 1000
	tooBigBurst = 50

	icmpv4TooBigQuote = 576 - frame.IPv4MinimumSize - 8
	icmpv6TooBigQuote = 1280 - frame.IPv6MinimumSize - 8
	ipv6MinMTU        = 1280
	ipv4MinMTU        = 68
)

// tooBig answers the packet of frame b (parsed p, received on port in) with ICMP fragmentation
// needed (IPv4, if it has DF) or packet too big (IPv6) carrying mtu, back out of port in to the
// MAC it came from, unless over the rate limit. The caller counted the drop.
func (w *Worker) tooBig(in int, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, mtu int) {
	l2 := int(p.L3Off)
	inner := b[l2:p.End]
	if p.Family == 4 && inner[6]&ipv4FlagDF == 0 {
		return // may be fragmented, so it does not ask for the path MTU; see DropTunnelTooBig
	}
	if !w.tooBigAllowed() {
		w.c[cTooBigLimited]++
		return
	}
	tag := 0
	if meta.Status&afpacket.StatusVLANValid != 0 {
		tag = 4
	}
	hdr, quote := frame.IPv4MinimumSize+8, min(len(inner), icmpv4TooBigQuote)
	if p.Family == 6 {
		hdr, quote = frame.IPv6MinimumSize+8, min(len(inner), icmpv6TooBigQuote)
	}
	need := l2 + tag + hdr + quote
	port, ti, buf := w.txSlot(in, need)
	if buf == nil {
		return
	}
	writeL2(buf, b, meta, l2)
	*(*[6]byte)(buf[0:6]) = *(*[6]byte)(b[6:12]) // back to where it came from
	*(*[6]byte)(buf[6:12]) = w.macs[in]
	pkt := buf[l2+tag : need]
	copy(pkt[hdr:], inner[:quote])
	if p.Family == 4 {
		writeFragNeeded(pkt, p, uint16(max(mtu, ipv4MinMTU)), &w.ipID)
	} else {
		writePacketTooBig(pkt, p, uint32(max(mtu, ipv6MinMTU)))
	}
	port.TxCommit(need, afpacket.VnetHdr{})
	w.dirty |= 1 << (uint(ti) & 63)
	w.c[cTooBigSent]++
}

// tooBigAllowed takes a token of the worker's ICMP too-big budget, refilled at tooBigRate per
// second up to tooBigBurst, and reports whether there was one.
func (w *Worker) tooBigAllowed() bool {
	const per = int64(1e9 / tooBigRate)
	if d := (w.now - w.tooBigAt) / per; d > 0 {
		w.tooBigTokens = int(min(int64(w.tooBigTokens)+d, tooBigBurst))
		w.tooBigAt += d * per
		if w.tooBigTokens == tooBigBurst {
			w.tooBigAt = w.now
		}
	}
	if w.tooBigTokens == 0 {
		return false
	}
	w.tooBigTokens--
	return true
}

// writeFragNeeded writes, at the start of pkt, the IPv4 and ICMP headers of a destination
// unreachable, fragmentation needed (RFC 1191) from p's destination to its source carrying mtu;
// the quoted packet follows them in pkt.
func writeFragNeeded(pkt []byte, p *frame.Parsed, mtu uint16, ipID *uint16) {
	h := (*[frame.IPv4MinimumSize]byte)(pkt)
	*ipID++
	h[0], h[1] = 0x45, 0xc0 // precedence: internetwork control, as the kernel's ICMP
	binary.BigEndian.PutUint16(h[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(h[4:], *ipID)
	h[6], h[7], h[8], h[9] = 0, 0, tunnelTTL, 1
	h[10], h[11] = 0, 0
	copy(h[12:16], p.Dst[12:])
	copy(h[16:20], p.Src[12:])
	binary.BigEndian.PutUint16(h[10:], checksum.IPv4Header(h[:]))
	m := pkt[frame.IPv4MinimumSize:]
	m[0], m[1], m[2], m[3], m[4], m[5] = 3, 4, 0, 0, 0, 0
	binary.BigEndian.PutUint16(m[6:], mtu)
	binary.BigEndian.PutUint16(m[2:], ^checksum.Sum(m, 0))
}

// writePacketTooBig writes, at the start of pkt, the IPv6 and ICMPv6 headers of a packet too big
// (RFC 4443) from p's destination to its source carrying mtu; the quoted packet follows them.
func writePacketTooBig(pkt []byte, p *frame.Parsed, mtu uint32) {
	h := (*[frame.IPv6MinimumSize]byte)(pkt)
	binary.BigEndian.PutUint32(h[0:4], 6<<28)
	binary.BigEndian.PutUint16(h[4:], uint16(len(pkt)-frame.IPv6MinimumSize))
	h[6], h[7] = 58, tunnelTTL
	copy(h[8:24], p.Dst[:])
	copy(h[24:40], p.Src[:])
	m := pkt[frame.IPv6MinimumSize:]
	m[0], m[1], m[2], m[3] = 2, 0, 0, 0
	binary.BigEndian.PutUint32(m[4:], mtu)
	binary.BigEndian.PutUint16(m[2:], checksum.Transport(h[8:24], h[24:40], 58, m))
}

// tunnelExpress reports whether Worker.express may tunnel the frame of a tun service's connection
// (parsed p, no offload state) to a real server whose path MTU is mtu: not a GSO frame, and within
// mtu once encapsulated. Anything else goes to forward, which segments or fragments it or answers
// the client.
func tunnelExpress(svc *Service, mtu int, p *frame.Parsed, meta *afpacket.RxMeta) bool {
	return svc.Method == MethodTun && meta.Vnet.GSOType == afpacket.VnetHdrGSONone &&
		(mtu == 0 || tunnelOverhead(svc, p.Family)+int(p.End-p.L3Off) <= mtu)
}

// expressTunnel is Worker.express's end for a tun connection's frame from the client (c, to r of
// svc, whose path MTU is mtu), which tunnelExpress admitted: the connection's state and r's tally
// as express keeps them,
// then the tunnel. It reports whether the frame was queued. It is express's own end for the other
// methods, kept apart so that theirs stays as short as it was.
func (w *Worker) expressTunnel(c *conntrack.Conn, r *Real, svc *Service, b []byte, meta *afpacket.RxMeta, p *frame.Parsed, mtu int) bool {
	if p.Proto == frame.ProtoTCP {
		if old, cur := w.ct.TouchConn(c, conntrack.DirOriginal, p.TCPFlags, w.now); old != cur {
			activeChanged(r, old, cur)
			w.exportConn(conntrack.SyncSet, c)
		}
	} else {
		w.ct.Refresh(c, w.now)
	}
	tally := &w.rt[r.ID][conntrack.DirOriginal]
	tally.packets++
	tally.bytes += uint64(p.End - p.L3Off)
	if !w.tunnel(-1, r, svc, b, meta, p, w.ct.Hash(&p.Tuple), mtu) {
		return false
	}
	w.c[cForwarded]++
	w.c[cExpress]++
	return true
}
