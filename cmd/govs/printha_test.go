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
		Peers:          []control.HAPeer{{Address: "198.19.0.1:8405", State: "active", Priority: 200, Alive: true, LastHeardMS: 12}, {Address: "198.19.0.3:8405", State: "unknown", LastHeardMS: -1}},
		HeartbeatsSent: 40, HeartbeatsReceived: 20, HeartbeatDropsTotal: 3,
		HeartbeatsDropped: map[string]uint64{"bad_mac": 3, "skew": 0}, Transitions: 1,
	}, now)
	want := `ha: standalone
ha: backup since 2026-12-07T11:59:59Z (1.5s ago)  forwarding=false  listen=198.19.0.2:8405  priority=100 (advertised 100)
  peer 198.19.0.1:8405: active priority=200 alive=true, heard 12ms ago
  peer 198.19.0.3:8405: unknown priority=0 alive=false, never heard
  heartbeats: sent=40 received=20 send_errors=0 dropped=3 bad_mac=3  transitions=1
`
	if b.String() != want {
		t.Errorf("printHA:\n%s\nwant:\n%s", b.String(), want)
	}
}
