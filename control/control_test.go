package control

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStatusJSONContract: the field names of last_reload and of the listing are what scripts read.
func TestStatusJSONContract(t *testing.T) {
	b, _ := json.Marshal(Status{})
	if !strings.Contains(string(b), `"last_reload":null`) {
		t.Errorf("a status before any reload: %s; want \"last_reload\":null", b)
	}
	st := Status{LastReload: &Reload{Time: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), Error: "f.toml:3: x: bad"}}
	b, _ = json.Marshal(st)
	if want := `"last_reload":{"time":"2024-05-06T07:08:09Z","applied":false,"error":"f.toml:3: x: bad"}`; !strings.Contains(string(b), want) {
		t.Errorf("a status after a rejected reload: %s; want %s", b, want)
	}

	b, _ = json.Marshal(st.List())
	if want := `{"version":"","virtual_servers":[]}`; string(b) != want {
		t.Errorf("the listing of a govs without virtual servers: %s, want %s", b, want)
	}
	st = Status{Version: "v1", Counters: map[string]uint64{"rx_frames": 1}, VirtualServers: []VirtualServer{{
		Address: "198.18.0.100:80", Protocol: "tcp", Scheduler: "rr", Method: "nat",
		RealServers: []RealServer{{Address: "198.19.0.11:80", Weight: 1, Health: "down", HealthError: "connect: connection refused"},
			{Address: "198.19.0.99:80", Weight: 1, Health: "unchecked", Sorry: true, Standby: true}},
		Quorum: 1, BelowQuorum: true,
	}}}
	b, _ = json.Marshal(st.List())
	want := `{"version":"v1","virtual_servers":[{"address":"198.18.0.100:80","protocol":"tcp","scheduler":"rr","method":"nat",` +
		`"real_servers":[{"address":"198.19.0.11:80","weight":1,"resolved":false,"connections":0,"active_connections":0,"inactive_connections":0,"packets":0,"overloaded":false,` +
		`"health":"down","health_error":"connect: connection refused","sorry_server":false,"standby":false,` +
		`"disabled":false,"stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"rate":{"cps":0,"inpps":0,"outpps":0,"inbps":0,"outbps":0}},` +
		`{"address":"198.19.0.99:80","weight":1,"resolved":false,"connections":0,"active_connections":0,"inactive_connections":0,"packets":0,"overloaded":false,` +
		`"health":"unchecked","health_error":"","sorry_server":true,"standby":true,` +
		`"disabled":false,"stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"rate":{"cps":0,"inpps":0,"outpps":0,"inbps":0,"outbps":0}}],` +
		`"quorum":1,"below_quorum":true,"persistence_timeout":0,"persistence_netmask":0,"stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"rate":{"cps":0,"inpps":0,"outpps":0,"inbps":0,"outbps":0}}]}`
	if string(b) != want {
		t.Errorf("listing:\n got %s\nwant %s", b, want)
	}
}
