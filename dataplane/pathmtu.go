package dataplane

import (
	"encoding/binary"
	"slices"
	"sync/atomic"
	"time"

	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/internal/cacheline"
)

// Path MTU learned from the network (method tun). A router between the balancer and a real server
// whose next link is narrower than the route's MTU drops an encapsulated packet with DF (the
// inner packet's, copied) and tells its source, this host, with ICMP fragmentation needed (RFC
// 1191) or packet too big (RFC 8201). The balancer's kernel cannot act on it (it did not send the
// packet, and without ipip/fou no protocol handler takes an error about one), so govs does: it
// lowers that real server's path MTU, and the client's next packet that no longer fits gets the
// client a too-big answer (tooBig) with the MTU left inside the tunnel, as for a route MTU.
//
// What a learned MTU is, as the kernel keeps it (ip_rt_update_pmtu, rt6_do_update_pmtu):
//   - per destination: one word per real-server address, shared by the Reals of every service
//     with that address (the path is the address's, not the service's);
//   - only lower: an MTU at or above the route's, or above one learned that has not expired, is
//     ignored; a report of the same MTU renews it;
//   - bounded below: IPv4 at pmtuMin4 (the kernel's net.ipv4.route.min_pmtu), IPv6 at the minimum
//     link MTU (RFC 8200) plus the path's widest tunnel header, so a forged or broken report
//     cannot shrink the tunnel to nothing, nor, for IPv6, below what an IPv6 client can send
//     (it ignores a packet too big under 1280 and keeps sending 1280-byte packets, which a
//     narrower tunnel would drop every time; govs does not fragment outer IPv6 packets);
//   - expiring: pmtuExpires after it was learned (the kernel's mtu_expires), the route's MTU is
//     back, and a path that is still narrow says so again.
//
// The error must quote a packet govs tunnelled: from the real server's tunnel source (this host),
// to the address of a tun real server, IP protocol 4 / next header 41 to a real server some
// service tunnels to with IPIP, or UDP to the GUE port of one that does with GUE; an IPv4 packet
// with DF and not a fragment; longer than the MTU reported. Anything else that looks like one is
// counted (tunnel_pmtu_ignored) and changes nothing; accepted ones are tunnel_pmtu_learned.
//
// Workers read the word with one atomic load per tunnelled packet and never wait: the word holds
// the MTU and its expiry together, so a learning worker replaces both with one compare-and-swap.
// It lives outside the published Tables, which are immutable: each Tables points its tun Reals at
// the words, and Engine.Publish hands the words of the tables in force to the new ones for every
// address whose path did not change (same tunnel source, same route MTU), so a reload or a
// neighbour refresh keeps what was learned; a changed path starts afresh.
const (
	pmtuExpires = int64(10 * time.Minute)
	pmtuMin4    = 552 // the kernel's min_pmtu: 512 bytes of data behind two 20-byte headers
	pmtuMin6    = ipv6MinMTU
)

// pathMTU is one learned path MTU: the MTU in the low 16 bits and, above them, when it expires (the
// worker clock in nanoseconds, its low 16 bits cleared); 0 when none is learned. It has a cache line
// to itself: workers read it per packet and a learning worker writes it.
type pathMTU struct {
	v atomic.Uint64
	_ [cacheline.Size - 8]byte
}

// tunnelPath is what Tables knows of the path to one tun real-server address: what its outer
// packets look like, so that an error about one can be checked, and its learned MTU.
type tunnelPath struct {
	src  [16]byte // the outer source (every Real with the address has the same route, so the same)
	mtu  int      // the route's MTU
	ipip bool     // a service tunnels to it with IPIP
	gue  []uint16 // the GUE ports services tunnel to it with
	pmtu *pathMTU
}

// addPath enters tun real server r of service s in t.paths and points r at the path's word.
func (t *Tables) addPath(r *Real, s *Service) {
	if t.paths == nil {
		t.paths = map[[16]byte]*tunnelPath{}
	}
	p := t.paths[r.addr]
	if p == nil {
		p = &tunnelPath{src: r.src, mtu: r.MTU, pmtu: new(pathMTU)}
		t.paths[r.addr] = p
	}
	if s.Tunnel == TunnelGUE {
		if !slices.Contains(p.gue, s.TunnelPort) {
			p.gue = append(p.gue, s.TunnelPort)
		}
	} else {
		p.ipip = true
	}
	r.pmtu = p.pmtu
}

// inheritPaths gives t, before it is published, the learned path MTUs of prev (the tables in
// force, or nil) for every real-server address whose path is the same in both.
func (t *Tables) inheritPaths(prev *Tables) {
	if prev == nil || len(t.paths) == 0 {
		return
	}
	for a, p := range t.paths {
		if o := prev.paths[a]; o != nil && o.src == p.src && o.mtu == p.mtu {
			p.pmtu = o.pmtu
		}
	}
	for _, r := range t.Reals {
		if r != nil && r.pmtu != nil {
			r.pmtu = t.paths[r.addr].pmtu
		}
	}
}

