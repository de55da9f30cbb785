package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/ha"
)

// haNode is the daemon's side of high availability: it runs the ha package's node, applies the
// role the node decides (ha.Engine), tracks the data plane's interfaces, and hands over on
// shutdown. A daemon without [ha] has none and holds its addresses from the start.
type haNode struct {
	d   *Daemon
	cfg config.HA
	tr  *ha.UDP
	h   *ha.HA     // nil until start
	sy  *ha.Syncer // connection sync; nil until start

	mu     sync.Mutex   // serialises role changes and address changes; guards the fields below
	active bool         // the node is active: the engine forwards, the announcers hold addrs
	addrs  []netip.Addr // the VIPs and floating addresses of the running configuration

	stop      chan struct{} // closed by close: ends RoutineTrack
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ ha.Engine = (*haNode)(nil)

// newHANode reads the key and opens the heartbeat socket, so that a configuration that cannot
// work fails before the data plane starts. It starts nothing.
func newHANode(d *Daemon, cfg *config.HA) (*haNode, error) {
	if _, err := ha.ReadKey(cfg.KeyFile); err != nil {
		return nil, err
	}
	tr, err := ha.ListenUDP(cfg.Listen)
	if err != nil {
		return nil, err
	}
	return &haNode{d: d, cfg: *cfg, tr: tr, stop: make(chan struct{})}, nil
}

// start runs the HA node (in BACKUP until it decides otherwise) and the interface tracking.
func (n *haNode) start(interfaces []string) error {
	key, err := ha.ReadKey(n.cfg.KeyFile)
	if err != nil {
		return err
	}
	n.sy = ha.NewSyncer(n.d.engine, n.tr, n.cfg.Listen, n.cfg.Peers, key, n.d.logf)
	n.h, err = ha.Start(ha.Config{
		Listen:         n.cfg.Listen,
		Peers:          n.cfg.Peers,
		Priority:       uint8(n.cfg.Priority),
		Key:            key,
		AdvertInterval: n.cfg.AdvertInterval,
		DeadAfter:      n.cfg.DeadAfter,
		Preempt:        n.cfg.Preempt,
		PreemptDelay:   n.cfg.PreemptDelay,
		Sync:           n.sy,
		Serving:        func() string { return unservable(n.d.engine.Tables()) },
		Log:            slog.Default(),
	}, n.tr, ha.SystemClock, n)
	if err != nil {
		return fmt.Errorf("failed to start [ha]: %w", err)
	}
	n.sy.Run(n.h.State)
	n.wg.Add(1)
	go n.RoutineTrack(interfaces, n.cfg.AdvertInterval)
	n.d.logf("ha: listening on %s for %v (priority %d, advert_interval %v, dead_after %d, preempt %v); backup until elected",
		n.cfg.Listen, n.cfg.Peers, n.cfg.Priority, n.cfg.AdvertInterval, n.cfg.DeadAfter, n.cfg.Preempt)
	return nil
}

// HAState implements ha.Engine: active forwards first and then claims and announces the
// addresses, so that frames the announcements attract find a forwarding engine; every other
// state stops answering first and then stops forwarding. Active again while active re-announces.
func (n *haNode) HAState(s ha.State) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.d
	if s == ha.StateActive {
		if n.active {
			for _, a := range d.announce {
				a.Reannounce()
			}
			return
		}
		n.active = true
		start := time.Now()
		if err := d.engine.SetStandby(false); err != nil {
			d.logf("ha: failed to start forwarding: %v", err)
		}
		for _, a := range d.announce {
			a.SetVIPs(n.addrs)
		}
		d.logf("ha: forwarding, and announcing %d addresses (in %v)", len(n.addrs), time.Since(start).Round(time.Microsecond))
		return
	}
	if !n.active {
		return
	}
	n.active = false
	for _, a := range d.announce {
		a.SetVIPs(nil)
	}
	if err := d.engine.SetStandby(true); err != nil {
		d.logf("ha: failed to stop forwarding: %v", err)
	}
}

// hold records the addresses that move with the active role (vips and floating) and hands them
// to the announcers if the node is active.
func (n *haNode) hold(vips []netip.Addr, cfg *config.HA) {
	addrs := append(slices.Clone(vips), cfg.Floating...)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs = addrs
	n.cfg.Floating, n.cfg.GARPRefresh = cfg.Floating, cfg.GARPRefresh
	for _, a := range n.d.announce {
		a.SetRefresh(cfg.GARPRefresh)
		if n.active {
			a.SetVIPs(addrs)
		}
	}
}

