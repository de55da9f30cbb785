package frame

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/govs/govs/flow"
)

// icmp4Error builds an ICMPv4 port unreachable from v4B to v4A quoting up to max bytes of the IP
// packet quoted.
func icmp4Error(tb testing.TB, quoted []byte, max int) []byte {
	ip := ip4(layers.IPProtocolICMPv4)
	ip.SrcIP, ip.DstIP = v4B, v4A
	return serialize(tb, eth(layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted[:min(max, len(quoted))]))
}

// icmp6Error builds an ICMPv6 error of type typ from v6B to v6A quoting up to max bytes of quoted.
func icmp6Error(tb testing.TB, typ uint8, quoted []byte, max int) []byte {
	ip := ip6(layers.IPProtocolICMPv6)
	ip.SrcIP, ip.DstIP = v6B, v6A
	rest := []byte{0, 0, 0x05, 0xdc} // MTU 1500 for packet too big, unused otherwise
	return serialize(tb, eth(layers.EthernetTypeIPv6), ip, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)},
		gopacket.Payload(cat(rest, quoted[:min(max, len(quoted))])))
}

func TestIsICMPError(t *testing.T) {
	for _, tc := range []struct {
		fam, proto, typ uint8
		want            bool
	}{
		{4, 1, 3, true}, {4, 1, 11, true}, {4, 1, 12, true}, {4, 1, 8, false}, {4, 1, 0, false}, {4, 1, 5, false},
		{6, 58, 1, true}, {6, 58, 2, true}, {6, 58, 3, true}, {6, 58, 4, true}, {6, 58, 128, false}, {6, 58, 135, false},
		{4, 58, 1, false}, {6, 1, 3, false}, {4, 6, 3, false},
	} {
		t.Run(fmt.Sprintf("v%d/proto%d/type%d", tc.fam, tc.proto, tc.typ), func(t *testing.T) {
			p := Parsed{Tuple: flow.Tuple{Proto: tc.proto}, Family: tc.fam, ICMPType: tc.typ, L4Off: 34}
			if got := IsICMPError(&p); got != tc.want {
				t.Errorf("IsICMPError() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseICMPError(t *testing.T) {
	v4tcp, v4udp, v6tcp := frameV4TCP(t)[14:], frameV4UDP(t)[14:], frameV6TCP(t)[14:]
	echo4 := serialize(t, ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 99, Seq: 1})
	v6ext := frameV6Ext(t, 60, extHeader(17, 1), udp())[14:]
	later := ip4(layers.IPProtocolUDP)
	later.FragOffset = 10
	v4later := serialize(t, later, payload(30))
	badVer := append([]byte(nil), v4tcp...)
	badVer[0] = 0x65
	badIHL := append([]byte(nil), v4tcp...)
	badIHL[0] = 0x43
	type want struct {
		err    Error
		proto  uint8
		frag   FragKind
		l3, l4 uint32
		sp, dp uint16
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  want
	}{
		{"v4 tcp quoted 28", icmp4Error(t, v4tcp, 28), want{ErrNone, 6, FragNone, 42, 62, 40000, 80}},
		{"v4 tcp quoted whole", icmp4Error(t, v4tcp, 1000), want{ErrNone, 6, FragNone, 42, 62, 40000, 80}},
		{"v4 udp", icmp4Error(t, v4udp, 28), want{ErrNone, 17, FragNone, 42, 62, 40001, 53}},
		{"v4 echo", icmp4Error(t, echo4, 28), want{ErrNone, 1, FragNone, 42, 62, 99, 99}},
		{"v4 later fragment", icmp4Error(t, v4later, 28), want{ErrNone, 17, FragLater, 42, 0, 0, 0}},
		{"v4 quoted 27", icmp4Error(t, v4tcp, 27), want{ErrTruncatedInnerL4, 6, FragNone, 42, 0, 0, 0}},
		{"v4 quoted 19", icmp4Error(t, v4tcp, 19), want{ErrTruncatedInnerIP, 0, FragNone, 42, 0, 0, 0}},
		{"v4 quoted v6", icmp4Error(t, v6tcp, 48), want{ErrBadInnerIPVersion, 0, FragNone, 42, 0, 0, 0}},
		{"v4 quoted version 6", icmp4Error(t, badVer, 28), want{ErrBadInnerIPVersion, 0, FragNone, 42, 0, 0, 0}},
		{"v4 quoted ihl 3", icmp4Error(t, badIHL, 28), want{ErrBadInnerIPv4IHL, 0, FragNone, 42, 0, 0, 0}},
		{"v6 tcp quoted 48", icmp6Error(t, 1, v6tcp, 48), want{ErrNone, 6, FragNone, 62, 102, 40000, 80}},
		{"v6 tcp quoted whole", icmp6Error(t, 2, v6tcp, 2000), want{ErrNone, 6, FragNone, 62, 102, 40000, 80}},
		{"v6 ext udp", icmp6Error(t, 3, v6ext, 2000), want{ErrNone, 17, FragNone, 62, 110, 40001, 53}},
		{"v6 ext cut", icmp6Error(t, 4, v6ext, 45), want{ErrTruncatedInnerIPv6Ext, 60, FragNone, 62, 0, 0, 0}},
		{"v6 quoted 39", icmp6Error(t, 1, v6tcp, 39), want{ErrTruncatedInnerIP, 0, FragNone, 62, 0, 0, 0}},
		{"v6 quoted 47", icmp6Error(t, 1, v6tcp, 47), want{ErrTruncatedInnerL4, 6, FragNone, 62, 0, 0, 0}},
		{"not an error", frameV4TCP(t), want{ErrNotICMPError, 0, FragNone, 0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p, in Parsed
			if err := Parse(tc.frame, &p); err != ErrNone {
				t.Fatalf("Parse() = %v", err)
			}
			err := ParseICMPError(tc.frame, &p, &in)
			got := want{err, in.Proto, in.Frag, in.L3Off, in.L4Off, in.SrcPort, in.DstPort}
			if got != tc.want {
				t.Errorf("ParseICMPError() mismatch (-want +got):\n- %+v\n+ %+v", tc.want, got)
			}
			if err == ErrNone && in.End != p.End {
				t.Errorf("inner End = %d, want the quote's end %d", in.End, p.End)
			}
		})
	}
}

// TestRewriteInnerDifferential NATs random ICMP errors the way the data plane does (outer destination
// and inner source back to the virtual service) and checks every checksum against a full recompute.
func TestRewriteInnerDifferential(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for _, fam := range []int{4, 6} {
		protos := []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4}
		if fam == 6 {
			protos[2] = layers.IPProtocolICMPv6
		}
		for _, proto := range protos {
			for _, quote := range []int{8, 1 << 20} {
				t.Run(fmt.Sprintf("ipv%d/%v/l4quote%d", fam, proto, min(quote, 9999)), func(t *testing.T) {
					for i := 0; i < 200; i++ {
						orig := randomFrame(t, rng, fam, proto)[14:]
						var b []byte
						if fam == 4 {
							b = icmp4Error(t, orig, 20+quote)
						} else {
							b = icmp6Error(t, uint8(1+rng.Intn(4)), orig, 40+quote)
						}
						var p, in Parsed
						if err := Parse(b, &p); err != ErrNone {
							t.Fatalf("Parse() = %v", err)
						}
						if err := ParseICMPError(b, &p, &in); err != ErrNone {
							t.Fatalf("ParseICMPError() = %v", err)
						}
						src, dst := mapped(randAddr(rng, fam)), mapped(randAddr(rng, fam))
						sport, dport := uint16(rng.Intn(65536)), uint16(rng.Intn(65536))
						RewriteInnerSrc(b, &p, &in, src, sport)
						RewriteInnerDst(b, &p, &in, dst, dport)
						RewriteDst(b, &p, mapped(randAddr(rng, fam)), 0)

						var q, in2 Parsed
						if err := Parse(b, &q); err != ErrNone || q != p {
							t.Fatalf("Parse(rewritten) = %v, Parsed (-want +got):\n- %+v\n+ %+v", err, q, p)
						}
						if !l4Valid(b, &q) {
							t.Fatalf("outer ICMP checksum does not verify after the inner rewrite")
						}
						if err := ParseICMPError(b, &q, &in2); err != ErrNone || in2 != in {
							t.Fatalf("ParseICMPError(rewritten) = %v (-want +got):\n- %+v\n+ %+v", err, in, in2)
						}
						if in2.Src != src || in2.Dst != dst {
							t.Fatalf("inner addresses not rewritten")
						}
						wantS, wantD := sport, dport
						if in2.Proto == ProtoICMP || in2.Proto == ProtoICMPv6 {
							wantS = dport
						}
						if in2.SrcPort != wantS || in2.DstPort != wantD {
							t.Fatalf("inner ports %d %d, want %d %d", in2.SrcPort, in2.DstPort, wantS, wantD)
						}
						if fam == 4 && naiveChecksum(b[in2.L3Off:in2.L3Off+20], 0) != 0xffff {
							t.Fatalf("inner IPv4 header checksum does not verify")
						}
						if quote > 8 {
							// The whole original packet is quoted: its transport checksum must verify
							// against its own (rewritten) pseudo-header.
							full := in2
							if fam == 4 {
								full.End = in2.L3Off + uint32(binary.BigEndian.Uint16(orig[2:]))
							} else {
								full.End = in2.L3Off + 40 + uint32(binary.BigEndian.Uint16(orig[4:]))
							}
							if !l4Valid(b, &full) {
								t.Fatalf("inner transport checksum does not verify")
							}
						}
					}
				})
			}
		}
	}
}

func TestRewriteInnerRejectsMismatch(t *testing.T) {
	b := icmp4Error(t, frameV4TCP(t)[14:], 28)
	var p, in Parsed
	if Parse(b, &p) != ErrNone || ParseICMPError(b, &p, &in) != ErrNone {
		t.Fatal("setup")
	}
	before := append([]byte(nil), b...)
	odd := in
	odd.L3Off++
	RewriteInnerSrc(b, &p, &odd, mapped(net.IP{198, 18, 1, 1}), 1)
	notErr := p
	notErr.ICMPType = 8
	RewriteInnerDst(b, &notErr, &in, mapped(net.IP{198, 18, 1, 1}), 1)
	if string(b) != string(before) {
		t.Errorf("rewrite with a mismatched inner Parsed changed the frame")
	}
}
