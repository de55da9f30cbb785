package daemon

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/govs/govs/config"
)

// TestDrainingLocals: the local addresses a reload leaves listed by no virtual server drain (those
// draining already too); one listed again, by any virtual server, stops draining.
func TestDrainingLocals(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	cfg := func(locals ...[]netip.Addr) *config.Config {
		c := &config.Config{}
		for _, l := range locals {
			c.VirtualServers = append(c.VirtualServers, config.VirtualServer{LocalAddresses: l})
		}
		return c
	}
	running := cfg([]netip.Addr{a("198.19.0.3"), a("198.19.0.2")}, []netip.Addr{a("198.19.0.4")})
	next := cfg(nil, []netip.Addr{a("198.19.0.2")})
	got := drainingLocals(running, next, []netip.Addr{a("198.19.0.9"), a("198.19.0.4")})
	if want := []netip.Addr{a("198.19.0.3"), a("198.19.0.4"), a("198.19.0.9")}; !slices.Equal(got, want) {
		t.Errorf("draining %v, want %v", got, want)
	}
	if got := drainingLocals(next, running, got); !slices.Equal(got, []netip.Addr{a("198.19.0.9")}) {
		t.Errorf("after the addresses came back: draining %v, want 198.19.0.9 only", got)
	}
	// One that became a virtual server's address does not drain.
	vip := cfg(nil)
	vip.VirtualServers[0].Address = netip.AddrPortFrom(a("198.19.0.9"), 80)
	if got := drainingLocals(running, vip, []netip.Addr{a("198.19.0.9")}); slices.Contains(got, a("198.19.0.9")) {
		t.Errorf("draining %v, want no VIP among them", got)
	}
}
