package bpfgen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

// TestFanoutICMPErrors checks that ICMP errors about a NAT connection reach the member its frames
// reach: an error from a router on the client side about a reply (outer router → VIP, quoting
// VIP → client) and one from the real server about a forwarded packet (outer RS → client, quoting
// client → RS), with and without IPv4 options at either level, QinQ, full and minimal quotes.
func TestFanoutICMPErrors(t *testing.T) {
	vips := []netip.Addr{
		netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.7.9"),
		netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2:0:9::1"),
	}
	r := rand.New(rand.NewPCG(7, 11))
	qinq := []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	for members := 2; members <= 4; members++ {
		for _, fam := range []string{"ipv4", "ipv6"} {
			t.Run(fmt.Sprintf("%s/members=%d", fam, members), func(t *testing.T) {
				raw, err := FanoutProgram(vips, members)
				if err != nil {
					t.Fatal(err)
				}
				const clients = 1500
				counts := make([]int, members)
				for range clients {
					var client, vip, rs, router string
					var types []uint8
					if fam == "ipv4" {
						client = fmt.Sprintf("198.18.%d.%d", r.IntN(256), 1+r.IntN(254))
						vip, rs, router = vips[r.IntN(3)].String(), "198.18.255.10", "198.18.254.1"
						types = []uint8{3, 11, 12}
					} else {
						client = fmt.Sprintf("2001:2:0:%x::%x", r.IntN(1<<16), 1+r.IntN(1<<16-1))
						vip, rs, router = vips[3+r.IntN(3)].String(), "2001:2:0:ffff::10", "2001:2:0:fffe::1"
						types = []uint8{1, 2, 3, 4}
					}
					icmp := uint8(1)
					if fam == "ipv6" {
						icmp = 58
					}
					cport, vport, rport := uint16(1024+r.IntN(60000)), uint16(1+r.IntN(1000)), uint16(1+r.IntN(65535))
					proto := []uint8{6, 17}[r.IntN(2)]
					opt := func() bool { return fam == "ipv4" && r.IntN(2) == 0 }
					var tags []layers.EthernetType
					if r.IntN(5) == 0 {
						tags = qinq
					}
					fwd := frame{src: client, dst: vip, proto: proto, sport: cport, dport: vport, tags: tags, ipv4Opts: opt()}
					rep := frame{src: rs, dst: client, proto: proto, sport: rport, dport: cport, ipv4Opts: opt()}
					aboutReply := frame{src: router, dst: vip, proto: icmp, tags: tags, ipv4Opts: opt(),
						icmp: icmpError(t, types[r.IntN(len(types))], frame{src: vip, dst: client, proto: proto, sport: vport, dport: cport, ipv4Opts: opt()}, r.IntN(2) == 0)}
					aboutFwd := frame{src: rs, dst: client, proto: icmp, ipv4Opts: opt(),
						icmp: icmpError(t, types[r.IntN(len(types))], frame{src: client, dst: rs, proto: proto, sport: cport, dport: rport, ipv4Opts: opt()}, r.IntN(2) == 0)}
					m := runFanout(t, raw, fwd.build(t))
					for name, f := range map[string]frame{"reply": rep, "error about the reply": aboutReply, "error about a forwarded packet": aboutFwd} {
						if got := runFanout(t, raw, f.build(t)); got != m {
							t.Fatalf("client [%s]:%d proto %d: forward frame to member %d, %s to member %d", client, cport, proto, m, name, got)
						}
					}
					counts[m]++
				}
				for m, c := range counts {
					if share := clients / members; c < share*80/100 || c > share*120/100 {
						t.Errorf("member %d got %d of %d clients, want about %d (counts %v)", m, c, clients, share, counts)
					}
				}
			})
		}
	}
}

