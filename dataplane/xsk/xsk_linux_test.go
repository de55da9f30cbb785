//go:build linux

package xsk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/internal/netnstest"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// veth is a veth pair between two fresh namespaces without IPv6 (the kernel's own IPv6
// messages would arrive at random), both ends up.
type veth struct {
	nsA, nsB, a, b string
}

func newVeth(t *testing.T) veth {
	t.Helper()
	netnstest.RequireRoot(t)
	v := veth{nsA: netnstest.NewNetns(t, "xska"), nsB: netnstest.NewNetns(t, "xskb")}
	netnstest.NoIPv6(t, v.nsA)
	netnstest.NoIPv6(t, v.nsB)
	v.a, v.b = netnstest.Veth(t, v.nsA, v.nsB, "x")
	return v
}

// attach puts a program with filter on v.b in mode and registers a socket of cfg (its Interface
// set to v.b) for queue 0, both closed at the test's end; it returns them with the MAC addresses
// of v.a and v.b.
func (v veth) attach(t *testing.T, mode Mode, filter []bpf.Instruction, cfg Config) (p *Program, s *Socket, aMAC, bMAC net.HardwareAddr) {
	t.Helper()
	netnstest.Do(t, v.nsB, func() error {
		ifc, err := net.InterfaceByName(v.b)
		if err != nil {
			return err
		}
		bMAC = ifc.HardwareAddr
		if p, err = AttachFilter(v.b, mode, 1, filter); err != nil {
			return err
		}
		t.Cleanup(func() { p.Close() })
		cfg.Interface = v.b
		if s, err = Open(cfg); err != nil {
			return err
		}
		t.Cleanup(func() { s.Close() })
		return p.Register(0, s)
	})
	netnstest.Do(t, v.nsA, func() error {
		ifc, err := net.InterfaceByName(v.a)
		aMAC = ifc.HardwareAddr
		return err
	})
	return p, s, aMAC, bMAC
}

// rawSock is a plain AF_PACKET socket on one interface: the test's frame source and sink.
type rawSock struct {
	fd      int
	ifindex int
}

func openRaw(t *testing.T, ns, ifname string) *rawSock {
	t.Helper()
	r := &rawSock{}
	netnstest.Do(t, ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		r.ifindex = ifc.Index
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	})
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSock) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex}); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// recv returns the next frame that matches keep, failing after 2 s.
func (r *rawSock) recv(t *testing.T, keep func([]byte) bool) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err == nil && keep(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	t.Fatal("no matching frame within 2s")
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpFrame is an Ethernet/IPv4/UDP frame from 198.18.0.1:port to 198.18.0.2:9000.
func udpFrame(dst, src net.HardwareAddr, port uint16, payload string) []byte {
	f := make([]byte, 42+len(payload))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	s = s&0xffff + s>>16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(s&0xffff+s>>16))
	binary.BigEndian.PutUint16(f[34:], port)
	binary.BigEndian.PutUint16(f[36:], 9000)
	binary.BigEndian.PutUint16(f[38:], uint16(8+len(payload)))
	copy(f[42:], payload)
	return f
}

