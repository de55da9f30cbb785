package frame

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/gopacket/layers"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz seed corpora from seedFrames")

// seedFrames are real frames, one per path through Parse, named for what they exercise. They seed the
// fuzzers (the files in testdata/fuzz carry the same names) and TestParseEveryPrefix.
func seedFrames(tb testing.TB) map[string][]byte {
	tb.Helper()
	first := ip4(layers.IPProtocolUDP)
	first.Flags = layers.IPv4MoreFragments
	later := ip4(layers.IPProtocolUDP)
	later.FragOffset = 185
	return map[string][]byte{
		"ipv4_tcp_syn":            frameV4TCP(tb),
		"ipv4_udp":                frameV4UDP(tb),
		"ipv4_udp_first_fragment": serialize(tb, eth(layers.EthernetTypeIPv4), first, payload(8)),
		"ipv4_later_fragment":     serialize(tb, eth(layers.EthernetTypeIPv4), later, payload(24)),
		"ipv4_icmp_echo": serialize(tb, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 9, Seq: 1}, payload(8)),
		"ipv4_icmp_unreachable_tcp": icmp4Error(tb, frameV4TCP(tb)[14:], 28),
		"ipv4_icmp_unreachable_udp": icmp4Error(tb, frameV4UDP(tb)[14:], 1000),
		"ipv4_tcp_qinq": serialize(tb, eth(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 1, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 2, Type: layers.EthernetTypeIPv4}, ip4(layers.IPProtocolTCP), tcp()),
		"ipv6_tcp_syn":                 frameV6TCP(tb),
		"ipv6_udp":                     frameV6UDP(tb),
		"ipv6_ext_hbh_routing_dstopts": frameV6Ext(tb, 0, cat(extHeader(43, 1), extHeader(60, 2), extHeader(6, 1)), tcp()),
		"ipv6_ah_udp":                  frameV6Ext(tb, 51, ahHeader(17), udp()),
		"ipv6_fragment_first_tcp":      frameV6Ext(tb, 44, fragHeader(6, 0, true), tcp()),
		"ipv6_icmpv6_too_big_udp":      icmp6Error(tb, 2, frameV6UDP(tb)[14:], 1000),
		"ipv6_icmpv6_echo": serialize(tb, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolICMPv6),
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}),
		"arp_request": serialize(tb, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: 1, Protocol: 0x0800, HwAddressSize: 6,
			ProtAddressSize: 4, Operation: 1, SourceHwAddress: macA, SourceProtAddress: v4A, DstHwAddress: make([]byte, 6), DstProtAddress: v4B}),
	}
}

func sortedNames(m map[string][]byte) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestWriteSeeds regenerates the seed corpora: go test -run TestWriteSeeds -update-seeds.
func TestWriteSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("pass -update-seeds to regenerate testdata/fuzz")
	}
	frames := seedFrames(t)
	for _, fuzz := range []string{"FuzzParse", "FuzzRewrite"} {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range sortedNames(frames) {
			var s string
			if fuzz == "FuzzParse" {
				s = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", frames[name])
			} else {
				s = fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\nuint16(%d)\n", frames[name],
					[]byte{0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 99}, 8080)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range sortedNames(seedFrames(f)) {
		f.Add(seedFrames(f)[name])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p, inner Parsed
		err := Parse(b, &p)
		if int(err) >= NumErrors {
			t.Fatalf("Parse returned out-of-range error %d", err)
		}
		if err != ErrNone {
			return
		}
		checkBounds(t, b, &p, p.End, false)
		if IsICMPError(&p) && ParseICMPError(b, &p, &inner) == ErrNone {
			if inner.L3Off < p.L4Off+8 {
				t.Fatalf("inner L3Off %d inside the outer ICMP header at %d", inner.L3Off, p.L4Off)
			}
			checkBounds(t, b, &inner, p.End, true)
		}
	})
}

