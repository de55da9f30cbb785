package ha

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	addrA = netip.MustParseAddrPort("198.18.0.1:8405")
	addrB = netip.MustParseAddrPort("198.18.0.2:8405")
	addrC = netip.MustParseAddrPort("198.18.0.3:8405")
	key   = []byte("0123456789abcdef0123456789abcdef")
	t0    = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
)

const (
	interval = 50 * time.Millisecond
	deadN    = 4
	dead     = deadN * interval
)

// sent is one datagram a node sent.
type sent struct {
	from, to netip.AddrPort
	b        []byte
}

// fakeNet is the transport of every node of a test: it records what they send and delivers it
// when the test says so. cut drops everything sent while it is set.
type fakeNet struct {
	queue []sent
	cut   bool
	log   []sent // every datagram ever sent
}

// fakeTransport is one node's end of a fakeNet.
type fakeTransport struct {
	net  *fakeNet
	self netip.AddrPort
}

func (f *fakeTransport) Send(b []byte, to netip.AddrPort) error {
	m := sent{from: f.self, to: to, b: bytes.Clone(b)}
	f.net.log = append(f.net.log, m)
	if !f.net.cut {
		f.net.queue = append(f.net.queue, m)
	}
	return nil
}
func (f *fakeTransport) Receive([]byte) (int, netip.AddrPort, error) { select {} }
func (f *fakeTransport) Close() error                                { return nil }

// fakeEngine records the states a node applied.
type fakeEngine struct{ states []State }

func (e *fakeEngine) HAState(s State) { e.states = append(e.states, s) }

// cluster is a set of nodes on one fakeNet, driven by hand.
type cluster struct {
	t     *testing.T
	net   *fakeNet
	nodes map[netip.AddrPort]*Node
	engs  map[netip.AddrPort]*fakeEngine
	logs  *strings.Builder
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, net: &fakeNet{}, nodes: map[netip.AddrPort]*Node{}, engs: map[netip.AddrPort]*fakeEngine{}, logs: &strings.Builder{}}
}

// add creates a node listening on self with priority prio and peers, changed by opts.
func (c *cluster) add(self netip.AddrPort, prio uint8, peers []netip.AddrPort, opts ...func(*Config)) *Node {
	c.t.Helper()
	cfg := Config{
		Listen: self, Peers: peers, Priority: prio, Key: key,
		AdvertInterval: interval, DeadAfter: deadN, Preempt: true,
		Log: slog.New(slog.NewTextHandler(c.logs, nil)).With("node", self.String()),
	}
	for _, o := range opts {
		o(&cfg)
	}
	e := &fakeEngine{}
	n, err := NewNode(cfg, &fakeTransport{net: c.net, self: self}, e)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[self], c.engs[self] = n, e
	return n
}

// deliver hands every queued datagram to its destination node (if it is in the cluster), until
// no more are queued: answers sent on receipt are delivered too.
func (c *cluster) deliver(now time.Time) {
	for range 100 {
		if len(c.net.queue) == 0 {
			return
		}
		q := c.net.queue
		c.net.queue = nil
		for _, m := range q {
			if n := c.nodes[m.to]; n != nil {
				n.Receive(now, m.from, m.b)
			}
		}
	}
	c.t.Fatal("datagrams kept coming")
}

// run advances every node from `from` to `to` in steps of 1 ms, ticking them and delivering
// datagrams at each step.
func (c *cluster) run(from, to time.Time) {
	for now := from; !now.After(to); now = now.Add(time.Millisecond) {
		for _, a := range c.order() {
			n := c.nodes[a]
			if n.State() != StateInit && !now.Before(n.Deadline(now)) {
				n.Tick(now)
			}
		}
		c.deliver(now)
	}
}

