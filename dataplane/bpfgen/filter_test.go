package bpfgen

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

func ep(addr string, proto uint8, port uint16) Endpoint {
	return Endpoint{Addr: netip.MustParseAddr(addr), Proto: proto, Port: port}
}

var testSpec = FilterSpec{
	VIPs: []Endpoint{
		ep("198.19.0.1", 6, 80), ep("198.19.0.1", 6, 443),
		ep("198.19.0.2", 17, 0), // any UDP port
		ep("198.19.0.3", 0, 0),  // any protocol
		ep("2001:2::1", 6, 443),
		ep("2001:2::1:1", 17, 53),
	},
	RealServers: []Endpoint{
		ep("198.18.1.10", 6, 8080),
		ep("2001:2:0:1::10", 6, 8443),
	},
	ICMPTo: []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:2::fe")},
	// This host's addresses: real servers' replies to them are the host's own (health checks).
	NotTo: []netip.Addr{
		netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"),
		netip.MustParseAddr("198.19.0.3"), netip.MustParseAddr("2001:2::fe"),
	},
}

func vm(t testing.TB, raw []bpf.RawInstruction) *bpf.VM {
	t.Helper()
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program does not disassemble")
	}
	v, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("VM rejects program: %v", err)
	}
	return v
}

// filterCase is a frame and whether testSpec's filter accepts it.
type filterCase struct {
	name   string
	frame  []byte
	accept bool
}

