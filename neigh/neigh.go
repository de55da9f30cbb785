package neigh

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/govs/govs/internal/ratelog"
)

// Entry is what the data plane needs to send a frame towards Addr.
type Entry struct {
	Addr    netip.Addr // the real server (or any destination) asked for
	IfIndex int        // outgoing interface; 0 when there is no usable route
	NextHop netip.Addr // gateway or Addr itself; invalid when there is no usable route
	// Src is the address the kernel would send from towards Addr (the route's preferred source,
	// an address of the outgoing interface): the outer source of tunnelled frames. Invalid when
	// the route gives none.
	Src netip.Addr
	// MTU is the path MTU towards Addr as the kernel knows it: the route's mtu if it has one, else
	// the outgoing interface's. 0 when there is no usable route.
	MTU      int
	MAC      [6]byte // the next hop's link-layer address, valid when Resolved
	Resolved bool
}

// A Resolver keeps the Entry of every target current.
//
// New starts its goroutine (RoutineResolve) and Close stops it and waits for it. All methods are
// safe for concurrent use. Lookup takes a read lock and never allocates; it is meant for building
// the data plane's compiled tables after Changed fires, not for the per-packet path.
type Resolver struct {
	log     *slog.Logger
	changes *ratelog.Limiter // the resolved/unresolved records, by address (a flapping neighbour)
	changed chan struct{}    // buffered 1, see notify
	kick    chan struct{}    // buffered 1, asks RoutineResolve for a refresh now

	mu      sync.RWMutex
	targets map[netip.Addr]*target // guarded by mu
	lost    uint64                 // resolved entries that became unresolved; guarded by mu

	sys sysResolver // the kernel half, see neigh_linux.go
}

// target is the Resolver's record for one destination.
type target struct {
	e      Entry
	reason string // why e is unresolved, as last logged; "" when resolved or not yet known
}

// Kernel neighbour states (NUD_*, include/uapi/linux/neighbour.h). They are bits: a dump never
// shows more than one, but the kernel tests them as masks.
const (
	nudIncomplete = 0x01
	nudReachable  = 0x02
	nudStale      = 0x04
	nudDelay      = 0x08
	nudProbe      = 0x10
	nudFailed     = 0x20
	nudNoARP      = 0x40
	nudPermanent  = 0x80

	// nudValid is the kernel's NUD_VALID: states whose lladdr may be used to send.
	nudValid = nudPermanent | nudNoARP | nudReachable | nudProbe | nudStale | nudDelay
)

// usable returns the MAC of a neighbour entry in state with link-layer address lladdr, and
// whether frames may be sent with it. An Ethernet MAC is required: an entry without one (or a
// NOARP entry on a device without addresses) is not usable.
func usable(state int, lladdr []byte) ([6]byte, bool) {
	var mac [6]byte
	if state&nudValid == 0 || len(lladdr) != len(mac) {
		return mac, false
	}
	copy(mac[:], lladdr)
	return mac, mac != [6]byte{}
}

// needsKick reports whether the kernel should be asked to resolve (or re-verify) a next hop whose
// entry is in state; present is false when there is no entry at all.
//
// STALE is included on purpose: govs' traffic bypasses the kernel, so without a kick a STALE entry
// would stay STALE with a possibly outdated MAC until garbage-collected. A kick moves it to
// DELAY and then PROBE (unicast), which either confirms it or falls back to broadcast.
// INCOMPLETE, DELAY and PROBE are already being resolved; REACHABLE, PERMANENT and NOARP are fine.
func needsKick(state int, present bool) bool {
	if !present {
		return true
	}
	return state&(nudStale|nudFailed) != 0 || state == 0
}

// nudString names a neighbour state for log messages.
func nudString(state int) string {
	switch state {
	case 0:
		return "NONE"
	case nudIncomplete:
		return "INCOMPLETE"
	case nudReachable:
		return "REACHABLE"
	case nudStale:
		return "STALE"
	case nudDelay:
		return "DELAY"
	case nudProbe:
		return "PROBE"
	case nudFailed:
		return "FAILED"
	case nudNoARP:
		return "NOARP"
	case nudPermanent:
		return "PERMANENT"
	}
	return fmt.Sprintf("0x%02x", state)
}

// Records of one address's changes: every change until it has changed changeBurst times within
// about changeBurst x changeEvery, then one per changeEvery (each saying how many were held back),
// and the last one once it settles (RoutineResolve flushes each refresh).
const (
	changeEvery = 30 * time.Second
	changeBurst = 6
)

func newResolver(log *slog.Logger) *Resolver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		log:     log,
		changes: ratelog.New(changeEvery, changeBurst, nil),
		changed: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		targets: make(map[netip.Addr]*target),
	}
}