// RoutineTrack puts the node in FAULT while a data plane interface is missing, down or without
// carrier (as keepalived's track_interface does), and takes it out again when all are back.
func (n *haNode) RoutineTrack(interfaces []string, every time.Duration) {
	defer n.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := ""
	indexes := map[string]int{} // as the data plane found them at start; see interfaceProblem
	for _, name := range interfaces {
		if ifi, err := net.InterfaceByName(name); err == nil {
			indexes[name] = ifi.Index
		}
	}
	for {
		if problem := interfaceProblem(interfaces, indexes); problem != last {
			if problem != "" {
				n.h.SetFault(problem)
			} else {
				n.h.ClearFault()
			}
			last = problem
		}
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
	}
}

// unservable says why tables could not carry new connections of some virtual server yet, or "":
// a virtual server below its quorum, or none of whose real servers in rotation (not removed,
// disabled or at the operator's weight 0) is resolved and up, and whose sorry server, if any, is
// not resolved either. After a link came back the health checks still say down and the next hops
// are stale for a moment: a node that preempted then would drop the new connections its peer
// serves (ha.Config.Serving).
func unservable(t *dataplane.Tables) string {
	for _, svc := range t.Services {
		if svc == nil {
			continue
		}
		if svc.NoQuorum {
			return fmt.Sprintf("virtual server %s is below its quorum", svc.Name)
		}
		inRotation, usable, waiting := 0, 0, ""
		for _, id := range svc.RealIDs {
			r := t.Reals[id]
			switch {
			case r.Sorry:
				if r.Resolved {
					usable++
				}
			case r.Removed || r.Disabled:
			case r.Quiesced: // weight 0 until its check says up
				inRotation++
				waiting = fmt.Sprintf("%s is not up", r.Addr)
			case r.Weight <= 0:
			default:
				inRotation++
				switch {
				case !r.Resolved:
					waiting = fmt.Sprintf("%s has no resolved next hop", r.Addr)
				case r.Down:
					waiting = fmt.Sprintf("%s is down", r.Addr)
				default:
					usable++
				}
			}
		}
		if inRotation > 0 && usable == 0 {
			return fmt.Sprintf("virtual server %s has no real server to take new connections (%s)", svc.Name, waiting)
		}
	}
	return ""
}

// interfaceProblem says what is wrong with the first interface that cannot carry traffic, or "".
// indexes holds the interfaces' indexes when govs started: the data plane's sockets and XDP
// programs are bound to those, so an interface deleted and created again under the same name
// carries nothing for govs until it restarts.
func interfaceProblem(names []string, indexes map[string]int) string {
	for _, name := range names {
		ifi, err := net.InterfaceByName(name)
		switch {
		case err != nil:
			return fmt.Sprintf("interface %s is gone", name)
		case indexes[name] != 0 && ifi.Index != indexes[name]:
			return fmt.Sprintf("interface %s was deleted and created again (index %d, was %d): restart govs to use it", name, ifi.Index, indexes[name])
		case ifi.Flags&net.FlagUp == 0:
			return fmt.Sprintf("interface %s is down", name)
		case ifi.Flags&net.FlagRunning == 0:
			return fmt.Sprintf("interface %s has no carrier", name)
		}
	}
	return ""
}

// close hands the role over if the node holds it (it stops answering for the addresses, then
// advertises priority 0 and waits, still forwarding, until a peer is active or the dead interval
// has passed twice), then stops the node.
func (n *haNode) close() { n.closeOnce.Do(n.handOver) }

