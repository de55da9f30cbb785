//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// runGovs runs the govs binary with args (outside the namespaces: the control socket is a file)
// and returns stdout, stderr and the exit code (-1: it did not run to the end within timeout).
func runGovs(timeout time.Duration, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, govsPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	case err != nil:
		code = -1
	}
	return stdout.String(), stderr.String(), code
}

// ctlList is `govs list -json` and `govs stats -json` as this file reads them.
type ctlList struct {
	VirtualServers []struct {
		Address     string      `json:"address"`
		Protocol    string      `json:"protocol"`
		Stats       ctlTraffic  `json:"stats"`
		Rate        ctlRate     `json:"rate"`
		RealServers []ctlServer `json:"real_servers"`
	} `json:"virtual_servers"`
	Counters   map[string]uint64 `json:"counters"`
	DropsTotal uint64            `json:"drops_total"`
	Overrides  []ctlOverride     `json:"overrides"`
	LastReload *struct {
		Applied          bool          `json:"applied"`
		Error            string        `json:"error"`
		OverridesDropped []ctlOverride `json:"overrides_dropped"`
	} `json:"last_reload"`
}

type ctlServer struct {
	Address             string     `json:"address"`
	Weight              int        `json:"weight"`
	Disabled            bool       `json:"disabled"`
	ActiveConnections   int64      `json:"active_connections"`
	InactiveConnections int64      `json:"inactive_connections"`
	Packets             uint64     `json:"packets"`
	Stats               ctlTraffic `json:"stats"`
	Rate                ctlRate    `json:"rate"`
}

type ctlTraffic struct {
	Conns    uint64 `json:"conns"`
	InPkts   uint64 `json:"inpkts"`
	OutPkts  uint64 `json:"outpkts"`
	InBytes  uint64 `json:"inbytes"`
	OutBytes uint64 `json:"outbytes"`
}

type ctlRate struct {
	CPS    float64 `json:"cps"`
	InPPS  float64 `json:"inpps"`
	OutPPS float64 `json:"outpps"`
	InBPS  float64 `json:"inbps"`
	OutBPS float64 `json:"outbps"`
}

type ctlOverride struct {
	Service          string `json:"service"`
	Real             string `json:"real"`
	Weight           *int   `json:"weight"`
	ConfiguredWeight int    `json:"configured_weight"`
	Disabled         bool   `json:"disabled"`
}

type ctlConns struct {
	Matched int `json:"matched"`
	Conns   []struct {
		Protocol      string  `json:"protocol"`
		State         string  `json:"state"`
		ExpireSeconds float64 `json:"expire_seconds"`
		Client        string  `json:"client"`
		Virtual       string  `json:"virtual"`
		Real          string  `json:"real"`
		Service       string  `json:"service"`
		Template      bool    `json:"template"`
	} `json:"conns"`
}

// ctlFixture is a govs with three virtual servers: tcp/198.18.0.100:80 (wrr over rs1 and rs2),
// tcp/198.18.0.100:8080 (rr, persistent, over rs1 and rs2) and tcp/[2001:2::100]:80 (rr over
// rs1 and rs2), under NAT, with short TCP closing timeouts so that closed connections leave the
// table within seconds.
type ctlFixture struct {
	t                 *testing.T
	s                 *setup
	g                 *govsProc
	cfg               govsConfig
	web, sticky, web6 netip.AddrPort
	rs                [2]netip.AddrPort // rs1, rs2 on port 80
	rs6               [2]netip.AddrPort
}

const (
	svcWeb    = "tcp/198.18.0.100:80"
	svcSticky = "tcp/198.18.0.100:8080"
	svcWeb6   = "tcp/[2001:2::100]:80"
)

func newCtlFixture(t *testing.T) *ctlFixture {
	return newCtlFixtureTimeouts(t, "tcp_fin = \"1s\"\ntcp_time_wait = \"1s\"\ntcp_close = \"1s\"\ntcp_close_wait = \"1s\"\ntcp_last_ack = \"1s\"\n")
}

