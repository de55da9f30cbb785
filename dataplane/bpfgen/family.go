package bpfgen

import (
	"net/netip"

	"golang.org/x/net/bpf"
)

// family is one IP version as the programs read it. Its methods emit the instruction blocks both
// the socket filter and the fanout program need (header checks, the way to the transport header,
// extension headers, addresses), so each program's per-family code is written once and emitted
// for ipv4 and ipv6 alike. Offsets are from X, which holds the IP header's offset unless a method
// says otherwise.
type family struct {
	index     int    // position in families
	version   uint32 // the header's version field
	etherType uint32
	hdrLen    uint32 // fixed header length (IPv4: without options)
	protoOff  uint32 // protocol (IPv4), next header (IPv6)
	srcOff    uint32 // source address
	dstOff    uint32 // destination address
	words     int    // 32-bit words of an address
	icmp      uint32 // protoICMP or protoICMPv6

	options    bool // the header's length varies (IPv4 options): transport moves X
	extHeaders bool // extension headers may follow (IPv6): see jumpIfExtHeader
}

var (
	ipv4 = &family{index: 0, version: 4, etherType: etherTypeIPv4, hdrLen: 20, protoOff: 9,
		srcOff: 12, dstOff: 16, words: 1, icmp: protoICMP, options: true}
	ipv6 = &family{index: 1, version: 6, etherType: etherTypeIPv6, hdrLen: 40, protoOff: 6,
		srcOff: 8, dstOff: 24, words: 4, icmp: protoICMPv6, extHeaders: true}

	families = [2]*family{ipv4, ipv6}
)

// familyOf returns addr's family.
func familyOf(addr netip.Addr) *family {
	if addr.Is4() {
		return ipv4
	}
	return ipv6
}

// etherTypes jumps to ip(f) for f's EtherType, to tagged for an 802.1Q or 802.1ad tag, else to
// other. A holds the EtherType.
func etherTypes(a *asm, ip func(*family) label, tagged, other label) {
	for _, f := range families {
		a.jif(bpf.JumpEqual, f.etherType, ip(f), next)
	}
	if tagged == other {
		a.ja(other)
		return
	}
	a.jif(bpf.JumpEqual, etherType8021Q, tagged, next)
	a.jif(bpf.JumpEqual, etherType8021AD, tagged, other)
}

// inlineTags emits the link layer of a program that sees the whole frame: X = the IP header's
// offset, behind up to two inline VLAN tags, then a jump to ip's label for the frame's family;
// frames of other EtherTypes (a third tag among them) jump to other. check, if not nil, emits a
// test before each EtherType load, given the offset where the EtherType ends.
func inlineTags(a *asm, ip func(*family) label, other label, check func(end uint32)) {
	offsets := []uint32{14, 18, 22}
	for i, off := range offsets {
		if check != nil {
			check(off)
		}
		a.i(bpf.LoadAbsolute{Off: off - 2, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: off})
		if i == len(offsets)-1 {
			etherTypes(a, ip, other, other)
			break
		}
		tagged := a.newLabel()
		etherTypes(a, ip, tagged, other)
		a.mark(tagged)
	}
}

// checkHeader jumps to bad unless the header at [X+off] has f's version and, for IPv4, an IHL of
// at least 5 (A holds the IHL then). It reads the first byte only: the caller makes sure the rest
// is there, or lets a load past the end abort the program.
func (f *family) checkHeader(a *asm, off uint32, bad label) {
	a.i(bpf.LoadIndirect{Off: off, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	a.jif(bpf.JumpNotEqual, f.version, bad, next)
	if f.options {
		a.i(bpf.LoadIndirect{Off: off, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf})
		a.jif(bpf.JumpLessThan, 5, bad, next)
	}
}

// Fragment offset masks for transport: a non-first fragment has no transport header; a first one
// has, but its other fragments, hashed alike, do not.
const (
	nonFirstFragment = 0x1fff // fragment offset
	anyFragment      = 0x3fff // more-fragments flag and fragment offset
)

// transport finds the transport header: it returns its offset from X, having moved X where the
// header has a variable length (IPv4: X = the transport header, offset 0; IPv6: X stays, offset
// 40, so a transport header behind extension headers is not found: check for them first). An
// IPv4 fragment that frag (nonFirstFragment or anyFragment) matches jumps to none instead.
func (f *family) transport(a *asm, frag uint32, none label) uint32 {
	if !f.options {
		return f.hdrLen
	}
	a.i(bpf.LoadIndirect{Off: 6, Size: 2})
	a.jif(bpf.JumpBitsSet, frag, none, next)
	a.i(
		bpf.LoadIndirect{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{},
	)
	return 0
}

// jumpIfExtHeader jumps to ext if A, an IPv6 next header, is an extension header: the transport
// header is then not at a fixed offset.
func jumpIfExtHeader(a *asm, ext label) {
	for _, h := range ipv6ExtHeaders {
		a.jif(bpf.JumpEqual, h, ext, next)
	}
}

// isICMPError jumps to yes if A, an ICMP type of f's ICMP, is an error that quotes the packet it
// is about (IPv4: unreachable, time exceeded, parameter problem; ICMPv6: types 1 to 4), else to no.
func (f *family) isICMPError(a *asm, yes, no label) {
	if f == ipv4 {
		for _, typ := range []uint32{icmpUnreachable, icmpTimeExceeded, icmpParamProblem} {
			a.jif(bpf.JumpEqual, typ, yes, next)
		}
		a.ja(no)
		return
	}
	a.jif(bpf.JumpLessThan, icmp6Unreachable, no, next)
	a.jif(bpf.JumpGreaterThan, icmp6ParamProblem, no, yes)
}

// hasPortsProto jumps to yes if A is TCP, UDP or SCTP, else to no.
func hasPortsProto(a *asm, yes, no label) {
	a.jif(bpf.JumpEqual, protoTCP, yes, next)
	a.jif(bpf.JumpEqual, protoUDP, yes, next)
	a.jif(bpf.JumpEqual, protoSCTP, yes, no)
}

// hashAddr puts the address at [X+off] into memHash, its words folded with XOR, each masked to its
// part of a bits-long prefix first (bits < 0: unmasked). X is kept: it must be memBase where the
// address has more than one word.
func (f *family) hashAddr(a *asm, off uint32, bits int) {
	for w := range uint32(f.words) {
		a.i(bpf.LoadIndirect{Off: off + 4*w, Size: 4})
		if bits >= 0 {
			a.i(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: prefixMask(min(max(bits-32*int(w), 0), 32))})
		}
		if w == 0 {
			a.i(bpf.StoreScratch{Src: bpf.RegA, N: memHash})
			continue
		}
		a.i(
			bpf.LoadScratch{Dst: bpf.RegX, N: memHash},
			bpf.ALUOpX{Op: bpf.ALUOpXor},
			bpf.StoreScratch{Src: bpf.RegA, N: memHash},
			bpf.LoadScratch{Dst: bpf.RegX, N: memBase},
		)
	}
}
