package bpfgen

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// ICMP errors the fanout program looks into (RFC 792, RFC 4443): they quote the packet they are
// about after an 8-byte ICMP header.
const (
	icmpUnreachable   = 3
	icmpTimeExceeded  = 11
	icmpParamProblem  = 12
	icmp6Unreachable  = 1 // ICMPv6 error types 1 to 4: unreachable, packet too big, time
	icmp6ParamProblem = 4 // exceeded, parameter problem
	icmpHeaderLen     = 8
	ipv6HeaderLen     = 40
)

// Fanout scratch slots, beside memL3 and memHash.
const (
	memBase = 7 // offset of the IP header whose client side is hashed: the frame's, or a quoted one
	memMode = 8 // 0: hashing the frame itself; 1: the packet an ICMP error quotes
)

// vipSides emits the VIP compare tree on the address at [X+off] and the jumps to the source side
// (label src) or destination side (dst) of the header at memBase: a frame to a VIP hashes its
// source, any other frame its destination; a quoted packet from a VIP hashes its destination, any
// other its source. X holds memBase at src and dst.
func vipSides(a *asm, groups []*addrGroup, off uint32, src, dst label) {
	hit, miss := a.newLabel(), a.newLabel()
	for _, g := range groups {
		g.lbl = hit
	}
	addrMatch(a, off, groups, miss)
	for _, c := range []struct{ at, mode0, mode1 label }{{hit, src, dst}, {miss, dst, src}} {
		a.mark(c.at)
		a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memBase}, bpf.LoadScratch{Dst: bpf.RegA, N: memMode})
		a.jif(bpf.JumpEqual, 0, c.mode0, c.mode1)
	}
}

