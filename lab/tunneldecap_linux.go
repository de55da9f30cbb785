package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govs/govs/internal/checksum"
)

// TunnelDecap is a real server's end of govs's tun method where the kernel has no ipip, ip6tnl or
// fou module: it reads the encapsulated frames from an AF_PACKET socket on the server's interface,
// checks and records their outer headers, strips them and writes the inner packet to a TUN device
// (TunnelDevice) in the same namespace, where the kernel takes it as received. The VIP is on the
// server's lo (as for DR), so the server accepts the inner packet and answers the client directly.
//
// Sockets that the kernel delivers the outer packets to (a raw socket for IP protocol 4 and 41, a UDP
// socket on the GUE port) keep it from answering them with ICMP protocol or port unreachable. Their
// data is read and discarded: the kernel counts a packet for a socket with a full buffer as not
// delivered, and answers it.
//
// Its goroutines (one reads the tunnel, the others drain those sockets) are owned by the TunnelDecap;
// Close stops them and waits for them.
type TunnelDecap struct {
	ns      *NS
	guePort uint16
	pkt     int      // AF_PACKET socket on the server's interface
	tun     *os.File // the TUN device's queue
	absorb  []int
	udp     net.PacketConn

	mu     sync.Mutex
	outers []TunnelOuter
	errs   int // frames for the tunnel that were malformed

	done chan struct{}
	wg   sync.WaitGroup
}

// TunnelOuter is the outer header of one decapsulated packet.
type TunnelOuter struct {
	Src, Dst netip.Addr
	Proto    uint8  // IPv4 protocol / IPv6 next header: 4 (IPIP), 41 (IPv6 in IPv6) or 17 (GUE)
	SrcPort  uint16 // GUE only: the UDP ports
	DstPort  uint16
	Label    uint32 // IPv6 only: the flow label
	DF       bool   // IPv4 only: don't fragment
	Len      int    // the outer IP packet's length
}

// TunnelDevice is the name of the TUN device StartTunnelDecap creates in the real server's namespace.
const TunnelDevice = "govstun0"

// maxOuters bounds how many outer headers a TunnelDecap keeps.
const maxOuters = 1 << 16

// StartTunnelDecap starts decapsulating IPIP and, when guePort is not 0, GUE (variant 0) to guePort
// on ifname in ns.
func StartTunnelDecap(ns *NS, ifname string, guePort uint16) (*TunnelDecap, error) {
	return startTunnel(ns, ifname, guePort, true)
}

// StartTunnelTap starts recording the outer headers of the tunnel frames (IPIP, and GUE to guePort
// when not 0) that ifname in ns receives, as StartTunnelDecap does, without decapsulating them:
// on a switch port, it shows what the sender put on the wire, frames a narrower link further on
// would drop included. Frames that are not whole tunnel packets (outer IPv4 fragments) count as
// malformed.
func StartTunnelTap(ns *NS, ifname string, guePort uint16) (*TunnelDecap, error) {
	return startTunnel(ns, ifname, guePort, false)
}

