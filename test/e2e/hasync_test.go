//go:build linux

package e2e

import (
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// streamSet is long-lived TCP streams through the VIP: each one HTTP keep-alive connection with
// a request every probeEvery, never re-dialled, so a reset or a stall past the timeout breaks it.
type streamSet struct {
	streams []*tcpStream
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startStreams(t *testing.T, l *haLab, n int) *streamSet {
	t.Helper()
	s := &streamSet{stop: make(chan struct{})}
	url := "http://" + netip.AddrPortFrom(l.vip, lab.HTTPPort).String() + "/"
	for range n {
		st := &tcpStream{}
		s.streams = append(s.streams, st)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			tr := &http.Transport{DialContext: l.topo.Client.Dial, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			tick := time.NewTicker(probeEvery)
			defer tick.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-tick.C:
				}
				if _, err := getOnce(hc, url, 2*time.Second); err != nil {
					st.mu.Lock()
					st.errs++
					st.mu.Unlock()
					<-s.stop
					return
				}
				st.mu.Lock()
				st.ok = append(st.ok, time.Now())
				st.mu.Unlock()
			}
		}()
	}
	t.Cleanup(s.close)
	return s
}

func (s *streamSet) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// broken is how many streams failed; stall the longest time a stream went without an answer
// among gaps that overlap [from, to].
func (s *streamSet) result(from, to time.Time) (broken int, stall time.Duration) {
	return streamsResult(s.streams, from, to)
}

// streamsResult is streamSet.result over streams.
func streamsResult(streams []*tcpStream, from, to time.Time) (broken int, stall time.Duration) {
	for _, st := range streams {
		st.mu.Lock()
		ok, errs := slices.Clone(st.ok), st.errs
		st.mu.Unlock()
		if errs > 0 {
			broken++
		}
		prev := time.Time{}
		for _, at := range append(ok, to) {
			if !prev.IsZero() && at.After(from) && prev.Before(to) {
				end := at
				if end.After(to) {
					end = to
				}
				stall = max(stall, end.Sub(prev))
			}
			prev = at
		}
	}
	return broken, stall
}

// TestHASyncKeepsTCPStreams: long-lived TCP streams through a pair scheduled with wlc (so a node
// that did not see a connection would drop its next segment: a bare ACK schedules nothing)
// survive kill -9 of the active node, because the backup holds the active's connections by
// connection sync. Then the killed node comes back, gets a snapshot, and the streams survive a
// second kill. In DR, in NAT with the floating gateway (the replies' tuples are synced too), and in
// FullNAT (the connections' local endpoints are synced; the local addresses move with the VIP).
func TestHASyncKeepsTCPStreams(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"dr", "nat", "fullnat"} {
		t.Run(method, func(t *testing.T) {
			l := newHALabMethod(t, method, 2)
			l.vs = l.vs[:1]
			l.vs[0].Scheduler = "wlc"
			testSyncKeepsTCPStreams(t, l)
		})
	}
}

// TestHASyncKeepsTCPStreams6 is TestHASyncKeepsTCPStreams for an IPv6 VIP, with heartbeats and
// sync between the nodes' IPv6 addresses: the node that takes over claims the VIP with
// unsolicited neighbour advertisements that override the client's entry, and in NAT the IPv6
// floating gateway on the server side likewise; the streams' synced connections survive each kill.
func TestHASyncKeepsTCPStreams6(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"dr", "nat"} {
		t.Run(method, func(t *testing.T) {
			l := newHALabOpts(t, lab.Options{Method: method, IPv6: true, Servers: 3, Balancers: 2, Prefix: "govs-ha6"})
			l.vip = l.topo.VIP6
			var reals []netip.AddrPort
			for _, a := range l.topo.ServerAddrs6 {
				reals = append(reals, netip.AddrPortFrom(a, lab.HTTPPort))
			}
			l.vs = []vsConfig{{netip.AddrPortFrom(l.vip, lab.HTTPPort), "tcp", "wlc", method, reals, []int{1, 1, 1}, "", nil}}
			testSyncKeepsTCPStreams(t, l)
		})
	}
}

