// Package ha runs the active/backup protocol between govs nodes: authenticated UDP heartbeats and
// the state machine that decides which node holds the VIPs.
//
// A Node is the state machine alone: it is driven step by step (Start, Receive, Tick, SetFault,
// Resign), with the time passed in, so tests walk it through every transition with a fake clock
// and a fake transport. HA runs a Node in a goroutine of its own over a Transport and a Clock, and
// tells an Engine (the daemon) the state to apply; ha never touches the data plane or the
// announcer itself.
//
//	INIT ──Start──► BACKUP ──take over──► ACTIVE
//	                  ▲  ◄────step down──────┘
//	       ClearFault │
//	                FAULT ◄──SetFault── (BACKUP or ACTIVE)
//
//	take over: no active peer heard for dead_after advert intervals (a peer that resigned or is
//	           in FAULT advertises priority 0 and does not count), or preempting a lower-ranked
//	           active peer once preempt_delay has passed.
//	step down: an active peer outranks this node (a split brain healed, or it preempted), or this
//	           node's own resign has handed over.
//
// Ranking: the higher priority wins; on equal priority the lower listen address. Priority 0 is
// never a candidate: a node advertises it while in FAULT and after Resign.
package ha
