package neigh

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
)

func TestUsable(t *testing.T) {
	mac := []byte{2, 0, 0x5e, 0, 0, 1}
	tests := []struct {
		name   string
		state  int
		lladdr []byte
		want   bool
	}{
		{name: "reachable", state: nudReachable, lladdr: mac, want: true},
		{name: "stale", state: nudStale, lladdr: mac, want: true},
		{name: "delay", state: nudDelay, lladdr: mac, want: true},
		{name: "probe", state: nudProbe, lladdr: mac, want: true},
		{name: "permanent", state: nudPermanent, lladdr: mac, want: true},
		{name: "incomplete", state: nudIncomplete, lladdr: nil},
		{name: "failed with stale lladdr", state: nudFailed, lladdr: mac},
		{name: "none", state: 0, lladdr: mac},
		{name: "noarp without lladdr", state: nudNoARP, lladdr: nil},
		{name: "noarp zero lladdr", state: nudNoARP, lladdr: make([]byte, 6)},
		{name: "short lladdr", state: nudReachable, lladdr: mac[:4]},
		{name: "infiniband lladdr", state: nudReachable, lladdr: make([]byte, 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := usable(tt.state, tt.lladdr)
			if ok != tt.want {
				t.Fatalf("usable(%s, % x) ok = %v, want %v", nudString(tt.state), tt.lladdr, ok, tt.want)
			}
			if ok && got != [6]byte(mac) {
				t.Errorf("usable MAC = %s, want % x", macString(got), mac)
			}
		})
	}
}

func TestNeedsKick(t *testing.T) {
	tests := []struct {
		state   int
		present bool
		want    bool
	}{
		{present: false, want: true},
		{state: 0, present: true, want: true},
		{state: nudIncomplete, present: true, want: false},
		{state: nudReachable, present: true, want: false},
		{state: nudStale, present: true, want: true},
		{state: nudDelay, present: true, want: false},
		{state: nudProbe, present: true, want: false},
		{state: nudFailed, present: true, want: true},
		{state: nudNoARP, present: true, want: false},
		{state: nudPermanent, present: true, want: false},
	}
	for _, tt := range tests {
		t.Run(nudString(tt.state), func(t *testing.T) {
			if got := needsKick(tt.state, tt.present); got != tt.want {
				t.Errorf("needsKick(%s, present=%v) = %v, want %v", nudString(tt.state), tt.present, got, tt.want)
			}
		})
	}
}

func TestApplyNeigh(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.10")
	b := netip.MustParseAddr("198.19.0.10") // behind gateway gw
	gw := netip.MustParseAddr("198.18.0.1")
	mac1 := []byte{2, 0, 0, 0, 0, 1}
	mac2 := []byte{2, 0, 0, 0, 0, 2}

	r := newResolver(nil)
	r.SetTargets([]netip.Addr{a, b})
	r.store(Entry{Addr: a, IfIndex: 3, NextHop: a}, "x")
	r.store(Entry{Addr: b, IfIndex: 3, NextHop: gw}, "x")

	steps := []struct {
		name    string
		ifIndex int
		ip      netip.Addr
		state   int
		lladdr  []byte
		deleted bool
		changed bool
		wantA   Entry
		wantB   Entry
	}{
		{name: "other interface ignored", ifIndex: 4, ip: gw, state: nudReachable, lladdr: mac1,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw}},
		{name: "gateway resolves b", ifIndex: 3, ip: gw, state: nudReachable, lladdr: mac1, changed: true,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw, MAC: [6]byte(mac1), Resolved: true}},
		{name: "same again is no change", ifIndex: 3, ip: gw, state: nudStale, lladdr: mac1,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw, MAC: [6]byte(mac1), Resolved: true}},
		{name: "gateway MAC changes", ifIndex: 3, ip: gw, state: nudStale, lladdr: mac2, changed: true,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw, MAC: [6]byte(mac2), Resolved: true}},
		{name: "a resolves", ifIndex: 3, ip: a, state: nudReachable, lladdr: mac1, changed: true,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a, MAC: [6]byte(mac1), Resolved: true}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw, MAC: [6]byte(mac2), Resolved: true}},
		{name: "gateway deleted", ifIndex: 3, ip: gw, state: nudReachable, lladdr: mac2, deleted: true, changed: true,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a, MAC: [6]byte(mac1), Resolved: true}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw}},
		{name: "a failed", ifIndex: 3, ip: a, state: nudFailed, changed: true,
			wantA: Entry{Addr: a, IfIndex: 3, NextHop: a}, wantB: Entry{Addr: b, IfIndex: 3, NextHop: gw}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if got := r.applyNeigh(s.ifIndex, s.ip, s.state, s.lladdr, s.deleted); got != s.changed {
				t.Errorf("applyNeigh changed = %v, want %v", got, s.changed)
			}
			for _, want := range []Entry{s.wantA, s.wantB} {
				if got, _ := r.Lookup(want.Addr); got != want {
					t.Errorf("Lookup(%s) (-want +got):\n- %+v\n+ %+v", want.Addr, want, got)
				}
			}
		})
	}
}