// testSyncKeepsTCPStreams runs long-lived TCP streams to l.vip through a pair of l.vs and kills
// the active node (twice, or GOVS_HA_FAILOVERS times): none may break.
func testSyncKeepsTCPStreams(t *testing.T, l *haLab) {
	method := l.method
	cfgs := []govsConfig{
		l.config(0, 200, []int{1}, l.key, "preempt = false\n"),
		l.config(1, 100, []int{0}, l.key, "preempt = false\n"),
	}
	nodes := []*govsProc{l.start(0, cfgs[0]), l.start(1, cfgs[1])}
	waitHA(t, nodes[0], "active", 3*time.Second)
	waitHA(t, nodes[1], "backup", 3*time.Second)
	waitConverged(t, nodes[1], 5*time.Second)

	// GOVS_HA_FAILOVERS sets the number of kills (default 2: the second one proves the restarted
	// node converged from a snapshot).
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("GOVS_HA_FAILOVERS")); err == nil && v > 0 {
		rounds = v
	}
	const streams = 8
	s := startStreams(t, l, streams)
	time.Sleep(time.Second)
	active := 0
	var stalls []time.Duration
	for round := range rounds {
		backup := 1 - active
		if b, _ := s.result(time.Now(), time.Now()); b != 0 {
			t.Fatalf("round %d: %d streams broke before the kill", round+1, b)
		}
		killed := time.Now()
		if err := nodes[active].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-nodes[active].done
		waitHA(t, nodes[backup], "active", 2*time.Second)
		time.Sleep(2 * time.Second) // the streams run on through the new active
		if l.vip.Is6() {
			// The unsolicited NA (override) moved the client's entry for the VIP to the new
			// active node at once: the old entry would otherwise stand until it went stale.
			mac, _ := l.topo.Balancers[backup].HardwareAddr("l0")
			if got := neighEntry(t, l.topo.Client, l.vip); !strings.Contains(got, mac.String()) {
				t.Errorf("round %d: the client's neighbour entry for %v is %q, want the new active node's l0 MAC %v", round+1, l.vip, got, mac)
			}
			if gw := l.topo.FloatingGateway6; method == "nat" {
				mac, _ := l.topo.Balancers[backup].HardwareAddr("l1")
				if got := neighEntry(t, l.topo.Servers[0], gw); !strings.Contains(got, mac.String()) {
					t.Errorf("round %d: a real server's neighbour entry for the gateway %v is %q, want the new active node's l1 MAC %v", round+1, gw, got, mac)
				}
			}
		}
		broken, stall := s.result(killed, time.Now())
		stalls = append(stalls, stall)
		st := nodes[backup].mustStats()
		t.Logf("round %d: killed node %d; streams broken %d of %d, longest stream stall %v; new active installed %d synced changes (refused %d)",
			round+1, active, broken, streams, stall.Round(time.Millisecond), st.HA.Sync.Installed, st.HA.Sync.Refused)
		if broken != 0 {
			t.Errorf("round %d: %d of %d TCP streams broke across the failover", round+1, broken, streams)
		}
		if round == rounds-1 {
			break
		}
		// The killed node returns as a backup, gets a snapshot of the streams, and converges.
		nodes[active] = l.start(active, cfgs[active])
		waitHA(t, nodes[active], "backup", 3*time.Second)
		waitConverged(t, nodes[active], 5*time.Second)
		time.Sleep(500 * time.Millisecond)
		checkSnapshotDone(t, nodes[backup], nodes[active], streams)
		active = backup
	}
	t.Logf("%s, VIP %v, heartbeats and sync from %s: %d kills of the active node: longest TCP stream stall median %v, worst %v", method, l.vip, l.hbAddr(0), rounds,
		percentile(stalls, 0.5).Round(time.Millisecond), slices.Max(stalls).Round(time.Millisecond))
}

