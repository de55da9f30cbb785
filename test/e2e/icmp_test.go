//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
	"golang.org/x/net/bpf"
)

// icmpPort is a UDP port the virtual service and the real servers use, where nothing listens on
// the real servers (lab.StartServers is not even started): every datagram makes the real server's
// kernel answer ICMP port unreachable.
const icmpPort = 9001

// icmpSockets is how many connected UDP sockets (source ports) each subtest uses.
const icmpSockets = 20

// TestICMPErrorsReachClient checks that an ICMP error from a real server about a NAT connection is
// handled by the worker that owns the connection (the fanout program hashes the quoted packet's
// client side) and reaches the client rewritten to be about the VIP: a connected UDP socket of the
// client then fails with ECONNREFUSED, which the client kernel reports only when the error's
// quoted tuple matches the socket (destination VIP:port) and its outer source is the VIP. Under
// FullNAT the real server's error is about local address:port → real server and goes to the local
// address, whose worker (by local port) holds the connection: it reaches the client the same way.
func TestICMPErrorsReachClient(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"nat", "fullnat"} {
		for _, fam := range []string{"ipv4", "ipv6"} {
			name := fam
			if method != "nat" {
				name = fam + "/" + method
			}
			t.Run(name, func(t *testing.T) { testICMPErrors(t, fam, method) })
		}
	}
}

func testICMPErrors(t *testing.T, fam, method string) {
	topo := labtest.NewForTest(t, lab.Options{Method: method, IPv6: fam == "ipv6", Servers: 3, Prefix: "govs-e2e"})
	vip, reals, client := topo.VIP4, topo.ServerAddrs4, topo.ClientAddr4
	if fam == "ipv6" {
		vip, reals, client = topo.VIP6, topo.ServerAddrs6, topo.ClientAddr6
	}
	// The real servers' kernels rate-limit ICMP errors per destination (1/s with a burst of 6) and
	// globally (icmp_msgs_per_sec): all errors here go to one client, so lift the limits.
	for _, ns := range topo.Servers {
		if err := ns.SetSysctl("net.ipv4.icmp_ratelimit", "0", "net.ipv6.icmp.ratelimit", "0"); err != nil {
			t.Fatal(err)
		}
		// Per namespace on recent kernels; where not writable the defaults (1000/s, burst 50) suffice.
		if err := ns.SetSysctl("net.ipv4.icmp_msgs_per_sec", "100000", "net.ipv4.icmp_msgs_burst", "10000"); err != nil {
			t.Logf("keeping the global ICMP rate limit: %v", err)
		}
	}
	rs := make([]netip.AddrPort, len(reals))
	for i, a := range reals {
		rs[i] = netip.AddrPortFrom(a, icmpPort)
	}
	target := netip.AddrPortFrom(vip, icmpPort)
	extra := ""
	if method == "fullnat" {
		extra = (&setup{topo: topo, vip: vip}).fullnatLocals()
	}
	cfg := govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		VS:         []vsConfig{{target, "udp", "rr", method, rs, []int{1, 1, 1}, extra, nil}},
	}
	g := startGovs(t, topo, cfg)

	// Warm up: one socket per real server (rr), retried until refused, so that neighbour
	// resolution on every hop is done before the strict part.
	for i := range len(reals) {
		var last error
		for try := 0; try < 10; try++ {
			if last = udpRefused(topo, target, time.Second); last == nil {
				break
			}
		}
		if last != nil {
			t.Fatalf("warm-up socket %d never saw ECONNREFUSED from %v: %v (the ICMP port unreachable did not come back through govs)", i, target, last)
		}
	}

	before := g.mustStats()
	conns := make([]net.Conn, 0, icmpSockets)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	members := map[int]int{}
	for i := range icmpSockets {
		c, err := topo.Client.Dial(context.Background(), "udp", target.String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		src := c.LocalAddr().(*net.UDPAddr).AddrPort()
		members[fanoutMember(t, vip, netip.AddrPortFrom(client, src.Port()))]++
		if err := refused(c, fmt.Sprintf("datagram %d", i), 3*time.Second); err != nil {
			t.Errorf("socket %d (%v → %v): %v", i, src, target, err)
		}
	}
	after := g.mustStats()
	fwd := after.Counters["icmp_errors_forwarded"] - before.Counters["icmp_errors_forwarded"]
	noConn := after.Drops["icmp_no_connection"] - before.Drops["icmp_no_connection"]
	t.Logf("%d sockets over fanout members %v: icmp_errors_forwarded +%d, icmp_no_connection +%d", icmpSockets, members, fwd, noConn)
	if fwd < icmpSockets {
		t.Errorf("icmp_errors_forwarded grew by %d, want >= %d", fwd, icmpSockets)
	}
	if noConn != 0 {
		t.Errorf("icmp_no_connection grew by %d: ICMP errors reached a worker without their connection (fanout program)", noConn)
	}
	if len(members) < 2 {
		t.Errorf("all %d source ports hash to one fanout member %v: the test did not exercise both workers", icmpSockets, members)
	}
	g.stop()
}

// udpRefused opens a connected UDP socket to target from the client and expects ECONNREFUSED.
func udpRefused(topo *lab.Topology, target netip.AddrPort, wait time.Duration) error {
	c, err := topo.Client.Dial(context.Background(), "udp", target.String())
	if err != nil {
		return err
	}
	defer c.Close()
	return refused(c, "warm-up", wait)
}

// refused writes one datagram on c and requires the read to fail with ECONNREFUSED within wait.
func refused(c net.Conn, payload string, wait time.Duration) error {
	if _, err := c.Write([]byte(payload)); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("write: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	switch {
	case err == nil:
		return fmt.Errorf("read %d bytes %q, want ECONNREFUSED (nothing listens on the real servers)", n, buf[:n])
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil
	default:
		return fmt.Errorf("read: %w, want ECONNREFUSED (no ICMP port unreachable came back about VIP:%d)", err, icmpPort)
	}
}

// fanoutMember is the fanout member (of 2) the forward frames of client's flow to vip reach, by
// running govs's fanout program in the x/net VM on the frame's IP and UDP headers.
func fanoutMember(t *testing.T, vip netip.Addr, client netip.AddrPort) int {
	t.Helper()
	raw, err := bpfgen.FanoutProgramSpec(bpfgen.FanoutSpec{VIPs: []netip.Addr{vip}}, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("fanout program does not disassemble")
	}
	var pkt []byte
	proto := uint32(0x0800)
	if vip.Is4() {
		pkt = make([]byte, 28)
		pkt[0], pkt[9] = 0x45, 17
		copy(pkt[12:], client.Addr().AsSlice())
		copy(pkt[16:], vip.AsSlice())
		binary.BigEndian.PutUint16(pkt[20:], client.Port())
		binary.BigEndian.PutUint16(pkt[22:], icmpPort)
	} else {
		proto = 0x86dd
		pkt = make([]byte, 48)
		pkt[0], pkt[6] = 0x60, 17
		copy(pkt[8:], client.Addr().AsSlice())
		copy(pkt[24:], vip.AsSlice())
		binary.BigEndian.PutUint16(pkt[40:], client.Port())
		binary.BigEndian.PutUint16(pkt[42:], icmpPort)
	}
	// The kernel runs the program from the network header with skb->protocol at instruction 0,
	// which the VM lacks.
	insns[0] = bpf.LoadConstant{Dst: bpf.RegA, Val: proto}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	m, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
