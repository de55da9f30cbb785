//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// guePort is the real servers' GUE port in the tunnel tests.
const guePort = 6080

// TestTunnel: method tun end to end, IPv4 and IPv6, IPIP and GUE. The kernel here has no ipip, ip6tnl
// or fou module, so each real server's tunnel end is lab.TunnelDecap: it takes the encapsulated
// frames off the wire and hands the inner packet to the server's kernel through a TUN device; the
// server holds the VIP on lo and answers the client directly. Real HTTP and UDP go through the VIP
// to three real servers; the outer headers are what the contract says: from the balancer's address
// on the link to the real server, to the real server, IP protocol 4 / next header 41 for IPIP, UDP to
// tunnel_port for GUE, the flow's entropy in the GUE source port and the IPv6 flow label.
func TestTunnel(t *testing.T) {
	labtest.RequireRoot(t)
	for _, tc := range []struct{ fam, tunnel string }{
		{"ipv4", "ipip"}, {"ipv4", "gue"}, {"ipv6", "ipip"}, {"ipv6", "gue"},
	} {
		t.Run(tc.fam+"/"+tc.tunnel, func(t *testing.T) { testTunnel(t, tc.fam, tc.tunnel) })
	}
}

// tunnelSetup builds a tun topology with servers real servers, their tunnel ends and the HTTP and
// UDP servers; prepare, if not nil, runs before govs starts. It returns the setup with govs running
// (HTTP on the VIP's port 80, UDP echo on 9000, rr), the balancer's address towards the real
// servers (the tunnels' outer source) and the tunnel ends.
func tunnelSetup(t *testing.T, fam, tunnel string, servers int, prepare func(*lab.Topology, []netip.Addr)) (*setup, netip.Addr, []*lab.TunnelDecap) {
	topo := labtest.NewForTest(t, lab.Options{Method: "tun", IPv6: fam == "ipv6", Servers: servers, Prefix: "govs-e2e"})
	s := &setup{topo: topo, vip: topo.VIP4, reals: topo.ServerAddrs4}
	src := topo.BalancerL0Addr4
	if fam == "ipv6" {
		s.vip, s.reals, src = topo.VIP6, topo.ServerAddrs6, topo.BalancerL0Addr6
	}
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s.srvs = srvs
	var port uint16
	extra := ""
	if tunnel == "gue" {
		port = guePort
		extra = fmt.Sprintf("tunnel = \"gue\"\ntunnel_port = %d\n", guePort)
	}
	ends := make([]*lab.TunnelDecap, len(topo.Servers))
	for i, ns := range topo.Servers {
		d, err := lab.StartTunnelDecap(ns, lab.ServerIface, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		ends[i] = d
	}
	if prepare != nil {
		prepare(topo, s.reals)
	}
	rs := func(port uint16) []netip.AddrPort {
		out := make([]netip.AddrPort, len(s.reals))
		for i, a := range s.reals {
			out[i] = netip.AddrPortFrom(a, port)
		}
		return out
	}
	weights := make([]int, servers)
	for i := range weights {
		weights[i] = 1
	}
	s.cfg = govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		VS: []vsConfig{
			{netip.AddrPortFrom(s.vip, lab.HTTPPort), "tcp", "rr", "tun", rs(lab.HTTPPort), weights, extra, nil},
			{netip.AddrPortFrom(s.vip, lab.UDPEchoPort), "udp", "rr", "tun", rs(lab.UDPEchoPort), weights, extra, nil},
		},
	}
	s.baseURL = "http://" + netip.AddrPortFrom(s.vip, lab.HTTPPort).String()
	s.govs = startGovs(t, topo, s.cfg)
	return s, src, ends
}

