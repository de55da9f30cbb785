//go:build linux

package bpfgen

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	ebpfasm "github.com/cilium/ebpf/asm"
	"github.com/cloudflare/cbpfc"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (network namespaces, AF_PACKET); CI runs as root")
		}
		t.Skip("needs root: run `sudo go test ./dataplane/bpfgen/` to load the programs into the kernel")
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func sockFprog(raw []bpf.RawInstruction) *unix.SockFprog {
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
}

// inNetns runs fn on a locked OS thread switched into the named network namespace.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked if restoring fails: the thread then dies with us
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Errorf("failed to open own netns: %v", err)
			return
		}
		defer orig.Close()
		ns, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			t.Errorf("failed to open netns %s: %v", name, err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("failed to enter netns: %v", err)
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// TestKernelFanoutAndFilter loads both programs into the kernel: two fanout members with the socket
// filter on a veth in a private namespace; each client's forward frame, NAT reply and ICMP errors
// about either direction must reach the same member, the member the x/net VM computes for the
// frame, and frames for no endpoint must reach none. It runs with the plain fanout program and
// with one whose service has a sticky hash rule (persistence by client address).
func TestKernelFanoutAndFilter(t *testing.T) {
	needRoot(t)
	vip := netip.MustParseAddr("198.19.0.1")
	plain, err := FanoutProgram([]netip.Addr{vip}, 2)
	if err != nil {
		t.Fatal(err)
	}
	sticky := HashRule{Sticky: true, Bits: 32}
	rules, err := FanoutProgramSpec(FanoutSpec{
		VIPs:        []netip.Addr{vip},
		VIPRules:    []EndpointRule{{Endpoint{vip, 6, 80}, sticky}},
		ServerRules: []EndpointRule{{Endpoint{netip.MustParseAddr("198.18.255.10"), 6, 8080}, sticky}},
	}, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("plain", func(t *testing.T) { kernelFanoutAndFilter(t, vip, plain) })
	t.Run("rules", func(t *testing.T) { kernelFanoutAndFilter(t, vip, rules) })
}

func kernelFanoutAndFilter(t *testing.T, vip netip.Addr, fanout []bpf.RawInstruction) {
	ns := fmt.Sprintf("govs-bpfgen-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	// No IPv6 on the test link: the kernel's own MLD reports (IPv6 with a hop-by-hop header, which
	// the filter passes for govs to count) would arrive among the test's frames at random times (a
	// CI run failed so).
	ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ip("-n", ns, "link", "add", "gvbA", "type", "veth", "peer", "name", "gvbB")
	ip("-n", ns, "link", "set", "gvbA", "up")
	ip("-n", ns, "link", "set", "gvbB", "up")

	filter, err := SocketFilter(FilterSpec{
		VIPs:        []Endpoint{{Addr: vip, Proto: 6, Port: 80}},
		RealServers: []Endpoint{{Addr: netip.MustParseAddr("198.18.255.10"), Proto: 6, Port: 8080}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var members [2]int
	var txFD, txIf int
	inNetns(t, ns, func() {
		b, err := net.InterfaceByName("gvbB")
		if err != nil {
			t.Errorf("gvbB: %v", err)
			return
		}
		a, _ := net.InterfaceByName("gvbA")
		for i := range members {
			s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				t.Errorf("socket: %v", err)
				return
			}
			members[i] = s
			if err := unix.SetsockoptSockFprog(s, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, sockFprog(filter)); err != nil {
				t.Errorf("SO_ATTACH_FILTER: %v", err)
				return
			}
			if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: b.Index}); err != nil {
				t.Errorf("bind: %v", err)
				return
			}
			if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_FANOUT, os.Getpid()&0xffff|unix.PACKET_FANOUT_CBPF<<16); err != nil {
				t.Errorf("PACKET_FANOUT: %v", err)
				return
			}
		}
		if err := unix.SetsockoptSockFprog(members[0], unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, sockFprog(fanout)); err != nil {
			t.Errorf("PACKET_FANOUT_DATA: %v", err)
			return
		}
		txFD, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Errorf("tx socket: %v", err)
			return
		}
		txIf = a.Index
	})
	defer func() {
		for _, s := range members {
			if s > 0 {
				unix.Close(s)
			}
		}
		if txFD > 0 {
			unix.Close(txFD)
		}
	}()
	if t.Failed() {
		return
	}
	send := func(fr []byte) {
		if err := unix.Sendto(txFD, fr, 0, &unix.SockaddrLinklayer{Ifindex: txIf, Halen: 6}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	const clients = 40
	for i := range clients {
		c := fmt.Sprintf("198.18.0.%d", i+1)
		send(frame{src: c, dst: vip.String(), proto: 6, sport: uint16(30000 + i), dport: 80}.build(t))
		send(frame{src: "198.18.255.10", dst: c, proto: 6, sport: 8080, dport: uint16(30000 + i)}.build(t))
		send(frame{src: c, dst: vip.String(), proto: 6, sport: uint16(30000 + i), dport: 81}.build(t)) // filtered
		// A router on the client side about a reply, and the real server about a forwarded packet.
		send(frame{src: "198.18.254.1", dst: vip.String(), proto: 1,
			icmp: icmpError(t, 11, frame{src: vip.String(), dst: c, proto: 6, sport: 80, dport: uint16(30000 + i)}, i%2 == 0)}.build(t))
		send(frame{src: "198.18.255.10", dst: c, proto: 1,
			icmp: icmpError(t, 3, frame{src: c, dst: "198.18.255.10", proto: 6, sport: uint16(30000 + i), dport: 8080}, false)}.build(t))
	}
	send(arpFrame(t)) // filtered

	seen := map[string]int{} // client → member
	per := [2]int{}
	deadline := time.Now().Add(2 * time.Second)
	buf := make([]byte, 2048)
	for got := 0; got < 4*clients && time.Now().Before(deadline); {
		progress := false
		for m, s := range members {
			n, _, err := unix.Recvfrom(s, buf, 0)
			if err != nil {
				continue
			}
			progress = true
			got++
			per[m]++
			fr := buf[:n]
			if vm := runFanout(t, fanout, fr); vm != m {
				t.Errorf("member %d got a frame the program, run in the x/net VM, sends to member %d: % x", m, vm, fr[:min(n, 40)])
			}
			if n < 38 || fr[12] != 8 || fr[13] != 0 {
				t.Errorf("member %d got an unexpected frame % x", m, fr[:min(n, 40)])
				continue
			}
			src, dst := netip.AddrFrom4([4]byte(fr[26:30])), netip.AddrFrom4([4]byte(fr[30:34]))
			dport := uint16(fr[36])<<8 | uint16(fr[37])
			client := src
			if dst != vip {
				client = dst
			}
			if fr[23] == 1 && n >= 42+20 { // an ICMP error: the client of the quoted packet
				src, dst = netip.AddrFrom4([4]byte(fr[42+12:42+16])), netip.AddrFrom4([4]byte(fr[42+16:42+20]))
				client = src
				if src == vip {
					client = dst
				}
			} else if dst == vip && dport != 80 {
				t.Errorf("filter let through a frame to port %d", dport)
			}
			if prev, ok := seen[client.String()]; ok && prev != m {
				t.Errorf("client %v: directions went to members %d and %d", client, prev, m)
			}
			seen[client.String()] = m
		}
		if !progress {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(seen) != clients || per[0]+per[1] != 4*clients {
		t.Errorf("saw %d clients in %d frames, want %d in %d", len(seen), per[0]+per[1], clients, 4*clients)
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("frames per member %v: fanout program not spreading", per)
	}
	// Nothing filtered may arrive late.
	time.Sleep(50 * time.Millisecond)
	for m, s := range members {
		if n, _, err := unix.Recvfrom(s, buf, 0); err == nil {
			t.Errorf("member %d got a frame the filter should drop: % x", m, buf[:min(n, 40)])
		}
	}
	t.Logf("frames per member %v", per)
}

// TestSocketFilterAsXDP compiles socket filters to eBPF the way package xsk does for its XDP
// program (cbpfc), loads them into the kernel (the verifier must accept them) and runs frames
// through them with BPF_PROG_TEST_RUN: the kernel's verdicts must be the classic filter's. It
// takes testSpec's filter with filterCases, and the filter as an XDP program has it (ndSpec)
// with ndCases.
func TestSocketFilterAsXDP(t *testing.T) {
	needRoot(t)
	nd, _ := ndCases(t)
	for _, c := range []struct {
		name  string
		spec  FilterSpec
		cases []filterCase
	}{{"testSpec", testSpec, filterCases(t)}, {"ndSpec", ndSpec(), nd}} {
		t.Run(c.name, func(t *testing.T) { checkAsXDP(t, c.spec, c.cases) })
	}
}

func checkAsXDP(t *testing.T, spec FilterSpec, cases []filterCase) {
	raw, err := SocketFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program does not disassemble")
	}
	body, err := cbpfc.ToEBPF(insns, cbpfc.EBPFOpts{
		PacketStart: ebpfasm.R7, PacketEnd: ebpfasm.R8, Result: ebpfasm.R0, ResultLabel: "verdict",
		Working: [4]ebpfasm.Register{ebpfasm.R2, ebpfasm.R3, ebpfasm.R4, ebpfasm.R5}, LabelPrefix: "filter",
	})
	if err != nil {
		t.Fatal(err)
	}
	const xdpDrop, xdpPass = 1, 2 // accepted frames are dropped here: the verdict tells them apart
	prog := ebpfasm.Instructions{
		ebpfasm.LoadMem(ebpfasm.R7, ebpfasm.R1, 0, ebpfasm.Word), // xdp_md.data
		ebpfasm.LoadMem(ebpfasm.R8, ebpfasm.R1, 4, ebpfasm.Word), // xdp_md.data_end
	}
	prog = append(prog, body...)
	prog = append(prog,
		ebpfasm.JEq.Imm(ebpfasm.R0, 0, "pass").WithSymbol("verdict"),
		ebpfasm.Mov.Imm(ebpfasm.R0, xdpDrop),
		ebpfasm.Return(),
		ebpfasm.Mov.Imm(ebpfasm.R0, xdpPass).WithSymbol("pass"),
		ebpfasm.Return(),
	)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual MIT/GPL", Instructions: prog})
	if err != nil {
		t.Fatalf("the kernel refuses the compiled filter: %v", err)
	}
	defer p.Close()
	t.Logf("%d classic instructions, %d eBPF", len(raw), len(prog))
	for _, tt := range cases {
		if len(tt.frame) < 14 {
			continue // BPF_PROG_TEST_RUN wants an Ethernet header; no device delivers less
		}
		verdict, err := p.Run(&ebpf.RunOptions{Data: tt.frame})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := verdict == xdpDrop; got != tt.accept {
			t.Errorf("%s: XDP accepts = %v (verdict %d), the classic filter %v", tt.name, got, verdict, tt.accept)
		}
	}
}