func arpFrame(src net.HardwareAddr) []byte {
	f := make([]byte, 42)
	copy(f[0:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	copy(f[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	return f
}

// waitRx polls s until RxBatch returns frames, failing after 2 s.
func waitRx(t *testing.T, s *Socket, fs [][]byte) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := s.RxBatch(fs); n > 0 {
			return n
		}
		s.Poke() // with BusyPoll, runs the NAPI here; otherwise a no-op for copy mode
		if n := s.RxBatch(fs); n > 0 {
			return n
		}
		pfd := []unix.PollFd{{Fd: int32(s.Fd()), Events: unix.POLLIN}}
		_, _ = unix.Poll(pfd, 100)
	}
	t.Fatal("the XSK received nothing within 2s")
	return 0
}

// TestReceiveAndTransmit sends IPv4 and ARP frames into a veth end with the program attached
// (driver and generic mode, and driver mode with the socket busy-polling):
// the IPv4 frames reach the socket whole and in order, ARP does not (it goes to the kernel);
// frames sent through the socket come out of the peer unchanged; the frames go round the UMEM
// many times (fill ring refilled, TX frames reclaimed) without an allocation.
func TestReceiveAndTransmit(t *testing.T) {
	for _, c := range []struct {
		mode     Mode
		busyPoll int
	}{{ModeDriver, 0}, {ModeGeneric, 0}, {ModeDriver, 50}} {
		mode := c.mode
		name := mode.String()
		if c.busyPoll > 0 {
			name += "-busypoll"
		}
		t.Run(name, func(t *testing.T) {
			v := newVeth(t)
			peer := openRaw(t, v.nsA, v.a)
			_, s, aMAC, bMAC := v.attach(t, mode, ipv4Only, Config{RxFrames: 64, TxFrames: 64, BusyPoll: c.busyPoll})

			peer.send(t, arpFrame(aMAC))
			var want [][]byte
			for i := 0; i < 3; i++ {
				f := udpFrame(bMAC, aMAC, uint16(1000+i), fmt.Sprintf("frame %d", i))
				want = append(want, f)
				peer.send(t, f)
			}
			fs := make([][]byte, 8)
			var got [][]byte
			for len(got) < len(want) {
				n := waitRx(t, s, fs)
				for _, f := range fs[:n] {
					got = append(got, append([]byte(nil), f...))
				}
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("frame %d: got % x, want % x", i, got[i], want[i])
				}
			}
			if n := s.RxBatch(fs); n != 0 {
				t.Fatalf("%d more frames than sent (the ARP frame must go to the kernel): % x", n, fs[0])
			}

			out := udpFrame(aMAC, bMAC, 4242, "from the XSK")
			frame := s.TxFrame()
			copy(frame, out)
			s.TxCommit(len(out))
			if _, err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := peer.recv(t, func(f []byte) bool { return bytes.Contains(f, []byte("from the XSK")) }); !bytes.Equal(got, out) {
				t.Fatalf("sent % x, the peer got % x", out, got)
			}

			// Round trips: 300 frames through a 64-frame UMEM half each way, counting allocations.
			echo := udpFrame(bMAC, aMAC, 5000, "again")
			allocs := 0.0
			for i := 0; i < 300; i++ {
				peer.send(t, echo)
				n := waitRx(t, s, fs)
				allocs += testing.AllocsPerRun(1, func() {
					for _, f := range fs[:n] {
						tx := s.TxFrame()
						if tx == nil {
							_, _ = s.Flush()
							continue
						}
						s.TxCommit(copy(tx, f))
					}
					s.RxRelease()
					_, _ = s.Flush()
				})
			}
			if allocs != 0 {
				t.Errorf("%.0f allocations in 300 receive-transmit rounds, want 0", allocs)
			}
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.RxInvalid != 0 || st.TxInvalid != 0 {
				t.Errorf("invalid descriptors: %+v", st)
			}
		})
	}
}

// TestOpenErrors: a bad geometry and a missing interface are errors that say what is wrong, and
// a second socket on a taken queue is refused.
func TestOpenErrors(t *testing.T) {
	v := newVeth(t)
	netnstest.Do(t, v.nsB, func() error {
		for _, c := range []struct {
			cfg  Config
			want string
		}{
			{Config{Interface: v.b, FrameSize: 1000}, "frame size 1000"},
			{Config{Interface: v.b, RxFrames: 100}, "powers of two"},
			{Config{Interface: "nosuch0"}, "nosuch0"},
		} {
			if _, err := Open(c.cfg); err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Errorf("Open(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
			}
		}
		s, err := Open(Config{Interface: v.b})
		if err != nil {
			return err
		}
		defer s.Close()
		if s2, err := Open(Config{Interface: v.b}); err == nil {
			s2.Close()
			t.Error("a second socket bound the same queue")
		}
		return nil
	})
}

// sportFilter accepts untagged IPv4 frames whose UDP source port (no IP options) is port.
func sportFilter(port uint16) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0800, SkipTrue: 3},
		bpf.LoadAbsolute{Off: 34, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(port), SkipTrue: 1},
		bpf.RetConstant{Val: 0xFFFF},
		bpf.RetConstant{Val: 0},
	}
}

