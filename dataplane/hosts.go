package dataplane

import (
	"net/netip"
	"slices"
	"sync/atomic"
)

// hostAddrs is the set of the balancer's own addresses (IPv4-mapped for IPv4), which the engine
// replaces when the host's addresses change and workers read when a frame matches no service: a
// frame for the host is the host's business (its kernel has the frame too), not a drop.
type hostAddrs struct {
	set atomic.Pointer[[][16]byte] // sorted
}

// store replaces the set.
func (h *hostAddrs) store(addrs []netip.Addr) {
	s := make([][16]byte, 0, len(addrs))
	for _, a := range addrs {
		s = append(s, a.As16())
	}
	slices.SortFunc(s, func(a, b [16]byte) int { return slices.Compare(a[:], b[:]) })
	h.set.Store(&s)
}

// has reports whether a is one of the addresses; false for a nil set.
func (h *hostAddrs) has(a [16]byte) bool {
	if h == nil {
		return false
	}
	s := h.set.Load()
	if s == nil {
		return false
	}
	_, found := slices.BinarySearchFunc(*s, a, func(x, y [16]byte) int { return slices.Compare(x[:], y[:]) })
	return found
}