func (c *cluster) order() []netip.AddrPort {
	var out []netip.AddrPort
	for a := range c.nodes {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

func (c *cluster) wantStates(t *testing.T, want map[netip.AddrPort]State) {
	t.Helper()
	for a, s := range want {
		if got := c.nodes[a].State(); got != s {
			t.Errorf("%s is %s, want %s\nlog:\n%s", a, got, s, c.logs)
		}
	}
}

// forge builds a heartbeat signed with k.
func forge(k []byte, h Heartbeat) []byte {
	var b [HeartbeatSize]byte
	return newSigner(k).marshal(b[:], &h)
}

func TestStartAloneWaitsDeadIntervalThenTakesOver(t *testing.T) {
	c := newCluster(t)
	a := c.add(addrA, 100, []netip.AddrPort{addrB})
	a.Start(t0)
	if a.State() != StateBackup {
		t.Fatalf("after Start: %s, want backup", a.State())
	}
	if got := a.Deadline(t0); !got.Equal(t0.Add(interval)) {
		t.Errorf("Deadline = %v after start, want the next heartbeat at +%v", got.Sub(t0), interval)
	}
	c.run(t0, t0.Add(dead-time.Millisecond))
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateBackup})
	c.run(t0.Add(dead), t0.Add(dead))
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive})
	if want := []State{StateBackup, StateActive}; !slices.Equal(c.engs[addrA].states, want) {
		t.Errorf("engine states %v, want %v", c.engs[addrA].states, want)
	}
	// Heartbeats at 0, 50, 100, 150 ms and one on becoming active at 200 ms.
	if got := len(c.net.log); got != 5 {
		t.Errorf("%d heartbeats sent, want 5", got)
	}
}

func TestElection(t *testing.T) {
	for _, tt := range []struct {
		name       string
		prioA      uint8
		prioB      uint8
		wantActive netip.AddrPort
	}{
		{"higher priority wins", 100, 200, addrB},
		{"higher priority wins (other way)", 200, 100, addrA},
		{"tie: lower listen address wins", 150, 150, addrA},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			a := c.add(addrA, tt.prioA, []netip.AddrPort{addrB})
			b := c.add(addrB, tt.prioB, []netip.AddrPort{addrA})
			a.Start(t0)
			b.Start(t0)
			c.deliver(t0)
			// Both heard each other: the winner takes over at once, without waiting the dead interval.
			want := map[netip.AddrPort]State{addrA: StateBackup, addrB: StateBackup}
			want[tt.wantActive] = StateActive
			c.wantStates(t, want)
			c.run(t0, t0.Add(5*dead))
			c.wantStates(t, want)
			for _, n := range []*Node{a, b} {
				if n.transitions != map[bool]uint64{true: 2, false: 1}[n.cfg.Listen == tt.wantActive] {
					t.Errorf("%s made %d transitions", n.cfg.Listen, n.transitions)
				}
			}
		})
	}
}

// pairAB is a running pair: A (200) active, B (100) backup, at t0+1s.
func pairAB(t *testing.T, opts ...func(*Config)) (*cluster, time.Time) {
	c := newCluster(t)
	c.add(addrA, 200, []netip.AddrPort{addrB}, opts...)
	c.add(addrB, 100, []netip.AddrPort{addrA}, opts...)
	c.nodes[addrA].Start(t0)
	c.nodes[addrB].Start(t0)
	now := t0.Add(time.Second)
	c.run(t0, now)
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
	return c, now
}

func TestActiveDiesBackupTakesOverAfterDeadInterval(t *testing.T) {
	c, now := pairAB(t)
	a, b := c.nodes[addrA], c.nodes[addrB]
	last := a.nextSend.Add(-interval) // A's last heartbeat
	delete(c.nodes, addrA)            // kill -9: A sends nothing more
	if got := b.Deadline(now); !got.Equal(last.Add(dead)) && !got.Before(last.Add(dead)) {
		t.Errorf("B's deadline %v is later than A's death at %v", got.Sub(t0), last.Add(dead).Sub(t0))
	}
	c.run(now, last.Add(dead-time.Millisecond))
	if b.State() != StateBackup {
		t.Fatalf("B took over %v after A's last heartbeat, before the dead interval %v", b.since.Sub(last), dead)
	}
	c.run(last.Add(dead), last.Add(dead))
	if b.State() != StateActive {
		t.Fatalf("B is %s at the dead interval, want active\n%s", b.State(), c.logs)
	}
	if !strings.Contains(c.logs.String(), "198.18.0.1:8405 silent for 200ms") {
		t.Errorf("the log does not say why B took over:\n%s", c.logs)
	}
}

