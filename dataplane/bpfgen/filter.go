package bpfgen

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// Endpoint is an address, protocol and port the balancer serves or forwards to.
type Endpoint struct {
	Addr  netip.Addr
	Proto uint8  // IP protocol number; 0 = any protocol (Port must then be 0)
	Port  uint16 // 0 = any port
}

// FilterSpec is what one interface's socket filter lets through.
type FilterSpec struct {
	VIPs        []Endpoint // client → VIP traffic: destination match
	RealServers []Endpoint // NAT replies: source match (address, protocol, source port)
	// ICMPTo are this host's addresses that ICMP and ICMPv6 to it are let through for: the
	// tunnels' outer sources, where routers report the path MTU towards tun real servers.
	ICMPTo []netip.Addr
	// NotTo are addresses whose frames the filter leaves to the kernel unless they go to a VIP
	// endpoint: this host's own addresses, where replies to its own connections from a real
	// server's address and port (health checks) arrive. An AF_PACKET socket only copies a frame
	// and the kernel gets it anyway; an XDP program that takes a frame takes it from the kernel.
	NotTo []netip.Addr
	// KernelND leaves IPv6 neighbour discovery and MLD (ICMPv6 types 130 to 137 and 143) to the
	// kernel whatever their addresses: solicitations for a VIP, or from a real server for a
	// floating gateway, are the kernel's and the announcer's, which an XDP program that took
	// them would starve.
	KernelND bool
}

const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132

	acceptAll = 0xFFFFFFFF

	// ICMPv6 types of neighbour discovery and MLD (RFC 4861, RFC 2710, RFC 3810): 130-137, 143.
	icmp6MLDQuery    = 130
	icmp6Redirect    = 137
	icmp6MLDv2Report = 143
)

// ipv6ExtHeaders are the IPv6 next-header values after which the transport header is not at a fixed
// offset (RFC 8200 §4 and the IANA "IPv6 Extension Header Types" registry, minus ESP).
var ipv6ExtHeaders = []uint32{0, 43, 44, 51, 60, 135, 139, 140}

// Scratch memory slots.
const (
	memL3    = 0 // offset of the IP header in the frame
	memProto = 3 // IPv4 protocol / IPv6 next header
	memHash  = 4 // fanout: hash accumulator
	memSport = 5 // source port, or noPorts
	memDport = 6 // destination port, or noPorts
)

// noPorts in memSport/memDport means the ports cannot be read (a fragment, or a frame too short):
// a frame to a port-specific endpoint's address is then accepted for the data plane to judge.
// protoExt in memProto means IPv6 extension headers follow: accepted at a VIP or real-server address.
const (
	noPorts  = 0x10000
	protoExt = 0x100
)

func hasPorts(proto uint8) bool { return proto == protoTCP || proto == protoUDP || proto == protoSCTP }

// addrGroup is the endpoints sharing one address, and the code label for them.
type addrGroup struct {
	addr  netip.Addr
	eps   []Endpoint
	rules []EndpointRule // fanout: the hash rules at the address
	lbl   label
	owner bool // emits the block at lbl (other groups with the same endpoints share it)
}

// group validates eps and groups them by address, per family, sorted by address.
func group(a *asm, what string, eps []Endpoint) (groups [2][]*addrGroup, err error) {
	by := map[netip.Addr]*addrGroup{}
	for i, ep := range eps {
		if !ep.Addr.IsValid() {
			return groups, fmt.Errorf("invalid %s endpoint %d: no address", what, i)
		}
		if ep.Port != 0 && !hasPorts(ep.Proto) {
			return groups, fmt.Errorf("invalid %s endpoint %d (%v): port %d with protocol %d: ports need TCP (6), UDP (17) or SCTP (132)", what, i, ep.Addr, ep.Port, ep.Proto)
		}
		ep.Addr = ep.Addr.Unmap().WithZone("")
		g := by[ep.Addr]
		if g == nil {
			g = &addrGroup{addr: ep.Addr, lbl: a.newLabel()}
			by[ep.Addr] = g
			f := familyOf(ep.Addr).index
			groups[f] = append(groups[f], g)
		}
		g.eps = append(g.eps, ep)
	}
	for _, gs := range groups {
		slices.SortFunc(gs, func(x, y *addrGroup) int { return x.addr.Compare(y.addr) })
	}
	return groups, nil
}

