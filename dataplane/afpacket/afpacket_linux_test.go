//go:build linux

package afpacket

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func TestStatusConstantsMatchKernel(t *testing.T) {
	tests := []struct {
		name      string
		got, want int
	}{
		{"StatusUser", StatusUser, unix.TP_STATUS_USER},
		{"StatusLosing", StatusLosing, unix.TP_STATUS_LOSING},
		{"StatusCsumNotReady", StatusCsumNotReady, unix.TP_STATUS_CSUMNOTREADY},
		{"StatusVLANValid", StatusVLANValid, unix.TP_STATUS_VLAN_VALID},
		{"StatusBlkTmo", StatusBlkTmo, unix.TP_STATUS_BLK_TMO},
		{"StatusVLANTPIDValid", StatusVLANTPIDValid, unix.TP_STATUS_VLAN_TPID_VALID},
		{"StatusCsumValid", StatusCsumValid, unix.TP_STATUS_CSUM_VALID},
		{"StatusGSOTCP", StatusGSOTCP, unix.TP_STATUS_GSO_TCP},
		{"tpacket3HdrLen", tpacket3HdrLen, unix.SizeofTpacket3Hdr},
		{"sockaddrLLLen", sockaddrLLLen, unix.SizeofSockaddrLinklayer},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#x, kernel has %#x", tt.name, tt.got, tt.want)
		}
	}
}

func TestRX(t *testing.T) {
	p := newPair(t)
	s := openIn(t, p.NSB, Config{Interface: p.B})
	peer := openRaw(t, p.NSA, p.A)
	hw := s.HardwareAddr()
	dst := net.HardwareAddr(hw[:])

	tests := []struct {
		name string
		dst  net.HardwareAddr
		size int
	}{
		{"host-min", dst, 60},
		{"host-mtu", dst, 1514},
		{"broadcast", net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 100},
		{"otherhost", net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 50
			for i := range n {
				peer.send(t, testFrame(tt.dst, peer.hw, uint32(i), tt.size))
			}
			next := uint32(0)
			got := drain(s, n, time.Second, func(f []byte, m *RxMeta) {
				seq, _ := testSeq(f)
				if seq != next {
					t.Errorf("seq = %d, want %d (out of order or lost)", seq, next)
				}
				next = seq + 1
				if len(f) != tt.size || m.Len != uint32(tt.size) {
					t.Errorf("len(frame) = %d, Len = %d, want %d", len(f), m.Len, tt.size)
				}
				if m.Status&StatusUser == 0 {
					t.Errorf("Status = %#x, want TP_STATUS_USER", m.Status)
				}
			})
			if got != n {
				t.Fatalf("received %d frames, want %d", got, n)
			}
		})
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Drops != 0 || st.Packets < 200 {
		t.Errorf("Stats = %+v, want >= 200 packets and no drops", st)
	}
}

// txSend pushes n test frames through s's TX ring, flushing whenever the ring is full, and
// returns the number of kicks that stopped part-way. It fails after a deadline.
func txSend(t *testing.T, s *Socket, dst, src net.HardwareAddr, n, size int) (partial int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	committed, taken := 0, 0
	for taken < n {
		if time.Now().After(deadline) {
			t.Fatalf("TX stalled: %d committed, %d taken of %d", committed, taken, n)
		}
		batch := 0
		for committed < n {
			// Every other frame through TxSend (copy and commit in one call), the rest through
			// TxFrame and TxCommit: both take slots in the same order.
			f := testFrame(dst, src, uint32(committed), size)
			if committed%2 == 1 {
				if !s.TxSend(f, VnetHdr{}) {
					break
				}
			} else {
				buf := s.TxFrame()
				if buf == nil {
					break
				}
				s.TxCommit(copy(buf, f), VnetHdr{})
			}
			committed++
			batch++
		}
		sent, err := s.Flush()
		if err != nil {
			t.Fatal(err)
		}
		if sent < committed-taken {
			partial++
		}
		taken += sent
		if sent == 0 && batch == 0 {
			time.Sleep(100 * time.Microsecond) // ring full of in-flight frames
		}
	}
	return partial
}

