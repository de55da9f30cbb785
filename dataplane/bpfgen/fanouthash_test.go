package bpfgen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestFanoutMemberMatchesProgram: the Go hash picks the member the fanout program picks, for
// forward frames and NAT replies, with and without a sticky rule, IPv4 and IPv6.
func TestFanoutMemberMatchesProgram(t *testing.T) {
	vip4, vip6 := netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")
	sticky := HashRule{Sticky: true, Bits: 24}
	sticky6 := HashRule{Sticky: true, Bits: 56}
	spec := FanoutSpec{
		VIPs: []netip.Addr{vip4, vip6},
		VIPRules: []EndpointRule{
			{Endpoint{vip4, 6, 443}, sticky},
			{Endpoint{vip6, 6, 443}, sticky6},
		},
	}
	r := rand.New(rand.NewPCG(7, 7))
	for _, members := range []int{2, 3, 5} {
		raw, err := FanoutProgramSpec(spec, members, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			var client, vip string
			var rule HashRule
			if i%2 == 0 {
				client, vip = fmt.Sprintf("198.18.%d.%d", r.IntN(256), 1+r.IntN(254)), vip4.String()
			} else {
				client, vip = fmt.Sprintf("2001:2:0:%x::%x", r.IntN(1<<16), 1+r.IntN(1<<16-1)), vip6.String()
			}
			dport := []uint16{80, 443}[r.IntN(2)]
			proto := []uint8{6, 17}[r.IntN(2)]
			if dport == 443 && proto == 6 {
				rule = sticky
				if i%2 == 1 {
					rule = sticky6
				}
			}
			cport := uint16(1024 + r.IntN(60000))
			f := frame{src: client, dst: vip, proto: proto, sport: cport, dport: dport}
			want := runFanout(t, raw, f.build(t))
			if got := FanoutMember(netip.MustParseAddr(client), cport, proto, rule, members); got != want {
				t.Fatalf("members %d, %s:%d → %s:%d/%d: FanoutMember = %d, program = %d", members, client, cport, vip, dport, proto, got, want)
			}
		}
	}
}
