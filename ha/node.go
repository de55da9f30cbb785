package ha

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Config is what a Node needs; the daemon derives it from the [ha] table.
type Config struct {
	// Listen is this node's heartbeat address: its identity, and the rank tie-breaker.
	Listen netip.AddrPort
	// Peers are the other nodes' listen addresses; heartbeats from anywhere else are ignored.
	Peers []netip.AddrPort
	// Priority is 1..254; the higher wins.
	Priority uint8
	// Key is the shared HMAC-SHA256 key, at least MinKeyLen bytes.
	Key []byte
	// AdvertInterval is how often heartbeats are sent.
	AdvertInterval time.Duration
	// DeadAfter is how many advert intervals without a heartbeat make a peer dead.
	DeadAfter int
	// Preempt lets a node take the VIPs from a lower-ranked active node, PreemptDelay after it
	// first saw one.
	Preempt      bool
	PreemptDelay time.Duration
	// MaxSkew bounds how far a heartbeat's time may be from ours; 0 means DefaultMaxSkew.
	MaxSkew time.Duration
	// Sync, when not nil, gates preemption: a node takes the VIPs back only once its connection
	// table has converged with the active's.
	Sync Sync
	// Serving, when not nil, gates preemption too: it says why this node could not carry the
	// VIPs' new connections yet ("" once it can), so that a node back from a fault (or just
	// started) does not take the VIPs from a peer that serves them, only to drop their new
	// connections until its health checks and next hops catch up. A node holds back at most
	// MaxPreemptHold, so that a service down everywhere does not keep it from ever preempting.
	Serving func() string
	// Log gets the node's state changes (records with from, to and reason) and its problems;
	// nil discards them.
	Log *slog.Logger
}

// MaxPreemptHold bounds how long Config.Serving holds a preemption back: longer than health
// checks take to bring servers back up after a link comes back (rise checks an interval apart).
const MaxPreemptHold = 10 * time.Second

// DefaultMaxSkew is how far apart the nodes' clocks may be before heartbeats are dropped as
// replays. NTP keeps clocks within milliseconds; the bound only has to be short enough that an
// old heartbeat replayed to a restarted node (which has no sequence number to compare with yet)
// is stale.
const DefaultMaxSkew = 2 * time.Second

// Engine applies the node's state. HAState is called from the node's goroutine on every
// transition, and with StateActive again while active when the node must re-announce (it met
// another active node that it outranks). StateActive means: forward, answer for the VIPs and
// floating addresses, and announce them; every other state means stop all of it at once. It must
// not block for long: heartbeats wait meanwhile.
type Engine interface {
	HAState(s State)
}

// Transport carries datagrams between the nodes' listen addresses.
type Transport interface {
	// Send sends one datagram to a peer.
	Send(b []byte, to netip.AddrPort) error
	// Receive blocks for the next datagram, copies it into b and says where it came from. After
	// Close it returns an error wrapping net.ErrClosed.
	Receive(b []byte) (n int, from netip.AddrPort, err error)
	Close() error
}

// peer is what a node knows about one of its peers, from authenticated heartbeats only (except
// badMAC).
type peer struct {
	addr     netip.AddrPort
	seq      uint64    // last accepted sequence number
	heard    time.Time // when its last authentic heartbeat arrived; zero: never
	badMAC   time.Time // when its last heartbeat that failed authentication arrived; zero: never
	state    State
	priority uint8
	badLog   time.Time // last time a failed authentication from it was logged
}

