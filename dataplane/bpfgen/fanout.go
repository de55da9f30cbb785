package bpfgen

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
)

// Fanout scratch slots, beside memL3 and memHash.
const (
	memBase = 7 // offset of the IP header whose client side is hashed: the frame's, or a quoted one
	memMode = 8 // 0: hashing the frame itself; 1: the packet an ICMP error quotes
)

// Fanout scratch slots used only with hash rules.
const (
	memVPort = 9  // port of the VIP side of the header at memBase (see vipSides), or noPorts
	memRPort = 10 // port of the other (server) side, or noPorts
	memRAddr = 11 // X for the server tree: the server-side address is at [X+12] (IPv4) or [X+8] (IPv6)
	memTree  = 12 // X of the VIP tree, kept across the ports preamble
)

// sideRules is one family's hash rules as vipSides needs them.
type sideRules struct {
	vip, server []*addrGroup // rule groups by address (owners emit the shared blocks)
	serverOff   uint32       // offset of the server-side address from memRAddr
	vipRule     func(HashRule) label
	serverRule  func(HashRule) label
}

// vipSides emits the VIP compare tree on the address at [X+off] and the jumps to the source side
// (label src) or destination side (dst) of the header at memBase: a frame to a VIP hashes its
// source, any other frame its destination; a quoted packet from a VIP hashes its destination, any
// other its source. X holds memBase at src and dst. With rules, a VIP with rules goes through its
// endpoint block (memVPort) and a frame to no VIP through the server tree (memRPort) first, either
// jumping to a rule's label instead; the ports preamble (rulePorts) must have run.
func vipSides(a *asm, groups []*addrGroup, off uint32, src, dst label, rules *sideRules) {
	hit, miss := a.newLabel(), a.newLabel()
	byAddr := map[netip.Addr]*addrGroup{}
	if rules != nil {
		for _, g := range rules.vip {
			byAddr[g.addr] = g
		}
	}
	for _, g := range groups {
		g.lbl = hit
		if rg := byAddr[g.addr]; rg != nil {
			g.lbl = rg.lbl
		}
	}
	addrMatch(a, off, groups, miss)
	if rules != nil {
		for _, g := range rules.vip {
			if g.owner {
				ruleBlock(a, g, memVPort, rules.vipRule, hit)
			}
		}
	}
	a.mark(hit)
	a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memBase}, bpf.LoadScratch{Dst: bpf.RegA, N: memMode})
	a.jif(bpf.JumpEqual, 0, src, dst)
	a.mark(miss)
	if rules != nil && len(rules.server) > 0 {
		plain := a.newLabel()
		a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memRAddr})
		addrMatch(a, rules.serverOff, rules.server, plain)
		for _, g := range rules.server {
			if g.owner {
				ruleBlock(a, g, memRPort, rules.serverRule, plain)
			}
		}
		a.mark(plain)
	}
	a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memBase}, bpf.LoadScratch{Dst: bpf.RegA, N: memMode})
	a.jif(bpf.JumpEqual, 0, dst, src)
}

