//go:build linux

package e2e

import (
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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// Health checks end to end: real servers whose applications the test stops and starts, govs
// checking them from the balancer namespace, clients sending real TCP and UDP through the VIP.
// The checks run every healthInterval, so each test takes a few seconds.

const (
	healthInterval = 200 * time.Millisecond
	healthRise     = 2
	healthFall     = 2
	// healthSlack is what a busy two-core machine adds to a deadline the checks' timing sets:
	// scheduling of the check, of the daemon's publication and of the workers' pick-up.
	healthSlack = 400 * time.Millisecond

	hsPort    = 8081 // a test server's HTTP service (and /health)
	hsChkPort = 8082 // its separate health endpoint, which a test fails without touching the service
	hsUDPPort = 9001 // its UDP echo
)

// newHealthLab is a NAT topology with n real servers whose web service and health endpoint run,
// and the VIP's port 80.
func newHealthLab(t *testing.T, n int) (*lab.Topology, []*hsrv, netip.AddrPort) {
	t.Helper()
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: n, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	for _, s := range srv {
		s.startWeb()
		s.startCheck()
	}
	return topo, srv, netip.AddrPortFrom(topo.VIP4, 80)
}

// healthCheckTOML is the [virtual_server.health_check] table the tests use; extra adds keys.
func healthCheckTOML(kind, extra string) string {
	return fmt.Sprintf("  [virtual_server.health_check]\n  kind = %q\n  interval = %q\n  timeout = \"150ms\"\n  rise = %d\n  fall = %d\n%s",
		kind, healthInterval, healthRise, healthFall, extra)
}

// hsrv is one real server's applications, each started and stopped by the test: the HTTP service
// on hsPort (answering "/" with its name, "/health" with 200), a separate health endpoint on
// hsChkPort, and a UDP echo on hsUDPPort answering "name:payload".
type hsrv struct {
	t    *testing.T
	ns   *lab.NS
	name string
	addr netip.Addr

	mu         sync.Mutex
	web, check *http.Server
	udp        net.PacketConn
	wg         sync.WaitGroup
}

func newHsrvs(t *testing.T, topo *lab.Topology) []*hsrv {
	return newHsrvsAt(t, topo, topo.ServerAddrs4)
}

// newHsrvsAt is newHsrvs with the real servers known by addrs (topo.ServerAddrs6, say).
func newHsrvsAt(t *testing.T, topo *lab.Topology, addrs []netip.Addr) []*hsrv {
	var out []*hsrv
	for i, ns := range topo.Servers {
		h := &hsrv{t: t, ns: ns, name: fmt.Sprintf("rs%d", i+1), addr: addrs[i]}
		t.Cleanup(h.stopAll)
		out = append(out, h)
	}
	return out
}

func (h *hsrv) serve(port int) *http.Server {
	h.t.Helper()
	l, err := h.ns.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		h.t.Fatal(err)
	}
	mux := http.NewServeMux()
	body := []byte(h.name + "\n")
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		_ = srv.Serve(l)
	}()
	return srv
}

// startWeb starts the HTTP service; stopWeb kills it: the listener and every connection close, so
// new connections are refused.
func (h *hsrv) startWeb() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.web = h.serve(hsPort)
}

func (h *hsrv) stopWeb() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.web != nil {
		h.web.Close()
		h.web = nil
	}
}

func (h *hsrv) startCheck() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check = h.serve(hsChkPort)
}

func (h *hsrv) stopCheck() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.check != nil {
		h.check.Close()
		h.check = nil
	}
}

func (h *hsrv) startUDP() {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, err := h.ns.ListenPacket("udp", netip.AddrPortFrom(h.addr, hsUDPPort).String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.udp = c
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			} else if err != nil {
				continue
			}
			c.WriteTo(append([]byte(h.name+":"), buf[:n]...), from)
		}
	}()
}

func (h *hsrv) stopUDP() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.udp != nil {
		h.udp.Close()
		h.udp = nil
	}
}

func (h *hsrv) stopAll() {
	h.stopWeb()
	h.stopCheck()
	h.stopUDP()
	h.wg.Wait()
}

func (h *hsrv) ap(port uint16) netip.AddrPort { return netip.AddrPortFrom(h.addr, port) }

