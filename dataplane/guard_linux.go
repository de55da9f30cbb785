//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"

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
// It owns one nftables table, "govs" in family netdev, with one ingress chain per interface and
// one drop rule per VIP; set replaces the rules in one transaction; close deletes the table. Only
// frames to a VIP are dropped: the kernel owns no VIP, so it loses nothing it would have used.
type kernelGuard struct {
	conn   *nftables.Conn
	table  *nftables.Table
	chains []*nftables.Chain
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

// set makes the rules drop exactly the frames to vips, replacing the previous ones atomically.
func (g *kernelGuard) set(vips []netip.Addr) error {
	for _, ch := range g.chains {
		g.conn.FlushChain(ch)
		for _, vip := range vips {
			proto, off := uint16(unix.ETH_P_IP), uint32(16) // IPv4 destination address
			if vip.Is6() {
				proto, off = unix.ETH_P_IPV6, 24 // IPv6 destination address
			}
			g.conn.AddRule(&nftables.Rule{
				Table: g.table,
				Chain: ch,
				Exprs: []expr.Any{
					&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(proto)},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(vip.BitLen() / 8)},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip.AsSlice()},
					&expr.Verdict{Kind: expr.VerdictDrop},
				},
			})
		}
	}
	if err := g.conn.Flush(); err != nil {
		return fmt.Errorf("failed to set the nftables drop rules for the VIPs: %w", err)
	}
	return nil
}

// close deletes govs's table.
func (g *kernelGuard) close() {
	g.conn.DelTable(g.table)
	g.conn.Flush()
	g.conn.CloseLasting()
}
