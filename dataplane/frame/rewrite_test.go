package frame

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/govs/govs/internal/checksum"
)

// randomFrame builds a valid frame of the given family and protocol with random addresses, ports and
// payload, with gopacket computing all checksums.
func randomFrame(tb testing.TB, rng *rand.Rand, fam int, proto layers.IPProtocol) []byte {
	pay := payload(rng.Intn(1400))
	rng.Read(pay)
	var ls []gopacket.SerializableLayer
	if fam == 4 {
		ip := ip4(proto)
		ip.SrcIP, ip.DstIP = randAddr(rng, 4), randAddr(rng, 4)
		ls = append(ls, eth(layers.EthernetTypeIPv4), ip)
	} else {
		ip := ip6(proto)
		ip.SrcIP, ip.DstIP = randAddr(rng, 6), randAddr(rng, 6)
		ls = append(ls, eth(layers.EthernetTypeIPv6), ip)
	}
	switch proto {
	case layers.IPProtocolTCP:
		ls = append(ls, &layers.TCP{SrcPort: layers.TCPPort(rng.Intn(65536)), DstPort: layers.TCPPort(rng.Intn(65536)),
			Seq: rng.Uint32(), Ack: rng.Uint32(), ACK: true, PSH: true, Window: uint16(rng.Intn(65536))})
	case layers.IPProtocolUDP:
		ls = append(ls, &layers.UDP{SrcPort: layers.UDPPort(rng.Intn(65536)), DstPort: layers.UDPPort(rng.Intn(65536))})
	case layers.IPProtocolICMPv4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: uint16(rng.Intn(65536)), Seq: 1})
	case layers.IPProtocolICMPv6:
		ls = append(ls, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)},
			&layers.ICMPv6Echo{Identifier: uint16(rng.Intn(65536)), SeqNumber: 1})
	}
	return serialize(tb, append(ls, pay)...)
}

// randAddr returns a random address inside the test ranges 198.18.0.0/15 or 2001:2::/48.
func randAddr(rng *rand.Rand, fam int) net.IP {
	if fam == 4 {
		return net.IP{198, byte(18 + rng.Intn(2)), byte(rng.Intn(256)), byte(rng.Intn(256))}
	}
	ip := make(net.IP, 16)
	rng.Read(ip)
	copy(ip, []byte{0x20, 0x01, 0, 2, 0, 0})
	return ip
}

// reference recomputes every checksum of frame b with gopacket (decode, then serialize with
// ComputeChecksums) and returns the result: a from-scratch implementation to compare against.
func reference(tb testing.TB, b []byte) []byte {
	tb.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket could not decode the rewritten frame: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	for _, l := range pkt.Layers() {
		sl, ok := l.(gopacket.SerializableLayer)
		if !ok {
			tb.Fatalf("gopacket cannot serialize layer %T", l)
		}
		ls = append(ls, sl)
	}
	if _, ok := ls[len(ls)-1].(*layers.ICMPv6Echo); ok {
		// gopacket drops what follows the echo header; re-attach it from the ICMPv6 layer.
		icmp := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		ls = append(ls, gopacket.Payload(icmp.LayerPayload()[4:]))
	}
	return serialize(tb, ls...)
}

func TestRewriteDifferential(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	protos := map[int][]layers.IPProtocol{
		4: {layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4},
		6: {layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv6},
	}
	for _, fam := range []int{4, 6} {
		for _, proto := range protos[fam] {
			t.Run(fmt.Sprintf("ipv%d/%v", fam, proto), func(t *testing.T) {
				for i := 0; i < 300; i++ {
					b := randomFrame(t, rng, fam, proto)
					var p Parsed
					if err := Parse(b, &p); err != ErrNone {
						t.Fatalf("Parse(random frame) = %v", err)
					}
					dst, src := mapped(randAddr(rng, fam)), mapped(randAddr(rng, fam))
					dport, sport := uint16(rng.Intn(65536)), uint16(rng.Intn(65536))
					if i%10 == 0 {
						dport, dst = p.DstPort, p.Dst // a no-op rewrite must keep checksums right too
					}
					RewriteDst(b, &p, dst, dport)
					RewriteSrc(b, &p, src, sport)

					var q Parsed
					if err := Parse(b, &q); err != ErrNone {
						t.Fatalf("Parse(rewritten) = %v", err)
					}
					if q != p {
						t.Fatalf("Parsed after rewrite differs from re-parse (-want +got):\n- %+v\n+ %+v", q, p)
					}
					if q.Dst != dst || q.Src != src {
						t.Fatalf("addresses %x %x, want %x %x", q.Dst, q.Src, dst, src)
					}
					wantD, wantS := dport, sport
					if proto == layers.IPProtocolICMPv4 || proto == layers.IPProtocolICMPv6 {
						wantD, wantS = sport, sport // the echo identifier: the last write wins
					}
					if q.DstPort != wantD || q.SrcPort != wantS {
						t.Fatalf("ports %d %d, want %d %d", q.DstPort, q.SrcPort, wantD, wantS)
					}
					if !l4Valid(b, &q) {
						t.Fatalf("transport checksum does not verify after rewrite")
					}
					ref := reference(t, b)
					if !bytes.Equal(ref, b) {
						// The only allowed difference: a UDP checksum that computes to 0 is sent as 0xffff.
						c := q.L4Off + 6
						if q.Proto == ProtoUDP && binary.BigEndian.Uint16(b[c:]) == 0xffff && binary.BigEndian.Uint16(ref[c:]) == 0 {
							continue
						}
						t.Fatalf("rewritten frame differs from a full recompute:\n got %x\nwant %x", b, ref)
					}
				}
			})
		}
	}
}