// rulePorts emits the preamble of the rule lookups for the header at memBase, of family f: its
// protocol in memProto, the ports of its VIP side and server side in memVPort and memRPort
// (noPorts for a fragment or a protocol without ports), and memRAddr, the X at which the server
// tree finds the server-side address at the source's offset: memBase for a frame (its source),
// memBase + (destination - source offset) for a quoted packet (its destination). X is kept.
func rulePorts(a *asm, f *family) {
	done, quote := a.newLabel(), a.newLabel()
	a.i(
		bpf.StoreScratch{Src: bpf.RegX, N: memTree},
		bpf.LoadConstant{Dst: bpf.RegA, Val: noPorts},
		bpf.StoreScratch{Src: bpf.RegA, N: memVPort},
		bpf.StoreScratch{Src: bpf.RegA, N: memRPort},
		bpf.LoadScratch{Dst: bpf.RegX, N: memBase},
		bpf.LoadIndirect{Off: f.protoOff, Size: 1},
		bpf.StoreScratch{Src: bpf.RegA, N: memProto},
	)
	ports := a.newLabel()
	hasPortsProto(a, ports, done)
	a.mark(ports)
	off := f.transport(a, anyFragment, done)
	// A frame's VIP side is its destination; a quoted packet's (memMode 1) its source.
	a.i(bpf.LoadScratch{Dst: bpf.RegA, N: memMode})
	a.jif(bpf.JumpEqual, 0, next, quote)
	a.i(
		bpf.LoadIndirect{Off: off + 2, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: memVPort},
		bpf.LoadIndirect{Off: off, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: memRPort},
	)
	a.ja(done)
	a.mark(quote)
	a.i(
		bpf.LoadIndirect{Off: off, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: memVPort},
		bpf.LoadIndirect{Off: off + 2, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: memRPort},
	)
	a.mark(done)
	a.i(
		bpf.LoadScratch{Dst: bpf.RegX, N: memBase},
		bpf.LoadScratch{Dst: bpf.RegA, N: memMode},
		bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: f.dstOff - f.srcOff},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.StoreScratch{Src: bpf.RegA, N: memRAddr},
		bpf.LoadScratch{Dst: bpf.RegX, N: memTree},
	)
}

// ruleBlock emits g's endpoint checks at g.lbl: protocol (memProto), then the port in slot port,
// exact ports before the group's port-0 rule; a sticky rule jumps to rule(its rule), anything else
// to dflt. X is kept.
func ruleBlock(a *asm, g *addrGroup, port int, rule func(HashRule) label, dflt label) {
	a.mark(g.lbl)
	type protoRules struct {
		exact []EndpointRule
		any   *HashRule
	}
	by := map[uint8]*protoRules{}
	for _, r := range g.rules {
		pr := by[r.Proto]
		if pr == nil {
			pr = &protoRules{}
			by[r.Proto] = pr
		}
		if r.Port == 0 {
			pr.any = &r.Rule
		} else {
			pr.exact = append(pr.exact, r)
		}
	}
	target := func(r HashRule) label {
		if r.Sticky {
			return rule(r)
		}
		return dflt
	}
	protos := sortedKeys(by)
	blocks := make([]label, len(protos))
	a.i(bpf.LoadScratch{Dst: bpf.RegA, N: memProto})
	for i, p := range protos {
		blocks[i] = a.newLabel()
		a.jif(bpf.JumpEqual, uint32(p), blocks[i], next)
	}
	a.ja(dflt)
	for i, p := range protos {
		a.mark(blocks[i])
		pr := by[p]
		other := dflt
		if pr.any != nil {
			other = target(*pr.any)
		}
		loaded := false
		for _, r := range pr.exact {
			if t := target(r.Rule); t != other {
				if !loaded {
					a.i(bpf.LoadScratch{Dst: bpf.RegA, N: port})
					loaded = true
				}
				a.jif(bpf.JumpEqual, uint32(r.Port), t, next)
			}
		}
		a.ja(other)
	}
}