// words splits an address into big-endian 32-bit words, as BPF word loads see them.
func words(addr netip.Addr) []uint32 {
	b := addr.AsSlice()
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	return w
}

// addrMatch emits a decision tree that compares the address at [X+off] word by word with each
// group's address and jumps to the group's label, or to miss. Groups must be sorted by address, so
// groups sharing leading words are adjacent and share their compares.
func addrMatch(a *asm, off uint32, groups []*addrGroup, miss label) {
	var rec func(gs []*addrGroup, level int)
	rec = func(gs []*addrGroup, level int) {
		a.i(bpf.LoadIndirect{Off: off + 4*uint32(level), Size: 4})
		type child struct {
			gs  []*addrGroup
			lbl label
		}
		var children []child
		for i := 0; i < len(gs); {
			w := words(gs[i].addr)[level]
			j := i + 1
			for j < len(gs) && words(gs[j].addr)[level] == w {
				j++
			}
			if level == len(words(gs[i].addr))-1 {
				a.jif(bpf.JumpEqual, w, gs[i].lbl, next)
			} else {
				c := child{gs: gs[i:j], lbl: a.newLabel()}
				children = append(children, c)
				a.jif(bpf.JumpEqual, w, c.lbl, next)
			}
			i = j
		}
		a.ja(miss)
		for _, c := range children {
			a.mark(c.lbl)
			rec(c.gs, level+1)
		}
	}
	if len(groups) == 0 {
		a.ja(miss)
		return
	}
	rec(groups, 0)
}

// SocketFilter returns a socket filter for the data plane's AF_PACKET sockets. It accepts (whole
// frame) IPv4 and IPv6 frames, untagged or with one or two inline 802.1Q/802.1ad tags, that
//   - go to a VIP endpoint (destination address, protocol and destination port), or carry ICMP or
//     ICMPv6 to a VIP address, or are IPv6 with extension headers or non-first IPv4 fragments to a
//     VIP address (ports cannot be read there; the data plane decides);
//   - come from a real-server endpoint (source address, protocol and source port), or carry ICMP or
//     ICMPv6 from a real-server address (errors about NAT connections, such as PMTU);
//   - carry ICMP or ICMPv6 to an ICMPTo address (path MTU errors about tunnelled packets; IPv6
//     with extension headers to one is let through too, as to a VIP address);
//   - are malformed in a way that classifying them would read past the end of the frame (too short,
//     wrong IP version, IHL < 5), so the data plane sees and counts them.
//
// Everything else (ARP, other hosts' traffic) is dropped in the kernel.
//
// The kernel moves the outermost VLAN tag into packet metadata before packet sockets see a frame
// (skb_vlan_untag in __netif_receive_skb_core, measured on Linux 6.18: a single-tagged frame reaches
// the socket untagged, a QinQ frame with its inner tag inline); inline tags are matched anyway so
// the program also works where the tag is not stripped.
func SocketFilter(spec FilterSpec) ([]bpf.RawInstruction, error) {
	a := &asm{}
	// An ICMPTo address is a destination whose only endpoint is its family's ICMP; a VIP group
	// lets that protocol through.
	dsts := slices.Clip(spec.VIPs)
	for _, addr := range spec.ICMPTo {
		dsts = append(dsts, Endpoint{Addr: addr, Proto: uint8(familyOf(addr.Unmap()).icmp)})
	}
	vips, err := group(a, "VIP", dsts)
	if err != nil {
		return nil, err
	}
	reals, err := group(a, "real server", spec.RealServers)
	if err != nil {
		return nil, err
	}
	notTo := make([]Endpoint, len(spec.NotTo))
	for i, addr := range spec.NotTo {
		notTo[i] = Endpoint{Addr: addr}
	}
	hosts, err := group(a, "host", notTo)
	if err != nil {
		return nil, err
	}
	accept, drop := a.newLabel(), a.newLabel()
	var entry [2]label
	for _, f := range families {
		share(vips[f.index])
		share(reals[f.index])
		entry[f.index] = a.newLabel()
	}
	ip := func(f *family) label { return entry[f.index] }

	inlineTags(a, ip, drop, func(end uint32) {
		a.i(bpf.LoadExtension{Num: bpf.ExtLen})
		a.jif(bpf.JumpLessThan, end, accept, next) // cannot read the EtherType: malformed
	})
	for _, f := range families {
		a.mark(entry[f.index])
		filterFamily(a, f, vips[f.index], reals[f.index], hosts[f.index], spec.KernelND, accept, drop)
	}
	a.mark(drop)
	a.i(bpf.RetConstant{Val: 0})
	a.mark(accept)
	a.i(bpf.RetConstant{Val: acceptAll})
	return a.assemble()
}

