package bench

import (
	"testing"

	"github.com/govs/govs/config"
)

// TestBuildTables: the replay's tables are the daemon's compile of the same file (settings such
// as expire_nodest_conn included), with every real server resolved to its own synthetic MAC on
// the last interface (port 0 with one interface).
func TestBuildTables(t *testing.T) {
	for _, tc := range []struct {
		ifaces string
		port   int
	}{{`["lan0"]`, 0}, {`["lan0", "mid0", "srv0"]`, 2}} {
		cfg, err := config.Parse([]byte(`
[dataplane]
interfaces = `+tc.ifaces+`
[conntrack]
expire_nodest_conn = true
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "nat"
real_server = [{ address = "198.19.0.11:8080" }, { address = "198.19.0.12:8080", weight = 2, upper_threshold = 10 }]
[[virtual_server]]
address = "198.18.0.100:53"
protocol = "udp"
method = "dr"
one_packet = true
real_server = [{ address = "198.19.0.11:53" }]
`), "t.toml", config.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tb, err := buildTables(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if tb.Gen != 1 || !tb.ExpireNodestConn || len(tb.Services) != 2 || !tb.Services[1].OnePacket {
			t.Errorf("interfaces %s: tables = gen %d, expire_nodest_conn %v, %d services; want gen 1, true, 2 (one_packet)",
				tc.ifaces, tb.Gen, tb.ExpireNodestConn, len(tb.Services))
		}
		for _, r := range tb.Reals {
			if !r.Resolved || r.Port != tc.port || r.MAC != realMAC(r.ID) {
				t.Errorf("interfaces %s: real server %d (%s) = resolved %v, port %d, MAC %x; want resolved, port %d, %x",
					tc.ifaces, r.ID, r.Addr, r.Resolved, r.Port, r.MAC, tc.port, realMAC(r.ID))
			}
		}
		if r := tb.Reals[1]; r.Weight != 2 || r.UpperThreshold != 10 {
			t.Errorf("real server 1 = weight %d, upper threshold %d; want 2, 10", r.Weight, r.UpperThreshold)
		}
	}
}