// httpGet makes one request on a new connection from the client namespace and returns the name
// of the server that answered.
func httpGet(topo *lab.Topology, target netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := topo.Client.Dial(ctx, "tcp", target.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	head, body, _ := strings.Cut(string(b), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200") && !strings.HasPrefix(head, "HTTP/1.1 200") {
		return "", fmt.Errorf("answer %q", b)
	}
	return strings.TrimSpace(body), nil
}

// spread makes n requests to target one after another and counts the answers by server name;
// every failure fails the test.
func spread(t *testing.T, topo *lab.Topology, target netip.AddrPort, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		name, err := httpGet(topo, target, 3*time.Second)
		if err != nil {
			t.Fatalf("request to %s: %v", target, err)
		}
		got[name]++
	}
	return got
}

// healthList is what `govs list -json` says of the health checks.
type healthList struct {
	VirtualServers []struct {
		Address     string `json:"address"`
		Protocol    string `json:"protocol"`
		Quorum      int    `json:"quorum"`
		BelowQuorum bool   `json:"below_quorum"`
		RealServers []struct {
			Address     string `json:"address"`
			Weight      int    `json:"weight"`
			Health      string `json:"health"`
			HealthError string `json:"health_error"`
			Sorry       bool   `json:"sorry_server"`
			Standby     bool   `json:"standby"`
		} `json:"real_servers"`
	} `json:"virtual_servers"`
}

func (g *govsProc) list() (healthList, error) {
	var l healthList
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, govsPath, "list", "-control", g.cfg.Socket, "-json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return l, fmt.Errorf("govs list: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return l, json.Unmarshal(out, &l)
}

// realHealth returns the health, weight and last error `govs list -json` gives real server rs of
// the virtual server service ("tcp/198.18.0.100:80").
func (g *govsProc) realHealth(service string, rs netip.AddrPort) (health string, weight int, lastErr string, err error) {
	l, err := g.list()
	if err != nil {
		return "", 0, "", err
	}
	for _, vs := range l.VirtualServers {
		if vs.Protocol+"/"+vs.Address != service {
			continue
		}
		for _, r := range vs.RealServers {
			if r.Address == rs.String() && !r.Sorry {
				return r.Health, r.Weight, r.HealthError, nil
			}
		}
	}
	return "", 0, "", fmt.Errorf("govs list has no real server %s under %s", rs, service)
}

// waitHealth waits until real server rs of service has health want, and returns how long that took;
// it fails the test after within.
func (g *govsProc) waitHealth(service string, rs netip.AddrPort, want string, within time.Duration) time.Duration {
	g.t.Helper()
	start := time.Now()
	for {
		h, _, _, err := g.realHealth(service, rs)
		if err == nil && h == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			g.t.Fatalf("%s %s: health %q (%v), want %q within %v", service, rs, h, err, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHealthHTTP: a real server whose HTTP check fails from the start never gets a connection; once
// it answers it joins within interval x rise. Under a steady load of new connections, a killed real
// server stops getting them within interval x fall + one interval, and no request started after
// that fails; restarted, it gets them again within interval x rise. Each change is logged once.
func TestHealthHTTP(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 3, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	srv[0].startWeb()
	srv[1].startWeb() // srv[2]'s service is not running yet
	vip := netip.AddrPortFrom(topo.VIP4, 80)
	const service = "tcp/198.18.0.100:80"
	vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "rr", Method: "nat",
		Reals:   []netip.AddrPort{srv[0].ap(hsPort), srv[1].ap(hsPort), srv[2].ap(hsPort)},
		Weights: []int{1, 1, 1},
		Extra:   healthCheckTOML("http", "  path = \"/health\"\n")}
	g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}})

	// At start govs waited for the first results: the two servers up, the third down.
	for i, want := range []string{"up", "up", "down"} {
		if h, _, e, err := g.realHealth(service, srv[i].ap(hsPort)); err != nil || h != want {
			t.Fatalf("%s right after start: health %q (%q, %v), want %q", srv[i].name, h, e, err, want)
		}
	}
	if h, _, e, _ := g.realHealth(service, srv[2].ap(hsPort)); !strings.Contains(e, "connection refused") {
		t.Errorf("%s: health %s, last error %q; want it to say the connection was refused", srv[2].name, h, e)
	}
	// Each worker schedules on its own, so rr spreads evenly per worker, not in total.
	if got := spread(t, topo, vip, 20); got["rs3"] != 0 || got["rs1"] == 0 || got["rs2"] == 0 {
		t.Fatalf("requests went %v, want them to rs1 and rs2, none to rs3 (down)", got)
	}

	srv[2].startWeb()
	if took := g.waitHealth(service, srv[2].ap(hsPort), "up", 5*time.Second); took > healthInterval*(healthRise+1)+healthSlack {
		t.Errorf("rs3 came up %v after its service started, want within interval x rise (+ one interval to its next check)", took)
	}
	if got := spread(t, topo, vip, 30); got["rs3"] < 5 {
		t.Fatalf("requests went %v, want about 10 each, rs3 included", got)
	}

	logBefore := killAndRevive(t, g, topo, vip, service, srv, 1)

	out := g.out.String()
	for _, want := range []string{
		"virtual server tcp/198.18.0.100:80: real server 198.19.0.12:8081 down: ",
		"virtual server tcp/198.18.0.100:80: real server 198.19.0.12:8081 up service=tcp/198.18.0.100:80 real_server=198.19.0.12:8081 state=up prev=down\n",
	} {
		if n := strings.Count(out[logBefore:], want); n != 1 {
			t.Errorf("after the kill govs logged %q %d times, want once", want, n)
		}
	}
	if want := "virtual server tcp/198.18.0.100:80: real server 198.19.0.13:8081 down: "; strings.Count(out, want) != 1 {
		t.Errorf("govs logged %q %d times, want once", want, strings.Count(out, want))
	}
	g.stop()
}

