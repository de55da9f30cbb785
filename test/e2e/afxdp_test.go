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

// TestAFXDPWorkers runs the forwarding suite with io = "afxdp" and several workers on balancer
// links with a queue per worker or more: the switch spreads flows over the queues by a hash of
// their addresses and ports, as a NIC's RSS does, so a NAT connection's reply often arrives at
// another worker's socket than its request. Every connection must still work (NAT and FullNAT,
// IPv4 and IPv6; two workers on two queues, three on four, so that one worker reads two): the XDP
// program marks each frame with its connection's worker and the worker that reads it hands it
// over (handed_off counts them; none may be lost to a full ring). After idle spells, when the
// workers sleep, a handed frame must wake its worker at once (idle-wake).
func TestAFXDPWorkers(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct {
		fam, method     string
		workers, queues int
	}{{"ipv4", "nat", 2, 2}, {"ipv6", "nat", 2, 2}, {"ipv4", "fullnat", 2, 2}, {"ipv4", "nat", 3, 4}} {
		t.Run(fmt.Sprintf("%s/%s/workers=%d,queues=%d", c.fam, c.method, c.workers, c.queues), func(t *testing.T) {
			st := testForwarding(t, c.fam, c.method, "io = \"afxdp\"\n", c.workers, c.queues, namedTest{"idle-wake", testIdleWake})
			if st.Workers != c.workers || st.Counters["handed_off"] == 0 || st.Drops["handoff_full"] != 0 {
				t.Errorf("workers %d, handed_off %d, handoff_full drops %d: want %d workers that handed frames over, and no drop",
					st.Workers, st.Counters["handed_off"], st.Drops["handoff_full"], c.workers)
			}
			for _, c := range []string{"rx_ring_latency", "rx_mode_switches"} {
				if _, ok := st.Counters[c]; ok {
					t.Errorf("govs stats has AF_PACKET's %s with io = \"afxdp\"", c)
				}
			}
		})
	}
}

// testIdleWake sends one UDP datagram of a new flow through the VIP after each of 20 idle spells
// long enough for every worker to sleep: most flows have a frame handed from one worker to
// another, which must wake it. A worker that is not woken finds the frame when its poll(2) times
// out (dataplane's pollTimeout, 100 ms): most of those answers would take over 30 ms, where a
// woken worker answers within a millisecond or two.
func testIdleWake(t *testing.T, s *setup) {
	target := netip.AddrPortFrom(s.vip, lab.UDPEchoPort)
	var slow []time.Duration
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		start := time.Now()
		if _, err := udpExchange(s.topo, target, 2*time.Second); err != nil {
			t.Fatalf("UDP to %v after an idle spell: %v", target, err)
		}
		if d := time.Since(start); d > 30*time.Millisecond {
			slow = append(slow, d)
		}
	}
	if len(slow) > 4 {
		t.Errorf("%d of 20 answers after an idle spell took over 30 ms (%v): a worker handed a frame sleeps on", len(slow), slow)
	}
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
	wantStartError(t, launchGovsIn(t, s.topo.Balancer, s.cfg, nil), "with the interface's XDP hook taken",
		"another XDP program is attached to "+ifc, `io = "afpacket"`)
}

// wantStartError waits for g to stop at start (why names what should have stopped it) and wants a
// non-zero status, no panic, and a last line that says each of wants.
func wantStartError(t *testing.T, g *govsProc, why string, wants ...string) {
	t.Helper()
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("govs still runs 15s after start %s", why)
	}
	out := strings.TrimSpace(g.out.String())
	t.Logf("govs: %v\n%s", g.waitErr, out)
	if g.cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("govs exited with status 0")
	}
	last := out[strings.LastIndexByte(out, '\n')+1:]
	for _, want := range append([]string{"govs run: "}, wants...) {
		if !strings.Contains(last, want) {
			t.Errorf("the last line does not say %q:\n%s", want, last)
		}
	}
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Errorf("govs panicked")
	}
}