func TestTX(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		sndbuf int // if set, shrink the send buffer after Open to provoke partial kicks
		n      int
	}{
		{"batch", Config{TxFrames: 256}, 0, 200},
		{"bypass", Config{TxFrames: 256, QdiscBypass: true}, 0, 200},
		{"vnet", Config{TxFrames: 256, VnetHdr: true, TxFrameSize: 2048}, 0, 200},
		{"larger-than-ring", Config{TxFrames: 64}, 0, 3000},
		{"small-sndbuf", Config{TxFrames: 64}, 4096, 3000},
		{"send-only", Config{SendOnly: true, TxFrames: 256, VnetHdr: true, TxFrameSize: 2048, QdiscBypass: true}, 0, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t)
			cfg := tt.cfg
			cfg.Interface = p.A
			s := openIn(t, p.NSA, cfg)
			if tt.sndbuf != 0 {
				if err := unix.SetsockoptInt(s.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, tt.sndbuf); err != nil {
					t.Fatal(err)
				}
			}
			peer := openRaw(t, p.NSB, p.B)
			hw := s.HardwareAddr()
			if s.TxSend(make([]byte, 1<<17), VnetHdr{}) || s.TxSend(nil, VnetHdr{}) {
				t.Fatal("TxSend took a frame larger than a slot, or an empty one")
			}
			done := make(chan []uint32)
			go func() { done <- peer.recvTest(tt.n, time.Second) }()
			partial := txSend(t, s, peer.hw, hw[:], tt.n, 100)
			seqs := <-done
			t.Logf("%d frames, %d partial kicks", tt.n, partial)
			if len(seqs) != tt.n {
				t.Fatalf("peer received %d frames, want exactly %d", len(seqs), tt.n)
			}
			for i, seq := range seqs {
				if seq != uint32(i) {
					t.Fatalf("frame %d has seq %d: reordered or lost", i, seq)
				}
			}
		})
	}
}

// TestSendOnlyReceivesNothing checks that a send-only socket is no packet tap: frames arriving on
// its interface neither reach it nor count in its statistics, while a normal socket next to it
// gets them all.
func TestSendOnlyReceivesNothing(t *testing.T) {
	p := newPair(t)
	so := openIn(t, p.NSA, Config{Interface: p.A, SendOnly: true, VnetHdr: true, TxFrames: 64})
	tap := openIn(t, p.NSA, Config{Interface: p.A})
	peer := openRaw(t, p.NSB, p.B)
	hw := so.HardwareAddr()
	const n = 50
	for i := range n {
		peer.send(t, testFrame(hw[:], peer.hw, uint32(i), 100))
	}
	if got := drain(tap, n, time.Second, func([]byte, *RxMeta) {}); got != n {
		t.Fatalf("the normal socket got %d of %d frames", got, n)
	}
	var fs [8]Frame
	if k := so.NextBatch(fs[:]); k != 0 || !so.RxIdle() {
		t.Errorf("send-only socket: NextBatch = %d, RxIdle = %v; want 0, true", k, so.RxIdle())
	}
	st, err := so.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 0 || st.Drops != 0 {
		t.Errorf("send-only socket's statistics = %+v: frames reached it", st)
	}
	// Not hooked into the receive path at all (a reject-all filter would also keep the counts at
	// 0, but every frame would still be cloned to it and run the filter): /proc/net/packet shows
	// protocol 0 and not running.
	var fst unix.Stat_t
	if err := unix.Fstat(so.Fd(), &fst); err != nil {
		t.Fatal(err)
	}
	var line string
	inNS(t, p.NSA, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/packet") // this thread's namespace; /proc/net follows the main thread's
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 9 && f[8] == strconv.FormatUint(fst.Ino, 10) {
				line = l
			}
		}
		return err
	})
	// sk RefCnt Type Proto Iface R Rmem User Inode
	if f := strings.Fields(line); len(f) != 9 || f[3] != "0000" || f[5] != "0" {
		t.Errorf("/proc/net/packet line of the send-only socket = %q, want Proto 0000 and R 0", line)
	}
}

