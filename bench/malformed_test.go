package bench

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	tClientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	tLBMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	tClient4   = net.IP{198, 18, 128, 1}
	tVIP4      = net.IP{198, 18, 0, 100}
	tClient6   = net.ParseIP("2001:2:0:1::1")
	tVIP6      = net.ParseIP("2001:2::100")
)

// build serializes layers with lengths and checksums fixed up.
func build(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: tClientMAC, DstMAC: tLBMAC, EthernetType: typ}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: tClient4, DstIP: tVIP4, Id: 7}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: tClient6, DstIP: tVIP6}
}

func syn(ip gopacket.NetworkLayer, sport uint16) *layers.TCP {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, SYN: true, Seq: 1, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	return tcp
}

func udp(ip gopacket.NetworkLayer, sport, dport uint16) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return u
}

// writeMalformed writes the captures TestReplayMalformed replays.
func writeMalformed(t *testing.T) {
	payload := gopacket.Payload([]byte("hello govs"))

	// malformed.pcap: broken headers and lengths around one good SYN.
	var bad [][]byte
	var wire []int
	add := func(b []byte, w int) { bad = append(bad, b); wire = append(wire, w) }
	v4 := ip4(layers.IPProtocolTCP)
	good := build(t, eth(layers.EthernetTypeIPv4), v4, syn(v4, 4000), payload)
	add(good, 0)
	add(good[:10], 0)                  // shorter than Ethernet
	add(good[:14+12], 0)               // IPv4 header cut
	add(good[:14+20+8], 0)             // TCP header cut
	add(good[:len(good)-4], len(good)) // snap length cut the frame (capture truncated)
	b := append([]byte(nil), good...)
	b[14+2], b[14+3] = 0xff, 0xff // IPv4 total length beyond the frame
	add(b, 0)
	b = append([]byte(nil), good...)
	b[14] = 0x43 // IHL 3
	add(b, 0)
	b = append([]byte(nil), good...)
	b[14+10] ^= 0xff // bad IPv4 header checksum
	add(b, 0)
	b = append([]byte(nil), good...)
	b[14+20+12] = 0x30 // TCP data offset 3 (12 bytes)
	add(b, 0)
	u := ip4(layers.IPProtocolUDP)
	ub := build(t, eth(layers.EthernetTypeIPv4), u, udp(u, 5000, 53), payload)
	b = append([]byte(nil), ub...)
	b[14+20+4], b[14+20+5] = 0x00, 0x04 // UDP length below its header
	add(b, 0)
	add(build(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: tClientMAC, SourceProtAddress: tClient4,
		DstHwAddress: make([]byte, 6), DstProtAddress: tVIP4}), 0)
	add(build(t, eth(layers.EthernetType(0x88cc)), payload), 0) // LLDP-ish: not IP
	v6 := ip6(layers.IPProtocolTCP)
	g6 := build(t, eth(layers.EthernetTypeIPv6), v6, syn(v6, 4001), payload)
	add(g6, 0)
	add(g6[:14+30], 0) // IPv6 header cut
	b = append([]byte(nil), g6...)
	b[14+4], b[14+5] = 0x40, 0x00 // payload length beyond the frame
	add(b, 0)
	icmp := ip4(layers.IPProtocolICMPv4)
	add(build(t, eth(layers.EthernetTypeIPv4), icmp, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, payload), 0) // ICMP error quoting nothing
	writePcap(t, "testdata/malformed.pcap", bad, wire)

	// fragments.pcap: IPv4 and IPv6 fragments, and IPv6 extension header chains.
	var frags [][]byte
	f1 := ip4(layers.IPProtocolUDP)
	f1.Flags = layers.IPv4MoreFragments
	frags = append(frags, build(t, eth(layers.EthernetTypeIPv4), f1, udp(f1, 5001, 53), gopacket.Payload(make([]byte, 64))))
	f2 := ip4(layers.IPProtocolUDP)
	f2.FragOffset = 9
	frags = append(frags, build(t, eth(layers.EthernetTypeIPv4), f2, gopacket.Payload(make([]byte, 40))))
	h6 := ip6(layers.IPProtocolIPv6Fragment)
	fr := gopacket.Payload{17, 0, 0x00, 0x01, 0, 0, 0, 9} // RFC 8200 fragment header: UDP, offset 0, M
	frags = append(frags, build(t, eth(layers.EthernetTypeIPv6), h6, fr, udp(h6, 5002, 53), gopacket.Payload(make([]byte, 64))))
	h6b := ip6(layers.IPProtocolIPv6Fragment)
	frb := gopacket.Payload{17, 0, 0x00, 9 << 3, 0, 0, 0, 9} // offset 9 (×8 bytes), last fragment
	frags = append(frags, build(t, eth(layers.EthernetTypeIPv6), h6b, frb, gopacket.Payload(make([]byte, 40))))
	hbh := ip6(layers.IPProtocolIPv6HopByHop)
	hop := &layers.IPv6HopByHop{}
	hop.NextHeader = layers.IPProtocolIPv6Destination
	hop.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolUDP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	frags = append(frags, build(t, eth(layers.EthernetTypeIPv6), hbh, hop, dst, udp(hbh, 5003, 53), payload))
	nn := ip6(layers.IPProtocolNoNextHeader)
	frags = append(frags, build(t, eth(layers.EthernetTypeIPv6), nn))
	writePcap(t, "testdata/fragments.pcap", frags, nil)

	// vlan.pcap: 802.1Q, QinQ and three tags (one too many).
	var vl [][]byte
	q4 := ip4(layers.IPProtocolTCP)
	vl = append(vl, build(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4}, q4, syn(q4, 4100), payload))
	qq := ip4(layers.IPProtocolUDP)
	vl = append(vl, build(t, eth(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4}, qq, udp(qq, 5100, 53), payload))
	q6 := ip6(layers.IPProtocolTCP)
	vl = append(vl, build(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv6}, q6, syn(q6, 4101), payload))
	t3 := ip4(layers.IPProtocolTCP)
	vl = append(vl, build(t, eth(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 1, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 2, Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{VLANIdentifier: 3, Type: layers.EthernetTypeIPv4}, t3, syn(t3, 4102), payload))
	writePcap(t, "testdata/vlan.pcap", vl, nil)
}
