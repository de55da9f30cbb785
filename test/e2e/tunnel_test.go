//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
		t.Run(tc.fam+"/"+tc.tunnel, func(t *testing.T) { testTunnel(t, tc.fam, tc.tunnel, "", 2) })
	}
}

// tunnelSetup builds a tun topology with servers real servers, their tunnel ends and the HTTP and
// UDP servers; prepare, if not nil, runs before govs starts, and may give a real server another
// address (in reals, which govs is then configured with). It returns the setup with govs running
// (HTTP on the VIP's port 80, UDP echo on 9000, rr), the balancer's address towards the real
// servers (the tunnels' outer source) and the tunnel ends.
func tunnelSetup(t *testing.T, fam, tunnel string, servers int, prepare func(*lab.Topology, []netip.Addr)) (*setup, netip.Addr, []*lab.TunnelDecap) {
	return tunnelSetupDataplane(t, fam, tunnel, servers, prepare, "", 2)
}

// tunnelSetupDataplane is tunnelSetup with govs's [dataplane] extra lines dataplane and workers
// workers.
func tunnelSetupDataplane(t *testing.T, fam, tunnel string, servers int, prepare func(*lab.Topology, []netip.Addr), dataplane string, workers int) (*setup, netip.Addr, []*lab.TunnelDecap) {
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
		Workers:    workers,
		Dataplane:  dataplane,
		VS: []vsConfig{
			{netip.AddrPortFrom(s.vip, lab.HTTPPort), "tcp", "rr", "tun", rs(lab.HTTPPort), weights, extra, nil},
			{netip.AddrPortFrom(s.vip, lab.UDPEchoPort), "udp", "rr", "tun", rs(lab.UDPEchoPort), weights, extra, nil},
		},
	}
	s.baseURL = "http://" + netip.AddrPortFrom(s.vip, lab.HTTPPort).String()
	s.govs = startGovs(t, topo, s.cfg)
	return s, src, ends
}

// testTunnel runs the tunnel suite with govs's [dataplane] extra lines dataplane and workers workers.
func testTunnel(t *testing.T, fam, tunnel, dataplane string, workers int) {
	s, src, ends := tunnelSetupDataplane(t, fam, tunnel, 3, nil, dataplane, workers)
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
	wantPort := 0
	if tunnel == "gue" {
		wantPort = guePort
	}
	for _, vs := range st.VirtualServers {
		if vs.Tunnel != tunnel || vs.TunnelPort != wantPort {
			t.Errorf("govs stats: %s/%s tunnel %q port %d, want %q %d", vs.Protocol, vs.Address, vs.Tunnel, vs.TunnelPort, tunnel, wantPort)
		}
	}
	s.govs.stop()
}

// TestTunnelPathMTU: the real servers' link has an MTU of 1400 and the balancer's route to them
// says so; a client whose TCP segments do not fit once encapsulated learns the MTU inside the
// tunnel from govs (fragmentation needed / packet too big) and carries on: a large upload through
// the VIP arrives intact, and so does a large download. The client's TSO super-frames are cut into
// segments for the tunnel on the way. What govs puts on the wire is watched at the balancer's
// switch port, where a frame over 1400 bytes would still be seen (the real servers' narrower link
// drops it silently): none is, and full-size ones are. IPv4 UDP datagrams without DF larger than
// the tunnel's MTU (1400 to 3000 bytes) are cut into inner fragments that fit, and each echo
// comes back whole.
func TestTunnelPathMTU(t *testing.T) { runPathMTUCases(t, testTunnelPathMTU) }

// runPathMTUCases runs test as subtests for IPv4 with IPIP and IPv6 with GUE: between them every
// family and encapsulation, and the outer headers of either size.
func runPathMTUCases(t *testing.T, test func(t *testing.T, fam, tunnel string)) {
	labtest.RequireRoot(t)
	for _, tc := range []struct{ fam, tunnel string }{{"ipv4", "ipip"}, {"ipv6", "gue"}} {
		t.Run(tc.fam+"/"+tc.tunnel, func(t *testing.T) { test(t, tc.fam, tc.tunnel) })
	}
}