func TestFilter(t *testing.T) {
	p := newPair(t)
	dropAll, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		t.Fatal(err)
	}
	// Accept only our test EtherType.
	onlyTest, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeTest, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := openIn(t, p.NSB, Config{Interface: p.B, Filter: dropAll})
	peer := openRaw(t, p.NSA, p.A)
	hw := s.HardwareAddr()
	for i := range 20 {
		peer.send(t, testFrame(hw[:], peer.hw, uint32(i), 64))
	}
	if got := drain(s, 1, 200*time.Millisecond, nil); got != 0 {
		t.Fatalf("drop-all filter let %d frames through", got)
	}
	if st, err := s.Stats(); err != nil || st.Packets != 0 {
		t.Fatalf("Stats = %+v, %v; want 0 packets: the filter runs before the ring", st, err)
	}
	if err := s.SetFilter(onlyTest); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		peer.send(t, testFrame(hw[:], peer.hw, uint32(i), 64))
	}
	if got := drain(s, 20, time.Second, nil); got != 20 {
		t.Fatalf("after SetFilter received %d frames, want 20", got)
	}
	if err := s.SetFilter(nil); err == nil {
		t.Error("SetFilter(nil) succeeded, want an error")
	}
}

func TestFanoutCBPF(t *testing.T) {
	p := newPair(t)
	ret := func(v uint32) []bpf.RawInstruction {
		prog, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: v}})
		if err != nil {
			t.Fatal(err)
		}
		return prog
	}
	cfg := Config{Interface: p.B, FanoutGroup: 42, FanoutProg: ret(1)}
	s0 := openIn(t, p.NSB, cfg) // member 0
	s1 := openIn(t, p.NSB, cfg) // member 1
	peer := openRaw(t, p.NSA, p.A)
	hw := s0.HardwareAddr()

	send := func() {
		for i := range 30 {
			peer.send(t, testFrame(hw[:], peer.hw, uint32(i), 64))
		}
	}
	send()
	if got := drain(s1, 30, time.Second, nil); got != 30 {
		t.Errorf("member 1 got %d frames, want 30", got)
	}
	if got := drain(s0, 1, 100*time.Millisecond, nil); got != 0 {
		t.Errorf("member 0 got %d frames, want 0", got)
	}
	if err := s1.SetFanoutProg(ret(0)); err != nil {
		t.Fatal(err)
	}
	send()
	if got := drain(s0, 30, time.Second, nil); got != 30 {
		t.Errorf("after SetFanoutProg member 0 got %d frames, want 30", got)
	}
	if got := drain(s1, 1, 100*time.Millisecond, nil); got != 0 {
		t.Errorf("after SetFanoutProg member 1 got %d frames, want 0", got)
	}
}

func TestIgnoreOutgoing(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"plain", Config{}},
		{"fanout", Config{FanoutGroup: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t)
			cfg := tt.cfg
			cfg.Interface = p.A
			s := openIn(t, p.NSA, cfg)
			tap := openRaw(t, p.NSA, p.A) // no IGNORE_OUTGOING: sees what we send
			peer := openRaw(t, p.NSB, p.B)
			hw := s.HardwareAddr()
			if s.TxSend(make([]byte, 1<<17), VnetHdr{}) || s.TxSend(nil, VnetHdr{}) {
				t.Fatal("TxSend took a frame larger than a slot, or an empty one")
			}
			done := make(chan []uint32)
			go func() { done <- tap.recvTest(50, time.Second) }()
			txSend(t, s, peer.hw, hw[:], 50, 64)
			if got := <-done; len(got) != 50 {
				t.Fatalf("a plain tap saw %d of our 50 frames, want all", len(got))
			}
			if got := drain(s, 1, 200*time.Millisecond, nil); got != 0 {
				t.Fatalf("our own %d transmissions came back into the RX ring", got)
			}
		})
	}
}

