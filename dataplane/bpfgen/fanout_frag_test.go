package bpfgen

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/govs/govs/dataplane/dataplanetest"
)

// TestFanoutFragmentsTogether: every fragment of a datagram, the first (which has ports) and the
// later ones, IPv4 and IPv6, to a VIP and in a NAT reply, reaches the same member, and without a
// sticky rule the one FanoutMember gives the client address without ports: the data plane's
// fragment handling (dataplane/frags.go) relies on both, handing a datagram over from the member
// that gets its fragments to the member that gets its flow.
func TestFanoutFragmentsTogether(t *testing.T) {
	vip4, vip6 := netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")
	rs4, rs6 := netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr("2001:2:0:2::1")
	sticky := HashRule{Sticky: true, Bits: 24}
	specs := map[string]FanoutSpec{
		"plain": {VIPs: []netip.Addr{vip4, vip6}},
		"rules": {VIPs: []netip.Addr{vip4, vip6},
			VIPRules:    []EndpointRule{{Endpoint{vip4, 17, 0}, sticky}, {Endpoint{vip6, 17, 53}, HashRule{Sticky: true, Bits: 48}}},
			ServerRules: []EndpointRule{{Endpoint{rs4, 17, 0}, sticky}, {Endpoint{rs6, 17, 5353}, HashRule{Sticky: true, Bits: 48}}}},
	}
	for name, spec := range specs {
		for members := 2; members <= 5; members++ {
			t.Run(fmt.Sprintf("%s/members=%d", name, members), func(t *testing.T) {
				raw, err := FanoutProgramSpec(spec, members, 0)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 200 {
					for _, c := range []struct {
						client  string
						vip, rs netip.Addr
						vp, rp  uint16
					}{
						{fmt.Sprintf("198.18.%d.%d", i%7, i), vip4, rs4, 53, 5353},
						{fmt.Sprintf("2001:2:0:%x::%x", i%5, i), vip6, rs6, 53, 5353},
					} {
						cport := uint16(10000 + 37*i)
						fwd := frame{src: c.client, dst: c.vip.String(), proto: 17, sport: cport, dport: c.vp}.build(t)
						rep := frame{src: c.rs.String(), dst: c.client, proto: 17, sport: c.rp, dport: cport}.build(t)
						want := -1
						for dir, fr := range [][]byte{fwd, rep} {
							fr = append(fr, make([]byte, 2500)...)
							for k, f := range dataplanetest.Fragment(fr, 1280, uint32(i)) {
								got := runFanout(t, raw, f)
								if want < 0 {
									want = got
								}
								if got != want {
									t.Fatalf("%s dir %d fragment %d: member %d, the datagram's others %d", c.client, dir, k, got, want)
								}
							}
						}
						if name == "plain" {
							if m := FanoutMember(netip.MustParseAddr(c.client), 0, 0, HashRule{}, members); m != want {
								t.Fatalf("%s: fragments to member %d, FanoutMember by address %d", c.client, want, m)
							}
						}
					}
				}
			})
		}
	}
}
