//go:build linux

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govs/govs/internal/checksum"
	"github.com/govs/govs/lab"
)

// badFrame is one kind of malformed frame for the burst.
type badFrame struct {
	name string
	// carriesVIP: the IP header is intact enough that the destination (the VIP) is in the frame, so
	// govs sees traffic for a virtual service and must count a drop.
	carriesVIP bool
	frame      []byte
}

// frameBuilder assembles frames from the client to the balancer's l0 MAC.
type frameBuilder struct {
	dst, src net.HardwareAddr
	cli, vip netip.Addr
	tcp, udp uint16 // destination ports
	is6      bool
}

func (b frameBuilder) eth(etherType uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f[0:6], b.dst)
	copy(f[6:12], b.src)
	binary.BigEndian.PutUint16(f[12:14], etherType)
	return append(f, payload...)
}

// ipv4 returns a valid IPv4 header for l4 (protocol proto); mutate patches it before the checksum.
func (b frameBuilder) ipv4(proto byte, l4 []byte, mutate func(h []byte)) []byte {
	h := make([]byte, 20, 20+len(l4))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(h[4:], 0x4242)
	h[8], h[9] = 64, proto
	c4, v4 := b.cli.As4(), b.vip.As4()
	copy(h[12:16], c4[:])
	copy(h[16:20], v4[:])
	if mutate != nil {
		mutate(h)
	}
	binary.BigEndian.PutUint16(h[10:], checksum.IPv4Header(h))
	return append(h, l4...)
}

// ipv6 returns an IPv6 header for l4 with the payload length patched by paylen (if >= 0).
func (b frameBuilder) ipv6(next byte, l4 []byte, paylen int, version byte) []byte {
	h := make([]byte, 40, 40+len(l4))
	h[0] = version << 4
	pl := len(l4)
	if paylen >= 0 {
		pl = paylen
	}
	binary.BigEndian.PutUint16(h[4:], uint16(pl))
	h[6], h[7] = next, 64
	c, v := b.cli.As16(), b.vip.As16()
	copy(h[8:24], c[:])
	copy(h[24:40], v[:])
	return append(h, l4...)
}

// tcpSYN is a 20-byte TCP SYN header (checksum left 0: the header is what is under test).
func (b frameBuilder) tcpSYN() []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], 40000)
	binary.BigEndian.PutUint16(h[2:], b.tcp)
	binary.BigEndian.PutUint32(h[4:], 1)
	h[12], h[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(h[14:], 65535)
	return h
}

func (b frameBuilder) udpHdr(length uint16) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], 40000)
	binary.BigEndian.PutUint16(h[2:], b.udp)
	binary.BigEndian.PutUint16(h[4:], length)
	return h
}

// frames lists the malformed frames for one address family.
func (b frameBuilder) frames() []badFrame {
	const tcp, udp = 6, 17
	out := []badFrame{
		// Shorter than an Ethernet header: the kernel normally refuses to send it (EINVAL), which
		// the burst counts as not sent.
		{"eth-truncated", false, b.eth(0x0800, nil)[:10]},
	}
	if !b.is6 {
		full := b.ipv4(tcp, b.tcpSYN(), nil)
		return append(out,
			badFrame{"ipv4-header-truncated", false, b.eth(0x0800, full[:12])},
			badFrame{"ipv4-ihl-too-small", true, b.eth(0x0800, b.ipv4(tcp, b.tcpSYN(), func(h []byte) { h[0] = 0x44 }))},
			badFrame{"ipv4-ihl-beyond-frame", true, b.eth(0x0800, b.ipv4(tcp, b.tcpSYN(), func(h []byte) { h[0] = 0x4f }))},
			badFrame{"ipv4-total-length-too-big", true, b.eth(0x0800, b.ipv4(tcp, b.tcpSYN(), func(h []byte) { binary.BigEndian.PutUint16(h[2:], 1400) }))},
			badFrame{"ipv4-total-length-below-ihl", true, b.eth(0x0800, b.ipv4(tcp, b.tcpSYN(), func(h []byte) { binary.BigEndian.PutUint16(h[2:], 12) }))},
			badFrame{"ipv4-wrong-version", true, b.eth(0x0800, b.ipv4(tcp, b.tcpSYN(), func(h []byte) { h[0] = 0x65 }))},
			badFrame{"ipv4-tcp-truncated", true, b.eth(0x0800, b.ipv4(tcp, b.tcpSYN()[:8], nil))},
			badFrame{"ipv4-tcp-data-offset-too-big", true, b.eth(0x0800, b.ipv4(tcp, func() []byte { h := b.tcpSYN(); h[12] = 15 << 4; return h }(), nil))},
			badFrame{"ipv4-udp-truncated", true, b.eth(0x0800, b.ipv4(udp, b.udpHdr(8)[:4], nil))},
			badFrame{"ipv4-udp-length-too-big", true, b.eth(0x0800, b.ipv4(udp, append(b.udpHdr(300), "abcd"...), nil))},
		)
	}
	full := b.ipv6(tcp, b.tcpSYN(), -1, 6)
	return append(out,
		badFrame{"ipv6-header-truncated", false, b.eth(0x86dd, full[:20])},
		badFrame{"ipv6-payload-length-too-big", true, b.eth(0x86dd, b.ipv6(tcp, b.tcpSYN(), 1000, 6))},
		badFrame{"ipv6-payload-length-short-of-tcp", true, b.eth(0x86dd, b.ipv6(tcp, b.tcpSYN(), 4, 6))},
		badFrame{"ipv6-wrong-version", true, b.eth(0x86dd, b.ipv6(tcp, b.tcpSYN(), -1, 4))},
		badFrame{"ipv6-tcp-truncated", true, b.eth(0x86dd, b.ipv6(tcp, b.tcpSYN()[:8], -1, 6))},
		badFrame{"ipv6-tcp-data-offset-too-big", true, b.eth(0x86dd, b.ipv6(tcp, func() []byte { h := b.tcpSYN(); h[12] = 15 << 4; return h }(), -1, 6))},
		badFrame{"ipv6-udp-truncated", true, b.eth(0x86dd, b.ipv6(udp, b.udpHdr(8)[:4], -1, 6))},
		badFrame{"ipv6-udp-length-too-big", true, b.eth(0x86dd, b.ipv6(udp, append(b.udpHdr(300), "abcd"...), -1, 6))},
	)
}

