package frame

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Test addresses: 198.18.0.0/15 and 2001:2::/48 (RFC 2544, RFC 5180 benchmarking ranges).
var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
	v4A  = net.IP{198, 18, 0, 1}
	v4B  = net.IP{198, 19, 255, 254}
	v6A  = net.ParseIP("2001:2::1")
	v6B  = net.ParseIP("2001:2:0:ffff::2")
)

// serialize builds a frame from gopacket layers, fixing lengths and computing checksums (for TCP, UDP
// and ICMPv6 the network layer is the first IPv4/IPv6 layer).
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	var nl gopacket.NetworkLayer
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			if nl == nil {
				nl = l
			}
		case *layers.IPv6:
			if nl == nil {
				nl = l
			}
		}
	}
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.TCP:
			if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				tb.Fatal(err)
			}
		case *layers.UDP:
			if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				tb.Fatal(err)
			}
		case *layers.ICMPv6:
			if err := l.SetNetworkLayerForChecksum(nl); err != nil {
				tb.Fatal(err)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("failed to serialize test frame: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: v4A, DstIP: v4B, Id: 0x1234}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: v6A, DstIP: v6B}
}

func tcp() *layers.TCP {
	return &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, SYN: true, Window: 65535}
}

func udp() *layers.UDP { return &layers.UDP{SrcPort: 40001, DstPort: 53} }

func payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

// Frames used across tests.
func frameV4TCP(tb testing.TB) []byte {
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(), payload(33))
}

func frameV4UDP(tb testing.TB) []byte {
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(), payload(17))
}

func frameV6TCP(tb testing.TB) []byte {
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(), payload(33))
}

func frameV6UDP(tb testing.TB) []byte {
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(), payload(17))
}

// extHeader returns an IPv6 extension header of the generic (hop-by-hop, routing, destination
// options) layout, n 8-octet units long, with PadN filling.
func extHeader(next uint8, units int) []byte {
	h := make([]byte, units*8)
	h[0], h[1] = next, byte(units-1)
	h[2], h[3] = 1, byte(len(h)-4) // PadN option covering the rest
	return h
}

// fragHeader returns an IPv6 fragment header (RFC 8200 section 4.5).
func fragHeader(next uint8, offset8 uint16, more bool) []byte {
	h := make([]byte, 8)
	h[0] = next
	v := offset8 << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], 0xdeadbeef)
	return h
}

// ahHeader returns an AH header (RFC 4302) with a 12-byte ICV: payload length (24/4)-2 = 4.
func ahHeader(next uint8) []byte {
	h := make([]byte, 24)
	h[0], h[1] = next, 4
	return h
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// frameV6Ext builds an IPv6 frame whose extension headers ext sit between the IPv6 header and the
// transport layers ls; the first extension header's type is first.
func frameV6Ext(tb testing.TB, first layers.IPProtocol, ext []byte, ls ...gopacket.SerializableLayer) []byte {
	all := []gopacket.SerializableLayer{eth(layers.EthernetTypeIPv6), ip6(first), gopacket.Payload(ext)}
	return serialize(tb, append(all, ls...)...)
}

// naiveChecksum is the textbook RFC 1071 loop, the reference for Checksum.
func naiveChecksum(b []byte, initial uint32) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = (s & 0xffff) + (s >> 16)
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

// l4Valid verifies the transport checksum of a parsed, unfragmented frame from scratch.
func l4Valid(b []byte, p *Parsed) bool {
	seg := b[p.L4Off:p.End]
	var init uint32
	if p.Proto != ProtoICMP {
		init = naivePseudo(p)
		if p.Proto == ProtoUDP && p.Family == 4 && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return true
		}
	}
	return naiveChecksum(seg, init) == 0xffff
}

func naivePseudo(p *Parsed) uint32 {
	var ph []byte
	if p.Family == 4 {
		ph = cat(p.Src[12:], p.Dst[12:], []byte{0, p.Proto}, be16(uint16(p.End-p.L4Off)))
	} else {
		ph = cat(p.Src[:], p.Dst[:], be32(p.End-p.L4Off), []byte{0, 0, 0, p.Proto})
	}
	return uint32(naiveChecksum(ph, 0))
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func mapped(ip net.IP) [16]byte {
	var a [16]byte
	copy(a[:], ip.To16())
	return a
}
