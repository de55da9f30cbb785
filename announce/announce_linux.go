//go:build linux

package announce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	// readBufSize holds any ARP packet and any NS we answer; longer frames are truncated and then
	// rejected by the IPv6 payload length check.
	readBufSize = 1514
	// maxReadErrors bounds consecutive unexpected read errors before a reader gives up.
	maxReadErrors = 10
)

// sysAnnouncer holds the two packet sockets. Each is bound to one EtherType with a BPF filter
// attached before bind, so the kernel hands us only ARP requests and ICMPv6 Neighbor
// Solicitations; outgoing frames never reach an EtherType-bound socket (only ETH_P_ALL taps see
// them, packet(7)), so we do not read our own announcements back.
type sysAnnouncer struct {
	arpConn *packet.Conn
	ndpConn *packet.Conn
}

// arpFilter accepts ARP requests for IPv4 over Ethernet.
var arpFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 14, Size: 2}, // hardware type
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 1, SkipTrue: 5},
	bpf.LoadAbsolute{Off: 16, Size: 2}, // protocol type
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IP, SkipTrue: 3},
	bpf.LoadAbsolute{Off: 20, Size: 2}, // operation
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 1, SkipTrue: 1},
	bpf.RetConstant{Val: readBufSize},
	bpf.RetConstant{Val: 0},
}

// nsFilter accepts ICMPv6 type 135 directly after a fixed IPv6 header. An NS behind extension
// headers is legal but unseen in practice; the kernel's own ndisc would see it, we do not.
var nsFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // next header
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
	bpf.LoadAbsolute{Off: icmpOff, Size: 1}, // ICMPv6 type
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNS, SkipTrue: 1},
	bpf.RetConstant{Val: readBufSize},
	bpf.RetConstant{Val: 0},
}

// New starts answering and announcing on interface ifname, holding no VIP until SetVIPs. It must be
// called from inside the network namespace holding ifname. The interface needs no IP address.
// logf may be nil. Close stops it.
func New(ifname string, logf func(format string, args ...any)) (*Announcer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("failed to find interface %q to announce VIPs on: %w", ifname, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("failed to announce on %s: it has no Ethernet address (hardware address %q); ARP and NDP need one", ifname, ifi.HardwareAddr)
	}
	arpProg, err := bpf.Assemble(arpFilter)
	if err != nil {
		return nil, fmt.Errorf("failed to assemble the ARP filter: %w", err)
	}
	nsProg, err := bpf.Assemble(nsFilter)
	if err != nil {
		return nil, fmt.Errorf("failed to assemble the NS filter: %w", err)
	}
	arpConn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: arpProg})
	if err != nil {
		return nil, fmt.Errorf("failed to open an ARP packet socket on %s (needs CAP_NET_RAW): %w", ifname, err)
	}
	ndpConn, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: nsProg})
	if err != nil {
		arpConn.Close()
		return nil, fmt.Errorf("failed to open an IPv6 packet socket on %s (needs CAP_NET_RAW): %w", ifname, err)
	}
	a := newAnnouncer(ifi, logf)
	a.sys = sysAnnouncer{arpConn: arpConn, ndpConn: ndpConn}
	a.wg.Add(3)
	go a.RoutineARP()
	go a.RoutineNDP()
	go a.RoutineAnnounce()
	return a, nil
}

// Close stops answering and announcing, and waits for the goroutines. It is safe to call twice.
// Releasing a VIP needs nothing more: peers' entries age out or are overwritten by the new owner's
// announcements.
func (a *Announcer) Close() error {
	a.mu.Lock() // SetVIPs must not join groups on a closing socket
	if a.closed() {
		a.mu.Unlock()
		return nil
	}
	close(a.done)
	a.mu.Unlock()
	err := errors.Join(a.sys.arpConn.Close(), a.sys.ndpConn.Close())
	a.wg.Wait()
	if err != nil {
		return fmt.Errorf("failed to close the packet sockets on %s: %w", a.ifi.Name, err)
	}
	return nil
}