// killAndRevive checks the goals for a real server that dies and comes back: under a steady load
// of new connections to vip (three clients without pause), srv[victim]'s service is killed; it
// must stop getting new connections within interval x fall + one interval, after which no request
// may fail; restarted, it must be up within interval x rise (+ one interval to its next check) and
// get its share again. It returns the length of govs's log at the kill.
func killAndRevive(t *testing.T, g *govsProc, topo *lab.Topology, vip netip.AddrPort, service string, srv []*hsrv, victim int) (logBefore int) {
	t.Helper()
	dead := srv[victim]
	// The load: new connections without pause, each noted with its start and outcome.
	type result struct {
		start time.Time
		srv   string
		err   error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				name, err := httpGet(topo, vip, 2*time.Second)
				mu.Lock()
				results = append(results, result{start, name, err})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	logBefore = len(g.out.String())
	killed := time.Now()
	dead.stopWeb()
	g.waitHealth(service, dead.ap(hsPort), "down", 5*time.Second)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	deadline := killed.Add(healthInterval*(healthFall+1) + healthSlack)
	var before, after, failedAfter, toDead int
	for _, r := range results {
		if r.start.Before(deadline) {
			before++
			continue
		}
		after++
		if r.err != nil {
			failedAfter++
			if failedAfter <= 3 {
				t.Errorf("request started %v after the kill failed: %v", r.start.Sub(killed).Round(time.Millisecond), r.err)
			}
		} else if r.srv == dead.name {
			toDead++
		}
	}
	t.Logf("%d requests before %v after the kill, %d after", before, deadline.Sub(killed), after)
	if after < 20 || failedAfter > 0 || toDead > 0 {
		t.Fatalf("after interval x fall + one interval (+%v): %d requests, %d failed, %d answered by the killed server; want many, none failed",
			healthSlack, after, failedAfter, toDead)
	}
	if h, _, e, _ := g.realHealth(service, dead.ap(hsPort)); !strings.Contains(e, "connection refused") {
		t.Errorf("%s: health %s, last error %q; want it to say the connection was refused", dead.name, h, e)
	}

	dead.startWeb()
	if took := g.waitHealth(service, dead.ap(hsPort), "up", 5*time.Second); took > healthInterval*(healthRise+1)+healthSlack {
		t.Errorf("%s came back %v after its restart, want within interval x rise (+ one interval to its next check)", dead.name, took)
	}
	n := 10 * len(srv)
	if got := spread(t, topo, vip, n); got[dead.name] < 5 {
		t.Fatalf("after %s came back %d requests went %v, want about %d each", dead.name, n, got, n/len(srv))
	}
	return logBefore
}

// TestHealthUDP: when a UDP real server dies, the entries of its flows are dropped: a client that
// goes on sending from the same socket reaches a server that is up with its next datagram.
func TestHealthUDP(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 2, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	for _, s := range srv {
		s.startUDP()
	}
	vip := netip.AddrPortFrom(topo.VIP4, hsUDPPort)
	const service = "udp/198.18.0.100:9001"
	vs := vsConfig{Address: vip, Protocol: "udp", Scheduler: "rr", Method: "nat",
		Reals: []netip.AddrPort{srv[0].ap(hsUDPPort), srv[1].ap(hsUDPPort)}, Weights: []int{1, 1},
		Extra: healthCheckTOML("udp", "  send = \"ping\"\n  expect = \"^rs[0-9]+:ping$\"\n")}
	g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}})
	for _, s := range srv {
		g.waitHealth(service, s.ap(hsUDPPort), "up", 5*time.Second)
	}

	c, err := topo.Client.Dial(context.Background(), "udp", vip.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange := func(payload string) (string, error) {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(payload)); err != nil {
			return "", err
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return "", err
		}
		name, got, _ := strings.Cut(string(buf[:n]), ":")
		if got != payload {
			return "", fmt.Errorf("answer %q to %q", buf[:n], payload)
		}
		return name, nil
	}
	first, err := exchange("a")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := exchange("b"); err != nil || again != first {
		t.Fatalf("the flow's second datagram: %q, %v; want it answered by %s too", again, err, first)
	}
	dead := srv[0]
	if first == srv[1].name {
		dead = srv[1]
	}
	dead.stopUDP()
	g.waitHealth(service, dead.ap(hsUDPPort), "down", 5*time.Second)
	// The flow's entry still names the dead server until its next datagram; that one must be
	// scheduled afresh and answered.
	name, err := exchange("c")
	if err != nil || name == dead.name {
		t.Fatalf("the flow's first datagram after %s died: %q, %v; want an answer from the server that is up", dead.name, name, err)
	}
	if again, err := exchange("d"); err != nil || again != name {
		t.Fatalf("the next datagram: %q, %v; want it answered by %s (the flow's new server)", again, err, name)
	}
	g.stop()
}