func TestSetTargetsKeepsEntries(t *testing.T) {
	a := netip.MustParseAddr("2001:2::10")
	b := netip.MustParseAddr("198.18.0.10")
	r := newResolver(nil)
	r.SetTargets([]netip.Addr{a})
	want := Entry{Addr: a, IfIndex: 2, NextHop: a, MAC: [6]byte{2, 0, 0, 0, 0, 9}, Resolved: true}
	if !r.store(want, "") {
		t.Fatal("store of a new result reported no change")
	}
	r.SetTargets([]netip.Addr{a, netip.AddrFrom16(b.As16()), {}}) // b as IPv4-mapped, plus an invalid one
	if got, ok := r.Lookup(a); !ok || got != want {
		t.Errorf("Lookup(%s) after SetTargets = %+v, %v; want %+v kept", a, got, ok, want)
	}
	if got, ok := r.Lookup(b); !ok || got != (Entry{Addr: b}) {
		t.Errorf("Lookup(%s) = %+v, %v; want a new unresolved entry", b, got, ok)
	}
	r.SetTargets(nil)
	if _, ok := r.Lookup(a); ok {
		t.Errorf("Lookup(%s) after SetTargets(nil) still reports a target", a)
	}
	if r.store(want, "") {
		t.Error("store for a removed target reported a change")
	}
}

func TestStoreLogsReasonOnce(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.10")
	r, logs := loggedResolver(a)
	for range 3 {
		r.store(Entry{Addr: a}, "no route")
	}
	r.store(resolvedEntry(a), "")
	r.store(resolvedEntry(a), "")
	if len(logs.lines) != 2 {
		t.Errorf("logged %d lines, want 2 (unresolved once, resolved once): %q", len(logs.lines), logs.lines)
	}
}

func TestChangedCoalesces(t *testing.T) {
	r := newResolver(nil)
	r.notify()
	r.notify() // must not block
	select {
	case <-r.Changed():
	default:
		t.Fatal("Changed did not fire")
	}
	select {
	case <-r.Changed():
		t.Fatal("Changed fired twice for coalesced notifications")
	default:
	}
}

var sinkEntry Entry

func TestLookupNoAllocs(t *testing.T) {
	a := netip.MustParseAddr("2001:2::10")
	r := newResolver(nil)
	r.SetTargets([]netip.Addr{a})
	if n := testing.AllocsPerRun(1000, func() { sinkEntry, _ = r.Lookup(a) }); n != 0 {
		t.Errorf("Lookup allocates %v times per call, want 0", n)
	}
}

// logRecorder is a slog.Handler that collects the records, each as its message and its fields
// ("msg key=value ...").
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// TestStoreLimitsFlapping: a neighbour that flips between resolved and unresolved is logged at
// each change only until its burst is spent; the rest are held back (and counted) by the limiter.
func TestStoreLimitsFlapping(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.10")
	r, logs := loggedResolver(a)
	for range 20 {
		r.store(Entry{Addr: a}, "FAILED")
		r.store(resolvedEntry(a), "")
	}
	if len(logs.lines) != changeBurst {
		t.Errorf("40 changes logged %d lines, want %d (the burst): %q", len(logs.lines), changeBurst, logs.lines)
	}
}

// loggedResolver returns a resolver of target a whose records logs collects.
func loggedResolver(a netip.Addr) (*Resolver, *logRecorder) {
	logs := &logRecorder{}
	r := newResolver(slog.New(logs))
	r.SetTargets([]netip.Addr{a})
	return r, logs
}

// resolvedEntry is a resolved entry of a, directly connected.
func resolvedEntry(a netip.Addr) Entry {
	return Entry{Addr: a, IfIndex: 1, NextHop: a, MAC: [6]byte{2}, Resolved: true}
}
