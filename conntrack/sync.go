package conntrack

// The values HA connection sync moves between nodes: the data plane exports and installs them, the
// ha package encodes them. They live here, with the table whose entries they describe, so that ha
// needs the table's types and not the data plane.

// SyncOp says what a SyncEntry reports.
type SyncOp uint8

const (
	// SyncSet: the connection (or template) exists, in State (created, its state changed, or
	// refreshed).
	SyncSet SyncOp = iota + 1
	// SyncRemove: the connection ended (closed, expired, evicted, rescheduled).
	SyncRemove
	// SyncLocal: the local endpoint of the FullNAT connection whose SyncSet follows it at once:
	// Client, VIP, CPort, VPort and Proto are the connection's, Real and RPort its local address and
	// port (see SyncEntry).
	SyncLocal
)

// SyncEntry is one connection-table change, as HA connection sync carries it between nodes. It
// names the real server by address and port, not by ID: IDs are per node.
//
// A persistence template travels as an entry in State StateTemplate: Client is the client address
// masked by the service's persistence_netmask, CPort 0, VIP, VPort and Proto the service's own
// endpoint (a template's key holds the service's index, which is per node too), and InPort and
// ClientMAC zero. Its SyncSet reports a template created or refreshed (a new connection attached
// to it), its SyncRemove one that expired or was dropped; so after a takeover a persistent
// client's new connections keep the real server the active node gave it.
//
// A FullNAT connection's SyncSet comes right after a SyncLocal entry of the same connection that
// carries its local address and port in Real and RPort (an entry has no room for both endpoints):
// both take the same way to the peer's worker (they name the same client), in order. A node that
// does not know SyncLocal skips it, and refuses the SyncSet of a service it does not have.
type SyncEntry struct {
	Client, VIP, Real   [16]byte
	CPort, VPort, RPort uint16
	Proto               uint8
	State               State
	Op                  SyncOp
	InPort              uint8   // the data-plane port the client side came in on (NAT replies)
	ClientMAC           [6]byte // next hop towards the client (NAT replies)
}

// SyncStats are the data plane's connection-sync counters, summed over its workers.
type SyncStats struct {
	ExportDropped uint64 // changes lost to full export rings (a resync follows)
	InboxDropped  uint64 // synced entries lost to full inboxes
	Installed     uint64 // synced changes applied
	Refused       uint64 // synced changes for services or real servers this node lacks, or clashes
	Pending       uint64 // synced changes queued in inboxes, not yet applied
}