// TestHealthQuiesce: with on_failure = "quiesce" a real server whose check fails gets weight 0: its
// established connections carry on, new connections go elsewhere; once it passes again it gets its
// weight back.
func TestHealthQuiesce(t *testing.T) {
	labtest.RequireRoot(t)
	topo, srv, vip := newHealthLab(t, 2)
	const service = "tcp/198.18.0.100:80"
	vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "rr", Method: "nat",
		Reals: []netip.AddrPort{srv[0].ap(hsPort), srv[1].ap(hsPort)}, Weights: []int{2, 2},
		Extra: healthCheckTOML("http", fmt.Sprintf("  port = %d\n  on_failure = \"quiesce\"\n", hsChkPort))}
	g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}})

	// A keep-alive client: one connection for all its requests.
	var dials atomic.Int64
	ka := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return topo.Client.Dial(ctx, network, addr)
		},
		MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute,
	}}
	kaGet := func() (string, error) {
		body, err := getOnce(ka, "http://"+vip.String()+"/", 3*time.Second)
		return strings.TrimSpace(body), err
	}
	first, err := kaGet()
	if err != nil {
		t.Fatal(err)
	}
	quiesced := srv[0]
	if first == srv[1].name {
		quiesced = srv[1]
	}
	quiesced.stopCheck()
	g.waitHealth(service, quiesced.ap(hsPort), "down", 5*time.Second)
	if _, w, _, _ := g.realHealth(service, quiesced.ap(hsPort)); w != 0 {
		t.Errorf("quiesced %s has weight %d, want 0", quiesced.name, w)
	}
	for i := range 5 {
		if name, err := kaGet(); err != nil || name != quiesced.name {
			t.Fatalf("keep-alive request %d after quiescing: %q, %v; want %s on the same connection", i, name, err, quiesced.name)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the keep-alive client dialled %d times, want once: its connection must carry on", n)
	}
	if got := spread(t, topo, vip, 10); got[quiesced.name] != 0 {
		t.Fatalf("new connections went %v, want none to quiesced %s", got, quiesced.name)
	}
	quiesced.startCheck()
	g.waitHealth(service, quiesced.ap(hsPort), "up", 5*time.Second)
	if _, w, _, _ := g.realHealth(service, quiesced.ap(hsPort)); w != 2 {
		t.Errorf("%s back up has weight %d, want 2", quiesced.name, w)
	}
	if got := spread(t, topo, vip, 10); got[quiesced.name] < 2 {
		t.Fatalf("new connections went %v, want about 5 to %s again", got, quiesced.name)
	}
	g.stop()
}