// FuzzParseFast: Parse's fast path for plain IPv4 and IPv6 TCP/UDP frames gives exactly what the general
// parser gives, for every frame it takes. The seeds include the mutations that matter (a checksum
// off by one, a UDP length off by one, a fragment bit, a TCP data offset past the end, BIG TCP).
func FuzzParseFast(f *testing.F) {
	for _, name := range sortedNames(seedFrames(f)) {
		b := seedFrames(f)[name]
		f.Add(b)
		for _, i := range []int{16, 17, 18, 19, 20, 21, 24, 25, 38, 39, 46, 58, 59, 66} { // IPv4 total length, frag, checksum, UDP length, TCP offset; IPv6 payload length, next header, UDP length, TCP offset
			if i < len(b) {
				c := append([]byte(nil), b...)
				c[i] ^= 0x20
				f.Add(c)
				if len(c) >= 34 && c[12] == 0x08 && c[13] == 0 && c[14] == 0x45 && i != 24 && i != 25 {
					d := append([]byte(nil), c...) // the same with a valid header checksum
					d[24], d[25] = 0, 0
					binary.BigEndian.PutUint16(d[24:], ^naiveChecksum(d[14:34], 0))
					f.Add(d)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, general Parsed
		if !ParseFast(b, &fast) {
			return
		}
		if err := parse(b, &general); err != ErrNone || fast != general {
			t.Fatalf("fast path took the frame, general parse says %v:\nfast    %+v\ngeneral %+v", err, fast, general)
		}
	})
}

// checkBounds asserts the offset invariants of a successful parse.
// A quoted (inner) transport header only promises its first 8 bytes.
func checkBounds(t *testing.T, b []byte, p *Parsed, end uint32, quoted bool) {
	t.Helper()
	if p.L3Off > p.End || int(p.End) > len(b) || p.End != end {
		t.Fatalf("L3Off %d End %d outside frame of %d", p.L3Off, p.End, len(b))
	}
	if p.L4Off == 0 {
		return
	}
	var min uint32 = 8
	if p.Proto == ProtoTCP && !quoted {
		min = 20
		if p.L4Off+12 < p.End {
			min = uint32(b[p.L4Off+12]>>4) * 4
		}
	}
	if p.L4Off <= p.L3Off || p.L4Off+min > p.End {
		t.Fatalf("L4Off %d + header %d beyond End %d (L3Off %d)", p.L4Off, min, p.End, p.L3Off)
	}
}

// FuzzRewrite rewrites every frame that parses, outer and (for ICMP errors) inner, and checks that
// the frame still parses to the new values and that every checksum that verified before still does.
func FuzzRewrite(f *testing.F) {
	for _, name := range sortedNames(seedFrames(f)) {
		f.Add(seedFrames(f)[name], []byte("2001:2::99 addr!"), uint16(8080))
	}
	f.Fuzz(func(t *testing.T, b, addrBytes []byte, port uint16) {
		var p Parsed
		if Parse(b, &p) != ErrNone || p.Family == 0 {
			return
		}
		var addr [16]byte
		copy(addr[:], addrBytes)
		if p.Family == 4 {
			addr = [16]byte{10: 0xff, 11: 0xff, 12: addr[0], 13: addr[1], 14: addr[2], 15: addr[3]}
		}
		l4ok := p.L4Off != 0 && p.Frag == FragNone && l4Valid(b, &p)

		var inner Parsed
		innerOK := IsICMPError(&p) && ParseICMPError(b, &p, &inner) == ErrNone
		innerIPOK := innerOK && p.Family == 4 && naiveChecksum(b[inner.L3Off:inner.L3Off+uint32(b[inner.L3Off]&0xf)*4], 0) == 0xffff

		RewriteDst(b, &p, addr, port)
		RewriteSrc(b, &p, addr, port^0x5555)
		if innerOK {
			RewriteInnerSrc(b, &p, &inner, addr, port)
			RewriteInnerDst(b, &p, &inner, addr, ^port)
		}

		var q Parsed
		if err := Parse(b, &q); err != ErrNone {
			t.Fatalf("Parse(rewritten) = %v, want none", err)
		}
		if q != p {
			t.Fatalf("Parsed after rewrite differs from re-parse (-want +got):\n- %+v\n+ %+v", q, p)
		}
		if q.Dst != addr || q.Src != addr {
			t.Fatalf("addresses not rewritten")
		}
		if l4ok && !l4Valid(b, &q) {
			t.Fatalf("transport checksum verified before the rewrite but not after")
		}
		if innerIPOK && naiveChecksum(b[inner.L3Off:inner.L3Off+uint32(b[inner.L3Off]&0xf)*4], 0) != 0xffff {
			t.Fatalf("inner IPv4 header checksum broken by the rewrite")
		}
		if innerOK {
			var in2 Parsed
			if err := ParseICMPError(b, &q, &in2); err != ErrNone || in2 != inner {
				t.Fatalf("ParseICMPError(rewritten) = %v (-want +got):\n- %+v\n+ %+v", err, inner, in2)
			}
		}
	})
}
