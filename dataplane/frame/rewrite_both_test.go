package frame

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"

	"github.com/google/gopacket/layers"
)

// TestRewriteFastBoth checks RewriteFastBoth against its reference, RewriteFast of the destination
// and then of the source, on random TCP and UDP frames (IPv4 and IPv6, an IPv4 UDP frame without
// checksum, no-op rewrites): the same bytes, the same Parsed. Frames RewriteFast declines (ICMP,
// IP options, fragments) it declines too, changing nothing.
func TestRewriteFastBoth(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, fam := range []int{4, 6} {
		for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4} {
			if fam == 6 && proto == layers.IPProtocolICMPv4 {
				proto = layers.IPProtocolICMPv6
			}
			t.Run(fmt.Sprintf("ipv%d/%v", fam, proto), func(t *testing.T) {
				for i := range 300 {
					b := randomFrame(t, rng, fam, proto)
					var p Parsed
					if err := Parse(b, &p); err != ErrNone {
						t.Fatalf("Parse(random frame) = %v", err)
					}
					if fam == 4 && proto == layers.IPProtocolUDP && i%7 == 0 {
						b[p.L4Off+6], b[p.L4Off+7] = 0, 0 // no checksum: stays none
					}
					src, dst := mapped(randAddr(rng, fam)), mapped(randAddr(rng, fam))
					sport, dport := uint16(rng.Intn(65536)), uint16(rng.Intn(65536))
					if i%10 == 0 {
						src, sport = p.Src, p.SrcPort
					}
					ref, rp := bytes.Clone(b), p
					refOK := RewriteFast(ref, &rp, true, &dst, dport)
					if refOK && !RewriteFast(ref, &rp, false, &src, sport) {
						t.Fatal("RewriteFast took the destination and declined the source")
					}
					orig := bytes.Clone(b)
					if ok := RewriteFastBoth(b, &p, &src, sport, &dst, dport); ok != refOK {
						t.Fatalf("RewriteFastBoth = %v, RewriteFast = %v", ok, refOK)
					} else if !ok && !bytes.Equal(b, orig) {
						t.Fatal("RewriteFastBoth declined and changed the frame")
					}
					if !bytes.Equal(b, ref) || p != rp {
						t.Fatalf("RewriteFastBoth differs from two RewriteFast:\n got %x %+v\nwant %x %+v", b, p, ref, rp)
					}
				}
			})
		}
	}
}