// TestHealthQuorumSorry: a virtual server below its quorum sends its new connections to its sorry
// server, and one without a sorry server drops them (counted as no_quorum); both take the real
// servers back once enough are up.
func TestHealthQuorumSorry(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 3, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	for _, s := range srv {
		s.startWeb()
	}
	srv[0].startCheck()
	srv[1].startCheck()
	sorryVIP := netip.AddrPortFrom(topo.VIP4, 80)
	quorumVIP := netip.AddrPortFrom(topo.VIP4, 8080)
	reals := []netip.AddrPort{srv[0].ap(hsPort), srv[1].ap(hsPort)}
	check := healthCheckTOML("http", fmt.Sprintf("  port = %d\n", hsChkPort))
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{
		{Address: sorryVIP, Protocol: "tcp", Scheduler: "rr", Method: "nat", Reals: reals, Weights: []int{1, 1},
			Extra: fmt.Sprintf("sorry_server = %q\nquorum = 2\n", srv[2].ap(hsPort)) + check},
		{Address: quorumVIP, Protocol: "tcp", Scheduler: "rr", Method: "nat", Reals: reals, Weights: []int{1, 1},
			Extra: "quorum = 2\n" + check},
	}}
	g := startGovs(t, topo, cfg)
	if got := spread(t, topo, sorryVIP, 10); got["rs1"] == 0 || got["rs2"] == 0 || got["rs3"] != 0 {
		t.Fatalf("quorum met: requests went %v, want them to rs1 and rs2, none to the sorry server", got)
	}
	spread(t, topo, quorumVIP, 4)

	srv[0].stopCheck()
	g.waitHealth("tcp/198.18.0.100:80", srv[0].ap(hsPort), "down", 5*time.Second)
	g.waitHealth("tcp/198.18.0.100:8080", srv[0].ap(hsPort), "down", 5*time.Second)
	if got := spread(t, topo, sorryVIP, 6); got["rs3"] != 6 {
		t.Fatalf("below quorum: requests went %v, want all to the sorry server rs3", got)
	}
	before := g.mustStats().Drops["no_quorum"]
	if name, err := httpGet(topo, quorumVIP, time.Second); err == nil {
		t.Fatalf("below quorum without a sorry server, a new connection reached %s", name)
	}
	if after := g.mustStats().Drops["no_quorum"]; after <= before {
		t.Errorf("no_quorum drops %d before the refused connection, %d after; want more", before, after)
	}
	l, err := g.list()
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range l.VirtualServers {
		if vs.Quorum != 2 || !vs.BelowQuorum {
			t.Errorf("govs list: %s quorum %d below %v, want 2, below", vs.Address, vs.Quorum, vs.BelowQuorum)
		}
	}

	srv[0].startCheck()
	g.waitHealth("tcp/198.18.0.100:80", srv[0].ap(hsPort), "up", 5*time.Second)
	g.waitHealth("tcp/198.18.0.100:8080", srv[0].ap(hsPort), "up", 5*time.Second)
	if got := spread(t, topo, sorryVIP, 10); got["rs3"] != 0 {
		t.Fatalf("quorum met again: requests went %v, want none to the sorry server", got)
	}
	spread(t, topo, quorumVIP, 4)
	out := g.out.String()
	for _, want := range []string{
		"virtual server tcp/198.18.0.100:80: sorry server 198.19.0.13:8081 takes the new connections",
		"virtual server tcp/198.18.0.100:8080: below its quorum",
		"virtual server tcp/198.18.0.100:80: enough real servers are up",
		"virtual server tcp/198.18.0.100:8080: enough real servers are up",
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("govs logged %q %d times, want once", want, n)
		}
	}
	g.stop()
}

