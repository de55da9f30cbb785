package bpfgen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// runFanout runs a fanout program the way the kernel does (measured, see FanoutProgramSpec): on
// the frame from the network header, or from the inner tag of a QinQ frame, with skb->protocol as
// the EtherType. The VM has no SKF_AD_PROTOCOL, so instruction 0, the protocol load, is replaced by
// a constant.
func runFanout(t testing.TB, raw []bpf.RawInstruction, fr []byte) int {
	t.Helper()
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program does not disassemble")
	}
	if insns[0] != (bpf.LoadExtension{Num: bpf.ExtProto}) {
		t.Fatalf("instruction 0 = %v, want the skb->protocol load", insns[0])
	}
	// The kernel strips the outer tag into metadata; an inner tag stays at the front.
	proto := binary.BigEndian.Uint16(fr[12:])
	data := fr[14:]
	if proto == etherType8021Q || proto == etherType8021AD {
		proto = binary.BigEndian.Uint16(fr[16:])
		data = fr[18:]
	}
	insns[0] = bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(proto)}
	v, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("VM rejects program: %v", err)
	}
	n, err := v.Run(data)
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	return n
}

func TestFanoutSymmetric(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("2001:2::1")}
	r := rand.New(rand.NewPCG(42, 42))
	qinq := []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	for members := 2; members <= 4; members++ {
		t.Run(fmt.Sprintf("members=%d", members), func(t *testing.T) {
			raw, err := FanoutProgram(vips, members)
			if err != nil {
				t.Fatal(err)
			}
			const clients = 3000
			counts := make([]int, members)
			for i := range clients {
				var client, vip, rs string
				if i%2 == 0 {
					client = fmt.Sprintf("198.18.%d.%d", r.IntN(256), 1+r.IntN(254))
					vip, rs = vips[r.IntN(2)].String(), "198.18.255.10"
				} else {
					client = fmt.Sprintf("2001:2:0:%x::%x", r.IntN(1<<16), 1+r.IntN(1<<16-1))
					vip, rs = "2001:2::1", "2001:2:0:ffff::10"
				}
				cport := uint16(1024 + r.IntN(60000))
				proto := []uint8{6, 17}[r.IntN(2)]
				var tags []layers.EthernetType
				if i%7 == 0 {
					tags = qinq
				}
				fwd := frame{src: client, dst: vip, proto: proto, sport: cport, dport: 80, tags: tags, ipv4Opts: i%5 == 0 && i%2 == 0}
				rep := frame{src: rs, dst: client, proto: proto, sport: 8080, dport: cport}
				mf, mr := runFanout(t, raw, fwd.build(t)), runFanout(t, raw, rep.build(t))
				if mf != mr {
					t.Fatalf("client %s:%d: forward to member %d, reply to member %d", client, cport, mf, mr)
				}
				if mf < 0 || mf >= members {
					t.Fatalf("member %d out of range", mf)
				}
				counts[mf]++
			}
			// Reasonably even: every member within 15% of its share.
			for m, c := range counts {
				if share := clients / members; c < share*85/100 || c > share*115/100 {
					t.Errorf("member %d got %d of %d clients, want about %d (counts %v)", m, c, clients, share, counts)
				}
			}
			t.Logf("counts %v", counts)
		})
	}
}

func TestFanoutSpecialFrames(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("198.19.0.1")}
	raw, err := FanoutProgram(vips, 4)
	if err != nil {
		t.Fatal(err)
	}
	fwd := frame{src: "198.18.0.7", dst: "198.19.0.1", proto: 6, sport: 40000, dport: 80}
	t.Run("non-IP to member 0", func(t *testing.T) {
		if m := runFanout(t, raw, arpFrame(t)); m != 0 {
			t.Errorf("ARP to member %d, want 0", m)
		}
	})
	t.Run("malformed to member 0", func(t *testing.T) {
		for name, fr := range map[string][]byte{
			"truncated":    fwd.build(t)[:20],
			"version 5":    patch(fwd.build(t), func(b []byte) []byte { b[14] = 0x55; return b }),
			"IHL 3":        patch(fwd.build(t), func(b []byte) []byte { b[14] = 0x43; return b }),
			"no ports":     fwd.build(t)[:14+20+1],
			"v6 too short": frame{src: "2001:2::7", dst: "2001:2::9", proto: 6, dport: 1}.build(t)[:14+30],
		} {
			if m := runFanout(t, raw, fr); m != 0 {
				t.Errorf("%s: member %d, want 0", name, m)
			}
		}
	})
	t.Run("fragments hash on the address", func(t *testing.T) {
		// A non-first fragment has no ports; both directions still agree on the address-only hash.
		a := runFanout(t, raw, frame{src: "198.18.0.7", dst: "198.19.0.1", proto: 6, sport: 1, dport: 2, fragOffset: 10}.build(t))
		b := runFanout(t, raw, frame{src: "198.18.9.9", dst: "198.18.0.7", proto: 6, sport: 3, dport: 4, fragOffset: 10}.build(t))
		if a != b {
			t.Errorf("fragments: forward %d, reply %d", a, b)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := FanoutProgram(vips, 0); err == nil {
			t.Error("members=0: no error")
		}
		if _, err := FanoutProgram([]netip.Addr{{}}, 2); err == nil {
			t.Error("invalid VIP: no error")
		}
	})
}