func TestResignHeartbeatHandsOverAtOnce(t *testing.T) {
	c, now := pairAB(t)
	a, b := c.nodes[addrA], c.nodes[addrB]
	a.Resign(now)
	// B hears priority 0 and takes over at once; A hears B active and stands down in the same
	// millisecond.
	c.deliver(now)
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateBackup, addrB: StateActive})
	if !b.since.Equal(now) || !a.since.Equal(now) {
		t.Errorf("handover not immediate: B active since %v, A backup since %v (resigned at %v)", b.since.Sub(t0), a.since.Sub(t0), now.Sub(t0))
	}
	if !a.Resigned() {
		t.Error("A: Resigned() = false after the handover")
	}
	// A resigned node never comes back, even when the new active dies.
	delete(c.nodes, addrB)
	c.run(now, now.Add(3*dead))
	if a.State() != StateBackup {
		t.Errorf("resigned A became %s", a.State())
	}
}

func TestResignKeepsActiveUntilPeerTakesOver(t *testing.T) {
	c, now := pairAB(t)
	a := c.nodes[addrA]
	c.net.cut = true // the resign heartbeat is lost
	a.Resign(now)
	if a.State() != StateActive || a.Resigned() {
		t.Fatalf("A: %s, resigned %v; want still active (forwarding) until a peer is active", a.State(), a.Resigned())
	}
	if len(c.engs[addrA].states) != 2 {
		t.Errorf("engine told %v; want no change while the resign is pending", c.engs[addrA].states)
	}
	c.net.cut = false
	c.run(now, now.Add(interval))
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateBackup, addrB: StateActive})
	if !a.Resigned() {
		t.Error("A: Resigned() = false after the handover")
	}
}

func TestResignOnBackupIsImmediate(t *testing.T) {
	c, now := pairAB(t)
	b := c.nodes[addrB]
	b.Resign(now)
	if !b.Resigned() {
		t.Error("backup B: Resigned() = false")
	}
	c.deliver(now)
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
}

// TestPreemptServing: a returning higher-priority node whose Config.Serving says it cannot serve
// yet stays a backup while the other node serves, preempts as soon as it can, and, if it never
// can, once MaxPreemptHold has passed (a service down everywhere must not keep it out for good).
func TestPreemptServing(t *testing.T) {
	for _, tt := range []struct {
		name    string
		readyAt time.Duration // after A's start; 0: never ready
		wantAt  time.Duration
	}{
		{"ready later", 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"never ready", 0, MaxPreemptHold},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			b := c.add(addrB, 100, []netip.AddrPort{addrA}, func(cfg *Config) { cfg.Preempt = true })
			b.Start(t0)
			c.run(t0, t0.Add(time.Second))
			start := t0.Add(time.Second)
			ready := false
			a := c.add(addrA, 200, []netip.AddrPort{addrB}, func(cfg *Config) {
				cfg.Preempt = true
				cfg.Serving = func() string {
					if ready {
						return ""
					}
					return "virtual server tcp/198.18.0.100:80 has no real server to take new connections"
				}
			})
			a.Start(start)
			c.deliver(start)
			until := start.Add(tt.wantAt - 100*time.Millisecond)
			c.run(start, until)
			c.wantStates(t, map[netip.AddrPort]State{addrA: StateBackup, addrB: StateActive})
			ready = tt.readyAt > 0
			c.run(until, start.Add(tt.wantAt+200*time.Millisecond))
			c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
			if got := a.since.Sub(start); got < tt.wantAt-100*time.Millisecond || got > tt.wantAt+100*time.Millisecond {
				t.Errorf("A preempted %v after its start, want about %v", got, tt.wantAt)
			}
			if !strings.Contains(c.logs.String(), "not preempting yet, the active peer serves meanwhile: virtual server tcp/198.18.0.100:80") {
				t.Errorf("A did not log why it waited:\n%s", c.logs)
			}
		})
	}
}

