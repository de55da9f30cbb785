package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govs/govs/config"
)

// writeConfig writes a config file for a test and loads it as `govs run` would.
func writeConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "govs.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return loadConfig(t, path)
}

// services returns virtual servers for the generator's default VIPs (198.18.0.100 and
// 2001:2::100; TCP 80, UDP 53 and IPv6 UDP on all ports) with the given method.
func services(method string) string {
	return strings.ReplaceAll(`
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
scheduler = "rr"
method = "METHOD"
real_server = [{address = "198.18.0.11:80"}, {address = "198.18.0.12:80"}, {address = "198.18.0.13:80"}]

[[virtual_server]]
address = "198.18.0.100:53"
protocol = "udp"
scheduler = "wrr"
method = "METHOD"
real_server = [{address = "198.18.0.11:53", weight = 3}, {address = "198.18.0.12:53", weight = 1}]

[[virtual_server]]
address = "[2001:2::100]:80"
protocol = "tcp"
scheduler = "rr"
method = "METHOD"
real_server = [{address = "[2001:2::11]:80"}, {address = "[2001:2::12]:80"}]

[[virtual_server]]
address = "[2001:2::100]:0"
protocol = "udp"
scheduler = "rr"
method = "METHOD"
real_server = [{address = "[2001:2::11]:0"}, {address = "[2001:2::12]:0"}]
`, "METHOD", method)
}

// TestReplayInterfaces replays generated traffic against configs with one interface (one-armed:
// clients and real servers on the same link, the usual direct-routing set-up, and NAT), and with
// three, for each method. The harness tells a reply by its flow, not by the port it arrives on: with one interface
// that port is the clients' too, and client frames taken for replies of no real server index out
// of range (65535).
func TestReplayInterfaces(t *testing.T) {
	tests := []struct {
		name, config string
		nat          bool // replies go through govs
	}{
		{"one-armed dr", "[dataplane]\ninterfaces = [\"eth0\"]\n" + services("dr"), false},
		{"one-armed nat", "[dataplane]\ninterfaces = [\"eth0\"]\n" + services("nat"), true},
		{"three interfaces nat", "[dataplane]\ninterfaces = [\"lan0\", \"mgmt0\", \"srv0\"]\n" + services("nat"), true},
		{"three interfaces dr", "[dataplane]\ninterfaces = [\"lan0\", \"mgmt0\", \"srv0\"]\n" + services("dr"), false},
		// tun answers clients directly too: only the client packets go through govs, encapsulated.
		{"one-armed tun", "[dataplane]\ninterfaces = [\"eth0\"]\n" + services("tun"), false},
		{"three interfaces tun gue", "[dataplane]\ninterfaces = [\"lan0\", \"mgmt0\", \"srv0\"]\n" +
			strings.ReplaceAll(services("tun"), "method = \"tun\"\n", "method = \"tun\"\ntunnel = \"gue\"\ntunnel_port = 6080\n"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, tt.config)
			for _, workers := range []int{1, 2} {
				c, st := genCapture(t, GenConfig{Flows: 1500, PacketsPerFlow: 8, TCPShare: 0.7, IPv6Share: 0.4, Seed: 11})
				var out bytes.Buffer
				rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: workers, Loops: 2, Out: &out})
				if err != nil {
					t.Fatal(err)
				}
				accounted(t, rep)
				if rep.DroppedTotal != 0 || rep.StickyViolations != 0 {
					t.Errorf("%d workers: dropped %v, sticky %d; want none", workers, rep.Dropped, rep.StickyViolations)
				}
				if want := 2 * uint64(st.ClientPackets); rep.Forwarded != want {
					t.Errorf("%d workers: forwarded %d, want every client packet: %d", workers, rep.Forwarded, want)
				}
				// NAT: every server packet comes back through govs, rewritten from the real server
				// the flow went to; DR: none does.
				replied, skipped := uint64(0), 2*uint64(st.ServerPackets)
				if tt.nat {
					replied, skipped = skipped, 0
				}
				if rep.Replied != replied || rep.Skipped != skipped {
					t.Errorf("%d workers: replied %d skipped %d, want %d and %d", workers, rep.Replied, rep.Skipped, replied, skipped)
				}
				var flows uint64
				for _, r := range rep.Reals {
					flows += r.Flows
				}
				if want := 2 * uint64(st.Flows); flows != want {
					t.Errorf("%d workers: %d flows scheduled, want %d", workers, flows, want)
				}
				sent, err := ReadCapture(&out)
				if err != nil {
					t.Fatal(err)
				}
				if sent.Len() != int(rep.Forwarded+rep.Replied) {
					t.Errorf("%d workers: -out holds %d frames, want %d", workers, sent.Len(), rep.Forwarded+rep.Replied)
				}
			}
		})
	}
}
