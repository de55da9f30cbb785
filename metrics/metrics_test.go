package metrics

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func u64(v uint64) *uint64 { return &v }

func snapshot() Snapshot {
	return Snapshot{
		Version:    "v1.2.3",
		Ready:      true,
		Workers:    2,
		Generation: 7,
		Counters: map[string]uint64{
			"rx_frames": 100, "forwarded": 60, "rx_ring_latency": 1, "rx_mode_switches": 3,
			"conntrack_entries": 5, "conntrack_capacity": 1024, "conntrack_evictions": 2,
			"not_exported_yet": 9,
		},
		Drops:             map[string]uint64{"no_service": 4, "conntrack_full": 1, "bad_checksum": 0},
		Rings:             Rings{Packets: 120, Drops: 6, Freezes: 1},
		Neighbor:          Neighbor{Unresolved: 1, Failures: 2},
		InterfaceProblems: 1,
		Reloads:           Reloads{Applied: 3, Rejected: 1, LastApplied: false, LastTime: time.Unix(1700000000, 500e6)},
		VirtualServers: []VirtualServer{{
			Name: "tcp/198.18.0.100:80",
			RealServers: []RealServer{
				{Address: "198.19.0.11:80", Weight: 2, Active: 3, Inactive: 1, Packets: 40, Resolved: true, Health: "up"},
				{Address: "198.19.0.12:80", Weight: 0, Packets: 20, Overloaded: true,
					Connections: u64(9), InPackets: u64(12), OutPackets: u64(8), InBytes: u64(1200), OutBytes: u64(800)},
			},
		}},
		HA: &HA{State: "backup", Forwarding: false, Transitions: 4,
			Snapshot: &SyncSnapshot{Receiving: true, Since: time.Unix(1700000100, 500e6), Entries: 1500}},
	}
}