func startTunnel(ns *NS, ifname string, guePort uint16, decap bool) (*TunnelDecap, error) {
	d := &TunnelDecap{ns: ns, guePort: guePort, pkt: -1, done: make(chan struct{})}
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if decap {
			tun, err := openTun(TunnelDevice)
			if err != nil {
				return err
			}
			d.tun = tun
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return os.NewSyscallError("socket(AF_PACKET)", err)
		}
		d.pkt = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			return os.NewSyscallError("bind(AF_PACKET)", err)
		}
		// A read returns at least this often, so Close is noticed.
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return os.NewSyscallError("setsockopt(SO_RCVTIMEO)", err)
		}
		if !decap {
			return nil
		}
		for _, s := range []struct{ family, proto int }{{unix.AF_INET, unix.IPPROTO_IPIP}, {unix.AF_INET6, unix.IPPROTO_IPV6}} {
			a, err := unix.Socket(s.family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, s.proto)
			if err != nil {
				if s.family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
					continue // IPv6 is off in this namespace
				}
				return os.NewSyscallError("socket(SOCK_RAW)", err)
			}
			d.absorb = append(d.absorb, a)
			// Room for a burst (a bulk upload's window) while drain catches up: a full buffer makes
			// the kernel answer protocol unreachable, which govs counts as icmp_no_connection.
			if err := unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
				return os.NewSyscallError("setsockopt(SO_RCVBUFFORCE)", err)
			}
			if err := unix.SetsockoptTimeval(a, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return os.NewSyscallError("setsockopt(SO_RCVTIMEO)", err)
			}
		}
		return nil
	})
	if err == nil && guePort != 0 && decap {
		d.udp, err = ns.ListenPacket("udp", fmt.Sprintf(":%d", guePort))
	}
	if err == nil && decap {
		err = ipCmd("-n", ns.Name, "link", "set", TunnelDevice, "up")
	}
	if err == nil && decap {
		// The inner packets arrive on the TUN device, not on the interface their source routes
		// through: no reverse-path filter there.
		err = ns.SetSysctl("net.ipv4.conf.all.rp_filter", "0", "net.ipv4.conf."+TunnelDevice+".rp_filter", "0")
	}
	if err != nil {
		d.release()
		return nil, fmt.Errorf("failed to start the tunnel end in %s: %w", ns.Name, err)
	}
	d.wg.Add(1)
	go d.run()
	for _, fd := range d.absorb {
		d.wg.Add(1)
		go d.drain(fd)
	}
	if d.udp != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			buf := make([]byte, 1<<16)
			for {
				if _, _, err := d.udp.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		}()
	}
	return d, nil
}

// drain reads and discards what the kernel delivers to fd until Close.
func (d *TunnelDecap) drain(fd int) {
	defer d.wg.Done()
	buf := make([]byte, 1<<16)
	for !d.stopped() {
		_, _ = unix.Read(fd, buf) // returns at least every SO_RCVTIMEO
	}
}

