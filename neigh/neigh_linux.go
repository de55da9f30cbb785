//go:build linux

package neigh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// refreshInterval is how often every target's route and neighbour entry are re-read.
	refreshInterval = time.Second
	// updateBuffer is the number of neighbour events queued between netlink and RoutineResolve.
	updateBuffer = 256
	// subscribeRcvbuf is the netlink receive buffer for neighbour events; an overflow (ENOBUFS)
	// ends the subscription and RoutineResolve subscribes again on its next tick.
	subscribeRcvbuf = 1 << 20
	// drainTimeout bounds how long Close waits for the netlink library's reader to finish.
	drainTimeout = 2 * time.Second
)

// sysResolver is the netlink half of a Resolver. Its fields are used only by RoutineResolve
// (and by New and Close before it starts and after it ends).
type sysResolver struct {
	ns      netns.NsHandle // the network namespace New was called in; every socket is opened there
	h       *netlink.Handle
	ifnames []string // interfaces next hops may be on

	updates chan netlink.NeighUpdate // nil while not subscribed
	stop    chan struct{}            // closed by Close
	subDone chan struct{}            // closing it ends the current subscription
	wg      sync.WaitGroup
	once    sync.Once
}

// New starts a resolver restricted to the given interfaces: destinations routed elsewhere are
// reported unresolved, with the reason logged once. It is bound to the network namespace of the
// calling thread, so call it from inside the namespace that holds those interfaces (the daemon
// runs under `ip netns exec`). log gets its records (nil: none). Close stops it.
func New(interfaces []string, log *slog.Logger) (*Resolver, error) {
	if len(interfaces) == 0 {
		return nil, errors.New("failed to start neighbour resolver: no interfaces given; list the interfaces real servers are reached through")
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("failed to open the current network namespace: %w", err)
	}
	var h *netlink.Handle
	err = socketNetns(ns, func(target netns.NsHandle) (err error) {
		h, err = netlink.NewHandleAt(target, unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("failed to open a netlink socket (needs CAP_NET_ADMIN for NTF_USE): %w", err)
	}
	for _, name := range interfaces {
		if _, err := h.LinkByName(name); err != nil {
			h.Close()
			ns.Close()
			return nil, fmt.Errorf("failed to find interface %q in this network namespace: %w", name, err)
		}
	}
	r := newResolver(log)
	r.sys = sysResolver{
		ns:      ns,
		h:       h,
		ifnames: slices.Clone(interfaces),
		stop:    make(chan struct{}),
	}
	if err := r.subscribe(); err != nil {
		h.Close()
		ns.Close()
		return nil, err
	}
	r.sys.wg.Add(1)
	go r.RoutineResolve()
	return r, nil
}

// Close stops the resolver and waits for its goroutines. Entries stay readable with Lookup but
// are no longer updated.
func (r *Resolver) Close() error {
	r.sys.once.Do(func() {
		close(r.sys.stop)
		r.sys.wg.Wait()
		r.sys.h.Close()
		r.sys.ns.Close()
	})
	return nil
}

// socketNetns calls fn with the namespace netlink should open its socket in to reach ns: none, so
// that it does not switch namespaces (setns(2) needs CAP_SYS_ADMIN, which a service unit does
// not give govs), when the calling thread is in ns already, as every thread of govs is; ns
// itself otherwise (a resolver started from a thread switched into another namespace, as tests
// do, whose later subscriptions may run on other threads).
func socketNetns(ns netns.NsHandle, fn func(target netns.NsHandle) error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	target := ns
	if cur, err := netns.Get(); err == nil {
		if cur.Equal(ns) {
			target = netns.None()
		}
		cur.Close()
	}
	return fn(target)
}

// subscribe opens a neighbour event subscription in the resolver's namespace.
func (r *Resolver) subscribe() error {
	ch := make(chan netlink.NeighUpdate, updateBuffer)
	done := make(chan struct{})
	err := socketNetns(r.sys.ns, func(target netns.NsHandle) error {
		return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
			Namespace:         &target,
			ReceiveBufferSize: subscribeRcvbuf,
			ErrorCallback: func(err error) {
				// The library closes the socket after done is closed, and its reader fails then: an
				// end asked for by unsubscribe (Close included) is no failure.
				select {
				case <-done:
					return
				default:
				}
				r.log.Warn(fmt.Sprintf("neigh: neighbour event subscription ended, falling back to the %v refresh until it is renewed: %v", refreshInterval, err))
			},
		})
	})
	if err != nil {
		close(done)
		return fmt.Errorf("failed to subscribe to neighbour events: %w", err)
	}
	r.sys.updates, r.sys.subDone = ch, done
	return nil
}

