//go:build linux

package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestReloadPersistence runs two workers with established connections of a service without
// persistence spread over both, and reloads files that add a persistent service, switch another
// service's persistence on, change its netmask, switch it off and remove the persistent service.
// The fanout hashes each service's flows by its own rule, so no reload may move those connections
// to the worker that does not know them: each must still pass data after every reload. The
// service whose own persistence changes keeps its established connections too (its new rule waits
// for them to end, which the log says, naming it), and gets its new rule once they have.
//
// With io = "afxdp" (on links with a queue per worker) the same rules decide which worker the XDP
// program steers each frame to, and the steering program changes with the fanout's.
func TestReloadPersistence(t *testing.T) {
	labtest.RequireRoot(t)
	t.Run("afpacket", func(t *testing.T) { testReloadPersistence(t, "", 0) })
	t.Run("afxdp", func(t *testing.T) { testReloadPersistence(t, "io = \"afxdp\"\n", 2) })
}

func testReloadPersistence(t *testing.T, dataplane string, queues int) {
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 2, Prefix: "govs-pers", Queues: queues})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	for _, a := range clientAddrs {
		if out, err := topo.Client.Command("ip", "addr", "add", a.String()+"/24", "dev", lab.ClientIface).CombinedOutput(); err != nil {
			t.Fatalf("failed to add client address %s: %v %s", a, err, out)
		}
	}
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	rs := func(port uint16) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(s.reals[0], port), netip.AddrPortFrom(s.reals[1], port)}
	}
	plain := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)     // never persistent
	sticky := netip.AddrPortFrom(topo.VIP4, lab.HTTPAltPort) // its persistence changes
	other := netip.AddrPortFrom(newVIP4, lab.UDPEchoPort)    // a persistent service added, then removed
	// Closed connections must leave the counts quickly, so a waiting rule can apply.
	short := "[timeouts]\ntcp_fin = \"1s\"\ntcp_time_wait = \"1s\"\ntcp_close = \"1s\"\ntcp_close_wait = \"1s\"\ntcp_last_ack = \"1s\"\n"
	cfgWith := func(stickyExtra string, withOther bool) govsConfig {
		cfg := govsConfig{
			Interfaces: topo.BalancerIfaces,
			Workers:    2,
			Dataplane:  dataplane,
			Tail:       short,
			VS: []vsConfig{
				{plain, "tcp", "rr", "nat", rs(lab.HTTPPort), []int{1, 1}, "", nil},
				{sticky, "tcp", "rr", "nat", rs(lab.HTTPAltPort), []int{1, 1}, stickyExtra, nil},
			},
		}
		if withOther {
			// UDP: real servers of its own (services sharing a NAT real server share a rule).
			cfg.VS = append(cfg.VS, vsConfig{other, "udp", "rr", "nat", rs(lab.UDPEchoPort), []int{1, 1}, "persistence_timeout = \"60s\"\n", nil})
		}
		return cfg
	}
	g := startGovs(t, topo, cfgWith("", false))

	// Established connections of both services, spread over both workers (checked with the
	// fanout program the engine installs for services without persistence).
	type conn struct {
		c      net.Conn
		server int
		member int
	}
	open := func(target netip.AddrPort, srcs []netip.Addr, n int) []*conn {
		t.Helper()
		var out []*conn
		perMember := [2]int{}
		for i := 0; i < n || (perMember[0] == 0 || perMember[1] == 0) && i < 4*n; i++ {
			c, err := s.dialFrom(srcs[i%len(srcs)], target)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := s.request(c)
			if err != nil {
				t.Fatalf("connection %d to %s: %v", i, target, err)
			}
			m := fanoutMemberTCP(t, []netip.Addr{topo.VIP4}, netip.MustParseAddrPort(c.LocalAddr().String()), target.Port())
			perMember[m]++
			out = append(out, &conn{c, idx, m})
		}
		if perMember[0] == 0 || perMember[1] == 0 {
			t.Fatalf("%d connections to %s all on one worker (%v)", len(out), target, perMember)
		}
		t.Logf("%d connections to %s, per worker %v", len(out), target, perMember)
		return out
	}
	plainConns := open(plain, []netip.Addr{topo.ClientAddr4}, 12)
	stickyConns := open(sticky, clientAddrs, 8)
	defer func() {
		for _, c := range append(plainConns, stickyConns...) {
			c.c.Close()
		}
	}()
	exchange := func(step string, conns []*conn, target netip.AddrPort) {
		t.Helper()
		for i, c := range conns {
			c.c.SetDeadline(time.Now().Add(2 * time.Second))
			idx, err := s.request(c.c)
			if err != nil {
				t.Fatalf("after %s: established connection %d to %s (worker %d) passes no data: %v", step, i, target, c.member, err)
			}
			if idx != c.server {
				t.Fatalf("after %s: established connection %d to %s answered by %s, by %s before", step, i, target, srvs.Names[idx], srvs.Names[c.server])
			}
		}
	}
	logged := func(step, want string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(g.out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: govs did not log %q", step, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	for _, step := range []struct {
		name       string
		extra      string
		withOther  bool
		wantLogged string
	}{
		{"adding a persistent service", "", true, ""},
		{"switching persistence on for another service", "persistence_timeout = \"60s\"\n", true,
			"virtual server tcp/198.18.0.100:8080: persistence across workers (flows by client network /32) waits until its "},
		{"changing that service's persistence_netmask", "persistence_timeout = \"60s\"\npersistence_netmask = 24\n", true,
			"virtual server tcp/198.18.0.100:8080: persistence across workers (flows by client network /24) waits"},
		{"changing its persistence_timeout", "persistence_timeout = \"90s\"\npersistence_netmask = 24\n", true, ""},
		{"removing the persistent service", "persistence_timeout = \"90s\"\npersistence_netmask = 24\n", false, ""},
	} {
		g.reload(cfgWith(step.extra, step.withOther))
		exchange(step.name, plainConns, plain)
		exchange(step.name, stickyConns, sticky)
		if step.wantLogged != "" {
			logged(step.name, step.wantLogged)
		}
	}

	// Once the persistent service's connections have ended, its rule applies: one client network,
	// one real server, whatever worker each connection would have reached before.
	for _, c := range stickyConns {
		c.c.Close()
	}
	stickyConns = nil
	deadline := time.Now().Add(15 * time.Second)
	for want := "virtual server tcp/198.18.0.100:8080: workers now take its flows by client network /24, as configured"; !strings.Contains(g.out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("govs did not log %q within 15 s of the connections' end", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	first := -1
	for i := range 2 * len(clientAddrs) {
		c, err := s.dialFrom(clientAddrs[i%len(clientAddrs)], sticky)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := s.request(c)
		if err != nil {
			t.Fatalf("new connection %d to the persistent service: %v", i, err)
		}
		if first < 0 {
			first = idx
		} else if idx != first {
			t.Fatalf("connection %d from %v went to %s, earlier ones from the same /24 to %s: persistence does not hold across workers",
				i, clientAddrs[i%len(clientAddrs)], srvs.Names[idx], srvs.Names[first])
		}
		stickyConns = append(stickyConns, &conn{c, idx, -1})
	}
	exchange("the persistent rule applied", plainConns, plain)

	// Persistence off while it holds connections: they stay where they are.
	g.reload(cfgWith("", false))
	logged("switching persistence off", "virtual server tcp/198.18.0.100:8080: workers keep taking its flows by client network /24 (configured: by client address and port)")
	exchange("switching persistence off", plainConns, plain)
	exchange("switching persistence off", stickyConns, sticky)
	if st := g.mustStats(); st.Drops["no_connection"] != 0 {
		t.Errorf("govs dropped %d frames of connections it did not know (no_connection): a connection reached another worker", st.Drops["no_connection"])
	}
	g.stop()
}

// fanoutMemberTCP is the fanout member (of 2) the forward frames of a TCP connection from client
// to port vport of a VIP reach under a fanout without persistence, by running govs's fanout
// program in the x/net VM on the frame's IPv4 and TCP headers.
func fanoutMemberTCP(t *testing.T, vips []netip.Addr, client netip.AddrPort, vport uint16) int {
	t.Helper()
	raw, err := bpfgen.FanoutProgramSpec(bpfgen.FanoutSpec{VIPs: vips}, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("fanout program does not disassemble")
	}
	pkt := make([]byte, 40)
	pkt[0], pkt[9] = 0x45, 6
	copy(pkt[12:], client.Addr().Unmap().AsSlice())
	copy(pkt[16:], vips[0].AsSlice())
	binary.BigEndian.PutUint16(pkt[20:], client.Port())
	binary.BigEndian.PutUint16(pkt[22:], vport)
	pkt[32] = 5 << 4
	// The kernel runs the program from the network header with skb->protocol at instruction 0,
	// which the VM lacks.
	insns[0] = bpf.LoadConstant{Dst: bpf.RegA, Val: 0x0800}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	m, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(fmt.Errorf("fanout program in the VM: %w", err))
	}
	return m
}
