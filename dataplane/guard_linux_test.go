//go:build linux

package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/govs/govs/internal/netnstest"
)

// TestKernelGuard installs the drop rules on a veth in a namespace, reads them back over netlink
// and checks that close removes the table.
func TestKernelGuard(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetns(t, "guard")
	netnstest.IP(t, "-n", ns, "link", "add", "g0", "type", "veth", "peer", "name", "g1")
	netnstest.IP(t, "-n", ns, "link", "set", "g0", "up")
	vips := []netip.Addr{netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:2::100")}
	netnstest.InNetns(t, ns, func() {
		ifi, err := net.InterfaceByName("g0")
		if err != nil {
			t.Error(err)
			return
		}
		g, err := newKernelGuard([]Interface{{Name: "g0", Index: ifi.Index}})
		if err != nil {
			t.Error(err)
			return
		}
		// Set twice: the second set replaces the rules, it does not add to them.
		if err := g.set(&guardSpec{vips: vips[:1]}); err != nil {
			t.Error(err)
		}
		spec := &guardSpec{
			vips:   vips,
			reals:  []guardReal{{addr: netip.MustParseAddr("198.19.0.11"), proto: 6, port: 80}},
			locals: []netip.Addr{netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")},
		}
		if err := g.set(spec); err != nil {
			t.Error(err)
		}
		c, err := nftables.New()
		if err != nil {
			t.Error(err)
			return
		}
		table := &nftables.Table{Family: nftables.TableFamilyNetdev, Name: guardTable}
		chain := &nftables.Chain{Name: "ingress_g0", Table: table}
		rules, err := c.GetRules(table, chain)
		if err != nil {
			t.Errorf("failed to list the rules of netdev %s ingress_g0: %v", guardTable, err)
		}
		if len(rules) != len(vips)+2 {
			t.Errorf("%d rules, want one per VIP and two per NAT real server (%d)", len(rules), len(vips)+2)
		}
		for i, r := range rules {
			var cmps [][]byte
			var neq [][]byte
			drop := false
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Cmp:
					if e.Op == expr.CmpOpNeq {
						neq = append(neq, e.Data)
					} else {
						cmps = append(cmps, e.Data)
					}
				case *expr.Verdict:
					drop = e.Kind == expr.VerdictDrop
				}
			}
			switch {
			case !drop:
				t.Errorf("rule %d does not drop", i)
			case i < len(vips) && !bytes.Equal(cmps[len(cmps)-1], vips[i].AsSlice()):
				t.Errorf("rule %d compares %x, want VIP %v", i, cmps[len(cmps)-1], vips[i])
			case i == len(vips) && (len(neq) != 1 || !bytes.Equal(neq[0], spec.locals[0].AsSlice())):
				// The real server's rule spares replies to the host's own IPv4 address only.
				t.Errorf("real server rule spares %x, want only %v", neq, spec.locals[0])
			case i == len(vips)+1 && (len(neq) != 2 || !bytes.Equal(neq[0], []byte{0, 0}) || !bytes.Equal(neq[1], spec.locals[0].AsSlice())):
				// Its later fragments' rule: a non-zero fragment offset, and the same spared address.
				t.Errorf("real server fragment rule compares %x, want a non-zero offset and not %v", neq, spec.locals[0])
			}
		}
		g.close()
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev)
		if err != nil {
			t.Error(err)
		}
		for _, tb := range tables {
			if tb.Name == guardTable {
				t.Errorf("table %s still there after close", guardTable)
			}
		}
	})
}

// TestKernelGuardCloseGone: close of a guard whose table someone else deleted (by hand, or a
// stray govs) reports nothing: the table is gone, which is what close wants.
func TestKernelGuardCloseGone(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetns(t, "guardgone")
	netnstest.IP(t, "-n", ns, "link", "add", "g0", "type", "veth", "peer", "name", "g1")
	netnstest.IP(t, "-n", ns, "link", "set", "g0", "up")
	netnstest.InNetns(t, ns, func() {
		ifi, err := net.InterfaceByName("g0")
		if err != nil {
			t.Error(err)
			return
		}
		g, err := newKernelGuard([]Interface{{Name: "g0", Index: ifi.Index}})
		if err != nil {
			t.Error(err)
			return
		}
		c, err := nftables.New()
		if err != nil {
			t.Error(err)
			return
		}
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyNetdev, Name: guardTable})
		if err := c.Flush(); err != nil {
			t.Errorf("failed to delete the table behind the guard's back: %v", err)
		}
		if err := g.close(); err != nil {
			t.Errorf("close of a guard whose table is gone: %v", err)
		}
	})
}