func TestRewriteUDPZeroChecksum(t *testing.T) {
	b := frameV4UDP(t)
	b[14+20+6], b[14+20+7] = 0, 0 // IPv4 UDP without checksum
	var p Parsed
	if err := Parse(b, &p); err != ErrNone {
		t.Fatal(err)
	}
	RewriteDst(b, &p, mapped(net.IP{198, 18, 9, 9}), 8080)
	RewriteSrc(b, &p, mapped(net.IP{198, 18, 7, 7}), 1234)
	if c := binary.BigEndian.Uint16(b[14+20+6:]); c != 0 {
		t.Errorf("IPv4 UDP checksum after rewrite = %#x, want 0 (none)", c)
	}
	var q Parsed
	if err := Parse(b, &q); err != ErrNone || q.DstPort != 8080 || q.SrcPort != 1234 {
		t.Errorf("Parse(rewritten) = %v %+v", err, q)
	}
}

// TestRewriteUDPNeverZero searches for a rewrite whose UDP checksum computes to 0 and checks it is
// sent as 0xffff (RFC 768; for IPv6 a zero checksum is invalid, RFC 8200 section 8.1).
func TestRewriteUDPNeverZero(t *testing.T) {
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprint("ipv", fam), func(t *testing.T) {
			var b []byte
			if fam == 4 {
				b = frameV4UDP(t)
			} else {
				b = frameV6UDP(t)
			}
			var p Parsed
			if err := Parse(b, &p); err != ErrNone {
				t.Fatal(err)
			}
			// Choose the port that makes the checksum field compute to 0: the field must move by
			// exactly its complement. With c the current field, changing the port by delta changes the
			// field by -delta, so delta = c (in ones' complement) lands on 0 (sent as 0xffff).
			c := binary.BigEndian.Uint16(b[p.L4Off+6:])
			port := uint16(checksum.Fold32(uint32(p.DstPort) + uint32(c)))
			RewriteDst(b, &p, p.Dst, port)
			if got := binary.BigEndian.Uint16(b[p.L4Off+6:]); got != 0xffff {
				t.Fatalf("UDP checksum = %#x, want 0xffff", got)
			}
			if !l4Valid(b, &p) {
				t.Errorf("UDP checksum 0xffff does not verify")
			}
		})
	}
}

