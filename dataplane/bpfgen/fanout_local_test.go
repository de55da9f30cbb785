package bpfgen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

// TestFanoutLocalPorts checks that FullNAT replies (real server → local address) and ICMP errors
// about FullNAT connections (quoting local address → real server) reach member local port mod
// members, with IPv4 options, QinQ and sticky rules beside them, while the client's frames to the
// VIP still hash by the client; and that fragments and port-less frames to a local address hash as
// before (no crash, a member in range).
func TestFanoutLocalPorts(t *testing.T) {
	vip4, vip6 := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:2::100")
	spec := FanoutSpec{
		VIPs:     []netip.Addr{vip4, vip6},
		VIPRules: []EndpointRule{{Endpoint: Endpoint{Addr: vip4, Proto: 6, Port: 443}, Rule: HashRule{Sticky: true, Bits: 24}}},
		Locals: []netip.Addr{netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3"),
			netip.MustParseAddr("2001:2:0:1::2")},
	}
	r := rand.New(rand.NewPCG(3, 5))
	qinq := []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	for _, members := range []int{1, 2, 3, 4} {
		for _, base := range []int{0, members} {
			t.Run(fmt.Sprintf("members=%d/base=%d", members, base), func(t *testing.T) {
				raw, err := FanoutProgramSpec(spec, members, base)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 2000 {
					v6 := i%2 == 1
					local, rs, icmp, typ := []string{"198.19.0.2", "198.19.0.3"}[r.IntN(2)], "198.19.0.11", uint8(1), uint8(3)
					if v6 {
						local, rs, icmp, typ = "2001:2:0:1::2", "2001:2:0:1::11", 58, 1
					}
					lport, rport := uint16(1024+r.IntN(64512)), uint16(1+r.IntN(65535))
					proto := []uint8{6, 17}[r.IntN(2)]
					var tags []layers.EthernetType
					if r.IntN(4) == 0 {
						tags = qinq
					}
					opt := !v6 && r.IntN(2) == 0
					want := base + LocalMember(lport, members)
					reply := frame{src: rs, dst: local, proto: proto, sport: rport, dport: lport, tags: tags, ipv4Opts: opt}
					if got := runFanout(t, raw, reply.build(t)); got != want {
						t.Fatalf("reply %s:%d -> %s:%d: member %d, want %d", rs, rport, local, lport, got, want)
					}
					aboutFwd := frame{src: rs, dst: local, proto: icmp, tags: tags, ipv4Opts: opt,
						icmp: icmpError(t, typ, frame{src: local, dst: rs, proto: proto, sport: lport, dport: rport, ipv4Opts: !opt && !v6}, r.IntN(2) == 0)}
					if got := runFanout(t, raw, aboutFwd.build(t)); got != want {
						t.Fatalf("ICMP error quoting %s:%d -> %s:%d: member %d, want %d", local, lport, rs, rport, got, want)
					}
					frag := reply
					frag.fragOffset = 100
					if v6 {
						frag = frame{src: rs, dst: local, proto: icmp}
					}
					if got := runFanout(t, raw, frag.build(t)); got < base || got >= base+members {
						t.Fatalf("fragment or echo to %s: member %d, out of [%d, %d)", local, got, base, base+members)
					}
				}
			})
		}
	}
	if _, err := FanoutProgramSpec(FanoutSpec{VIPs: []netip.Addr{vip4}, Locals: []netip.Addr{vip4}}, 2, 0); err == nil {
		t.Error("a local address that is a VIP too: no error")
	}
}