// ruleGroups validates rules and groups the addresses that have a sticky rule (the others hash as
// without rules) by address, per family, sorted, with shared blocks marked (see share).
func ruleGroups(a *asm, what string, rules []EndpointRule) (groups [2][]*addrGroup, err error) {
	type key struct {
		addr  netip.Addr
		proto uint8
		port  uint16
	}
	seen := map[key]HashRule{}
	by := map[netip.Addr]*addrGroup{}
	for i, r := range rules {
		if !r.Addr.IsValid() {
			return groups, fmt.Errorf("failed to generate fanout BPF: %s rule %d has no address", what, i)
		}
		r.Addr = r.Addr.Unmap().WithZone("")
		if !hasPorts(r.Proto) {
			return groups, fmt.Errorf("failed to generate fanout BPF: %s rule %d (%v): protocol %d, want TCP (6), UDP (17) or SCTP (132)", what, i, r.Addr, r.Proto)
		}
		if !r.Rule.Sticky {
			r.Rule.Bits = 0
		} else if r.Rule.Bits < 0 || r.Rule.Bits > r.Addr.BitLen() {
			return groups, fmt.Errorf("failed to generate fanout BPF: %s rule %d (%v): prefix /%d out of range", what, i, r.Addr, r.Rule.Bits)
		}
		k := key{r.Addr, r.Proto, r.Port}
		if prev, ok := seen[k]; ok {
			if prev != r.Rule {
				return groups, fmt.Errorf("failed to generate fanout BPF: %s %v protocol %d port %d has two rules (%v and %v)", what, r.Addr, r.Proto, r.Port, prev, r.Rule)
			}
			continue
		}
		seen[k] = r.Rule
		g := by[r.Addr]
		if g == nil {
			g = &addrGroup{addr: r.Addr, lbl: a.newLabel()}
			by[r.Addr] = g
		}
		g.rules = append(g.rules, r)
	}
	for _, g := range by {
		if !slices.ContainsFunc(g.rules, func(r EndpointRule) bool { return r.Rule.Sticky }) {
			continue
		}
		f := familyOf(g.addr).index
		groups[f] = append(groups[f], g)
	}
	for _, gs := range groups {
		slices.SortFunc(gs, func(x, y *addrGroup) int { return x.addr.Compare(y.addr) })
		shareBy(gs, ruleSignature)
	}
	return groups, nil
}

// ruleSignature identifies a group's rules up to its address.
func ruleSignature(g *addrGroup) string {
	rs := slices.Clone(g.rules)
	slices.SortFunc(rs, func(x, y EndpointRule) int {
		return cmp.Or(cmp.Compare(x.Proto, y.Proto), cmp.Compare(x.Port, y.Port))
	})
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%d/%d:%v/%d ", r.Proto, r.Port, r.Rule.Sticky, r.Rule.Bits)
	}
	return b.String()
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

// HashRule is how the fanout hashes the client side of one service's frames. The zero value hashes
// the client address and, for TCP, UDP and SCTP, the client port, so one client's connections
// spread over the members. Sticky hashes the client address alone, masked to its first Bits bits,
// as persistence needs: a worker keeps its own persistence templates, so every connection of a
// client network (persistence_netmask) must reach the same worker.
type HashRule struct {
	Sticky bool
	Bits   int // prefix length in the endpoint's family: 0..32 (IPv4) or 0..128 (IPv6)
}

// Join is the finest rule that covers both r and o.
func (r HashRule) Join(o HashRule) HashRule {
	switch {
	case !r.Sticky:
		return o
	case !o.Sticky:
		return r
	}
	return HashRule{Sticky: true, Bits: min(r.Bits, o.Bits)}
}

func (r HashRule) String() string {
	if !r.Sticky {
		return "client address and port"
	}
	return fmt.Sprintf("client network /%d", r.Bits)
}

// EndpointRule gives the flows of one service endpoint a hash rule.
type EndpointRule struct {
	Endpoint // Proto TCP, UDP or SCTP; Port 0 is every port, unless another rule names the port
	Rule     HashRule
}

// FanoutSpec is what a fanout program knows of the services: which addresses are VIPs (the
// client of a frame to one is its source, of any other frame its destination), and the hash rule
// of each endpoint whose flows do not hash by client address and port.
type FanoutSpec struct {
	VIPs []netip.Addr
	// VIPRules are matched against the VIP endpoint of a frame to a VIP (destination address,
	// protocol and port), or of the packet an ICMP error quotes when it comes from a VIP (source).
	VIPRules []EndpointRule
	// ServerRules are matched against the service side of every other frame: the source endpoint
	// of a real server's reply (NAT), or the destination of a quoted packet that came from a client
	// (to a real server under NAT, to the VIP under DR).
	ServerRules []EndpointRule
	// Locals are FullNAT local addresses: a frame to one (a real server's reply), or an ICMP error
	// quoting a packet from one, goes to member port mod members by its local port (the frame's
	// destination port, the quote's source port), the residue class of the worker that allocated
	// that port (LocalMember). Their fragments and frames without ports hash as any other frame.
	Locals []netip.Addr
}