// unsubscribe ends the current subscription and drains its channel so the library's reader
// goroutine, which blocks on sending, can exit.
func (r *Resolver) unsubscribe() {
	if r.sys.updates == nil {
		return
	}
	close(r.sys.subDone)
	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
drain:
	for {
		select {
		case _, ok := <-r.sys.updates:
			if !ok {
				break drain
			}
		case <-deadline.C:
			r.log.Warn(fmt.Sprintf("neigh: neighbour event reader did not stop within %v", drainTimeout))
			break drain
		}
	}
	r.sys.updates, r.sys.subDone = nil, nil
}

// RoutineResolve applies neighbour events as they come and refreshes every target each second
// and whenever SetTargets asks for it.
func (r *Resolver) RoutineResolve() {
	defer r.sys.wg.Done()
	defer r.unsubscribe()
	tick := time.NewTicker(refreshInterval)
	defer tick.Stop()
	r.refresh()
	for {
		select {
		case <-r.sys.stop:
			return
		case <-r.kick:
			r.refresh()
		case <-tick.C:
			if r.sys.updates == nil {
				if err := r.subscribe(); err != nil {
					r.log.Warn(fmt.Sprintf("neigh: %v", err))
				}
			}
			r.refresh()
			r.changes.Flush()
		case u, ok := <-r.sys.updates:
			if !ok {
				close(r.sys.subDone)
				r.sys.updates, r.sys.subDone = nil, nil
				continue
			}
			r.onUpdate(u)
		}
	}
}

