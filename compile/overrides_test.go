package compile

import (
	"net/netip"
	"testing"
	"time"

	"github.com/govs/govs/health"
)

// TestOverrides: runtime overrides change the weight and availability of the real servers they
// name, in the tables and in the schedulers' view, on top of whatever the configuration says;
// without them the next compile gives the configuration's values back, with the same IDs and
// counts; an override naming a real server the configuration does not list changes nothing.
func TestOverrides(t *testing.T) {
	cfg := parse(t, twoServices)
	c := New()
	base := compileCommit(t, c, cfg, twoHops)
	r11 := netip.MustParseAddrPort("198.19.0.11:80")
	c.Overrides = Overrides{
		{"tcp/198.18.0.100:80", r11}:                                       {Weight: 7, SetWeight: true},
		{"tcp/198.18.0.100:80", netip.MustParseAddrPort("198.19.0.12:80")}: {Disabled: true},
		{"udp/198.18.0.100:53", netip.MustParseAddrPort("198.19.0.11:53")}: {Weight: 0, SetWeight: true, Disabled: true},
		{"tcp/198.18.0.100:80", netip.MustParseAddrPort("198.19.0.99:80")}: {Weight: 9, SetWeight: true},
		{"tcp/198.18.0.200:80", netip.MustParseAddrPort("198.19.0.11:80")}: {Disabled: true},
	}
	over := compileCommit(t, c, cfg, twoHops)
	if Same(base, over) {
		t.Fatal("the tables with overrides are the same as without")
	}
	for _, x := range []struct {
		svc      uint16
		addr     string
		weight   int32
		disabled bool
	}{
		{0, "198.19.0.11:80", 7, false},
		{0, "198.19.0.12:80", 1, true},
		{0, "198.19.0.13:80", 1, false},
		{1, "198.19.0.11:53", 0, true},
	} {
		r := realIn(over, x.svc, x.addr)
		b := realIn(base, x.svc, x.addr)
		if r == nil || b == nil {
			t.Fatalf("real server %s of service %d missing", x.addr, x.svc)
		}
		if r.Weight != x.weight || r.Disabled != x.disabled || r.ID != b.ID || r.Counts != b.Counts {
			t.Errorf("%s: weight %d disabled %v ID %d, want %d %v and its ID %d and counts kept", x.addr, r.Weight, r.Disabled, r.ID, x.weight, x.disabled, b.ID)
		}
		svc := over.Services[x.svc]
		for i, id := range svc.RealIDs {
			if id == r.ID && (svc.Dests[i].Weight != x.weight || svc.Dests[i].Available == x.disabled) {
				t.Errorf("%s: the scheduler sees weight %d available %v", x.addr, svc.Dests[i].Weight, svc.Dests[i].Available)
			}
		}
	}
	if len(over.Reals) != len(base.Reals) || len(over.Services) != len(base.Services) {
		t.Errorf("overrides of unlisted real servers added entries: %d reals, %d services; want %d, %d",
			len(over.Reals), len(over.Services), len(base.Reals), len(base.Services))
	}
	c.Overrides = nil // a reload of the file
	if back := compileCommit(t, c, cfg, twoHops); !Same(base, back) {
		t.Error("without overrides the tables are not the configuration's again")
	}
}

// TestOverridesAndSorryServer: a real server disabled at run time does not count as up, so the
// sorry server stands in once every real server is disabled or down; an override's weight is what
// slow_start ramps up.
func TestOverridesAndSorryServer(t *testing.T) {
	h := fakeHealth{}
	c := New()
	c.SetHealth(h)
	cfg := parse(t, healthConfig(`sorry_server = "198.19.0.99:80"`+"\n"))
	h.set("198.19.0.11:80", health.Up, time.Hour)
	h.set("198.19.0.12:80", health.Down, 0) // quiesced
	svc := "tcp/198.18.0.100:80"
	c.Overrides = Overrides{
		{svc, netip.MustParseAddrPort("198.19.0.11:80")}: {Weight: 50, SetWeight: true},
		{svc, netip.MustParseAddrPort("198.19.0.13:80")}: {Disabled: true},
	}
	v := viewOf(compileCommit(t, c, cfg, healthHops))
	if v["198.19.0.99:80"].avail || v["198.19.0.11:80"].weight != 50 || v["198.19.0.13:80"].avail {
		t.Fatalf(".11 up with weight 50, .13 disabled: %+v, want the sorry server on standby", v)
	}
	c.Overrides[RealRef{svc, netip.MustParseAddrPort("198.19.0.11:80")}] = Override{Disabled: true}
	if v := viewOf(compileCommit(t, c, cfg, healthHops)); !v["198.19.0.99:80"].avail || v["198.19.0.11:80"].avail {
		t.Fatalf("every real server disabled or quiesced: %+v, want the sorry server standing in", v)
	}
	h.set("198.19.0.11:80", health.Up, time.Second) // back for a second of its 10s slow start
	c.Overrides = Overrides{{svc, netip.MustParseAddrPort("198.19.0.11:80")}: {Weight: 50, SetWeight: true}}
	if v := viewOf(compileCommit(t, c, cfg, healthHops)); v["198.19.0.11:80"].weight != SlowStartWeight(50, time.Second, 10*time.Second) {
		t.Errorf("slow start from the override's weight: %d, want %d", v["198.19.0.11:80"].weight, SlowStartWeight(50, time.Second, 10*time.Second))
	}
}