func TestIdleAndClose(t *testing.T) {
	p := newPair(t)
	// Accept nothing: a fresh link still carries the peer's IPv6 router and listener messages.
	s := openIn(t, p.NSB, Config{Interface: p.B, Filter: []bpf.RawInstruction{{Op: 0x06, K: 0}}})
	ready, err := s.Wait(20 * time.Millisecond)
	if ready || err != nil {
		t.Fatalf("Wait on an idle socket = %v, %v; want false, nil", ready, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, _, ok := s.Next(); ok {
		t.Error("Next after Close returned a frame")
	}
	if s.TxFrame() != nil {
		t.Error("TxFrame after Close returned a slot")
	}
	if _, err := unix.FcntlInt(uintptr(s.Fd()), unix.F_GETFD, 0); err == nil {
		// The number may be reused by a parallel test; only report.
		t.Logf("fd %d still valid after Close (reused?)", s.Fd())
	}
}

func TestOpenErrors(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no-such-interface", Config{Interface: "h3-nope"}},
		{"empty-name", Config{}},
		{"bad-block", Config{Interface: "lo", BlockSize: 5000}},
		{"bad-txframe", Config{Interface: "lo", TxFrameSize: 1000}},
		{"prog-without-group", Config{Interface: "lo", FanoutProg: []bpf.RawInstruction{{Op: 6}}}},
		{"send-only-with-filter", Config{Interface: "lo", SendOnly: true, Filter: []bpf.RawInstruction{{Op: 6}}}},
		{"send-only-with-blocks", Config{Interface: "lo", SendOnly: true, NumBlocks: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inNS(t, ns, func() error {
				s, err := Open(tt.cfg)
				if err == nil {
					s.Close()
					t.Errorf("Open(%+v) succeeded, want an error", tt.cfg)
				} else {
					t.Log(err)
				}
				return nil
			})
		})
	}
}

func TestDisableReceiveOffloads(t *testing.T) {
	p := newPair(t)
	var first, second []string
	inNS(t, p.NSB, func() (err error) {
		if first, err = DisableReceiveOffloads(p.B); err != nil {
			return err
		}
		second, err = DisableReceiveOffloads(p.B)
		return err
	})
	t.Logf("veth: first call changed %v", first)
	if len(second) != 0 {
		t.Errorf("second call changed %v, want nothing (already off)", second)
	}
	inNS(t, p.NSB, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		gro, err := ethtool(fd, p.B, unix.ETHTOOL_GGRO, 0)
		if err != nil {
			return err
		}
		if gro != 0 {
			t.Errorf("GRO still on")
		}
		return nil
	})
	inNS(t, p.NSB, func() error {
		if _, err := DisableReceiveOffloads("h3-nope"); err == nil {
			t.Error("DisableReceiveOffloads on a missing interface succeeded")
		}
		return nil
	})
}

// TestTXPartialKick makes the device refuse frames (peer down: veth drops, sendto gets
// ENOBUFS) and checks that the refused frames stay queued and go out on a later Flush.
func TestTXPartialKick(t *testing.T) {
	for _, bypass := range []bool{false, true} {
		t.Run(map[bool]string{false: "qdisc", true: "bypass"}[bypass], func(t *testing.T) {
			p := newPair(t)
			s := openIn(t, p.NSA, Config{Interface: p.A, TxFrames: 64, QdiscBypass: bypass})
			peer := openRaw(t, p.NSB, p.B)
			hw := s.HardwareAddr()
			ipCmd(t, "-n", p.NSB, "link", "set", p.B, "down")
			const n = 10
			for i := range n {
				buf := s.TxFrame()
				if buf == nil {
					t.Fatal("TX ring full")
				}
				s.TxCommit(copy(buf, testFrame(peer.hw, hw[:], uint32(i), 80)), VnetHdr{})
			}
			sent, err := s.Flush()
			t.Logf("peer down: Flush = %d, %v", sent, err)
			if err != nil {
				t.Fatal(err)
			}
			if sent >= n {
				t.Fatalf("Flush with the peer down took %d frames, want fewer than %d", sent, n)
			}
			ipCmd(t, "-n", p.NSB, "link", "set", p.B, "up")
			done := make(chan []uint32)
			go func() { done <- peer.recvTest(n-sent, time.Second) }()
			total := sent
			for deadline := time.Now().Add(2 * time.Second); total < n && time.Now().Before(deadline); {
				more, err := s.Flush()
				if err != nil {
					t.Fatal(err)
				}
				total += more
				time.Sleep(time.Millisecond)
			}
			got := <-done
			if total != n || len(got) != n-sent {
				t.Fatalf("after the peer came up: %d taken in all, peer received %d; want %d and %d", total, len(got), n, n-sent)
			}
			if got[0] != uint32(sent) {
				t.Errorf("first retried frame has seq %d, want %d", got[0], sent)
			}
		})
	}
}
