package bpfgen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

// runFanout runs a fanout program the way the kernel does (measured, see FanoutProgram): on the frame
// from the network header, or from the inner tag of a QinQ frame, with skb->protocol as the
// EtherType. The VM has no SKF_AD_PROTOCOL, so instruction 0, the protocol load, is replaced by a
// constant.
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

// TestFanoutSticky: with Stickiness every frame of every connection of a client network (the
// persistence mask) goes to one member, whatever the ports, in both directions and for ICMP errors
// about them; different networks still spread.
func TestFanoutSticky(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")}
	raw, err := FanoutProgramSticky(vips, 4, 0, Stickiness{Sticky: true, Bits4: 24, Bits6: 56})
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
			if n%2 == 0 { // a router on the client side about a reply
				frames = append(frames, frame{src: "198.18.254.1", dst: vip, proto: 1,
					icmp: icmpError(t, 11, frame{src: vip, dst: client, proto: 6, sport: 80, dport: cport}, false)}.build(t))
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