// rawSender is an AF_PACKET socket in the client namespace that sends whole frames on one interface.
type rawSender struct {
	fd int
	sa unix.SockaddrLinklayer
}

func newRawSender(ns *lab.NS, ifname string, dst net.HardwareAddr) (*rawSender, error) {
	s := &rawSender{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0: this socket only sends and receives nothing (packet(7)).
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("failed to open AF_PACKET socket: %w", err)
		}
		s.fd = fd
		s.sa = unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(s.sa.Addr[:], dst)
		return nil
	})
	return s, err
}

func (s *rawSender) send(frame []byte) error { return unix.Sendto(s.fd, frame, 0, &s.sa) }

func (s *rawSender) close() { _ = unix.Close(s.fd) }

// testMalformed sends a burst of malformed frames to the VIP while normal traffic runs: govs must
// survive, the traffic must not suffer, and the frames must show up as drops.
func (s *setup) testMalformed(t *testing.T) {
	l0mac, err := s.topo.Balancer.HardwareAddr("l0")
	if err != nil {
		t.Fatal(err)
	}
	cliIf, err := s.topo.Client.Interface(lab.ClientIface)
	if err != nil {
		t.Fatal(err)
	}
	cli := s.topo.ClientAddr4
	if s.vip.Is6() {
		cli = s.topo.ClientAddr6
	}
	b := frameBuilder{dst: l0mac, src: cliIf.HardwareAddr, cli: cli, vip: s.vip,
		tcp: lab.HTTPPort, udp: lab.UDPEchoPort, is6: s.vip.Is6()}
	frames := b.frames()
	snd, err := newRawSender(s.topo.Client, lab.ClientIface, l0mac)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.close()

	st0 := s.govs.mustStats()

	// Background traffic for the whole burst.
	stop := make(chan struct{})
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := s.topo.Client.HTTPClient(false)
			for n := 0; n < 10000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := getOnce(hc, s.baseURL+"/", 10*time.Second); err != nil {
					if bad.Add(1) <= 3 {
						t.Errorf("request during the malformed burst: %v", err)
					}
					continue
				}
				ok.Add(1)
			}
		}()
	}

	// One kind after the other, with a stats read after each, so the log says which kinds govs
	// counts (a kind the socket filter already rejects in the kernel never reaches govs's counters).
	perKind := malformedFrames / (len(frames) - 1) // eth-truncated is usually refused: do not count it in
	var sent, sentVIP, refused int
	var firstErr error
	var kinds []string
	prev := st0
	for _, f := range frames {
		n := 0
		for i := 0; i < perKind; i++ {
			if err := snd.send(f.frame); err != nil {
				refused++
				if firstErr == nil && !errors.Is(err, unix.EINVAL) {
					firstErr = fmt.Errorf("%s: %w", f.name, err)
				}
				continue
			}
			n++
			if i%100 == 99 {
				time.Sleep(5 * time.Millisecond) // pace: test the parser, not the RX ring's size
			}
		}
		sent += n
		if f.carriesVIP {
			sentVIP += n
		}
		if n == 0 {
			kinds = append(kinds, f.name+": refused by the kernel")
			continue
		}
		time.Sleep(50 * time.Millisecond)
		cur := s.govs.mustStats()
		kinds = append(kinds, fmt.Sprintf("%s: sent %d, drops_total +%d", f.name, n, cur.DropsTotal-prev.DropsTotal))
		prev = cur
	}
	t.Logf("per kind:\n\t%s", strings.Join(kinds, "\n\t"))
	time.Sleep(300 * time.Millisecond) // let the last frames through and traffic overlap the tail
	close(stop)
	wg.Wait()
	if firstErr != nil {
		t.Errorf("sending malformed frames: %v", firstErr)
	}
	s.govs.alive()

	st1 := s.govs.mustStats()
	var reasons []string
	for k, v := range st1.Drops {
		if d := v - st0.Drops[k]; d != 0 {
			reasons = append(reasons, fmt.Sprintf("%s=+%d", k, d))
		}
	}
	sort.Strings(reasons)
	grown := st1.DropsTotal - st0.DropsTotal
	t.Logf("sent %d malformed frames (%d carry the VIP, %d refused by the kernel); drops_total +%d: %s",
		sent, sentVIP, refused, grown, strings.Join(reasons, " "))
	t.Logf("traffic during the burst: %d ok, %d failed", ok.Load(), bad.Load())
	if ok.Load() == 0 {
		t.Errorf("no request completed during the burst")
	}
	if grown < int64(sent)/2 {
		t.Errorf("drops_total grew by %d for %d malformed frames sent (%d carrying the VIP), want >= 50%% of sent", grown, sent, sentVIP)
	}
}