// TestHealthReload: a reload that leaves a real server's check as it was (weights changed, a real
// server added) keeps its health state, with no change logged and no request failing; one that
// changes its check keeps it too. A real server the reload adds gets no connection before its
// check passes.
func TestHealthReload(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 3, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	for _, s := range srv {
		s.startWeb()
	}
	srv[0].startCheck()
	srv[1].startCheck() // srv[2]'s check fails until the test starts it
	vip := netip.AddrPortFrom(topo.VIP4, 80)
	const service = "tcp/198.18.0.100:80"
	gen := func(reals int, interval string) govsConfig {
		check := healthCheckTOML("http", fmt.Sprintf("  port = %d\n", hsChkPort))
		check = strings.Replace(check, fmt.Sprintf("%q", healthInterval), fmt.Sprintf("%q", interval), 1)
		vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "wrr", Method: "nat", Extra: check}
		for i := range reals {
			vs.Reals = append(vs.Reals, srv[i].ap(hsPort))
			vs.Weights = append(vs.Weights, 1+reals%2+i)
		}
		return govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}}
	}
	g := startGovs(t, topo, gen(2, healthInterval.String()))
	for _, s := range srv[:2] {
		g.waitHealth(service, s.ap(hsPort), "up", 5*time.Second)
	}

	// Poll the health of rs1 and rs2 and make requests while the reloads run.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed, toRS3 atomic.Int64
	var flapMu sync.Mutex
	var flaps []string
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, s := range srv[:2] {
				if h, _, _, err := g.realHealth(service, s.ap(hsPort)); err == nil && h != "up" {
					flapMu.Lock()
					flaps = append(flaps, s.name+" "+h)
					flapMu.Unlock()
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			name, err := httpGet(topo, vip, 2*time.Second)
			if err != nil {
				failed.Add(1)
			} else if name == "rs3" {
				toRS3.Add(1)
			}
		}
	}()
	logBefore := g.out.String()
	g.reload(gen(3, healthInterval.String())) // weights change, rs3 added with a failing check
	time.Sleep(3 * healthInterval)
	g.reload(gen(3, "300ms")) // every check changes
	time.Sleep(3 * healthInterval)
	if h, _, _, err := g.realHealth(service, srv[2].ap(hsPort)); err != nil || h != "down" {
		t.Errorf("rs3, added with a failing check: health %q (%v), want down", h, err)
	}
	close(stop)
	wg.Wait()
	if len(flaps) > 0 || failed.Load() > 0 || toRS3.Load() > 0 {
		t.Fatalf("across the reloads: health of rs1/rs2 seen as %q, %d requests failed, %d went to rs3 (not yet healthy); want always up, none",
			flaps, failed.Load(), toRS3.Load())
	}
	logged := strings.TrimPrefix(g.out.String(), logBefore)
	for _, s := range srv[:2] {
		if strings.Contains(logged, "real server "+s.ap(hsPort).String()+" ") {
			t.Errorf("a reload logged a change of %s:\n%s", s.name, logged)
		}
	}

	srv[2].startCheck()
	g.waitHealth(service, srv[2].ap(hsPort), "up", 5*time.Second)
	if got := spread(t, topo, vip, 30); got["rs3"] == 0 {
		t.Fatalf("rs3 up: requests went %v, want some to rs3", got)
	}
	g.stop()
}

// TestHealthSlowStartNotify: a real server back from down under slow_start gets its weight in
// steps, published as they come, up to its full weight after slow_start; the notify command runs
// on every change, with the change in its environment.
func TestHealthSlowStartNotify(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 2, Prefix: "govs-e2e"})
	srv := newHsrvs(t, topo)
	for _, s := range srv {
		s.startWeb()
		s.startCheck()
	}
	dir := t.TempDir()
	notifyLog := filepath.Join(dir, "notify.log")
	script := filepath.Join(dir, "notify")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$GOVS_EVENT $GOVS_VIRTUAL_SERVER $GOVS_REAL_SERVER prev=$GOVS_PREVIOUS_STATE\" >> "+notifyLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	vip := netip.AddrPortFrom(topo.VIP4, 80)
	const service = "tcp/198.18.0.100:80"
	const slow = 1500 * time.Millisecond
	vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "wrr", Method: "nat",
		Reals: []netip.AddrPort{srv[0].ap(hsPort), srv[1].ap(hsPort)}, Weights: []int{100, 100},
		Extra: healthCheckTOML("http", fmt.Sprintf("  port = %d\n  slow_start = %q\n  notify = [%q]\n", hsChkPort, slow, script))}
	g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}})
	// Up from the start: full weight at once (slow start is for coming back).
	if _, w, _, _ := g.realHealth(service, srv[0].ap(hsPort)); w != 100 {
		t.Fatalf("rs1 up at start has weight %d, want 100", w)
	}
	srv[0].stopCheck()
	g.waitHealth(service, srv[0].ap(hsPort), "down", 5*time.Second)
	srv[0].startCheck()
	g.waitHealth(service, srv[0].ap(hsPort), "up", 5*time.Second)
	back := time.Now()
	var seen []int
	for time.Since(back) < slow+healthSlack+time.Second {
		_, w, _, err := g.realHealth(service, srv[0].ap(hsPort))
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != w {
			seen = append(seen, w)
		}
		if w == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("rs1's weight while back: %v", seen)
	if len(seen) < 4 || seen[len(seen)-1] != 100 || seen[0] >= 50 {
		t.Fatalf("rs1's weight went %v after it came back; want it to start low and climb in several steps to 100", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("rs1's weight went %v: down again", seen)
		}
	}
	if took := time.Since(back); took > slow+healthSlack {
		t.Errorf("rs1 reached its full weight %v after it came back, want within slow_start %v", took, slow)
	}

	want := "up tcp/198.18.0.100:80 198.19.0.11:8081 prev=unknown\n" +
		"down tcp/198.18.0.100:80 198.19.0.11:8081 prev=up\n" +
		"up tcp/198.18.0.100:80 198.19.0.11:8081 prev=down\n"
	var got string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(notifyLog)
		var mine []string
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if strings.Contains(l, "198.19.0.11:8081") {
				mine = append(mine, l)
			}
		}
		if got = strings.Join(mine, ""); got == want {
			break
		}
	}
	if got != want {
		t.Errorf("notify ran for rs1:\n%s\nwant:\n%s", got, want)
	}
	g.stop()
}

