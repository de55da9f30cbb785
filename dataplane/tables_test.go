package dataplane

import (
	"net/netip"
	"testing"
)

func TestServicePortZeroFallback(t *testing.T) {
	tb := &Tables{Services: []*Service{
		{ID: 0, VIP: netip.MustParseAddrPort("198.18.0.100:80"), Proto: 6},
		{ID: 1, VIP: netip.MustParseAddrPort("198.18.0.100:0"), Proto: 6},
		{ID: 2, VIP: netip.MustParseAddrPort("[2001:2::100]:0"), Proto: 17},
	}}
	tb.Finish()
	v4 := netip.MustParseAddr("198.18.0.100").As16()
	v6 := netip.MustParseAddr("2001:2::100").As16()
	other := netip.MustParseAddr("198.18.0.101").As16()
	tests := []struct {
		name  string
		addr  [16]byte
		port  uint16
		proto uint8
		want  int // service ID, -1 for none
	}{
		{"exact port wins", v4, 80, 6, 0},
		{"other port falls back to port 0", v4, 443, 6, 1},
		{"port 0 itself", v4, 0, 6, 1},
		{"other protocol", v4, 53, 17, -1},
		{"other address", other, 80, 6, -1},
		{"ipv6 all ports", v6, 53, 17, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tb.service(tt.addr, tt.port, tt.proto)
			got := -1
			if s != nil {
				got = int(s.ID)
			}
			if got != tt.want {
				t.Errorf("service(%v, %d, %d) = %d, want %d", netip.AddrFrom16(tt.addr).Unmap(), tt.port, tt.proto, got, tt.want)
			}
		})
	}
}
