package dataplane

import (
	"net/netip"

	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/sched"
)

// Method is how a frame reaches the real server.
type Method uint8

const (
	_ Method = iota // the zero Method is none: every Service names one
	// MethodNAT rewrites the destination (and, on replies, the source) address and port.
	MethodNAT
	// MethodDR changes only the MAC addresses; the real server owns the VIP and answers the client directly.
	MethodDR
)

func (m Method) String() string {
	switch m {
	case MethodNAT:
		return "nat"
	case MethodDR:
		return "dr"
	}
	return "invalid"
}

// Tables is the compiled, immutable forwarding state that workers read. The daemon builds a new
// Tables on every change (reload, neighbour change) and publishes it with Engine.Publish; a worker
// picks the new one up between batches. Nothing in a published Tables is ever modified.
type Tables struct {
	// Gen increases with every publication.
	Gen uint32
	// Services is indexed by service ID; a nil entry is a removed service.
	Services []*Service
	// Reals is indexed by real-server ID (stable across reloads for the same service and address),
	// so connections keep their real server through a reload. A nil entry is a removed real server.
	Reals []*Real
	// ExpireNodestConn drops a removed real server's connections at their next packet instead of
	// forwarding them until they end (IPVS expire_nodest_conn).
	ExpireNodestConn bool
	// Draining refuses new connections (counted as "draining") while established ones are still
	// forwarded: a stand-alone node that is stopping (shutdown_drain).
	Draining bool

	byVIP map[serviceKey]uint16
}

// Service is one virtual server.
type Service struct {
	ID        uint16
	Name      string // "tcp/198.18.0.100:80", for listings
	VIP       netip.AddrPort
	Proto     uint8 // 6 or 17
	Method    Method
	Scheduler string
	// SchedOptions are the scheduler's flags and Maglev table size.
	SchedOptions sched.Options
	// Persistence is the persistence timeout in nanoseconds; 0 means none. A client, its address
	// masked to PersistenceBits, keeps its real server across connections while its template lives.
	Persistence     int64
	PersistenceBits int
	// OnePacket schedules each UDP datagram on its own (IPVS one-packet scheduling).
	OnePacket bool
	// RealIDs lists the service's real servers, in config order; the scheduler's dests use the same order.
	RealIDs []uint16
	// Dests is the scheduler's view of RealIDs (weight, availability, counts), built by Finish.
	Dests []sched.Dest

	addr [16]byte
}

// Real is one real server of one service.
type Real struct {
	ID      uint16
	Service uint16
	Addr    netip.AddrPort
	Weight  int32
	// Port is the index (in the engine's interface list) of the interface that reaches the real server.
	Port int
	// MAC is the next hop's hardware address; valid when Resolved.
	MAC      [6]byte
	Resolved bool
	// Removed marks a real server a reload took out of its service: it gets no new connections;
	// its established ones are forwarded to it until they end, unless Tables.ExpireNodestConn.
	Removed bool
	// Counts are the real server's connection counts over all workers (shared; written when a
	// connection starts, changes between active and inactive, or ends).
	Counts *sched.Counts
	// UpperThreshold and LowerThreshold bound the real server's connections (ipvsadm -x / -y);
	// 0 means none.
	UpperThreshold, LowerThreshold uint32

	addr [16]byte
}

type serviceKey struct {
	addr  [16]byte
	port  uint16
	proto uint8
}

// Finish builds the lookup indexes and every service's scheduler view (Dests) from Services and
// Reals. Callers fill Gen, Services and Reals (a Real without Counts gets fresh ones), then call
// Finish once before publishing.
func (t *Tables) Finish() {
	t.byVIP = make(map[serviceKey]uint16, len(t.Services))
	for _, r := range t.Reals {
		if r == nil {
			continue
		}
		r.addr = r.Addr.Addr().As16()
		if r.Counts == nil {
			r.Counts = new(sched.Counts)
		}
	}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		s.addr = s.VIP.Addr().As16()
		t.byVIP[serviceKey{s.addr, s.VIP.Port(), s.Proto}] = s.ID
		s.Dests = s.Dests[:0]
		for _, id := range s.RealIDs {
			r := t.Reals[id]
			s.Dests = append(s.Dests, sched.Dest{
				Addr:           r.addr,
				Port:           r.Addr.Port(),
				Weight:         r.Weight,
				Available:      r.Resolved && !r.Removed,
				Counts:         r.Counts,
				UpperThreshold: r.UpperThreshold,
				LowerThreshold: r.LowerThreshold,
			})
		}
	}
}

// Stickiness says how the fanout must hash for t's persistent services: each worker keeps its own
// persistence templates, so all connections of a client network (the widest persistence_netmask of
// its family) must reach one worker. Without persistent services it hashes addresses and ports.
// The offline replay deals flows to workers by the same rule.
func (t *Tables) Stickiness() bpfgen.Stickiness {
	st := bpfgen.Stickiness{Bits4: 32, Bits6: 128}
	for _, s := range t.Services {
		if s == nil || s.Persistence <= 0 {
			continue
		}
		st.Sticky = true
		if s.VIP.Addr().Is4() {
			st.Bits4 = min(st.Bits4, s.PersistenceBits)
		} else {
			st.Bits6 = min(st.Bits6, s.PersistenceBits)
		}
	}
	if !st.Sticky {
		return bpfgen.Stickiness{}
	}
	return st
}

// service returns the service for a destination, or nil. A service for the exact port wins; else
// the address's port-0 (all ports) service takes it, as IPVS does for a port-0 service.
func (t *Tables) service(addr [16]byte, port uint16, proto uint8) *Service {
	id, ok := t.byVIP[serviceKey{addr, port, proto}]
	if !ok {
		if id, ok = t.byVIP[serviceKey{addr, 0, proto}]; !ok {
			return nil
		}
	}
	return t.Services[id]
}

func (t *Tables) real(id uint16) *Real {
	if int(id) >= len(t.Reals) {
		return nil
	}
	return t.Reals[id]
}