// TestHealthDR: health checks of direct-routing real servers (the VIP on their lo, as the lab's DR
// topology sets them up), by TCP and by HTTP: a dead server leaves within interval x fall + one
// interval and no request fails after that; it comes back within interval x rise.
func TestHealthDR(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "dr", Servers: 2, Prefix: "govs-e2e"})
	testHealthFailover(t, topo, topo.VIP4, newHsrvs(t, topo), "dr")
}

// TestHealthIPv6: the same with an IPv6 VIP and IPv6 real servers (NAT), checked over IPv6.
func TestHealthIPv6(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", IPv6: true, Servers: 2, Prefix: "govs-e2e"})
	testHealthFailover(t, topo, topo.VIP6, newHsrvsAt(t, topo, topo.ServerAddrs6), "nat")
}

// testHealthFailover runs killAndRevive on srv behind vip:hsPort with method, once per check kind
// (tcp, http), each with a govs of its own.
func testHealthFailover(t *testing.T, topo *lab.Topology, vipAddr netip.Addr, srv []*hsrv, method string) {
	for _, s := range srv {
		s.startWeb()
	}
	vip := netip.AddrPortFrom(vipAddr, hsPort) // DR cannot change the port: the VIP's is the servers'
	service := "tcp/" + vip.String()
	for _, c := range []struct{ kind, extra string }{{"tcp", ""}, {"http", "  path = \"/health\"\n"}} {
		t.Run(c.kind, func(t *testing.T) {
			vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "rr", Method: method, Extra: healthCheckTOML(c.kind, c.extra)}
			for _, s := range srv {
				vs.Reals = append(vs.Reals, s.ap(hsPort))
				vs.Weights = append(vs.Weights, 1)
			}
			g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}})
			for _, s := range srv {
				if h, _, e, err := g.realHealth(service, s.ap(hsPort)); err != nil || h != "up" {
					t.Fatalf("%s right after start: health %q (%q, %v), want up", s.name, h, e, err)
				}
			}
			if got := spread(t, topo, vip, 10*len(srv)); len(got) != len(srv) {
				t.Fatalf("requests went %v, want them to every real server", got)
			}
			victim := srv[len(srv)-1]
			logBefore := killAndRevive(t, g, topo, vip, service, srv, len(srv)-1)
			logged := g.out.String()[logBefore:]
			for _, want := range []string{
				fmt.Sprintf("virtual server %s: real server %s down: ", service, victim.ap(hsPort)),
				fmt.Sprintf("virtual server %s: real server %s up service=", service, victim.ap(hsPort)),
			} {
				if n := strings.Count(logged, want); n != 1 {
					t.Errorf("govs logged %q %d times, want once:\n%s", want, n, logged)
				}
			}
			g.stop()
		})
	}
}

