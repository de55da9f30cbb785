//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/dataplane/xsk"
	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestAFXDP runs the forwarding suite (short connections under rr and wrr, keep-alive, bulk,
// UDP, malformed frames, weight 0, the kernel's silence) with io = "afxdp": NAT over IPv4 and
// IPv6, DR and FullNAT with the XDP program in driver (native) mode, and NAT with it in generic
// mode.
func TestAFXDP(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct{ mode, fam, method string }{
		{"driver", "ipv4", "nat"}, {"driver", "ipv6", "nat"}, {"driver", "ipv4", "dr"},
		{"driver", "ipv4", "fullnat"}, {"generic", "ipv4", "nat"},
	} {
		t.Run(c.mode+"/"+c.fam+"/"+c.method, func(t *testing.T) {
			testForwarding(t, c.fam, c.method, fmt.Sprintf("io = \"afxdp\"\nxdp_mode = %q\n", c.mode), 1, 0)
		})
	}
}

// TestAFXDPQueues runs the forwarding suite with io = "afxdp" on balancer links with two receive
// queues: the switch spreads the flows over them as a NIC's RSS would, and the one worker reads
// a socket on each (a queue left unread would lose about half the connections).
func TestAFXDPQueues(t *testing.T) {
	labtest.RequireRoot(t)
	testForwarding(t, "ipv4", "nat", "io = \"afxdp\"\n", 1, 2)
}

// TestAFXDPTunnel runs the tunnel suite (short connections, keep-alive, UDP, the kernel's
// silence, the outer headers) with io = "afxdp": IPIP and GUE over IPv4, and IPIP over IPv6.
func TestAFXDPTunnel(t *testing.T) {
	labtest.RequireRoot(t)
	for _, tc := range []struct{ fam, tunnel string }{{"ipv4", "ipip"}, {"ipv4", "gue"}, {"ipv6", "ipip"}} {
		t.Run(tc.fam+"/"+tc.tunnel, func(t *testing.T) { testTunnel(t, tc.fam, tc.tunnel, "io = \"afxdp\"\n", 1) })
	}
}

// TestAFXDPReload: with io = "afxdp" a reload that adds a service changes what the XDP program
// takes: UDP to the new service goes unanswered before (the kernel guard drops what the program
// passes) and is answered after. An HA standby
// swap uses the same path. When govs stops, its XDP programs are gone from the interfaces.
func TestAFXDPReload(t *testing.T) {
	labtest.RequireRoot(t)
	s := newTwoServiceSetup(t, "nat", "govs-xdpr", "io = \"afxdp\"\n")
	s.cfg.Workers = 1
	full := s.cfg
	s.cfg.VS = s.cfg.VS[:1] // HTTP only
	g := startGovs(t, s.topo, s.cfg)
	if st := g.mustStats(); st.IO != "afxdp" || st.XDPMode != "driver" || st.Workers != 1 {
		t.Errorf("govs stats says io %q, xdp_mode %q, %d workers; want afxdp, driver, 1", st.IO, st.XDPMode, st.Workers)
	}
	udp := netip.AddrPortFrom(s.vip, lab.UDPEchoPort)
	if _, err := getOnce(s.topo.Client.HTTPClient(false), s.baseURL+"/", 5*time.Second); err != nil {
		t.Fatalf("HTTP through the VIP: %v", err)
	}
	if reply, err := udpExchange(s.topo, udp, 300*time.Millisecond); err == nil {
		t.Fatalf("UDP to %v answered (%q) before its service exists", udp, reply)
	}
	g.reload(full)
	var err error
	for try := 0; try < 3; try++ { // a datagram may be lost on its own; three are not
		if _, err = udpExchange(s.topo, udp, time.Second); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("UDP to %v after the reload added its service: %v", udp, err)
	}
	g.stop()
	for _, ifc := range s.topo.BalancerIfaces {
		out, err := s.topo.Balancer.Command("ip", "-d", "link", "show", ifc).CombinedOutput()
		if err != nil {
			t.Fatalf("ip link show %s: %v: %s", ifc, err, out)
		}
		if strings.Contains(string(out), "prog/xdp") {
			t.Errorf("an XDP program is still attached to %s after govs stopped:\n%s", ifc, out)
		}
	}
}

// udpExchange sends one datagram from the client to target and returns the answer.
func udpExchange(topo *lab.Topology, target netip.AddrPort, wait time.Duration) (string, error) {
	c, err := topo.Client.Dial(context.Background(), "udp", target.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestAFXDPStartError: an interface that already has an XDP program stops govs at start with
// one line that names the interface and the way out, and a non-zero status.
func TestAFXDPStartError(t *testing.T) {
	labtest.RequireRoot(t)
	s := newTwoServiceSetup(t, "nat", "govs-xdpe", "io = \"afxdp\"\n")
	s.cfg.Workers = 1
	ifc := s.topo.BalancerIfaces[0]
	var other *xsk.Program
	if err := s.topo.Balancer.Do(func() (err error) {
		other, err = xsk.Attach(ifc, xsk.ModeDriver, 1)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	g := launchGovsIn(t, s.topo.Balancer, s.cfg, nil)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		t.Fatal("govs still runs 15s after start with the interface's XDP hook taken")
	}
	out := strings.TrimSpace(g.out.String())
	t.Logf("govs: %v\n%s", g.waitErr, out)
	if g.cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("govs exited with status 0")
	}
	last := out[strings.LastIndexByte(out, '\n')+1:]
	for _, want := range []string{"govs run: ", "another XDP program is attached to " + ifc, `io = "afpacket"`} {
		if !strings.Contains(last, want) {
			t.Errorf("the last line does not say %q:\n%s", want, last)
		}
	}
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Errorf("govs panicked")
	}
}

// TestDemoAFXDP: `govs demo -io afxdp` runs the demo through AF_XDP: every request and flow is
// answered, and govs logs its data plane as io afxdp.
func TestDemoAFXDP(t *testing.T) {
	labtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, govsPath, "demo", "-io", "afxdp", "-requests", "30").CombinedOutput()
	if err != nil {
		t.Fatalf("govs demo -io afxdp: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "io afxdp (XDP in driver mode; AF_XDP sockets, one a receive queue: l0: 1, l1: 1)") {
		t.Errorf("the demo's govs did not run on AF_XDP:\n%s", out)
	}
	if n := strings.Count(string(out), "failed: 0"); n != 3 {
		t.Errorf("%d of the demo's 3 runs had no failures, want 3:\n%s", n, out)
	}
}