// waitConverged waits until g's connection sync reports a converged table.
func waitConverged(t *testing.T, g *govsProc, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := g.stats()
		if err == nil && st.HA.Sync != nil && st.HA.Sync.Converged {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("govs in %s: connection sync not converged within %v (%+v, %v)\noutput:\n%s", g.cfgPath, within, st.HA.Sync, err, g.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkSnapshotDone checks `govs stats -json`'s "snapshot" of a converged pair: the active
// node's snapshot is done (sending false) and handed over every entry of its table (entries equal
// total, at least the streams' connections), and the backup's is done (receiving false), began
// no earlier than the active's, and received what the active sent (the table is steady: the
// streams' connections change no state, so no change shares the stream). The metrics scraped
// from both say the same.
func checkSnapshotDone(t *testing.T, sender, receiver *govsProc, streams int) {
	t.Helper()
	ss, rs := sender.mustStats().HA.Sync, receiver.mustStats().HA.Sync
	if ss == nil || rs == nil || ss.Snapshot == nil || rs.Snapshot == nil {
		t.Fatalf("no \"snapshot\" in \"ha\" -> \"sync\": active %+v, backup %+v", ss, rs)
	}
	sp, rp := *ss.Snapshot, *rs.Snapshot
	t.Logf("snapshot: active sending=%v since %v entries %d of %d; backup receiving=%v since %v entries %d",
		sp.Sending, sp.Since, sp.Entries, sp.Total, rp.Receiving, rp.Since, rp.Entries)
	if sp.Sending || sp.Since == nil || sp.Entries != sp.Total || sp.Entries < int64(streams) {
		t.Errorf("the active node's snapshot after the backup converged: sending %v since %v, %d of %d entries; want done, all of at least %d",
			sp.Sending, sp.Since, sp.Entries, sp.Total, streams)
	}
	if rp.Receiving || rp.Since == nil || (sp.Since != nil && rp.Since.Before(*sp.Since)) || rp.Entries != sp.Entries || rp.Total != 0 {
		t.Errorf("the converged backup's snapshot: receiving %v since %v (the active's began %v), %d entries (total %d); want done, the %d entries sent",
			rp.Receiving, rp.Since, sp.Since, rp.Entries, rp.Total, sp.Entries)
	}
	for _, x := range []struct {
		g    *govsProc
		name string
		json int64
		tab  int64
	}{{sender, "active", sp.Entries, sp.Total}, {receiver, "backup", rp.Entries, 0}} {
		m, err := scrapeMetrics(x.g.ns, defaultMetrics)
		if err != nil {
			t.Fatalf("scrape the %s node: %v", x.name, err)
		}
		for _, want := range []struct {
			name  string
			label []string
			v     float64
		}{
			{"govs_ha_sync_snapshot_in_progress", []string{"direction", "sending"}, 0},
			{"govs_ha_sync_snapshot_in_progress", []string{"direction", "receiving"}, 0},
			{"govs_ha_sync_snapshot_entries", nil, float64(x.json)},
			{"govs_ha_sync_snapshot_table_entries", nil, float64(x.tab)},
		} {
			if got, ok := m.get(want.name, want.label...); !ok || got != want.v {
				t.Errorf("the %s node's %s%v = %v (present %v), want %v as govs stats -json says", x.name, want.name, want.label, got, ok, want.v)
			}
		}
		if got, ok := m.get("govs_ha_sync_snapshot_start_time_seconds"); !ok || got <= 0 {
			t.Errorf("the %s node's govs_ha_sync_snapshot_start_time_seconds = %v (present %v)", x.name, got, ok)
		}
	}
}

// TestHASyncPreemptAfterSnapshot: the higher-priority node, killed and restarted with preempt,
// takes the VIPs back only once its snapshot has converged, and the long-lived TCP streams
// survive both the crash failover and the failback; the node it took over from then converges
// from its snapshot in turn. In DR, and in NAT with the floating gateway.
func TestHASyncPreemptAfterSnapshot(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"dr", "nat"} {
		t.Run(method, func(t *testing.T) { testSyncPreemptAfterSnapshot(t, method) })
	}
}

func testSyncPreemptAfterSnapshot(t *testing.T, method string) {
	l := newHALabMethod(t, method, 2)
	l.vs = l.vs[:1]
	l.vs[0].Scheduler = "wlc"
	cfgs := []govsConfig{
		l.config(0, 200, []int{1}, l.key, "preempt = true\n"),
		l.config(1, 100, []int{0}, l.key, "preempt = true\n"),
	}
	nodes := []*govsProc{l.start(0, cfgs[0]), l.start(1, cfgs[1])}
	waitHA(t, nodes[0], "active", 3*time.Second)
	waitHA(t, nodes[1], "backup", 3*time.Second)
	waitConverged(t, nodes[1], 5*time.Second)
	const streams = 8
	s := startStreams(t, l, streams)
	time.Sleep(time.Second)

	killed := time.Now()
	if err := nodes[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-nodes[0].done
	waitHA(t, nodes[1], "active", 2*time.Second)
	time.Sleep(time.Second)
	broken, stall := s.result(killed, time.Now())
	t.Logf("crash failover: streams broken %d of %d, longest stream stall %v", broken, streams, stall.Round(time.Millisecond))
	if broken != 0 {
		t.Fatalf("%d of %d TCP streams broke across the crash failover", broken, streams)
	}

	back := time.Now()
	nodes[0] = l.start(0, cfgs[0])
	waitHA(t, nodes[0], "active", 5*time.Second)
	waitHA(t, nodes[1], "backup", 2*time.Second)
	took := logTime(nodes[0], regexp.MustCompile(`^ha: backup -> active`), back)
	time.Sleep(time.Second)
	broken, stall = s.result(took, time.Now())
	st := nodes[0].mustStats()
	t.Logf("failback by preempt %v after the restart: streams broken %d of %d, longest stream stall %v; the returning node installed %d synced changes, snapshots received %d",
		took.Sub(back).Round(time.Millisecond), broken, streams, stall.Round(time.Millisecond), st.HA.Sync.Installed, st.HA.Sync.SnapshotsReceived)
	if broken != 0 {
		t.Errorf("%d of %d TCP streams broke across the failback", broken, streams)
	}
	// A planned failback with the table in place costs the streams no retransmission (a node
	// without the connections drops their segments until TCP retransmits, 200 ms or more later).
	if stall > unharmed {
		t.Errorf("a TCP stream stalled %v across the failback", stall)
	}
	if st.HA.Sync.Installed < streams || st.HA.Sync.SnapshotsReceived == 0 {
		t.Errorf("the returning node took over with %d synced changes installed, %d snapshots: not from a snapshot",
			st.HA.Sync.Installed, st.HA.Sync.SnapshotsReceived)
	}
	// The node that handed back asks for a snapshot as a backup and converges from it.
	waitConverged(t, nodes[1], 5*time.Second)
	checkSnapshotDone(t, nodes[0], nodes[1], streams)
}

// TestHASyncKeepsPersistence: clients of a persistent service (rr over three real servers) are
// pinned to real servers by the active node's templates; after kill -9 of the active node their
// new connections go to the same real servers, because the backup holds the templates by
// connection sync. The clients connect again in reverse order, so the new active node's own rr
// (which starts where the old one's did) would pin two in three of them elsewhere: without synced
// templates six of the ten move. In DR and NAT.
func TestHASyncKeepsPersistence(t *testing.T) {
	labtest.RequireRoot(t)
	for _, method := range []string{"dr", "nat"} {
		t.Run(method, func(t *testing.T) { testSyncKeepsPersistence(t, method) })
	}
}

func testSyncKeepsPersistence(t *testing.T, method string) {
	l := newHALabMethod(t, method, 2)
	l.vs = l.vs[:1]
	l.vs[0].Extra = "persistence_timeout = \"60s\"\n"
	target := l.vs[0].Address
	for _, a := range clientAddrs {
		if out, err := l.topo.Client.Command("ip", "addr", "add", a.String()+"/24", "dev", lab.ClientIface).CombinedOutput(); err != nil {
			t.Fatalf("failed to add client address %s: %v %s", a, err, out)
		}
	}
	nodes := []*govsProc{
		l.start(0, l.config(0, 200, []int{1}, l.key, "preempt = false\n")),
		l.start(1, l.config(1, 100, []int{0}, l.key, "preempt = false\n")),
	}
	waitHA(t, nodes[0], "active", 3*time.Second)
	waitHA(t, nodes[1], "backup", 3*time.Second)
	waitConverged(t, nodes[1], 5*time.Second)

	s := &setup{topo: l.topo, srvs: l.srvs}
	connect := func(a netip.Addr) int {
		t.Helper()
		c, err := s.dialFrom(a, target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idx, err := s.request(c)
		if err != nil {
			t.Fatalf("connection from %v: %v", a, err)
		}
		return idx
	}
	pinned := map[netip.Addr]int{}
	servers := map[int]bool{}
	for _, a := range clientAddrs {
		pinned[a] = connect(a)
		servers[pinned[a]] = true
		if again := connect(a); again != pinned[a] {
			t.Fatalf("client %v: second connection through the active node went to %s, the first to %s: no persistence",
				a, l.srvs.Names[again], l.srvs.Names[pinned[a]])
		}
	}
	if len(servers) < 2 {
		t.Fatalf("all %d clients pinned to one real server: the test would prove nothing", len(clientAddrs))
	}
	time.Sleep(500 * time.Millisecond) // the templates reach the backup (synced every 5 ms)

	if err := nodes[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-nodes[0].done
	waitHA(t, nodes[1], "active", 2*time.Second)
	moved := 0
	for _, a := range slices.Backward(clientAddrs) {
		if got := connect(a); got != pinned[a] {
			moved++
			t.Errorf("client %v: new connection after the takeover went to %s, pinned to %s before", a, l.srvs.Names[got], l.srvs.Names[pinned[a]])
		}
	}
	st := nodes[1].mustStats()
	t.Logf("%d persistent clients over %d real servers; after kill -9 of the active node %d moved; the new active installed %d synced changes (refused %d)",
		len(clientAddrs), len(servers), moved, st.HA.Sync.Installed, st.HA.Sync.Refused)
}