// filterFamily emits the filter for frames of family f, X = the offset of their IP header: accept
// a malformed header, a frame to one of vips or from one of reals unless it goes to one of hosts;
// drop anything else.
func filterFamily(a *asm, f *family, vips, reals, hosts []*addrGroup, kernelND bool, accept, drop label) {
	a.i(
		bpf.StoreScratch{Src: bpf.RegX, N: memL3},
		bpf.LoadExtension{Num: bpf.ExtLen},
		bpf.ALUOpX{Op: bpf.ALUOpSub},
	)
	a.jif(bpf.JumpLessThan, f.hdrLen, accept, next)
	f.checkHeader(a, 0, accept)
	a.i(bpf.LoadIndirect{Off: f.protoOff, Size: 1})
	if f.extHeaders {
		ext, proto := a.newLabel(), a.newLabel()
		jumpIfExtHeader(a, ext)
		a.ja(proto)
		a.mark(ext)
		a.i(bpf.LoadConstant{Dst: bpf.RegA, Val: protoExt})
		a.mark(proto)
	}
	a.i(bpf.StoreScratch{Src: bpf.RegA, N: memProto})
	// Ports, once for all endpoint blocks: noPorts for non-first fragments and frames too short
	// to hold them. Nothing here may read past the end: the filter would drop the frame.
	done := a.newLabel()
	a.i(bpf.LoadConstant{Dst: bpf.RegA, Val: noPorts}, bpf.StoreScratch{Src: bpf.RegA, N: memSport}, bpf.StoreScratch{Src: bpf.RegA, N: memDport})
	off := f.transport(a, nonFirstFragment, done)
	a.i(bpf.LoadExtension{Num: bpf.ExtLen})
	if f.options {
		a.jifx(bpf.JumpLessThan, done, next) // options longer than the frame
	}
	a.i(bpf.ALUOpX{Op: bpf.ALUOpSub})
	a.jif(bpf.JumpLessThan, off+4, done, next)
	a.i(
		bpf.LoadIndirect{Off: off, Size: 2},
		bpf.StoreScratch{Src: bpf.RegA, N: memSport},
		bpf.LoadIndirect{Off: off + 2, Size: 2},
		bpf.StoreScratch{Src: bpf.RegA, N: memDport},
	)
	a.mark(done)
	if f.options {
		a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memL3})
	}
	if kernelND && f == ipv6 {
		// memSport holds an ICMPv6 message's type and code (noPorts, 0x10000, if too short).
		keep := a.newLabel()
		a.i(bpf.LoadScratch{Dst: bpf.RegA, N: memProto})
		a.jif(bpf.JumpEqual, protoICMPv6, next, keep)
		a.i(bpf.LoadScratch{Dst: bpf.RegA, N: memSport}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 8})
		a.jif(bpf.JumpLessThan, icmp6MLDQuery, keep, next)
		a.jif(bpf.JumpGreaterThan, icmp6Redirect, next, drop)
		a.jif(bpf.JumpEqual, icmp6MLDv2Report, drop, keep)
		a.mark(keep)
	}
	src := a.newLabel()
	addrMatch(a, f.dstOff, vips, src)
	endpointBlocks(a, vips, f, true, accept, src)
	a.mark(src)
	if len(hosts) > 0 {
		fromReals := a.newLabel()
		addrMatch(a, f.dstOff, hosts, fromReals)
		for _, g := range hosts {
			a.mark(g.lbl)
			a.ja(drop)
		}
		a.mark(fromReals)
	}
	addrMatch(a, f.srcOff, reals, drop)
	endpointBlocks(a, reals, f, false, accept, drop)
}