// newCtlFixtureTimeouts is newCtlFixture with timeouts as its [timeouts] table.
func newCtlFixtureTimeouts(t *testing.T, timeouts string) *ctlFixture {
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", IPv6: true, Servers: 2, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	f := &ctlFixture{t: t, s: &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}}
	f.web = netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)
	f.sticky = netip.AddrPortFrom(topo.VIP4, lab.HTTPAltPort)
	f.web6 = netip.AddrPortFrom(topo.VIP6, lab.HTTPPort)
	sticky := [2]netip.AddrPort{}
	for i := range 2 {
		f.rs[i] = netip.AddrPortFrom(topo.ServerAddrs4[i], lab.HTTPPort)
		f.rs6[i] = netip.AddrPortFrom(topo.ServerAddrs6[i], lab.HTTPPort)
		sticky[i] = netip.AddrPortFrom(topo.ServerAddrs4[i], lab.HTTPAltPort)
	}
	f.cfg = govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		Tail:       "[timeouts]\n" + timeouts,
		VS: []vsConfig{
			{f.web, "tcp", "wrr", "nat", f.rs[:], []int{1, 1}, "", nil},
			{f.sticky, "tcp", "rr", "nat", sticky[:], []int{1, 1}, "persistence_timeout = \"60s\"\n", nil},
			{f.web6, "tcp", "rr", "nat", f.rs6[:], []int{1, 1}, "", nil},
		},
	}
	f.g = startGovs(t, topo, f.cfg)
	f.g.waitResolved(10 * time.Second)
	return f
}

// govs runs the govs binary against the fixture's control socket: args go after the command
// name, "-control SOCK" before them.
func (f *ctlFixture) govs(timeout time.Duration, cmd string, args ...string) (string, string, int) {
	return runGovs(timeout, append([]string{cmd, "-control", f.g.cfg.Socket}, args...)...)
}

// mustGovs is govs that requires exit status 0.
func (f *ctlFixture) mustGovs(cmd string, args ...string) string {
	f.t.Helper()
	out, stderr, code := f.govs(30*time.Second, cmd, args...)
	if code != 0 {
		f.t.Fatalf("govs %s %s: exit %d\nstdout:\n%s\nstderr:\n%s", cmd, strings.Join(args, " "), code, out, stderr)
	}
	return out
}

// list is `govs stats -json`.
func (f *ctlFixture) list() ctlList {
	f.t.Helper()
	var l ctlList
	out := f.mustGovs("stats", "-json")
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		f.t.Fatalf("govs stats -json: %v\n%s", err, out)
	}
	return l
}

// real returns the listing of real server addr of the virtual server named svc ("tcp/ADDR:PORT").
func (l ctlList) real(t *testing.T, svc string, addr netip.AddrPort) ctlServer {
	t.Helper()
	for _, vs := range l.VirtualServers {
		if vs.Protocol+"/"+vs.Address != svc {
			continue
		}
		for _, rs := range vs.RealServers {
			if rs.Address == addr.String() {
				return rs
			}
		}
	}
	t.Fatalf("no real server %s of %s in the listing", addr, svc)
	return ctlServer{}
}

// heldConn is a keep-alive HTTP connection from the client namespace through a VIP.
type heldConn struct {
	c  net.Conn
	br *bufio.Reader
}

// hold opens a connection to target from local port port (0: any) and makes one request on it;
// it returns the connection and the index of the server that answered.
func (f *ctlFixture) hold(target netip.AddrPort, port int) (*heldConn, int) {
	f.t.Helper()
	local := f.s.topo.ClientAddr4
	if target.Addr().Is6() {
		local = f.s.topo.ClientAddr6
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c net.Conn
	err := f.s.topo.Client.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice(), Port: port}}
		var err error
		c, err = d.DialContext(ctx, "tcp", target.String())
		return err
	})
	if err != nil {
		f.t.Fatalf("connect to %s from port %d: %v", target, port, err)
	}
	h := &heldConn{c: c, br: bufio.NewReader(c)}
	f.t.Cleanup(func() { c.Close() })
	srv, err := h.ask(f.s)
	if err != nil {
		f.t.Fatalf("first request on a connection to %s: %v", target, err)
	}
	return h, srv
}

// ask makes one more request on the connection and returns the index of the server that answered.
func (h *heldConn) ask(s *setup) (int, error) {
	h.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(h.c, "GET / HTTP/1.1\r\nHost: govs\r\n\r\n"); err != nil {
		return -1, err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1, err
	}
	i, ok := s.serverIndex(string(b))
	if !ok {
		return -1, fmt.Errorf("unexpected answer %q", b)
	}
	return i, nil
}

// requests makes n requests to target, each on a new connection, and counts the answers per server.
func (f *ctlFixture) requests(target netip.AddrPort, n int) [2]int {
	f.t.Helper()
	var counts [2]int
	for range n {
		srv, err := f.s.requestFrom(0, target, 5*time.Second)
		if err != nil {
			f.t.Fatalf("request to %s: %v", target, err)
		}
		counts[srv]++
	}
	return counts
}