func testTunnel(t *testing.T, fam, tunnel string) {
	s, src, ends := tunnelSetup(t, fam, tunnel, 3, nil)
	topo := s.topo
	before, err := topo.Balancer.SNMP()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getOnce(topo.Client.HTTPClient(false), s.baseURL+"/", 5*time.Second); err != nil {
		t.Fatalf("canary request through the VIP failed, govs does not tunnel: %v", err)
	}
	t.Run("short-conns-rr", func(t *testing.T) { s.testShortConns(t, s.baseURL, []float64{1, 1, 1}) })
	t.Run("keepalive", s.testKeepAlive)
	t.Run("udp", s.testUDP)
	t.Run("kernel-silence", func(t *testing.T) { s.testKernelSilence(t, before) })

	t.Run("outer-headers", func(t *testing.T) {
		proto := map[string]uint8{"ipv4/ipip": 4, "ipv6/ipip": 41, "ipv4/gue": 17, "ipv6/gue": 17}[fam+"/"+tunnel]
		for i, d := range ends {
			outers := d.Outers()
			if n := d.Malformed(); n != 0 {
				t.Errorf("rs%d: %d tunnel frames with a wrong outer header", i+1, n)
			}
			if len(outers) == 0 {
				t.Errorf("rs%d: nothing came through the tunnel", i+1)
				continue
			}
			ports, labels := map[uint16]bool{}, map[uint32]bool{}
			for _, o := range outers {
				if o.Src != src || o.Dst != s.reals[i] || o.Proto != proto {
					t.Fatalf("rs%d: outer %v→%v protocol %d, want %v→%v protocol %d", i+1, o.Src, o.Dst, o.Proto, src, s.reals[i], proto)
				}
				if tunnel == "gue" && (o.DstPort != guePort || o.SrcPort < 49152) {
					t.Fatalf("rs%d: GUE ports %d→%d, want an ephemeral source port → %d", i+1, o.SrcPort, o.DstPort, guePort)
				}
				if fam == "ipv6" && o.Label == 0 {
					t.Fatalf("rs%d: outer flow label 0, want the flow's entropy", i+1)
				}
				ports[o.SrcPort], labels[o.Label] = true, true
			}
			// Each server took about 100 TCP connections and 10 UDP flows: their entropy must vary.
			if tunnel == "gue" && len(ports) < 20 {
				t.Errorf("rs%d: %d packets came from %d GUE source ports; the flows' entropy does not vary", i+1, len(outers), len(ports))
			}
			if fam == "ipv6" && len(labels) < 20 {
				t.Errorf("rs%d: %d packets had %d flow labels; the flows' entropy does not vary", i+1, len(outers), len(labels))
			}
			t.Logf("rs%d: %d packets, %d GUE source ports, %d flow labels", i+1, len(outers), len(ports), len(labels))
		}
	})
	st := s.govs.mustStats()
	t.Logf("govs counters: %v drops: %v", st.Counters, st.Drops)
	s.govs.stop()
}

// TestTunnelPathMTU: the real servers' link has an MTU of 1400 and the balancer's route to them
// says so; a client whose TCP segments do not fit once encapsulated learns the MTU inside the
// tunnel from govs (fragmentation needed / packet too big) and carries on: a large upload through
// the VIP arrives intact, and so does a large download. The client's TSO super-frames are cut into
// segments for the tunnel on the way.
func TestTunnelPathMTU(t *testing.T) {
	labtest.RequireRoot(t)
	for _, tc := range []struct{ fam, tunnel string }{{"ipv4", "ipip"}, {"ipv6", "gue"}} {
		t.Run(tc.fam+"/"+tc.tunnel, func(t *testing.T) { testTunnelPathMTU(t, tc.fam, tc.tunnel) })
	}
}

func testTunnelPathMTU(t *testing.T, fam, tunnel string) {
	const linkMTU = 1400
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	s, _, ends := tunnelSetup(t, fam, tunnel, 2, func(topo *lab.Topology, reals []netip.Addr) {
		for i, ns := range topo.Servers {
			ip("-n", ns.Name, "link", "set", lab.ServerIface, "mtu", fmt.Sprint(linkMTU))
			ip("-n", topo.Switch.Name, "link", "set", fmt.Sprintf("rs%d", i+1), "mtu", fmt.Sprint(linkMTU))
			ip("-n", topo.Balancer.Name, "route", "add", netip.PrefixFrom(reals[i], reals[i].BitLen()).String(),
				"dev", topo.BalancerIfaces[0], "mtu", fmt.Sprint(linkMTU))
		}
	})
	hc := s.topo.Client.HTTPClient(false)

	const upload = 4 << 20
	body := make([]byte, upload)
	lab.FillPattern(body, 0)
	for i := range 2 { // one upload per real server (rr)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.baseURL+"/upload", strings.NewReader(string(body)))
		req.ContentLength = upload
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("upload %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusOK || string(got) != fmt.Sprintf("%d\n", upload) {
			t.Fatalf("upload %d to %s: %s %q", i, resp.Header.Get("X-Server"), resp.Status, got)
		}
		t.Logf("upload %d: %d MiB to %s intact in %v", i, upload>>20, resp.Header.Get("X-Server"), time.Since(start))
	}
	s.testBulk(t) // the download

	st := s.govs.mustStats()
	t.Logf("govs counters: %v drops: %v", st.Counters, st.Drops)
	if st.Counters["icmp_too_big_sent"] == 0 || st.Drops["tunnel_too_big"] == 0 {
		t.Errorf("icmp_too_big_sent %d, tunnel_too_big %d: the client was never told the tunnel's MTU",
			st.Counters["icmp_too_big_sent"], st.Drops["tunnel_too_big"])
	}
	for i, d := range ends {
		if n := d.Malformed(); n != 0 {
			t.Errorf("rs%d: %d tunnel frames with a wrong outer header", i+1, n)
		}
		for _, o := range d.Outers() {
			if o.Len > linkMTU {
				t.Fatalf("rs%d: an outer packet of %d bytes, over the path MTU %d", i+1, o.Len, linkMTU)
			}
		}
	}
	s.govs.stop()
}
