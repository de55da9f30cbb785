//go:build linux

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/lab/labtest"
)

// TestUnitCapabilities runs govs with only the capabilities contrib/govs.service leaves it
// (its CapabilityBoundingSet, through setpriv, with no_new_privs as the unit sets): it must start
// and forward, on AF_PACKET and on AF_XDP. Next-hop resolution once switched network namespaces
// to open its netlink sockets, which needs CAP_SYS_ADMIN, and the unit could not start govs.
func TestUnitCapabilities(t *testing.T) {
	labtest.RequireRoot(t)
	b, err := os.ReadFile("../../contrib/govs.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("contrib/govs.service has no CapabilityBoundingSet")
	}
	wrap := []string{"setpriv", "--bounding-set", "-all," + strings.Join(caps, ","), "--inh-caps", "-all", "--no-new-privs"}
	t.Logf("govs runs under %s", strings.Join(wrap, " "))
	for _, io := range []string{"afpacket", "afxdp"} {
		t.Run(io, func(t *testing.T) {
			s := newTwoServiceSetup(t, "nat", "govs-unit", "io = \""+io+"\"\n")
			s.cfg.Workers = 1
			g := launchGovsWrapped(t, s.topo.Balancer, s.cfg, nil, wrap)
			g.waitReady()
			if _, err := getOnce(s.topo.Client.HTTPClient(false), s.baseURL+"/", 5*time.Second); err != nil {
				t.Fatalf("HTTP through the VIP: %v", err)
			}
			g.stop()
		})
	}
}

// TestMissingCapabilities: govs run without CAP_NET_RAW (and, with io = "afxdp", without CAP_BPF)
// stops at once with one line naming what it lacks and what to do: it used to start its metrics
// endpoint, resolve next hops, warn that the kernel guard failed and only then fail on its first
// packet socket, with no word of the capability its second check needed.
func TestMissingCapabilities(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct {
		io, drop string
		wants    []string
	}{
		{"afpacket", "-net_raw", []string{"this process lacks CAP_NET_RAW, which the data plane needs", "contrib/govs.service"}},
		{"afxdp", "-bpf,-sys_admin", []string{"this process lacks CAP_BPF, which the data plane needs"}},
	} {
		t.Run(c.io, func(t *testing.T) {
			s := newTwoServiceSetup(t, "nat", "govs-caps", "io = \""+c.io+"\"\n")
			s.cfg.Workers = 1
			wrap := []string{"setpriv", "--bounding-set", c.drop, "--inh-caps", "-all"}
			g := launchGovsWrapped(t, s.topo.Balancer, s.cfg, nil, wrap)
			wantStartError(t, g, "without "+c.drop, c.wants...)
			if out := g.out.String(); strings.Contains(out, "metrics at") || strings.Contains(out, "neigh:") {
				t.Errorf("govs started parts of itself before it found the capability missing:\n%s", out)
			}
		})
	}
}