// TestCtlListStats: `govs list -stats` (and its JSON) counts the connections, packets and bytes
// in and out of each real server and service, as they went through govs; `govs ctl zero` starts
// the counts (and `govs stats`'s counters) over.
func TestCtlListStats(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	f.mustGovs("ctl", "zero")
	const n, size = 10, 1 << 20
	f.requests(f.web, n)
	resp, err := getOnce(f.s.topo.Client.HTTPClient(false), fmt.Sprintf("http://%s/bytes?n=%d", f.web, size), 30*time.Second)
	if err != nil || len(resp) != size {
		t.Fatalf("download of %d bytes: %v (%d bytes)", size, err, len(resp))
	}
	l := f.list()
	var sum ctlTraffic
	for _, rs := range f.rs {
		x := l.real(t, svcWeb, rs).Stats
		sum.Conns += x.Conns
		sum.InPkts += x.InPkts
		sum.OutPkts += x.OutPkts
		sum.InBytes += x.InBytes
		sum.OutBytes += x.OutBytes
		if r := l.real(t, svcWeb, rs); r.Packets != x.InPkts+x.OutPkts {
			t.Errorf("%s: packets %d, want inpkts+outpkts %d", rs, r.Packets, x.InPkts+x.OutPkts)
		}
	}
	if sum.Conns != n+1 {
		t.Errorf("the real servers counted %d connections, want %d", sum.Conns, n+1)
	}
	// Each connection: at least SYN, ACK, request, ACK of the answer, FIN in; SYN-ACK, answer, FIN out.
	if sum.InPkts < 4*(n+1) || sum.OutPkts < 3*(n+1) {
		t.Errorf("packets in %d, out %d: too few for %d connections", sum.InPkts, sum.OutPkts, n+1)
	}
	// Out: the download and its headers, every segment's IP and TCP headers. In: mostly ACKs.
	if sum.OutBytes < size || sum.OutBytes > size*11/10+100_000 {
		t.Errorf("bytes out %d, want the %d downloaded plus headers", sum.OutBytes, size)
	}
	if sum.InBytes < 40*sum.InPkts || sum.InBytes > 1500*sum.InPkts {
		t.Errorf("bytes in %d for %d packets", sum.InBytes, sum.InPkts)
	}
	var web ctlTraffic
	for _, vs := range l.VirtualServers {
		if vs.Protocol+"/"+vs.Address == svcWeb {
			web = vs.Stats
		}
	}
	if web != sum {
		t.Errorf("the service's totals %+v, want its real servers' sum %+v", web, sum)
	}
	if l.Counters["conns_created"] != n+1 {
		t.Errorf("conns_created %d since govs ctl zero, want %d", l.Counters["conns_created"], n+1)
	}

	out := f.mustGovs("list", "-stats")
	if !regexp.MustCompile(`(?m)^Prot LocalAddress:Port +Conns +InPkts +OutPkts +InBytes +OutBytes *$`).MatchString(out) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^TCP +198\.18\.0\.100:80 +%d +%d +%d +%d +%d *$`, web.Conns, web.InPkts, web.OutPkts, web.InBytes, web.OutBytes)).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  -> 198\.19\.0\.11:80 +\d+ +\d+ +\d+ +\d+ +\d+ *$`).MatchString(out) {
		t.Errorf("govs list -stats:\n%s", out)
	}

	// Zero again: everything starts from 0, and counts on.
	f.mustGovs("ctl", "zero")
	f.requests(f.web, 3)
	l = f.list()
	var conns, other uint64
	for _, vs := range l.VirtualServers {
		for _, rs := range vs.RealServers {
			if vs.Protocol+"/"+vs.Address == svcWeb {
				conns += rs.Stats.Conns
			} else {
				other += rs.Stats.Conns + rs.Stats.InPkts
			}
		}
	}
	if conns != 3 || other != 0 || l.Counters["conns_created"] != 3 || l.DropsTotal != 0 {
		t.Errorf("after govs ctl zero and 3 connections: %d connections counted (%d elsewhere), conns_created %d, drops_total %d; want 3, 0, 3, 0",
			conns, other, l.Counters["conns_created"], l.DropsTotal)
	}
	// The metrics count on from the start: a Prometheus counter never goes down.
	m, err := scrapeMetrics(f.s.topo.Balancer, defaultMetrics)
	if err != nil {
		t.Fatal(err)
	}
	var promConns, promOut float64
	for _, rs := range f.rs {
		c, ok1 := m.get("govs_real_server_connections_total", "service", svcWeb, "real_server", rs.String())
		o, ok2 := m.get("govs_real_server_out_bytes_total", "service", svcWeb, "real_server", rs.String())
		if !ok1 || !ok2 {
			t.Fatalf("no govs_real_server_connections_total or _out_bytes_total for %s", rs)
		}
		promConns, promOut = promConns+c, promOut+o
	}
	if promConns != n+1+3 || promOut < size {
		t.Errorf("metrics after govs ctl zero: %v connections, %v bytes out; want all %d since the start and at least the %d downloaded",
			promConns, promOut, n+1+3, size)
	}
	f.g.stop()
}

