//go:build linux

package e2e

import (
	"fmt"
	"os/exec"
	"time"
	"testing"

	"github.com/govs/govs/lab/labtest"
)

// TestAFXDP forwards HTTP and UDP through a NAT VIP with io = "afxdp", the XDP program in
// driver (native) and in generic mode.
func TestAFXDP(t *testing.T) {
	labtest.RequireRoot(t)
	for _, mode := range []string{"driver", "generic"} {
		t.Run(mode, func(t *testing.T) {
			s := newTwoServiceSetup(t, "nat", "govs-xdp", fmt.Sprintf("io = \"afxdp\"\nxdp_mode = %q\n", mode))
			s.cfg.Workers = 1
			g := startGovsEnv(t, s.topo, s.cfg, nil)
			defer g.stop()
			go func() {
				time.Sleep(1500 * time.Millisecond)
				out, _ := exec.Command(govsPath, "stats", "-control", g.cfg.Socket).CombinedOutput()
				t.Logf("STATS\n%s", out)
				out, _ = exec.Command("ip", "netns", "exec", s.topo.Balancer.Name, "ip", "-s", "link").CombinedOutput()
				t.Logf("LINK\n%s", out)
			}()
			s.singleConn(t, 20, 0, nil)
		})
	}
}
