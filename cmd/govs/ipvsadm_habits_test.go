package main

import (
	"strings"
	"testing"
)

// fullnatStatusJSON is a govs with one fullnat virtual server and its two local addresses.
const fullnatStatusJSON = `{"ready": true, "version": "test", "virtual_servers": [
  {"address": "198.18.0.100:80", "protocol": "tcp", "scheduler": "rr", "method": "fullnat",
   "local_addresses": ["198.19.0.2", "198.19.0.3"],
   "real_servers": [{"address": "198.19.0.11:8080", "weight": 1, "resolved": true, "health": "unchecked"}]}]}
`

// TestListIpvsadmFlags: an ipvsadm operator's -n (always numeric here: accepted and ignored) and
// -c (connections) work, and govs list -h names them.
func TestListIpvsadmFlags(t *testing.T) {
	sock := fakeGovs(t, fullnatStatusJSON)
	plain, _, _ := runCLI(t, cmdList, "-control", sock)
	stdout, stderr, code := runCLI(t, cmdList, "-n", "-control", sock)
	if code != 0 || stdout != plain {
		t.Errorf("govs list -n: exit %d, stdout:\n%s\nstderr:\n%s\nwant what govs list prints:\n%s", code, stdout, stderr, plain)
	}

	conns := fakeGovs(t, `{"matched": 1, "conns": [{"protocol": "tcp", "state": "ESTABLISHED", "expire_seconds": 899,
	  "client": "198.18.0.10:41000", "virtual": "198.18.0.100:80", "real": "198.19.0.11:80", "service": "tcp/198.18.0.100:80"}]}`)
	want, _, _ := runCLI(t, cmdList, "-conns", "-control", conns)
	if !strings.Contains(want, "198.18.0.10:41000") {
		t.Fatalf("govs list -conns does not list the connection:\n%s", want)
	}
	for _, args := range [][]string{{"-c"}, {"-n", "-c"}, {"-c", "-n"}} {
		stdout, stderr, code := runCLI(t, cmdList, append(args, "-control", conns)...)
		if code != 0 || stdout != want {
			t.Errorf("govs list %v: exit %d, stdout:\n%s\nstderr:\n%s\nwant what govs list -conns prints:\n%s", args, code, stdout, stderr, want)
		}
	}
	if _, stderr, code := runCLI(t, cmdList, "-c", "-stats", "-control", conns); code != 2 || !strings.Contains(stderr, "choose one of") {
		t.Errorf("govs list -c -stats: exit %d, stderr %q; want 2: -c is -conns", code, stderr)
	}

	stdout, stderr, _ = runCLI(t, cmdList, "-h")
	for _, f := range []string{"\n  -n\t", "\n  -c\t"} {
		if !strings.Contains(stdout+stderr, f) {
			t.Errorf("govs list -h does not document %q:\n%s%s", strings.TrimSpace(f), stdout, stderr)
		}
	}
}

// TestListFullNatLocalAddresses: govs list shows a fullnat virtual server's local addresses on a
// line of their own under it, which is not a real-server line, and leaves the columns as they are.
func TestListFullNatLocalAddresses(t *testing.T) {
	sock := fakeGovs(t, fullnatStatusJSON)
	stdout, stderr, code := runCLI(t, cmdList, "-control", sock)
	if code != 0 {
		t.Fatalf("govs list: exit %d, stderr:\n%s", code, stderr)
	}
	want := "IP Virtual Server govs test\n" +
		"Prot LocalAddress:Port  Scheduler\n" +
		"  -> RemoteAddress:Port Forward   Weight ActiveConn InActConn Packets Resolved Health\n" +
		"TCP  198.18.0.100:80    rr\n" +
		"  local addresses: 198.19.0.2 198.19.0.3\n" +
		"  -> 198.19.0.11:8080   FullNat   1      0          0         0       true     unchecked\n"
	if stdout != want {
		t.Errorf("govs list:\n%s\nwant\n%s", stdout, want)
	}

	// A non-fullnat one has no such line.
	stdout, _, _ = runCLI(t, cmdList, "-control", fakeGovs(t, healthStatusJSON))
	if strings.Contains(stdout, "local addresses") {
		t.Errorf("govs list shows local addresses for a nat virtual server:\n%s", stdout)
	}
}

// TestStatsMethodName: govs stats names the method as govs list's Forward column does.
func TestStatsMethodName(t *testing.T) {
	stdout, stderr, code := runCLI(t, cmdStats, "-control", fakeGovs(t, fullnatStatusJSON))
	if code != 0 || !hasFields(stdout, "TCP 198.18.0.100:80 rr FullNat") {
		t.Errorf("govs stats: exit %d, want the line \"TCP  198.18.0.100:80 rr FullNat\" in\n%s%s", code, stdout, stderr)
	}
}

// TestListTunnel: a tun virtual server's encapsulation (and GUE's port) follows its scheduler in
// govs list and govs stats, as its persistence does; -json has it as tunnel and tunnel_port.
func TestListTunnel(t *testing.T) {
	sock := fakeGovs(t, `{"version": "test", "virtual_servers": [
	  {"address": "198.18.0.100:80", "protocol": "tcp", "scheduler": "rr", "method": "tun", "tunnel": "gue", "tunnel_port": 6080,
	   "real_servers": [{"address": "198.19.0.11:80", "weight": 1, "resolved": true, "health": "unchecked"}]},
	  {"address": "198.18.0.101:80", "protocol": "tcp", "scheduler": "rr", "method": "tun", "tunnel": "ipip", "real_servers": []}]}`)
	stdout, _, code := runCLI(t, cmdList, "-control", sock)
	if code != 0 || !strings.Contains(stdout, "TCP  198.18.0.100:80    rr tunnel gue:6080\n") || !strings.Contains(stdout, "TCP  198.18.0.101:80    rr tunnel ipip\n") {
		t.Errorf("govs list: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runCLI(t, cmdStats, "-control", sock)
	if code != 0 || !hasFields(stdout, "TCP 198.18.0.100:80 rr Tunnel tunnel gue:6080") {
		t.Errorf("govs stats: exit %d\n%s", code, stdout)
	}
}
