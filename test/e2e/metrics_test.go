//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/govs/govs/internal/checksum"
	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// defaultMetrics is [metrics] listen when the file does not set it.
const defaultMetrics = "127.0.0.1:9273"

// scrape is one parsed exposition.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs http://addr/metrics from inside ns and parses it as Prometheus does.
func scrapeMetrics(ns *lab.NS, addr string) (scrape, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	head, body, _ := strings.Cut(string(b), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200") && !strings.HasPrefix(head, "HTTP/1.1 200") {
		return nil, fmt.Errorf("GET /metrics: %s", strings.SplitN(head, "\r\n", 2)[0])
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("the exposition does not parse: %w", err)
	}
	return fams, nil
}

// get returns the value of name's sample whose labels include labels (name, value pairs).
func (s scrape) get(name string, labels ...string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		default:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestMetrics drives known traffic through govs (TCP connections and UDP flows through the VIP,
// frames that must be dropped, a neighbour lost, a reload applied and one rejected) and checks the
// scraped metrics against what was sent, to the unit.
func TestMetrics(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 2, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	udp := netip.AddrPortFrom(s.vip, lab.UDPEchoPort)
	rs := func(port uint16) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(s.reals[0], port), netip.AddrPortFrom(s.reals[1], port)}
	}
	tcpSvc, udpSvc := "tcp/"+http80.String(), "udp/"+udp.String()
	// Long timeouts: every connection stays in the table for the whole test, so the counts are exact.
	const longTimeouts = "[timeouts]\ntcp_fin = \"600s\"\ntcp_time_wait = \"600s\"\ntcp_close = \"600s\"\n" +
		"tcp_close_wait = \"600s\"\ntcp_last_ack = \"600s\"\n\n[conntrack]\nmax_entries = 4096\n"
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, Tail: longTimeouts, VS: []vsConfig{
		{http80, "tcp", "rr", "nat", rs(lab.HTTPPort), []int{1, 2}, "", nil},
		{udp, "udp", "rr", "nat", rs(lab.UDPEchoPort), []int{3, 4}, "", nil},
	}}
	start := time.Now()
	g := startGovs(t, topo, cfg) // no [metrics]: the default address serves
	g.waitResolved(5 * time.Second)
	m0, err := scrapeMetrics(topo.Balancer, defaultMetrics)
	if err != nil {
		t.Fatalf("scrape at the default address %s: %v", defaultMetrics, err)
	}
	expect := func(m scrape, want float64, name string, labels ...string) {
		t.Helper()
		if got, ok := m.get(name, labels...); !ok || got != want {
			t.Errorf("%s%v = %v (present: %v), want %v", name, labels, got, ok, want)
		}
	}
	tcpReal, udpReal := rs(lab.HTTPPort), rs(lab.UDPEchoPort)
	for i, w := range []float64{1, 2} {
		expect(m0, w, "govs_real_server_weight", "service", tcpSvc, "real_server", tcpReal[i].String())
		expect(m0, w+2, "govs_real_server_weight", "service", udpSvc, "real_server", udpReal[i].String())
		expect(m0, 1, "govs_real_server_resolved", "service", tcpSvc, "real_server", tcpReal[i].String())
		// No health check configured: in rotation as "unchecked".
		expect(m0, 1, "govs_real_server_health", "service", tcpSvc, "real_server", tcpReal[i].String(), "state", "unchecked")
		expect(m0, 0, "govs_real_server_health", "service", tcpSvc, "real_server", tcpReal[i].String(), "state", "up")
	}
	expect(m0, 1, "govs_ready")
	expect(m0, 2, "govs_workers")
	expect(m0, 0, "govs_connections_created_total")
	expect(m0, 0, "govs_conntrack_entries")
	expect(m0, 4096, "govs_conntrack_capacity")
	expect(m0, 0, "govs_neighbor_unresolved")
	expect(m0, 0, "govs_neighbor_resolution_failures_total")
	expect(m0, 0, "govs_config_reloads_total", "result", "applied")
	expect(m0, 0, "govs_config_reloads_total", "result", "rejected")
	expect(m0, 1, "govs_config_last_reload_successful")
	if ts, _ := m0.get("govs_config_last_reload_timestamp_seconds"); ts < float64(start.Unix()) || ts > float64(time.Now().Unix()+1) {
		t.Errorf("govs_config_last_reload_timestamp_seconds = %v before any reload, want govs's start (after %v)", ts, start.Unix())
	}
	if _, ok := m0.get("govs_build_info"); !ok {
		t.Error("no govs_build_info")
	}
	if _, ok := m0.get("govs_ha_state"); ok {
		t.Error("govs_ha_state without [ha]")
	}

	// Known traffic: nTCP connections with one request each, nFlows UDP flows (one socket each)
	// of nDatagrams exchanges, and nBare TCP ACKs for no connection, which govs must drop.
	const nTCP, nFlows, nDatagrams, nBare = 20, 6, 5, 3
	var tcpConns, udpFlows, udpDatagrams [2]int
	for i := range nTCP {
		srv, err := s.requestFrom(0, http80, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d through %s: %v", i, http80, err)
		}
		tcpConns[srv]++
	}
	for f := range nFlows {
		c, err := topo.Client.Dial(context.Background(), "udp", udp.String())
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		srv := -1
		for r := range nDatagrams {
			payload := fmt.Sprintf("flow%d-%d", f, r)
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write([]byte(payload)); err != nil {
				t.Fatal(err)
			}
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("flow %d datagram %d: no echo (the counts would not be known): %v", f, r, err)
			}
			name, p, _ := strings.Cut(string(buf[:n]), ":")
			i, ok := s.serverIndex(name + "\n")
			if !ok || p != payload {
				t.Fatalf("flow %d: echo %q", f, buf[:n])
			}
			srv = i
			udpDatagrams[i]++
		}
		udpFlows[srv]++
		c.Close()
	}
	sendBareACKs(t, s, nBare)
	t.Logf("TCP connections per real server %v, UDP flows %v and datagrams %v", tcpConns, udpFlows, udpDatagrams)

	// The workers publish every 50 ms and the last FINs may still be on their way: wait for the
	// figures to settle on what was sent, and report the differences if they do not.
	var m scrape
	var diffs []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if m, err = scrapeMetrics(topo.Balancer, defaultMetrics); err != nil {
			t.Fatal(err)
		}
		diffs = nil
		want := func(v float64, name string, labels ...string) {
			if got, ok := m.get(name, labels...); !ok || got != v {
				diffs = append(diffs, fmt.Sprintf("%s%v = %v (present: %v), want %v", name, labels, got, ok, v))
			}
		}
		want(nTCP+nFlows, "govs_connections_created_total")
		want(nTCP+nFlows, "govs_conntrack_entries")
		want(nBare, "govs_drops_total", "reason", "no_connection")
		for i := range 2 {
			tl := []string{"service", tcpSvc, "real_server", tcpReal[i].String()}
			ul := []string{"service", udpSvc, "real_server", udpReal[i].String()}
			want(0, "govs_real_server_active_connections", tl...)
			want(float64(tcpConns[i]), "govs_real_server_inactive_connections", tl...)
			want(float64(udpFlows[i]), "govs_real_server_inactive_connections", ul...)
			want(float64(2*udpDatagrams[i]), "govs_real_server_packets_total", ul...) // request and echo
		}
		if diffs == nil || time.Now().After(deadline) {
			break
		}
	}
	for _, d := range diffs {
		t.Error(d)
	}
	for i := range 2 {
		if p, _ := m.get("govs_real_server_packets_total", "service", tcpSvc, "real_server", tcpReal[i].String()); (p == 0) != (tcpConns[i] == 0) {
			t.Errorf("%s carried %d connections in %v frames", tcpReal[i], tcpConns[i], p)
		}
	}
	if r, _ := m.get("govs_replied_frames_total"); r < nFlows*nDatagrams {
		t.Errorf("govs_replied_frames_total = %v, want at least the %d echoes", r, nFlows*nDatagrams)
	}
	ring, _ := m.get("govs_ring_packets_total")
	rx, _ := m.get("govs_rx_frames_total")
	if rx < nFlows*nDatagrams*2+nBare || ring < rx {
		t.Errorf("govs_rx_frames_total = %v, govs_ring_packets_total = %v: want rx at least what was sent and the rings' count at least rx", rx, ring)
	}
	st := g.mustStats()
	for reason, v := range st.Drops {
		expect(m, float64(v), "govs_drops_total", "reason", reason)
	}
	for _, name := range []string{"govs_ring_drops_total", "govs_ring_freezes_total", "govs_rx_mode_switches_total",
		"govs_rx_ring_latency", "govs_conntrack_evictions_total", "govs_conntrack_full_total", "govs_tables_generation"} {
		if _, ok := m.get(name); !ok {
			t.Errorf("no %s", name)
		}
	}

	// A neighbour lost: the next hop of real server 1 is flushed from the kernel's table; govs
	// counts the loss and resolves it again. (The kernel reports a flushed entry FAILED more than
	// once, and govs's resolver may see it usable in between: each is a loss the data plane saw.)
	if out, err := exec.Command("ip", "-n", topo.Balancer.Name, "neigh", "flush", "to", s.reals[0].String()).CombinedOutput(); err != nil {
		t.Fatalf("ip neigh flush: %v: %s", err, out)
	}
	waitMetric(t, topo.Balancer, defaultMetrics, "govs_neighbor_resolution_failures_total", func(v float64) bool { return v >= 1 })
	waitMetric(t, topo.Balancer, defaultMetrics, "govs_neighbor_unresolved", func(v float64) bool { return v == 0 })

	// A reload applied: new weights, and a new [metrics] listen, which waits for the next start
	// (logged with file:line) while the running address keeps serving.
	next := cfg
	next.Socket = g.cfg.Socket
	next.VS = []vsConfig{cfg.VS[0], cfg.VS[1]}
	next.VS[0].Weights = []int{5, 6}
	next.Tail = longTimeouts + "\n[metrics]\nlisten = \"127.0.0.1:9274\"\n"
	listenLine := 0
	for i, l := range strings.Split(next.toml(), "\n") {
		if strings.HasPrefix(l, "listen = ") {
			listenLine = i + 1
		}
	}
	g.reload(next)
	wantLog := fmt.Sprintf(`%s:%d: metrics.listen: "127.0.0.1:9274" in the file, "127.0.0.1:9273" running; takes effect at the next start`, g.cfgPath, listenLine)
	if !strings.Contains(g.out.String(), wantLog) {
		t.Errorf("govs did not log %q", wantLog)
	}
	m1, err := scrapeMetrics(topo.Balancer, defaultMetrics)
	if err != nil {
		t.Fatalf("after the reload, the running address: %v", err)
	}
	expect(m1, 1, "govs_config_reloads_total", "result", "applied")
	expect(m1, 0, "govs_config_reloads_total", "result", "rejected")
	expect(m1, 1, "govs_config_last_reload_successful")
	expect(m1, 5, "govs_real_server_weight", "service", tcpSvc, "real_server", tcpReal[0].String())
	expect(m1, 6, "govs_real_server_weight", "service", tcpSvc, "real_server", tcpReal[1].String())
	expect(m1, nTCP+nFlows, "govs_connections_created_total") // counters survive a reload
	if _, err := scrapeMetrics(topo.Balancer, "127.0.0.1:9274"); err == nil {
		t.Error("the reload moved the metrics to 127.0.0.1:9274; listen is restart-only")
	}

	// A reload rejected: the file does not parse.
	rejects := strings.Count(g.out.String(), "reload rejected")
	if err := os.WriteFile(g.cfgPath, []byte("[[virtual_server]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sighup := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reload rejected") == rejects; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("govs did not log the rejected reload within 10s")
		}
	}
	// One record, one line: the reason, with file:line, follows on the record's line.
	if !regexp.MustCompile(`(?m)^govs: \S+ \S+ reload rejected, the running configuration stays: ` + regexp.QuoteMeta(g.cfgPath) + `:1: `).MatchString(g.out.String()) {
		t.Errorf("the rejected reload's record is not one line with the file's error:\n%s", g.out.String())
	}
	m2, err := scrapeMetrics(topo.Balancer, defaultMetrics)
	if err != nil {
		t.Fatal(err)
	}
	expect(m2, 1, "govs_config_reloads_total", "result", "applied")
	expect(m2, 1, "govs_config_reloads_total", "result", "rejected")
	expect(m2, 0, "govs_config_last_reload_successful")
	if ts, _ := m2.get("govs_config_last_reload_timestamp_seconds"); ts < float64(sighup.UnixNano())/1e9-0.001 || ts > float64(time.Now().UnixNano())/1e9 {
		t.Errorf("govs_config_last_reload_timestamp_seconds = %v, want the rejected reload's time (%v)", ts, float64(sighup.UnixNano())/1e9)
	}
	g.stop()
}

