package ha

// Sync is connection synchronisation as the Node sees it: it gates preemption. Syncer (syncer.go)
// implements it, streaming the active node's connection table to its peers so that established
// connections survive a takeover; a Node also works without one (Config.Sync nil), and then
// connections through a failed node are lost on takeover.
//
// How Syncer does it:
//   - Transport: sync messages travel between the same listen addresses as heartbeats, as message
//     types other than heartbeat (syncwire.go), authenticated with the same key and
//     replay-protected the same way; their sequence numbers also reveal lost datagrams.
//   - Source: the data plane exports connection-table changes (created, state changed, removed)
//     and persistence templates (created, refreshed by a new connection, removed) from each
//     worker into a per-worker single-producer ring that the sync goroutine drains in batches; a
//     full ring drops (and counts), and the active node then sends a snapshot, templates first.
//   - Sink: the backup installs each entry in the worker its own fanout program picks for that
//     flow (the same hash computed in Go), with the real server found by address rather than by
//     ID, through a per-worker inbox the worker drains between batches. A template goes to the
//     worker its client network's connections reach (a persistent service's fanout hashes the
//     masked client address alone), so that after a takeover a persistent client's new
//     connections keep their real server.
//   - Snapshots: the data plane paces a snapshot's walk (200k entries a second per node), so a
//     large table takes seconds; a backup that is being sent one does not ask again (every
//     request starts it over) unless nothing arrives, and the active node's periodic refresh
//     waits for one under way to end.
//   - Role: HAState tells it whether to stream (active) or install (backup); a node that becomes
//     active keeps what it installed.
type Sync interface {
	// Converged reports whether this node holds the active node's connection table: a full
	// snapshot and every change since. With preempt, a node takes the VIPs back only once it has,
	// so that the connections it takes over keep their real servers.
	Converged() bool
}