// TestFanoutBase checks that a program with a base sends every frame to the same member as the
// program without one, shifted by base: switching sets keeps each flow on its worker.
func TestFanoutBase(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")}
	frames := map[string][]byte{
		"v4":        frame{src: "198.18.0.7", dst: "198.19.0.1", proto: 6, sport: 40000, dport: 80}.build(t),
		"v4 reply":  frame{src: "198.18.9.9", dst: "198.18.0.7", proto: 17, sport: 53, dport: 40001}.build(t),
		"v6":        frame{src: "2001:2::7", dst: "2001:2::1", proto: 17, sport: 1234, dport: 53}.build(t),
		"non-IP":    arpFrame(t),
		"truncated": frame{src: "198.18.0.7", dst: "198.19.0.1", proto: 6, sport: 40000, dport: 80}.build(t)[:20],
	}
	for _, tc := range []struct{ members, base int }{{1, 1}, {2, 2}, {3, 3}, {2, 0}} {
		t.Run(fmt.Sprintf("members=%d,base=%d", tc.members, tc.base), func(t *testing.T) {
			plain, err := FanoutProgram(vips, tc.members)
			if err != nil {
				t.Fatal(err)
			}
			based, err := FanoutProgramBase(vips, tc.members, tc.base)
			if err != nil {
				t.Fatal(err)
			}
			for name, f := range frames {
				p, b := runFanout(t, plain, f), runFanout(t, based, f)
				if name == "truncated" {
					// A load past the end aborts the program with 0, base or not.
					if b != 0 {
						t.Errorf("truncated: member %d, want 0", b)
					}
					continue
				}
				if b != p+tc.base {
					t.Errorf("%s: member %d with base %d, %d without", name, b, tc.base, p)
				}
			}
		})
	}
	if _, err := FanoutProgramBase(vips, 2, 1<<16-1); err == nil {
		t.Error("base past PACKET_FANOUT_MAX: no error")
	}
}