// onUpdate applies one neighbour event.
func (r *Resolver) onUpdate(u netlink.NeighUpdate) {
	ip, ok := addrFromIP(u.IP)
	if !ok {
		return
	}
	deleted := u.Type == unix.RTM_DELNEIGH
	if !r.applyNeigh(u.LinkIndex, ip, u.State, u.HardwareAddr, deleted) {
		return
	}
	r.notify()
	if _, ok := usable(u.State, u.HardwareAddr); deleted || !ok {
		// A next hop we need was lost (`ip neigh flush` reports FAILED then a deletion, a link
		// flap, a failed probe): ask the kernel for it again now rather than at the next tick.
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// neighKey names one neighbour table dump: an interface and an address family.
type neighKey struct {
	ifIndex int
	family  int
}

// refresh re-reads the route and neighbour entry of every target, kicks the kernel for next hops
// without a usable or fresh entry, and stores the results.
func (r *Resolver) refresh() {
	addrs := r.snapshot()
	if len(addrs) == 0 {
		return
	}
	allowed := make(map[int]string, len(r.sys.ifnames))
	mtus := make(map[int]int, len(r.sys.ifnames))
	for _, name := range r.sys.ifnames {
		l, err := r.sys.h.LinkByName(name)
		if err != nil {
			continue // targets routed through it are reported below
		}
		allowed[l.Attrs().Index] = name
		mtus[l.Attrs().Index] = l.Attrs().MTU
	}
	dumps := make(map[neighKey][]netlink.Neigh)
	changed := false
	for _, a := range addrs {
		e, reason := r.resolve(a, allowed, mtus, dumps)
		if r.store(e, reason) {
			changed = true
		}
	}
	if changed {
		r.notify()
	}
}

// resolve computes the entry of one target. It returns the reason when the entry is unresolved.
// mtus are the allowed interfaces' MTUs, for routes without an mtu of their own.
func (r *Resolver) resolve(a netip.Addr, allowed map[int]string, mtus map[int]int, dumps map[neighKey][]netlink.Neigh) (Entry, string) {
	e := Entry{Addr: a}
	routes, err := r.sys.h.RouteGet(a.AsSlice())
	if err != nil {
		return e, fmt.Sprintf("no route: %v", err)
	}
	if len(routes) == 0 {
		return e, "no route"
	}
	rt := routes[0]
	if rt.Type != unix.RTN_UNICAST {
		return e, fmt.Sprintf("route type %d is not unicast (local, blackhole or unreachable)", rt.Type)
	}
	if _, ok := allowed[rt.LinkIndex]; !ok {
		return e, fmt.Sprintf("routed via ifindex %d, which is not one of the configured interfaces %v", rt.LinkIndex, r.sys.ifnames)
	}
	e.IfIndex, e.NextHop = rt.LinkIndex, a
	if gw, ok := addrFromIP(rt.Gw); ok {
		e.NextHop = gw
	}
	if src, ok := addrFromIP(rt.Src); ok {
		e.Src = src
	}
	e.MTU = mtus[rt.LinkIndex]
	if rt.MTU > 0 {
		e.MTU = rt.MTU
	}

	family := netlink.FAMILY_V4
	if e.NextHop.Is6() {
		family = netlink.FAMILY_V6
	}
	key := neighKey{ifIndex: e.IfIndex, family: family}
	list, ok := dumps[key]
	if !ok {
		list, err = r.sys.h.NeighList(e.IfIndex, family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return e, fmt.Sprintf("failed to list neighbours of ifindex %d: %v", e.IfIndex, err)
		}
		dumps[key] = list
	}
	state, present := 0, false
	var lladdr net.HardwareAddr
	for i := range list {
		if ip, ok := addrFromIP(list[i].IP); ok && ip == e.NextHop {
			state, lladdr, present = list[i].State, list[i].HardwareAddr, true
			break
		}
	}
	e.MAC, e.Resolved = usable(state, lladdr)

	if needsKick(state, present) {
		if err := r.kickKernel(e.IfIndex, e.NextHop); err != nil {
			return e, fmt.Sprintf("failed to ask the kernel to resolve next hop %s: %v", e.NextHop, err)
		}
	}
	if !e.Resolved {
		if !present {
			return e, fmt.Sprintf("next hop %s on ifindex %d: no neighbour entry yet", e.NextHop, e.IfIndex)
		}
		return e, fmt.Sprintf("next hop %s on ifindex %d: neighbour entry is %s", e.NextHop, e.IfIndex, nudString(state))
	}
	return e, ""
}

// kickKernel asks the kernel to resolve (or re-verify) ip on ifIndex, like
// `ip neigh replace IP dev IF use`: RTM_NEWNEIGH with NTF_USE makes neigh_add() call
// neigh_event_send() on the entry (creating it if needed) instead of overwriting it, so the
// kernel sends the ARP request or Neighbor Solicitation itself. The state we pass is ignored.
func (r *Resolver) kickKernel(ifIndex int, ip netip.Addr) error {
	return r.sys.h.NeighSet(&netlink.Neigh{
		LinkIndex: ifIndex,
		IP:        ip.AsSlice(),
		Flags:     netlink.NTF_USE,
		State:     netlink.NUD_NONE,
	})
}

// addrFromIP converts a netlink address, unmapping IPv4.
func addrFromIP(ip net.IP) (netip.Addr, bool) {
	if len(ip) == 0 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.IsUnspecified() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