// FanoutProgramSpec returns a PACKET_FANOUT_CBPF program that sends both directions of a NAT
// connection to the same fanout member: it hashes the client side, which is the source of a frame
// whose destination address is one of spec.VIPs and the destination of any other frame (a real
// server's reply). The hash covers the client address and, for TCP, UDP and SCTP, the client port;
// fragments hash on the address alone, since only the first one carries ports. Every fragment of
// a datagram, the first included, in either direction, is hashed alike and so reaches one member:
// the data plane relies on that to hand a datagram's fragments to its flow's worker
// (TestFanoutFragmentsTogether).
//
// Hash rules (spec.VIPRules, spec.ServerRules) change that per service endpoint: a frame is hashed
// by the rule of its service's endpoint, so a change to one service's rule moves no other
// service's flows. Frames whose service side has no rule, whose ports cannot be read (fragments,
// IPv6 extension headers) or that match no endpoint hash by client address and port, as without
// rules; rules that are not sticky cost nothing unless they shadow a sticky port-0 rule.
//
// The program returns base + (hash mod members), so a group joined by several sets of members of
// the same size sends everything to the set starting at base (members joined in order base,
// base+1, ...); replacing the program with another base moves all traffic to another set at once.
// Frames that are not IP, or whose IP header is malformed, go to member base. Frames too short for
// a load the program makes abort it, and the kernel then sends them to member 0 whatever the base:
// the reader of member 0 must also read its socket while another set is in use.
//
// An ICMP error (IPv4 types 3, 11, 12; ICMPv6 types 1 to 4) goes where its connection's frames go:
// the program hashes the client side of the packet it quotes, which travelled the other way, so
// the client is the quoted destination if the quoted source is a VIP and the quoted source
// otherwise (address and port, by the same rules). IPv4 headers with options are read at both
// levels. Where the quote cannot be read this way the error is hashed like any other frame (its
// client-side address): an ICMPv6 error behind IPv6 extension headers or quoting a packet with
// extension headers, a quote of another IP version or with IHL < 5, or an error in a non-first
// fragment. An ICMP error too short to hold the 8-byte ICMP header and the quoted IP header (or
// ports the quote says it has) makes a load fail, like other truncated frames.
//
// The kernel runs fanout programs differently from socket filters (measured on Linux 6.18, and see
// packet_rcv_fanout in net/packet/af_packet.c): the frame starts at the network header, not at the
// Ethernet header, and the EtherType is read from skb->protocol (the SKF_AD_PROTOCOL extension).
// The outer VLAN tag has already been moved to metadata; for QinQ the inner tag is left at the front
// and the program looks through it. Instruction 0 is the skb->protocol load.
func FanoutProgramSpec(spec FanoutSpec, members, base int) ([]bpf.RawInstruction, error) {
	return fanoutProgram(spec, members, base, false)
}

// SteerProgramSpec is FanoutProgramSpec with base 0 for a program that sees the frame as a socket
// filter or an XDP program does: from its Ethernet header, every VLAN tag inline (up to two are
// looked through, as the fanout program looks through the one the kernel leaves). It chooses the
// member FanoutProgramSpec chooses for the same frame on the wire (TestSteerMatchesFanout), so an
// XDP program can tell which worker a frame's connection belongs to. It reads no extension, so
// cbpfc compiles it to eBPF.
func SteerProgramSpec(spec FanoutSpec, members int) ([]bpf.RawInstruction, error) {
	return fanoutProgram(spec, members, 0, true)
}