// TestCtlListRate: `govs list -rate` shows connections, packets and bytes per second while
// traffic flows, and nothing once it stopped.
func TestCtlListRate(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done []time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond) // 20 connections a second
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := f.s.requestFrom(0, f.web, 5*time.Second); err != nil {
				t.Errorf("request: %v", err)
				return
			}
			mu.Lock()
			done = append(done, time.Now())
			mu.Unlock()
		}
	}()
	time.Sleep(3500 * time.Millisecond)
	l := f.list()
	out := f.mustGovs("list", "-rate")
	close(stop)
	wg.Wait()
	mu.Lock()
	recent := 0
	for _, at := range done {
		if time.Since(at) < 3*time.Second {
			recent++
		}
	}
	mu.Unlock()
	actual := float64(recent) / 3
	var r ctlRate
	for _, vs := range l.VirtualServers {
		if vs.Protocol+"/"+vs.Address == svcWeb {
			r = vs.Rate
		}
	}
	t.Logf("rate %+v while about %.1f connections a second completed", r, actual)
	if r.CPS < actual/3 || r.CPS > actual*3+2 {
		t.Errorf("cps %.1f, while about %.1f connections a second completed", r.CPS, actual)
	}
	if r.InPPS < 3*r.CPS || r.OutPPS < 2*r.CPS || r.InBPS < 40*r.InPPS || r.OutBPS < 40*r.OutPPS {
		t.Errorf("rates %+v do not fit %.1f connections a second", r, r.CPS)
	}
	if !regexp.MustCompile(`(?m)^Prot LocalAddress:Port +CPS +InPPS +OutPPS +InBPS +OutBPS *$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^TCP +198\.18\.0\.100:80 +[1-9]\d* +[1-9]\d* +[1-9]\d* +[1-9]\d* +[1-9]\d* *$`).MatchString(out) {
		t.Errorf("govs list -rate while traffic flows:\n%s", out)
	}
	time.Sleep(2500 * time.Millisecond)
	for _, vs := range f.list().VirtualServers {
		if vs.Rate != (ctlRate{}) {
			t.Errorf("%s/%s: rate %+v two seconds after the traffic stopped, want 0", vs.Protocol, vs.Address, vs.Rate)
		}
	}
	f.g.stop()
}