// TestCollect checks every metric's name, type, labels and value against a known snapshot.
func TestCollect(t *testing.T) {
	c := NewCollector(func() Snapshot { return snapshot() })
	want := `
# HELP govs_build_info Always 1; the version label is govs's version.
# TYPE govs_build_info gauge
govs_build_info{version="v1.2.3"} 1
# HELP govs_ready 1 once the data plane is up and forwarding.
# TYPE govs_ready gauge
govs_ready 1
# HELP govs_workers Data plane workers.
# TYPE govs_workers gauge
govs_workers 2
# HELP govs_tables_generation Generation of the forwarding tables in use; it grows with every change (reload, next hop, health).
# TYPE govs_tables_generation gauge
govs_tables_generation 7
# HELP govs_rx_frames_total Frames the workers read from the receive rings.
# TYPE govs_rx_frames_total counter
govs_rx_frames_total 100
# HELP govs_forwarded_frames_total Frames forwarded from clients to real servers.
# TYPE govs_forwarded_frames_total counter
govs_forwarded_frames_total 60
# HELP govs_rx_ring_latency 1 while frames arrive on the latency (frame at a time) ring, 0 on the throughput (block) ring.
# TYPE govs_rx_ring_latency gauge
govs_rx_ring_latency 1
# HELP govs_rx_mode_switches_total Times rx_mode auto switched between the throughput and the latency ring.
# TYPE govs_rx_mode_switches_total counter
govs_rx_mode_switches_total 3
# HELP govs_conntrack_entries Entries (connections and persistence templates) in the connection tables.
# TYPE govs_conntrack_entries gauge
govs_conntrack_entries 5
# HELP govs_conntrack_capacity Entries the connection tables hold at most ([conntrack] max_entries).
# TYPE govs_conntrack_capacity gauge
govs_conntrack_capacity 1024
# HELP govs_conntrack_evictions_total Idle entries evicted to make room for new connections (full_policy evict_oldest_idle).
# TYPE govs_conntrack_evictions_total counter
govs_conntrack_evictions_total 2
# HELP govs_conntrack_full_total New connections that found the connection table full: refused (drops reason conntrack_full) or given an evicted entry's place.
# TYPE govs_conntrack_full_total counter
govs_conntrack_full_total 3
# HELP govs_drops_total Frames the data plane dropped, by reason.
# TYPE govs_drops_total counter
govs_drops_total{reason="bad_checksum"} 0
govs_drops_total{reason="conntrack_full"} 1
govs_drops_total{reason="no_service"} 4
# HELP govs_ring_packets_total Frames the receive rings' filters passed (PACKET_STATISTICS tp_packets, every socket).
# TYPE govs_ring_packets_total counter
govs_ring_packets_total 120
# HELP govs_ring_drops_total Frames the kernel dropped because a receive ring was full (PACKET_STATISTICS tp_drops).
# TYPE govs_ring_drops_total counter
govs_ring_drops_total 6
# HELP govs_ring_freezes_total Times a receive ring froze with every block held by govs (PACKET_STATISTICS tp_freeze_q_cnt).
# TYPE govs_ring_freezes_total counter
govs_ring_freezes_total 1
# HELP govs_neighbor_unresolved Real-server addresses whose next hop's link-layer address is not resolved now.
# TYPE govs_neighbor_unresolved gauge
govs_neighbor_unresolved 1
# HELP govs_neighbor_resolution_failures_total Times a resolved next hop became unresolved (neighbour entry failed or deleted, route lost).
# TYPE govs_neighbor_resolution_failures_total counter
govs_neighbor_resolution_failures_total 2
# HELP govs_interface_problems Problems that keep an interface from carrying its traffic through govs, such as receive queues added or the MTU raised since govs started with io = "afxdp" (govs stats lists them, with what to do); 0 when none.
# TYPE govs_interface_problems gauge
govs_interface_problems 1
# HELP govs_config_reloads_total Configuration reloads, by result: applied, or rejected (the running configuration stayed).
# TYPE govs_config_reloads_total counter
govs_config_reloads_total{result="applied"} 3
govs_config_reloads_total{result="rejected"} 1
# HELP govs_config_last_reload_successful 1 if the last reload was applied (or none was tried since govs started), 0 if it was rejected.
# TYPE govs_config_last_reload_successful gauge
govs_config_last_reload_successful 0
# HELP govs_config_last_reload_timestamp_seconds When the last reload was tried (Unix time); govs's start before the first.
# TYPE govs_config_last_reload_timestamp_seconds gauge
govs_config_last_reload_timestamp_seconds 1.7000000005e+09
# HELP govs_real_server_weight Real server's weight (0: no new connections).
# TYPE govs_real_server_weight gauge
govs_real_server_weight{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80"} 2
govs_real_server_weight{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 0
# HELP govs_real_server_active_connections Real server's established connections (IPVS ActiveConn).
# TYPE govs_real_server_active_connections gauge
govs_real_server_active_connections{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80"} 3
govs_real_server_active_connections{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 0
# HELP govs_real_server_inactive_connections Real server's connections in any other state, UDP included (IPVS InActConn).
# TYPE govs_real_server_inactive_connections gauge
govs_real_server_inactive_connections{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80"} 1
govs_real_server_inactive_connections{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 0
# HELP govs_real_server_packets_total Frames of the real server's connections the data plane forwarded, both directions.
# TYPE govs_real_server_packets_total counter
govs_real_server_packets_total{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80"} 40
govs_real_server_packets_total{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 20
# HELP govs_real_server_resolved 1 when the real server's next hop is resolved (it can take connections).
# TYPE govs_real_server_resolved gauge
govs_real_server_resolved{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80"} 1
govs_real_server_resolved{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 0
# HELP govs_real_server_overloaded 1 while the real server is at its upper_threshold and takes no new connections.
# TYPE govs_real_server_overloaded gauge
govs_real_server_overloaded{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80"} 0
govs_real_server_overloaded{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 1
# HELP govs_real_server_health 1 for the real server's health state, 0 for the others: up, down, unknown (checked, no result yet: out of rotation), unchecked (no health check: in rotation).
# TYPE govs_real_server_health gauge
govs_real_server_health{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80",state="down"} 0
govs_real_server_health{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80",state="unchecked"} 0
govs_real_server_health{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80",state="unknown"} 0
govs_real_server_health{real_server="198.19.0.11:80",service="tcp/198.18.0.100:80",state="up"} 1
# HELP govs_real_server_connections_total Connections scheduled to the real server.
# TYPE govs_real_server_connections_total counter
govs_real_server_connections_total{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 9
# HELP govs_real_server_in_packets_total Frames from clients forwarded to the real server.
# TYPE govs_real_server_in_packets_total counter
govs_real_server_in_packets_total{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 12
# HELP govs_real_server_out_packets_total Frames from the real server forwarded to clients.
# TYPE govs_real_server_out_packets_total counter
govs_real_server_out_packets_total{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 8
# HELP govs_real_server_in_bytes_total Bytes (IP packets) from clients forwarded to the real server.
# TYPE govs_real_server_in_bytes_total counter
govs_real_server_in_bytes_total{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 1200
# HELP govs_real_server_out_bytes_total Bytes (IP packets) from the real server forwarded to clients.
# TYPE govs_real_server_out_bytes_total counter
govs_real_server_out_bytes_total{real_server="198.19.0.12:80",service="tcp/198.18.0.100:80"} 800
# HELP govs_ha_state 1 for the node's current high-availability state, 0 for the others (with [ha] only).
# TYPE govs_ha_state gauge
govs_ha_state{state="active"} 0
govs_ha_state{state="backup"} 1
govs_ha_state{state="fault"} 0
govs_ha_state{state="init"} 0
# HELP govs_ha_forwarding 1 while the HA node's data plane forwards (with [ha] only).
# TYPE govs_ha_forwarding gauge
govs_ha_forwarding 0
# HELP govs_ha_transitions_total HA state changes (with [ha] only).
# TYPE govs_ha_transitions_total counter
govs_ha_transitions_total 4
# HELP govs_ha_sync_snapshot_in_progress 1 while a connection-sync snapshot is being sent (direction sending, active node) or received (receiving, a backup that asked for it).
# TYPE govs_ha_sync_snapshot_in_progress gauge
govs_ha_sync_snapshot_in_progress{direction="receiving"} 1
govs_ha_sync_snapshot_in_progress{direction="sending"} 0
# HELP govs_ha_sync_snapshot_entries Entries of the connection-sync snapshot under way, or else of the last one: exported by the active node's walk so far, or received by a backup since it began.
# TYPE govs_ha_sync_snapshot_entries gauge
govs_ha_sync_snapshot_entries 1500
# HELP govs_ha_sync_snapshot_table_entries The active node's connection table occupancy when the walk of the snapshot under way (or the last one) began: what govs_ha_sync_snapshot_entries goes up to (0 on a backup).
# TYPE govs_ha_sync_snapshot_table_entries gauge
govs_ha_sync_snapshot_table_entries 0
# HELP govs_ha_sync_snapshot_start_time_seconds When the connection-sync snapshot under way, or else the last one, began (Unix time; absent before the first).
# TYPE govs_ha_sync_snapshot_start_time_seconds gauge
govs_ha_sync_snapshot_start_time_seconds 1.7000001005e+09
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollectStandalone: without [ha] no govs_ha_* series exist, and the optional per-real
// counters are left out while the snapshot does not have them.
func TestCollectStandalone(t *testing.T) {
	s := snapshot()
	s.HA = nil
	s.VirtualServers[0].RealServers = s.VirtualServers[0].RealServers[:1]
	c := NewCollector(func() Snapshot { return s })
	for _, name := range []string{"govs_ha_state", "govs_ha_forwarding", "govs_ha_transitions_total",
		"govs_ha_sync_snapshot_in_progress", "govs_ha_sync_snapshot_entries",
		"govs_real_server_connections_total", "govs_real_server_in_bytes_total"} {
		if n := testutil.CollectAndCount(c, name); n != 0 {
			t.Errorf("%s: %d series, want none", name, n)
		}
	}
	if n := testutil.CollectAndCount(c, "govs_real_server_packets_total"); n != 1 {
		t.Errorf("govs_real_server_packets_total: %d series, want 1", n)
	}
}

// TestCounterMetricNames: every mapped counter follows the conventions (govs_ prefix, _total on
// counters and only on them), and no two counters share a metric.
func TestCounterMetricNames(t *testing.T) {
	seen := map[string]string{}
	for k, m := range CounterMetrics {
		if !strings.HasPrefix(m.Name, "govs_") || !model.LegacyValidation.IsValidMetricName(m.Name) {
			t.Errorf("%s: metric name %q", k, m.Name)
		}
		if strings.HasSuffix(m.Name, "_total") == m.Gauge {
			t.Errorf("%s: %q: counters end in _total, gauges do not", k, m.Name)
		}
		if other, dup := seen[m.Name]; dup {
			t.Errorf("%s and %s are both %s", k, other, m.Name)
		}
		seen[m.Name] = k
	}
}

// TestServer scrapes a Server over HTTP and parses the exposition, as Prometheus does.
func TestServer(t *testing.T) {
	if _, err := Listen("127.0.0.1:-1", nil, nil); err == nil {
		t.Fatal("Listen accepted port -1")
	}
	reg := NewRegistry(NewCollector(func() Snapshot { return snapshot() }))
	s, err := Listen("127.0.0.1:0", reg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Listen(s.Addr().String(), reg, nil); err == nil {
		t.Error("a second Listen on the same address succeeded")
	}
	resp, err := http.Get("http://" + s.Addr().String() + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", Path, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	if f := fams["govs_rx_frames_total"]; f == nil || f.Metric[0].GetCounter().GetValue() != 100 {
		t.Errorf("govs_rx_frames_total: %v", f)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("no %s: the standard collectors are missing", name)
		}
	}
	r404, err := http.Get("http://" + s.Addr().String() + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r404.Body)
	r404.Body.Close()
	if r404.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: %s", r404.Status)
	}
}

// TestREADMEListsEveryMetric: README.md's Metrics section names every metric govs exports.
func TestREADMEListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	ch := make(chan *prometheus.Desc, 100)
	NewCollector(nil).Describe(ch)
	close(ch)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range ch {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		n++
		if !strings.Contains(section, "`"+m[1]+"`") {
			t.Errorf("README.md's Metrics section does not list %s", m[1])
		}
	}
	if n < 40 {
		t.Errorf("only %d metrics described", n)
	}
}