// Node is the HA state machine of one govs node. It does nothing by itself: its owner calls
// Start once, then Receive for every datagram, Tick whenever Deadline passes, and SetFault,
// ClearFault and Resign as things happen, each with the current time.
//
// A Node is not safe for concurrent use; HA owns one in its goroutine.
type Node struct {
	cfg  Config
	tr   Transport
	eng  Engine
	log  *slog.Logger
	sign *signer
	dead time.Duration // DeadAfter * AdvertInterval
	skew int64         // MaxSkew in nanoseconds

	state     State
	since     time.Time
	started   time.Time
	seq       uint64
	nextSend  time.Time
	resigning bool
	fault     string
	// preemptSince is when the node first saw a lower-ranked active peer it may preempt.
	preemptSince time.Time
	// holdSince is when Config.Serving first held back a preemption this node wanted; zero when
	// it holds nothing back.
	holdSince  time.Time
	holdOver   bool      // the hold ran out (MaxPreemptHold), and that was logged
	blockedLog time.Time // last time "not taking over: peers fail authentication" was logged
	peers      []*peer
	out        [HeartbeatSize]byte

	sent, received, sendErrors, transitions uint64
	drops                                   [numDropReasons]uint64
}

// NewNode checks cfg and returns a Node in StateInit that sends through tr and reports to eng.
func NewNode(cfg Config, tr Transport, eng Engine) (*Node, error) {
	switch {
	case !cfg.Listen.IsValid():
		return nil, errors.New("ha: no listen address")
	case len(cfg.Peers) == 0:
		return nil, errors.New("ha: no peers")
	case cfg.Priority == 0 || cfg.Priority == 255:
		return nil, fmt.Errorf("ha: priority %d is out of range 1..254", cfg.Priority)
	case len(cfg.Key) < MinKeyLen:
		return nil, fmt.Errorf("ha: key of %d bytes; at least %d are needed", len(cfg.Key), MinKeyLen)
	case cfg.AdvertInterval <= 0:
		return nil, errors.New("ha: advert interval must be positive")
	case cfg.DeadAfter < 2:
		return nil, fmt.Errorf("ha: dead_after %d; at least 2", cfg.DeadAfter)
	case tr == nil || eng == nil:
		return nil, errors.New("ha: a transport and an engine are required")
	}
	n := &Node{
		cfg:   cfg,
		tr:    tr,
		eng:   eng,
		log:   cfg.Log,
		sign:  newSigner(cfg.Key),
		dead:  time.Duration(cfg.DeadAfter) * cfg.AdvertInterval,
		skew:  int64(cfg.MaxSkew),
		state: StateInit,
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.skew <= 0 {
		n.skew = int64(DefaultMaxSkew)
	}
	for _, a := range cfg.Peers {
		a = unmapAddrPort(a)
		if a == unmapAddrPort(cfg.Listen) {
			return nil, fmt.Errorf("ha: peer %s is this node's own listen address", a)
		}
		if slices.ContainsFunc(n.peers, func(p *peer) bool { return p.addr == a }) {
			return nil, fmt.Errorf("ha: peer %s listed twice", a)
		}
		n.peers = append(n.peers, &peer{addr: a})
	}
	n.cfg.Listen = unmapAddrPort(cfg.Listen)
	return n, nil
}

func unmapAddrPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// State returns the node's state.
func (n *Node) State() State { return n.state }

// Resigned reports whether Resign was called and the node no longer holds the VIPs: a peer took
// over, or the node was not active in the first place.
func (n *Node) Resigned() bool { return n.resigning && n.state != StateActive }

// Start moves the node from INIT to BACKUP (FAULT if SetFault came first) and sends its first
// heartbeat. A node never starts active: it first listens for dead_after heartbeat intervals, or
// until it has heard every peer, so that it does not take the VIPs from a running active node.
func (n *Node) Start(now time.Time) {
	if n.state != StateInit {
		return
	}
	n.started = now
	// A restarted node continues above its earlier sequence numbers (see Heartbeat.Seq).
	n.seq = uint64(now.UnixNano())
	if n.fault != "" {
		n.become(now, StateFault, n.fault)
		return
	}
	n.become(now, StateBackup, "started")
}

// Receive handles one datagram from the transport.
func (n *Node) Receive(now time.Time, from netip.AddrPort, b []byte) {
	from = unmapAddrPort(from)
	p := n.peer(from)
	if p == nil {
		n.drop(DropUnlisted)
		return
	}
	var h Heartbeat
	if r := n.sign.unmarshal(b, &h); r != 0 {
		n.drop(r)
		if r == DropBadMAC {
			p.badMAC = now
			if now.Sub(p.badLog) >= time.Minute {
				p.badLog = now
				n.log.Warn(fmt.Sprintf("ha: heartbeat from %s failed authentication: forged, or [ha] key_file differs between the nodes", from), "peer", from.String())
			}
		}
		return
	}
	if h.Node != from {
		n.drop(DropWrongSender)
		return
	}
	if h.Seq <= p.seq {
		n.drop(DropOldSeq)
		return
	}
	if d := now.UnixNano() - h.Time; d > n.skew || d < -n.skew {
		n.drop(DropSkew)
		if now.Sub(p.badLog) >= time.Minute {
			p.badLog = now
			n.log.Warn(fmt.Sprintf("ha: heartbeat from %s is %v off this node's clock (more than %v): dropped; keep the nodes' clocks in sync (NTP)",
				from, time.Duration(d), time.Duration(n.skew)), "peer", from.String())
		}
		return
	}
	wasAlive := p.alive(now, n.dead)
	wasActive := wasAlive && p.state == StateActive
	p.seq, p.heard, p.state, p.priority = h.Seq, now, h.State, h.Priority
	n.received++
	if n.state == StateActive && !n.resigning && h.State == StateActive && !wasActive && !n.outranks(p) {
		// Split brain, or a preempting peer, and we stay: both claimed the VIPs, so re-announce
		// ours and tell the peer at once so that it stands down.
		n.log.Warn(fmt.Sprintf("ha: %s is active too; this node outranks it (priority %d, %s vs %d, %s): staying active and re-announcing",
			from, n.priority(), n.cfg.Listen, p.priority, p.addr), "peer", from.String())
		n.eng.HAState(StateActive)
		n.send(now)
	}
	n.evaluate(now)
	if !wasAlive && n.state != StateInit {
		// A peer that (re)appears learns about this node at once rather than an interval later:
		// a starting node decides sooner, and a healed split brain resolves sooner.
		n.send(now)
	}
}

// Tick sends a heartbeat when one is due and re-evaluates the role: peers may have gone silent, a
// preempt delay may have passed.
func (n *Node) Tick(now time.Time) {
	if n.state == StateInit {
		return
	}
	n.evaluate(now) // a transition sends a heartbeat itself
	if !now.Before(n.nextSend) {
		n.send(now)
	}
}

// Deadline is when Tick must be called next.
func (n *Node) Deadline(now time.Time) time.Time {
	d := n.nextSend
	consider := func(t time.Time) {
		if t.After(now) && t.Before(d) {
			d = t
		}
	}
	for _, p := range n.peers {
		if !p.heard.IsZero() {
			consider(p.heard.Add(n.dead))
		}
		if !p.badMAC.IsZero() {
			consider(p.badMAC.Add(n.dead))
		}
	}
	consider(n.started.Add(n.dead))
	if !n.preemptSince.IsZero() {
		consider(n.preemptSince.Add(n.cfg.PreemptDelay))
	}
	return d
}

// SetFault puts the node in FAULT: it stops holding anything at once and advertises priority 0,
// so a peer takes over. reason says what failed, for the log and `govs stats`.
func (n *Node) SetFault(now time.Time, reason string) {
	if reason == "" {
		reason = "fault"
	}
	n.fault = reason
	if n.state != StateInit && n.state != StateFault {
		n.become(now, StateFault, reason)
	}
}

// ClearFault ends FAULT: the node is a backup again and may take over by the usual rules.
func (n *Node) ClearFault(now time.Time) {
	if n.fault == "" {
		return
	}
	n.fault = ""
	if n.state == StateFault {
		n.become(now, StateBackup, "fault cleared")
		n.evaluate(now)
	}
}

// Fault returns the reason of the current fault, or "".
func (n *Node) Fault() string { return n.fault }

// Resign makes the node hand the VIPs over before it stops: from now on it advertises priority
// 0, which makes a backup take over at once, and it never becomes active again. An active node
// keeps forwarding until it hears the new active (Resigned then reports true), so that frames
// still addressed to it meanwhile are not lost.
func (n *Node) Resign(now time.Time) {
	if n.resigning {
		return
	}
	n.resigning = true
	n.log.Info(fmt.Sprintf("ha: resigning (state %s): advertising priority 0", n.state), "state", n.state.String())
	if n.state != StateInit {
		n.send(now)
	}
	n.evaluate(now)
}

// priority is the priority the node advertises now.
func (n *Node) priority() uint8 {
	if n.resigning || n.state == StateFault {
		return 0
	}
	return n.cfg.Priority
}

// outranks reports whether p outranks this node: a higher priority, or the same and a lower
// listen address.
func (n *Node) outranks(p *peer) bool {
	return outranks(p.priority, p.addr, n.priority(), n.cfg.Listen)
}

func outranks(pa uint8, a netip.AddrPort, pb uint8, b netip.AddrPort) bool {
	if pa != pb {
		return pa > pb
	}
	return a.Compare(b) < 0
}

func (p *peer) alive(now time.Time, dead time.Duration) bool {
	return !p.heard.IsZero() && now.Sub(p.heard) < dead
}

// holds reports whether p is an active peer that holds the VIPs as a candidate: a resigning
// active node (priority 0) is handing them over and does not count.
func (p *peer) holds(now time.Time, dead time.Duration) bool {
	return p.alive(now, dead) && p.state == StateActive && p.priority > 0
}

func (n *Node) peer(a netip.AddrPort) *peer {
	for _, p := range n.peers {
		if p.addr == a {
			return p
		}
	}
	return nil
}

// evaluate applies the election rules to the node's current knowledge.
func (n *Node) evaluate(now time.Time) {
	switch n.state {
	case StateBackup:
		if n.resigning {
			return
		}
		if reason := n.takeOver(now); reason != "" {
			n.become(now, StateActive, reason)
		}
	case StateActive:
		for _, p := range n.peers {
			if p.alive(now, n.dead) && p.state == StateActive && n.outranks(p) {
				reason := fmt.Sprintf("%s is active and outranks this node (priority %d vs %d)", p.addr, p.priority, n.priority())
				if n.resigning {
					reason = fmt.Sprintf("handed over to %s", p.addr)
				}
				n.become(now, StateBackup, reason)
				return
			}
		}
	}
}

// holdBack reports whether Config.Serving holds a preemption back now, and logs when it starts
// to and when it gives up waiting.
func (n *Node) holdBack(now time.Time) bool {
	why := ""
	if n.cfg.Serving != nil {
		why = n.cfg.Serving()
	}
	switch {
	case why == "":
		if !n.holdSince.IsZero() {
			n.log.Info(fmt.Sprintf("ha: this node can serve now (after %v): preempting by the usual rules", now.Sub(n.holdSince).Round(time.Millisecond)))
		}
		n.holdSince, n.holdOver = time.Time{}, false
		return false
	case n.holdSince.IsZero():
		n.holdSince = now
		n.log.Info(fmt.Sprintf("ha: not preempting yet, the active peer serves meanwhile: %s", why), "reason", why)
		return true
	case now.Sub(n.holdSince) < MaxPreemptHold:
		return true
	case !n.holdOver:
		n.holdOver = true
		n.log.Warn(fmt.Sprintf("ha: preempting by the usual rules after waiting %v, although %s", MaxPreemptHold, why), "reason", why)
	}
	return false
}

// takeOver says why a backup should become active now, or "" if it should not.
func (n *Node) takeOver(now time.Time) string {
	var active []*peer
	for _, p := range n.peers {
		if p.holds(now, n.dead) {
			active = append(active, p)
		}
	}
	if len(active) > 0 {
		ok := n.cfg.Preempt && (n.cfg.Sync == nil || n.cfg.Sync.Converged())
		for _, p := range active {
			if n.outranks(p) {
				ok = false
			}
		}
		if !ok {
			n.preemptSince, n.holdSince, n.holdOver = time.Time{}, time.Time{}, false
			return ""
		}
		if n.holdBack(now) {
			n.preemptSince = time.Time{}
			return ""
		}
		if n.preemptSince.IsZero() {
			n.preemptSince = now
		}
		if now.Sub(n.preemptSince) < n.cfg.PreemptDelay {
			return ""
		}
		return fmt.Sprintf("preempting %s (priority %d, this node %d)", active[0].addr, active[0].priority, n.priority())
	}
	n.preemptSince = time.Time{}

	// Nobody holds the VIPs. A node that hears listed peers but has never authenticated any of
	// them most likely has the wrong key itself: taking the VIPs would split the brain. (A node
	// that has authenticated a peer before is not held back, so a forger cannot stop a backup
	// from taking over from a dead active node.)
	bad := false
	for _, p := range n.peers {
		bad = bad || (!p.badMAC.IsZero() && now.Sub(p.badMAC) < n.dead)
	}
	if bad && n.received == 0 {
		if now.Sub(n.blockedLog) >= 10*time.Second {
			n.blockedLog = now
			n.log.Warn("ha: not taking over: heartbeats arrive from listed peers but none authenticates; check that [ha] key_file is the same on every node")
		}
		return ""
	}
	// Just started: listen for a dead interval first, unless every peer has been heard.
	if now.Sub(n.started) < n.dead {
		for _, p := range n.peers {
			if p.heard.IsZero() {
				return ""
			}
		}
	}
	// A better candidate that is alive takes over itself.
	for _, p := range n.peers {
		if p.alive(now, n.dead) && p.priority > 0 && p.state == StateBackup && n.outranks(p) {
			return ""
		}
	}
	var why []string
	for _, p := range n.peers {
		switch {
		case p.heard.IsZero():
			why = append(why, fmt.Sprintf("%s never heard", p.addr))
		case !p.alive(now, n.dead):
			why = append(why, fmt.Sprintf("%s silent for %v", p.addr, now.Sub(p.heard).Round(time.Millisecond)))
		case p.priority == 0:
			why = append(why, fmt.Sprintf("%s resigned (%s, priority 0)", p.addr, p.state))
		default:
			why = append(why, fmt.Sprintf("%s is %s with priority %d", p.addr, p.state, p.priority))
		}
	}
	return "no active peer: " + strings.Join(why, ", ")
}

// become moves the node to state s and tells the engine, then the peers.
func (n *Node) become(now time.Time, s State, reason string) {
	old := n.state
	n.state, n.since = s, now
	n.transitions++
	if s != StateBackup {
		n.preemptSince, n.holdSince, n.holdOver = time.Time{}, time.Time{}, false
	}
	n.log.Info(fmt.Sprintf("ha: %s -> %s: %s", old, s, reason), "from", old.String(), "to", s.String(), "reason", reason)
	// The engine first: a new active node forwards before its peers hear of it, so the resigning
	// node that waits for that heartbeat stops only once the new one forwards.
	n.eng.HAState(s)
	n.send(now)
}

// send sends a heartbeat to every peer and schedules the next one.
func (n *Node) send(now time.Time) {
	n.seq++
	h := Heartbeat{Node: n.cfg.Listen, Priority: n.priority(), State: n.state, Seq: n.seq, Time: now.UnixNano()}
	b := n.sign.marshal(n.out[:], &h)
	for _, p := range n.peers {
		if err := n.tr.Send(b, p.addr); err != nil {
			if n.sendErrors++; n.sendErrors&(n.sendErrors-1) == 0 { // 1st, 2nd, 4th, 8th...
				n.log.Warn(fmt.Sprintf("ha: failed to send a heartbeat to %s (%d failures so far): %v", p.addr, n.sendErrors, err),
					"peer", p.addr.String(), "failures", n.sendErrors)
			}
			continue
		}
		n.sent++
	}
	n.nextSend = now.Add(n.cfg.AdvertInterval)
}

func (n *Node) drop(r DropReason) { n.drops[r]++ }
