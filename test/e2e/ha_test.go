//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// haPort is the heartbeat port; heartbeats run between the balancers' l1 addresses, over br1,
// which DR traffic does not use: the tests cut the heartbeat path by taking a balancer's br1 port
// down without touching the data path, and the data plane tracks only l0.
const haPort = 8405

// The HA timers under test are the defaults (advert_interval 50ms, dead_after 4).
const haAdvert = 50 * time.Millisecond

// haLab is a DR topology with two or three balancers on one segment, three real servers and
// their applications.
type haLab struct {
	t      *testing.T
	method string
	topo   *lab.Topology
	srvs   *lab.Servers
	key    string
	vs     []vsConfig
	vip    netip.Addr // the VIP startStreams connects to: topo.VIP4, or topo.VIP6 (newHALab6)
}

func newHALab(t *testing.T, balancers int) *haLab { return newHALabMethod(t, "dr", balancers) }

// newHALabMethod is newHALab for method "dr" or "nat". In NAT both links carry traffic and the
// heartbeats run over l0; the real servers route through the floating gateway.
func newHALabMethod(t *testing.T, method string, balancers int) *haLab {
	return newHALabOpts(t, lab.Options{Method: method, Servers: 3, Balancers: balancers, Prefix: "govs-ha"})
}

func newHALabOpts(t *testing.T, opts lab.Options) *haLab {
	method := opts.Method
	topo := labtest.NewForTest(t, opts)
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	l := &haLab{t: t, method: method, topo: topo, srvs: srvs, vip: topo.VIP4}
	l.key = writeKey(t, "c2hhcmVkIHNlY3JldCBvZiB0aGUgZ292cyBIQSBwYWly")
	rs := func(port uint16) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range topo.ServerAddrs4 {
			out = append(out, netip.AddrPortFrom(a, port))
		}
		return out
	}
	// UDP flows are scheduled by Maglev over source address and port: both nodes pick the same
	// real server for a flow, so a flow survives a takeover without connection sync.
	extra := ""
	if method == "fullnat" {
		extra = (&setup{topo: topo, vip: topo.VIP4}).fullnatLocals()
	}
	l.vs = []vsConfig{
		{netip.AddrPortFrom(topo.VIP4, lab.HTTPPort), "tcp", "rr", method, rs(lab.HTTPPort), []int{1, 1, 1}, extra, nil},
		{netip.AddrPortFrom(topo.VIP4, lab.UDPEchoPort), "udp", "mh", method, rs(lab.UDPEchoPort), []int{1, 1, 1}, "scheduler_flags = [\"mh-port\"]\n" + extra, nil},
	}
	return l
}

