//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestReloadChurn keeps opening new connections through the VIP while govs is reloaded about every
// second, each reload changing the weights, adding a real server and removing another. A server is
// added either for the first time (a new address, not yet in the balancer's neighbour table) or
// again, some reloads after it was removed, while its connections still drain: it then keeps its
// ID and its connections, and clients reuse their tuples for new connections. No connection may
// fail, and no frame may be dropped as unresolved_neighbor: a real server whose next hop is not
// resolved gets no new connections, and a reload must not make a resolved one unresolved.
//
// Under direct routing the replies do not pass govs, so what is tested is the scheduling of new
// connections; under NAT also that a reload keeps admitting the replies of every real server that
// still has connections, the removed ones draining included.
func TestReloadChurn(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"dr", "nat"} {
		t.Run(method, func(t *testing.T) { testReloadChurn(t, method) })
	}
}

func testReloadChurn(t *testing.T, method string) {
	const (
		servers = 5 // the pool; three of them are in the service at a time
		active  = 3
		reloads = 6
		conc    = 4 // goroutines opening connections without pause
		marks   = 80
	)
	topo := labtest.NewForTest(t, lab.Options{Method: method, Servers: servers, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	vip := netip.AddrPortFrom(s.vip, lab.HTTPPort)

	// Generation k of the service: servers k, k+1, k+2 of the pool (mod servers), with weights that
	// change every generation. Each reload adds one server and removes another.
	members := func(k int) []int {
		var m []int
		for i := range active {
			m = append(m, (k+i)%servers)
		}
		return m
	}
	gen := func(k int) govsConfig {
		vs := vsConfig{Address: vip, Protocol: "tcp", Scheduler: "wrr", Method: method}
		for i, m := range members(k) {
			vs.Reals = append(vs.Reals, netip.AddrPortFrom(s.reals[m], lab.HTTPPort))
			vs.Weights = append(vs.Weights, 1+(k+i)%3)
		}
		return govsConfig{Interfaces: topo.BalancerIfaces, Workers: 2, VS: []vsConfig{vs}}
	}
	g := startGovs(t, topo, gen(0))

	var ok, failed, slow atomic.Int64
	var errMu sync.Mutex
	var errs []string
	fail := func(err error) {
		failed.Add(1)
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
		}
	}
	// request makes one connection (from source port port, 0 for any) and returns the index of
	// the real server that answered.
	request := func(port int) (int, error) {
		start := time.Now()
		srv, err := s.requestFrom(port, vip, 5*time.Second)
		if err != nil {
			return -1, err
		}
		if time.Since(start) > 900*time.Millisecond {
			slow.Add(1) // a SYN was lost and sent again
		}
		ok.Add(1)
		return srv, nil
	}

	// The background load: new connections from the kernel's ephemeral ports, without pause.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := request(0); err != nil {
					fail(err)
				}
			}
		}()
	}

	// Marked tuples: after each reload, marks connections from a block of source ports of its own;
	// the real server each one went to is noted. A client reusing such a tuple for a new
	// connection after that server was removed and added back finds govs's entry of the old
	// connection, bound to the server's (kept) ID.
	type mark struct{ port, srv int }
	var marked []mark
	markGen := func(k int) {
		for i := range marks {
			port := 20000 + k*marks + i
			srv, err := request(port)
			if err != nil {
				fail(fmt.Errorf("marking connection from port %d: %w", port, err))
				continue
			}
			marked = append(marked, mark{port, srv})
		}
	}
	markGen(0)
	for k := 1; k <= reloads; k++ {
		time.Sleep(time.Second)
		// The server this reload adds: back after a removal, when marked tuples point at it.
		added := members(k)[active-1]
		var again []int
		rest := marked[:0]
		for _, m := range marked {
			if m.srv == added {
				again = append(again, m.port)
			} else {
				rest = append(rest, m)
			}
		}
		marked = rest
		// Reuse them around the reload: govs applies it some tens of milliseconds after SIGHUP.
		var burst sync.WaitGroup
		for i, port := range again {
			burst.Add(1)
			go func() {
				defer burst.Done()
				time.Sleep(time.Duration(i) * 300 * time.Millisecond / time.Duration(len(again)))
				if _, err := request(port); err != nil {
					fail(fmt.Errorf("new connection on a tuple last used with %s: %w", srvs.Names[added], err))
				}
			}()
		}
		g.reload(gen(k))
		burst.Wait()
		t.Logf("reload %d: added %s (%d tuples reused)", k, srvs.Names[added], len(again))
		g.waitResolved(10 * time.Second)
		markGen(k)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	st := g.mustStats()
	t.Logf("%d connections completed (%d after a lost SYN), %d failed; drops %v", ok.Load(), slow.Load(), failed.Load(), nonZeroDrops(st))
	if ok.Load() < 500 {
		t.Errorf("only %d connections completed in %d reloads: the load did not run", ok.Load(), reloads)
	}
	if f := failed.Load(); f > 0 {
		t.Errorf("%d new connections failed during the reloads, e.g.:\n%s", f, strings.Join(errs, "\n"))
	}
	if d := st.Drops["unresolved_neighbor"]; d > 0 {
		t.Errorf("%d frames dropped as unresolved_neighbor: new connections went to a real server whose next hop was not resolved", d)
	}
	g.stop()
}

