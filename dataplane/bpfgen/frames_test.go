package bpfgen

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// frame describes a test frame; build serializes it with gopacket.
type frame struct {
	src, dst   string
	proto      uint8 // 6, 17, 1 or 58
	sport      uint16
	dport      uint16
	tags       []layers.EthernetType // outer first: 0x88a8 / 0x8100
	hopByHop   bool                  // IPv6: insert a hop-by-hop options header
	ipv4Opts   bool                  // IPv4: 4 bytes of NOP options (IHL 6)
	fragOffset uint16                // IPv4 fragment offset (8-byte units)
	icmp       []byte                // proto 1 or 58: the ICMP message, verbatim (default: an echo request)
}

func (f frame) build(t testing.TB) []byte {
	t.Helper()
	src, dst := netip.MustParseAddr(f.src), netip.MustParseAddr(f.dst)
	eth := &layers.Ethernet{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
	}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	inner := layers.EthernetTypeIPv4
	if src.Is6() {
		inner = layers.EthernetTypeIPv6
	}
	if len(f.tags) > 0 {
		eth.EthernetType = f.tags[0]
		for i := range f.tags {
			next := inner
			if i+1 < len(f.tags) {
				next = f.tags[i+1]
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(100 + i), Type: next})
		}
	} else {
		eth.EthernetType = inner
	}
	var netLayer gopacket.NetworkLayer
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocol(f.proto), SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), FragOffset: f.fragOffset}
		if f.ipv4Opts {
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}}
		}
		netLayer = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(f.proto), SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if f.hopByHop {
			ip.NextHeader = layers.IPProtocolIPv6HopByHop
			ip.HopByHop = &layers.IPv6HopByHop{}
			ip.HopByHop.NextHeader = layers.IPProtocol(f.proto)
			ip.HopByHop.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
		}
		netLayer = ip
		ls = append(ls, ip)
	}
	switch f.proto {
	case 6:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.sport), DstPort: layers.TCPPort(f.dport), SYN: true, Window: 1024}
		tcp.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, tcp)
	case 17:
		udp := &layers.UDP{SrcPort: layers.UDPPort(f.sport), DstPort: layers.UDPPort(f.dport)}
		udp.SetNetworkLayerForChecksum(netLayer)
		ls = append(ls, udp)
	case 1, 58:
		if f.icmp != nil {
			ls = append(ls, gopacket.Payload(f.icmp))
			break
		}
		if f.proto == 58 {
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			icmp.SetNetworkLayerForChecksum(netLayer)
			ls = append(ls, icmp)
			break
		}
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
	}
	if f.icmp == nil {
		ls = append(ls, gopacket.Payload("hello"))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("failed to build frame %+v: %v", f, err)
	}
	return buf.Bytes()
}

// arpFrame is an ARP request for 198.18.0.1.
func arpFrame(t testing.TB) []byte {
	buf := gopacket.NewSerializeBuffer()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: []byte{2, 0, 0, 0, 0, 1}, SourceProtAddress: []byte{198, 18, 0, 9},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 1}}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// patch returns a copy of b with fn applied, for malformed frames.
func patch(b []byte, fn func([]byte) []byte) []byte {
	return fn(append([]byte(nil), b...))
}

func setU16(b []byte, off int, v uint16) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }

// icmpError returns an ICMP (IPv4) or ICMPv6 error message of type typ quoting the IP packet of
// quoted (built untagged, without its Ethernet header), cut to its IP header and 8 more bytes if
// short is set, as a minimal router would quote it. The checksum is left 0: nothing here checks it.
func icmpError(t testing.TB, typ uint8, quoted frame, short bool) []byte {
	t.Helper()
	quoted.tags = nil
	q := quoted.build(t)[14:]
	if short {
		hl := 40
		if q[0]>>4 == 4 {
			hl = int(q[0]&0xf) * 4
		}
		q = q[:min(len(q), hl+8)]
	}
	return append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, q...)
}