// waitMetric waits up to 10 s for name (without labels) to read a value ok accepts.
func waitMetric(t *testing.T, ns *lab.NS, addr, name string, ok func(float64) bool) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		m, err := scrapeMetrics(ns, addr)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ = m.get(name); ok(got) {
			return
		}
	}
	t.Fatalf("%s = %v within 10s", name, got)
}

// sendBareACKs sends n TCP ACKs from the client to the VIP's port 80 for no connection govs knows:
// each must be dropped as no_connection.
func sendBareACKs(t *testing.T, s *setup, n int) {
	t.Helper()
	l0mac, err := s.topo.Balancer.HardwareAddr("l0")
	if err != nil {
		t.Fatal(err)
	}
	cliIf, err := s.topo.Client.Interface(lab.ClientIface)
	if err != nil {
		t.Fatal(err)
	}
	b := frameBuilder{dst: l0mac, src: cliIf.HardwareAddr, cli: s.topo.ClientAddr4, vip: s.vip, tcp: lab.HTTPPort}
	ack := b.tcpSYN()
	// Below the kernel's ephemeral ports (32768-60999), so that no connection of the test's own
	// (kept in TIME_WAIT here) can have it: a CI run with port 40123 counted none of the three ACKs
	// as no_connection, which is what ACKs that belong to a connection get.
	binary.BigEndian.PutUint16(ack[0:], 30123)
	ack[13] = 0x10 // ACK
	c, v := b.cli.As4(), b.vip.As4()
	binary.BigEndian.PutUint16(ack[16:], checksum.Transport(c[:], v[:], 6, ack))
	frame := b.eth(0x0800, b.ipv4(6, ack, nil))
	snd, err := newRawSender(s.topo.Client, lab.ClientIface, l0mac)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.close()
	for range n {
		if err := snd.send(frame); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMetricsListenInUse: govs whose [metrics] listen address is taken stops before it starts
// anything, with one line that names the setting, the address and why.
func TestMetricsListenInUse(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	taken, err := topo.Balancer.Listen("tcp", defaultMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, Socket: filepath.Join(dir, "govs.sock"), VS: []vsConfig{
		{netip.AddrPortFrom(topo.VIP4, lab.HTTPPort), "tcp", "rr", "nat", []netip.AddrPort{netip.AddrPortFrom(topo.ServerAddrs4[0], lab.HTTPPort)}, []int{1}, "", nil},
	}}
	path := filepath.Join(dir, "govs.toml")
	if err := os.WriteFile(path, []byte(cfg.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", topo.Balancer.Name, govsPath, "run", "-config", path)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("govs did not exit within 20s")
	}
	if err == nil {
		t.Fatalf("govs ran with its metrics address taken:\n%s", out)
	}
	want := path + ": metrics.listen: cannot listen on 127.0.0.1:9273 (the default): address already in use; free the port or set [metrics] listen to another address (\"\" serves no metrics)"
	if got := strings.TrimSpace(string(out)); got != "govs run: "+want {
		t.Errorf("output:\n%s\nwant the one line\ngovs run: %s", got, want)
	}
	if _, err := os.Stat(cfg.Socket); !os.IsNotExist(err) {
		t.Errorf("the control socket was left behind: %v", err)
	}
}

// TestSystemdNotify: under systemd (Type=notify), govs sends READY=1 to $NOTIFY_SOCKET once the
// data plane forwards, and STOPPING=1 when told to stop.
func TestSystemdNotify(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	dir := t.TempDir()
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	read := func() string {
		t.Helper()
		notify.SetReadDeadline(time.Now().Add(15 * time.Second))
		b := make([]byte, 4096)
		n, err := notify.Read(b)
		if err != nil {
			t.Fatalf("no notification from govs: %v", err)
		}
		return string(b[:n])
	}

	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, Socket: filepath.Join(dir, "govs.sock"),
		Tail: "[metrics]\nlisten = \"\"\n", VS: []vsConfig{
			{http80, "tcp", "rr", "nat", []netip.AddrPort{netip.AddrPortFrom(s.reals[0], lab.HTTPPort)}, []int{1}, "", nil},
		}}
	g := &govsProc{t: t, cfg: cfg, cfgPath: filepath.Join(dir, "govs.toml"), done: make(chan struct{})}
	if err := os.WriteFile(g.cfgPath, []byte(cfg.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	g.cmd = topo.Balancer.Command(govsPath, "run", "-config", g.cfgPath)
	g.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.LocalAddr().String())
	g.cmd.Stdout, g.cmd.Stderr = &g.out, &g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.waitErr = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			_ = g.cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("govs output:\n%s", g.out.String())
		}
	})

	if got := read(); got != "READY=1\nSTATUS=forwarding: 1 virtual servers" {
		t.Fatalf("first notification %q, want READY=1 and a status", got)
	}
	// Ready means ready: the status says so and the first connection goes through.
	if st := g.mustStats(); !st.Ready {
		t.Error("READY=1 came before govs stats said ready")
	}
	if _, err := s.requestFrom(0, http80, 3*time.Second); err != nil {
		t.Errorf("READY=1 came before govs forwarded: %v", err)
	}
	if strings.Contains(g.out.String(), "metrics at") {
		t.Error("[metrics] listen = \"\" still served metrics")
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification on SIGTERM %q, want STOPPING=1", got)
	}
	<-g.done
	if g.waitErr != nil {
		t.Errorf("govs exited with %v", g.waitErr)
	}
}