// TestFanoutSticky: with a sticky rule every frame of every connection of a client network (the
// persistence mask) to the service goes to one member, whatever the ports, in both directions and
// for ICMP errors about them; different networks still spread.
func TestFanoutSticky(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")}
	ep := func(addr string, port uint16, bits int) EndpointRule {
		return EndpointRule{Endpoint{netip.MustParseAddr(addr), 6, port}, HashRule{Sticky: true, Bits: bits}}
	}
	raw, err := FanoutProgramSpec(FanoutSpec{
		VIPs:        vips,
		VIPRules:    []EndpointRule{ep("198.19.0.1", 80, 24), ep("2001:2::1", 80, 56)},
		ServerRules: []EndpointRule{ep("198.18.255.10", 8080, 24), ep("2001:2:0:ffff::10", 8080, 56)},
	}, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := FanoutProgram(vips, 4)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	used := map[int]bool{}
	plainSpread := false
	for n := range 200 {
		var network func() string
		vip, rs := "198.19.0.1", "198.18.255.10"
		if n%2 == 0 {
			network = func() string { return fmt.Sprintf("198.18.%d.%d", n, 1+r.IntN(254)) } // a /24
		} else {
			vip, rs = "2001:2::1", "2001:2:0:ffff::10"
			network = func() string { // a /56: the 7th byte varies inside it
				return fmt.Sprintf("2001:2:%x:%x%02x::%x", n, r.IntN(256)>>8, r.IntN(256), 1+r.IntN(1<<16-1))
			}
		}
		member, plainMembers := -1, map[int]bool{}
		for range 8 {
			client, cport := network(), uint16(1024+r.IntN(60000))
			frames := [][]byte{
				frame{src: client, dst: vip, proto: 6, sport: cport, dport: 80}.build(t),
				frame{src: rs, dst: client, proto: 6, sport: 8080, dport: cport}.build(t),
			}
			if n%2 == 0 { // a router on the client side about a reply, the real server about a forwarded packet
				frames = append(frames,
					frame{src: "198.18.254.1", dst: vip, proto: 1,
						icmp: icmpError(t, 11, frame{src: vip, dst: client, proto: 6, sport: 80, dport: cport}, false)}.build(t),
					frame{src: rs, dst: client, proto: 1,
						icmp: icmpError(t, 3, frame{src: client, dst: rs, proto: 6, sport: cport, dport: 8080}, true)}.build(t))
			} else {
				frames = append(frames,
					frame{src: "2001:2:0:fffe::1", dst: vip, proto: 58,
						icmp: icmpError(t, 2, frame{src: vip, dst: client, proto: 6, sport: 80, dport: cport}, false)}.build(t),
					frame{src: rs, dst: client, proto: 58,
						icmp: icmpError(t, 1, frame{src: client, dst: rs, proto: 6, sport: cport, dport: 8080}, true)}.build(t))
			}
			for i, fr := range frames {
				m := runFanout(t, raw, fr)
				if member < 0 {
					member = m
				} else if m != member {
					t.Fatalf("network %d: frame %d of client %s:%d went to member %d, the network's other frames to %d", n, i, client, cport, m, member)
				}
			}
			plainMembers[runFanout(t, plain, frames[0])] = true
		}
		used[member] = true
		if len(plainMembers) > 1 {
			plainSpread = true
		}
	}
	if len(used) != 4 {
		t.Errorf("200 client networks used members %v, want all 4", used)
	}
	if !plainSpread {
		t.Error("the plain program kept every network on one member: the test does not tell the two apart")
	}
}

// TestFanoutRulesPerService: a service's hash rule applies to its own frames only. Beside sticky
// services (a port on a shared VIP, a DR service, a port-0 service), a service without persistence
// (another port of the shared VIP, an exact port under the port-0 service) must see each of its
// frames go where the program without rules sends it, so that making one service persistent, or
// changing its netmask, moves no other service's flows. Each sticky service keeps a client network
// on one member, through both directions and ICMP errors either way.
func TestFanoutRulesPerService(t *testing.T) {
	type svc struct {
		vip       string
		port      uint16
		rs        string // NAT real server (address:port); "" for DR
		sticky    bool
		bits      int
		isV6      bool
		clientNet func(r *rand.Rand, n int) string
	}
	v4net := func(bits int) func(r *rand.Rand, n int) string {
		return func(r *rand.Rand, n int) string {
			switch bits {
			case 24:
				return fmt.Sprintf("198.18.%d.%d", n%256, 1+r.IntN(254))
			case 16:
				return fmt.Sprintf("198.%d.%d.%d", 100+n%100, r.IntN(256), 1+r.IntN(254))
			}
			return fmt.Sprintf("198.18.%d.%d", r.IntN(256), 1+r.IntN(254))
		}
	}
	v6net := func(r *rand.Rand, n int) string {
		return fmt.Sprintf("2001:2:%x:%x::%x", n, r.IntN(1<<16), 1+r.IntN(1<<16-1))
	}
	services := []svc{
		{vip: "198.19.0.1", port: 80, rs: "198.18.255.10:80", clientNet: v4net(0)},
		{vip: "198.19.0.1", port: 8080, rs: "198.18.255.11:8080", sticky: true, bits: 24, clientNet: v4net(24)},
		{vip: "198.19.0.2", port: 443, sticky: true, bits: 16, clientNet: v4net(16)}, // DR
		{vip: "198.19.0.3", port: 0, rs: "198.18.255.12:0", sticky: true, bits: 24, clientNet: v4net(24)},
		{vip: "198.19.0.3", port: 22, rs: "198.18.255.13:22", clientNet: v4net(0)},
		{vip: "2001:2::1", port: 80, rs: "[2001:2:0:ffff::10]:80", isV6: true, clientNet: v6net},
		{vip: "2001:2::1", port: 8080, rs: "[2001:2:0:ffff::11]:8080", sticky: true, bits: 48, isV6: true, clientNet: v6net},
	}
	var spec FanoutSpec
	for _, s := range services {
		vip := netip.MustParseAddr(s.vip)
		if !slices.Contains(spec.VIPs, vip) {
			spec.VIPs = append(spec.VIPs, vip)
		}
		rule := HashRule{Sticky: s.sticky, Bits: s.bits}
		spec.VIPRules = append(spec.VIPRules, EndpointRule{Endpoint{vip, 6, s.port}, rule})
		if s.rs == "" {
			spec.ServerRules = append(spec.ServerRules, EndpointRule{Endpoint{vip, 6, s.port}, rule})
		} else {
			ap := netip.MustParseAddrPort(s.rs)
			spec.ServerRules = append(spec.ServerRules, EndpointRule{Endpoint{ap.Addr(), 6, ap.Port()}, rule})
		}
	}
	const members = 4
	raw, err := FanoutProgramSpec(spec, members, 0)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := FanoutProgram(spec.VIPs, members)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 5))
	for si, s := range services {
		used := map[int]bool{}
		for n := range 64 {
			member := -1
			for range 4 {
				client, cport := s.clientNet(r, n), uint16(1024+r.IntN(60000))
				vport := s.port
				if vport == 0 {
					vport = uint16(1 + r.IntN(60000))
					if vport == 22 {
						vport = 23
					}
				}
				server, sport := s.vip, vport // DR: the real server holds the VIP
				if s.rs != "" {
					ap := netip.MustParseAddrPort(s.rs)
					server, sport = ap.Addr().String(), ap.Port()
					if sport == 0 {
						sport = vport
					}
				}
				icmp, router, tUnreach, tExceeded := uint8(1), "198.18.254.1", uint8(3), uint8(11)
				if s.isV6 {
					icmp, router, tUnreach, tExceeded = 58, "2001:2:0:fffe::1", 1, 3
				}
				frames := [][]byte{
					frame{src: client, dst: s.vip, proto: 6, sport: cport, dport: vport}.build(t),
					// A router on the client side about a reply from the VIP.
					frame{src: router, dst: s.vip, proto: icmp,
						icmp: icmpError(t, tExceeded, frame{src: s.vip, dst: client, proto: 6, sport: vport, dport: cport}, false)}.build(t),
					// The server side about a forwarded packet.
					frame{src: router, dst: client, proto: icmp,
						icmp: icmpError(t, tUnreach, frame{src: client, dst: server, proto: 6, sport: cport, dport: sport}, true)}.build(t),
				}
				if s.rs != "" {
					frames = append(frames, frame{src: server, dst: client, proto: 6, sport: sport, dport: cport}.build(t))
				}
				first := runFanout(t, raw, frames[0])
				for i, fr := range frames {
					m := runFanout(t, raw, fr)
					if m != first {
						t.Fatalf("service %d: frame %d of client %s:%d went to member %d, its forward frame to %d", si, i, client, cport, m, first)
					}
					if p := runFanout(t, plain, fr); !s.sticky && m != p {
						t.Fatalf("service %d (no persistence): frame %d of client %s:%d went to member %d, without rules to %d: another service's rule moved it", si, i, client, cport, m, p)
					}
				}
				if s.sticky {
					if member >= 0 && first != member {
						t.Fatalf("service %d: client %s went to member %d, others of its /%d to %d", si, client, first, s.bits, member)
					}
					member = first
				}
				used[first] = true
			}
		}
		if len(used) < members {
			t.Errorf("service %d: clients used members %v, want all %d", si, used, members)
		}
	}
	// Rules that are not sticky and shadow no sticky port-0 rule add nothing to the program.
	var loose FanoutSpec
	loose.VIPs = spec.VIPs
	for _, r := range spec.VIPRules {
		if !r.Rule.Sticky && r.Port != 22 {
			loose.VIPRules = append(loose.VIPRules, r)
		}
	}
	same, err := FanoutProgramSpec(loose, members, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(same, plain) {
		t.Errorf("rules without persistence changed the program (%d instructions, %d without)", len(same), len(plain))
	}
	t.Logf("program: %d instructions with rules, %d without", len(raw), len(plain))
}

func TestFanoutRuleErrors(t *testing.T) {
	vip := netip.MustParseAddr("198.19.0.1")
	sticky := HashRule{Sticky: true, Bits: 24}
	for name, spec := range map[string]FanoutSpec{
		"rule for no VIP":   {VIPs: []netip.Addr{vip}, VIPRules: []EndpointRule{{Endpoint{netip.MustParseAddr("198.19.0.2"), 6, 80}, sticky}}},
		"no ports":          {VIPs: []netip.Addr{vip}, VIPRules: []EndpointRule{{Endpoint{vip, 1, 0}, sticky}}},
		"prefix too long":   {VIPs: []netip.Addr{vip}, VIPRules: []EndpointRule{{Endpoint{vip, 6, 80}, HashRule{Sticky: true, Bits: 33}}}},
		"no address":        {VIPs: []netip.Addr{vip}, ServerRules: []EndpointRule{{Endpoint{netip.Addr{}, 6, 80}, sticky}}},
		"conflicting rules": {VIPs: []netip.Addr{vip}, ServerRules: []EndpointRule{{Endpoint{vip, 6, 80}, sticky}, {Endpoint{vip, 6, 80}, HashRule{}}}},
	} {
		if _, err := FanoutProgramSpec(spec, 2, 0); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