// TestAFXDPTooFewQueues: with io = "afxdp" each worker needs a receive queue of its own on every
// interface; two workers on single-queue links stop govs at start with one line that says so,
// at the workers line of the file, and how to fix it. govs check-config on the host says the same.
func TestAFXDPTooFewQueues(t *testing.T) {
	labtest.RequireRoot(t)
	s := newTwoServiceSetup(t, "nat", "govs-xdpq", "io = \"afxdp\"\n")
	s.cfg.Workers = 2
	wants := []string{"govs.toml:", "dataplane.workers: is 2, but interface l0 has 1 receive queue(s)", "ethtool -L l0", "or set workers = 1"}
	g := launchGovsIn(t, s.topo.Balancer, s.cfg, nil)
	wantStartError(t, g, "with two workers on single-queue links", wants...)
	out, err := s.topo.Balancer.Command(govsPath, "check-config", g.cfgPath).CombinedOutput()
	if err == nil {
		t.Errorf("govs check-config passed two workers on single-queue links:\n%s", out)
	}
	for _, want := range wants {
		if !strings.Contains(string(out), want) {
			t.Errorf("govs check-config does not say %q:\n%s", want, out)
		}
	}
}

// TestDemoAFXDP: `govs demo -io afxdp` runs the demo through AF_XDP with its two workers, each
// with a queue of its own on both balancer links: every request and flow is answered, and govs
// logs its data plane as io afxdp.
func TestDemoAFXDP(t *testing.T) {
	labtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, govsPath, "demo", "-io", "afxdp", "-requests", "30").CombinedOutput()
	if err != nil {
		t.Fatalf("govs demo -io afxdp: %v\n%s", err, out)
	}
	for _, want := range []string{"data plane: 2 worker(s) on [l0 l1]", "io afxdp (XDP in driver mode; AF_XDP sockets, one per receive queue: l0: 2, l1: 2)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's govs did not log %q:\n%s", want, out)
		}
	}
	if n := strings.Count(string(out), "failed: 0"); n != 3 {
		t.Errorf("%d of the demo's 3 runs had no failures, want 3:\n%s", n, out)
	}
}

// TestAFXDPIRQDefer: xdp_irq_defer = "50us" defers the interfaces' NAPI runs while govs runs
// (napi_defer_hard_irqs 2, gro_flush_timeout 50000 ns on both links; govs stats says so), traffic
// passes, and govs puts the interfaces' own values back when it stops. With "auto" and only a
// few requests, the values stay the interfaces' own.
func TestAFXDPIRQDefer(t *testing.T) {
	labtest.RequireRoot(t)
	for _, c := range []struct {
		mode   string
		defers bool
	}{{"50us", true}, {"auto", false}} {
		t.Run(c.mode, func(t *testing.T) {
			s := newTwoServiceSetup(t, "nat", "govs-xdpirq", fmt.Sprintf("io = \"afxdp\"\nxdp_irq_defer = %q\n", c.mode))
			s.cfg.Workers = 1
			settings := func() string {
				t.Helper()
				var all []string
				for _, ifc := range s.topo.BalancerIfaces {
					out, err := s.topo.Balancer.Command("cat", "/sys/class/net/"+ifc+"/napi_defer_hard_irqs", "/sys/class/net/"+ifc+"/gro_flush_timeout").CombinedOutput()
					if err != nil {
						t.Fatalf("reading %s's NAPI settings: %v: %s", ifc, err, out)
					}
					all = append(all, strings.Join(strings.Fields(string(out)), " "))
				}
				return strings.Join(all, ", ")
			}
			orig := settings()
			g := startGovs(t, s.topo, s.cfg)
			for range 5 {
				if _, err := getOnce(s.topo.Client.HTTPClient(false), s.baseURL+"/", 5*time.Second); err != nil {
					t.Fatalf("HTTP through the VIP: %v", err)
				}
			}
			want := orig
			if c.defers {
				want = "2 50000, 2 50000"
			}
			if got := settings(); got != want {
				t.Errorf("NAPI settings (napi_defer_hard_irqs gro_flush_timeout) of %v while govs runs: %s, want %s", s.topo.BalancerIfaces, got, want)
			}
			if st := g.mustStats(); st.XDPIRQDefer != c.mode || st.XDPIRQDeferOn != c.defers {
				t.Errorf("govs stats: xdp_irq_defer %q, on %v; want %q, %v", st.XDPIRQDefer, st.XDPIRQDeferOn, c.mode, c.defers)
			}
			g.stop()
			if got := settings(); got != orig {
				t.Errorf("NAPI settings after govs stopped: %s, want the interfaces' own %s", got, orig)
			}
		})
	}
}
