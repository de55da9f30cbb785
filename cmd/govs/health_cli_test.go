package main

import (
	"strings"
	"testing"
)

// healthStatusJSON is a govs with health checks: one real server up, one down with its last
// error, one never checked, and the sorry server on standby; a quorum the virtual server is below.
const healthStatusJSON = `{
  "ready": true, "version": "test", "config": "/etc/govs/govs.toml", "generation": 3, "workers": 1,
  "virtual_servers": [
    {"address": "198.18.0.100:80", "protocol": "tcp", "scheduler": "rr", "method": "nat", "quorum": 2, "below_quorum": true,
     "real_servers": [
       {"address": "198.19.0.11:80", "weight": 1, "resolved": true, "health": "up", "health_error": ""},
       {"address": "198.19.0.12:80", "weight": 1, "resolved": true, "health": "down",
        "health_error": "connect: connection refused"},
       {"address": "198.19.0.13:80", "weight": 1, "resolved": true, "health": "unchecked"},
       {"address": "198.19.0.99:80", "weight": 1, "resolved": true, "health": "unchecked", "sorry_server": true, "standby": true}
     ]}
  ]
}
`

// TestListAndStatsHealth: govs list prints each real server's health (and the sorry server as
// such), govs stats also its last check error, and both the virtual server's quorum.
func TestListAndStatsHealth(t *testing.T) {
	sock := fakeGovs(t, healthStatusJSON)
	stdout, stderr, code := runCLI(t, cmdList, "-control", sock)
	if code != 0 {
		t.Fatalf("govs list: exit code %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"TCP 198.18.0.100:80 rr quorum=2 (below)",
		"-> 198.19.0.11:80 Masq 1 0 0 0 true up",
		"-> 198.19.0.12:80 Masq 1 0 0 0 true down",
		"-> 198.19.0.13:80 Masq 1 0 0 0 true unchecked",
		"-> 198.19.0.99:80 Masq 1 0 0 0 true sorry,standby",
	} {
		if !hasFields(stdout, want) {
			t.Errorf("govs list lacks the line %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stdout, "Health") {
		t.Errorf("govs list has no Health column:\n%s", stdout)
	}

	stdout, stderr, code = runCLI(t, cmdStats, "-control", sock)
	if code != 0 {
		t.Fatalf("govs stats: exit code %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"TCP 198.18.0.100:80 rr Masq quorum=2 (below)",
		"-> 198.19.0.11:80 1 0 0 0 true false up",
		"-> 198.19.0.12:80 1 0 0 0 true false down connect: connection refused",
		"-> 198.19.0.99:80 1 0 0 0 true false sorry,standby",
	} {
		if !hasFields(stdout, want) {
			t.Errorf("govs stats lacks the line %q:\n%s", want, stdout)
		}
	}
}