func writeKey(t *testing.T, key string) string {
	p := filepath.Join(t.TempDir(), "ha.key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hbAddr is balancer i's heartbeat address: IPv6 in a lab of IPv6 VIPs (haLab.vip).
func (l *haLab) hbAddr(i int) string {
	l0, l1 := l.topo.BalancerL0Addrs4, l.topo.BalancerL1Addrs4
	if l.vip.Is6() {
		l0, l1 = l.topo.BalancerL0Addrs6, l.topo.BalancerL1Addrs6
	}
	if l.method == "nat" || l.method == "fullnat" {
		return netip.AddrPortFrom(l0[i], haPort).String()
	}
	return netip.AddrPortFrom(l1[i], haPort).String()
}

// config is balancer i's configuration: priority prio, the given peers (balancer indexes), key
// file key, and more [ha] lines.
func (l *haLab) config(i, prio int, peers []int, key, extra string) govsConfig {
	var ps []string
	for _, p := range peers {
		ps = append(ps, strconv.Quote(l.hbAddr(p)))
	}
	ifaces := []string{"l0"}
	if l.method == "fullnat" {
		ifaces = l.topo.BalancerIfaces // the local addresses move with the VIPs: no gateway to float
	}
	if l.method == "nat" {
		ifaces = l.topo.BalancerIfaces
		if l.topo.Options.IPv6 {
			extra += fmt.Sprintf("floating = [%q, %q]\n", l.topo.FloatingGateway4, l.topo.FloatingGateway6)
		} else {
			extra += fmt.Sprintf("floating = [%q]\n", l.topo.FloatingGateway4)
		}
	}
	return govsConfig{
		Interfaces: ifaces,
		Workers:    2,
		VS:         l.vs,
		Tail: fmt.Sprintf("[ha]\nlisten = %q\npeers = [%s]\npriority = %d\nkey_file = %q\n%s",
			l.hbAddr(i), strings.Join(ps, ", "), prio, key, extra),
	}
}

// startPair starts balancer 0 (A, priority 200) and 1 (B, 100) as peers, with extraA and extraB
// added to their [ha] tables, waits until A is active and B a backup, and starts a settled probe.
func (l *haLab) startPair(extraA, extraB string) (a, b *govsProc, p *probe) {
	l.t.Helper()
	a = l.start(0, l.config(0, 200, []int{1}, l.key, extraA))
	b = l.start(1, l.config(1, 100, []int{0}, l.key, extraB))
	waitHA(l.t, a, "active", 3*time.Second)
	waitHA(l.t, b, "backup", 3*time.Second)
	p = startProbe(l.t, l)
	p.settle(l.t)
	return a, b, p
}

// setSwitchPort sets the switch's port name up or down (state).
func (l *haLab) setSwitchPort(name, state string) {
	l.t.Helper()
	if out, err := exec.Command("ip", "-n", l.topo.Switch.Name, "link", "set", name, state).CombinedOutput(); err != nil {
		l.t.Fatalf("ip link set %s %s: %v: %s", name, state, err, out)
	}
}

func (l *haLab) start(i int, cfg govsConfig) *govsProc {
	l.t.Helper()
	return startGovsIn(l.t, l.topo.Balancers[i], cfg, nil)
}

// waitHA waits until g reports state (and, for active, forwards), and returns when it did.
func waitHA(t *testing.T, g *govsProc, state string, within time.Duration) haStats {
	t.Helper()
	deadline := time.Now().Add(within)
	var last haStats
	for {
		st, err := g.stats()
		if err == nil {
			last = st.HA
			if st.HA.State == state && st.HA.Forwarding == (state == "active") {
				return st.HA
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("govs in %s: ha state %q (forwarding %v), want %q within %v; last error %v\noutput:\n%s",
				g.cfgPath, last.State, last.Forwarding, state, within, err, g.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// haLogTime is when g logged a line matching re after from, or the zero time.
var logStamp = regexp.MustCompile(`^govs: (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6}) (.*)$`)

func logTime(g *govsProc, re *regexp.Regexp, from time.Time) time.Time {
	for _, line := range strings.Split(g.out.String(), "\n") {
		m := logStamp.FindStringSubmatch(line)
		if m == nil || !re.MatchString(m[2]) {
			continue
		}
		at, err := time.ParseInLocation("2006/01/02 15:04:05.000000", m[1], time.Local)
		if err == nil && !at.Before(from.Add(-time.Millisecond)) {
			return at
		}
	}
	return time.Time{}
}

// probe is the client's traffic through the VIP: udpFlows UDP flows sending a datagram every
// 20 ms each (their echoes' arrival times measure stalls), a new HTTP connection every 20 ms,
// and a few long-lived TCP streams (HTTP keep-alive, a request every 20 ms).
type probe struct {
	flows   []*udpFlow
	streams []*tcpStream
	httpOK  atomic.Int64
	httpErr atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

type udpFlow struct {
	mu   sync.Mutex
	recv []time.Time
	sent int
}

type tcpStream struct {
	mu   sync.Mutex
	ok   []time.Time
	errs int
}

const (
	// unharmed is the longest gap a UDP flow may see where nothing moves: a few messages, as a
	// loaded test machine delays some; a takeover costs at least the dead interval (150 ms+).
	unharmed   = 200 * time.Millisecond
	probeEvery = 20 * time.Millisecond
	udpFlowsN  = 16
	tcpStreamN = 4
)

func startProbe(t *testing.T, l *haLab) *probe {
	t.Helper()
	p := &probe{stop: make(chan struct{})}
	vip := l.topo.VIP4
	for range udpFlowsN {
		c, err := l.topo.Client.Dial(context.Background(), "udp", netip.AddrPortFrom(vip, lab.UDPEchoPort).String())
		if err != nil {
			t.Fatal(err)
		}
		f := &udpFlow{}
		p.flows = append(p.flows, f)
		p.wg.Add(2)
		go func() { // sender
			defer p.wg.Done()
			tick := time.NewTicker(probeEvery)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-p.stop:
					c.Close()
					return
				case <-tick.C:
				}
				c.Write([]byte(strconv.Itoa(seq)))
				f.mu.Lock()
				f.sent++
				f.mu.Unlock()
			}
		}()
		go func() { // receiver
			defer p.wg.Done()
			buf := make([]byte, 256)
			for {
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				_, err := c.Read(buf)
				now := time.Now()
				select {
				case <-p.stop:
					return
				default:
				}
				if err == nil {
					f.mu.Lock()
					f.recv = append(f.recv, now)
					f.mu.Unlock()
				}
			}
		}()
	}
	url := "http://" + netip.AddrPortFrom(vip, lab.HTTPPort).String() + "/"
	p.wg.Add(1)
	go func() { // a new connection every probeEvery, each in its own goroutine
		defer p.wg.Done()
		hc := l.topo.Client.HTTPClient(false)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				// A SYN lost in a gap is retransmitted after 1 s: a 3 s timeout counts a slow
				// connection as slow, not failed.
				if _, err := getOnce(hc, url, 3*time.Second); err != nil {
					p.httpErr.Add(1)
				} else {
					p.httpOK.Add(1)
				}
			}()
		}
	}()
	for range tcpStreamN {
		s := &tcpStream{}
		p.streams = append(p.streams, s)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tr := &http.Transport{DialContext: l.topo.Client.Dial, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
			hc := &http.Client{Transport: tr}
			tick := time.NewTicker(probeEvery)
			defer tick.Stop()
			for {
				select {
				case <-p.stop:
					tr.CloseIdleConnections()
					return
				case <-tick.C:
				}
				// One connection for the stream's life: a failure is not retried on a new one.
				if _, err := getOnce(hc, url, time.Second); err != nil {
					s.mu.Lock()
					s.errs++
					s.mu.Unlock()
					tr.CloseIdleConnections()
					<-p.stop
					return
				}
				s.mu.Lock()
				s.ok = append(s.ok, time.Now())
				s.mu.Unlock()
			}
		}()
	}
	t.Cleanup(p.close)
	return p
}

func (p *probe) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// maxGap is the longest time any UDP flow went without an echo, among gaps that overlap
// [from, to]; a flow still waiting at to counts until to.
func (p *probe) maxGap(from, to time.Time) time.Duration {
	var worst time.Duration
	for _, f := range p.flows {
		f.mu.Lock()
		recv := slices.Clone(f.recv)
		f.mu.Unlock()
		prev := time.Time{}
		for _, at := range append(recv, to) {
			if !prev.IsZero() && at.After(from) && prev.Before(to) {
				end := at
				if end.After(to) {
					end = to
				}
				worst = max(worst, end.Sub(prev))
			}
			prev = at
		}
	}
	return worst
}

// lost is how many datagrams got no echo so far (the last 100 ms excepted).
func (p *probe) lost() (lost, sent int) {
	for _, f := range p.flows {
		f.mu.Lock()
		sent += f.sent
		lost += f.sent - len(f.recv)
		f.mu.Unlock()
	}
	return lost, sent
}

// brokenStreams is how many long-lived TCP streams have failed.
func (p *probe) brokenStreams() int {
	n := 0
	for _, s := range p.streams {
		s.mu.Lock()
		if s.errs > 0 {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// settle waits until every UDP flow has had echoes for a while.
func (p *probe) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		now := time.Now()
		if g := p.maxGap(now.Add(-300*time.Millisecond), now); g > 0 && g < 100*time.Millisecond {
			return
		}
		if now.After(deadline) {
			t.Fatalf("UDP flows through the VIP do not run (longest gap in the last 300ms: %v)", p.maxGap(now.Add(-300*time.Millisecond), now))
		}
	}
}

func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1)+0.5)]
}

// TestHAFailover kills the active node with SIGKILL, again and again, restarting the killed node
// as the new backup each time, and measures the longest stall any UDP flow and any long-lived TCP
// stream saw, and counts the new HTTP connections that failed. The TCP service is scheduled with
// wlc, so a node that lacks a stream's connection drops its next segment: no stream may break
// (the backup holds them by connection sync). GOVS_HA_FAILOVERS sets the count (default 4).
func TestHAFailover(t *testing.T) {
	labtest.RequireRoot(t)
	rounds := 4
	if v, err := strconv.Atoi(os.Getenv("GOVS_HA_FAILOVERS")); err == nil && v > 0 {
		rounds = v
	}
	l := newHALab(t, 2)
	l.vs[0].Scheduler = "wlc"
	// No preempt: a restarted node stays backup, so every round kills the node that took over last.
	cfgs := []govsConfig{
		l.config(0, 200, []int{1}, l.key, "preempt = false\n"),
		l.config(1, 100, []int{0}, l.key, "preempt = false\n"),
	}
	nodes := []*govsProc{l.start(0, cfgs[0]), l.start(1, cfgs[1])}
	waitHA(t, nodes[0], "active", 3*time.Second)
	waitHA(t, nodes[1], "backup", 3*time.Second)
	p := startProbe(t, l)
	p.settle(t)

	var stalls, streamStalls, takeovers []time.Duration
	active := 0
	for round := range rounds {
		active = settledPair(t, nodes)
		backup := 1 - active
		killed := time.Now()
		if err := nodes[active].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-nodes[active].done
		waitHA(t, nodes[backup], "active", 2*time.Second)
		took := logTime(nodes[backup], regexp.MustCompile(`^ha: backup -> active`), killed).Sub(killed)
		time.Sleep(time.Second) // the flows run on through the new active
		stall := p.maxGap(killed, time.Now())
		broken, streamStall := streamsResult(p.streams, killed, time.Now())
		stalls, streamStalls, takeovers = append(stalls, stall), append(streamStalls, streamStall), append(takeovers, took)
		t.Logf("round %d: killed node %d, node %d active after %v; longest UDP stall %v, longest TCP stream stall %v; streams broken %d of %d; new HTTP connections failed so far %d",
			round+1, active, backup, took.Round(time.Millisecond), stall.Round(time.Millisecond), streamStall.Round(time.Millisecond), broken, tcpStreamN, p.httpErr.Load())
		if broken != 0 {
			t.Errorf("round %d: %d of %d long-lived TCP streams broke (wlc: the backup lacked their connections, or a reset)", round+1, broken, tcpStreamN)
		}
		if stall > time.Second {
			t.Errorf("round %d: a UDP flow stalled %v", round+1, stall)
		}
		nodes[active] = l.start(active, cfgs[active])
		// The next kill finds the restarted node holding the streams: it converged from a snapshot.
		waitHA(t, nodes[active], "backup", 3*time.Second)
		waitConverged(t, nodes[active], 5*time.Second)
	}
	active = settledPair(t, nodes)
	lost, sent := p.lost()
	p.close()
	t.Logf("%d failovers by SIGKILL: longest UDP stall median %v, worst %v; longest TCP stream stall median %v, worst %v; takeover after the kill median %v, worst %v; "+
		"UDP datagrams lost %d of %d; new HTTP connections ok %d, failed %d; long-lived TCP streams broken %d of %d",
		rounds, percentile(stalls, 0.5).Round(time.Millisecond), slices.Max(stalls).Round(time.Millisecond),
		percentile(streamStalls, 0.5).Round(time.Millisecond), slices.Max(streamStalls).Round(time.Millisecond),
		percentile(takeovers, 0.5).Round(time.Millisecond), slices.Max(takeovers).Round(time.Millisecond),
		lost, sent, p.httpOK.Load(), p.httpErr.Load(), p.brokenStreams(), tcpStreamN)
	st := nodes[active].mustStats()
	t.Logf("the last active node's drops: %v", st.Drops)
	if p.httpOK.Load() == 0 {
		t.Error("no new HTTP connection succeeded")
	}
	for _, d := range takeovers {
		if d <= 0 || d > 500*time.Millisecond {
			t.Errorf("a takeover took %v after the kill; want about dead_after x advert_interval (200ms)", d)
		}
	}
}

// settledPair waits until one of the two nodes is active and the other a backup that hears it,
// and returns the active one's index.
func settledPair(t *testing.T, nodes []*govsProc) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var sts [2]haStats
		ok := true
		for i, g := range nodes {
			st, err := g.stats()
			ok = ok && err == nil
			sts[i] = st.HA
		}
		for i := range 2 {
			a, b := sts[i], sts[1-i]
			if ok && a.State == "active" && a.Forwarding && b.State == "backup" && !b.Forwarding &&
				len(b.Peers) == 1 && b.Peers[0].Alive && b.Peers[0].State == "active" {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no settled pair within 5s: %+v", sts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHAResign stops the active node with SIGTERM: it hands over before it stops, within one
// advert interval, and the UDP flows hardly notice.
func TestHAResign(t *testing.T) {
	labtest.RequireRoot(t)
	testHAResign(t, "", 2)
}

// TestHAResignAFXDP is TestHAResign with io = "afxdp": standing by, the XDP programs take
// nothing; taking over, they take the VIPs' frames again.
func TestHAResignAFXDP(t *testing.T) {
	labtest.RequireRoot(t)
	testHAResign(t, "io = \"afxdp\"\n", 1)
}

func testHAResign(t *testing.T, dataplane string, workers int) {
	l := newHALab(t, 2)
	cfg := func(i, prio int, peers []int) govsConfig {
		c := l.config(i, prio, peers, l.key, "")
		c.Dataplane, c.Workers = dataplane, workers
		return c
	}
	a := l.start(0, cfg(0, 200, []int{1}))
	b := l.start(1, cfg(1, 100, []int{0}))
	waitHA(t, a, "active", 3*time.Second)
	waitHA(t, b, "backup", 3*time.Second)
	p := startProbe(t, l)
	p.settle(t)
	before := time.Now()
	a.stop()
	waitHA(t, b, "active", time.Second)
	resigned := logTime(a, regexp.MustCompile(`^ha: resigning`), before)
	tookOver := logTime(b, regexp.MustCompile(`^ha: backup -> active: no active peer: .* resigned`), before)
	if resigned.IsZero() || tookOver.IsZero() {
		t.Fatalf("logs lack the resign (%v) or the takeover (%v):\nA:\n%s\nB:\n%s", resigned, tookOver, a.out.String(), b.out.String())
	}
	handover := tookOver.Sub(resigned)
	time.Sleep(1500 * time.Millisecond) // a TCP stream request through the new node times out after 1 s
	stall := p.maxGap(before, time.Now())
	t.Logf("SIGTERM: handover %v after the resign; longest UDP stall %v; long-lived TCP streams broken %d of %d",
		handover.Round(time.Microsecond), stall.Round(time.Millisecond), p.brokenStreams(), tcpStreamN)
	if handover > haAdvert {
		t.Errorf("handover took %v, want within one advert interval (%v)", handover, haAdvert)
	}
	if stall > unharmed {
		t.Errorf("a UDP flow stalled %v across a SIGTERM handover", stall)
	}
	if !strings.Contains(a.out.String(), "ha: active -> backup: handed over to "+l.hbAddr(1)) {
		t.Errorf("A did not log the handover:\n%s", a.out.String())
	}
}

// TestHAWrongKeyNode adds a third node with the highest priority but a different key, listing
// both nodes as peers (which list it too): nothing moves, its heartbeats are dropped as bad_mac,
// and it never forwards or answers for the VIP.
func TestHAWrongKeyNode(t *testing.T) {
	labtest.RequireRoot(t)
	l := newHALab(t, 3)
	a := l.start(0, l.config(0, 200, []int{1, 2}, l.key, ""))
	b := l.start(1, l.config(1, 100, []int{0, 2}, l.key, ""))
	waitHA(t, a, "active", 3*time.Second)
	waitHA(t, b, "backup", 3*time.Second)
	p := startProbe(t, l)
	p.settle(t)
	before := time.Now()
	wrong := writeKey(t, "YW5vdGhlciBzZWNyZXQsIG5vdCB0aGUgcGFpcidz")
	c := l.start(2, l.config(2, 254, []int{0, 1}, wrong, ""))
	time.Sleep(2 * time.Second)
	for _, x := range []struct {
		g    *govsProc
		name string
		want string
	}{{a, "A", "active"}, {b, "B", "backup"}, {c, "C (wrong key)", "backup"}} {
		st := x.g.mustStats()
		if st.HA.State != x.want || st.HA.Transitions != map[bool]int64{true: 2, false: 1}[x.want == "active"] {
			t.Errorf("%s: state %s after %d transitions, want %s without any other", x.name, st.HA.State, st.HA.Transitions, x.want)
		}
		if st.HA.HeartbeatsDropped["bad_mac"] == 0 {
			t.Errorf("%s dropped no heartbeat as bad_mac: %v", x.name, st.HA.HeartbeatsDropped)
		}
		t.Logf("%s: %s, heartbeats received %d, dropped %v", x.name, st.HA.State, st.HA.HeartbeatsReceived, st.HA.HeartbeatsDropped)
	}
	if got := c.mustStats().Counters["rx_frames"]; got != 0 {
		t.Errorf("the wrong-key node received %d frames", got)
	}
	if stall := p.maxGap(before, time.Now()); stall > unharmed {
		t.Errorf("a UDP flow stalled %v while the wrong-key node ran", stall)
	}
	if n := p.brokenStreams(); n != 0 {
		t.Errorf("%d long-lived TCP streams broke while the wrong-key node ran", n)
	}
	if !strings.Contains(c.out.String(), "none authenticates") {
		t.Errorf("C does not say why it stays backup:\n%s", c.out.String())
	}
}

// TestHAHeartbeatCut cuts the heartbeat path (B's br1 port) for two seconds: B takes over (split
// brain), and once the nodes hear each other again exactly one, A, is active; the long-lived TCP
// streams (wlc: a node without their connections would drop their segments) survive both moves,
// to B, which holds them by connection sync, and back to A, which kept them.
func TestHAHeartbeatCut(t *testing.T) {
	labtest.RequireRoot(t)
	l := newHALab(t, 2)
	l.vs[0].Scheduler = "wlc"
	a, b, p := l.startPair("", "")
	port := func(state string) { l.setSwitchPort("lb2-1", state) }
	cut := time.Now()
	port("down")
	waitHA(t, b, "active", time.Second) // split brain: both active
	if st := a.mustStats(); st.HA.State != "active" {
		t.Errorf("A is %s during the cut, want active", st.HA.State)
	}
	time.Sleep(2*time.Second - time.Since(cut))
	healed := time.Now()
	port("up")
	waitHA(t, b, "backup", time.Second)
	time.Sleep(500 * time.Millisecond)
	resolved := logTime(b, regexp.MustCompile(`^ha: active -> backup`), healed)
	if st := a.mustStats(); st.HA.State != "active" || !st.HA.Forwarding {
		t.Errorf("A is %s (forwarding %v) after the heal, want active", st.HA.State, st.HA.Forwarding)
	}
	if st := b.mustStats(); st.HA.State != "backup" || st.HA.Forwarding {
		t.Errorf("B is %s (forwarding %v) after the heal, want backup", st.HA.State, st.HA.Forwarding)
	}
	time.Sleep(time.Second) // a stream request through a node without the connection times out after 1 s
	stall := p.maxGap(cut, time.Now())
	broken, streamStall := streamsResult(p.streams, cut, time.Now())
	t.Logf("heartbeat path cut 2s: split brain resolved %v after the heal; longest UDP stall %v; long-lived TCP streams broken %d of %d, longest stream stall %v",
		resolved.Sub(healed).Round(time.Millisecond), stall.Round(time.Millisecond), broken, tcpStreamN, streamStall.Round(time.Millisecond))
	if stall > time.Second {
		t.Errorf("a UDP flow stalled %v across the cut and the heal", stall)
	}
	if broken != 0 {
		t.Errorf("%d of %d long-lived TCP streams broke across the cut and the heal", broken, tcpStreamN)
	}
	if !strings.Contains(a.out.String(), "staying active and re-announcing") {
		t.Errorf("A did not re-announce after the split brain:\n%s", a.out.String())
	}
}

// TestHAInterfaceFault takes the active node's data link down: it goes to FAULT and the backup
// takes over; when the link is back the node is a backup again.
func TestHAInterfaceFault(t *testing.T) {
	labtest.RequireRoot(t)
	l := newHALab(t, 2)
	a, b, p := l.startPair("preempt = false\n", "preempt = false\n")
	link := func(state string) { l.setSwitchPort("lb0", state) }
	down := time.Now()
	link("down")
	waitHA(t, a, "fault", time.Second)
	waitHA(t, b, "active", time.Second)
	time.Sleep(500 * time.Millisecond)
	stall := p.maxGap(down, time.Now())
	st := a.mustStats()
	t.Logf("A's l0 down: A %s (%s), B active; longest UDP stall %v", st.HA.State, st.HA.Fault, stall.Round(time.Millisecond))
	if st.HA.Fault != "interface l0 has no carrier" || st.HA.AdvertisedPriority != 0 {
		t.Errorf("A: fault %q, advertised priority %d", st.HA.Fault, st.HA.AdvertisedPriority)
	}
	if stall > time.Second {
		t.Errorf("a UDP flow stalled %v", stall)
	}
	link("up")
	waitHA(t, a, "backup", time.Second)
	if st := b.mustStats(); st.HA.State != "active" {
		t.Errorf("B is %s after A's link came back, want active (no preempt)", st.HA.State)
	}
}

// TestHAPreemptAfterFault: the preferred node (preempt, the default) comes back from a link
// fault while its health checks still say its real servers are down. It must not take the VIPs
// from the backup that serves them until it can serve them itself: before, it preempted as soon as
// the link was up and dropped new connections (no_real_server) until its checks said up again.
// It preempts once they do, within ha.MaxPreemptHold, and says why it waited.
func TestHAPreemptAfterFault(t *testing.T) {
	labtest.RequireRoot(t)
	l := newHALab(t, 2)
	l.vs[0].Extra = healthCheckTOML("tcp", "")
	a, b, p := l.startPair("", "")
	link := func(state string) { l.setSwitchPort("lb0", state) }
	link("down")
	waitHA(t, a, "fault", time.Second)
	waitHA(t, b, "active", time.Second)
	// A's checks run over l0: its real servers go down (fall 2, 200 ms apart).
	for _, rs := range l.vs[0].Reals {
		a.waitHealth("tcp/"+l.vs[0].Address.String(), rs, "down", 5*time.Second)
	}
	before, errsBefore := a.mustStats().Drops, p.httpErr.Load()
	up := time.Now()
	link("up")
	waitHA(t, a, "active", 5*time.Second)
	t.Logf("A active again %v after its link came back", time.Since(up).Round(time.Millisecond))
	time.Sleep(time.Second)
	p.close()
	after := a.mustStats().Drops
	for _, reason := range []string{"no_real_server", "real_server_down", "unresolved_neighbor"} {
		if n := after[reason] - before[reason]; n > 0 {
			t.Errorf("A dropped %d new connection frames (%s) after its link came back: it took the VIPs before it could serve them", n, reason)
		}
	}
	// A connection B took in its last milliseconds before A preempted may not have reached A by
	// sync yet, and fail; the drop counts above say whether A took the VIPs before it could
	// serve them (352 frames dropped before the fix), so the failures are only logged.
	t.Logf("%d new connections failed after A's link came back", p.httpErr.Load()-errsBefore)
	if !strings.Contains(a.out.String(), "ha: not preempting yet, the active peer serves meanwhile: virtual server") {
		t.Errorf("A did not say why it waited to preempt:\n%s", a.out.String())
	}
}

// TestHANATFloatingGateway fails over a NAT pair: the real servers' gateway address floats with
// the active node (answered and announced on the server side only by it), so after a SIGKILL the
// replies reach the new active node and new connections and UDP flows go on. (Established TCP
// connections keep theirs by connection sync: TestHASyncKeepsTCPStreams.)
func TestHANATFloatingGateway(t *testing.T) {
	labtest.RequireRoot(t)
	l := newHALabMethod(t, "nat", 2)
	a := l.start(0, l.config(0, 200, []int{1}, l.key, ""))
	b := l.start(1, l.config(1, 100, []int{0}, l.key, ""))
	waitHA(t, a, "active", 3*time.Second)
	waitHA(t, b, "backup", 3*time.Second)
	p := startProbe(t, l)
	p.settle(t)
	gw := l.topo.FloatingGateway4.String()
	gwMAC := func() string { return neighEntry(t, l.topo.Servers[0], l.topo.FloatingGateway4) }
	macA, _ := l.topo.Balancers[0].HardwareAddr("l1")
	macB, _ := l.topo.Balancers[1].HardwareAddr("l1")
	if got := gwMAC(); !strings.Contains(got, macA.String()) {
		t.Errorf("a real server's entry for the gateway %s is %q, want the active node's l1 MAC %s", gw, got, macA)
	}
	killed := time.Now()
	okBefore := p.httpOK.Load()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	waitHA(t, b, "active", 2*time.Second)
	time.Sleep(time.Second)
	stall := p.maxGap(killed, time.Now())
	if got := gwMAC(); !strings.Contains(got, macB.String()) {
		t.Errorf("after the takeover a real server's entry for the gateway is %q, want the new active node's l1 MAC %s", got, macB)
	}
	if p.httpOK.Load() == okBefore {
		t.Error("no new HTTP connection succeeded through the new active node")
	}
	t.Logf("NAT SIGKILL failover: longest UDP stall %v; new HTTP connections ok %d failed %d; long-lived TCP streams broken %d of %d",
		stall.Round(time.Millisecond), p.httpOK.Load(), p.httpErr.Load(), p.brokenStreams(), tcpStreamN)
	if stall > time.Second {
		t.Errorf("a UDP flow stalled %v", stall)
	}
}

// neighEntry is ns's neighbour table entry for a, as ip neigh shows it.
func neighEntry(t *testing.T, ns *lab.NS, a netip.Addr) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns.Name, "neigh", "show", a.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip neigh: %v: %s", err, out)
	}
	return string(out)
}
