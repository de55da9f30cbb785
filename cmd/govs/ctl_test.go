package main

import (
	"strings"
	"testing"
	"time"
)

// TestCtlUsage: mistakes in the command line are one line each, with exit code 2, before any
// contact with govs.
func TestCtlUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "name an operation: weight, drain, enable, disable, zero or reload"},
		{[]string{"restart"}, `unknown operation "restart"`},
		{[]string{"weight", "tcp/198.18.0.100:80", "198.19.0.11:80"}, "weight takes SERVICE REAL N"},
		{[]string{"weight", "tcp/198.18.0.100:80", "198.19.0.11:80", "heavy"}, `weight "heavy" is not an integer`},
		{[]string{"drain", "tcp/198.18.0.100:80"}, "drain takes SERVICE REAL"},
		{[]string{"reload", "now"}, "reload takes no arguments"},
		{[]string{"zero", "-timeout", "1s"}, "-timeout is for drain"},
	} {
		stdout, stderr, code := runCLI(t, cmdCtl, append([]string{"-control", "/nonexistent/govs.sock"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
			t.Errorf("govs ctl %v: exit %d, stderr %q; want 2 and one line with %q", tc.args, code, stderr, tc.want)
		}
	}
	// Flags after the operation work too; an unreachable govs is exit 1.
	_, stderr, code := runCLI(t, cmdCtl, "zero", "-control", "/nonexistent/govs.sock")
	if code != 1 || !strings.Contains(stderr, "failed to reach govs at /nonexistent/govs.sock") {
		t.Errorf("govs ctl zero -control (unreachable): exit %d, stderr %q", code, stderr)
	}
}

// TestListFlags: the filters need -conns, and one view at a time.
func TestListFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-stats", "-rate"}, "choose one of -stats, -rate and -conns"},
		{[]string{"-client", "198.18.0.10"}, "-service, -real and -client filter the connections; add -conns"},
	} {
		_, stderr, code := runCLI(t, cmdList, append([]string{"-control", "/nonexistent/govs.sock"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("govs list %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestListStatsText: `govs list -stats` and `-rate` print ipvsadm's columns, names left and
// numbers right-aligned.
func TestListStatsText(t *testing.T) {
	sock := fakeGovs(t, `{"version": "test", "virtual_servers": [{"address": "198.18.0.100:80", "protocol": "tcp",
	  "stats": {"conns": 12, "inpkts": 340, "outpkts": 280, "inbytes": 20000, "outbytes": 1048576},
	  "rate": {"cps": 2, "inpps": 30.4, "outpps": 20, "inbps": 1500, "outbps": 90000},
	  "real_servers": [{"address": "198.19.0.11:80", "stats": {"conns": 7}, "rate": {"cps": 1.6}}]}]}`)
	stdout, _, code := runCLI(t, cmdList, "-control", sock, "-stats")
	want := "IP Virtual Server govs test\n" +
		"Prot LocalAddress:Port  Conns InPkts OutPkts InBytes OutBytes\n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  198.18.0.100:80       12    340     280   20000  1048576\n" +
		"  -> 198.19.0.11:80         7      0       0       0        0\n"
	if code != 0 || stdout != want {
		t.Errorf("govs list -stats: exit %d\n%s\nwant\n%s", code, stdout, want)
	}
	stdout, _, code = runCLI(t, cmdList, "-control", sock, "-rate")
	if code != 0 || !strings.Contains(stdout, "Prot LocalAddress:Port  CPS InPPS OutPPS InBPS OutBPS\n") ||
		!strings.Contains(stdout, "TCP  198.18.0.100:80      2    30     20  1500  90000\n") ||
		!strings.Contains(stdout, "  -> 198.19.0.11:80       2     0      0     0      0\n") {
		t.Errorf("govs list -rate: exit %d\n%s", code, stdout)
	}
}

// TestDrainWaitDone: drain's wait ends, saying so, once the real server has no connections.
func TestDrainWaitDone(t *testing.T) {
	defer func(d time.Duration) { ctlPoll = d }(ctlPoll)
	ctlPoll = 10 * time.Millisecond
	sock := fakeGovs(t, `{"version": "test", "virtual_servers": [{"address": "198.18.0.100:80", "protocol": "tcp",
	  "real_servers": [{"address": "198.19.0.11:80", "weight": 0, "active_connections": 0, "inactive_connections": 0}]}]}`)
	var out, errw strings.Builder
	service, real := "tcp/198.18.0.100:80", "198.19.0.11:80"
	if code := drainWait(&out, &errw, sock, service, real, time.Second); code != 0 || !strings.HasPrefix(out.String(), "drained: "+service+" "+real+" has no connections left") {
		t.Errorf("drainWait: %d\n%s\n%s", code, out.String(), errw.String())
	}
	out.Reset()
	if code := drainWait(&out, &errw, sock, service, "198.19.0.12:80", time.Second); code != 1 || !strings.Contains(errw.String(), "is no longer listed") {
		t.Errorf("drainWait of a real server not listed: %d\n%s", code, errw.String())
	}
}
