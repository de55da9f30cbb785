//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/govs/govs/internal/netnstest"
)

// TestKernelGuard installs the nftables drop rules on a veth in a namespace and reads them back
// with nft.
func TestKernelGuard(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetns(t, "guard")
	netnstest.IP(t, "-n", ns, "link", "add", "g0", "type", "veth", "peer", "name", "g1")
	netnstest.IP(t, "-n", ns, "link", "set", "g0", "up")
	var show string
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
		if err := g.set([]netip.Addr{netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:2::100")}); err != nil {
			t.Error(err)
		}
		out, err := exec.Command("nft", "list", "table", "netdev", "govs").CombinedOutput()
		if err != nil {
			t.Errorf("nft list table netdev govs: %v %s", err, out)
		}
		show = string(out)
		g.close()
		out, _ = exec.Command("nft", "list", "tables").CombinedOutput()
		if strings.Contains(string(out), "govs") {
			t.Errorf("table still there after close:\n%s", out)
		}
	})
	for _, want := range []string{`hook ingress device "g0"`, "ip daddr 198.18.0.100 drop", "ip6 daddr 2001:2::100 drop"} {
		if !strings.Contains(show, want) {
			t.Errorf("nft list table lacks %q:\n%s", want, show)
		}
	}
}
