package dataplane

import (
	"sync/atomic"

	"github.com/govs/govs/dataplane/frame"
)

// Drop is why the data plane dropped a frame that parsed. It doubles as a metric label.
type Drop uint8

const (
	dropNone Drop = iota
	// DropCaptureTruncated: the ring held only part of the frame (frame larger than a ring block).
	DropCaptureTruncated
	// DropNotIP: a frame that is neither IPv4 nor IPv6 reached a ring.
	DropNotIP
	// DropNoService: not to a virtual service and not a reply of a known connection.
	DropNoService
	// DropNoConnection: a TCP segment other than a SYN for a connection govs does not know.
	DropNoConnection
	// DropNoRealServer: the scheduler found no real server that can take a new connection.
	DropNoRealServer
	// DropUnresolved: the next hop's MAC address is not known (yet).
	DropUnresolved
	// DropTableFull: the connection table has no room for a new connection.
	DropTableFull
	// DropTxRingFull: the transmit ring stayed full after a kick.
	DropTxRingFull
	// DropRealRemoved: the connection's real server, or its whole virtual server, was removed by a
	// reload.
	DropRealRemoved
	// DropFragment: a later IP fragment (it has no ports) of a datagram whose first fragment did
	// not come within the hold time, was not forwarded, or came before a free hold slot.
	DropFragment
	// DropICMPNoConnection: an ICMP error about no connection govs knows.
	DropICMPNoConnection
	// DropTooLarge: the frame does not fit a transmit slot.
	DropTooLarge
	// DropTupleClash: a new connection's tuple is already taken (e.g. two VIPs mapping one client
	// port to the same real server port under NAT: the replies would be ambiguous).
	DropTupleClash
	// DropDraining: a new connection while the node drains before it stops (shutdown_drain).
	DropDraining
	// DropRealDown: the connection's real server went down (health check) and its connections end
	// (TCP under expire_nodest_conn; UDP replies while the flow moves to a server that is up).
	DropRealDown
	// DropNoQuorum: a new connection to a virtual server with fewer real servers up than its
	// quorum, and no sorry server.
	DropNoQuorum
	// DropTunnelGSO: a GSO super-frame (from a local sender) for a tun service that is not TCP
	// (the kernel cannot segment it once encapsulated; govs segments only TCP, see
	// tunnel_segmented).
	DropTunnelGSO
	// DropTunnelTooBig: a packet for a tun service that does not fit the path MTU to its real server
	// once encapsulated. If it may not be fragmented the client is told (icmp_too_big_sent) unless
	// rate-limited; an IPv4 packet without DF is cut into fragments instead (tunnel_fragmented),
	// unless the path MTU leaves less than 8 bytes per fragment or the packet, a fragment, would
	// end beyond the largest IP datagram.
	DropTunnelTooBig
	// DropFragmentTableFull: a first fragment found its worker's fragment table full of live
	// datagrams, so its later fragments could not follow it.
	DropFragmentTableFull
	// DropFragmentHandoffFull: the ring that hands fragments to their flow's worker was full.
	DropFragmentHandoffFull
	// DropFullNATNoPort: a new FullNAT connection found no free local port towards its real server
	// (every local address and port of the worker's share tried is taken; see fullnat.go).
	DropFullNATNoPort
	// DropRealHandlesFull: a new connection found its worker's connection table with room but
	// every real server handle held: 65536 distinct real server addresses, or FullNAT (real
	// server address and port, local address) combinations, have live connections (see
	// conntrack.ErrNoHandle); config validation refuses FullNAT services that could get there.
	DropRealHandlesFull
	// DropHandoffFull: with io = "afxdp", the ring that hands a frame read by one worker to the
	// worker its connection belongs to was full (see steer.go).
	DropHandoffFull
	numDrops
)

