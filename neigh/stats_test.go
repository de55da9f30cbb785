package neigh

import (
	"net/netip"
	"testing"
)

// TestStatsCountsLostNextHops: Stats counts a resolved destination that became unresolved, by a
// refresh or by a neighbour event, once per loss; never-resolved destinations are unresolved but
// not lost.
func TestStatsCountsLostNextHops(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.10")
	b := netip.MustParseAddr("198.19.0.10")
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	r := newResolver(nil)
	r.SetTargets([]netip.Addr{a, b})
	check := func(step string, want Stats) {
		t.Helper()
		if got := r.Stats(); got != want {
			t.Errorf("%s: Stats() = %+v, want %+v", step, got, want)
		}
	}
	check("start", Stats{Targets: 2, Unresolved: 2})
	r.store(Entry{Addr: b, IfIndex: 3, NextHop: b}, "no neighbour entry yet")
	check("b never resolved", Stats{Targets: 2, Unresolved: 2})
	resolved := Entry{Addr: a, IfIndex: 3, NextHop: a, MAC: mac, Resolved: true}
	r.store(resolved, "")
	check("a resolved", Stats{Targets: 2, Unresolved: 1})
	r.store(Entry{Addr: a, IfIndex: 3, NextHop: a}, "neighbour entry is FAILED")
	r.store(Entry{Addr: a, IfIndex: 3, NextHop: a}, "neighbour entry is FAILED")
	check("a lost by a refresh", Stats{Targets: 2, Unresolved: 2, Lost: 1})
	r.store(resolved, "")
	r.applyNeigh(3, a, nudFailed, nil, false)
	r.applyNeigh(3, a, 0, nil, true)
	check("a lost by events (failed, then deleted)", Stats{Targets: 2, Unresolved: 2, Lost: 2})
}