// TestCtlListConns: `govs list -conns` lists the connections like ipvsadm -Lnc, filtered by
// service, real server and client, bounded by -max.
func TestCtlListConns(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	var srvOf [3]int
	for i := range 3 {
		_, srvOf[i] = f.hold(f.web, 41001+i)
	}
	_, srv6 := f.hold(f.web6, 41004)
	conns := func(args ...string) ctlConns {
		t.Helper()
		var c ctlConns
		out := f.mustGovs("list", append([]string{"-conns", "-json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatalf("govs list -conns -json %v: %v\n%s", args, err, out)
		}
		return c
	}
	all := conns("-service", svcWeb)
	if all.Matched != 3 || len(all.Conns) != 3 {
		t.Fatalf("govs list -conns -service %s: %+v, want the 3 connections held", svcWeb, all)
	}
	for i, c := range all.Conns {
		want := fmt.Sprintf("198.18.0.10:%d", 41001+i)
		if c.Client != want || c.Protocol != "tcp" || c.State != "ESTABLISHED" || c.Virtual != f.web.String() ||
			c.Real != f.rs[srvOf[i]].String() || c.Service != svcWeb || c.Template || c.ExpireSeconds < 800 || c.ExpireSeconds > 900 {
			t.Errorf("connection %d: %+v, want tcp ESTABLISHED from %s to %s via %s, expiring in about 15 minutes", i, c, want, f.web, f.rs[srvOf[i]])
		}
	}
	if c := conns("-client", "198.18.0.10:41002"); c.Matched != 1 || len(c.Conns) != 1 || c.Conns[0].Real != f.rs[srvOf[1]].String() {
		t.Errorf("-client 198.18.0.10:41002: %+v", c)
	}
	if c := conns("-client", "[2001:2::10]:41004"); c.Matched != 1 || len(c.Conns) != 1 || c.Conns[0].Real != f.rs6[srv6].String() ||
		c.Conns[0].Virtual != f.web6.String() || c.Conns[0].Service != svcWeb6 {
		t.Errorf("-client [2001:2::10]:41004: %+v", c)
	}
	onRS1 := 0
	for _, s := range srvOf {
		if s == 0 {
			onRS1++
		}
	}
	if c := conns("-service", svcWeb, "-real", f.rs[0].String()); c.Matched != onRS1 {
		t.Errorf("-real %s: %d connections, want %d", f.rs[0], c.Matched, onRS1)
	}
	if c := conns("-real", f.rs[0].Addr().String(), "-client", "198.18.0.10"); c.Matched < onRS1 {
		t.Errorf("-real %s (any port): %d connections, want at least %d", f.rs[0].Addr(), c.Matched, onRS1)
	}
	if c := conns("-service", svcWeb, "-max", "1"); c.Matched != 3 || len(c.Conns) != 1 {
		t.Errorf("-max 1: %d listed of %d, want 1 of 3", len(c.Conns), c.Matched)
	}

	out := f.mustGovs("list", "-conns", "-service", svcWeb)
	if !regexp.MustCompile(`(?m)^pro +expire +state +source +virtual +destination *$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^TCP +1[45]:\d\d +ESTABLISHED +198\.18\.0\.10:41001 +198\.18\.0\.100:80 +`+regexp.QuoteMeta(f.rs[srvOf[0]].String())+` *$`).MatchString(out) {
		t.Errorf("govs list -conns:\n%s", out)
	}
	out = f.mustGovs("list", "-conns", "-service", svcWeb, "-max", "2")
	if !strings.Contains(out, "... and 1 more connection; raise -max") {
		t.Errorf("govs list -conns -max 2 of 3:\n%s", out)
	}

	// A persistent service's template.
	f.hold(f.sticky, 41005)
	if c := conns("-service", svcSticky); c.Matched != 2 || !c.Conns[1].Template || c.Conns[1].Client != "198.18.0.10:0" ||
		c.Conns[1].State != "TEMPLATE" || c.Conns[1].Virtual != f.sticky.String() || c.Conns[1].Protocol != "tcp" {
		t.Errorf("-service %s: %+v, want the connection and its template", svcSticky, c)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"-conns", "-service", "tcp/198.18.0.100:81"}, "unknown virtual server tcp/198.18.0.100:81; known: " + svcWeb + ", " + svcSticky + ", " + svcWeb6},
		{[]string{"-conns", "-client", "nonsense"}, `-client "nonsense" is not an address`},
		{[]string{"-service", svcWeb}, "-service, -real and -client filter the connections; add -conns"},
	} {
		out, stderr, code := f.govs(10*time.Second, "list", bad.args...)
		if code == 0 || !strings.Contains(stderr, bad.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("govs list %v: exit %d, stderr %q; want a one-line error with %q (stdout %q)", bad.args, code, stderr, bad.want, out)
		}
	}
	f.g.stop()
}

