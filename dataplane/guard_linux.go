//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// kernelGuard keeps the kernel's IP stack away from frames addressed to a VIP.
//
// Why: AF_PACKET hands govs a copy of every frame and the kernel then goes on with the original:
// for a VIP it is not configured with, that is a route lookup, a dst entry allocated and freed
// through RCU, and an "unreachable" drop, per packet, in softirq on the CPU the worker runs on.
// Measured here under a 64-byte flood (perf: ip_route_input_slow, dst_alloc/dst_destroy, RCU
// callbacks, ip_error), that kernel work cost more CPU than govs's own. A netfilter ingress hook
// (nftables, family netdev) runs after the packet taps have put the frame in govs's rings and
// before the IP stack, so dropping VIP frames there costs the kernel next to nothing and changes
// nothing for govs. (tc ingress would do the same, but this kernel has no tc classifiers.)
//
// The same goes for NAT replies from real servers (source a real server's address and port) that
// are addressed to someone else than the balancer itself: with forwarding off the kernel can only
// fail to route them. Replies to the balancer's own addresses (its own connections to a real
// server, health checks) are left alone. A reply's later fragments have no ports (nft's transport
// header match never matches a fragment at a non-zero offset), so a second rule per real server
// drops its later fragments of that protocol not addressed to the balancer: govs forwards them
// with their first fragment (frags.go), and in the kernel each cost a failed route lookup
// (Ip.InAddrErrors, Ip6.InAddrErrors) or, with nf_defrag loaded, a slot in a reassembly queue
// whose first fragment never comes.
//
// It owns one nftables table, "govs" in family netdev, with one ingress chain per interface, one
// drop rule per VIP and two per NAT real server; set replaces the rules in one transaction; close
// deletes the table.
type kernelGuard struct {
	conn   *nftables.Conn
	table  *nftables.Table
	chains []*nftables.Chain
}

// guardSpec is what the guard drops: frames to vips, and frames from reals not addressed to locals.
type guardSpec struct {
	vips   []netip.Addr
	reals  []guardReal
	locals []netip.Addr // the balancer's own addresses
}

type guardReal struct {
	addr  netip.Addr
	proto uint8
	port  uint16 // 0: any port
}

func (s *guardSpec) equal(o *guardSpec) bool {
	return o != nil && slices.Equal(s.vips, o.vips) && slices.Equal(s.reals, o.reals) && slices.Equal(s.locals, o.locals)
}

// startGuard records this host's addresses for the workers and sets the kernel guard up for t.
// Without a guard govs still works, at the kernel's extra cost: a failure is a warning.
func (e *Engine) startGuard(t *Tables) {
	locals := localAddrs()
	e.os.hosts.store(locals)
	spec := guardSpecFor(t, locals)
	g, err := newKernelGuard(e.ifaces)
	if err == nil {
		if err = g.set(spec); err != nil {
			g.close()
		}
	}
	if err != nil {
		e.cfg.warnf("the kernel will also process every frame to a VIP (slower under load): %v", err)
		return
	}
	e.os.guard = g
	e.os.guardSpec = spec
}

// guardSpecFor lists what the kernel guard drops for t: frames to the VIPs and to FullNAT local
// addresses, draining ones included (whose replies govs forwards: the kernel must not answer them
// with a RST), and NAT replies from the real servers (those draining after a reload included)
// unless addressed to one of this host's own addresses.
func guardSpecFor(t *Tables, locals []netip.Addr) *guardSpec {
	spec := &guardSpec{locals: locals}
	seen := map[netip.Addr]bool{}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		for _, a := range append([]netip.Addr{s.VIP.Addr()}, s.Locals...) {
			if !seen[a] {
				seen[a] = true
				spec.vips = append(spec.vips, a)
			}
		}
	}
	for _, a := range t.DrainingLocals {
		if !seen[a] {
			seen[a] = true
			spec.vips = append(spec.vips, a)
		}
	}
	for _, r := range t.Reals {
		if s := t.owner(r); s != nil && s.Method == MethodNAT {
			spec.reals = append(spec.reals, guardReal{addr: r.Addr.Addr(), proto: s.Proto, port: r.Addr.Port()})
		}
	}
	return spec
}

// RefreshKernelGuard re-reads this host's addresses and updates the guard's rules if they changed
// (replies to the host's own addresses must reach the kernel), and the workers' view of them (such
// frames are counted as to_host, not dropped). The daemon calls it periodically.
func (e *Engine) RefreshKernelGuard() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.os.closed {
		return nil
	}
	locals := localAddrs()
	e.os.hosts.store(locals)
	if x := e.os.xdp; x != nil && !e.os.standby && !slices.Equal(locals, x.notTo) {
		// The XDP programs must leave replies to a new address of this host to the kernel.
		if err := e.setXDPFilter(e.tables.Load(), false, locals); err != nil {
			return err
		}
	}
	if e.os.guard == nil || e.os.guardSpec == nil {
		return nil
	}
	spec := guardSpecFor(e.tables.Load(), locals)
	if spec.equal(e.os.guardSpec) {
		return nil
	}
	if err := e.os.guard.set(spec); err != nil {
		return errorf("%w", err)
	}
	e.os.guardSpec = spec
	return nil
}