// requestFrom sends one HTTP/1.0 request from the client namespace, from source port port (0: the
// kernel picks), and returns the index of the real server that answered. The server closes the
// connection first, so the client's port is free again at once.
func (s *setup) requestFrom(port int, target netip.AddrPort, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	err := s.topo.Client.Do(func() error {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: s.topo.ClientAddr4.AsSlice(), Port: port},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			},
		}
		var err error
		c, err = d.DialContext(ctx, "tcp", target.String())
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("connect from port %d: %w", port, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return -1, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return -1, fmt.Errorf("from port %d: %w", port, err)
	}
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	i, ok := s.serverIndex(body)
	if !ok {
		return -1, fmt.Errorf("from port %d: unexpected answer %q", port, b)
	}
	return i, nil
}

// waitResolved waits until stats reports every real server resolved.
func (g *govsProc) waitResolved(within time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := g.stats()
		unresolved := ""
		if err != nil {
			unresolved = err.Error()
		} else {
			for _, vs := range st.VirtualServers {
				for _, rs := range vs.RealServers {
					if !rs.Resolved {
						unresolved = rs.Address + " is unresolved"
					}
				}
			}
		}
		if unresolved == "" {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("real servers not resolved within %v: %s", within, unresolved)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nonZeroDrops lists the drop reasons that were counted.
func nonZeroDrops(st stats) map[string]int64 {
	out := map[string]int64{}
	for k, v := range st.Drops {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestNoResolvedRealServer: while none of a virtual server's real servers has a resolved next hop,
// its new connections are dropped and counted as no_real_server (not unresolved_neighbor), the log
// says so once, and other virtual servers are not affected. A reload that adds a reachable real
// server ends it, which the log says too.
func TestNoResolvedRealServer(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "dr", Servers: 1, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	http8080 := netip.AddrPortFrom(s.vip, lab.HTTPAltPort)
	// Nobody answers ARP for this address on the servers' link.
	nobody := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.99"), lab.HTTPAltPort)
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, VS: []vsConfig{
		{http80, "tcp", "rr", "dr", []netip.AddrPort{netip.AddrPortFrom(s.reals[0], lab.HTTPPort)}, []int{1}, "", nil},
		{http8080, "tcp", "rr", "dr", []netip.AddrPort{nobody}, []int{1}, "", nil},
	}}
	g := startGovs(t, topo, cfg)
	const stranded = "virtual server tcp/198.18.0.100:8080: none of its 1 real servers has a resolved next hop"
	waitLog := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(g.out.String(), what); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("govs did not log %q within 10s", what)
			}
		}
	}
	waitLog(stranded)
	if _, err := s.requestFrom(0, http8080, 1500*time.Millisecond); err == nil {
		t.Fatalf("a connection to %s succeeded with no resolved real server", http8080)
	}
	if srv, err := s.requestFrom(0, http80, 5*time.Second); err != nil || srv != 0 {
		t.Fatalf("the other virtual server: %v (server %d)", err, srv)
	}
	st := g.mustStats()
	if st.Drops["no_real_server"] == 0 || st.Drops["unresolved_neighbor"] != 0 {
		t.Errorf("drops %v: want the new connection counted as no_real_server, not unresolved_neighbor", nonZeroDrops(st))
	}
	if n := strings.Count(g.out.String(), stranded); n != 1 {
		t.Errorf("logged %d times that the virtual server has no resolved real server, want once", n)
	}

	next := cfg
	next.VS = []vsConfig{cfg.VS[0], {http8080, "tcp", "rr", "dr",
		[]netip.AddrPort{nobody, netip.AddrPortFrom(s.reals[0], lab.HTTPAltPort)}, []int{1, 1}, "", nil}}
	g.reload(next)
	waitLog("virtual server tcp/198.18.0.100:8080: 1 of its 2 real servers resolved; it takes new connections again")
	if srv, err := s.requestFrom(0, http8080, 5*time.Second); err != nil || srv != 0 {
		t.Fatalf("after adding a reachable real server: %v (server %d)", err, srv)
	}
	g.stop()
}

