package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/govs/govs/health"
)

// wired sets healthWired for one test, as the daemon's wiring will set it for good.
func wired(t *testing.T, on bool) {
	t.Helper()
	old := healthWired
	healthWired = on
	t.Cleanup(func() { healthWired = old })
}

// errorLines parses src and returns its errors one line each, or fails if it parses.
func errorLines(t *testing.T, src string) []string {
	t.Helper()
	_, err := Parse([]byte(src), "t.toml", LoadOptions{})
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", src)
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error %T %v, want Errors", err, err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

// healthFile has a service checked by http, with three real servers: one inheriting the check,
// one overriding a few keys, one checked by tcp on another port (lines noted for messages).
const healthFile = dp + vsHead + // lines 1-7
	`sorry_server = "198.19.0.99:80"
quorum = 2
[virtual_server.health_check]
kind = "http"
interval = "500ms"
rise = 1
path = "/healthz"
host = "www.example.com"
expect_status = [200, 204]
expect_body = "ok"
notify = ["/usr/local/bin/notify", "--vs"]
on_failure = "quiesce"
slow_start = "30s"
[[virtual_server.real_server]]
address = "198.19.0.11:80"
[[virtual_server.real_server]]
address = "198.19.0.12:80"
[virtual_server.real_server.health_check]
kind = "https"
interval = "5s"
tls_verify = true
sni = "api.example.com"
[[virtual_server.real_server]]
address = "198.19.0.13:80"
health_check = { kind = "tcp", port = 8080, timeout = "100ms", fall = 1 }
`

func TestParseHealthCheck(t *testing.T) {
	wired(t, true)
	c, err := Parse([]byte(healthFile), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	vs := c.VirtualServers[0]
	if vs.SorryServer != netip.MustParseAddrPort("198.19.0.99:80") || vs.Quorum != 2 {
		t.Errorf("sorry_server %v quorum %d, want 198.19.0.99:80 and 2", vs.SorryServer, vs.Quorum)
	}
	service := HealthCheck{
		Check: health.Spec{
			Kind: health.KindHTTP, Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond, // timeout: at most interval
			Rise: 1, Fall: health.DefaultFall, Path: "/healthz", Host: "www.example.com",
			ExpectStatus: []int{200, 204}, ExpectBody: "ok", Notify: []string{"/usr/local/bin/notify", "--vs"},
		},
		OnFailure: OnFailureQuiesce, SlowStart: 30 * time.Second,
	}
	https := service
	https.Check.Kind, https.Check.Interval, https.Check.Timeout = health.KindHTTPS, 5*time.Second, health.DefaultTimeout
	https.Check.TLSVerify, https.Check.SNI = true, "api.example.com"
	tcp := service
	tcp.Check = health.Spec{ // what only http uses is not inherited
		Kind: health.KindTCP, Interval: 500 * time.Millisecond, Timeout: 100 * time.Millisecond,
		Rise: 1, Fall: 1, Port: 8080, Notify: []string{"/usr/local/bin/notify", "--vs"},
	}
	want := []*HealthCheck{&service, &https, &tcp}
	got := []*HealthCheck{vs.RealServers[0].HealthCheck, vs.RealServers[1].HealthCheck, vs.RealServers[2].HealthCheck}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("real servers' health checks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&service, vs.HealthCheck); diff != "" {
		t.Errorf("virtual server's health check (-want +got):\n%s", diff)
	}
	specs := c.HealthSpecs()
	if len(specs) != 3 {
		t.Fatalf("HealthSpecs has %d targets, want the 3 real servers", len(specs))
	}
	for i, rs := range vs.RealServers {
		spec, ok := specs[health.Target{Service: "tcp/198.18.0.100:80", Server: rs.Address}]
		if !ok || !spec.Equal(&want[i].Check) {
			t.Errorf("HealthSpecs[%s] = %+v, want %+v", rs.Address, spec, want[i].Check)
		}
	}
	// Whatever config accepts, health runs.
	for _, rs := range vs.RealServers {
		if _, err := health.NewChecker(rs.HealthCheck.Check, health.Target{Service: vs.Key(), Server: rs.Address}, nil); err != nil {
			t.Errorf("health.NewChecker rejects %s's check: %v", rs.Address, err)
		}
	}
}

func TestParseHealthCheckDefaults(t *testing.T) {
	wired(t, true)
	for _, tc := range []struct {
		table string
		want  health.Spec
	}{
		{`kind = "tcp"`, health.Spec{Kind: health.KindTCP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3}},
		{`kind = "http"`, health.Spec{Kind: health.KindHTTP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Path: "/"}},
		{`kind = "dns"` + "\nquery = \"example.com\"", health.Spec{Kind: health.KindDNS, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Query: "example.com.", QueryType: "A"}},
		{`kind = "send_expect"` + "\nexpect = '^220 '", health.Spec{Kind: health.KindSendExpect, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Expect: "^220 "}},
		{`kind = "udp"` + "\nsend = \"ping\"\ninterval = \"200ms\"", health.Spec{Kind: health.KindUDP, Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 3, Send: "ping"}},
		{`kind = "exec"` + "\ncommand = [\"/bin/true\"]", health.Spec{Kind: health.KindExec, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Command: []string{"/bin/true"}}},
	} {
		c, err := Parse([]byte(dp+vsHead+rs+"[virtual_server.health_check]\n"+tc.table+"\n"), "t.toml", LoadOptions{})
		if err != nil {
			t.Errorf("%s: %v", tc.table, err)
			continue
		}
		want := &HealthCheck{Check: tc.want, OnFailure: OnFailureRemove}
		if diff := cmp.Diff(want, c.VirtualServers[0].RealServers[0].HealthCheck); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.table, diff)
		}
	}

	// kind = "none", or no table: not checked at all.
	for _, src := range []string{dp + vsHead + rs, dp + vsHead + rs + "[virtual_server.health_check]\nkind = \"none\"\n"} {
		c, err := Parse([]byte(src), "t.toml", LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if vs := c.VirtualServers[0]; vs.HealthCheck != nil || vs.RealServers[0].HealthCheck != nil {
			t.Errorf("kind none: health checks %+v, %+v, want nil", vs.HealthCheck, vs.RealServers[0].HealthCheck)
		}
	}
}

// TestDropInheritedCoversEveryKey fails when a kind-specific key is added without dropInherited
// learning to clear it.
func TestDropInheritedCoversEveryKey(t *testing.T) {
	s := health.Spec{Kind: health.KindTCP, Path: "/x", Host: "h", ExpectStatus: []int{200}, ExpectBody: "b",
		TLSVerify: true, SNI: "s", Send: "x", Expect: "y", Query: "q.", QueryType: "A", Command: []string{"/c"}}
	dropInherited(&s)
	if want := (health.Spec{Kind: health.KindTCP}); !s.Equal(&want) {
		t.Errorf("dropInherited left %+v", s)
	}
	if len(healthKeyKinds) != 11 {
		t.Errorf("healthKeyKinds has %d keys; teach dropInherited and this test the new ones", len(healthKeyKinds))
	}
}

func TestParseHealthCheckErrors(t *testing.T) {
	wired(t, true)
	hc := dp + vsHead + rs + "[virtual_server.health_check]\n" // the table's keys start at line 11
	rs2 := "[[virtual_server.real_server]]\naddress = \"198.19.0.12:80\"\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// Each key's value.
		{"unknown kind", hc + `kind = "HTTP"`,
			[]string{`t.toml:11: virtual_server[1].health_check.kind: unknown kind "HTTP"; write one of tcp, http, https, send_expect, udp, dns, exec, or none (names are lower case: "http")`}},
		{"kind not a string", hc + `kind = 1`,
			[]string{`t.toml:11: virtual_server[1].health_check.kind: is an integer; write one of tcp, http, https, send_expect, udp, dns, exec, or none, e.g. kind = "tcp"`}},
		{"interval too short", hc + "kind = \"tcp\"\ninterval = \"10ms\"",
			[]string{`t.toml:12: virtual_server[1].health_check.interval: "10ms" is out of range; write a duration from 100ms to 24h0m0s, e.g. "2s"`}},
		{"interval not a duration", hc + "kind = \"tcp\"\ninterval = 2",
			[]string{`t.toml:12: virtual_server[1].health_check.interval: is an integer; write a quoted Go duration, e.g. "2s"`}},
		{"timeout longer than interval", hc + "kind = \"tcp\"\ninterval = \"1s\"\ntimeout = \"2s\"",
			[]string{`t.toml:13: virtual_server[1].health_check.timeout: timeout 2s is longer than interval 1s: a check must end before the next starts; shorten timeout or lengthen interval`}},
		{"rise zero", hc + "kind = \"tcp\"\nrise = 0",
			[]string{`t.toml:12: virtual_server[1].health_check.rise: 0 is out of range; write an integer from 1 to 1000, the consecutive successes that bring a server back`}},
		{"fall a string", hc + "kind = \"tcp\"\nfall = \"3\"",
			[]string{`t.toml:12: virtual_server[1].health_check.fall: is a string; write an integer from 1 to 1000, the consecutive failures that take a server out, e.g. 3`}},
		{"port out of range", hc + "kind = \"tcp\"\nport = 70000",
			[]string{`t.toml:12: virtual_server[1].health_check.port: 70000 is out of range; write an integer from 1 to 65535, the port to check (omit it for the real server's port)`}},
		{"path without slash", hc + "kind = \"http\"\npath = \"healthz\"",
			[]string{`t.toml:12: virtual_server[1].health_check.path: "healthz" is not a request path; write one starting with / and without spaces, e.g. path = "/healthz"`}},
		{"host with a path", hc + "kind = \"http\"\nhost = \"example.com/x\"",
			[]string{`t.toml:12: virtual_server[1].health_check.host: "example.com/x" is not a host name; write the name the server answers to, e.g. host = "www.example.com"`}},
		{"expect_status out of range", hc + "kind = \"http\"\nexpect_status = [200, 700]",
			[]string{`t.toml:12: virtual_server[1].health_check.expect_status[2]: 700 is not an HTTP status code; write one from 100 to 599`}},
		{"expect_status duplicate", hc + "kind = \"http\"\nexpect_status = [200, 200]",
			[]string{`t.toml:12: virtual_server[1].health_check.expect_status[2]: 200 is already listed; remove the duplicate`}},
		{"expect_status empty", hc + "kind = \"http\"\nexpect_status = []",
			[]string{`t.toml:12: virtual_server[1].health_check.expect_status: is empty; list the status codes that mean up, e.g. expect_status = [200, 204], or remove it (any 2xx)`}},
		{"expect_body bad regexp", hc + "kind = \"http\"\nexpect_body = \"(ok\"",
			[]string{`t.toml:12: virtual_server[1].health_check.expect_body: "(ok" is not a regular expression (RE2 syntax): missing closing ): ` + "`(ok`"}},
		{"tls_verify quoted", hc + "kind = \"https\"\ntls_verify = \"yes\"",
			[]string{`t.toml:12: virtual_server[1].health_check.tls_verify: is a string; write tls_verify = true or false (unquoted)`}},
		{"sni with a port", hc + "kind = \"https\"\nsni = \"example.com:443\"",
			[]string{`t.toml:12: virtual_server[1].health_check.sni: "example.com:443" is not a server name; write a host name, e.g. sni = "www.example.com"`}},
		{"send empty", hc + "kind = \"udp\"\nsend = \"\"",
			[]string{`t.toml:12: virtual_server[1].health_check.send: is empty; write a value, e.g. send = "PING\r\n", or remove it`}},
		{"query with an empty label", hc + "kind = \"dns\"\nquery = \"a..example.\"",
			[]string{`t.toml:12: virtual_server[1].health_check.query: is not a DNS name: "a..example." has an empty label (two dots in a row); write one such as query = "example.com."`}},
		{"query_type lower case", hc + "kind = \"dns\"\nquery = \"example.com.\"\nquery_type = \"aaaa\"",
			[]string{`t.toml:13: virtual_server[1].health_check.query_type: "aaaa" is not a query type govs asks for; write one of A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT (types are upper case: "AAAA")`}},
		{"command relative", hc + "kind = \"exec\"\ncommand = [\"check.sh\"]",
			[]string{`t.toml:12: virtual_server[1].health_check.command[1]: "check.sh" is not an absolute path; write the program's full path (no PATH search), e.g. command = ["/usr/local/bin/check", "--quick"]`}},
		{"command a string", hc + "kind = \"exec\"\ncommand = \"/bin/check --x\"",
			[]string{`t.toml:12: virtual_server[1].health_check.command: is a string; write the program and its arguments as a list of strings, e.g. command = ["/usr/local/bin/check", "--quick"]`}},
		{"notify empty", hc + "kind = \"tcp\"\nnotify = []",
			[]string{`t.toml:12: virtual_server[1].health_check.notify: is empty; write the program and its arguments, e.g. notify = ["/usr/local/bin/notify-health"]`}},
		{"on_failure unknown", hc + "kind = \"tcp\"\non_failure = \"drain\"",
			[]string{`t.toml:12: virtual_server[1].health_check.on_failure: "drain" is not a policy; write "remove" (default: out of rotation) or "quiesce" (weight 0: existing connections carry on)`}},
		{"slow_start negative", hc + "kind = \"tcp\"\nslow_start = \"-1s\"",
			[]string{`t.toml:12: virtual_server[1].health_check.slow_start: "-1s" is out of range; write a duration from 0s to 24h0m0s, e.g. "30s"`}},

		// Keys that go together.
		{"send_expect without expect", hc + "kind = \"send_expect\"\nsend = \"PING\"",
			[]string{`t.toml:10: virtual_server[1].health_check.expect: is required for kind "send_expect": write the regexp the reply must match, e.g. expect = "^\\+PONG" (use kind = "tcp" to check only that connections are accepted)`}},
		{"udp without send", hc + "kind = \"udp\"",
			[]string{`t.toml:10: virtual_server[1].health_check.send: is required for kind "udp": UDP has no connection to see accepted, so write the datagram to send, e.g. send = "ping"`}},
		{"dns without query", hc + "kind = \"dns\"",
			[]string{`t.toml:10: virtual_server[1].health_check.query: is required for kind "dns": write the name to ask for, e.g. query = "example.com."`}},
		{"exec without command", hc + "kind = \"exec\"",
			[]string{`t.toml:10: virtual_server[1].health_check.command: is required for kind "exec": write the program and its arguments, e.g. command = ["/usr/local/bin/check", "--quick"]`}},
		{"a key of another kind", hc + "kind = \"tcp\"\npath = \"/\"",
			[]string{`t.toml:12: virtual_server[1].health_check.path: has no effect: it is for kind http and https, and no real server of this virtual server is checked so; remove it, or set kind`}},
		{"keys without a kind", hc + "interval = \"5s\"",
			[]string{`t.toml:11: virtual_server[1].health_check.interval: has no effect without a check: kind is "none" here and in every real server; set kind (e.g. kind = "tcp") or remove it`}},
		{"real server's key of another kind", hc + "kind = \"http\"\n" + rs2 + "health_check = { kind = \"tcp\", sni = \"x\" }",
			[]string{`t.toml:14: virtual_server[1].real_server[2].health_check.sni: has no effect with kind "tcp": it is for kind https; remove it`}},
		{"real server's key without a kind", hc + "kind = \"none\"\n" + rs2 + "health_check = { rise = 3 }",
			[]string{
				`t.toml:14: virtual_server[1].real_server[2].health_check.rise: has no effect without a check: kind is "none" for this real server; set kind (e.g. kind = "tcp") or remove it`,
			}},
		{"inherited requirement reported once", hc + "kind = \"udp\"\n" + rs2,
			[]string{`t.toml:10: virtual_server[1].health_check.send: is required for kind "udp": UDP has no connection to see accepted, so write the datagram to send, e.g. send = "ping"`}},
		{"requirement met by every real server", dp + vsHead + `[[virtual_server.real_server]]
address = "198.19.0.11:80"
health_check = { expect = "^OK" }
[[virtual_server.real_server]]
address = "198.19.0.12:80"
health_check = { expect = "^OK" }
[virtual_server.health_check]
kind = "send_expect"
`, nil},
		{"service key a real server overrides is still used by another", hc + "kind = \"http\"\npath = \"/a\"\n" + rs2 + "health_check = { kind = \"tcp\" }", nil},
		{"port needed for a port-0 real server", dp + `[[virtual_server]]
address = "198.18.0.100:0"
protocol = "tcp"
method = "dr"
[[virtual_server.real_server]]
address = "198.19.0.11:0"
[virtual_server.health_check]
kind = "tcp"
`, []string{`t.toml:9: virtual_server[1].health_check.port: is required: real server 198.19.0.11:0 has port 0 (all ports), so write the port to check, e.g. port = 80`}},

		// The shape of the tables.
		{"health_check a string", dp + vsHead + "health_check = \"tcp\"\n" + rs,
			[]string{`t.toml:8: virtual_server[1].health_check: is a string but must be a table; write [virtual_server.health_check] (single brackets) on a line of its own, followed by its keys`}},
		{"health_check an array of tables", dp + vsHead + rs + "[[virtual_server.real_server.health_check]]\nkind = \"tcp\"\n",
			[]string{`t.toml:10: virtual_server[1].real_server[1].health_check: is an array of tables but must be a table; write [virtual_server.real_server.health_check] (single brackets) on a line of its own, followed by its keys`}},
		{"unknown key", hc + "kind = \"http\"\nstatus = 200",
			[]string{`t.toml:12: virtual_server[1].health_check.status: unknown key; valid keys in [virtual_server.health_check] are kind, interval, timeout, rise, fall, port, path, host, expect_status, expect_body, tls_verify, sni, send, expect, query, query_type, command, notify, on_failure, slow_start`}},
		{"misspelled key", hc + "kind = \"http\"\nexpect_stauts = [200]",
			[]string{`t.toml:12: virtual_server[1].health_check.expect_stauts: unknown key; valid keys in [virtual_server.health_check] are kind, interval, timeout, rise, fall, port, path, host, expect_status, expect_body, tls_verify, sni, send, expect, query, query_type, command, notify, on_failure, slow_start (did you mean expect_status?)`}},

		// sorry_server and quorum.
		{"sorry_server family", dp + vsHead + "sorry_server = \"[2001:2::99]:80\"\n" + rs,
			[]string{`t.toml:8: virtual_server[1].sorry_server: [2001:2::99]:80 is IPv6 but the virtual server 198.18.0.100:80 is IPv4; the sorry server must have the virtual server's address family`}},
		{"sorry_server without port", dp + vsHead + "sorry_server = \"198.19.0.99\"\n" + rs,
			[]string{`t.toml:8: virtual_server[1].sorry_server: "198.19.0.99" has no port; write "198.19.0.99:80"`}},
		{"sorry_server loopback", dp + vsHead + "sorry_server = \"127.0.0.1:80\"\n" + rs,
			[]string{`t.toml:8: virtual_server[1].sorry_server: 127.0.0.1 is a loopback address and cannot be a sorry server; use the sorry server's own address`}},
		{"quorum above the real servers", dp + vsHead + "quorum = 2\n" + rs,
			[]string{`t.toml:8: virtual_server[1].quorum: 2 is more than the 1 real servers of this virtual server, so it could never be met; write at most 1`}},
		{"quorum a string", dp + vsHead + "quorum = \"all\"\n" + rs,
			[]string{`t.toml:8: virtual_server[1].quorum: is a string; write the number of real servers that must be up, e.g. quorum = 2`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "t.toml", LoadOptions{})
			var got []string
			var errs Errors
			if errors.As(err, &errs) {
				for _, e := range errs {
					got = append(got, e.Error())
				}
			} else if err != nil {
				t.Fatalf("Parse error %T %v, want Errors", err, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHealthCheckNotWired checks that while healthWired is false every health key that would do
// something is rejected, each at its own line, with the same clear reason; and that what does
// nothing (no table, kind = "none") is still accepted.
func TestHealthCheckNotWired(t *testing.T) {
	wired(t, false)
	got := errorLines(t, healthFile)
	want := []string{
		`t.toml:8: virtual_server[1].sorry_server: health checks are not wired into the data plane yet, and a sorry server takes over only when they find no real server up; remove it`,
		`t.toml:9: virtual_server[1].quorum: health checks are not wired into the data plane yet, and a quorum counts the real servers they find up; remove it`,
		`t.toml:11: virtual_server[1].health_check.kind: health checks are not wired into the data plane yet: govs would not check anything; remove this health_check table, or write kind = "none"`,
		`t.toml:18: virtual_server[1].health_check.notify: health checks are not wired into the data plane yet: govs would not act on notify; remove it`,
		`t.toml:19: virtual_server[1].health_check.on_failure: health checks are not wired into the data plane yet: govs would not act on on_failure; remove it`,
		`t.toml:20: virtual_server[1].health_check.slow_start: health checks are not wired into the data plane yet: govs would not act on slow_start; remove it`,
		`t.toml:26: virtual_server[1].real_server[2].health_check.kind: health checks are not wired into the data plane yet: govs would not check anything; remove this health_check table, or write kind = "none"`,
		`t.toml:32: virtual_server[1].real_server[3].health_check.kind: health checks are not wired into the data plane yet: govs would not check anything; remove this health_check table, or write kind = "none"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}

	// One message a field: notify has no effect without a kind, which says it all.
	got = errorLines(t, dp+vsHead+rs+"[virtual_server.health_check]\nkind = \"none\"\nnotify = [\"/bin/n\"]\n")
	want = []string{`t.toml:12: virtual_server[1].health_check.notify: has no effect without a check: kind is "none" here and in every real server; set kind (e.g. kind = "tcp") or remove it`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notify without a kind, not wired: errors (-want +got):\n%s", diff)
	}

	// Nothing to wire: accepted.
	c, err := Parse([]byte(dp+vsHead+rs+"[virtual_server.real_server.health_check]\nkind = \"none\"\n"), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("kind none: %v", err)
	}
	if c.VirtualServers[0].RealServers[0].HealthCheck != nil {
		t.Errorf("kind none gave a HealthCheck")
	}

	// The same file is accepted once wired: the rejection is the switch's doing alone.
	wired(t, true)
	if _, err := Parse([]byte(healthFile), "t.toml", LoadOptions{}); err != nil {
		t.Errorf("wired: %v", err)
	}
}

// TestHealthCheckValidKeysMatchRaw keeps the schema and rawHealthCheck in step: every key the
// schema lists reaches the parser.
func TestHealthCheckValidKeysMatchRaw(t *testing.T) {
	wired(t, true)
	var lines []string
	for _, k := range healthCheckKeys {
		lines = append(lines, k+" = 1.5") // a float: wrong for every key
	}
	got := errorLines(t, dp+vsHead+rs+"[virtual_server.health_check]\n"+strings.Join(lines, "\n")+"\n")
	for _, k := range healthCheckKeys {
		found := false
		for _, l := range got {
			if strings.Contains(l, "virtual_server[1].health_check."+k+": is a float") {
				found = true
			}
		}
		if !found {
			t.Errorf("key %s: no type error among %q", k, got)
		}
	}
	if !reflect.DeepEqual(schema["virtual_server.health_check"], schema["virtual_server.real_server.health_check"]) {
		t.Error("a real server's health_check must take the same keys as its virtual server's")
	}
}

// TestHealthTestdata parses the example of every health key, wired and not.
func TestHealthTestdata(t *testing.T) {
	wired(t, true)
	c, err := Load("testdata/health.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("wired: %v", err)
	}
	checkModel(t, c)
	wired(t, false)
	if _, err := Load("testdata/health.toml", LoadOptions{}); err == nil || !strings.Contains(err.Error(), notWired) {
		t.Fatalf("not wired: %v, want the file rejected for it", err)
	}
}

// FuzzParseHealth is FuzzParse with health checks wired: whatever Parse accepts, health runs.
func FuzzParseHealth(f *testing.F) {
	for _, name := range []string{"testdata/health.toml", "testdata/minimal.toml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(healthFile))
	f.Fuzz(func(t *testing.T, data []byte) {
		wired(t, true)
		if c, err := Parse(data, "f.toml", LoadOptions{}); err == nil {
			checkModel(t, c)
		}
	})
}

// checkHealthModel is checkModel's part for health checks: what config accepts, health runs, and
// nothing of it while health checks are not wired.
func checkHealthModel(t *testing.T, vs *VirtualServer) {
	t.Helper()
	if !healthWired {
		if vs.HealthCheck != nil || vs.SorryServer.IsValid() || vs.Quorum != 0 {
			t.Fatalf("health keys accepted while not wired: %+v", vs)
		}
	}
	if vs.Quorum < 0 || vs.Quorum > len(vs.RealServers) {
		t.Fatalf("quorum %d with %d real servers", vs.Quorum, len(vs.RealServers))
	}
	for _, rs := range vs.RealServers {
		hc := rs.HealthCheck
		if hc == nil {
			continue
		}
		if !healthWired {
			t.Fatalf("real server %s has a health check while not wired", rs.Address)
		}
		if hc.Check.Timeout > hc.Check.Interval || (hc.OnFailure != OnFailureRemove && hc.OnFailure != OnFailureQuiesce) || hc.SlowStart < 0 {
			t.Fatalf("bad health check %+v", hc)
		}
		if _, err := health.NewChecker(hc.Check, health.Target{Service: vs.Key(), Server: rs.Address}, nil); err != nil {
			t.Fatalf("health.NewChecker rejects %+v: %v", hc.Check, err)
		}
	}
}
