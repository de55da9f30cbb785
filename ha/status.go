package ha

import (
	"net/netip"
	"time"
)

// Status is a snapshot of a node for `govs stats`.
type Status struct {
	State    State
	Since    time.Time // when the node entered State
	Priority uint8     // the configured priority
	// Advertised is the priority the node advertises now: 0 in FAULT and after Resign.
	Advertised uint8
	Listen     netip.AddrPort
	Fault      string // why the node is in FAULT, or ""
	Peers      []PeerStatus
	// Sent and Received count heartbeats (datagrams) sent to peers and accepted from them.
	Sent, Received uint64
	SendErrors     uint64
	// Dropped counts the received datagrams that were not accepted, by DropReason name.
	Dropped     map[string]uint64
	Transitions uint64
}

// PeerStatus is what a node knows about one peer.
type PeerStatus struct {
	Addr     netip.AddrPort
	State    State // as last heard; 0 if never
	Priority uint8
	Heard    time.Time // zero if never
	Alive    bool
}

// Status returns a snapshot of the node at now.
func (n *Node) Status(now time.Time) Status {
	st := Status{
		State:       n.state,
		Since:       n.since,
		Priority:    n.cfg.Priority,
		Advertised:  n.priority(),
		Listen:      n.cfg.Listen,
		Fault:       n.fault,
		Sent:        n.sent,
		Received:    n.received,
		SendErrors:  n.sendErrors,
		Dropped:     make(map[string]uint64, numDropReasons-1),
		Transitions: n.transitions,
	}
	for r := DropReason(1); r < numDropReasons; r++ {
		st.Dropped[r.String()] = n.drops[r]
	}
	for _, p := range n.peers {
		st.Peers = append(st.Peers, PeerStatus{Addr: p.addr, State: p.state, Priority: p.priority, Heard: p.heard, Alive: p.alive(now, n.dead)})
	}
	return st
}