// TestHealthExpireNodestConn: the established TCP connections of a real server that goes down
// (its health check fails while its service goes on) follow [conntrack] expire_nodest_conn: with
// false (the default) they carry on; with true they are dropped at their next packet, counted as
// real_server_down, and stall.
func TestHealthExpireNodestConn(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo) // the service: /bytes for a long-lived stream
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	chk := newHsrvs(t, topo)[0] // the health endpoint, on a port of its own
	vip := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)
	real := netip.AddrPortFrom(topo.ServerAddrs4[0], lab.HTTPPort)
	const service = "tcp/198.18.0.100:80"
	for _, expire := range []bool{false, true} {
		t.Run(fmt.Sprintf("expire_nodest_conn=%v", expire), func(t *testing.T) {
			chk.startCheck()
			defer chk.stopCheck()
			vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "rr", Method: "nat", Reals: []netip.AddrPort{real}, Weights: []int{1},
				Extra: healthCheckTOML("http", fmt.Sprintf("  port = %d\n  path = \"/health\"\n", hsChkPort))}
			g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs},
				Tail: fmt.Sprintf("[conntrack]\nexpire_nodest_conn = %v\n", expire)})
			st, err := openStream(topo, vip)
			if err != nil {
				t.Fatal(err)
			}
			defer st.stop()
			time.Sleep(500 * time.Millisecond)
			if err := st.check(); err != nil {
				t.Fatalf("the stream before the check failed: %v", err)
			}

			chk.stopCheck()
			g.waitHealth(service, real, "down", 5*time.Second)
			atDown := st.got.Load()
			if !expire {
				time.Sleep(2 * time.Second)
				if err := st.check(); err != nil || st.got.Load() <= atDown {
					t.Fatalf("the stream after its real server went down: %v, %d bytes then, %d now; want it to carry on", err, atDown, st.got.Load())
				}
				if d := g.mustStats().Drops["real_server_down"]; d != 0 {
					t.Errorf("%d frames dropped as real_server_down, want none", d)
				}
				g.stop()
				return
			}
			// The stream stalls at once; its reader gives up after streamStall.
			deadline := time.Now().Add(streamStall + 5*time.Second)
			for st.check() == nil {
				if time.Now().After(deadline) {
					t.Fatalf("the stream still runs %v after its real server went down (%d bytes then, %d now)", time.Since(deadline.Add(-streamStall-5*time.Second)), atDown, st.got.Load())
				}
				time.Sleep(100 * time.Millisecond)
			}
			// The client's socket buffer holds what arrived before the drop: at most a few windows.
			if after := st.got.Load() - atDown; after > 1<<20 {
				t.Errorf("the stream got %d bytes after its real server went down, want the connection dropped at once", after)
			}
			if d := g.mustStats().Drops["real_server_down"]; d == 0 {
				t.Errorf("no frame dropped as real_server_down: %v", nonZeroDrops(g.mustStats()))
			}
			g.stop()
		})
	}
}

// TestHealthSourceHashing: under sh (and so mh) without the fallback flag, the clients of a real
// server its health check took out go to the others, as when keepalived deletes it from the
// kernel's table, and come back to it once it is up again; the other clients stay where they are.
// govs refused them (no_real_server) for as long as the server was down.
func TestHealthSourceHashing(t *testing.T) {
	labtest.RequireRoot(t)
	topo, srv, vip := newHealthLab(t, 3)
	const service = "tcp/198.18.0.100:80"
	reals := []netip.AddrPort{srv[0].ap(hsPort), srv[1].ap(hsPort), srv[2].ap(hsPort)}
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{
		{Address: vip, Protocol: "tcp", Scheduler: "sh", Method: "nat", Reals: reals, Weights: []int{1, 1, 1},
			Extra: healthCheckTOML("http", fmt.Sprintf("  port = %d\n", hsChkPort))},
	}}
	g := startGovs(t, topo, cfg)
	for _, r := range reals {
		g.waitHealth(service, r, "up", 5*time.Second)
	}
	got := spread(t, topo, vip, 6)
	if len(got) != 1 {
		t.Fatalf("sh sent one client's connections to %v, want one server", got)
	}
	var pinned string
	for name := range got {
		pinned = name
	}
	i := slices.IndexFunc(srv, func(s *hsrv) bool { return s.name == pinned })
	if i < 0 {
		t.Fatalf("no test server is called %q", pinned)
	}
	srv[i].stopCheck()
	g.waitHealth(service, reals[i], "down", 5*time.Second)
	before := g.mustStats().Drops["no_real_server"]
	got = spread(t, topo, vip, 6)
	if len(got) != 1 || got[pinned] != 0 {
		t.Errorf("with %s down the client's connections went %v, want all to one other server", pinned, got)
	}
	if after := g.mustStats().Drops["no_real_server"]; after != before {
		t.Errorf("%d new connections dropped as no_real_server with %s down and two servers up", after-before, pinned)
	}
	srv[i].startCheck()
	g.waitHealth(service, reals[i], "up", 5*time.Second)
	if got = spread(t, topo, vip, 6); got[pinned] != 6 {
		t.Errorf("with %s up again the client's connections went %v, want all back to it", pinned, got)
	}
	g.stop()
}
