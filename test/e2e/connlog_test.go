//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestConnectionLog: real TCP connections and UDP flows through a VIP (NAT, DR and FullNAT) each
// leave exactly one created and one expired line in [log] connections, with their client, VIP and
// real server (under FullNAT also the local address and port the real server saw), and bytes; a reload to another file moves the log there, a SIGHUP after the
// file was moved away (logrotate) reopens it, a reload to a file that cannot be opened is
// rejected, and so is a start with one.
func TestConnectionLog(t *testing.T) {
	for _, method := range []string{"nat", "dr", "fullnat"} {
		t.Run(method, func(t *testing.T) { testConnectionLog(t, method) })
	}
}

// connLine is one parsed connection-log line.
type connLine map[string]string

func readConnLog(t *testing.T, path string) []connLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("connection log: %v", err)
	}
	var out []connLine
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		m := connLine{}
		for _, f := range strings.Fields(l) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("connection log line %q: field %q is not key=value", l, f)
			}
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

// expectedConn is a connection the test made: what its lines must say.
type expectedConn struct {
	proto, client, vip, real string
}

// checkConnLog waits until path holds an expired line for every connection of want and then
// checks that it holds exactly one created and one expired line for each, and nothing else; under
// FullNAT each line names a local endpoint on one of locals (and no line does otherwise).
func checkConnLog(t *testing.T, path, method string, locals []netip.Addr, want []expectedConn) {
	t.Helper()
	var lines []connLine
	for deadline := time.Now().Add(30 * time.Second); ; {
		lines = readConnLog(t, path)
		if len(lines) >= 2*len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	type key struct{ proto, client string }
	got := map[key][]connLine{}
	for _, l := range lines {
		k := key{l["proto"], l["client"]}
		got[k] = append(got[k], l)
	}
	if len(lines) != 2*len(want) {
		t.Errorf("%s: %d lines, want %d (a created and an expired line for each of %d connections)", path, len(lines), 2*len(want), len(want))
	}
	for _, w := range want {
		ls := got[key{w.proto, w.client}]
		if len(ls) != 2 || ls[0]["event"] != "created" || ls[1]["event"] != "expired" {
			t.Errorf("%s %s: lines %v, want one created, then one expired", w.proto, w.client, ls)
			continue
		}
		for _, l := range ls {
			if l["vip"] != w.vip || l["real"] != w.real || l["method"] != method {
				t.Errorf("%s %s: %v, want vip=%s real=%s method=%s", w.proto, w.client, l, w.vip, w.real, method)
			}
			if _, err := time.Parse(time.RFC3339, l["time"]); err != nil {
				t.Errorf("%s %s: time %q: %v", w.proto, w.client, l["time"], err)
			}
			if a, err := netip.ParseAddrPort(l["local"]); (method == "fullnat") != (err == nil && slices.Contains(locals, a.Addr())) {
				t.Errorf("%s %s: local %q, want one on %v under fullnat only", w.proto, w.client, l["local"], locals)
			}
		}
		ex := ls[1]
		num := func(k string) uint64 {
			n, err := strconv.ParseUint(ex[k], 10, 64)
			if err != nil {
				t.Errorf("%s %s: %s=%q: %v", w.proto, w.client, k, ex[k], err)
			}
			return n
		}
		if num("packets_in") == 0 || num("bytes_in") == 0 {
			t.Errorf("%s %s: expired %v: nothing counted from the client", w.proto, w.client, ex)
		}
		if out := num("bytes_out"); (method == "nat" || method == "fullnat") != (out > 0) {
			t.Errorf("%s %s: expired %v: bytes_out %d (replies pass govs under nat and fullnat only)", w.proto, w.client, ex, out)
		}
		if d, err := strconv.ParseFloat(ex["duration"], 64); err != nil || d < 0 || d > 30 {
			t.Errorf("%s %s: duration %q", w.proto, w.client, ex["duration"])
		}
		if ex["reason"] != "timeout" {
			t.Errorf("%s %s: reason %q, want timeout", w.proto, w.client, ex["reason"])
		}
	}
}

func testConnectionLog(t *testing.T, method string) {
	topo := labtest.NewForTest(t, lab.Options{Method: method, Servers: 2, Prefix: "govs-cl"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	web := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	udp := netip.AddrPortFrom(s.vip, lab.UDPEchoPort)
	rs := func(port uint16) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(s.reals[0], port), netip.AddrPortFrom(s.reals[1], port)}
	}
	dir := t.TempDir()
	first, second := filepath.Join(dir, "conns.log"), filepath.Join(dir, "conns2.log")
	// Short timeouts: every connection expires within seconds of its end.
	tail := func(path string) string {
		return "[timeouts]\ntcp = \"4s\"\ntcp_fin = \"1s\"\ntcp_time_wait = \"1s\"\ntcp_close = \"1s\"\ntcp_close_wait = \"1s\"\n" +
			"tcp_last_ack = \"1s\"\ntcp_syn_recv = \"2s\"\nudp = \"2s\"\n\n[log]\nconnections = " + strconv.Quote(path) + "\n"
	}
	// No shutdown drain: a connection still open when govs stops is one (see the end).
	extra := ""
	if method == "fullnat" {
		extra = s.fullnatLocals()
	}
	cfg := govsConfig{Top: "shutdown_drain = \"0s\"\n", Interfaces: topo.BalancerIfaces, Workers: 2, Tail: tail(first), VS: []vsConfig{
		{web, "tcp", "rr", method, rs(lab.HTTPPort), []int{1, 1}, extra, nil},
		{udp, "udp", "rr", method, rs(lab.UDPEchoPort), []int{1, 1}, extra, nil},
	}}
	g := startGovs(t, topo, cfg)
	g.waitResolved(5 * time.Second)

	port := 42000
	client := topo.ClientAddr4
	tcpConns := func(n int) []expectedConn {
		var out []expectedConn
		for range n {
			port++
			srv, err := s.requestFrom(port, web, 5*time.Second)
			if err != nil {
				t.Fatalf("connection from port %d: %v", port, err)
			}
			out = append(out, expectedConn{"tcp", netip.AddrPortFrom(client, uint16(port)).String(), web.String(),
				netip.AddrPortFrom(s.reals[srv], lab.HTTPPort).String()})
		}
		return out
	}
	udpFlows := func(n int) []expectedConn {
		var out []expectedConn
		for f := range n {
			c, err := topo.Client.Dial(context.Background(), "udp", udp.String())
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			srv := -1
			for r := range 3 {
				c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := fmt.Fprintf(c, "flow%d-%d", f, r); err != nil {
					t.Fatal(err)
				}
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("flow %d datagram %d: no echo: %v", f, r, err)
				}
				name, _, _ := strings.Cut(string(buf[:n]), ":")
				var ok bool
				if srv, ok = s.serverIndex(name + "\n"); !ok {
					t.Fatalf("flow %d: echo %q", f, buf[:n])
				}
			}
			la := c.LocalAddr().(*net.UDPAddr).AddrPort()
			out = append(out, expectedConn{"udp", netip.AddrPortFrom(client, la.Port()).String(), udp.String(),
				netip.AddrPortFrom(s.reals[srv], lab.UDPEchoPort).String()})
			c.Close()
		}
		return out
	}
	waitEmpty := func() {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			st := g.mustStats()
			if st.Counters["conntrack_entries"] == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d entries still in the table after 30s", st.Counters["conntrack_entries"])
			}
		}
	}

	want := append(tcpConns(10), udpFlows(4)...)
	waitEmpty()
	checkConnLog(t, first, method, topo.LocalAddrs4, want)
	st := g.mustStats()
	if st.Counters["connlog_lines"] != int64(2*len(want)) || st.Counters["connlog_dropped"] != 0 || st.Counters["connlog_rate_limited"] != 0 {
		t.Errorf("counters %v: want connlog_lines %d, nothing dropped or rate-limited", st.Counters, 2*len(want))
	}
	if method != "nat" {
		return
	}

	// A reload to another file: the next connections are logged there, none in the first.
	before := len(readConnLog(t, first))
	cfg.Tail = tail(second)
	g.reload(cfg)
	want = tcpConns(3)
	waitEmpty()
	checkConnLog(t, second, method, topo.LocalAddrs4, want)
	if n := len(readConnLog(t, first)); n != before {
		t.Errorf("%s: %d lines after the reload to %s, want %d as before", first, n, second, before)
	}

	// logrotate: the file moved away, then SIGHUP; the next connections go to a new file.
	rotated := second + ".1"
	if err := os.Rename(second, rotated); err != nil {
		t.Fatal(err)
	}
	g.reload(cfg)
	rotatedWant := tcpConns(2)
	waitEmpty()
	checkConnLog(t, second, method, topo.LocalAddrs4, rotatedWant)
	if n := len(readConnLog(t, rotated)); n != 6 {
		t.Errorf("%s: %d lines, want the 6 written before it was rotated", rotated, n)
	}

	// A reload to a file that cannot be opened is rejected, with the reason, and the log
	// carries on in the running file.
	bad := cfg
	bad.Tail = tail(filepath.Join(dir, "missing", "conns.log"))
	bad.Socket = g.cfg.Socket
	if err := os.WriteFile(g.cfgPath, []byte(bad.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	rejects := strings.Count(g.out.String(), "reload rejected")
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reload rejected") == rejects; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a reload to a file that cannot be opened was not rejected:\n%s", g.out.String())
		}
	}
	if !strings.Contains(g.out.String(), "log.connections: cannot open "+filepath.Join(dir, "missing", "conns.log")) {
		t.Errorf("the rejection does not say which file and why:\n%s", g.out.String())
	}
	want = append(rotatedWant, tcpConns(1)...)
	waitEmpty()
	checkConnLog(t, second, method, topo.LocalAddrs4, want) // the running file keeps logging

	// A connection still open when govs stops: its expired line says shutdown.
	held, err := topo.Client.Dial(context.Background(), "tcp", web.String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldClient := netip.AddrPortFrom(client, held.LocalAddr().(*net.TCPAddr).AddrPort().Port()).String()
	for deadline := time.Now().Add(5 * time.Second); len(readConnLog(t, second)) < 2*len(want)+1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no created line for the held connection")
		}
	}
	g.stop()
	var heldLines []connLine
	for _, l := range readConnLog(t, second) {
		if l["client"] == heldClient {
			heldLines = append(heldLines, l)
		}
	}
	if len(heldLines) != 2 || heldLines[1]["event"] != "expired" || heldLines[1]["reason"] != "shutdown" ||
		heldLines[1]["state"] != "ESTABLISHED" || heldLines[1]["bytes_out"] == "0" {
		t.Errorf("connection open at the stop: lines %v, want created and expired (reason shutdown, ESTABLISHED, bytes both ways)", heldLines)
	}

	// A start with a file that cannot be opened stops with one line saying so.
	bad.Socket = ""
	g2 := launchGovsIn(t, topo.Balancer, bad, nil)
	select {
	case <-g2.done:
	case <-time.After(10 * time.Second):
		t.Fatal("govs started with a connection log it cannot open")
	}
	out := strings.TrimSpace(g2.out.String())
	if g2.waitErr == nil || strings.Count(out, "\n") != 0 || !strings.Contains(out, "log.connections: cannot open") {
		t.Errorf("start with a connection log it cannot open: exit %v, output (want one line):\n%s", g2.waitErr, out)
	}
}