// prefixMask is a 32-bit word's mask for its first bits bits (0..32).
func prefixMask(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// hashMul is the 32-bit golden-ratio multiplier (Knuth's multiplicative hashing).
const hashMul = 0x9e3779b1

// FanoutProgram returns a PACKET_FANOUT_CBPF program that sends both directions of a NAT connection
// to the same fanout member: it hashes the client side, which is the source of a frame whose
// destination address is one of vips and the destination of any other frame (a real server's reply).
// The hash covers the client address and, for TCP, UDP and SCTP, the client port; fragments hash on
// the address alone, since only the first one carries ports. The program returns hash mod members;
// frames that are not IP or are malformed go to member 0.
//
// An ICMP error (IPv4 types 3, 11, 12; ICMPv6 types 1 to 4) goes where its connection's frames go:
// the program hashes the client side of the packet it quotes, which travelled the other way, so
// the client is the quoted destination if the quoted source is one of vips and the quoted source
// otherwise (address and port, by the same rules). IPv4 headers with options are read at both
// levels. Where the quote cannot be read this way the error is hashed like any other frame (its
// client-side address): an ICMPv6 error behind IPv6 extension headers or quoting a packet with
// extension headers, a quote of another IP version or with IHL < 5, or an error in a non-first
// fragment. An ICMP error too short to hold the 8-byte ICMP header and the quoted IP header (or
// ports the quote says it has) makes a load fail and goes to member 0, like other truncated frames.
//
// The kernel runs fanout programs differently from socket filters (measured on Linux 6.18, and see
// packet_rcv_fanout in net/packet/af_packet.c): the frame starts at the network header, not at the
// Ethernet header, and the EtherType is read from skb->protocol (the SKF_AD_PROTOCOL extension).
// The outer VLAN tag has already been moved to metadata; for QinQ the inner tag is left at the front
// and the program looks through it. Instruction 0 is the skb->protocol load.
func FanoutProgram(vips []netip.Addr, members int) ([]bpf.RawInstruction, error) {
	return FanoutProgramBase(vips, members, 0)
}

// FanoutProgramBase is FanoutProgram for a group whose members come in sets: it returns
// base + (hash mod members), so a group joined by several sets of members of the same size
// sends everything to the set starting at base (members joined in order base, base+1, ...).
// Replacing the program with another base moves all traffic to another set at once. Frames too
// short for a load the program makes abort it, and the kernel then sends them to member 0
// whatever the base: the reader of member 0 must also read its socket while another set is in use.
func FanoutProgramBase(vips []netip.Addr, members, base int) ([]bpf.RawInstruction, error) {
	return FanoutProgramSticky(vips, members, base, Stickiness{})
}

// Stickiness makes the fanout keep whole clients, not just connections, on one member, as
// persistence needs: a worker keeps its own persistence templates, so every connection of a
// client (masked by persistence_netmask) must reach the same worker. With Sticky set the hash covers
// the client address alone, no ports, masked to its first Bits4 (IPv4) or Bits6 (IPv6) bits, for
// every frame: connections then spread over workers by client network, not by port.
type Stickiness struct {
	Sticky       bool
	Bits4, Bits6 int // 0..32 and 0..128; a zero Stickiness hashes addresses and ports
}

// FanoutProgramSticky is FanoutProgramBase with the hash Stickiness describes.
func FanoutProgramSticky(vips []netip.Addr, members, base int, st Stickiness) ([]bpf.RawInstruction, error) {
	if st.Sticky && (st.Bits4 < 0 || st.Bits4 > 32 || st.Bits6 < 0 || st.Bits6 > 128) {
		return nil, fmt.Errorf("failed to generate fanout BPF: persistence prefixes /%d (IPv4) and /%d (IPv6) out of range", st.Bits4, st.Bits6)
	}
	if base < 0 || base+members > 1<<16 {
		return nil, fmt.Errorf("failed to generate fanout BPF: base %d with %d members exceeds PACKET_FANOUT_MAX (65536)", base, members)
	}
	if members < 1 || members > 1<<16 {
		return nil, fmt.Errorf("failed to generate fanout BPF: %d members, want 1 to 65536 (PACKET_FANOUT_MAX)", members)
	}
	a := &asm{}
	var v4, v6 []*addrGroup
	for i, ip := range vips {
		if !ip.IsValid() {
			return nil, fmt.Errorf("failed to generate fanout BPF: VIP %d is not a valid address", i)
		}
		ip = ip.Unmap().WithZone("")
		g := &addrGroup{addr: ip}
		if ip.Is4() {
			v4 = append(v4, g)
		} else {
			v6 = append(v6, g)
		}
	}
	less := func(x, y *addrGroup) int { return x.addr.Compare(y.addr) }
	eq := func(x, y *addrGroup) bool { return x.addr == y.addr }
	slices.SortFunc(v4, less)
	slices.SortFunc(v6, less)
	v4, v6 = slices.CompactFunc(v4, eq), slices.CompactFunc(v6, eq)

	zero, final := a.newLabel(), a.newLabel()
	ip4, ip6 := a.newLabel(), a.newLabel()
	at0, at4 := a.newLabel(), a.newLabel()
	a.i(bpf.LoadExtension{Num: bpf.ExtProto})
	a.jif(bpf.JumpEqual, etherTypeIPv4, at0, next)
	a.jif(bpf.JumpEqual, etherTypeIPv6, at0, next)
	a.jif(bpf.JumpEqual, etherType8021Q, at4, next)
	a.jif(bpf.JumpEqual, etherType8021AD, at4, zero)
	a.mark(at4)
	// Inner tag at the front: TCI, then the EtherType, then the IP header at 4.
	a.i(bpf.LoadAbsolute{Off: 2, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 4})
	a.jif(bpf.JumpEqual, etherTypeIPv4, ip4, next)
	a.jif(bpf.JumpEqual, etherTypeIPv6, ip6, zero)
	a.mark(at0)
	a.i(bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
	a.jif(bpf.JumpEqual, etherTypeIPv4, ip4, ip6)

	// Each family's code picks the packet to hash (memBase: the frame's own IP header, or the one
	// an ICMP error quotes, with memMode 1) and then runs one VIP compare tree for both, so that many
	// VIPs cost their compares once. A quoted packet travelled the other way than the error: if its
	// source is a VIP its client is its destination, otherwise its source.

	// IPv4, X = offset of the IP header. Loads past the end make the kernel (and the VM) return 0.
	a.mark(ip4)
	a.i(bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jif(bpf.JumpNotEqual, 4, zero, next)
	a.i(bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf})
	a.jif(bpf.JumpLessThan, 5, zero, next)
	a.i(
		bpf.StoreScratch{Src: bpf.RegX, N: memL3},
		bpf.StoreScratch{Src: bpf.RegX, N: memBase},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 0},
		bpf.StoreScratch{Src: bpf.RegA, N: memMode},
	)
	match4, outer4, icmp4, err4 := a.newLabel(), a.newLabel(), a.newLabel(), a.newLabel()
	a.i(bpf.LoadIndirect{Off: 9, Size: 1})
	a.jif(bpf.JumpEqual, protoICMP, icmp4, match4)
	a.mark(icmp4)
	// Only a first (or only) fragment holds the ICMP header.
	a.i(bpf.LoadIndirect{Off: 6, Size: 2})
	a.jif(bpf.JumpBitsSet, 0x1fff, outer4, next)
	a.i(
		bpf.LoadIndirect{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{}, // X = ICMP header
		bpf.LoadIndirect{Off: 0, Size: 1},
	)
	for _, typ := range []uint32{icmpUnreachable, icmpTimeExceeded, icmpParamProblem} {
		a.jif(bpf.JumpEqual, typ, err4, next)
	}
	a.ja(outer4)
	a.mark(err4)
	a.i(
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: icmpHeaderLen},
		bpf.TAX{}, // X = quoted IP header
		bpf.LoadIndirect{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
	)
	a.jif(bpf.JumpNotEqual, 4, outer4, next)
	a.i(bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf})
	a.jif(bpf.JumpLessThan, 5, outer4, next)
	a.i(
		bpf.StoreScratch{Src: bpf.RegX, N: memBase},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 1},
		bpf.StoreScratch{Src: bpf.RegA, N: memMode},
		// The tree compares [X+16], the outer destination; for the quote it must see the source at 12.
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: 4},
		bpf.TAX{},
	)
	a.ja(match4)
	a.mark(outer4) // not an error this program can read: hash the frame itself
	a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memL3})
	a.mark(match4)
	cs4, cd4 := a.newLabel(), a.newLabel()
	vipSides(a, v4, 16, cs4, cd4)
	for _, side := range []struct {
		lbl           label
		addr, portOff uint32
	}{{cs4, 12, 0}, {cd4, 16, 2}} {
		// X = memBase, the header whose side is hashed.
		a.mark(side.lbl)
		a.i(bpf.LoadIndirect{Off: side.addr, Size: 4})
		if st.Sticky {
			a.i(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: prefixMask(st.Bits4)}, bpf.StoreScratch{Src: bpf.RegA, N: memHash})
			a.ja(final)
			continue
		}
		a.i(
			bpf.StoreScratch{Src: bpf.RegA, N: memHash},
			bpf.LoadIndirect{Off: 9, Size: 1},
		)
		ports := a.newLabel()
		a.jif(bpf.JumpEqual, protoTCP, ports, next)
		a.jif(bpf.JumpEqual, protoUDP, ports, next)
		a.jif(bpf.JumpEqual, protoSCTP, ports, final)
		a.mark(ports)
		a.i(bpf.LoadIndirect{Off: 6, Size: 2})
		a.jif(bpf.JumpBitsSet, 0x3fff, final, next) // a fragment: hash on the address alone
		a.i(
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.TAX{},
			bpf.LoadIndirect{Off: side.portOff, Size: 2},
			bpf.LoadScratch{Dst: bpf.RegX, N: memHash},
			bpf.ALUOpX{Op: bpf.ALUOpXor},
			bpf.StoreScratch{Src: bpf.RegA, N: memHash},
		)
		a.ja(final)
	}

	// IPv6, X = offset of the IP header. Only a transport header right after the fixed header is
	// read; with extension headers the hash covers the address alone. An ICMPv6 error is read only
	// without extension headers before it, and its quote only without extension headers in it:
	// otherwise the frame is hashed as any other (its client-side address alone).
	a.mark(ip6)
	a.i(bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jif(bpf.JumpNotEqual, 6, zero, next)
	a.i(
		bpf.StoreScratch{Src: bpf.RegX, N: memL3},
		bpf.StoreScratch{Src: bpf.RegX, N: memBase},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 0},
		bpf.StoreScratch{Src: bpf.RegA, N: memMode},
	)
	match6, outer6, icmp6 := a.newLabel(), a.newLabel(), a.newLabel()
	a.i(bpf.LoadIndirect{Off: 6, Size: 1})
	a.jif(bpf.JumpEqual, protoICMPv6, icmp6, match6)
	a.mark(icmp6)
	a.i(bpf.LoadIndirect{Off: ipv6HeaderLen, Size: 1})
	a.jif(bpf.JumpLessThan, icmp6Unreachable, outer6, next)
	a.jif(bpf.JumpGreaterThan, icmp6ParamProblem, outer6, next)
	const q6 = ipv6HeaderLen + icmpHeaderLen // the quoted header, from X
	a.i(bpf.LoadIndirect{Off: q6, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jif(bpf.JumpNotEqual, 6, outer6, next)
	a.i(bpf.LoadIndirect{Off: q6 + 6, Size: 1})
	for _, h := range ipv6ExtHeaders {
		a.jif(bpf.JumpEqual, h, outer6, next)
	}
	a.i(
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: q6},
		bpf.StoreScratch{Src: bpf.RegA, N: memBase},
		// The tree compares [X+24], the outer destination; for the quote it must see the source at 8.
		bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: 16},
		bpf.TAX{},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 1},
		bpf.StoreScratch{Src: bpf.RegA, N: memMode},
	)
	a.ja(match6)
	a.mark(outer6)
	a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memL3})
	a.mark(match6)
	cs6, cd6 := a.newLabel(), a.newLabel()
	vipSides(a, v6, 24, cs6, cd6)
	for _, side := range []struct {
		lbl           label
		addr, portOff uint32
	}{{cs6, 8, 40}, {cd6, 24, 42}} {
		a.mark(side.lbl)
		// Fold the four address words with XOR; X must come back to memBase each time. Sticky:
		// each word masked to the persistence prefix first, and no ports.
		mask := func(w uint32) {
			if st.Sticky {
				a.i(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: prefixMask(min(max(st.Bits6-32*int(w), 0), 32))})
			}
		}
		a.i(bpf.LoadIndirect{Off: side.addr, Size: 4})
		mask(0)
		a.i(bpf.StoreScratch{Src: bpf.RegA, N: memHash})
		for w := uint32(1); w < 4; w++ {
			a.i(bpf.LoadIndirect{Off: side.addr + 4*w, Size: 4})
			mask(w)
			a.i(
				bpf.LoadScratch{Dst: bpf.RegX, N: memHash},
				bpf.ALUOpX{Op: bpf.ALUOpXor},
				bpf.StoreScratch{Src: bpf.RegA, N: memHash},
				bpf.LoadScratch{Dst: bpf.RegX, N: memBase},
			)
		}
		if st.Sticky {
			a.ja(final)
			continue
		}
		a.i(bpf.LoadIndirect{Off: 6, Size: 1})
		ports := a.newLabel()
		a.jif(bpf.JumpEqual, protoTCP, ports, next)
		a.jif(bpf.JumpEqual, protoUDP, ports, next)
		a.jif(bpf.JumpEqual, protoSCTP, ports, final)
		a.mark(ports)
		a.i(
			bpf.LoadIndirect{Off: side.portOff, Size: 2},
			bpf.LoadScratch{Dst: bpf.RegX, N: memHash},
			bpf.ALUOpX{Op: bpf.ALUOpXor},
			bpf.StoreScratch{Src: bpf.RegA, N: memHash},
		)
		a.ja(final)
	}

	// h *= golden ratio; h ^= h >> 16; return h % members.
	a.mark(final)
	a.i(
		bpf.LoadScratch{Dst: bpf.RegA, N: memHash},
		bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: hashMul},
		bpf.TAX{},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16},
		bpf.ALUOpX{Op: bpf.ALUOpXor},
		bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(members)},
	)
	if base != 0 {
		a.i(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: uint32(base)})
	}
	a.i(bpf.RetA{})
	a.mark(zero)
	a.i(bpf.RetConstant{Val: uint32(base)})
	return a.assemble()
}