// TestCtlWeight: `govs ctl weight` changes where new connections go at once, the status lists
// the change, and the next reload of the file ends it, which the status says.
func TestCtlWeight(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	out := f.mustGovs("ctl", "weight", svcWeb, f.rs[0].String(), "0")
	if !strings.Contains(out, svcWeb+" "+f.rs[0].String()+": weight 0 (the file says 1); until the next reload of the file") {
		t.Errorf("govs ctl weight answered %q", out)
	}
	if c := f.requests(f.web, 20); c[0] != 0 {
		t.Errorf("with weight 0, rs1 got %d of 20 new connections", c[0])
	}
	l := f.list()
	if rs := l.real(t, svcWeb, f.rs[0]); rs.Weight != 0 {
		t.Errorf("listed weight %d, want 0", rs.Weight)
	}
	if len(l.Overrides) != 1 || l.Overrides[0].Service != svcWeb || l.Overrides[0].Real != f.rs[0].String() ||
		l.Overrides[0].Weight == nil || *l.Overrides[0].Weight != 0 || l.Overrides[0].ConfiguredWeight != 1 {
		t.Errorf("overrides %+v, want rs1's weight 0 (file: 1)", l.Overrides)
	}
	out = f.mustGovs("list")
	if !regexp.MustCompile(`(?m)^  -> 198\.19\.0\.11:80 +Masq +0 .*# weight set by govs ctl \(file: 1\)$`).MatchString(out) {
		t.Errorf("govs list does not show the override:\n%s", out)
	}
	out = f.mustGovs("stats")
	if !strings.Contains(out, "runtime overrides (govs ctl; in force until the next reload of the file): 1\n  "+svcWeb+" "+f.rs[0].String()+": weight 0 (file: 1), since ") {
		t.Errorf("govs stats does not show the override:\n%s", out)
	}

	// IPv6, and a weight that favours one server.
	f.mustGovs("ctl", "weight", svcWeb6, "[2001:2:0:1::12]:80", "5")
	if rs := f.list().real(t, svcWeb6, f.rs6[1]); rs.Weight != 5 {
		t.Errorf("IPv6 real server's weight %d, want 5", rs.Weight)
	}
	f.mustGovs("ctl", "weight", svcWeb, f.rs[0].String(), "3")
	if c := f.requests(f.web, 40); c[0] < 25 || c[1] < 5 {
		t.Errorf("with weights 3:1, 40 connections went %d:%d", c[0], c[1])
	}

	// A reload of the unchanged file ends both overrides.
	f.g.reload(f.cfg)
	l = f.list()
	if len(l.Overrides) != 0 || l.real(t, svcWeb, f.rs[0]).Weight != 1 || l.real(t, svcWeb6, f.rs6[1]).Weight != 1 {
		t.Errorf("after a reload: overrides %+v, weights %d and %d; want none, the file's 1 and 1", l.Overrides,
			l.real(t, svcWeb, f.rs[0]).Weight, l.real(t, svcWeb6, f.rs6[1]).Weight)
	}
	if l.LastReload == nil || !l.LastReload.Applied || len(l.LastReload.OverridesDropped) != 2 {
		t.Errorf("last_reload %+v, want applied, with the 2 overrides it ended", l.LastReload)
	}
	if out := f.mustGovs("stats"); !strings.Contains(out, "runtime overrides: none") || !strings.Contains(out, "it ended 2 runtime override(s) made with govs ctl") {
		t.Errorf("govs stats after the reload:\n%s", out)
	}
	if !strings.Contains(f.g.out.String(), "the reload ended 2 runtime override(s)") {
		t.Errorf("govs did not log that the reload ended the overrides")
	}
	if c := f.requests(f.web, 20); c[0] < 6 || c[1] < 6 {
		t.Errorf("after the reload, 20 connections went %d:%d, want about even", c[0], c[1])
	}
	f.g.stop()
}

// TestCtlDisableEnable: a disabled real server gets no new connections, not even from a client
// its persistence pins to it, while its established ones go on; enable puts it back.
func TestCtlDisableEnable(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	rsPort := func(i int) netip.AddrPort { return netip.AddrPortFrom(f.rs[i].Addr(), lab.HTTPAltPort) }
	held, pinned := f.hold(f.sticky, 0)
	if c := f.requests(f.sticky, 5); c[pinned] != 5 {
		t.Fatalf("a persistent client's connections went %v, want all to server %d", c, pinned)
	}
	out := f.mustGovs("ctl", "disable", svcSticky, rsPort(pinned).String())
	if !strings.Contains(out, "disabled: no new connections, established ones go on") {
		t.Errorf("govs ctl disable answered %q", out)
	}
	if c := f.requests(f.sticky, 5); c[pinned] != 0 {
		t.Errorf("after disable, the pinned client's new connections went %v, want none to server %d", c, pinned)
	}
	if srv, err := held.ask(f.s); err != nil || srv != pinned {
		t.Errorf("the established connection after disable: server %d, %v; want %d", srv, err, pinned)
	}
	l := f.list()
	if rs := l.real(t, svcSticky, rsPort(pinned)); !rs.Disabled || rs.Weight != 1 {
		t.Errorf("listing after disable: %+v, want disabled with its weight", rs)
	}
	if len(l.Overrides) != 1 || !l.Overrides[0].Disabled || l.Overrides[0].Weight != nil {
		t.Errorf("overrides %+v, want one: disabled, weight not overridden", l.Overrides)
	}
	if out := f.mustGovs("list"); !strings.Contains(out, "# disabled by govs ctl") {
		t.Errorf("govs list does not show the disabled real server:\n%s", out)
	}
	f.mustGovs("ctl", "enable", svcSticky, rsPort(pinned).String())
	l = f.list()
	if rs := l.real(t, svcSticky, rsPort(pinned)); rs.Disabled || len(l.Overrides) != 0 {
		t.Errorf("after enable: %+v, overrides %+v; want enabled, no override left", rs, l.Overrides)
	}
	// Back in rotation: shown on a service without persistence (the lab has one client, whose
	// template now pins it to the other server for a minute).
	f.mustGovs("ctl", "disable", svcWeb, f.rs[0].String())
	if c := f.requests(f.web, 10); c[0] != 0 {
		t.Errorf("rs1 disabled got %d of 10 new connections", c[0])
	}
	f.mustGovs("ctl", "enable", svcWeb, f.rs[0].String())
	if c := f.requests(f.web, 10); c[0] < 3 {
		t.Errorf("rs1 enabled again got %d of 10 new connections, want about half", c[0])
	}
	f.g.stop()
}