// effectiveMTU is the path MTU towards r at time now: the route's, or a lower one learned that has
// not expired; 0 when neither is known.
func effectiveMTU(r *Real, now int64) int {
	if r.pmtu == nil {
		return r.MTU
	}
	v := r.pmtu.v.Load()
	if v == 0 || int64(v&^0xffff) <= now {
		return r.MTU
	}
	if m := int(v & 0xffff); r.MTU == 0 || m < r.MTU {
		return m
	}
	return r.MTU
}

// pathMTU is effectiveMTU at the worker's clock.
func (w *Worker) pathMTU(r *Real) int { return effectiveMTU(r, w.now) }

// isTooBig reports whether ICMP error p is fragmentation needed (IPv4) or packet too big (IPv6).
func isTooBig(p *frame.Parsed) bool {
	if p.Family == 4 {
		return p.ICMPType == 3 && p.ICMPCode == 4
	}
	return p.ICMPType == 2
}

// pathMTUSignal takes ICMP error p of frame b, quoting q, that no connection claims: if it is a
// too-big error about a packet shaped like one govs tunnels, it checks it and lowers the path MTU
// it reports, and reports true: the frame is done with (its copy in the kernel is the host's).
// Otherwise it reports false and changes nothing.
func (w *Worker) pathMTUSignal(b []byte, p, q *frame.Parsed) bool {
	if !isTooBig(p) || (q.Proto != protoIPIP && q.Proto != protoIPv6 && q.Proto != frame.ProtoUDP) {
		return false
	}
	path := w.tables.paths[q.Dst]
	if path == nil || (q.Proto == frame.ProtoUDP && !slices.Contains(path.gue, q.DstPort)) {
		return false
	}
	mtu, ok := reportedMTU(b, p, q, path)
	if !ok {
		w.c[cTunnelPMTUIgnored]++
		return true
	}
	next := uint64(w.now+pmtuExpires)&^0xffff | uint64(mtu)
	for range 4 { // another worker learning at the same time: look again
		old := path.pmtu.v.Load()
		if old != 0 && int64(old&^0xffff) > w.now && int(old&0xffff) < mtu {
			break // a lower one is known
		}
		if path.pmtu.v.CompareAndSwap(old, next) {
			w.c[cTunnelPMTULearned]++
			return true
		}
	}
	w.c[cTunnelPMTUIgnored]++
	return true
}

// reportedMTU checks too-big error p quoting q, about a packet to path's real server, and returns
// the MTU it reports, bounded below; false if it is not about a packet govs sent there or has
// nothing to teach (an MTU not below the route's).
func reportedMTU(b []byte, p, q *frame.Parsed, path *tunnelPath) (int, bool) {
	if p.Dst != q.Src || q.Src != path.src {
		return 0, false
	}
	icmp := b[p.L4Off:p.End]
	l3 := b[q.L3Off:q.End]
	var mtu, quoted, floor int
	if p.Family == 4 {
		// IPIP to a real server served with IPIP, DF (copied from the inner packet: govs never
		// sends an outer packet a router could fragment and also complain about), no fragment.
		if (q.Proto == protoIPIP && !path.ipip) || q.Proto == protoIPv6 || l3[6]&ipv4FlagDF == 0 || q.Frag != frame.FragNone {
			return 0, false
		}
		mtu, quoted, floor = int(binary.BigEndian.Uint16(icmp[6:])), int(binary.BigEndian.Uint16(l3[2:])), pmtuMin4
	} else {
		if (q.Proto == protoIPv6 && !path.ipip) || q.Proto == protoIPIP {
			return 0, false
		}
		mtu = int(min(binary.BigEndian.Uint32(icmp[4:]), 0xffff))
		quoted, floor = frame.IPv6MinimumSize+int(binary.BigEndian.Uint16(l3[4:])), pmtuFloor6(path)
	}
	// The router dropped the packet because it is longer than mtu. An MTU of 0 (a router older
	// than RFC 1191) passes and becomes the floor, as in the kernel.
	if quoted <= mtu {
		return 0, false
	}
	mtu = max(mtu, floor)
	if path.mtu > 0 && mtu >= path.mtu {
		return 0, false
	}
	return mtu, true
}

// pmtuFloor6 is the lowest IPv6 path MTU learned towards path: what keeps the minimum IPv6 link
// MTU inside the widest tunnel header that services use to it.
func pmtuFloor6(path *tunnelPath) int {
	if len(path.gue) > 0 {
		return pmtuMin6 + frame.IPv6MinimumSize + frame.UDPMinimumSize + gueHeaderLen
	}
	return pmtuMin6 + frame.IPv6MinimumSize
}

// PathMTU returns the path MTU govs uses now towards tun real server r of the tables in force: the
// route's, or a lower one learned from ICMP that has not expired; 0 when unknown or not tun.
func (e *Engine) PathMTU(r *Real) int {
	return effectiveMTU(r, int64(time.Since(e.epoch)))
}
