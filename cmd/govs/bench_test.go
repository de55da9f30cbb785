package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// captureStdout runs f with os.Stdout sent to a file and returns what f wrote.
func captureStdout(t *testing.T, f func() int) (string, int) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	old := os.Stdout
	os.Stdout = out
	code := f()
	os.Stdout = old
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b), code
}

// TestBenchReplayInterfaces runs `govs bench gen` and `govs bench replay -loops 2 -chart` against
// configs `govs run` accepts with one interface (one-armed DR and NAT) and with three. With one
// interface clients and real servers share the port, so the replay must tell a reply by its flow,
// not by the port it arrives on, or it fakes client frames as replies of no real server (index
// out of range [65535]).
func TestBenchReplayInterfaces(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "gen.pcap")
	if _, code := captureStdout(t, func() int {
		return cmdBench([]string{"gen", "-o", pcap, "-flows", "500", "-packets-per-flow", "8", "-ipv6-share", "0.3"})
	}); code != 0 {
		t.Fatalf("bench gen exited %d", code)
	}
	vs := func(method string) string {
		return strings.ReplaceAll(`
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "M"
real_server = [{address = "198.18.0.11:80"}, {address = "198.18.0.12:80"}]

[[virtual_server]]
address = "198.18.0.100:53"
protocol = "udp"
method = "M"
real_server = [{address = "198.18.0.11:53"}, {address = "198.18.0.12:53"}]

[[virtual_server]]
address = "[2001:2::100]:80"
protocol = "tcp"
method = "M"
real_server = [{address = "[2001:2::11]:80"}, {address = "[2001:2::12]:80"}]

[[virtual_server]]
address = "[2001:2::100]:53"
protocol = "udp"
method = "M"
real_server = [{address = "[2001:2::11]:53"}, {address = "[2001:2::12]:53"}]
`, "M", method)
	}
	for _, tc := range []struct{ name, ifaces, method string }{
		{"one-armed dr", `["eth0"]`, "dr"},
		{"one-armed nat", `["eth0"]`, "nat"},
		{"three interfaces", `["lan0", "mgmt0", "srv0"]`, "nat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "govs.toml")
			if err := os.WriteFile(cfg, []byte("[dataplane]\ninterfaces = "+tc.ifaces+"\n"+vs(tc.method)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, code := captureStdout(t, func() int { return cmdCheckConfig([]string{"-offline", cfg}) }); code != 0 {
				t.Fatalf("check-config -offline rejects the config (exit %d): not one govs run accepts", code)
			}
			chart := filepath.Join(t.TempDir(), "run.svg")
			out, code := captureStdout(t, func() int {
				return cmdBench([]string{"replay", "-config", cfg, "-pcap", pcap, "-loops", "2", "-workers", "2", "-json", "-chart", chart})
			})
			if code != 0 {
				t.Fatalf("bench replay exited %d:\n%s", code, out)
			}
			var rep struct {
				Forwarded, Replied, Skipped uint64
				Dropped                     uint64 `json:"dropped_total"`
				Sticky                      uint64 `json:"sticky_violations"`
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("the report is not JSON: %v\n%s", err, out)
			}
			if rep.Forwarded == 0 || rep.Dropped != 0 || rep.Sticky != 0 {
				t.Errorf("forwarded %d, dropped %d, sticky %d: want traffic, no drops, no violations", rep.Forwarded, rep.Dropped, rep.Sticky)
			}
			if tc.method == "nat" && rep.Replied == 0 {
				t.Errorf("NAT replies: none went back through govs")
			}
			if svg, err := os.ReadFile(chart); err != nil || !strings.Contains(string(svg), "1000 flows scheduled (500 in the capture)") {
				t.Errorf("chart (%v): no title counting 1000 flows scheduled over 2 loops", err)
			}
		})
	}
}