// TestFilterAndSetFilter: the socket gets exactly the frames the program's classic filter
// accepts, the others reach the kernel (the peer's raw socket in the same namespace sees
// them); SetFilter swaps the filter in place, and a nil filter passes everything.
func TestFilterAndSetFilter(t *testing.T) {
	for _, mode := range []Mode{ModeDriver, ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			v := newVeth(t)
			peer := openRaw(t, v.nsA, v.a)
			host := openRaw(t, v.nsB, v.b) // sees what the XDP program passes to the kernel
			p, s, aMAC, bMAC := v.attach(t, mode, sportFilter(1000), Config{RxFrames: 64, TxFrames: 64})
			fs := make([][]byte, 8)
			// check sends a frame from each port and wants the one from taken at the socket and
			// the other at the host.
			check := func(taken, passed uint16) {
				t.Helper()
				peer.send(t, udpFrame(bMAC, aMAC, passed, "to the kernel"))
				peer.send(t, udpFrame(bMAC, aMAC, taken, "to the socket"))
				n := waitRx(t, s, fs)
				if n != 1 || binary.BigEndian.Uint16(fs[0][34:]) != taken {
					t.Fatalf("the socket got %d frames, the first from port %d; want 1 from %d", n, binary.BigEndian.Uint16(fs[0][34:]), taken)
				}
				host.recv(t, func(f []byte) bool { return len(f) > 36 && binary.BigEndian.Uint16(f[34:]) == passed })
			}
			check(1000, 1001)
			if err := p.SetFilter(sportFilter(1001)); err != nil {
				t.Fatal(err)
			}
			check(1001, 1000)
			if err := p.SetFilter(nil); err != nil {
				t.Fatal(err)
			}
			peer.send(t, udpFrame(bMAC, aMAC, 1001, "to the kernel"))
			host.recv(t, func(f []byte) bool { return len(f) > 36 && binary.BigEndian.Uint16(f[34:]) == 1001 })
			if n := s.RxBatch(fs); n != 0 {
				t.Fatalf("with a nil filter the socket got %d frames", n)
			}
		})
	}
}

// TestSteer: with a steering program (govs's fanout hash as bpfgen generates it for XDP), every
// frame reaches the socket marked with the member bpfgen.FanoutMember computes for its flow.
// Without one (SetFilterSteer with nil), frames arrive whole and unmarked. The UMEM frames are
// used twice over.
func TestSteer(t *testing.T) {
	for _, mode := range []Mode{ModeDriver, ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			v := newVeth(t)
			peer := openRaw(t, v.nsA, v.a)
			p, s, aMAC, bMAC := v.attach(t, mode, ipv4Only, Config{RxFrames: 64, TxFrames: 64})
			const members = 3
			raw, err := bpfgen.SteerProgramSpec(bpfgen.FanoutSpec{VIPs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}}, members)
			if err != nil {
				t.Fatal(err)
			}
			steer, ok := bpf.Disassemble(raw)
			if !ok {
				t.Fatal("the steering program does not disassemble")
			}
			if err := p.SetFilterSteer(ipv4Only, steer); err != nil {
				t.Fatal(err)
			}
			fs := make([][]byte, 1)
			to := make([]int32, 1)
			recv := func(port uint16) int32 {
				t.Helper()
				peer.send(t, udpFrame(bMAC, aMAC, port, "steered"))
				deadline := time.Now().Add(2 * time.Second)
				for s.RxBatchSteer(fs, to) == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("port %d: the XSK received nothing within 2s", port)
					}
					_, _ = unix.Poll([]unix.PollFd{{Fd: int32(s.Fd()), Events: unix.POLLIN}}, 100)
				}
				if got := binary.BigEndian.Uint16(fs[0][34:]); got != port {
					t.Fatalf("got the frame from port %d, want %d", got, port)
				}
				return to[0]
			}
			seen := make([]int, members)
			client := netip.MustParseAddr("198.18.0.1")
			// Twice the fill ring's frames: every UMEM frame is used twice.
			for port := uint16(1000); port < 1128; port++ {
				want := bpfgen.FanoutMember(client, port, unix.IPPROTO_UDP, bpfgen.HashRule{}, members)
				if got := recv(port); got != int32(want) {
					t.Fatalf("port %d: member %d, want %d", port, got, want)
				}
				seen[want]++
			}
			for m, n := range seen {
				if n == 0 {
					t.Errorf("no frame for member %d: %v", m, seen)
				}
			}
			if err := p.SetFilter(ipv4Only); err != nil { // keeps the steering program
				t.Fatal(err)
			}
			if got := recv(999); got < 0 {
				t.Fatal("SetFilter dropped the steering program")
			}
			if err := p.SetFilterSteer(ipv4Only, nil); err != nil {
				t.Fatal(err)
			}
			for port := uint16(2000); port < 2128; port++ {
				if got := recv(port); got != -1 {
					t.Fatalf("without steering, port %d: member %d, want unmarked (-1)", port, got)
				}
			}
		})
	}
}