func (n *haNode) handOver() {
	if n.h == nil {
		n.tr.Close()
		return
	}
	close(n.stop)
	n.wg.Wait()
	n.mu.Lock()
	if n.active {
		for _, a := range n.d.announce {
			a.SetVIPs(nil)
		}
	}
	n.mu.Unlock()
	wait := min(max(2*time.Duration(n.cfg.DeadAfter)*n.cfg.AdvertInterval, 200*time.Millisecond), 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := n.h.Resign(ctx); err != nil {
		n.d.logf("ha: no peer took over within %v; stopping anyway", wait)
	}
	n.h.Close()
	n.sy.Close()
}

// status is the HA part of `govs stats`.
func (n *haNode) status() control.HAStatus {
	n.mu.Lock()
	forwarding := n.active
	n.mu.Unlock()
	if n.h == nil {
		return control.HAStatus{State: ha.StateInit.String(), Forwarding: forwarding}
	}
	st := n.h.Status()
	now := time.Now()
	since := st.Since
	out := control.HAStatus{
		State:               st.State.String(),
		Forwarding:          forwarding,
		Since:               &since,
		Listen:              st.Listen.String(),
		Priority:            int(st.Priority),
		AdvertisedPriority:  int(st.Advertised),
		Fault:               st.Fault,
		HeartbeatsSent:      st.Sent,
		HeartbeatsReceived:  st.Received,
		HeartbeatSendErrors: st.SendErrors,
		HeartbeatsDropped:   st.Dropped,
		Transitions:         st.Transitions,
	}
	if n.sy != nil {
		ss := n.sy.Status()
		out.Sync = &control.HASync{
			Converged: ss.Converged, SentDatagrams: ss.Sent, SentEntries: ss.SentEntries, SendErrors: ss.SendErrors,
			Received: ss.Received, ReceivedEntries: ss.ReceivedEntries, Queued: ss.Queued, Installed: ss.Installed,
			Refused: ss.Refused, ExportDropped: ss.ExportDropped, InboxDropped: ss.InboxDropped, QueueDrops: ss.QueueDrops,
			Gaps: ss.Gaps, SnapshotsSent: ss.SnapshotsSent, SnapshotsReceived: ss.SnapshotsRecvd, Dropped: ss.Dropped, LagMS: -1,
		}
		if !ss.LastReceived.IsZero() {
			out.Sync.LagMS = now.Sub(ss.LastReceived).Milliseconds()
		}
		sp := ss.Snapshot
		out.Sync.Snapshot = control.HASnapshot{Sending: sp.Sending, Receiving: sp.Receiving, Entries: sp.Entries, Total: sp.Total}
		if !sp.Since.IsZero() {
			out.Sync.Snapshot.Since = &sp.Since
		}
	}
	for _, v := range st.Dropped {
		out.HeartbeatDropsTotal += v
	}
	for _, p := range st.Peers {
		hp := control.HAPeer{Address: p.Addr.String(), State: "unknown", Priority: int(p.Priority), Alive: p.Alive, LastHeardMS: -1}
		if !p.Heard.IsZero() {
			hp.State = p.State.String()
			hp.LastHeardMS = now.Sub(p.Heard).Milliseconds()
		}
		out.Peers = append(out.Peers, hp)
	}
	return out
}

// restartOnlyHA is restartOnly for [ha]: only floating and garp_refresh change on reload; the
// node's identity, key and timers, and whether it runs [ha] at all, are fixed for its life. It
// puts the running values back into next and returns a line for each ignored change.
func restartOnlyHA(running, next *config.Config) []string {
	later := func(field, what string) string {
		return fmt.Sprintf("%s: %s: %s; takes effect at the next start (restart the backup first)", next.Where(field), field, what)
	}
	switch r, n := running.HA, next.HA; {
	case r == nil && n == nil:
		return nil
	case r == nil:
		next.HA, next.ShutdownDrain = nil, running.ShutdownDrain
		return []string{later("ha", "added in the file, this node runs stand-alone")}
	case n == nil:
		next.HA, next.ShutdownDrain = r, running.ShutdownDrain
		return []string{later("ha", "removed from the file, this node runs [ha]")}
	}
	r, n := running.HA, *next.HA
	var out []string
	keep := func(field string, differs bool, file, cur any) {
		if differs {
			out = append(out, later("ha."+field, fmt.Sprintf("%v in the file, %v running", file, cur)))
		}
	}
	keep("listen", r.Listen != n.Listen, n.Listen, r.Listen)
	keep("peers", !slices.Equal(r.Peers, n.Peers), n.Peers, r.Peers)
	keep("priority", r.Priority != n.Priority, n.Priority, r.Priority)
	keep("key_file", r.KeyFile != n.KeyFile, n.KeyFile, r.KeyFile)
	keep("advert_interval", r.AdvertInterval != n.AdvertInterval, n.AdvertInterval, r.AdvertInterval)
	keep("dead_after", r.DeadAfter != n.DeadAfter, n.DeadAfter, r.DeadAfter)
	keep("preempt", r.Preempt != n.Preempt, n.Preempt, r.Preempt)
	keep("preempt_delay", r.PreemptDelay != n.PreemptDelay, n.PreemptDelay, r.PreemptDelay)
	kept := *r
	kept.Floating, kept.GARPRefresh, kept.Line = n.Floating, n.GARPRefresh, n.Line
	next.HA = &kept
	return out
}

// holdAddrs hands the announcers the addresses to hold: at once when stand-alone; through the
// HA node otherwise, which holds them only while active.
func (d *Daemon) holdAddrs(cfg *config.Config, vips []netip.Addr) {
	if d.ha == nil {
		for _, a := range d.announce {
			a.SetVIPs(vips)
		}
		return
	}
	d.ha.hold(vips, cfg.HA)
}

// haStatus is Status's HA part.
func (d *Daemon) haStatus() control.HAStatus {
	if d.ha == nil {
		return control.HAStatus{State: "standalone", Forwarding: true}
	}
	return d.ha.status()
}
