package frame

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestErrorString(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)
	seen := map[string]Error{}
	for e := Error(0); int(e) < NumErrors; e++ {
		s := e.String()
		if !snake.MatchString(s) {
			t.Errorf("Error(%d).String() = %q, want a snake_case label", e, s)
		}
		if prev, ok := seen[s]; ok {
			t.Errorf("Error(%d) and Error(%d) share the label %q", prev, e, s)
		}
		seen[s] = e
	}
	if got := Error(NumErrors).String(); got != "unknown" {
		t.Errorf("out of range String() = %q, want unknown", got)
	}
	if ErrNone != 0 {
		t.Errorf("ErrNone = %d, want 0", ErrNone)
	}
}

// setIPv4 patches byte i of the IPv4 header of a frame (after an untagged Ethernet header) and fixes
// the header checksum, so that only the patched rule fails.
func setIPv4(b []byte, i int, v byte) []byte {
	b = append([]byte(nil), b...)
	h := b[14:]
	h[i] = v
	ihl := int(h[0]&0xf) * 4
	if ihl < 20 || ihl > len(h) {
		ihl = 20
	}
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^naiveChecksum(h[:ihl], 0))
	return b
}

func put16(b []byte, off int, v uint16) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

func TestParseValid(t *testing.T) {
	vlan := func(id uint16, et layers.EthernetType) *layers.Dot1Q {
		return &layers.Dot1Q{VLANIdentifier: id, Type: et}
	}
	opts := ip4(layers.IPProtocolUDP)
	opts.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // NOP NOP NOP EOL
	v4frag1 := ip4(layers.IPProtocolUDP)
	v4frag1.Flags = layers.IPv4MoreFragments
	v4frag2 := ip4(layers.IPProtocolUDP)
	v4frag2.FragOffset = 3
	bigUDP := udp()

	tcpHdr := serialize(t, ip6(layers.IPProtocolTCP), tcp())[40:] // TCP header alone (checksum irrelevant)
	tcpPay := tcpHdr[:20]
	udpFirst := cat(be16(40001), be16(53), be16(1000), be16(0)) // length says more than this fragment

	type want struct {
		et      uint16
		vlans   uint8
		fam     uint8
		proto   uint8
		frag    FragKind
		l3, l4  uint32
		end     uint32
		sp, dp  uint16
		icmpT   uint8
		flags   uint8
		padding int
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  want
	}{
		{"ipv4 tcp", frameV4TCP(t), want{et: 0x0800, fam: 4, proto: 6, l3: 14, l4: 34, end: 14 + 20 + 20 + 33, sp: 40000, dp: 80, flags: 0x02}},
		{"ipv4 udp", frameV4UDP(t), want{et: 0x0800, fam: 4, proto: 17, l3: 14, l4: 34, end: 14 + 20 + 8 + 17, sp: 40001, dp: 53}},
		{"ipv4 options", serialize(t, eth(layers.EthernetTypeIPv4), opts, udp(), payload(4)), want{et: 0x0800, fam: 4, proto: 17, l3: 14, l4: 38, end: 14 + 24 + 12, sp: 40001, dp: 53}},
		{"ipv4 icmp echo", serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 777, Seq: 1}, payload(8)),
			want{et: 0x0800, fam: 4, proto: 1, l3: 14, l4: 34, end: 14 + 20 + 16, sp: 777, dp: 777, icmpT: 8}},
		{"ipv4 icmp unreachable", serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 1)}, payload(28)),
			want{et: 0x0800, fam: 4, proto: 1, l3: 14, l4: 34, end: 14 + 20 + 36, icmpT: 3}},
		{"ipv4 gre (unknown proto)", serialize(t, eth(layers.EthernetTypeIPv4), ip4(47), payload(8)),
			want{et: 0x0800, fam: 4, proto: 47, l3: 14, end: 14 + 28}},
		{"ipv4 first fragment", serialize(t, eth(layers.EthernetTypeIPv4), v4frag1, gopacket.Payload(udpFirst), payload(16)),
			want{et: 0x0800, fam: 4, proto: 17, frag: FragFirst, l3: 14, l4: 34, end: 14 + 20 + 24, sp: 40001, dp: 53}},
		{"ipv4 later fragment", serialize(t, eth(layers.EthernetTypeIPv4), v4frag2, payload(3)),
			want{et: 0x0800, fam: 4, proto: 17, frag: FragLater, l3: 14, end: 14 + 23}},
		{"ipv4 padded to 60", serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp()),
			want{et: 0x0800, fam: 4, proto: 17, l3: 14, l4: 34, end: 42, sp: 40001, dp: 53, padding: 18}},
		{"802.1q", serialize(t, eth(layers.EthernetTypeDot1Q), vlan(7, layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp()),
			want{et: 0x0800, vlans: 1, fam: 4, proto: 6, l3: 18, l4: 38, end: 58, sp: 40000, dp: 80, flags: 2}},
		{"802.1ad+802.1q", serialize(t, eth(layers.EthernetTypeQinQ), vlan(100, layers.EthernetTypeDot1Q), vlan(7, layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp()),
			want{et: 0x86dd, vlans: 2, fam: 6, proto: 17, l3: 22, l4: 62, end: 70, sp: 40001, dp: 53}},
		{"arp", serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: 1, Protocol: 0x0800, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 1, SourceHwAddress: macA, SourceProtAddress: v4A, DstHwAddress: make([]byte, 6), DstProtAddress: v4B}),
			want{et: 0x0806, l3: 14, end: 42}},
		{"ipv6 tcp", frameV6TCP(t), want{et: 0x86dd, fam: 6, proto: 6, l3: 14, l4: 54, end: 14 + 40 + 20 + 33, sp: 40000, dp: 80, flags: 2}},
		{"ipv6 udp", frameV6UDP(t), want{et: 0x86dd, fam: 6, proto: 17, l3: 14, l4: 54, end: 14 + 40 + 8 + 17, sp: 40001, dp: 53}},
		{"ipv6 icmpv6 echo", serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolICMPv6),
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, &layers.ICMPv6Echo{Identifier: 4242, SeqNumber: 1}),
			want{et: 0x86dd, fam: 6, proto: 58, l3: 14, l4: 54, end: 62, sp: 4242, dp: 4242, icmpT: 128}},
		{"ipv6 hbh+routing+dstopts", frameV6Ext(t, 0, cat(extHeader(43, 1), extHeader(60, 2), extHeader(6, 1)), tcp()),
			want{et: 0x86dd, fam: 6, proto: 6, l3: 14, l4: 54 + 32, end: 54 + 32 + 20, sp: 40000, dp: 80, flags: 2}},
		{"ipv6 ah", frameV6Ext(t, 51, ahHeader(17), udp()),
			want{et: 0x86dd, fam: 6, proto: 17, l3: 14, l4: 54 + 24, end: 54 + 24 + 8, sp: 40001, dp: 53}},
		{"ipv6 esp", frameV6Ext(t, 50, payload(24)), want{et: 0x86dd, fam: 6, proto: 50, l3: 14, end: 54 + 24}},
		{"ipv6 no next header", frameV6Ext(t, 60, extHeader(59, 1)), want{et: 0x86dd, fam: 6, proto: 59, l3: 14, end: 62}},
		{"ipv6 first fragment", frameV6Ext(t, 44, cat(fragHeader(6, 0, true), tcpPay)),
			want{et: 0x86dd, fam: 6, proto: 6, frag: FragFirst, l3: 14, l4: 62, end: 82, sp: 40000, dp: 80, flags: 2}},
		{"ipv6 later fragment", frameV6Ext(t, 44, cat(fragHeader(6, 100, true), payload(16))),
			want{et: 0x86dd, fam: 6, proto: 6, frag: FragLater, l3: 14, end: 78}},
		{"ipv6 atomic fragment", frameV6Ext(t, 44, fragHeader(17, 0, false), udp()),
			want{et: 0x86dd, fam: 6, proto: 17, l3: 14, l4: 62, end: 70, sp: 40001, dp: 53}},
		{"ipv6 8 extension headers", frameV6Ext(t, 0, cat(extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1),
			extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(17, 1)), bigUDP),
			want{et: 0x86dd, fam: 6, proto: 17, l3: 14, l4: 54 + 64, end: 54 + 72, sp: 40001, dp: 53}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Parsed
			if err := Parse(tc.frame, &p); err != ErrNone {
				t.Fatalf("Parse() = %v, want none", err)
			}
			w := tc.want
			if w.end < 60 {
				w.padding = 60 - int(w.end) // gopacket pads Ethernet frames to the 60-byte minimum
			}
			got := want{p.EtherType, p.VLANs, p.Family, p.Proto, p.Frag, p.L3Off, p.L4Off, p.End, p.SrcPort, p.DstPort, p.ICMPType, p.TCPFlags, len(tc.frame) - int(p.End)}
			if got != w {
				t.Errorf("Parse() mismatch (-want +got):\n- %+v\n+ %+v", w, got)
			}
			if p.Family == 4 && (p.Src != mapped(v4A) || p.Dst != mapped(v4B)) {
				t.Errorf("addresses = %x %x, want IPv4-mapped %v %v", p.Src, p.Dst, v4A, v4B)
			}
			if p.Family == 6 && (p.Src != mapped(v6A) || p.Dst != mapped(v6B)) {
				t.Errorf("addresses = %x %x, want %v %v", p.Src, p.Dst, v6A, v6B)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	v4 := frameV4TCP(t)
	v4u := frameV4UDP(t)
	v6 := frameV6TCP(t)
	v6u := frameV6UDP(t)
	icmp := serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
	three := cat(v4[:12], be16(0x8100), be16(1), be16(0x88a8), be16(2), be16(0x8100), be16(3), be16(0x0800), v4[14:])
	badCsum := append([]byte(nil), v4...)
	badCsum[14+10] ^= 0x40
	v4frag2 := ip4(layers.IPProtocolUDP)
	v4frag2.Flags = layers.IPv4MoreFragments
	nine := cat(extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(60, 1),
		extHeader(60, 1), extHeader(60, 1), extHeader(60, 1), extHeader(17, 1))

	for _, tc := range []struct {
		name  string
		frame []byte
		want  Error
	}{
		{"empty", nil, ErrTruncatedEthernet},
		{"13 bytes", v4[:13], ErrTruncatedEthernet},
		{"vlan tag cut", cat(v4[:12], be16(0x8100), []byte{0, 1}), ErrTruncatedVLAN},
		{"three vlan tags", three, ErrTooManyVLANs},
		{"ethertype ipx", put16(v4, 12, 0x8137), ErrUnsupportedEtherType},
		{"arp short", cat(v4[:12], be16(0x0806), make([]byte, 27)), ErrTruncatedARP},
		{"ipv4 19 bytes", v4[:14+19], ErrTruncatedIPv4},
		{"ipv4 version 5", setIPv4(v4, 0, 0x55), ErrBadIPv4Version},
		{"ipv4 ihl 4", setIPv4(v4, 0, 0x44), ErrBadIPv4IHL},
		{"ipv4 ihl beyond frame", setIPv4(v4[:14+24], 0, 0x4f), ErrTruncatedIPv4},
		{"ipv4 total below ihl", setIPv4(setIPv4(v4, 2, 0), 3, 19), ErrBadIPv4Length},
		{"ipv4 total beyond frame", setIPv4(v4, 3, byte(len(v4)-14+1)), ErrBadIPv4Length},
		{"ipv4 frame cut", v4[:len(v4)-1], ErrBadIPv4Length},
		{"ipv4 bad checksum", badCsum, ErrBadIPv4Checksum},
		{"tcp 19 bytes", setIPv4(v4[:14+20+19], 3, 39), ErrTruncatedTCP},
		{"tcp offset 4", put16(v4, 14+20+12, 0x4002), ErrBadTCPOffset},
		{"tcp offset beyond ip", put16(v4, 14+20+12, 0xf002), ErrBadTCPOffset},
		{"udp 7 bytes", setIPv4(v4u[:14+27], 3, 27), ErrTruncatedUDP},
		{"udp length 7", put16(v4u, 14+20+4, 7), ErrBadUDPLength},
		{"udp length beyond ip", put16(v4u, 14+20+4, 26), ErrBadUDPLength},
		{"udp length short of ip", put16(v4u, 14+20+4, 24), ErrBadUDPLength},
		{"udp first fragment all there", serialize(t, eth(layers.EthernetTypeIPv4), v4frag2, udp()), ErrBadUDPLength},
		{"icmp 7 bytes", setIPv4(icmp[:14+27], 3, 27), ErrTruncatedICMP},
		{"ipv6 39 bytes", v6[:14+39], ErrTruncatedIPv6},
		{"ipv6 version 4", put16(v6, 14, 0x4000), ErrBadIPv6Version},
		{"ipv6 payload beyond frame", v6[:len(v6)-1], ErrBadIPv6Length},
		{"ipv6 ext runs past payload", frameV6Ext(t, 60, cat(extHeader(6, 1)[:2], []byte{1, 2, 3, 4, 5})), ErrTruncatedIPv6Ext},
		{"ipv6 ext length past payload", frameV6Ext(t, 60, cat([]byte{6, 2}, make([]byte, 14))), ErrTruncatedIPv6Ext},
		{"ipv6 ah past payload", frameV6Ext(t, 51, ahHeader(6)[:20]), ErrTruncatedIPv6Ext},
		{"ipv6 hbh second", frameV6Ext(t, 60, cat(extHeader(0, 1), extHeader(17, 1)), udp()), ErrBadIPv6HopByHop},
		{"ipv6 9 ext headers", frameV6Ext(t, 0, nine, udp()), ErrIPv6ExtChainTooLong},
		{"ipv6 tcp cut", frameV6Ext(t, 6, payload(19)), ErrTruncatedTCP},
		{"ipv6 udp length", put16(v6u, 14+40+4, 100), ErrBadUDPLength},
		{"ipv6 icmpv6 cut", frameV6Ext(t, 58, payload(7)), ErrTruncatedICMP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Parsed
			if got := Parse(tc.frame, &p); got != tc.want {
				t.Errorf("Parse() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestParseBigTCP checks that a zero IP length on a frame longer than 64 KiB means "to the end of the
// frame", as the kernel's BIG TCP hands them over, and nothing else.
func TestParseBigTCP(t *testing.T) {
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprint("ipv", fam), func(t *testing.T) {
			var small []byte
			if fam == 4 {
				small = frameV4TCP(t)
			} else {
				small = frameV6TCP(t)
			}
			big := append(append([]byte(nil), small...), make([]byte, 70000)...)
			if fam == 4 {
				big = setIPv4(big, 2, 0)
				big = setIPv4(big, 3, 0)
			} else {
				big = put16(big, 14+4, 0)
			}
			var p Parsed
			if err := Parse(big, &p); err != ErrNone || p.End != uint32(len(big)) || p.L4Off == 0 {
				t.Errorf("Parse(big, len 0) = %v, End %d, want none, %d", err, p.End, len(big))
			}
			if fam == 4 {
				small = setIPv4(setIPv4(small, 2, 0), 3, 0)
				if err := Parse(small, &p); err != ErrBadIPv4Length {
					t.Errorf("Parse(small, len 0) = %v, want %v", err, ErrBadIPv4Length)
				}
			}
		})
	}
}

// TestParseEveryPrefix parses every truncation of valid frames: nothing panics, and a prefix that cuts
// into the IP packet never parses.
func TestParseEveryPrefix(t *testing.T) {
	for name, f := range seedFrames(t) {
		t.Run(name, func(t *testing.T) {
			var p Parsed
			if err := Parse(f, &p); err != ErrNone {
				t.Fatalf("Parse(full) = %v", err)
			}
			end := int(p.End)
			for n := 0; n < len(f); n++ {
				err := Parse(f[:n], &p)
				if n < end && err == ErrNone {
					t.Errorf("Parse(first %d of %d bytes) = none, want an error", n, end)
				}
			}
		})
	}
}