func fanoutProgram(spec FanoutSpec, members, base int, ethernet bool) ([]bpf.RawInstruction, error) {
	if base < 0 || base+members > 1<<16 {
		return nil, fmt.Errorf("failed to generate fanout BPF: base %d with %d members exceeds PACKET_FANOUT_MAX (65536)", base, members)
	}
	if members < 1 || members > 1<<16 {
		return nil, fmt.Errorf("failed to generate fanout BPF: %d members, want 1 to 65536 (PACKET_FANOUT_MAX)", members)
	}
	a := &asm{}
	vips, isVIP, err := addrGroups("VIP", spec.VIPs)
	if err != nil {
		return nil, err
	}
	vipRules, err := ruleGroups(a, "VIP", spec.VIPRules)
	if err != nil {
		return nil, err
	}
	for _, gs := range vipRules {
		for _, g := range gs {
			if !isVIP[g.addr] {
				return nil, fmt.Errorf("failed to generate fanout BPF: VIP rule for %v, which is not among the VIPs", g.addr)
			}
		}
	}
	serverRules, err := ruleGroups(a, "server", spec.ServerRules)
	if err != nil {
		return nil, err
	}
	locals, isLocal, err := addrGroups("local address", spec.Locals)
	if err != nil {
		return nil, err
	}
	for ip := range isLocal {
		if isVIP[ip] {
			return nil, fmt.Errorf("failed to generate fanout BPF: local address %v is a VIP too", ip)
		}
	}
	byPort := func(a *asm) {
		a.i(bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: uint32(members)})
		if base != 0 {
			a.i(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: uint32(base)})
		}
		a.i(bpf.RetA{})
	}

	zero, final := a.newLabel(), a.newLabel()
	// Sticky hashes, emitted once per family, side and prefix where the rules need them: the client
	// address masked to the prefix, without ports, for every frame and quote of those endpoints.
	type stickyKey struct {
		f    *family
		src  bool
		bits int
	}
	var stickyKeys []stickyKey
	stickyLbl := map[stickyKey]label{}
	sticky := func(k stickyKey) label {
		l, ok := stickyLbl[k]
		if !ok {
			l = a.newLabel()
			stickyLbl[k] = l
			stickyKeys = append(stickyKeys, k)
		}
		return l
	}
	// A rule's entry: X = memBase, then the client side by memMode (see vipSides).
	type ruleKey struct {
		f      *family
		server bool
		bits   int
	}
	var ruleKeys []ruleKey
	ruleLbl := map[ruleKey]label{}
	ruleEntry := func(f *family, server bool) func(HashRule) label {
		return func(r HashRule) label {
			k := ruleKey{f, server, r.Bits}
			l, ok := ruleLbl[k]
			if !ok {
				l = a.newLabel()
				ruleLbl[k] = l
				ruleKeys = append(ruleKeys, k)
			}
			return l
		}
	}
	// emitRules emits one family's rule entries, then the sticky hashes they jump to.
	emitRules := func(f *family) {
		for _, k := range ruleKeys {
			if k.f != f {
				continue
			}
			a.mark(ruleLbl[k])
			a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memBase}, bpf.LoadScratch{Dst: bpf.RegA, N: memMode})
			// A frame to a VIP (memMode 0) or a quote from one (1): the client is the frame's
			// source or the quote's destination; the other way round for the server side.
			src, dst := sticky(stickyKey{f, true, k.bits}), sticky(stickyKey{f, false, k.bits})
			if k.server {
				src, dst = dst, src
			}
			a.jif(bpf.JumpEqual, 0, src, dst)
		}
		for _, k := range stickyKeys {
			if k.f != f {
				continue
			}
			a.mark(stickyLbl[k])
			off := f.dstOff
			if k.src {
				off = f.srcOff
			}
			f.hashAddr(a, off, k.bits)
			a.ja(final)
		}
	}

	// The kernel hands the program the frame from the network header on, with the EtherType in
	// skb->protocol and the outer VLAN tag in metadata; a QinQ frame's inner tag is still in front.
	var entry [2]label
	for _, f := range families {
		entry[f.index] = a.newLabel()
	}
	ip := func(f *family) label { return entry[f.index] }
	if ethernet {
		inlineTags(a, ip, zero, nil) // a frame too short for a load aborts: member 0, as the kernel's
	} else {
		inner := a.newLabel()
		a.i(bpf.LoadExtension{Num: bpf.ExtProto}, bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
		etherTypes(a, ip, inner, zero)
		a.mark(inner)
		// Inner tag at the front: TCI, then the EtherType, then the IP header at 4.
		a.i(bpf.LoadAbsolute{Off: 2, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 4})
		etherTypes(a, ip, zero, zero)
	}

	for _, f := range families {
		a.mark(entry[f.index])
		var rules *sideRules
		if len(vipRules[f.index]) > 0 || len(serverRules[f.index]) > 0 {
			rules = &sideRules{vip: vipRules[f.index], server: serverRules[f.index], serverOff: f.srcOff,
				vipRule: ruleEntry(f, false), serverRule: ruleEntry(f, true)}
		}
		fanoutFamily(a, f, vips[f.index], locals[f.index], byPort, rules, zero, final)
		emitRules(f)
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

// addrGroups validates addrs (what names them in errors) and returns one group per distinct
// address, per family, sorted, and the set of the addresses (unmapped, without zone).
func addrGroups(what string, addrs []netip.Addr) (groups [2][]*addrGroup, set map[netip.Addr]bool, err error) {
	set = map[netip.Addr]bool{}
	for i, ip := range addrs {
		if !ip.IsValid() {
			return groups, nil, fmt.Errorf("failed to generate fanout BPF: %s %d is not a valid address", what, i)
		}
		ip = ip.Unmap().WithZone("")
		if !set[ip] {
			set[ip] = true
			f := familyOf(ip).index
			groups[f] = append(groups[f], &addrGroup{addr: ip})
		}
	}
	for _, gs := range groups {
		slices.SortFunc(gs, func(x, y *addrGroup) int { return x.addr.Compare(y.addr) })
	}
	return groups, set, nil
}

// fanoutFamily emits the hash of a frame of family f, X = the offset of its IP header, into
// memHash, then jumps to final; a header of another version or too short an IPv4 header jumps to
// zero. It picks the packet to hash (memBase: the frame's own IP header, or the one an ICMP error
// quotes, with memMode 1) and then runs one VIP compare tree for both, so that many VIPs cost
// their compares once. A quoted packet travelled the other way than the error: if its source is a
// VIP its client is its destination, otherwise its source.
//
// Loads past the end make the kernel (and the VM) return 0. Only a transport header at a fixed
// place is read: behind IPv6 extension headers the hash covers the address alone. An ICMPv6
// error is read only without extension headers before it, and its quote only without extension
// headers in it: otherwise the frame is hashed as any other (its client-side address alone).
//
// A frame to one of locals, or a quote from one, with ports returns by its local port through
// byPort (which ends the program with A = the port), before any hashing.
func fanoutFamily(a *asm, f *family, vips, locals []*addrGroup, byPort func(*asm), rules *sideRules, zero, final label) {
	f.checkHeader(a, 0, zero)
	a.i(
		bpf.StoreScratch{Src: bpf.RegX, N: memL3},
		bpf.StoreScratch{Src: bpf.RegX, N: memBase},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 0},
		bpf.StoreScratch{Src: bpf.RegA, N: memMode},
	)
	match, outer, icmp, quote := a.newLabel(), a.newLabel(), a.newLabel(), a.newLabel()
	a.i(bpf.LoadIndirect{Off: f.protoOff, Size: 1})
	a.jif(bpf.JumpEqual, f.icmp, icmp, match)
	a.mark(icmp)
	// Only a first (or only) fragment holds the ICMP header.
	off := f.transport(a, nonFirstFragment, outer)
	a.i(bpf.LoadIndirect{Off: off, Size: 1})
	f.isICMPError(a, quote, outer)
	a.mark(quote)
	q := off + icmpHeaderLen // the quoted header, from X
	f.checkHeader(a, q, outer)
	if f.extHeaders {
		a.i(bpf.LoadIndirect{Off: q + f.protoOff, Size: 1})
		jumpIfExtHeader(a, outer)
	}
	a.i(
		bpf.TXA{},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: q},
		bpf.StoreScratch{Src: bpf.RegA, N: memBase},
		// The tree compares [X+dstOff], the outer destination; for the quote it must see the
		// quote's source.
		bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: f.dstOff - f.srcOff},
		bpf.TAX{},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 1},
		bpf.StoreScratch{Src: bpf.RegA, N: memMode},
	)
	a.ja(match)
	a.mark(outer) // not an error this program can read: hash the frame itself
	a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memL3})
	a.mark(match)
	if len(locals) > 0 {
		localPort(a, f, locals, byPort)
	}
	if rules != nil {
		rulePorts(a, f)
	}
	src, dst := a.newLabel(), a.newLabel()
	vipSides(a, vips, f.dstOff, src, dst, rules)
	for _, side := range []struct {
		lbl           label
		addr, portOff uint32
	}{{src, f.srcOff, 0}, {dst, f.dstOff, 2}} {
		// X = memBase, the header whose side is hashed.
		a.mark(side.lbl)
		f.hashAddr(a, side.addr, -1)
		a.i(bpf.LoadIndirect{Off: f.protoOff, Size: 1})
		ports := a.newLabel()
		hasPortsProto(a, ports, final)
		a.mark(ports)
		off := f.transport(a, anyFragment, final) // a fragment: hash on the address alone
		a.i(
			bpf.LoadIndirect{Off: off + side.portOff, Size: 2},
			bpf.LoadScratch{Dst: bpf.RegX, N: memHash},
			bpf.ALUOpX{Op: bpf.ALUOpXor},
			bpf.StoreScratch{Src: bpf.RegA, N: memHash},
		)
		a.ja(final)
	}
}

