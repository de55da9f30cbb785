package announce

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

const (
	// announceRepeats is how many gratuitous ARPs / unsolicited NAs a newly held VIP gets: one at
	// once, the rest announceInterval apart (RFC 5227 §2.3 announces twice; keepalived and MetalLB
	// repeat for a few seconds so a switch or peer that missed the first one still learns).
	announceRepeats  = 3
	announceInterval = time.Second
)

// An Announcer answers ARP requests and Neighbor Solicitations for the VIPs it holds on one
// interface, and announces each newly held VIP.
//
// New starts its goroutines (RoutineARP, RoutineNDP, RoutineAnnounce); Close stops them and waits
// for them. All methods are safe for concurrent use.
type Announcer struct {
	ifi  *net.Interface
	mac  [6]byte
	logf func(format string, args ...any)

	vips atomic.Pointer[map[netip.Addr]struct{}] // the set held now; replaced, never mutated

	mu      sync.Mutex     // serialises SetVIPs and guards pending
	pending []netip.Addr   // newly held VIPs RoutineAnnounce has not started announcing
	wake    chan struct{}  // buffered 1: pending is not empty
	done    chan struct{}  // closed by Close
	wg      sync.WaitGroup // the Routine* goroutines

	refresh atomic.Int64 // re-announce every held VIP this often (nanoseconds); 0: never

	arpReplies atomic.Uint64
	ndpAdverts atomic.Uint64
	gratuitous atomic.Uint64
	drops      [numDropReasons]atomic.Uint64

	sys sysAnnouncer // the socket half, see announce_linux.go
}

func newAnnouncer(ifi *net.Interface, logf func(format string, args ...any)) *Announcer {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	a := &Announcer{
		ifi:  ifi,
		mac:  [6]byte(ifi.HardwareAddr),
		logf: logf,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	empty := map[netip.Addr]struct{}{}
	a.vips.Store(&empty)
	return a
}

// SetVIPs replaces the set of VIPs held now. VIPs not held before are announced at once and then
// announceRepeats-1 more times, announceInterval apart, for as long as they stay held. Answers
// for removed VIPs stop immediately. Invalid addresses are ignored; IPv4-mapped IPv6 addresses
// are treated as IPv4.
func (a *Announcer) SetVIPs(vips []netip.Addr) {
	next := make(map[netip.Addr]struct{}, len(vips))
	for _, v := range vips {
		if v = v.Unmap(); v.IsValid() && !v.IsUnspecified() && !v.IsMulticast() {
			next[v] = struct{}{}
		}
	}

	a.mu.Lock()
	prev := *a.vips.Load()
	var added []netip.Addr
	for v := range next {
		if _, ok := prev[v]; !ok {
			added = append(added, v)
			if v.Is6() {
				a.joinSolicitedNode(v)
			}
		}
	}
	a.vips.Store(&next)
	for v := range prev {
		if _, ok := next[v]; !ok && v.Is6() {
			a.leaveSolicitedNode(v)
		}
	}
	a.pending = append(a.pending, added...)
	a.mu.Unlock()

	if len(added) > 0 {
		a.kick()
	}
}

// Reannounce announces every VIP held now again, at once and then announceRepeats-1 more times,
// as if newly held: an HA node that stays active after a split brain reclaims its addresses.
func (a *Announcer) Reannounce() {
	a.mu.Lock()
	for v := range *a.vips.Load() {
		a.pending = append(a.pending, v)
	}
	a.mu.Unlock()
	a.kick()
}

// SetRefresh makes the announcer re-announce every held VIP every d, for as long as it holds it,
// so that a neighbour whose entry was replaced or aged out (or a switch that forgot the port)
// learns it again; 0 (the default) announces only newly held VIPs.
func (a *Announcer) SetRefresh(d time.Duration) {
	a.refresh.Store(int64(max(d, 0)))
	a.kick()
}

// kick wakes RoutineAnnounce.
func (a *Announcer) kick() {
	select {
	case a.wake <- struct{}{}:
	default: // a wake-up is pending already and will see everything
	}
}

// Stats returns how many ARP replies and solicited Neighbor Advertisements were sent, and how
// many gratuitous ARPs and unsolicited Neighbor Advertisements.
func (a *Announcer) Stats() (arpReplies, ndpAdverts, gratuitous uint64) {
	return a.arpReplies.Load(), a.ndpAdverts.Load(), a.gratuitous.Load()
}

// Drops returns how many received frames were not answered, by reason. Frames for addresses that
// are not held are counted as "not_ours".
func (a *Announcer) Drops() map[string]uint64 {
	m := make(map[string]uint64)
	for r := dropReason(1); r < numDropReasons; r++ {
		if n := a.drops[r].Load(); n > 0 {
			m[r.String()] = n
		}
	}
	return m
}

// closed reports whether Close was called.
func (a *Announcer) closed() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// holds reports whether v is held now.
func (a *Announcer) holds(v netip.Addr) bool {
	_, ok := (*a.vips.Load())[v]
	return ok
}

// arpReply decides whether to answer an ARP packet and returns the reply, or why not.
// Requests for a held VIP are answered, including ARP probes (sender 0.0.0.0, RFC 5227 §2.1.1),
// which defends the VIP; a gratuitous ARP from someone else for a held VIP is a conflict.
func (a *Announcer) arpReply(p *arp.Packet) (*arp.Packet, dropReason) {
	if p.Operation != arp.OperationRequest || !p.TargetIP.Is4() || len(p.SenderHardwareAddr) != 6 {
		return nil, dropNotRequest
	}
	if !a.holds(p.TargetIP) {
		return nil, dropNotOurs
	}
	if [6]byte(p.SenderHardwareAddr) == a.mac {
		return nil, dropOwnFrame
	}
	if p.SenderIP == p.TargetIP {
		return nil, dropConflict
	}
	reply, err := arp.NewPacket(arp.OperationReply, a.ifi.HardwareAddr, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
	if err != nil {
		return nil, dropNotRequest
	}
	return reply, 0
}

// gratuitousARP returns the announcement for vip in request form (target hardware address
// broadcast), or in reply form when reply is set (target hardware address our own, RFC 5944
// §4.6); sender and target protocol address are both vip. RFC 5227 §3 prefers the request, some
// hosts heed only a reply, so a takeover sends both. Linux treats either as gratuitous, which
// updates an existing entry even within its locktime, only in exactly these forms: a reply counts
// as gratuitous only if its target hardware address equals the sender's (arp_is_garp in
// net/ipv4/arp.c).
func (a *Announcer) gratuitousARP(vip netip.Addr, reply bool) (*arp.Packet, error) {
	if reply {
		return arp.NewPacket(arp.OperationReply, a.ifi.HardwareAddr, vip, a.ifi.HardwareAddr, vip)
	}
	return arp.NewPacket(arp.OperationRequest, a.ifi.HardwareAddr, vip, ethernet.Broadcast, vip)
}

// drop counts a frame that was not answered.
func (a *Announcer) drop(r dropReason) {
	if r < numDropReasons {
		a.drops[r].Add(1)
	}
}
