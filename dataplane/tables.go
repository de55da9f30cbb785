package dataplane

import (
	"net/netip"

	"github.com/govs/govs/sched"
)

// Method is how a frame reaches the real server.
type Method uint8

const (
	methodInvalid Method = iota
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
	// RealIDs lists the service's real servers, in config order; the scheduler's dests use the same order.
	RealIDs []uint16
	// Dests is the scheduler's view of RealIDs (weight, availability).
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

	addr [16]byte
}

type serviceKey struct {
	addr  [16]byte
	port  uint16
	proto uint8
}

// NewTables builds the lookup indexes of a Tables from its Services and Reals. Callers fill Gen,
// Services and Reals, then call Finish once before publishing.
func (t *Tables) Finish() {
	t.byVIP = make(map[serviceKey]uint16, len(t.Services))
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		s.addr = s.VIP.Addr().As16()
		t.byVIP[serviceKey{s.addr, s.VIP.Port(), s.Proto}] = s.ID
	}
	for _, r := range t.Reals {
		if r != nil {
			r.addr = r.Addr.Addr().As16()
		}
	}
}

// service returns the service for a destination, or nil.
func (t *Tables) service(addr [16]byte, port uint16, proto uint8) *Service {
	id, ok := t.byVIP[serviceKey{addr, port, proto}]
	if !ok {
		return nil
	}
	return t.Services[id]
}

func (t *Tables) real(id uint16) *Real {
	if int(id) >= len(t.Reals) {
		return nil
	}
	return t.Reals[id]
}
