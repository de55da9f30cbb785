package main

import (
	"os"
	"strings"
	"testing"
)

// TestContribConfig: the example configuration is valid as shipped.
func TestContribConfig(t *testing.T) {
	stdout, stderr, code := runCLI(t, cmdCheckConfig, "-offline", "../../contrib/govs.toml")
	if code != 0 || stderr != "" {
		t.Fatalf("govs check-config -offline contrib/govs.toml: exit %d\n%s", code, stderr)
	}
	if n := strings.Count(stdout, "\n"); n != 3 {
		t.Errorf("%d virtual servers, want the example's 3:\n%s", n, stdout)
	}
}

// TestContribUnit: the systemd unit waits for govs's readiness and reloads it with SIGHUP.
func TestContribUnit(t *testing.T) {
	b, err := os.ReadFile("../../contrib/govs.service")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"Type=notify",
		"ExecStart=/usr/local/bin/govs run -config /etc/govs/govs.toml",
		"ExecReload=/bin/kill -HUP $MAINPID",
	} {
		if !lines[want] {
			t.Errorf("contrib/govs.service has no line %q", want)
		}
	}
}