// SetTargets replaces the set of destinations to keep resolved. Entries of addresses already in the
// set are kept; new ones start unresolved and are resolved in the background (Changed fires when
// they are). Invalid addresses are ignored; IPv4-mapped IPv6 addresses are treated as IPv4.
func (r *Resolver) SetTargets(addrs []netip.Addr) {
	r.mu.Lock()
	next := make(map[netip.Addr]*target, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() {
			continue
		}
		if t, ok := r.targets[a]; ok {
			next[a] = t
			continue
		}
		next[a] = &target{e: Entry{Addr: a}}
	}
	r.targets = next
	r.mu.Unlock()

	select {
	case r.kick <- struct{}{}:
	default: // a refresh is already pending
	}
}

// Lookup returns the entry for a, and whether a is one of the targets. A target that is not (yet)
// resolved is returned with Resolved false.
func (r *Resolver) Lookup(a netip.Addr) (Entry, bool) {
	r.mu.RLock()
	t, ok := r.targets[a.Unmap()]
	var e Entry
	if ok {
		e = t.e
	}
	r.mu.RUnlock()
	return e, ok
}

// Stats is what a Resolver reports for metrics.
type Stats struct {
	Targets    int    // destinations kept resolved
	Unresolved int    // of them, those without a usable next hop now
	Lost       uint64 // times a resolved destination became unresolved (entry failed or deleted, route lost)
}

// Stats returns the resolver's figures.
func (r *Resolver) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := Stats{Targets: len(r.targets), Lost: r.lost}
	for _, t := range r.targets {
		if !t.e.Resolved {
			st.Unresolved++
		}
	}
	return st
}

// Changed receives a value (non-blocking send, buffered 1) whenever any entry changes; callers
// then Lookup the targets they care about. Several changes may be coalesced into one value.
func (r *Resolver) Changed() <-chan struct{} { return r.changed }

// notify signals Changed without blocking. Never call it while holding mu.
func (r *Resolver) notify() {
	select {
	case r.changed <- struct{}{}:
	default: // the reader has not consumed the previous signal yet; it will Lookup anyway
	}
}

// snapshot returns the current targets.
func (r *Resolver) snapshot() []netip.Addr {
	r.mu.RLock()
	defer r.mu.RUnlock()
	addrs := make([]netip.Addr, 0, len(r.targets))
	for a := range r.targets {
		addrs = append(addrs, a)
	}
	return addrs
}

// store records the result of a refresh for e.Addr, logging reason once when it changes. It
// reports whether the entry changed; a target removed meanwhile is ignored.
func (r *Resolver) store(e Entry, reason string) bool {
	r.mu.Lock()
	t, ok := r.targets[e.Addr]
	if !ok {
		r.mu.Unlock()
		return false
	}
	changed := t.e != e
	if t.e.Resolved && !e.Resolved {
		r.lost++
	}
	t.e = e
	logChange := reason != t.reason && (reason != "" || e.Resolved)
	t.reason = reason
	r.mu.Unlock()
	if logChange {
		// The message names the change and the fields say for whom and what, once each (the text
		// format prints both).
		key := e.Addr.String()
		if reason != "" {
			r.changes.Log(r.log, key, slog.LevelInfo, "neigh: next hop unresolved",
				"address", key, "resolved", false, "reason", reason)
		} else {
			r.changes.Log(r.log, key, slog.LevelInfo, "neigh: next hop resolved",
				"address", key, "resolved", true, "next_hop", e.NextHop.String(), "mac", macString(e.MAC), "ifindex", e.IfIndex)
		}
	}
	return changed
}

// applyNeigh applies one neighbour entry (from an event) to every target whose next hop it is.
// deleted is true for RTM_DELNEIGH. It reports whether any entry changed. It does not kick the
// kernel: the next refresh (at most a second away) does that for whatever is left unusable.
func (r *Resolver) applyNeigh(ifIndex int, ip netip.Addr, state int, lladdr []byte, deleted bool) (changed bool) {
	mac, ok := usable(state, lladdr)
	if deleted {
		mac, ok = [6]byte{}, false
	}
	r.mu.Lock()
	for _, t := range r.targets {
		if t.e.IfIndex != ifIndex || t.e.NextHop != ip {
			continue
		}
		if t.e.Resolved == ok && t.e.MAC == mac {
			continue
		}
		if t.e.Resolved && !ok {
			r.lost++
		}
		t.e.Resolved, t.e.MAC = ok, mac
		changed = true
	}
	r.mu.Unlock()
	return changed
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