func testTunnelPathMTU(t *testing.T, fam, tunnel string) {
	const linkMTU = 1400
	ip := func(args ...string) { t.Helper(); runIP(t, args...) }
	var tap *lab.TunnelDecap
	var guePortTap uint16
	if tunnel == "gue" {
		guePortTap = guePort
	}
	s, _, ends := tunnelSetup(t, fam, tunnel, 2, func(topo *lab.Topology, reals []netip.Addr) {
		for i, ns := range topo.Servers {
			ip("-n", ns.Name, "link", "set", lab.ServerIface, "mtu", fmt.Sprint(linkMTU))
			ip("-n", topo.Switch.Name, "link", "set", fmt.Sprintf("rs%d", i+1), "mtu", fmt.Sprint(linkMTU))
			ip("-n", topo.Balancer.Name, "route", "add", netip.PrefixFrom(reals[i], reals[i].BitLen()).String(),
				"dev", topo.BalancerIfaces[0], "mtu", fmt.Sprint(linkMTU))
		}
		var err error
		if tap, err = lab.StartTunnelTap(topo.Switch, "lb0", guePortTap); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tap.Close() })
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
	if fam == "ipv4" {
		t.Run("udp-no-df", func(t *testing.T) { testTunnelNoDF(t, s, linkMTU) })
	}

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
	}
	// What left the balancer: never over the path MTU, and full-size packets filled it.
	if n := tap.Malformed(); n != 0 {
		t.Errorf("%d frames from the balancer with a wrong outer header (or outer fragments)", n)
	}
	largest := 0
	for _, o := range tap.Outers() {
		if o.Len > linkMTU {
			t.Fatalf("govs sent an outer packet of %d bytes %v→%v, over the path MTU %d", o.Len, o.Src, o.Dst, linkMTU)
		}
		largest = max(largest, o.Len)
	}
	if largest < linkMTU-100 {
		t.Errorf("the largest outer packet govs sent was %d bytes: the transfers did not fill the %d-byte path", largest, linkMTU)
	}
	t.Logf("%d tunnel packets from the balancer, the largest %d bytes", len(tap.Outers()), largest)
	s.govs.stop()
}

// testTunnelNoDF sends IPv4 UDP datagrams without DF, larger than the tunnel's room inside
// pathMTU, from one socket to the VIP's echo port: each comes back whole, so the real server got
// the whole datagram; govs cut them (tunnel_fragmented), and the tunnel end saw no outer packet
// with DF among them.
func testTunnelNoDF(t *testing.T, s *setup, pathMTU int) {
	before := s.govs.mustStats().Counters["tunnel_fragmented"]
	c, err := s.topo.Client.Dial(context.Background(), "udp4", netip.AddrPortFrom(s.vip, lab.UDPEchoPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		// No DF, and fragments sized by the interface's MTU (1500), not by the path MTU that govs
		// told this client during the upload: the datagrams reach govs larger than the tunnel.
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_OMIT)
	}); err != nil || serr != nil {
		t.Fatalf("IP_MTU_DISCOVER: %v %v", err, serr)
	}
	buf := make([]byte, 1<<16)
	sizes := []int{pathMTU - 20 - 8 - 20, pathMTU, 1472, 3000} // the first fits exactly (IPIP adds 20 bytes)
	for _, size := range sizes {
		payload := make([]byte, size)
		lab.FillPattern(payload, int64(size))
		ok := false
		for try := 0; try < 3 && !ok; try++ {
			if _, err := c.Write(payload); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				// The echo server answers "rsN:" and the payload.
				if _, p, found := bytes.Cut(buf[:n], []byte(":")); found && bytes.Equal(p, payload) {
					ok = true
					break
				}
			}
		}
		if !ok {
			t.Fatalf("a %d-byte datagram without DF did not come back whole through the tunnel", size)
		}
	}
	if got := s.govs.mustStats().Counters["tunnel_fragmented"] - before; got < int64(len(sizes)-1) {
		t.Errorf("tunnel_fragmented +%d, want at least %d (every datagram but the first)", got, len(sizes)-1)
	}
}

// TestTunnelRouterPMTU: a router between the balancer and the real server has a narrower link (MTU
// 1400) on the real server's side than the balancer's (1500), which the balancer's route does not
// know. The router drops a tunnelled packet that does not fit it (DF copied from the client's
// IPv4 packet; IPv6 is not fragmented on the way) and tells the balancer, ICMP fragmentation
// needed / packet too big about the outer packet; govs learns the path MTU from it and tells the
// client the MTU left inside the tunnel, so a large upload through the VIP completes, as does a
// download; govs list -json shows the learned path_mtu, and still after a reload. Without the
// learning the upload stalls: the router's errors reach nobody who can act.
func TestTunnelRouterPMTU(t *testing.T) { runPathMTUCases(t, testTunnelRouterPMTU) }

func testTunnelRouterPMTU(t *testing.T, fam, tunnel string) {
	const farMTU = 1400
	s, _, _ := tunnelSetup(t, fam, tunnel, 1, func(topo *lab.Topology, reals []netip.Addr) {
		reals[0] = routeThroughRouter(t, topo, fam == "ipv6", farMTU)
	})
	hc := s.topo.Client.HTTPClient(false)
	const upload = 4 << 20
	body := make([]byte, upload)
	lab.FillPattern(body, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.baseURL+"/upload", bytes.NewReader(body))
	req.ContentLength = upload
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		st := s.govs.mustStats()
		t.Fatalf("upload through a router with a narrower far link: %v (counters %v)", err, st.Counters)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != fmt.Sprintf("%d\n", upload) {
		t.Fatalf("upload: %s %q", resp.Status, got)
	}
	t.Logf("upload: %d MiB intact in %v", upload>>20, time.Since(start))
	s.testBulk(t) // the download: the real server answers the client through the router directly

	st := s.govs.mustStats()
	t.Logf("govs counters: %v drops: %v", st.Counters, st.Drops)
	if st.Counters["tunnel_pmtu_learned"] == 0 || st.Counters["icmp_too_big_sent"] == 0 || st.Counters["tunnel_pmtu_ignored"] != 0 {
		t.Errorf("tunnel_pmtu_learned %d, icmp_too_big_sent %d, tunnel_pmtu_ignored %d: want the router's MTU learned and told to the client, none ignored",
			st.Counters["tunnel_pmtu_learned"], st.Counters["icmp_too_big_sent"], st.Counters["tunnel_pmtu_ignored"])
	}
	if mtu := s.govs.pathMTU(t, s.reals[0]); mtu != farMTU {
		t.Errorf("govs list -json: path_mtu %d for %v, want the router's %d", mtu, s.reals[0], farMTU)
	}
	// A reload that changes the real server (its weight) publishes new tables, which keep what
	// was learned: the path did not change.
	cfg := s.cfg
	cfg.VS = append([]vsConfig(nil), cfg.VS...)
	cfg.VS[0].Weights = []int{2}
	s.govs.reload(cfg)
	if mtu := s.govs.pathMTU(t, s.reals[0]); mtu != farMTU {
		t.Errorf("after a reload: path_mtu %d for %v, want the learned %d", mtu, s.reals[0], farMTU)
	}
	s.govs.stop()
}

