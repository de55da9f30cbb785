//go:build linux

package afpacket

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/govs/govs/internal/netnstest"
	"golang.org/x/sys/unix"
)

// Shorthands for the shared namespace helpers.
var (
	requireRoot = netnstest.RequireRoot
	ipCmd       = func(t testing.TB, args ...string) { t.Helper(); netnstest.IP(t, args...) }
	inNS        = netnstest.Do
)

// vethPair is a veth pair with end A in namespace NSA and end B in namespace NSB.
type vethPair struct {
	NSA, NSB string
	A, B     string
}

// newNS creates a network namespace without IPv6, removed at cleanup: the tests speak IPv4 and raw
// frames, and the kernel's own IPv6 messages on a fresh link would land in the rings at random
// times (a CI run saw one before TestFrameRing's first RxIdle check).
func newNS(t testing.TB) string {
	t.Helper()
	name := netnstest.NewNetns(t, "afp")
	netnstest.NoIPv6(t, name)
	return name
}

// newVeth creates a veth pair between two namespaces with both ends up and,
// when addrA/addrB are not empty, addresses on them.
func newVeth(t testing.TB, nsA, nsB, addrA, addrB string) vethPair {
	t.Helper()
	p := vethPair{NSA: nsA, NSB: nsB}
	p.A, p.B = netnstest.Veth(t, nsA, nsB, "h3")
	if addrA != "" {
		ipCmd(t, "-n", nsA, "addr", "add", addrA, "dev", p.A)
	}
	if addrB != "" {
		ipCmd(t, "-n", nsB, "addr", "add", addrB, "dev", p.B)
	}
	return p
}

func newPair(t testing.TB) vethPair {
	t.Helper()
	requireRoot(t)
	return newVeth(t, newNS(t), newNS(t), "", "")
}

// openIn opens a Socket in ns, closed at cleanup.
func openIn(t testing.TB, ns string, cfg Config) *Socket {
	t.Helper()
	var s *Socket
	inNS(t, ns, func() (err error) {
		s, err = Open(cfg)
		return err
	})
	t.Cleanup(func() { s.Close() })
	return s
}

// rawSock is a plain AF_PACKET socket (no rings), the test's traffic source and sink.
type rawSock struct {
	fd      int
	ifindex int
	hw      net.HardwareAddr
}

func openRaw(t testing.TB, ns, ifname string) *rawSock {
	t.Helper()
	r := &rawSock{}
	inNS(t, ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		r.ifindex, r.hw = ifi.Index, ifi.HardwareAddr
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: r.ifindex})
	})
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSock) send(t testing.TB, frame []byte) {
	t.Helper()
	if err := unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex}); err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

// recvTest collects frames with our test EtherType until want arrived or quiet passed
// without any, and returns their sequence numbers.
func (r *rawSock) recvTest(want int, quiet time.Duration) []uint32 {
	var seqs []uint32
	buf := make([]byte, 1<<17)
	last := time.Now()
	for len(seqs) < want && time.Since(last) < quiet {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			continue // timeout tick
		}
		if seq, ok := testSeq(buf[:n]); ok {
			seqs = append(seqs, seq)
			last = time.Now()
		}
	}
	return seqs
}

// etherTypeTest is IEEE 802 "local experimental", which no stack handles.
const etherTypeTest = 0x88b5

// testFrame builds an Ethernet frame of size bytes carrying seq.
func testFrame(dst, src net.HardwareAddr, seq uint32, size int) []byte {
	f := make([]byte, max(size, 18))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], etherTypeTest)
	binary.BigEndian.PutUint32(f[14:], seq)
	for i := 18; i < len(f); i++ {
		f[i] = byte(i)
	}
	return f
}

func testSeq(f []byte) (uint32, bool) {
	if len(f) < 18 || binary.BigEndian.Uint16(f[12:]) != etherTypeTest {
		return 0, false
	}
	return binary.BigEndian.Uint32(f[14:]), true
}

// drain reads frames from s until want test frames arrived or quiet passed without any.
func drain(s *Socket, want int, quiet time.Duration, each func(f []byte, m *RxMeta)) int {
	got := 0
	last := time.Now()
	for got < want && time.Since(last) < quiet {
		f, m, ok := s.Next()
		if !ok {
			s.Wait(10 * time.Millisecond)
			continue
		}
		if _, ok := testSeq(f); ok {
			got++
			last = time.Now()
			if each != nil {
				each(f, m)
			}
		}
	}
	return got
}
