package dataplane

import (
	"net/netip"
	"testing"
)

func TestHostAddrs(t *testing.T) {
	var none *hostAddrs
	if none.has(netip.MustParseAddr("198.18.0.1").As16()) {
		t.Fatal("a nil set has an address")
	}
	var h hostAddrs
	if h.has(netip.MustParseAddr("198.18.0.1").As16()) {
		t.Fatal("an empty set has an address")
	}
	h.store([]netip.Addr{netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.254")})
	for a, want := range map[string]bool{"198.18.0.1": true, "198.18.0.254": true, "2001:2::1": true, "198.18.0.2": false, "2001:2::2": false} {
		if got := h.has(netip.MustParseAddr(a).As16()); got != want {
			t.Errorf("has(%s) = %v, want %v", a, got, want)
		}
	}
	h.store(nil)
	if h.has(netip.MustParseAddr("198.18.0.1").As16()) {
		t.Fatal("a replaced set still has an old address")
	}
}