// TestSteerKernel runs the compiled program in the kernel (BPF_PROG_TEST_RUN) over TCP and UDP
// frames of many clients, both directions of NAT connections, IPv4 and IPv6, untagged and with one
// or two VLAN tags: the program redirects each with the word in front that names the member
// bpfgen.FanoutMember computes for its client. A frame of a queue without a socket goes on to
// the kernel unchanged, without the word.
func TestSteerKernel(t *testing.T) {
	v := newVeth(t)
	acceptAll := []bpf.Instruction{bpf.RetConstant{Val: 0xFFFF}}
	p, _, _, _ := v.attach(t, ModeDriver, acceptAll, Config{RxFrames: 64, TxFrames: 64})
	const members = 5
	vip4, vip6 := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:2::100")
	rs4, rs6 := netip.MustParseAddr("198.19.0.11"), netip.MustParseAddr("2001:2:0:1::11")
	raw, err := bpfgen.SteerProgramSpec(bpfgen.FanoutSpec{VIPs: []netip.Addr{vip4, vip6}}, members)
	if err != nil {
		t.Fatal(err)
	}
	steer, _ := bpf.Disassemble(raw)
	if err := p.SetFilterSteer(acceptAll, steer); err != nil {
		t.Fatal(err)
	}
	empty, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	insns, err := instructions(acceptAll, steer, empty.FD())
	if err != nil {
		t.Fatal(err)
	}
	noSocket, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual MIT/GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	defer noSocket.Close()

	seen := make([]int, members)
	out := make([]byte, 2048)
	for i := range 400 {
		six, tcp, reply, tags := i%2 == 1, i%4 >= 2, i%8 >= 4, i%24/8
		client := netip.AddrFrom4([4]byte{198, 18, byte(1 + i/200), byte(i)})
		vip, rs := vip4, rs4
		if six {
			client = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 3, 15: byte(i)})
			vip, rs = vip6, rs6
		}
		cport := uint16(1024 + 37*i)
		src, dst := netip.AddrPortFrom(client, cport), netip.AddrPortFrom(vip, 80)
		if reply {
			src, dst = netip.AddrPortFrom(rs, 8080), netip.AddrPortFrom(client, cport)
		}
		fr := steerFrame(t, src, dst, tcp, tags)
		ret, err := p.prog.Run(&ebpf.RunOptions{Data: fr, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		proto := uint8(unix.IPPROTO_UDP)
		if tcp {
			proto = unix.IPPROTO_TCP
		}
		want := bpfgen.FanoutMember(client, cport, proto, bpfgen.HashRule{}, members)
		word := binary.NativeEndian.Uint32(out)
		if ret != xdpRedirect || word != SteerMark|uint32(want) || !bytes.Equal(out[4:4+len(fr)], fr) {
			t.Fatalf("frame %d (%v -> %v, tcp %v, %d tags): verdict %d, word %#x, want %d and %#x before the frame", i, src, dst, tcp, tags, ret, word, xdpRedirect, SteerMark|want)
		}
		seen[want]++
		ret, err = noSocket.Run(&ebpf.RunOptions{Data: fr, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		if ret != xdpPass || !bytes.Equal(out[:len(fr)], fr) {
			t.Fatalf("frame %d without a socket for its queue: verdict %d, data % x; want %d and the frame unchanged", i, ret, out[:16], xdpPass)
		}
	}
	for m, n := range seen {
		if n == 0 {
			t.Errorf("no frame for member %d: %v", m, seen)
		}
	}
}

// steerFrame is an Ethernet frame from src to dst, TCP or UDP, with tags VLAN tags.
func steerFrame(t *testing.T, src, dst netip.AddrPort, tcp bool, tags int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	next := layers.EthernetTypeIPv4
	if src.Addr().Is6() {
		next = layers.EthernetTypeIPv6
	}
	for i := range tags {
		tpid := layers.EthernetTypeDot1Q
		if i == 0 && tags == 2 {
			tpid = layers.EthernetTypeQinQ
		}
		if i == 0 {
			eth.EthernetType = tpid
		}
		inner := next
		if i < tags-1 {
			inner = layers.EthernetTypeDot1Q
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(10 + i), Type: inner})
	}
	if tags == 0 {
		eth.EthernetType = next
	}
	var nl gopacket.NetworkLayer
	proto := layers.IPProtocolUDP
	if tcp {
		proto = layers.IPProtocolTCP
	}
	if src.Addr().Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
		ls, nl = append(ls, ip), ip
	}
	if tcp {
		l4 := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), SYN: true, Window: 1000}
		_ = l4.SetNetworkLayerForChecksum(nl)
		ls = append(ls, l4)
	} else {
		l4 := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		_ = l4.SetNetworkLayerForChecksum(nl)
		ls = append(ls, l4)
	}
	ls = append(ls, gopacket.Payload("steer"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