func TestPreempt(t *testing.T) {
	for _, tt := range []struct {
		name    string
		preempt bool
		delay   time.Duration
		sync    Sync
		want    State // of the returning higher-priority node, 2 s after its start
		wantAt  time.Duration
	}{
		{name: "no delay", preempt: true, want: StateActive, wantAt: 0},
		{name: "with delay", preempt: true, delay: 700 * time.Millisecond, want: StateActive, wantAt: 700 * time.Millisecond},
		{name: "off", preempt: false, want: StateBackup},
		{name: "sync not converged", preempt: true, sync: syncState(false), want: StateBackup},
		{name: "sync converged", preempt: true, sync: syncState(true), want: StateActive, wantAt: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			opts := func(cfg *Config) { cfg.Preempt, cfg.PreemptDelay, cfg.Sync = tt.preempt, tt.delay, tt.sync }
			b := c.add(addrB, 100, []netip.AddrPort{addrA}, opts)
			b.Start(t0)
			c.run(t0, t0.Add(time.Second)) // B alone: active
			a := c.add(addrA, 200, []netip.AddrPort{addrB}, opts)
			start := t0.Add(time.Second)
			a.Start(start)
			c.deliver(start)
			c.run(start, start.Add(2*time.Second))
			want := map[netip.AddrPort]State{addrA: tt.want, addrB: StateBackup}
			if tt.want == StateBackup {
				want[addrB] = StateActive
			}
			c.wantStates(t, want)
			if tt.want == StateActive {
				// A heard B's first heartbeat at start (B answers A's start heartbeat at once).
				if got := a.since.Sub(start); got != tt.wantAt {
					t.Errorf("A preempted %v after its start, want %v", got, tt.wantAt)
				}
				if !b.since.Equal(a.since) {
					t.Errorf("B stood down at %v, A took over at %v: want the same moment", b.since.Sub(t0), a.since.Sub(t0))
				}
			}
		})
	}
}

type syncState bool

func (s syncState) Converged() bool { return bool(s) }

func TestSplitBrainResolvedWhenPeersHearEachOther(t *testing.T) {
	for _, tt := range []struct {
		name    string
		prioB   uint8
		winner  netip.AddrPort
		preempt bool
	}{
		{"higher priority stays", 100, addrA, false},
		{"higher priority stays (preempt)", 100, addrA, true},
		{"tie: lower address stays", 200, addrA, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			opts := func(cfg *Config) { cfg.Preempt = tt.preempt }
			a := c.add(addrA, 200, []netip.AddrPort{addrB}, opts)
			b := c.add(addrB, tt.prioB, []netip.AddrPort{addrA}, opts)
			c.net.cut = true
			a.Start(t0)
			b.Start(t0)
			now := t0.Add(2 * time.Second)
			c.run(t0, now)
			c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateActive})
			c.net.cut = false
			announcesA := len(c.engs[addrA].states)
			// The first heartbeat either sends resolves it.
			c.run(now, now.Add(interval))
			c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
			if got := c.engs[addrA].states[announcesA:]; !slices.Equal(got, []State{StateActive}) {
				t.Errorf("winner's engine was told %v after the heal, want one re-announce (active)", got)
			}
			c.run(now.Add(interval), now.Add(2*time.Second))
			c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
			if a.transitions != 2 || b.transitions != 3 {
				t.Errorf("transitions A %d B %d, want 2 and 3", a.transitions, b.transitions)
			}
		})
	}
}

func TestFault(t *testing.T) {
	c, now := pairAB(t)
	a, b := c.nodes[addrA], c.nodes[addrB]
	a.SetFault(now, "l0 down")
	c.deliver(now)
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateFault, addrB: StateActive})
	if a.priority() != 0 || a.Fault() != "l0 down" {
		t.Errorf("faulty A advertises priority %d, fault %q", a.priority(), a.Fault())
	}
	if got := c.engs[addrA].states; got[len(got)-1] != StateFault {
		t.Errorf("engine of A told %v", got)
	}
	c.run(now, now.Add(time.Second))
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateFault, addrB: StateActive})
	// Back: A preempts B (preempt is on, delay 0).
	now = now.Add(time.Second)
	a.ClearFault(now)
	c.deliver(now)
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
	if b.transitions != 3 {
		t.Errorf("B made %d transitions, want 3 (backup, active, backup)", b.transitions)
	}

	t.Run("backup", func(t *testing.T) {
		c, now := pairAB(t)
		b := c.nodes[addrB]
		b.SetFault(now, "l0 down")
		c.deliver(now)
		c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateFault})
		// A faulty backup never takes over, even from a dead active node.
		delete(c.nodes, addrA)
		c.run(now, now.Add(time.Second))
		c.wantStates(t, map[netip.AddrPort]State{addrB: StateFault})
		if got := c.engs[addrB].states; !slices.Equal(got, []State{StateBackup, StateFault}) {
			t.Errorf("engine of B told %v", got)
		}
	})
	t.Run("before start", func(t *testing.T) {
		c := newCluster(t)
		n := c.add(addrA, 100, []netip.AddrPort{addrB})
		n.SetFault(t0, "l0 down")
		n.Start(t0)
		c.run(t0, t0.Add(time.Second))
		c.wantStates(t, map[netip.AddrPort]State{addrA: StateFault})
		n.ClearFault(t0.Add(time.Second))
		c.run(t0.Add(time.Second), t0.Add(time.Second))
		c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive}) // alone, long since started
	})
}