// TestCtlDrain: `govs ctl drain` sets the weight to 0 and waits, showing how many connections
// are left, until the last one has ended; with -timeout it gives up, saying so.
func TestCtlDrain(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	var onRS1 []*heldConn
	for len(onRS1) < 2 {
		h, srv := f.hold(f.web, 0)
		if srv == 0 {
			onRS1 = append(onRS1, h)
		} else {
			h.c.Close()
		}
	}
	time.Sleep(2500 * time.Millisecond) // the closed ones leave the table (1s closing timeouts)

	// Gives up after -timeout while connections remain.
	out, stderr, code := f.govs(20*time.Second, "ctl", "drain", "-timeout", "2s", svcWeb, f.rs[0].String())
	if code != 1 || !strings.Contains(stderr, "still has 2 connections after 2s; its weight stays 0") ||
		!strings.Contains(out, "2 connections left (2 active, 0 inactive)") {
		t.Errorf("govs ctl drain -timeout 2s with 2 connections: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}

	cmd := exec.Command(govsPath, "ctl", "-control", f.g.cfg.Socket, "drain", svcWeb, f.rs[0].String())
	var dout lab.Output
	var derr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &dout, &derr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, done := make(chan error, 1), make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // if the test failed before it exited
		<-done
	})
	waitOut := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !strings.Contains(dout.String(), what); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("govs ctl drain did not print %q within 15s:\n%s\nstderr:\n%s", what, dout.String(), derr.String())
			}
		}
	}
	waitOut("2 connections left")
	if c := f.requests(f.web, 10); c[0] != 0 {
		t.Errorf("while draining, rs1 got %d of 10 new connections", c[0])
	}
	// The established connections still work while it drains.
	if srv, err := onRS1[0].ask(f.s); err != nil || srv != 0 {
		t.Errorf("an established connection while draining: server %d, %v", srv, err)
	}
	onRS1[0].c.Close()
	waitOut("1 connection left")
	onRS1[1].c.Close()
	select {
	case err := <-exited:
		if err != nil || !strings.Contains(dout.String(), "drained: "+svcWeb+" "+f.rs[0].String()+" has no connections left") {
			t.Errorf("govs ctl drain: %v\nstdout:\n%s\nstderr:\n%s", err, dout.String(), derr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("govs ctl drain still waiting 20s after the last connection closed:\n%s", dout.String())
	}
	if rs := f.list().real(t, svcWeb, f.rs[0]); rs.Weight != 0 || rs.ActiveConnections+rs.InactiveConnections != 0 {
		t.Errorf("after the drain: %+v, want weight 0 and no connections", rs)
	}
	f.g.stop()
}

// TestCtlDrainTimeWait: connections that have closed wait out TIME_WAIT (here 60 s) in the table
// as inactive entries; they carry nothing, and `govs ctl drain` says the real server is drained
// at once instead of waiting for them to expire (it waited the whole TIME_WAIT before).
func TestCtlDrainTimeWait(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixtureTimeouts(t, "tcp_time_wait = \"60s\"\n")
	for n := 0; n < 3; {
		h, srv := f.hold(f.web, 0)
		h.c.Close()
		if srv == 0 {
			n++
		}
	}
	out, stderr, code := f.govs(20*time.Second, "ctl", "drain", "-timeout", "5s", svcWeb, f.rs[0].String())
	want := "drained: " + svcWeb + " " + f.rs[0].String() + " has no connections left but"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "in TIME_WAIT or CLOSE, which carry nothing") {
		t.Errorf("govs ctl drain with only closed connections: exit %d, want 0 and %q\nstdout:\n%s\nstderr:\n%s", code, want, out, stderr)
	}
	if rs := f.list().real(t, svcWeb, f.rs[0]); rs.Weight != 0 || rs.InactiveConnections == 0 {
		t.Errorf("after the drain: %+v, want weight 0 and the closed connections still listed", rs)
	}
	f.g.stop()
}

