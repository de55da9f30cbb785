package compile

import (
	"net/netip"
	"testing"
	"time"

	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/health"
)

// fakeHealth answers RealHealth from a map by "service addr"; a server it does not hold is Unknown.
type fakeHealth map[string]struct {
	st    health.State
	upFor time.Duration
}

func (f fakeHealth) RealHealth(service string, addr netip.AddrPort) (health.State, time.Duration) {
	h, ok := f[service+" "+addr.String()]
	if !ok {
		return health.Unknown, 0
	}
	return h.st, h.upFor
}

func (f fakeHealth) set(addr string, st health.State, upFor time.Duration) {
	f["tcp/198.18.0.100:80 "+addr] = struct {
		st    health.State
		upFor time.Duration
	}{st, upFor}
}

var healthHops = fakeHops{
	netip.MustParseAddr("198.19.0.11"): {Port: 1, MAC: mac(0x11), OnLink: true},
	netip.MustParseAddr("198.19.0.12"): {Port: 1, MAC: mac(0x12), OnLink: true},
	netip.MustParseAddr("198.19.0.13"): {Port: 1, MAC: mac(0x13), OnLink: true},
	netip.MustParseAddr("198.19.0.99"): {Port: 1, MAC: mac(0x99), OnLink: true},
}

// healthConfig: .11 checked (remove, slow_start 10s), .12 checked (quiesce), .13 not checked;
// extra goes into the virtual server's table (sorry_server, quorum).
func healthConfig(extra string) string {
	return `
[dataplane]
interfaces = ["l0", "l1"]

[[virtual_server]]
address  = "198.18.0.100:80"
protocol = "tcp"
method   = "nat"
` + extra + `
  [virtual_server.health_check]
  kind = "tcp"
  slow_start = "10s"

  [[virtual_server.real_server]]
  address = "198.19.0.11:80"
  weight  = 100

  [[virtual_server.real_server]]
  address = "198.19.0.12:80"
  weight  = 5
    [virtual_server.real_server.health_check]
    on_failure = "quiesce"
    slow_start = "0s"

  [[virtual_server.real_server]]
  address = "198.19.0.13:80"
  weight  = 7
    [virtual_server.real_server.health_check]
    kind = "none"
`
}

type realView struct {
	weight                      int32
	down, standby, sorry, avail bool
}

func viewOf(tb *dataplane.Tables) map[string]realView {
	out := map[string]realView{}
	s := tb.Services[0]
	for i, id := range s.RealIDs {
		r := tb.Reals[id]
		out[r.Addr.String()] = realView{r.Weight, r.Down, r.Standby, r.Sorry, s.Dests[i].Available}
	}
	return out
}

// TestHealthAvailability: a checked real server takes new connections only once it is up; until
// then (Unknown) and while down it is Down, or under on_failure "quiesce" has weight 0. A real
// server without a check is always available; without a Health source every server counts as up.
func TestHealthAvailability(t *testing.T) {
	cfg := parse(t, healthConfig(""))
	if v := viewOf(compileCommit(t, New(), cfg, healthHops)); v["198.19.0.11:80"] != (realView{100, false, false, false, true}) ||
		v["198.19.0.12:80"] != (realView{5, false, false, false, true}) {
		t.Errorf("without health: %+v, want every server up at its weight", v)
	}

	h := fakeHealth{}
	c := New()
	c.SetHealth(h)
	want := func(what string, w map[string]realView) {
		t.Helper()
		got := viewOf(compileCommit(t, c, cfg, healthHops))
		for k, x := range w {
			if got[k] != x {
				t.Errorf("%s: %s = %+v, want %+v", what, k, got[k], x)
			}
		}
		if len(got) != len(w) {
			t.Errorf("%s: %d real servers, want %d: %+v", what, len(got), len(w), got)
		}
	}
	unchecked := realView{7, false, false, false, true}
	want("unknown", map[string]realView{
		"198.19.0.11:80": {100, true, false, false, false},
		"198.19.0.12:80": {0, false, false, false, true}, // available, but weight 0: no new connections
		"198.19.0.13:80": unchecked,
	})
	h.set("198.19.0.11:80", health.Up, time.Hour)
	h.set("198.19.0.12:80", health.Up, time.Hour)
	want("up", map[string]realView{
		"198.19.0.11:80": {100, false, false, false, true},
		"198.19.0.12:80": {5, false, false, false, true},
		"198.19.0.13:80": unchecked,
	})
	h.set("198.19.0.11:80", health.Down, 0)
	h.set("198.19.0.12:80", health.Down, 0)
	want("down", map[string]realView{
		"198.19.0.11:80": {100, true, false, false, false},
		"198.19.0.12:80": {0, false, false, false, true},
		"198.19.0.13:80": unchecked,
	})
	// Back up 2.5s ago under slow_start 10s: step 2 of 10, 3/11 of the weight.
	h.set("198.19.0.11:80", health.Up, 2500*time.Millisecond)
	h.set("198.19.0.12:80", health.Up, 0) // no slow start: full weight at once
	want("slow start", map[string]realView{
		"198.19.0.11:80": {27, false, false, false, true},
		"198.19.0.12:80": {5, false, false, false, true},
		"198.19.0.13:80": unchecked,
	})
}