// TestLogJSON: with [log] format = "json" every line govs writes is a JSON record, and its state
// changes carry their figures as fields: a real server going down and coming back is one record
// each, with the service and the real server as fields.
func TestLogJSON(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	srv[0].startWeb()
	http80 := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, Tail: "[log]\nformat = \"json\"\n", VS: []vsConfig{
		{http80, "tcp", "rr", "nat", []netip.AddrPort{srv[0].ap(hsPort)}, []int{1}, healthCheckTOML("tcp", ""), nil},
	}}
	g := startGovs(t, topo, cfg)
	records := func() []map[string]any {
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(g.out.String()), "\n") {
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("not a JSON record: %q", line)
			}
			for _, k := range []string{"time", "level", "msg"} {
				if _, ok := r[k]; !ok {
					t.Errorf("record without %q: %s", k, line)
				}
			}
			out = append(out, r)
		}
		return out
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var ready, reloaded map[string]any
	for deadline := time.Now().Add(10 * time.Second); reloaded == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no \"reloaded\" record within 10s:\n%s", g.out.String())
		}
		for _, r := range records() {
			switch r["msg"] {
			case "govs ready":
				ready = r
			case "reloaded":
				reloaded = r
			}
		}
	}
	if ready == nil || ready["level"] != "INFO" || ready["workers"] != float64(1) || ready["virtual_servers"] != float64(1) ||
		ready["control_socket"] != g.cfg.Socket || ready["metrics"] != defaultMetrics {
		t.Errorf("ready record %v", ready)
	}
	if reloaded["file"] != g.cfgPath || reloaded["virtual_servers"] != float64(1) || reloaded["generation"] == nil {
		t.Errorf("reloaded record %v", reloaded)
	}

	const service = "tcp/198.18.0.100:80"
	real := srv[0].ap(hsPort).String()
	before := len(records())
	srv[0].stopWeb()
	g.waitHealth(service, srv[0].ap(hsPort), "down", 5*time.Second)
	srv[0].startWeb()
	g.waitHealth(service, srv[0].ap(hsPort), "up", 5*time.Second)
	time.Sleep(3 * healthInterval) // a second record of either would be logged by now
	var changes []map[string]any
	for _, r := range records()[before:] {
		if msg, _ := r["msg"].(string); strings.Contains(msg, "real server "+real) {
			changes = append(changes, r)
		}
	}
	if len(changes) != 2 {
		t.Fatalf("%d records of %s's changes, want 2 (down, up): %v", len(changes), real, changes)
	}
	for i, want := range []struct{ state, prev, level string }{{"down", "up", "WARN"}, {"up", "down", "INFO"}} {
		r := changes[i]
		if r["service"] != service || r["real_server"] != real || r["state"] != want.state || r["prev"] != want.prev || r["level"] != want.level {
			t.Errorf("record %d: %v; want level %s, service %s, real_server %s, state %s, prev %s", i, r, want.level, service, real, want.state, want.prev)
		}
		if _, ok := r["suppressed"]; ok {
			t.Errorf("record %d: %v: nothing was suppressed", i, r)
		}
	}
	if reason, _ := changes[0]["reason"].(string); !strings.Contains(reason, "connection refused") {
		t.Errorf("down record %v: want the check's error as reason", changes[0])
	}
	g.stop()
	records()
}