// TestForgedAndReplayedHeartbeatsNeverMoveTheRole feeds B, the backup of a running pair, every
// kind of bad heartbeat claiming the most it can: active at priority 254, or a resign of A.
func TestForgedAndReplayedHeartbeatsNeverMoveTheRole(t *testing.T) {
	c, now := pairAB(t)
	a, b := c.nodes[addrA], c.nodes[addrB]
	// A capture of A's last heartbeat to B, and of one from long ago.
	var lastAB, oldAB []byte
	for _, m := range c.net.log {
		if m.from == addrA && m.to == addrB {
			if oldAB == nil {
				oldAB = m.b
			}
			lastAB = m.b
		}
	}
	wrongKey := []byte("not the key, not the key, nope!!")
	resignA := Heartbeat{Node: addrA, Priority: 0, State: StateActive, Seq: a.seq + 1000, Time: now.UnixNano()}
	tamper := bytes.Clone(lastAB)
	tamper[7] = 0 // priority 0 (a resign) without fixing the MAC
	for _, tt := range []struct {
		name string
		from netip.AddrPort
		b    []byte
		want DropReason
	}{
		{"wrong key", addrA, forge(wrongKey, resignA), DropBadMAC},
		{"tampered priority", addrA, tamper, DropBadMAC},
		{"replayed latest", addrA, lastAB, DropOldSeq},
		{"replayed old", addrA, oldAB, DropOldSeq},
		{"valid MAC from another address", addrC, forge(key, Heartbeat{Node: addrA, State: StateActive, Priority: 254, Seq: 1 << 62, Time: now.UnixNano()}), DropUnlisted},
		{"truncated", addrA, lastAB[:40], DropMalformed},
		{"bad magic", addrA, append([]byte("XXXX"), lastAB[4:]...), DropMalformed},
		{"too long", addrA, append(bytes.Clone(lastAB), 0), DropMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := b.drops[tt.want]
			b.Receive(now, tt.from, tt.b)
			if b.drops[tt.want] != before+1 {
				t.Errorf("drops[%s] = %d, want %d; all %v", tt.want, b.drops[tt.want], before+1, b.drops)
			}
			c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
		})
	}
	t.Run("wrong sender", func(t *testing.T) {
		// Authentic (someone with the key) but naming C while coming from A's address.
		h := forge(key, Heartbeat{Node: addrC, State: StateBackup, Priority: 0, Seq: 1 << 62, Time: now.UnixNano()})
		b.Receive(now, addrA, h)
		if b.drops[DropWrongSender] != 1 {
			t.Errorf("drops %v", b.drops)
		}
	})
	t.Run("replay to a restarted node is stale", func(t *testing.T) {
		// A restarted B has no sequence numbers yet: the time check catches a replay.
		c2 := newCluster(t)
		b2 := c2.add(addrB, 100, []netip.AddrPort{addrA})
		later := now.Add(DefaultMaxSkew + time.Millisecond)
		b2.Start(later)
		b2.Receive(later, addrA, lastAB)
		if b2.drops[DropSkew] != 1 {
			t.Errorf("drops %v, want one skew", b2.drops)
		}
		b2.Receive(later, addrA, forge(key, Heartbeat{Node: addrA, State: StateActive, Priority: 200, Seq: 1, Time: later.Add(DefaultMaxSkew + time.Millisecond).UnixNano()}))
		if b2.drops[DropSkew] != 2 {
			t.Errorf("drops %v, want a heartbeat from the future dropped as skew too", b2.drops)
		}
	})
	// Flood B with every forgery while A goes on: B never moves, and when A really dies, B still
	// takes over in time.
	for i := range 20 {
		at := now.Add(time.Duration(i) * 10 * time.Millisecond)
		b.Receive(at, addrA, forge(wrongKey, Heartbeat{Node: addrA, State: StateFault, Seq: 1 << 63, Time: at.UnixNano()}))
		b.Receive(at, addrA, oldAB)
		c.run(at, at.Add(9*time.Millisecond))
	}
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
	if b.received == 0 || a.received == 0 {
		t.Error("no heartbeats accepted at all")
	}
}