// guardTable is the nftables table govs owns (nft list table netdev govs).
const guardTable = "govs"

func newKernelGuard(ifaces []Interface) (*kernelGuard, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("failed to open nftables: %w", err)
	}
	g := &kernelGuard{conn: c, table: &nftables.Table{Family: nftables.TableFamilyNetdev, Name: guardTable}}
	// A table left by a govs that did not stop cleanly goes first.
	c.DelTable(g.table)
	c.Flush()
	c.AddTable(g.table)
	prio := nftables.ChainPriority(-500) // before any other ingress chain: the frame is ours
	for _, ifc := range ifaces {
		g.chains = append(g.chains, c.AddChain(&nftables.Chain{
			Name:     "ingress_" + ifc.Name,
			Table:    g.table,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookIngress,
			Priority: &prio,
			Device:   ifc.Name,
		}))
	}
	if err := c.Flush(); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("failed to add nftables table netdev %s with ingress chains: %w", guardTable, err)
	}
	return g, nil
}

// set makes the rules drop exactly what spec says, replacing the previous ones atomically.
func (g *kernelGuard) set(spec *guardSpec) error {
	for _, ch := range g.chains {
		g.conn.FlushChain(ch)
		for _, vip := range spec.vips {
			g.conn.AddRule(&nftables.Rule{Table: g.table, Chain: ch, Exprs: concat(
				matchAddr(vip, dstOffset(vip)),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
			)})
		}
		for _, r := range spec.reals {
			var port []expr.Any // any port
			if r.port != 0 {
				port = []expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.port)}}
			}
			g.conn.AddRule(&nftables.Rule{Table: g.table, Chain: ch, Exprs: replyRule(r, port, spec.locals)})
			if r.port != 0 { // a rule without a port drops every fragment already
				g.conn.AddRule(&nftables.Rule{Table: g.table, Chain: ch, Exprs: replyRule(r, laterFragment(r.addr), spec.locals)})
			}
		}
	}
	if err := g.conn.Flush(); err != nil {
		return fmt.Errorf("failed to set the nftables drop rules for VIPs and NAT replies: %w", err)
	}
	return nil
}

// replyRule drops frames from NAT real server r (its address and protocol) that match more and are
// not addressed to one of locals.
func replyRule(r guardReal, more []expr.Any, locals []netip.Addr) []expr.Any {
	exprs := concat(matchAddr(r.addr, srcOffset(r.addr)),
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.proto}},
		})
	exprs = append(exprs, more...)
	for _, l := range locals {
		if l.Is4() != r.addr.Is4() {
			continue
		}
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: dstOffset(l), Len: uint32(l.BitLen() / 8)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: l.AsSlice()})
	}
	return append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
}

// laterFragment matches an IP fragment at a non-zero offset of a's family: IPv4's fragment offset
// (RFC 791), or the offset in an IPv6 fragment header (next header 44, RFC 8200 §4.5); a packet
// without one does not match.
func laterFragment(a netip.Addr) []expr.Any {
	load := expr.Any(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 2})
	mask := []byte{0x1f, 0xff}
	if a.Is6() {
		load = &expr.Exthdr{DestRegister: 1, Type: 44, Offset: 2, Len: 2, Op: expr.ExthdrOpIpv6}
		mask = []byte{0xff, 0xf8}
	}
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: mask, Xor: []byte{0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0}},
	}
}

// matchAddr matches IP frames of a's family whose address at off is a.
func matchAddr(a netip.Addr, off uint32) []expr.Any {
	proto := uint16(unix.ETH_P_IP)
	if a.Is6() {
		proto = unix.ETH_P_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(proto)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(a.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// Offsets of the source and destination address in an IPv4 or IPv6 header.
func srcOffset(a netip.Addr) uint32 {
	if a.Is6() {
		return 8
	}
	return 12
}

func dstOffset(a netip.Addr) uint32 {
	if a.Is6() {
		return 24
	}
	return 16
}

func concat(a, b []expr.Any) []expr.Any { return append(a, b...) }

// localAddrs lists the addresses configured in this network namespace.
func localAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// close deletes govs's table. A table already gone (deleted by hand, say) is what close wants:
// no error.
func (g *kernelGuard) close() error {
	g.conn.DelTable(g.table)
	var errs []error
	if err := g.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("failed to delete nftables table netdev %s: %w", g.table.Name, err))
	}
	if err := g.conn.CloseLasting(); err != nil {
		errs = append(errs, fmt.Errorf("failed to close the nftables connection: %w", err))
	}
	return errors.Join(errs...)
}