// localPort emits the check for a FullNAT local address at [X+dstOff], the frame's destination or
// the quote's source (X as at fanoutFamily's match): with ports readable it ends the program
// through byPort with the local port in A (the frame's destination port, the quote's source
// port); otherwise it goes on with X as it was.
func localPort(a *asm, f *family, locals []*addrGroup, byPort func(*asm)) {
	hit, miss, restore, quote, ret := a.newLabel(), a.newLabel(), a.newLabel(), a.newLabel(), a.newLabel()
	for _, g := range locals {
		g.lbl = hit
	}
	addrMatch(a, f.dstOff, locals, miss)
	a.mark(hit)
	ports := a.newLabel()
	a.i(bpf.LoadScratch{Dst: bpf.RegX, N: memBase}, bpf.LoadIndirect{Off: f.protoOff, Size: 1})
	hasPortsProto(a, ports, restore)
	a.mark(ports)
	off := f.transport(a, anyFragment, restore)
	a.i(bpf.LoadScratch{Dst: bpf.RegA, N: memMode})
	a.jif(bpf.JumpEqual, 0, next, quote)
	a.i(bpf.LoadIndirect{Off: off + 2, Size: 2})
	a.ja(ret)
	a.mark(quote)
	a.i(bpf.LoadIndirect{Off: off, Size: 2})
	a.mark(ret)
	byPort(a)
	// X back to what the VIP tree compares: memBase - memMode * (dstOff - srcOff).
	a.mark(restore)
	a.i(
		bpf.LoadScratch{Dst: bpf.RegA, N: memMode},
		bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: f.dstOff - f.srcOff},
		bpf.TAX{},
		bpf.LoadScratch{Dst: bpf.RegA, N: memBase},
		bpf.ALUOpX{Op: bpf.ALUOpSub},
		bpf.TAX{},
	)
	a.mark(miss)
}