func TestSlowStartWeight(t *testing.T) {
	const slow = 10 * time.Second
	for _, tc := range []struct {
		w     int32
		upFor time.Duration
		want  int32
	}{
		{100, 0, 9}, {100, 999 * time.Millisecond, 9}, {100, time.Second, 18}, {100, 9999 * time.Millisecond, 90},
		{100, slow, 100}, {100, time.Hour, 100}, {1, 0, 1}, {3, time.Second, 1}, {0, 0, 0}, {100, -time.Second, 9},
	} {
		if got := SlowStartWeight(tc.w, tc.upFor, slow); got != tc.want {
			t.Errorf("SlowStartWeight(%d, %v, %v) = %d, want %d", tc.w, tc.upFor, slow, got, tc.want)
		}
	}
	if got := SlowStartWeight(100, 0, 0); got != 100 {
		t.Errorf("no slow start: weight %d, want 100", got)
	}
	// SlowStartNext lands on the next change of weight, and says when there is none.
	for up := time.Duration(0); up < slow; {
		next, ok := SlowStartNext(up, slow)
		if !ok || next <= 0 {
			t.Fatalf("SlowStartNext(%v) = %v, %v during the ramp", up, next, ok)
		}
		if a, b := SlowStartWeight(100, up+next-1, slow), SlowStartWeight(100, up+next, slow); a == b {
			t.Fatalf("at %v + %v the weight stays %d", up, next, a)
		}
		if SlowStartWeight(100, up, slow) != SlowStartWeight(100, up+next-1, slow) {
			t.Fatalf("the weight changes before %v + %v", up, next)
		}
		up += next
	}
	if _, ok := SlowStartNext(slow, slow); ok {
		t.Error("SlowStartNext after the ramp says it changes again")
	}
}

// TestSorryServerAndQuorum: the sorry server is an entry of its own, on standby while a real server
// is up (and the quorum is met); else it alone takes new connections and the real servers are on
// standby. Without a sorry server a virtual server below its quorum takes none. The sorry server
// keeps its ID and counts across compiles.
func TestSorryServerAndQuorum(t *testing.T) {
	h := fakeHealth{}
	c := New()
	c.SetHealth(h)
	cfg := parse(t, healthConfig(`sorry_server = "198.19.0.99:80"`+"\nquorum = 2\n"))

	h.set("198.19.0.11:80", health.Up, time.Hour)
	h.set("198.19.0.12:80", health.Up, time.Hour)
	tb := compileCommit(t, c, cfg, healthHops)
	v := viewOf(tb)
	if v["198.19.0.99:80"] != (realView{1, false, true, true, false}) || !v["198.19.0.11:80"].avail || tb.Services[0].NoQuorum {
		t.Fatalf("quorum met: %+v, NoQuorum %v; want the sorry server on standby", v, tb.Services[0].NoQuorum)
	}
	sorryID := tb.Services[0].RealIDs[3]
	counts := tb.Reals[sorryID].Counts

	// .12 quiesced: weight 0 does not count; .11 and .13 are 2, the quorum.
	h.set("198.19.0.12:80", health.Down, 0)
	if v := viewOf(compileCommit(t, c, cfg, healthHops)); v["198.19.0.99:80"].avail {
		t.Fatalf("quorum of 2 met by .11 and .13: %+v, want the sorry server on standby", v)
	}
	// .11 down too: below the quorum. The sorry server stands in.
	h.set("198.19.0.11:80", health.Down, 0)
	tb = compileCommit(t, c, cfg, healthHops)
	v = viewOf(tb)
	if v["198.19.0.99:80"] != (realView{1, false, false, true, true}) || !v["198.19.0.13:80"].standby || v["198.19.0.13:80"].avail {
		t.Fatalf("below quorum: %+v, want the sorry server alone available", v)
	}
	if id := tb.Services[0].RealIDs[3]; id != sorryID || tb.Reals[id].Counts != counts || tb.Services[0].NoQuorum {
		t.Errorf("sorry server ID %d counts %p NoQuorum %v; want ID %d, counts %p kept, quorum handled by it", id, tb.Reals[id].Counts, tb.Services[0].NoQuorum, sorryID, counts)
	}

	// Without the sorry server: below quorum, no new connections. The old sorry server drains:
	// it had a connection.
	counts.Inactive.Add(1)
	cfg2 := parse(t, healthConfig("quorum = 2\n"))
	tb = compileCommit(t, c, cfg2, healthHops)
	if !tb.Services[0].NoQuorum || len(tb.Services[0].RealIDs) != 3 {
		t.Fatalf("no sorry server, below quorum: NoQuorum %v, real IDs %v", tb.Services[0].NoQuorum, tb.Services[0].RealIDs)
	}
	if r := tb.Reals[sorryID]; r == nil || !r.Removed || !r.Sorry {
		t.Fatalf("the removed sorry server with a connection: %+v, want it draining", r)
	}
	h.set("198.19.0.11:80", health.Up, time.Hour)
	if tb := compileCommit(t, c, cfg2, healthHops); tb.Services[0].NoQuorum {
		t.Fatal("quorum met again, NoQuorum still set")
	}

	// No quorum set: the sorry server stands in only when no real server is up; an unresolved
	// one is not up.
	cfg3 := parse(t, healthConfig(`sorry_server = "198.19.0.99:80"`+"\n"))
	hops := fakeHops{netip.MustParseAddr("198.19.0.99"): healthHops[netip.MustParseAddr("198.19.0.99")],
		netip.MustParseAddr("198.19.0.12"): healthHops[netip.MustParseAddr("198.19.0.12")]}
	if v := viewOf(compileCommit(t, c, cfg3, hops)); !v["198.19.0.99:80"].avail {
		t.Fatalf(".11 and .13 unresolved, .12 quiesced: %+v, want the sorry server available", v)
	}
	if v := viewOf(compileCommit(t, c, cfg3, healthHops)); v["198.19.0.99:80"].avail || !v["198.19.0.13:80"].avail {
		t.Fatalf("all resolved: %+v, want the sorry server on standby", v)
	}
}
