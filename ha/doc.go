// Package ha runs the active/backup protocol between govs nodes: authenticated UDP heartbeats and
// the state machine that decides which node holds the VIPs.
//
// A Node is the state machine alone: it is driven step by step (Start, Receive, Tick, SetFault,
// Resign), with the time passed in, so tests walk it through every transition with a fake clock
// and a fake transport. HA runs a Node in a goroutine of its own over a Transport and a Clock, and
// tells an Engine (the daemon) the state to apply; ha never touches the data plane or the
// announcer itself.
//
//	         Start                 no active peer for dead_after heartbeats,
//	 INIT ──────────► BACKUP ◄───  a resign (priority 0) heartbeat, or preempt
//	                   │    ▲      ───────────────────────────────────────────► ACTIVE
//	                   │    └──── an active peer that outranks us (split brain), ◄──┘
//	                   │          or our resign handed over
//	         SetFault  ▼
//	 (any) ─────────► FAULT ──── ClearFault ────► BACKUP
//
// Ranking: the higher priority wins; on equal priority the lower listen address. Priority 0 is
// never a candidate: a node advertises it while in FAULT and after Resign.
package ha