// stopped reports whether Close was called.
func (d *TunnelDecap) stopped() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// openTun creates TUN device name (IFF_TUN, no packet information) in the calling thread's namespace.
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("open /dev/net/tun", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("ioctl(TUNSETIFF)", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (d *TunnelDecap) run() {
	defer d.wg.Done()
	buf := make([]byte, 1<<16)
	for !d.stopped() {
		n, from, err := unix.Recvfrom(d.pkt, buf, 0)
		if err != nil {
			continue // the timeout (EAGAIN), or EINTR: look at done again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		o, inner, ok, mine := d.decap(buf[:n])
		if !mine {
			continue
		}
		d.mu.Lock()
		if !ok {
			d.errs++
		} else if len(d.outers) < maxOuters {
			d.outers = append(d.outers, o)
		}
		d.mu.Unlock()
		if ok && d.tun != nil {
			_, _ = d.tun.Write(inner) // a packet the kernel refuses is lost, as on a wire
		}
	}
}

// decap parses an Ethernet frame: mine is false for anything not for the tunnel; ok is false for a
// tunnel frame whose outer header is wrong (lengths, IPv4 header checksum or fragment fields, UDP
// checksum, GUE header). The inner packet it returns is the outer packet's payload, without any
// Ethernet padding behind it.
func (d *TunnelDecap) decap(b []byte) (o TunnelOuter, inner []byte, ok, mine bool) {
	if len(b) < 14 {
		return o, nil, false, false
	}
	et, ip := binary.BigEndian.Uint16(b[12:]), b[14:]
	var payload []byte
	switch {
	case et == 0x0800 && len(ip) >= 20 && ip[0]>>4 == 4:
		ihl, total := int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:]))
		o.Proto = ip[9]
		if o.Proto != 4 && o.Proto != 17 {
			return o, nil, false, false
		}
		if ihl < 20 || total < ihl || total > len(ip) {
			return o, nil, false, o.Proto == 4
		}
		o.Src, _ = netip.AddrFromSlice(ip[12:16])
		o.Dst, _ = netip.AddrFromSlice(ip[16:20])
		o.DF, o.Len = ip[6]&0x40 != 0, total
		payload = ip[ihl:total]
		if o.Proto == 17 && !d.isGUE(payload) {
			return o, nil, false, false
		}
		if checksum.Sum(ip[:ihl], 0) != 0xffff || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return o, nil, false, true // a wrong checksum, or a fragment: govs sends whole tunnel packets
		}
	case et == 0x86dd && len(ip) >= 40 && ip[0]>>4 == 6:
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		o.Proto = ip[6]
		if o.Proto != 41 && o.Proto != 17 {
			return o, nil, false, false
		}
		if 40+plen > len(ip) {
			return o, nil, false, o.Proto == 41
		}
		o.Src, _ = netip.AddrFromSlice(ip[8:24])
		o.Dst, _ = netip.AddrFromSlice(ip[24:40])
		o.Label, o.Len = binary.BigEndian.Uint32(ip[0:4])&0xfffff, 40+plen
		payload = ip[40 : 40+plen]
		if o.Proto == 17 && !d.isGUE(payload) {
			return o, nil, false, false
		}
	default:
		return o, nil, false, false
	}
	if o.Proto != 17 {
		return o, payload, true, true
	}
	o.SrcPort, o.DstPort = binary.BigEndian.Uint16(payload[0:]), binary.BigEndian.Uint16(payload[2:])
	if int(binary.BigEndian.Uint16(payload[4:])) != len(payload) || len(payload) < 12 {
		return o, nil, false, true
	}
	if sum := binary.BigEndian.Uint16(payload[6:]); sum != 0 || o.Src.Is6() {
		if checksum.Sum(payload, checksum.Pseudo(o.Src.AsSlice(), o.Dst.AsSlice(), 17, uint32(len(payload)))) != 0xffff {
			return o, nil, false, true // wrong, or zero over IPv6
		}
	}
	// GUE variant 0 without optional fields (Hlen 0), the inner protocol matching the outer family.
	g, want := payload[8:12], byte(4)
	if o.Src.Is6() {
		want = 41
	}
	if g[0] != 0 || g[1] != want {
		return o, nil, false, true
	}
	return o, payload[12:], true, true
}

// isGUE reports whether the UDP datagram u is to the GUE port.
func (d *TunnelDecap) isGUE(u []byte) bool {
	return d.guePort != 0 && len(u) >= 8 && binary.BigEndian.Uint16(u[2:]) == d.guePort
}

// Outers returns the outer headers of the packets decapsulated so far (at most 65536).
func (d *TunnelDecap) Outers() []TunnelOuter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]TunnelOuter(nil), d.outers...)
}

// Malformed returns how many tunnel frames had a wrong outer header and were dropped.
func (d *TunnelDecap) Malformed() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.errs
}

// Close stops decapsulating and removes the TUN device.
func (d *TunnelDecap) Close() error {
	close(d.done)
	var err error
	if d.udp != nil {
		err = d.udp.Close() // ends its drain
		d.udp = nil
	}
	d.wg.Wait()
	return errors.Join(err, d.release())
}

func (d *TunnelDecap) release() error {
	var errs []error
	if d.pkt >= 0 {
		errs = append(errs, unix.Close(d.pkt))
		d.pkt = -1
	}
	for _, fd := range d.absorb {
		errs = append(errs, unix.Close(fd))
	}
	d.absorb = nil
	if d.udp != nil {
		errs = append(errs, d.udp.Close())
		d.udp = nil
	}
	if d.tun != nil {
		errs = append(errs, d.tun.Close()) // the device goes with its last queue
		d.tun = nil
	}
	return errors.Join(errs...)
}