// TestWrongKeyNodeStaysBackup: a third node whose key differs hears both nodes of a pair but can
// authenticate neither; it never takes over, whatever its priority. The pair, which lists it, is
// not disturbed by its heartbeats.
func TestWrongKeyNodeStaysBackup(t *testing.T) {
	c := newCluster(t)
	a := c.add(addrA, 200, []netip.AddrPort{addrB, addrC})
	b := c.add(addrB, 100, []netip.AddrPort{addrA, addrC})
	x := c.add(addrC, 254, []netip.AddrPort{addrA, addrB}, func(cfg *Config) { cfg.Key = []byte("a different key, sixteen+ bytes!") })
	a.Start(t0)
	b.Start(t0)
	c.run(t0, t0.Add(time.Second))
	x.Start(t0.Add(time.Second))
	c.run(t0.Add(time.Second), t0.Add(5*time.Second))
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup, addrC: StateBackup})
	if a.drops[DropBadMAC] == 0 || b.drops[DropBadMAC] == 0 || x.drops[DropBadMAC] == 0 {
		t.Errorf("bad_mac drops: A %d B %d C %d; want all > 0", a.drops[DropBadMAC], b.drops[DropBadMAC], x.drops[DropBadMAC])
	}
	if !strings.Contains(c.logs.String(), "none authenticates") {
		t.Errorf("C does not say why it stays backup:\n%s", c.logs)
	}
	// A dies: B takes over in time although C's bad heartbeats go on, because B has
	// authenticated a peer before: it is not the one with the wrong key.
	delete(c.nodes, addrA)
	now := t0.Add(5 * time.Second)
	last := a.nextSend.Add(-interval)
	c.run(now, last.Add(dead))
	c.wantStates(t, map[netip.AddrPort]State{addrB: StateActive, addrC: StateBackup})
}

func TestUnlistedSenderIgnored(t *testing.T) {
	c, now := pairAB(t)
	b := c.nodes[addrB]
	b.Receive(now, addrC, forge(key, Heartbeat{Node: addrC, State: StateActive, Priority: 254, Seq: 1 << 62, Time: now.UnixNano()}))
	if b.drops[DropUnlisted] != 1 {
		t.Errorf("drops %v", b.drops)
	}
	c.run(now, now.Add(time.Second))
	c.wantStates(t, map[netip.AddrPort]State{addrA: StateActive, addrB: StateBackup})
}

func TestHeartbeatEveryInterval(t *testing.T) {
	c, now := pairAB(t)
	c.net.log = nil
	c.run(now.Add(time.Millisecond), now.Add(time.Second))
	for _, a := range []netip.AddrPort{addrA, addrB} {
		n := 0
		for _, m := range c.net.log {
			if m.from == a {
				n++
			}
		}
		if n != int(time.Second/interval) {
			t.Errorf("%s sent %d heartbeats in 1s, want %d", a, n, time.Second/interval)
		}
	}
	st := c.nodes[addrB].Status(now.Add(time.Second))
	if st.State != StateBackup || len(st.Peers) != 1 || !st.Peers[0].Alive || st.Peers[0].State != StateActive || st.Received == 0 || st.Sent == 0 {
		t.Errorf("status %+v", st)
	}
}

func TestNewNodeRejects(t *testing.T) {
	good := Config{Listen: addrA, Peers: []netip.AddrPort{addrB}, Priority: 100, Key: key, AdvertInterval: interval, DeadAfter: 4}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no listen", func(c *Config) { c.Listen = netip.AddrPort{} }},
		{"no peers", func(c *Config) { c.Peers = nil }},
		{"self as peer", func(c *Config) { c.Peers = []netip.AddrPort{addrA} }},
		{"duplicate peer", func(c *Config) { c.Peers = []netip.AddrPort{addrB, addrB} }},
		{"priority 0", func(c *Config) { c.Priority = 0 }},
		{"priority 255", func(c *Config) { c.Priority = 255 }},
		{"short key", func(c *Config) { c.Key = key[:15] }},
		{"dead_after 1", func(c *Config) { c.DeadAfter = 1 }},
		{"no interval", func(c *Config) { c.AdvertInterval = 0 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mod(&cfg)
			if _, err := NewNode(cfg, &fakeTransport{net: &fakeNet{}}, &fakeEngine{}); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := NewNode(good, &fakeTransport{net: &fakeNet{}}, &fakeEngine{}); err != nil {
		t.Errorf("good config rejected: %v", err)
	}
}
