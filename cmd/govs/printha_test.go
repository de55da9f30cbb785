package main

import (
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/control"
)

func TestPrintHA(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 1, 0, time.UTC)
	since := now.Add(-1500 * time.Millisecond)
	var b strings.Builder
	printHA(&b, &control.HAStatus{State: "standalone", Forwarding: true}, now)
	printHA(&b, &control.HAStatus{
		State: "backup", Since: &since, Listen: "198.19.0.2:8405", Priority: 100, AdvertisedPriority: 100,
		Peers: []control.HAPeer{{Address: "198.19.0.1:8405", State: "active", Priority: 200, Alive: true, LastHeardMS: 12}, {Address: "198.19.0.3:8405", State: "unknown", LastHeardMS: -1},
			{Address: "198.19.0.4:8405", State: "active", Priority: 150, LastHeardMS: 621082}},
		HeartbeatsSent: 40, HeartbeatsReceived: 20, HeartbeatDropsTotal: 3,
		HeartbeatsDropped: map[string]uint64{"bad_mac": 3, "skew": 0}, Transitions: 1,
		Sync: &control.HASync{ReceivedEntries: 700, Installed: 690, SnapshotsReceived: 1, LagMS: 3,
			Snapshot: control.HASnapshot{Receiving: true, Since: &since, Entries: 700}},
	}, now)
	printHA(&b, &control.HAStatus{State: "active", Since: &since, Listen: "198.19.0.2:8405", Priority: 100, AdvertisedPriority: 100,
		Sync: &control.HASync{LagMS: -1}}, now)
	printSnapshot(&b, &control.HASnapshot{}, now)
	printSnapshot(&b, &control.HASnapshot{Sending: true, Since: &since, Entries: 300, Total: 1000}, now)
	printSnapshot(&b, &control.HASnapshot{Since: &since, Entries: 1002, Total: 1000}, now)
	want := `ha: standalone
ha: backup since 2026-12-07T11:59:59Z (1.5s ago)  forwarding=false  listen=198.19.0.2:8405  priority=100 (advertised 100)
  peer 198.19.0.1:8405: active priority=200 alive=true, heard 12ms ago
  peer 198.19.0.3:8405: unknown priority=0 alive=false, never heard
  peer 198.19.0.4:8405: was active priority=150 alive=false, heard 10m21.1s ago
  heartbeats: sent=40 received=20 send_errors=0 dropped=3 bad_mac=3  transitions=1
  sync: converged=false sent=0 entries, received=700 entries, installed=690 refused=0, dropped export=0 inbox=0 queue=0, gaps=0, snapshots sent=0 received=1, last batch 3ms ago
  snapshot: receiving, since 2026-12-07T11:59:59Z (1.5s ago): 700 entries
ha: active since 2026-12-07T11:59:59Z (1.5s ago)  forwarding=false  listen=198.19.0.2:8405  priority=100 (advertised 100)
  heartbeats: sent=0 received=0 send_errors=0 dropped=0  transitions=0
  sync: converged=false sent=0 entries, received=0 entries, installed=0 refused=0, dropped export=0 inbox=0 queue=0, gaps=0, snapshots sent=0 received=0, no batch received yet
  snapshot: none yet
  snapshot: none yet
  snapshot: sending, since 2026-12-07T11:59:59Z (1.5s ago): 300 of 1000 entries
  snapshot: last one began 2026-12-07T11:59:59Z (1.5s ago): 1002 entries sent of 1000
`
	if b.String() != want {
		t.Errorf("printHA:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestPrintRealServers: the real servers' columns line up under the header, as wide as the header
// and the figures need; a virtual server's line, however long (persistence, quorum), does not
// widen them.
func TestPrintRealServers(t *testing.T) {
	var b strings.Builder
	printRealServers(&b, []control.VirtualServer{
		{Protocol: "tcp", Address: "198.18.0.100:80", Scheduler: "rr", Method: "nat",
			RealServers: []control.RealServer{{Address: "198.19.0.11:80", Weight: 1, Resolved: true, Health: "up"}}},
		{Protocol: "tcp", Address: "198.18.0.101:0", Scheduler: "wlc", Method: "dr", PersistenceTimeout: 300, PersistenceNetmask: 24},
		{Protocol: "udp", Address: "[2001:2::100]:53", Scheduler: "rr", Method: "dr",
			RealServers: []control.RealServer{{Address: "[2001:2::11]:53", Weight: 12, ActiveConnections: 3, Packets: 1234}}},
	})
	lines := strings.Split(strings.TrimPrefix(b.String(), "\n"), "\n")
	header := lines[0]
	col := strings.Index(header, "weight")
	if col != len("virtual server / real server")+2 {
		t.Errorf("the weight column starts at %d, want right after the first header cell:\n%s", col, b.String())
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "  -> ") && (len(l) <= col || l[col-1] != ' ' || l[col] == ' ') {
			t.Errorf("real server line %q does not have its weight at column %d:\n%s", l, col, b.String())
		}
	}
	if !strings.Contains(b.String(), "\nTCP  198.18.0.101:0 wlc Route persistent 300 mask 255.255.255.0\nUDP  [2001:2::100]:53 rr Route\n") {
		t.Errorf("virtual server lines:\n%s", b.String())
	}
}
