package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/health"
	"github.com/govs/govs/internal/ratelog"
)

// TestHealthWatchStates: the daemon's view follows the Manager's changes as it drains them; a real
// server that comes back from down counts its slow start from then, one that never was down has
// full weight; a server the view does not know is Unknown. The checks are real (TCP on loopback).
func TestHealthWatchStates(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	h := newHealthWatch(t.Logf)
	defer h.mgr.Close()
	tg := health.Target{Service: "tcp/198.18.0.100:80", Server: addr}
	if st, _ := h.RealHealth(tg.Service, tg.Server); st != health.Unknown {
		t.Fatalf("a server not known yet is %s, want unknown", st)
	}
	spec := health.Spec{Kind: health.KindTCP, Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 1, Fall: 1}
	if err := h.mgr.Update(map[health.Target]health.Spec{tg: spec}); err != nil {
		t.Fatal(err)
	}
	h.states[tg] = &healthEntry{}
	wait := func(want health.State) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); ; {
			select {
			case <-h.mgr.Changed():
			case <-time.After(50 * time.Millisecond):
			}
			h.takeLocked()
			if h.states[tg].state == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("state %s, want %s", h.states[tg].state, want)
			}
		}
	}
	wait(health.Up)
	if st, upFor := h.RealHealth(tg.Service, tg.Server); st != health.Up || upFor != math.MaxInt64 {
		t.Fatalf("first up: %s for %v, want up with no slow start (never down)", st, upFor)
	}
	l.Close()
	wait(health.Down)
	if l, err = net.Listen("tcp", addr.String()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	wait(health.Up)
	if st, upFor := h.RealHealth(tg.Service, tg.Server); st != health.Up || upFor < 0 || upFor > time.Second {
		t.Fatalf("back up: %s for %v, want up since a moment (slow start counts from it)", st, upFor)
	}
}

// TestHealthWatchPublished: publishing arms the slow-start timer for the next step of a ramping real
// server, and only then; a virtual server's stand-ins (below quorum, sorry server) are logged once
// when they start and once when they end, and not before New has the first results.
func TestHealthWatchPublished(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[dataplane]
interfaces = ["l0"]
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "nat"
  [virtual_server.health_check]
  kind = "tcp"
  slow_start = "1s"
  [[virtual_server.real_server]]
  address = "198.19.0.11:80"
`), "t.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	logf := func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }
	var records bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&records, nil))
	lim := ratelog.New(time.Minute, 6, nil)
	h := newHealthWatch(logf)
	defer h.mgr.Close()
	tg := health.Target{Service: "tcp/198.18.0.100:80", Server: netip.MustParseAddrPort("198.19.0.11:80")}
	fired := func(within time.Duration) bool {
		select {
		case <-h.ramp.C:
			return true
		case <-time.After(within):
			return false
		}
	}
	empty := &dataplane.Tables{}
	h.states[tg] = &healthEntry{state: health.Up}
	h.publishedLocked(cfg, empty, log, lim)
	if fired(200 * time.Millisecond) {
		t.Fatal("the ramp timer fired for a server that never was down")
	}
	h.states[tg].back = time.Now()
	h.publishedLocked(cfg, empty, log, lim)
	if !fired(300 * time.Millisecond) {
		t.Fatal("the ramp timer did not fire within a step (100ms) of a server back up under slow_start 1s")
	}
	h.states[tg].back = time.Now().Add(-2 * time.Second)
	h.publishedLocked(cfg, empty, log, lim)
	if fired(200 * time.Millisecond) {
		t.Fatal("the ramp timer fired after the slow start ended")
	}

	below := &dataplane.Tables{Services: []*dataplane.Service{{Name: "tcp/198.18.0.100:80", NoQuorum: true}}}
	h.publishedLocked(cfg, below, log, lim)
	if len(logged) != 0 || records.Len() != 0 {
		t.Fatalf("logged %q %s before the first results", logged, records.String())
	}
	h.started = true
	h.publishedLocked(cfg, below, log, lim)
	h.publishedLocked(cfg, below, log, lim)
	h.publishedLocked(cfg, empty, log, lim)
	h.publishedLocked(cfg, empty, log, lim)
	want := []string{
		`{"level":"WARN","msg":"virtual server tcp/198.18.0.100:80: below its quorum: new connections are dropped (counted as no_quorum) until enough real servers are up","service":"tcp/198.18.0.100:80","state":"below_quorum"}`,
		`{"level":"INFO","msg":"virtual server tcp/198.18.0.100:80: enough real servers are up; they take the new connections again","service":"tcp/198.18.0.100:80","state":"normal"}`,
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(records.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		delete(r, "time")
		b, _ := json.Marshal(r)
		got = append(got, string(b))
	}
	if len(logged) != 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged %q and records:\n%s\nwant the records:\n%s", logged, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
