// Package metrics exposes a running govs to Prometheus: a Collector that turns a Snapshot of the
// daemon's state and counters into metrics when it is scraped, and Server, which serves them over
// HTTP at /metrics ([metrics] listen).
//
// Nothing here runs per packet. The data plane's workers count in their own memory and publish
// periodically, as they do for `govs stats`; a scrape reads what they published, so the data plane
// pays nothing for metrics and takes no lock for them.
package metrics

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot is what one scrape reports. The daemon builds it from its status (the same figures
// `govs stats -json` shows) and a few counters that only metrics show.
type Snapshot struct {
	Version    string
	Ready      bool
	Workers    int
	Generation uint32
	// Counters are the data plane's counters by their `govs stats` name (see CounterMetrics).
	Counters map[string]uint64
	// Drops are the data plane's dropped frames by reason; a reason with no drops is listed
	// with 0, so every series exists from the start.
	Drops map[string]uint64
	// Rings are the kernel's PACKET_STATISTICS summed over the data plane's sockets.
	Rings Rings
	// Neighbor is what next-hop resolution reports.
	Neighbor Neighbor
	Reloads  Reloads
	// InterfaceProblems counts what keeps an interface from carrying its traffic through govs
	// (control.Status.InterfaceProblems).
	InterfaceProblems int
	// VirtualServers are the configured services and their real servers.
	VirtualServers []VirtualServer
	// HA is the high-availability state; nil when govs runs stand-alone (no [ha]).
	HA *HA
}

// Rings are the kernel's counts for the data plane's receive rings.
type Rings struct {
	Packets uint64 // frames the rings' filters passed (tp_packets)
	Drops   uint64 // frames dropped for want of a free slot (tp_drops)
	Freezes uint64 // times a ring froze with every block owned by govs (tp_freeze_q_cnt)
}

// Neighbor is next-hop resolution's state.
type Neighbor struct {
	Unresolved int    // real-server addresses whose next hop is not resolved now
	Failures   uint64 // times a resolved next hop became unresolved
}

// Reloads counts configuration reloads (SIGHUP) since govs started.
type Reloads struct {
	Applied, Rejected uint64
	// LastApplied and LastTime are the last attempt's outcome and time; before the first
	// reload, the start of govs with the configuration it loaded.
	LastApplied bool
	LastTime    time.Time
}

// VirtualServer is one configured service.
type VirtualServer struct {
	Name        string // "tcp/198.18.0.100:80", as `govs list` prints it
	RealServers []RealServer
}

// RealServer is one real server of a VirtualServer.
type RealServer struct {
	Address            string // "198.19.0.11:80"
	Weight             int
	Active, Inactive   int64  // connections, as IPVS's ActiveConn and InActConn
	Packets            uint64 // frames of its connections the data plane forwarded, both ways
	Resolved           bool   // its next hop's link-layer address is known
	Overloaded         bool   // at its upper_threshold: no new connections
	Health             string // "up", "down", "unknown" or "unchecked"; "" exports no health series
	Connections        *uint64
	InPackets, InBytes *uint64 // client to real server
	// OutPackets and OutBytes are real server to client. They, InPackets, InBytes and
	// Connections (connections scheduled to it) are nil while the data plane does not count
	// them; their metrics then are not exported.
	OutPackets, OutBytes *uint64
}

// HA is a high-availability node's state.
type HA struct {
	State       string // init, backup, active or fault
	Forwarding  bool
	Transitions uint64
	// Snapshot is connection sync's snapshot under way, or else the last one; nil without sync.
	Snapshot *SyncSnapshot
}

// SyncSnapshot is the progress of a connection-sync snapshot (`govs stats -json`'s
// "ha" -> "sync" -> "snapshot").
type SyncSnapshot struct {
	Sending, Receiving bool
	Since              time.Time // zero before the first snapshot
	Entries, Total     uint64
}

// HAStates are the states govs_ha_state always reports (one series each, 1 for the current).
var HAStates = []string{"init", "backup", "active", "fault"}

// Source gives the Collector a Snapshot at each scrape.
type Source func() Snapshot

// CounterMetric is how one data plane counter is exported.
type CounterMetric struct {
	Name, Help string
	Gauge      bool // a level (entries, a mode), not a count
}

// CounterMetrics maps each data plane counter (`govs stats` name) to its metric. A counter the
// data plane reports that is missing here is not exported (the daemon's tests keep them in step).
var CounterMetrics = map[string]CounterMetric{
	"rx_frames":                 {Name: "govs_rx_frames_total", Help: "Frames the workers read from the receive rings."},
	"tx_frames":                 {Name: "govs_tx_frames_total", Help: "Frames the workers queued on the transmit rings."},
	"forwarded":                 {Name: "govs_forwarded_frames_total", Help: "Frames forwarded from clients to real servers."},
	"replied":                   {Name: "govs_replied_frames_total", Help: "Frames of real servers' replies forwarded to clients (NAT)."},
	"icmp_errors_forwarded":     {Name: "govs_icmp_errors_forwarded_total", Help: "ICMP errors about a connection forwarded to its client or real server."},
	"conns_created":             {Name: "govs_connections_created_total", Help: "Connections entered in the connection table."},
	"conns_expired":             {Name: "govs_connections_expired_total", Help: "Connections removed from the connection table after their idle timeout."},
	"checksums_completed":       {Name: "govs_checksums_completed_total", Help: "Partial (offloaded) checksums completed in software."},
	"express_frames":            {Name: "govs_express_frames_total", Help: "Frames of established connections forwarded by the express lane (found by the table's prefetch hint)."},
	"tx_kicks":                  {Name: "govs_tx_kicks_total", Help: "Times the workers asked the kernel to send their transmit rings."},
	"tx_errors":                 {Name: "govs_tx_errors_total", Help: "Transmit ring kicks the kernel refused."},
	"to_host":                   {Name: "govs_to_host_frames_total", Help: "Frames for the balancer's own addresses, left to its kernel."},
	"rx_mode_switches":          {Name: "govs_rx_mode_switches_total", Help: "Times rx_mode auto switched between the throughput and the latency ring."},
	"rx_ring_latency":           {Name: "govs_rx_ring_latency", Help: "1 while frames arrive on the latency (frame at a time) ring, 0 on the throughput (block) ring.", Gauge: true},
	"conntrack_entries":         {Name: "govs_conntrack_entries", Help: "Entries (connections and persistence templates) in the connection tables.", Gauge: true},
	"conntrack_capacity":        {Name: "govs_conntrack_capacity", Help: "Entries the connection tables hold at most ([conntrack] max_entries).", Gauge: true},
	"conntrack_evictions":       {Name: "govs_conntrack_evictions_total", Help: "Idle entries evicted to make room for new connections (full_policy evict_oldest_idle)."},
	"fragments_first":           {Name: "govs_fragments_first_total", Help: "First fragments of IP datagrams forwarded and recorded, so that their later fragments follow them."},
	"fragments_later":           {Name: "govs_fragments_later_total", Help: "Later (non-first) IP fragments forwarded the way their datagram's first fragment went."},
	"fragments_handed_off":      {Name: "govs_fragments_handed_off_total", Help: "IP fragments a worker handed to the worker that holds their flow's connection."},
	"handed_off":                {Name: "govs_handed_off_frames_total", Help: "Frames a worker read from its AF_XDP sockets and handed to the worker their connection belongs to (io afxdp, several workers)."},
	"fragments_held":            {Name: "govs_fragments_held_total", Help: "Later IP fragments held because they came before their datagram's first fragment."},
	"tunnel_segmented":          {Name: "govs_tunnel_segmented_total", Help: "TCP segmentation-offload frames cut into segments before tunnelling (method tun)."},
	"tunnel_fragmented":         {Name: "govs_tunnel_fragmented_total", Help: "IPv4 packets without DF cut into fragments to fit a tunnel's path MTU (method tun)."},
	"tunnel_pmtu_learned":       {Name: "govs_tunnel_pmtu_learned_total", Help: "ICMP too-big errors about tunnelled packets that lowered or renewed a real server's path MTU (method tun)."},
	"tunnel_pmtu_ignored":       {Name: "govs_tunnel_pmtu_ignored_total", Help: "ICMP too-big errors about tunnel-shaped packets that failed the checks or taught nothing (method tun)."},
	"icmp_too_big_sent":         {Name: "govs_icmp_too_big_sent_total", Help: "Fragmentation-needed / packet-too-big errors sent to clients whose packets would not fit the tunnel (method tun)."},
	"icmp_too_big_rate_limited": {Name: "govs_icmp_too_big_rate_limited_total", Help: "Fragmentation-needed / packet-too-big errors not sent: over the rate limit."},
	"connlog_lines":             {Name: "govs_connlog_lines_total", Help: "Lines written to the connection log ([log] connections)."},
	"connlog_dropped":           {Name: "govs_connlog_dropped_total", Help: "Connection-log events lost: a worker's ring to the log writer was full."},
	"connlog_rate_limited":      {Name: "govs_connlog_rate_limited_total", Help: "Connection-log events not written: over [log] connections_rate."},
	"connlog_write_errors":      {Name: "govs_connlog_write_errors_total", Help: "Writes to the connection log file that failed (their lines are lost)."},
}

// The reason conntrack_full counts in Drops: new connections refused by a full table.
const dropTableFull = "conntrack_full"

var (
	realLabels = []string{"service", "real_server"}

	descBuildInfo  = prometheus.NewDesc("govs_build_info", "Always 1; the version label is govs's version.", []string{"version"}, nil)
	descReady      = prometheus.NewDesc("govs_ready", "1 once the data plane is up and forwarding.", nil, nil)
	descWorkers    = prometheus.NewDesc("govs_workers", "Data plane workers.", nil, nil)
	descGeneration = prometheus.NewDesc("govs_tables_generation", "Generation of the forwarding tables in use; it grows with every change (reload, next hop, health).", nil, nil)

	descDrops     = prometheus.NewDesc("govs_drops_total", "Frames the data plane dropped, by reason.", []string{"reason"}, nil)
	descTableFull = prometheus.NewDesc("govs_conntrack_full_total", "New connections that found the connection table full: refused (drops reason conntrack_full) or given an evicted entry's place.", nil, nil)

	descRingPackets = prometheus.NewDesc("govs_ring_packets_total", "Frames the receive rings' filters passed (PACKET_STATISTICS tp_packets, every socket).", nil, nil)
	descRingDrops   = prometheus.NewDesc("govs_ring_drops_total", "Frames the kernel dropped because a receive ring was full (PACKET_STATISTICS tp_drops).", nil, nil)
	descRingFreezes = prometheus.NewDesc("govs_ring_freezes_total", "Times a receive ring froze with every block held by govs (PACKET_STATISTICS tp_freeze_q_cnt).", nil, nil)

	descNeighUnresolved = prometheus.NewDesc("govs_neighbor_unresolved", "Real-server addresses whose next hop's link-layer address is not resolved now.", nil, nil)
	descNeighFailures   = prometheus.NewDesc("govs_neighbor_resolution_failures_total", "Times a resolved next hop became unresolved (neighbour entry failed or deleted, route lost).", nil, nil)

	descIfaceProblems = prometheus.NewDesc("govs_interface_problems", "Problems that keep an interface from carrying its traffic through govs, such as receive queues added or the MTU raised since govs started with io = \"afxdp\" (govs stats lists them, with what to do); 0 when none.", nil, nil)

	descReloads        = prometheus.NewDesc("govs_config_reloads_total", "Configuration reloads, by result: applied, or rejected (the running configuration stayed).", []string{"result"}, nil)
	descLastReloadOK   = prometheus.NewDesc("govs_config_last_reload_successful", "1 if the last reload was applied (or none was tried since govs started), 0 if it was rejected.", nil, nil)
	descLastReloadTime = prometheus.NewDesc("govs_config_last_reload_timestamp_seconds", "When the last reload was tried (Unix time); govs's start before the first.", nil, nil)

	descWeight      = prometheus.NewDesc("govs_real_server_weight", "Real server's weight (0: no new connections).", realLabels, nil)
	descActive      = prometheus.NewDesc("govs_real_server_active_connections", "Real server's established connections (IPVS ActiveConn).", realLabels, nil)
	descInactive    = prometheus.NewDesc("govs_real_server_inactive_connections", "Real server's connections in any other state, UDP included (IPVS InActConn).", realLabels, nil)
	descPackets     = prometheus.NewDesc("govs_real_server_packets_total", "Frames of the real server's connections the data plane forwarded, both directions.", realLabels, nil)
	descResolved    = prometheus.NewDesc("govs_real_server_resolved", "1 when the real server's next hop is resolved (it can take connections).", realLabels, nil)
	descOverloaded  = prometheus.NewDesc("govs_real_server_overloaded", "1 while the real server is at its upper_threshold and takes no new connections.", realLabels, nil)
	descHealth      = prometheus.NewDesc("govs_real_server_health", "1 for the real server's health state, 0 for the others: up, down, unknown (checked, no result yet: out of rotation), unchecked (no health check: in rotation).", append(append([]string(nil), realLabels...), "state"), nil)
	descConnections = prometheus.NewDesc("govs_real_server_connections_total", "Connections scheduled to the real server.", realLabels, nil)
	descInPackets   = prometheus.NewDesc("govs_real_server_in_packets_total", "Frames from clients forwarded to the real server.", realLabels, nil)
	descOutPackets  = prometheus.NewDesc("govs_real_server_out_packets_total", "Frames from the real server forwarded to clients.", realLabels, nil)
	descInBytes     = prometheus.NewDesc("govs_real_server_in_bytes_total", "Bytes (IP packets) from clients forwarded to the real server.", realLabels, nil)
	descOutBytes    = prometheus.NewDesc("govs_real_server_out_bytes_total", "Bytes (IP packets) from the real server forwarded to clients.", realLabels, nil)

	descHAState       = prometheus.NewDesc("govs_ha_state", "1 for the node's current high-availability state, 0 for the others (with [ha] only).", []string{"state"}, nil)
	descHAForwarding  = prometheus.NewDesc("govs_ha_forwarding", "1 while the HA node's data plane forwards (with [ha] only).", nil, nil)
	descHATransitions = prometheus.NewDesc("govs_ha_transitions_total", "HA state changes (with [ha] only).", nil, nil)

	descSnapInProgress = prometheus.NewDesc("govs_ha_sync_snapshot_in_progress", "1 while a connection-sync snapshot is being sent (direction sending, active node) or received (receiving, a backup that asked for it).", []string{"direction"}, nil)
	descSnapEntries    = prometheus.NewDesc("govs_ha_sync_snapshot_entries", "Entries of the connection-sync snapshot under way, or else of the last one: exported by the active node's walk so far, or received by a backup since it began.", nil, nil)
	descSnapTable      = prometheus.NewDesc("govs_ha_sync_snapshot_table_entries", "The active node's connection table occupancy when the walk of the snapshot under way (or the last one) began: what govs_ha_sync_snapshot_entries goes up to (0 on a backup).", nil, nil)
	descSnapStart      = prometheus.NewDesc("govs_ha_sync_snapshot_start_time_seconds", "When the connection-sync snapshot under way, or else the last one, began (Unix time; absent before the first).", nil, nil)
)

// counterDescs are the descriptors of CounterMetrics, by counter name.
var counterDescs = func() map[string]*prometheus.Desc {
	m := make(map[string]*prometheus.Desc, len(CounterMetrics))
	for k, c := range CounterMetrics {
		m[k] = prometheus.NewDesc(c.Name, c.Help, nil, nil)
	}
	return m
}()

var fixedDescs = []*prometheus.Desc{
	descBuildInfo, descReady, descWorkers, descGeneration, descDrops, descTableFull,
	descRingPackets, descRingDrops, descRingFreezes, descNeighUnresolved, descNeighFailures, descIfaceProblems,
	descReloads, descLastReloadOK, descLastReloadTime,
	descWeight, descActive, descInactive, descPackets, descResolved, descOverloaded, descHealth,
	descConnections, descInPackets, descOutPackets, descInBytes, descOutBytes,
	descHAState, descHAForwarding, descHATransitions,
	descSnapInProgress, descSnapEntries, descSnapTable, descSnapStart,
}

// Collector is a prometheus.Collector that asks its Source for a Snapshot at every scrape.
type Collector struct {
	src Source
}

// NewCollector returns a Collector reading src.
func NewCollector(src Source) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range fixedDescs {
		ch <- d
	}
	for _, d := range counterDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descBuildInfo, 1, s.Version)
	gauge(descReady, b2f(s.Ready))
	gauge(descWorkers, float64(s.Workers))
	gauge(descGeneration, float64(s.Generation))

	for name, v := range s.Counters {
		d, ok := counterDescs[name]
		if !ok {
			continue
		}
		if CounterMetrics[name].Gauge {
			gauge(d, float64(v))
		} else {
			counter(d, v)
		}
	}
	for _, reason := range sortedKeys(s.Drops) {
		counter(descDrops, s.Drops[reason], reason)
	}
	counter(descTableFull, s.Drops[dropTableFull]+s.Counters["conntrack_evictions"])

	counter(descRingPackets, s.Rings.Packets)
	counter(descRingDrops, s.Rings.Drops)
	counter(descRingFreezes, s.Rings.Freezes)

	gauge(descNeighUnresolved, float64(s.Neighbor.Unresolved))
	counter(descNeighFailures, s.Neighbor.Failures)
	gauge(descIfaceProblems, float64(s.InterfaceProblems))

	counter(descReloads, s.Reloads.Applied, "applied")
	counter(descReloads, s.Reloads.Rejected, "rejected")
	gauge(descLastReloadOK, b2f(s.Reloads.LastApplied))
	if !s.Reloads.LastTime.IsZero() {
		gauge(descLastReloadTime, float64(s.Reloads.LastTime.UnixNano())/1e9)
	}

	for _, vs := range s.VirtualServers {
		for _, rs := range vs.RealServers {
			l := []string{vs.Name, rs.Address}
			gauge(descWeight, float64(rs.Weight), l...)
			gauge(descActive, float64(rs.Active), l...)
			gauge(descInactive, float64(rs.Inactive), l...)
			counter(descPackets, rs.Packets, l...)
			gauge(descResolved, b2f(rs.Resolved), l...)
			gauge(descOverloaded, b2f(rs.Overloaded), l...)
			if rs.Health != "" {
				for _, st := range healthStates {
					gauge(descHealth, b2f(rs.Health == st), vs.Name, rs.Address, st)
				}
			}
			for _, o := range []struct {
				d *prometheus.Desc
				v *uint64
			}{
				{descConnections, rs.Connections},
				{descInPackets, rs.InPackets}, {descOutPackets, rs.OutPackets},
				{descInBytes, rs.InBytes}, {descOutBytes, rs.OutBytes},
			} {
				if o.v != nil {
					counter(o.d, *o.v, l...)
				}
			}
		}
	}

	if ha := s.HA; ha != nil {
		known := false
		for _, st := range HAStates {
			known = known || st == ha.State
			gauge(descHAState, b2f(st == ha.State), st)
		}
		if !known {
			gauge(descHAState, 1, ha.State)
		}
		gauge(descHAForwarding, b2f(ha.Forwarding))
		counter(descHATransitions, ha.Transitions)
		if sp := ha.Snapshot; sp != nil {
			gauge(descSnapInProgress, b2f(sp.Sending), "sending")
			gauge(descSnapInProgress, b2f(sp.Receiving), "receiving")
			gauge(descSnapEntries, float64(sp.Entries))
			gauge(descSnapTable, float64(sp.Total))
			if !sp.Since.IsZero() {
				gauge(descSnapStart, float64(sp.Since.UnixNano())/1e9)
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// healthStates are the values of govs_real_server_health's state label, as govs list shows them.
var healthStates = []string{"down", "unchecked", "unknown", "up"}