var dropNames = [numDrops]string{
	dropNone:             "none",
	DropCaptureTruncated: "capture_truncated",
	DropNotIP:            "not_ip",
	DropNoService:        "no_service",
	DropNoConnection:     "no_connection",
	DropNoRealServer:     "no_real_server",
	DropUnresolved:       "unresolved_neighbor",
	DropTableFull:        "conntrack_full",
	DropTxRingFull:       "tx_ring_full",
	DropRealRemoved:      "real_server_removed",
	DropFragment:         "fragment",
	DropICMPNoConnection: "icmp_no_connection",
	DropTooLarge:         "frame_too_large",
	DropTupleClash:       "tuple_clash",
	DropDraining:         "draining",
	DropRealDown:         "real_server_down",
	DropNoQuorum:         "no_quorum",
	DropTunnelGSO:        "tunnel_gso",
	DropTunnelTooBig:     "tunnel_too_big",

	DropFragmentTableFull:   "fragment_table_full",
	DropFragmentHandoffFull: "fragment_handoff_full",
	DropFullNATNoPort:       "fullnat_no_port",
	DropRealHandlesFull:     "real_handles_full",
	DropHandoffFull:         "handoff_full",
}

func (d Drop) String() string {
	if d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// Counter slots, per worker. Parse errors and drops live in the same flat array so that a worker
// publishes all of them with one loop.
const (
	cRxFrames = iota
	cTxFrames
	cForwarded    // client → real server
	cReplied      // real server → client (NAT)
	cICMPErrors   // ICMP errors forwarded
	cConnsCreated // new connection entries
	cConnsExpired
	cCsumCompleted // partial checksums completed in software
	cTxKicks
	cTxErrors
	cToHost          // frames for the balancer's own addresses (its kernel gets them; not a drop)
	cExpress         // frames of established connections forwarded by the express lane (Worker.express)
	cTooBigSent      // ICMP fragmentation needed / packet too big sent to clients (tun path MTU)
	cTooBigLimited   // of those due, not sent: over the rate limit
	cTunnelSegmented // TCP GSO super-frames segmented for the tunnel (each also counted forwarded)
	// Path MTU towards tun real servers (pathmtu.go): ICMP too-big errors about tunnelled packets
	// that lowered (or renewed) a path MTU, and those that did not pass the checks.
	cTunnelPMTULearned
	cTunnelPMTUIgnored
	cTunnelFragmented // IPv4 packets without DF split into fragments to fit the tunnel (tunnelFragments)
	// Fragments (see frags.go): first fragments recorded, later fragments forwarded by their
	// first one's record, fragments handed to their flow's worker, later fragments held until
	// their first.
	cFragFirst
	cFragLater
	cFragHandedOff
	cFragHeld
	cConnLogDropped // connection-log events a full ring refused (connlog.go)
	cHandedOff      // frames handed to the worker their connection belongs to (io = "afxdp", steer.go)
	cDropBase
	cParseBase = cDropBase + int(numDrops)
	numSlots   = cParseBase + int(frame.NumErrors)
)

var counterNames = [cDropBase]string{
	cRxFrames:          "rx_frames",
	cTxFrames:          "tx_frames",
	cForwarded:         "forwarded",
	cReplied:           "replied",
	cICMPErrors:        "icmp_errors_forwarded",
	cConnsCreated:      "conns_created",
	cConnsExpired:      "conns_expired",
	cCsumCompleted:     "checksums_completed",
	cTxKicks:           "tx_kicks",
	cTxErrors:          "tx_errors",
	cToHost:            "to_host",
	cExpress:           "express_frames",
	cTooBigSent:        "icmp_too_big_sent",
	cTooBigLimited:     "icmp_too_big_rate_limited",
	cTunnelSegmented:   "tunnel_segmented",
	cTunnelPMTULearned: "tunnel_pmtu_learned",
	cTunnelPMTUIgnored: "tunnel_pmtu_ignored",
	cTunnelFragmented:  "tunnel_fragmented",
	cFragFirst:         "fragments_first",
	cFragLater:         "fragments_later",
	cFragHandedOff:     "fragments_handed_off",
	cFragHeld:          "fragments_held",
	cConnLogDropped:    "connlog_dropped",
	cHandedOff:         "handed_off",
}

// counters is a worker's private tally; published copies are read by Stats.
type counters [numSlots]uint64

type published struct {
	slots [numSlots]atomic.Uint64
	// reals are per real-server ID figures (traffic, connections), replaced when IDs grow.
	reals atomic.Pointer[realCounters]
	// The connection table's entries, capacity and evictions: only its worker may read the table.
	ctEntries, ctCapacity, ctEvictions atomic.Uint64
	// conns is a pending connection-table snapshot request (see Engine.Conns), served by the
	// worker between batches; nil when none is pending.
	conns atomic.Pointer[connRequest]
	// connLog is the worker's connection log, nil while the log is off (Engine.SetConnLog); the
	// worker takes it up between batches (Worker.adoptConnLog).
	connLog atomic.Pointer[workerConnLog]
	// connLogOff is the log SetConnLog turned off, until the writer has drained its events
	// (Engine.ConnLogDrain).
	connLogOff atomic.Pointer[workerConnLog]
}

type realCounters struct {
	reals []realPublished
}

// realPublished is one real server's published figures in one worker: a copy of its realTally
// and of its connection count.
type realPublished struct {
	packets, bytes [2]atomic.Uint64 // by conntrack.Dir
	conns          atomic.Uint64
}

// realTally is one real server's traffic through one worker, by direction (indexed by
// conntrack.Dir: client to real server, real server to client). A packet adds to the packets and
// bytes of one direction, which sit next to each other in 16 bytes: the slice's elements are 16-byte
// aligned (Go allocates anything of 16 bytes and more at a multiple of 16; see
// TestRealTallyAligned), so both adds touch one cache line, the line the packet count alone
// touched before.
type realTally [2]struct{ packets, bytes uint64 }

// newRealTallies returns n zeroed tallies with a cache line of padding on either side, so that no
// other worker's counters share their lines.
func newRealTallies(n int) []realTally {
	const pad = 64 / 32 // tallies per cache line
	return make([]realTally, n+2*pad)[pad : pad+n : pad+n]
}

// Stats is a snapshot of the data plane's counters summed over workers.
type Stats struct {
	Counters map[string]uint64
	// Drops maps a reason (a Drop or a frame parse error) to its count; zero counts are included.
	Drops      map[string]uint64
	DropsTotal uint64
	// RealPackets is indexed by real-server ID: packets in both directions.
	RealPackets []uint64
	// Reals is indexed by real-server ID.
	Reals []RealStats
}

// RealStats is one real server's traffic, summed over workers: connections scheduled to it, and
// packets and bytes (IP packet length) from clients to it (In) and back (Out; NAT and FullNAT only:
// direct routing's and tunnelling's replies bypass govs), as IPVS counts them for ipvsadm --stats.
type RealStats struct {
	Conns, PacketsIn, PacketsOut, BytesIn, BytesOut uint64
}

// Sub returns s minus o, each field at least 0 (o may be from a real server that held the ID before).
func (s RealStats) Sub(o RealStats) RealStats {
	d := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return RealStats{d(s.Conns, o.Conns), d(s.PacketsIn, o.PacketsIn), d(s.PacketsOut, o.PacketsOut),
		d(s.BytesIn, o.BytesIn), d(s.BytesOut, o.BytesOut)}
}

// Add returns s plus o.
func (s RealStats) Add(o RealStats) RealStats {
	return RealStats{s.Conns + o.Conns, s.PacketsIn + o.PacketsIn, s.PacketsOut + o.PacketsOut,
		s.BytesIn + o.BytesIn, s.BytesOut + o.BytesOut}
}