// filterCases are the frames TestSocketFilter runs through testSpec's filter in the classic BPF
// VM, and TestSocketFilterAsXDP through the same filter compiled to eBPF in the kernel.
func filterCases(t *testing.T) []filterCase {
	tcp4 := frame{src: "198.18.0.100", dst: "198.19.0.1", proto: 6, sport: 40000, dport: 80}
	qinq := []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}
	dot1q := []layers.EthernetType{layers.EthernetTypeDot1Q}
	with := func(f frame, fn func(*frame)) frame { fn(&f); return f }
	return []filterCase{
		{"tcp to VIP port", tcp4.build(t), true},
		{"tcp to second VIP port", with(tcp4, func(f *frame) { f.dport = 443 }).build(t), true},
		{"tcp to other VIP port", with(tcp4, func(f *frame) { f.dport = 81 }).build(t), false},
		{"udp to tcp-only VIP port", with(tcp4, func(f *frame) { f.proto = 17 }).build(t), false},
		{"icmp to VIP address", with(tcp4, func(f *frame) { f.proto = 1 }).build(t), true},
		{"udp any port", with(tcp4, func(f *frame) { f.dst, f.proto, f.dport = "198.19.0.2", 17, 9999 }).build(t), true},
		{"any protocol VIP", with(tcp4, func(f *frame) { f.dst, f.dport = "198.19.0.3", 1 }).build(t), true},
		{"other host", with(tcp4, func(f *frame) { f.dst = "198.19.0.99" }).build(t), false},
		{"802.1Q tagged", with(tcp4, func(f *frame) { f.tags = dot1q }).build(t), true},
		{"802.1Q tagged other port", with(tcp4, func(f *frame) { f.tags, f.dport = dot1q, 81 }).build(t), false},
		{"QinQ tagged", with(tcp4, func(f *frame) { f.tags = qinq }).build(t), true},
		{"QinQ tagged other host", with(tcp4, func(f *frame) { f.tags, f.dst = qinq, "198.19.0.99" }).build(t), false},
		{"ipv4 options", with(tcp4, func(f *frame) { f.ipv4Opts = true }).build(t), true},
		{"ipv4 options other port", with(tcp4, func(f *frame) { f.ipv4Opts, f.dport = true, 81 }).build(t), false},
		{"ipv4 options QinQ", with(tcp4, func(f *frame) { f.ipv4Opts, f.tags = true, qinq }).build(t), true},
		{"non-first fragment to VIP address", with(tcp4, func(f *frame) { f.dport, f.fragOffset = 81, 100 }).build(t), true},
		{"RS reply", frame{src: "198.18.1.10", dst: "198.18.0.100", proto: 6, sport: 8080, dport: 40000}.build(t), true},
		{"RS reply tagged", frame{src: "198.18.1.10", dst: "198.18.0.100", proto: 6, sport: 8080, dport: 40000, tags: qinq}.build(t), true},
		{"RS other port", frame{src: "198.18.1.10", dst: "198.18.0.100", proto: 6, sport: 22, dport: 40000}.build(t), false},
		{"RS icmp", frame{src: "198.18.1.10", dst: "198.18.0.100", proto: 1}.build(t), true},
		{"RS port as destination", frame{src: "198.18.0.100", dst: "198.18.1.10", proto: 6, sport: 40000, dport: 8080}.build(t), false},
		{"v6 VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, sport: 40000, dport: 443}.build(t), true},
		{"v6 VIP tagged", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, sport: 40000, dport: 443, tags: dot1q}.build(t), true},
		{"v6 VIP other port", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, sport: 40000, dport: 444}.build(t), false},
		{"v6 second VIP", frame{src: "2001:2::100", dst: "2001:2::1:1", proto: 17, sport: 40000, dport: 53}.build(t), true},
		{"v6 second VIP wrong proto", frame{src: "2001:2::100", dst: "2001:2::1:1", proto: 6, sport: 40000, dport: 53}.build(t), false},
		{"v6 shares 3 words with VIP", frame{src: "2001:2::100", dst: "2001:2::2", proto: 6, sport: 40000, dport: 443}.build(t), false},
		{"v6 icmpv6 to VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 58}.build(t), true},
		{"v6 hop-by-hop to VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, sport: 1, dport: 9, hopByHop: true}.build(t), true},
		{"v6 hop-by-hop to other", frame{src: "2001:2::100", dst: "2001:2::9", proto: 6, sport: 1, dport: 443, hopByHop: true}.build(t), false},
		{"v6 RS reply", frame{src: "2001:2:0:1::10", dst: "2001:2::100", proto: 6, sport: 8443, dport: 40000}.build(t), true},
		{"v6 RS other port", frame{src: "2001:2:0:1::10", dst: "2001:2::100", proto: 6, sport: 8444, dport: 40000}.build(t), false},
		{"icmp to a tunnel source", frame{src: "198.18.2.1", dst: "198.18.0.1", proto: 1}.build(t), true},
		{"tcp to a tunnel source", frame{src: "198.18.2.1", dst: "198.18.0.1", proto: 6, sport: 22, dport: 40000}.build(t), false},
		{"udp to a tunnel source", frame{src: "198.18.2.1", dst: "198.18.0.1", proto: 17, sport: 53, dport: 40000}.build(t), false},
		{"v6 icmpv6 to a tunnel source", frame{src: "2001:2:0:2::1", dst: "2001:2::fe", proto: 58}.build(t), true},
		{"v6 tcp to a tunnel source", frame{src: "2001:2:0:2::1", dst: "2001:2::fe", proto: 6, sport: 22, dport: 40000}.build(t), false},
		{"ARP", arpFrame(t), false},
		{"unknown EtherType", patch(tcp4.build(t), func(b []byte) []byte { return setU16(b, 12, 0x88cc) }), false},
		{"malformed: runt", []byte{1, 2, 3}, true},
		{"malformed: ethernet only", tcp4.build(t)[:14], true},
		{"malformed: truncated IPv4", tcp4.build(t)[:30], true},
		{"malformed: truncated tag", with(tcp4, func(f *frame) { f.tags = qinq }).build(t)[:20], true},
		{"malformed: IPv4 version 5", patch(tcp4.build(t), func(b []byte) []byte { b[14] = 0x55; return b }), true},
		{"malformed: IHL 3", patch(tcp4.build(t), func(b []byte) []byte { b[14] = 0x43; return b }), true},
		{"malformed: VIP with no room for ports", tcp4.build(t)[:14+20+2], true},
		{"truncated other host is dropped", with(tcp4, func(f *frame) { f.dst = "198.19.0.99" }).build(t)[:14+20+2], false},
		{"malformed: truncated IPv6", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, dport: 443}.build(t)[:50], true},
		{"malformed: IPv6 version 4", patch(frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, dport: 443}.build(t), func(b []byte) []byte { b[14] = 0x40; return b }), true},
		{"malformed: v6 VIP with no room for ports", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, dport: 443}.build(t)[:14+40+3], true},
		{"RS reply to a host address", frame{src: "198.18.1.10", dst: "198.18.0.1", proto: 6, sport: 8080, dport: 40000}.build(t), false},
		{"RS reply to another host address", frame{src: "198.18.1.10", dst: "198.18.0.2", proto: 6, sport: 8080, dport: 40000}.build(t), false},
		{"RS icmp to a host address", frame{src: "198.18.1.10", dst: "198.18.0.2", proto: 1}.build(t), false},
		{"v6 RS reply to a host address", frame{src: "2001:2:0:1::10", dst: "2001:2::fe", proto: 6, sport: 8443, dport: 40000}.build(t), false},
		{"VIP that is also a host address", with(tcp4, func(f *frame) { f.dst = "198.19.0.3" }).build(t), true},
	}
}

