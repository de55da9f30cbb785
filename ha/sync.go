package ha

// Sync is the seam for connection synchronisation, which streams the active node's connection
// table to its peers so that established connections survive a takeover. No implementation exists
// yet; a Node works without one (Config.Sync nil), and then connections through a failed node are
// lost on takeover (see the README's HA section for what survives in DR).
//
// What an implementation needs, and where it plugs in:
//   - Transport: sync messages travel between the same listen addresses as heartbeats, as message
//     types other than heartbeat (see the wire format in heartbeat.go), authenticated with the
//     same key and replay-protected the same way; bulk snapshots need fragmentation or a TCP side
//     channel, since one heartbeat datagram carries 76 bytes.
//   - Source: the data plane must export connection-table changes (created, state changed,
//     removed) from each worker without slowing it: a per-worker single-producer ring that the
//     sync goroutine drains in batches, dropping (and counting) when it is full, then a resync.
//   - Sink: the backup installs each entry in the worker its own fanout program picks for that
//     flow (the same hash computed in Go; worker counts may differ between nodes), with the real
//     server found by address rather than by ID (IDs are per node), through a per-worker inbox
//     the worker drains between batches, since only a worker may write its table.
//   - Role: HAState tells it whether to stream (active) or install (backup); a node that becomes
//     active keeps what it installed.
type Sync interface {
	// Converged reports whether this node holds the active node's connection table: a full
	// snapshot and every change since. With preempt, a node takes the VIPs back only once it has,
	// so that the connections it takes over keep their real servers.
	Converged() bool
}