// TestCtlReload: `govs ctl reload` applies the file as SIGHUP does, or rejects it with file:line,
// the running configuration staying.
func TestCtlReload(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	next := f.cfg
	next.Socket = f.g.cfg.Socket
	next.VS = append([]vsConfig(nil), f.cfg.VS...)
	next.VS[0].Weights = []int{4, 1}
	if err := os.WriteFile(f.g.cfgPath, []byte(next.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := f.mustGovs("ctl", "reload")
	if !regexp.MustCompile(`^reloaded ` + regexp.QuoteMeta(f.g.cfgPath) + `: 3 virtual servers \(generation \d+\)\n$`).MatchString(out) {
		t.Errorf("govs ctl reload answered %q", out)
	}
	if rs := f.list().real(t, svcWeb, f.rs[0]); rs.Weight != 4 {
		t.Errorf("after govs ctl reload: weight %d, want the file's 4", rs.Weight)
	}
	broken := strings.Replace(next.toml(), "weight = 4\n", "weight = -4\n", 1)
	if err := os.WriteFile(f.g.cfgPath, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := f.govs(20*time.Second, "ctl", "reload")
	if code != 1 || !strings.Contains(stderr, f.g.cfgPath+":") || !strings.Contains(stderr, "weight: -4 is out of range") {
		t.Errorf("govs ctl reload of a broken file: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	l := f.list()
	if l.real(t, svcWeb, f.rs[0]).Weight != 4 || l.LastReload == nil || l.LastReload.Applied || !strings.Contains(l.LastReload.Error, "-4 is out of range") {
		t.Errorf("after the rejected reload: weight %d, last_reload %+v; want 4 and the rejection", l.real(t, svcWeb, f.rs[0]).Weight, l.LastReload)
	}
	if _, err := f.s.requestFrom(0, f.web, 5*time.Second); err != nil {
		t.Errorf("a request after the rejected reload: %v", err)
	}
	f.g.stop()
}

// TestCtlErrors: each mistake gets one line telling what to do, and changes nothing.
func TestCtlErrors(t *testing.T) {
	labtest.RequireRoot(t)
	f := newCtlFixture(t)
	fi, err := os.Stat(f.g.cfg.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("control socket %v, %v; want a socket of mode 0600", fi.Mode(), err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"weight", "tcp/198.18.0.100:81", f.rs[0].String(), "2"}, 1,
			"unknown virtual server tcp/198.18.0.100:81; known: " + svcWeb + ", " + svcSticky + ", " + svcWeb6},
		{[]string{"weight", svcWeb, "198.19.0.99:80", "2"}, 1,
			"virtual server " + svcWeb + " has no real server 198.19.0.99:80; its real servers: 198.19.0.11:80, 198.19.0.12:80"},
		{[]string{"weight", svcWeb, f.rs[0].String(), "70000"}, 1, "weight must be an integer from 0 to 65535"},
		{[]string{"weight", svcWeb, f.rs[0].String(), "x"}, 2, `weight "x" is not an integer`},
		{[]string{"drain", "198.18.0.100:80", f.rs[0].String()}, 1, `"198.18.0.100:80" is not a virtual server; write it as`},
		{[]string{"enable", svcWeb, "rs1"}, 1, `"rs1" is not a real server address`},
		{[]string{"zero", "now"}, 2, "zero takes no arguments"},
		{[]string{"restart"}, 2, `unknown operation "restart"`},
		{[]string{"-timeout", "1s", "zero"}, 2, "-timeout is for drain"},
	} {
		out, stderr, code := f.govs(10*time.Second, "ctl", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || out != "" {
			t.Errorf("govs ctl %v: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", tc.args, code, out, stderr, tc.code, tc.want)
		}
	}
	// Upper-case protocol and an IPv6 real server as govs list prints them.
	f.mustGovs("ctl", "disable", "TCP/[2001:2::100]:80", "[2001:2:0:1::11]:80")
	if rs := f.list().real(t, svcWeb6, f.rs6[0]); !rs.Disabled {
		t.Errorf("[2001:2:0:1::11]:80 not disabled: %+v", rs)
	}
	f.g.stop()
}