// TestFanoutICMPFallback checks the ICMP messages the program does not look into: they go where
// the same frame would go as an echo request (hashed on its client-side address), and truncated
// errors go to member 0.
func TestFanoutICMPFallback(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")}
	raw, err := FanoutProgram(vips, 4)
	if err != nil {
		t.Fatal(err)
	}
	const (
		router4, vip4, client4 = "198.18.254.1", "198.19.0.1", "198.18.3.4"
		router6, vip6, client6 = "2001:2:0:fffe::1", "2001:2::1", "2001:2:0:3::4"
	)
	reply4 := frame{src: vip4, dst: client4, proto: 17, sport: 53, dport: 40000}
	reply6 := frame{src: vip6, dst: client6, proto: 17, sport: 53, dport: 40000}
	badIHL := icmpError(t, 3, reply4, false)
	badIHL[8] = 0x44
	for _, tc := range []struct {
		name string
		f    frame
	}{
		{"redirect", frame{src: router4, dst: vip4, proto: 1, icmp: icmpError(t, 5, reply4, false)}},
		{"echo reply", frame{src: router4, dst: vip4, proto: 1, icmp: []byte{0, 0, 0, 0, 0, 1, 0, 1, 'x'}}},
		{"quote of IPv6 in ICMP", frame{src: router4, dst: vip4, proto: 1, icmp: icmpError(t, 3, reply6, false)}},
		{"quote with IHL 4", frame{src: router4, dst: vip4, proto: 1, icmp: badIHL}},
		// 14+20+8 bytes: Ethernet padding follows, which the program sees (packet taps run before
		// the IP layer trims it) and reads as IP version 0.
		{"no quote, padded", frame{src: router4, dst: vip4, proto: 1, icmp: []byte{3, 0, 0, 0, 0, 0, 0, 0}}},
		{"non-first fragment", frame{src: router4, dst: vip4, proto: 1, fragOffset: 3, icmp: icmpError(t, 3, reply4, false)}},
		{"ICMPv6 echo reply", frame{src: router6, dst: vip6, proto: 58, icmp: []byte{129, 0, 0, 0, 0, 1, 0, 1, 'x'}}},
		{"ICMPv6 informational 137", frame{src: router6, dst: vip6, proto: 58, icmp: icmpError(t, 137, reply6, false)}},
		{"ICMPv6 quote with hop-by-hop", frame{src: router6, dst: vip6, proto: 58, icmp: icmpError(t, 1, frame{src: vip6, dst: client6, proto: 17, sport: 53, dport: 40000, hopByHop: true}, false)}},
		{"ICMPv6 behind hop-by-hop", frame{src: router6, dst: vip6, proto: 58, hopByHop: true, icmp: icmpError(t, 1, reply6, false)}},
		{"ICMPv6 quote of IPv4", frame{src: router6, dst: vip6, proto: 58, icmp: icmpError(t, 1, reply4, false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := tc.f
			echo.icmp = nil
			want := runFanout(t, raw, echo.build(t))
			if got := runFanout(t, raw, tc.f.build(t)); got != want {
				t.Errorf("member %d, want %d as for an echo request between the same addresses", got, want)
			}
		})
	}
	// Across the clients, some fallback must differ from the connection's member, or the cases
	// above would pass by accident.
	t.Run("fallback differs from the connection", func(t *testing.T) {
		differ := 0
		for i := range 64 {
			c := fmt.Sprintf("198.18.3.%d", i+1)
			fwd := runFanout(t, raw, frame{src: c, dst: vip4, proto: 17, sport: 40000, dport: 53}.build(t))
			fb := runFanout(t, raw, frame{src: router4, dst: vip4, proto: 1, icmp: icmpError(t, 5, frame{src: vip4, dst: c, proto: 17, sport: 53, dport: 40000}, false)}.build(t))
			if fwd != fb {
				differ++
			}
		}
		if differ == 0 {
			t.Error("every redirect went to its connection's member: the fallback cases prove nothing")
		}
	})
	t.Run("quoted fragment hashes the client address", func(t *testing.T) {
		for i := range 32 {
			c := fmt.Sprintf("198.18.3.%d", i+1)
			fwd := runFanout(t, raw, frame{src: c, dst: vip4, proto: 17, sport: 1, dport: 53, fragOffset: 10}.build(t))
			q := frame{src: vip4, dst: c, proto: 17, sport: 53, dport: 40000, fragOffset: 10}
			if got := runFanout(t, raw, frame{src: router4, dst: vip4, proto: 1, icmp: icmpError(t, 11, q, false)}.build(t)); got != fwd {
				t.Errorf("client %s: error about a fragment to member %d, fragments to %d", c, got, fwd)
			}
		}
	})
	t.Run("truncated to member 0", func(t *testing.T) {
		for name, f := range map[string]frame{
			"v4 quote cut in the IP header": {src: router4, dst: vip4, proto: 1, icmp: icmpError(t, 3, reply4, false)[:8+12]},
			"v4 ports cut":                  {src: router4, dst: vip4, proto: 1, icmp: icmpError(t, 3, reply4, false)[:8+20+2]},
			"v6 quote cut in the header":    {src: router6, dst: vip6, proto: 58, icmp: icmpError(t, 1, reply6, false)[:8+30]},
			"v6 ports cut":                  {src: router6, dst: vip6, proto: 58, icmp: icmpError(t, 1, reply6, false)[:8+40+2]},
		} {
			if m := runFanout(t, raw, f.build(t)); m != 0 {
				t.Errorf("%s: member %d, want 0", name, m)
			}
		}
	})
}

// TestFanoutManyVIPs checks that the VIP compare tree is emitted once per family, ICMP errors
// included: a further IPv4 VIP costs one compare, or three where the compare's jump is too far for
// an 8-bit skip and is widened (most of them in a long tree), never a second tree's worth.
func TestFanoutManyVIPs(t *testing.T) {
	vips := func(n4, n6 int) []netip.Addr {
		var out []netip.Addr
		for i := range n4 {
			out = append(out, netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}))
		}
		for i := range n6 {
			out = append(out, netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 14: byte(i >> 8), 15: byte(i)}))
		}
		return out
	}
	small, err := FanoutProgram(vips(10, 10), 2)
	if err != nil {
		t.Fatal(err)
	}
	big, err := FanoutProgram(vips(1010, 10), 2)
	if err != nil {
		t.Fatal(err)
	}
	if d := len(big) - len(small); d > 3*1000 {
		t.Errorf("1000 more IPv4 VIPs cost %d instructions, want at most 3000", d)
	}
	if _, err := FanoutProgram(vips(1200, 100), 2); err != nil {
		t.Errorf("1200 IPv4 and 100 IPv6 VIPs: %v", err)
	}
	t.Logf("program with 20 VIPs: %d instructions; with 1020: %d", len(small), len(big))
	all := vips(1200, 100)
	raw, err := FanoutProgram(all, 3)
	if err != nil {
		t.Fatal(err)
	}
	// An error about a connection with one of many VIPs still follows the connection.
	for i := range 200 {
		vip := all[i*11%len(all)]
		client, router := fmt.Sprintf("198.18.1.%d", i+1), "198.18.254.1"
		if vip.Is6() {
			client, router = fmt.Sprintf("2001:2:0:1::%x", i+1), "2001:2:0:fffe::1"
		}
		icmp, typ := uint8(1), uint8(3)
		if vip.Is6() {
			icmp, typ = 58, 1
		}
		fwd := runFanout(t, raw, frame{src: client, dst: vip.String(), proto: 6, sport: uint16(2000 + i), dport: 443}.build(t))
		q := frame{src: vip.String(), dst: client, proto: 6, sport: 443, dport: uint16(2000 + i)}
		if got := runFanout(t, raw, frame{src: router, dst: vip.String(), proto: icmp, icmp: icmpError(t, typ, q, true)}.build(t)); got != fwd {
			t.Fatalf("VIP %v client %s: forward to member %d, error about the reply to %d", vip, client, fwd, got)
		}
	}
}