// TestReloadRestartOnlySettings: a reload that also changes settings a running govs cannot change
// ([dataplane] interfaces, workers, rx_mode and worker_priority, [control] socket, [timeouts], [conntrack] sizes)
// applies the rest of the file (here a new weight and a new real server) and logs, with file:line,
// each setting that waits for the next start; the running values stay.
func TestReloadRestartOnlySettings(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "dr", Servers: 2, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	rs := func(i int) netip.AddrPort { return netip.AddrPortFrom(s.reals[i], lab.HTTPPort) }
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, Dataplane: "rx_mode = \"throughput\"\n",
		VS: []vsConfig{{http80, "tcp", "wrr", "dr", []netip.AddrPort{rs(0)}, []int{1}, "", nil}}}
	g := startGovs(t, topo, cfg)

	next := cfg
	next.Interfaces = topo.BalancerIfaces[:1]
	next.Workers = 2
	next.Dataplane = "rx_mode = \"latency\"\nworker_priority = 2\n"
	next.Tail = "[timeouts]\ntcp = \"10m\"\n\n[conntrack]\nmax_entries = 4096\nfull_policy = \"evict_oldest_idle\"\n"
	next.VS = []vsConfig{{http80, "tcp", "wrr", "dr", []netip.AddrPort{rs(0), rs(1)}, []int{3, 2}, "", nil}}
	next.Socket = g.cfg.Socket
	text := strings.Replace(next.toml(), g.cfg.Socket, g.cfg.Socket+".new", 1)
	lineOf := func(prefix string) string {
		for i, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, prefix) {
				return fmt.Sprintf("%s:%d", g.cfgPath, i+1)
			}
		}
		t.Fatalf("no line %q in\n%s", prefix, text)
		return ""
	}
	if err := os.WriteFile(g.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(g.out.String(), "reloaded "); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(g.out.String(), "reload rejected") {
			t.Fatalf("govs rejected the reload instead of applying what it can:\n%s", g.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("govs did not log the reload within 10s")
		}
	}
	out := g.out.String()
	st := g.mustStats() // on the running socket: the new path waits for the next start too
	if st.LastReload == nil || !st.LastReload.Applied {
		t.Fatalf("govs stats: last_reload %+v, want applied", st.LastReload)
	}
	pending := st.LastReload.PendingRestart
	for _, want := range []struct{ prefix, field string }{
		{"interfaces = ", "dataplane.interfaces"},
		{"workers = ", "dataplane.workers"},
		{"rx_mode = ", "dataplane.rx_mode"},
		{"worker_priority = ", "dataplane.worker_priority"},
		{"socket = ", "control.socket"},
		{"tcp = ", "timeouts.tcp"},
		{"max_entries = ", "conntrack.max_entries"},
		{"full_policy = ", "conntrack.full_policy"},
	} {
		head := lineOf(want.prefix) + ": " + want.field + ": "
		found := false
		for _, l := range strings.Split(out, "\n") {
			if i := strings.Index(l, head); i >= 0 && strings.HasSuffix(l, "takes effect at the next start") {
				found = true
			}
		}
		if !found {
			t.Errorf("no log line %q ... \"takes effect at the next start\"", head)
		}
		// govs stats says the same, for an operator who reads no log.
		if !slices.ContainsFunc(pending, func(p string) bool {
			return strings.HasPrefix(p, head) && strings.HasSuffix(p, "takes effect at the next start")
		}) {
			t.Errorf("govs stats last_reload.pending_restart %q lacks %q ... \"takes effect at the next start\"", pending, head)
		}
	}
	if st.Workers != 1 {
		t.Errorf("%d workers after the reload, want the running 1", st.Workers)
	}
	if len(st.VirtualServers) != 1 || len(st.VirtualServers[0].RealServers) != 2 ||
		st.VirtualServers[0].RealServers[0].Weight != 3 || st.VirtualServers[0].RealServers[1].Weight != 2 {
		t.Fatalf("the reload's weights and new real server are not in force: %+v", st.VirtualServers)
	}
	g.waitResolved(10 * time.Second)
	seen := map[int]bool{}
	for range 10 {
		srv, err := s.requestFrom(0, http80, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seen[srv] = true
	}
	if !seen[1] {
		t.Errorf("the real server the reload added got none of 10 connections")
	}
	g.stop()
}

// TestSIGHUPDuringStartup sends SIGHUP every few milliseconds from the moment govs's runtime can
// catch signals until it is ready: systemd's ExecReload or an operator may reload a govs that is
// still starting. Each SIGHUP must reload the file once govs is up; none may kill it, which is what
// Go does with a SIGHUP that no signal.Notify asked for. The SIGTERM that follows the burst must stop
// govs: pending SIGHUPs must not fill the buffer signal.Notify would drop it from.
func TestSIGHUPDuringStartup(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	http80 := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, VS: []vsConfig{
		{http80, "tcp", "rr", "nat", []netip.AddrPort{netip.AddrPortFrom(topo.ServerAddrs4[0], lab.HTTPPort)}, []int{1}, "", nil},
	}}
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	g := launchGovsIn(t, topo.Balancer, cfg, nil)
	// `ip netns exec` execs govs in the same process; before that a SIGHUP would kill ip, and
	// while Go's runtime starts (before main) it would kill govs whatever govs does.
	pid := g.cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); !catchesSIGHUP(pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("govs (pid %d) did not start within 5s", pid)
		}
	}
	stop := make(chan struct{})
	sent := make(chan int)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-stop:
				return
			case <-g.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if g.cmd.Process.Signal(syscall.SIGHUP) == nil {
				n++
			}
		}
	}()
	g.waitReady()
	close(stop)
	n := <-sent
	if n == 0 {
		t.Fatal("no SIGHUP was sent before govs was ready: the test proves nothing")
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(g.out.String(), "reloaded "); time.Sleep(50 * time.Millisecond) {
		g.alive()
		if time.Now().After(deadline) {
			t.Fatalf("%d SIGHUPs during startup, and no reload logged within 10s", n)
		}
	}
	g.alive()
	if _, err := httpGet(topo, http80, 5*time.Second); err != nil {
		t.Errorf("HTTP through the VIP after the reloads: %v", err)
	}
	// The SIGHUPs still queued must not crowd out the SIGTERM.
	g.stop()
}

// catchesSIGHUP reports whether process pid runs govs and is past Go's start-up: its runtime has a
// handler for SIGHUP (installed for every signal before main runs) and govs has opened its first
// socket (the instance lock, in daemon.New, which takes the longest part of govs's start).
func catchesSIGHUP(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != filepath.Base(govsPath) {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	caught := false
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			var bits uint64
			fmt.Sscanf(strings.TrimSpace(mask), "%x", &bits)
			caught = bits&(1<<(syscall.SIGHUP-1)) != 0
		}
	}
	if !caught {
		return false
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			return true
		}
	}
	return false
}