// endpointBlocks emits the protocol and port checks for each group's endpoints at the group's
// label, jumping to accept or to miss. Groups with the same protocols and ports share one block, so
// many VIPs serving the same ports cost little more than their address compares. X holds the IP
// header offset on entry and on the jump to miss.
func endpointBlocks(a *asm, groups []*addrGroup, f *family, dst bool, accept, miss label) {
	for _, g := range groups {
		if g.owner {
			endpointBlock(a, g.eps, g.lbl, f, dst, accept, miss)
		}
	}
}

// share points groups with the same endpoint set at one block; call it before addrMatch.
func share(groups []*addrGroup) {
	shareBy(groups, func(g *addrGroup) string { return signature(g.eps) })
}

// shareBy points groups with the same sig at the first one's label and marks that one the owner.
func shareBy(groups []*addrGroup, sig func(*addrGroup) string) {
	first := map[string]label{}
	for _, g := range groups {
		sig := sig(g)
		if l, ok := first[sig]; ok {
			g.lbl = l
			continue
		}
		first[sig] = g.lbl
		g.owner = true
	}
}

// signature identifies an endpoint set up to its address.
func signature(eps []Endpoint) string {
	keys := make([]uint32, len(eps))
	for i, ep := range eps {
		keys[i] = uint32(ep.Proto)<<16 | uint32(ep.Port)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	return fmt.Sprint(keys)
}

func endpointBlock(a *asm, eps []Endpoint, at label, f *family, dst bool, accept, miss label) {
	a.mark(at)
	anyPort := map[uint8]bool{}
	ports := map[uint8][]uint16{}
	for _, ep := range eps {
		switch {
		case ep.Proto == 0:
			a.ja(accept) // any protocol at this address
			return
		case ep.Port == 0:
			anyPort[ep.Proto] = true
		default:
			ports[ep.Proto] = append(ports[ep.Proto], ep.Port)
		}
	}
	a.i(bpf.LoadScratch{Dst: bpf.RegA, N: memProto})
	if f.extHeaders {
		a.jif(bpf.JumpEqual, protoExt, accept, next)
	}
	a.jif(bpf.JumpEqual, f.icmp, accept, next)
	for _, p := range sortedKeys(anyPort) {
		a.jif(bpf.JumpEqual, uint32(p), accept, next)
	}
	var protos []uint8
	for _, p := range sortedKeys(ports) {
		if !anyPort[p] {
			protos = append(protos, p)
		}
	}
	blocks := make([]label, len(protos))
	for i, p := range protos {
		blocks[i] = a.newLabel()
		a.jif(bpf.JumpEqual, uint32(p), blocks[i], next)
	}
	a.ja(miss)
	mem := uint32(memDport)
	if !dst {
		mem = memSport
	}
	for i, p := range protos {
		a.mark(blocks[i])
		a.i(bpf.LoadScratch{Dst: bpf.RegA, N: int(mem)})
		ps := slices.Clone(ports[p])
		slices.Sort(ps)
		ps = slices.Compact(ps)
		for _, port := range ps {
			a.jif(bpf.JumpEqual, uint32(port), accept, next)
		}
		a.jif(bpf.JumpEqual, noPorts, accept, miss) // ports unreadable: let the data plane judge
	}
}

func sortedKeys[V any](m map[uint8]V) []uint8 {
	ks := make([]uint8, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, cmp.Compare[uint8])
	return ks
}