// ndSpec is testSpec as an XDP program has it: no ICMPTo, neighbour discovery left to the kernel.
func ndSpec() FilterSpec {
	s := testSpec
	s.ICMPTo, s.KernelND = nil, true
	return s
}

// ndCases are ICMPv6 frames that ndSpec's filter takes (errors, echo) or leaves to the kernel
// (neighbour discovery, MLD), with what testSpec's filter, which takes them all, says.
func ndCases(t *testing.T) (cases []filterCase, withoutKernelND []bool) {
	msg := func(typ byte) []byte {
		return []byte{typ, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	}
	for _, c := range []struct {
		name     string
		f        frame
		accept   bool
		fullSpec bool
	}{
		{"NS from a real server to a solicited-node address", frame{src: "2001:2:0:1::10", dst: "ff02::1:ff00:1", proto: 58, icmp: msg(135)}, false, true},
		{"NS to a VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 58, icmp: msg(135)}, false, true},
		{"NA to a VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 58, icmp: msg(136)}, false, true},
		{"RA from a real server", frame{src: "2001:2:0:1::10", dst: "ff02::1", proto: 58, icmp: msg(134)}, false, true},
		{"MLDv2 report from a real server", frame{src: "2001:2:0:1::10", dst: "ff02::16", proto: 58, icmp: msg(143)}, false, true},
		{"echo request to a VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 58, icmp: msg(128)}, true, true},
		{"unreachable from a real server", frame{src: "2001:2:0:1::10", dst: "2001:2::100", proto: 58, icmp: msg(1)}, true, true},
		{"packet too big to a VIP", frame{src: "2001:2::100", dst: "2001:2::1", proto: 58, icmp: msg(2)}, true, true},
		{"tcp to a VIP port", frame{src: "2001:2::100", dst: "2001:2::1", proto: 6, sport: 40000, dport: 443}, true, true},
	} {
		cases = append(cases, filterCase{c.name, c.f.build(t), c.accept})
		withoutKernelND = append(withoutKernelND, c.fullSpec)
	}
	return cases, withoutKernelND
}

// TestSocketFilterKernelND: with KernelND, neighbour discovery and MLD are left to the kernel
// whatever their addresses, other ICMPv6 is not; without it, all of them are taken.
func TestSocketFilterKernelND(t *testing.T) {
	cases, without := ndCases(t)
	for _, spec := range []FilterSpec{ndSpec(), testSpec} {
		raw, err := SocketFilter(spec)
		if err != nil {
			t.Fatal(err)
		}
		v := vm(t, raw)
		for i, c := range cases {
			want := c.accept
			if !spec.KernelND {
				want = without[i]
			}
			n, err := v.Run(c.frame)
			if err != nil {
				t.Fatalf("%s: VM: %v", c.name, err)
			}
			if got := n != 0; got != want {
				t.Errorf("KernelND %v: %s: accept = %v, want %v", spec.KernelND, c.name, got, want)
			}
		}
	}
}

func TestSocketFilter(t *testing.T) {
	raw, err := SocketFilter(testSpec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d instructions", len(raw))
	v := vm(t, raw)
	for _, tt := range filterCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			n, err := v.Run(tt.frame)
			if err != nil {
				t.Fatalf("VM: %v", err)
			}
			if got := n != 0; got != tt.accept {
				t.Errorf("accept = %v (returned %#x), want %v", got, n, tt.accept)
			}
			if tt.accept && n < len(tt.frame) {
				t.Errorf("returned %d, want the whole frame", n)
			}
		})
	}
}

// TestSocketFilterManyEndpoints grows the program past 255 instructions so far jumps must be widened,
// and checks every endpoint still matches.
func TestSocketFilterManyEndpoints(t *testing.T) {
	var spec FilterSpec
	for i := range 100 {
		spec.VIPs = append(spec.VIPs, ep(fmt.Sprintf("198.19.%d.%d", i/100, i%100+1), 6, uint16(1000+i)))
		spec.VIPs = append(spec.VIPs, ep(fmt.Sprintf("2001:2::%x:1", i), 17, uint16(2000+i)))
		spec.RealServers = append(spec.RealServers, ep(fmt.Sprintf("198.18.%d.%d", i/100, i%100+1), 6, 8080))
	}
	raw, err := SocketFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d instructions for %d endpoints", len(raw), len(spec.VIPs)+len(spec.RealServers))
	v := vm(t, raw)
	run := func(f frame, want bool) {
		t.Helper()
		n, err := v.Run(f.build(t))
		if err != nil || (n != 0) != want {
			t.Errorf("%+v: accept=%v err=%v, want %v", f, n != 0, err, want)
		}
	}
	for i := range 100 {
		run(frame{src: "198.18.9.9", dst: fmt.Sprintf("198.19.%d.%d", i/100, i%100+1), proto: 6, sport: 5, dport: uint16(1000 + i)}, true)
		run(frame{src: "198.18.9.9", dst: fmt.Sprintf("198.19.%d.%d", i/100, i%100+1), proto: 6, sport: 5, dport: uint16(1001 + i)}, false)
		run(frame{src: "2001:2::9", dst: fmt.Sprintf("2001:2::%x:1", i), proto: 17, sport: 5, dport: uint16(2000 + i)}, true)
		run(frame{src: fmt.Sprintf("198.18.%d.%d", i/100, i%100+1), dst: "198.18.9.9", proto: 6, sport: 8080, dport: 5}, true)
	}
}

func TestSocketFilterErrors(t *testing.T) {
	tests := []struct {
		name string
		spec FilterSpec
		want string
	}{
		{"no address", FilterSpec{VIPs: []Endpoint{{Proto: 6, Port: 80}}}, "no address"},
		{"port without ports protocol", FilterSpec{RealServers: []Endpoint{ep("198.18.0.1", 1, 80)}}, "ports need TCP"},
		{"too big", func() FilterSpec {
			var s FilterSpec
			for i := range 1500 {
				s.VIPs = append(s.VIPs, ep(fmt.Sprintf("198.19.%d.%d", i/200, i%200+1), 6, uint16(i+1)))
			}
			return s
		}(), "more than the kernel's 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SocketFilter(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestSocketFilterSharedBlocks: VIPs serving the same ports share one port block, so a thousand of
// them fit.
func TestSocketFilterSharedBlocks(t *testing.T) {
	var spec FilterSpec
	for i := range 1000 {
		addr := fmt.Sprintf("198.19.%d.%d", i/200, i%200+1)
		spec.VIPs = append(spec.VIPs, ep(addr, 6, 80), ep(addr, 6, 443))
	}
	raw, err := SocketFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d instructions for %d VIP addresses", len(raw), 1000)
	v := vm(t, raw)
	for _, i := range []int{0, 1, 499, 998, 999} {
		addr := fmt.Sprintf("198.19.%d.%d", i/200, i%200+1)
		for port, want := range map[uint16]bool{80: true, 443: true, 8080: false} {
			n, _ := v.Run(frame{src: "198.18.0.1", dst: addr, proto: 6, sport: 9, dport: port}.build(t))
			if (n != 0) != want {
				t.Errorf("%s:%d accept=%v, want %v", addr, port, n != 0, want)
			}
		}
	}
}
