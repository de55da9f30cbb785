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