func TestRewriteFragments(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	first := ip4(layers.IPProtocolTCP)
	first.Flags = layers.IPv4MoreFragments
	later := ip4(layers.IPProtocolTCP)
	later.FragOffset = 100
	tcpHdr := serialize(t, ip4(layers.IPProtocolTCP), tcp(), payload(20))[20:]
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"ipv4 first", serialize(t, eth(layers.EthernetTypeIPv4), first, gopacket.Payload(tcpHdr))},
		{"ipv4 later", serialize(t, eth(layers.EthernetTypeIPv4), later, payload(40))},
		{"ipv6 first", frameV6Ext(t, 44, cat(fragHeader(6, 0, true), tcpHdr))},
		{"ipv6 later", frameV6Ext(t, 44, cat(fragHeader(6, 9, true), payload(40)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.frame
			var p Parsed
			if err := Parse(b, &p); err != ErrNone {
				t.Fatal(err)
			}
			fam := int(p.Family)
			// The first fragment's TCP checksum covers the whole datagram, which we do not have; an
			// incremental update is right anyway. Check it against: sum(pseudo) + sum(segment) is
			// invariant under the rewrite.
			var before uint32
			if p.L4Off != 0 {
				before = uint32(checksum.Fold32(naivePseudo(&p) + uint32(naiveChecksum(b[p.L4Off:p.End], 0))))
			}
			payloadBefore := append([]byte(nil), b[p.End-20:p.End]...)
			dst, src := mapped(randAddr(rng, fam)), mapped(randAddr(rng, fam))
			RewriteDst(b, &p, dst, 8080)
			RewriteSrc(b, &p, src, 9090)
			var q Parsed
			if err := Parse(b, &q); err != ErrNone {
				t.Fatalf("Parse(rewritten) = %v", err)
			}
			if q.Dst != dst || q.Src != src {
				t.Errorf("addresses not rewritten")
			}
			if p.L4Off == 0 {
				if !bytes.Equal(payloadBefore, b[p.End-20:p.End]) {
					t.Errorf("later fragment payload changed")
				}
				return
			}
			if q.DstPort != 8080 || q.SrcPort != 9090 {
				t.Errorf("ports %d %d, want 8080 9090", q.DstPort, q.SrcPort)
			}
			after := uint32(checksum.Fold32(naivePseudo(&q) + uint32(naiveChecksum(b[q.L4Off:q.End], 0))))
			if before != after {
				t.Errorf("pseudo+segment sum %#x became %#x; the checksum update is wrong", before, after)
			}
		})
	}
}

func TestCompleteL4Checksum(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for _, fam := range []int{4, 6} {
		protos := []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4}
		if fam == 6 {
			protos[2] = layers.IPProtocolICMPv6
		}
		for _, proto := range protos {
			t.Run(fmt.Sprintf("ipv%d/%v", fam, proto), func(t *testing.T) {
				for i := 0; i < 200; i++ {
					want := randomFrame(t, rng, fam, proto)
					var p Parsed
					if err := Parse(want, &p); err != ErrNone {
						t.Fatal(err)
					}
					// What a CHECKSUM_PARTIAL sender leaves: the folded pseudo-header sum, not complemented
					// (the kernel's ~csum_tcpudp_magic / ~csum_ipv6_magic); ICMP: garbage.
					b := append([]byte(nil), want...)
					off := map[uint8]uint32{ProtoTCP: 16, ProtoUDP: 6, ProtoICMP: 2, ProtoICMPv6: 2}[p.Proto]
					partial := uint16(rng.Intn(65536))
					if p.Proto != ProtoICMP {
						partial = uint16(naivePseudo(&p))
					}
					binary.BigEndian.PutUint16(b[p.L4Off+off:], partial)
					CompleteL4Checksum(b, &p)
					if !bytes.Equal(b, want) {
						g, w := binary.BigEndian.Uint16(b[p.L4Off+off:]), binary.BigEndian.Uint16(want[p.L4Off+off:])
						if !(p.Proto == ProtoUDP && g == 0xffff && w == 0) {
							t.Fatalf("checksum %#x, gopacket computed %#x", g, w)
						}
					}
				}
			})
		}
	}
}

func TestSetEthernet(t *testing.T) {
	b := frameV4TCP(t)
	dst, src := [6]byte{2, 1, 2, 3, 4, 5}, [6]byte{2, 6, 7, 8, 9, 10}
	SetEthernet(b, dst, src)
	if !bytes.Equal(b[:6], dst[:]) || !bytes.Equal(b[6:12], src[:]) {
		t.Errorf("SetEthernet wrote %x, want %x%x", b[:12], dst, src)
	}
	SetEthernet(b[:11], src, dst) // too short: no panic, no write
	if !bytes.Equal(b[:6], dst[:]) {
		t.Errorf("SetEthernet wrote into a frame too short for it")
	}
}

// TestRewriteForeignParsed feeds rewrites a Parsed that does not belong to the frame: no panic.
func TestRewriteForeignParsed(t *testing.T) {
	var big Parsed
	if err := Parse(frameV6TCP(t), &big); err != ErrNone {
		t.Fatal(err)
	}
	small := frameV4UDP(t)[:30]
	RewriteDst(small, &big, big.Dst, 1)
	RewriteSrc(small, &big, big.Src, 1)
	CompleteL4Checksum(small, &big)
	var inner Parsed
	ParseICMPError(small, &big, &inner)
	RewriteInnerSrc(small, &big, &inner, big.Src, 1)
}