// joinSolicitedNode makes the interface accept frames for v's solicited-node multicast group
// (PACKET_ADD_MEMBERSHIP): a NIC filters multicast it was not asked for, and NS are sent there.
// The kernel reference-counts memberships per socket, so VIPs sharing a group join it twice.
func (a *Announcer) joinSolicitedNode(v netip.Addr) {
	if a.closed() {
		return
	}
	mac := solicitedNodeMAC(v)
	if err := a.sys.ndpConn.JoinGroup(mac[:]); err != nil {
		a.logf("announce: failed to join multicast group %s on %s, Neighbor Solicitations for %s may not arrive: %v", net.HardwareAddr(mac[:]), a.ifi.Name, v, err)
	}
}

func (a *Announcer) leaveSolicitedNode(v netip.Addr) {
	if a.closed() {
		return
	}
	mac := solicitedNodeMAC(v)
	if err := a.sys.ndpConn.LeaveGroup(mac[:]); err != nil {
		a.logf("announce: failed to leave multicast group %s on %s: %v", net.HardwareAddr(mac[:]), a.ifi.Name, err)
	}
}

// readLoop reads frames from c and hands each to handle until c is closed. It gives up after
// maxReadErrors consecutive unexpected errors.
func (a *Announcer) readLoop(c *packet.Conn, what string, handle func(frame []byte)) {
	buf := make([]byte, readBufSize)
	errs := 0
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || a.closed() {
				return // Close closed the socket; mdlayher/socket may report EBADF instead
			}
			if errs++; errs >= maxReadErrors {
				a.logf("announce: stopped answering %s on %s after %d read errors: %v", what, a.ifi.Name, errs, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		errs = 0
		handle(buf[:n])
	}
}

// RoutineARP answers ARP requests for held IPv4 VIPs.
func (a *Announcer) RoutineARP() {
	defer a.wg.Done()
	conflicts := make(map[netip.Addr]*conflict)
	a.readLoop(a.sys.arpConn, "ARP", func(frame []byte) {
		if len(frame) < ethHeaderLen {
			a.drop(dropTruncated)
			return
		}
		var req arp.Packet
		if err := req.UnmarshalBinary(frame[ethHeaderLen:]); err != nil {
			a.drop(dropNotRequest)
			return
		}
		reply, reason := a.arpReply(&req)
		if reason == dropConflict {
			a.conflicted(conflicts, req.TargetIP, req.SenderHardwareAddr, time.Now())
		}
		if reason != 0 {
			a.drop(reason)
			return
		}
		// Reply to the frame's source, which is where the request came from even if a proxy
		// rewrote the ARP sender field.
		if err := a.writeARP(reply, net.HardwareAddr(frame[6:12])); err != nil {
			a.drop(dropWriteFailed)
			return
		}
		a.arpReplies.Add(1)
	})
}

// conflict is another host's announcing a VIP this node holds.
type conflict struct {
	first, last time.Time
	warned      bool
}

// An HA peer taking over announces the VIPs while the node it takes them from may still hold
// them, for a moment: one conflict. Another host that has the address configured goes on
// announcing it (gratuitous ARP, its own ARP requests), and that splits the VIP's traffic:
// conflicts conflictPersist apart are warned of. A conflict conflictForget after the last is new.
const (
	conflictPersist = time.Second
	conflictForget  = time.Minute
)

// conflicted logs another host's (mac) announcing vip, which this node holds: once as news, and
// as a warning if it goes on (Drops counts them all).
func (a *Announcer) conflicted(conflicts map[netip.Addr]*conflict, vip netip.Addr, mac net.HardwareAddr, now time.Time) {
	c := conflicts[vip]
	switch {
	case c == nil || now.Sub(c.last) > conflictForget:
		conflicts[vip] = &conflict{first: now, last: now}
		a.logf("announce: %s announced VIP %s on %s, which this node holds: expected while an HA peer takes over; if it goes on, another host has the address", mac, vip, a.ifi.Name)
		return
	case !c.warned && now.Sub(c.first) >= conflictPersist:
		c.warned = true
		a.logf("warning: announce: %s goes on announcing VIP %s on %s, which this node holds (since %v ago): another host has this address configured (or an HA peer is active too: split brain), and the VIP's traffic is split between the two; remove it there, or from one of the two", mac, vip, a.ifi.Name, now.Sub(c.first).Round(time.Millisecond))
	}
	c.last = now
}

// RoutineNDP answers Neighbor Solicitations for held IPv6 VIPs.
func (a *Announcer) RoutineNDP() {
	defer a.wg.Done()
	out := make([]byte, naFrameLen)
	a.readLoop(a.sys.ndpConn, "NDP", func(frame []byte) {
		ns, reason := parseNS(frame)
		if reason == 0 && !a.holds(ns.Target) {
			reason = dropNotOurs
		}
		if reason == 0 && ns.EthSrc == a.mac {
			reason = dropOwnFrame
		}
		if reason != 0 {
			a.drop(reason)
			return
		}
		dstMAC, dst, flags := naReply(ns)
		n := buildNA(out, a.mac, dstMAC, dst, ns.Target, flags)
		if _, err := a.sys.ndpConn.WriteTo(out[:n], &packet.Addr{HardwareAddr: dstMAC[:]}); err != nil {
			a.drop(dropWriteFailed)
			return
		}
		a.ndpAdverts.Add(1)
	})
}

// RoutineAnnounce sends the gratuitous ARPs and unsolicited NAs for newly held VIPs: one at once,
// then one every announceInterval until announceRepeats were sent or the VIP is released; and,
// with SetRefresh, one for every held VIP every refresh period. It sleeps while there is nothing
// to announce.
//
//	SetVIPs adds v ──► pending ──wake──► left[v]=announceRepeats ──send──► left[v]-- ──► 0: done
//	                                         ▲                               │
//	                                         └──── tick (only if held) ◄─────┘
func (a *Announcer) RoutineAnnounce() {
	defer a.wg.Done()
	left := make(map[netip.Addr]int) // VIP → announcements still to send after the first
	tick := time.NewTimer(announceInterval)
	tick.Stop()
	defer tick.Stop()
	armed := false
	arm := func() {
		if !armed && len(left) > 0 {
			tick.Reset(announceInterval)
			armed = true
		}
	}
	// The refresh timer runs while SetRefresh asks for it, whatever is held: holding nothing,
	// a refresh sends nothing.
	refresh := time.NewTimer(time.Hour)
	refresh.Stop()
	defer refresh.Stop()
	every := time.Duration(0)
	rearm := func() {
		if d := time.Duration(a.refresh.Load()); d != every {
			every = d
			refresh.Stop()
			if d > 0 {
				refresh.Reset(d)
			}
		}
	}
	for {
		rearm()
		select {
		case <-a.done:
			return
		case <-refresh.C:
			for v := range *a.vips.Load() {
				a.announce(v)
			}
			if every > 0 {
				refresh.Reset(every)
			}
		case <-a.wake:
			a.mu.Lock()
			added := a.pending
			a.pending = nil
			a.mu.Unlock()
			for _, v := range added {
				if !a.holds(v) {
					continue // added and released again before we got to it
				}
				a.announce(v)
				if announceRepeats > 1 {
					left[v] = announceRepeats - 1
				}
			}
			arm()
		case <-tick.C:
			armed = false
			for v := range left {
				if !a.holds(v) {
					delete(left, v) // released: stop announcing at once
					continue
				}
				a.announce(v)
				if left[v]--; left[v] <= 0 {
					delete(left, v)
				}
			}
			arm()
		}
	}
}

// announce sends one gratuitous ARP or unsolicited NA for v.
func (a *Announcer) announce(v netip.Addr) {
	var err error
	if v.Is4() {
		for _, reply := range []bool{false, true} {
			var p *arp.Packet
			if p, err = a.gratuitousARP(v, reply); err == nil {
				err = a.writeARP(p, ethernet.Broadcast)
			}
			if err != nil {
				break
			}
		}
	} else {
		// Unsolicited NA to all nodes with Override set and Solicited clear (RFC 4861 §7.2.6).
		var b [naFrameLen]byte
		n := buildNA(b[:], a.mac, allNodesMAC, allNodes, v, naFlagOverride)
		_, err = a.sys.ndpConn.WriteTo(b[:n], &packet.Addr{HardwareAddr: allNodesMAC[:]})
	}
	if err != nil {
		a.logf("announce: failed to announce %s on %s: %v", v, a.ifi.Name, err)
		return
	}
	a.gratuitous.Add(1)
}

// writeARP sends p in an Ethernet frame to dst.
func (a *Announcer) writeARP(p *arp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := ethernet.Frame{Destination: dst, Source: a.ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = a.sys.arpConn.WriteTo(fb, &packet.Addr{HardwareAddr: dst})
	return err
}