// routeThroughRouter moves the topology's first real server behind a router namespace: the router
// has a leg on the client segment (br0, MTU 1500) and the real server's link (MTU farMTU) on the
// other side, a subnet of its own; the real server's default route and the balancer's route to
// that subnet go through the router. It returns the real server's new address.
func routeThroughRouter(t *testing.T, topo *lab.Topology, v6 bool, farMTU int) netip.Addr {
	t.Helper()
	run := func(args ...string) { t.Helper(); runIP(t, args...) }
	rt := strings.TrimSuffix(topo.Switch.Name, "-sw") + "-rt"
	sw, rs, lb := topo.Switch.Name, topo.Servers[0].Name, topo.Balancer.Name
	run("netns", "add", rt)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", rt).Run() })
	run("-n", rt, "link", "set", "lo", "up")
	run("netns", "exec", rt, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	run("-n", sw, "link", "add", "rt0", "type", "veth", "peer", "name", "r0", "netns", rt)
	run("-n", sw, "link", "set", "rt0", "master", "br0", "up")
	run("-n", rt, "link", "set", "r0", "up")
	// The real server's switch port becomes the router's far leg.
	run("-n", sw, "link", "set", "rs1", "nomaster")
	run("-n", sw, "link", "set", "rs1", "netns", rt)
	run("-n", rt, "link", "set", "rs1", "mtu", fmt.Sprint(farMTU), "up")
	run("-n", rs, "link", "set", lab.ServerIface, "mtu", fmt.Sprint(farMTU))
	near, far, gw, old, addr, bits := "198.18.0.254", "198.18.3.0/24", "198.18.3.1", topo.ServerAddrs4[0], netip.MustParseAddr("198.18.3.11"), 24
	if v6 {
		near, far, gw, old, addr, bits = "2001:2::fe", "2001:2:0:3::/64", "2001:2:0:3::1", topo.ServerAddrs6[0], netip.MustParseAddr("2001:2:0:3::11"), 64
	}
	fam := "-4"
	if v6 {
		fam = "-6"
	}
	nodad := func(args ...string) []string {
		if v6 {
			return append(args, "nodad")
		}
		return args
	}
	run(nodad("-n", rt, "addr", "add", near+"/"+fmt.Sprint(bits), "dev", "r0")...)
	run(nodad("-n", rt, "addr", "add", gw+"/"+fmt.Sprint(bits), "dev", "rs1")...)
	run("-n", rs, "addr", "del", netip.PrefixFrom(old, bits).String(), "dev", lab.ServerIface)
	run(nodad("-n", rs, "addr", "add", netip.PrefixFrom(addr, bits).String(), "dev", lab.ServerIface)...)
	run("-n", rs, fam, "route", "add", "default", "via", gw)
	run("-n", lb, fam, "route", "add", far, "via", near, "dev", topo.BalancerIfaces[0])
	return addr
}

// runIP runs the ip tool with args (naming the test's own namespaces), failing the test if it fails.
func runIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pathMTU returns the path_mtu govs list -json shows for real server addr (any service, any port).
func (g *govsProc) pathMTU(t *testing.T, addr netip.Addr) int {
	t.Helper()
	out, stderr, err := govsCLI("list", "-json", "-config", g.cfgPath)
	if err != nil {
		t.Fatalf("govs list -json: %v: %s", err, stderr)
	}
	var l struct {
		VirtualServers []struct {
			RealServers []struct {
				Address string `json:"address"`
				PathMTU int    `json:"path_mtu"`
			} `json:"real_servers"`
		} `json:"virtual_servers"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("govs list -json: %v\n%s", err, out)
	}
	for _, v := range l.VirtualServers {
		for _, r := range v.RealServers {
			if ap, err := netip.ParseAddrPort(r.Address); err == nil && ap.Addr() == addr {
				return r.PathMTU
			}
		}
	}
	t.Fatalf("govs list -json has no real server %v:\n%s", addr, out)
	return 0
}
