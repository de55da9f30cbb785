package dataplane

import (
	"testing"
	"time"

	"github.com/govs/govs/dataplane/afpacket"
)

// TestDisabledReal: a disabled real server gets no new connections, not even from a client its
// persistence template pins to it (a real server of weight 0 still gets those, as in IPVS), while
// its established connections go on.
func TestDisabledReal(t *testing.T) {
	tables := func(gen uint32, disabled, quiesced bool) *Tables {
		tabs := buildTables(gen, standardSpecs()...)
		tabs.Services[0].Persistence = int64(time.Minute)
		tabs.Services[0].PersistenceBits = 32
		tabs.Reals[0].Disabled = disabled
		if quiesced {
			tabs.Reals[0].Weight = 0
		}
		tabs.Finish()
		return tabs
	}
	tc := natCases[0]
	first := mustAP(tc.reals[0]).Addr()
	for _, c := range []struct {
		name               string
		disabled, quiesced bool
		wantFirst          bool // the pinned client's new connection still goes to the first real server
	}{
		{"disabled", true, false, false},
		{"weight 0", false, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, tables(1, false, false), 64)
			out := r.one(t, 0, build(t, clientPkt(tc.clientAt(40000), tc.vip, 6, tcpSYN)), afpacket.RxMeta{})
			if _, dst := tuple(t, out.frame); dst.Addr() != first {
				t.Fatalf("first connection went to %v, want %v", dst, first)
			}
			r.w.SetTables(tables(2, c.disabled, c.quiesced))
			out = r.one(t, 0, build(t, clientPkt(tc.clientAt(40001), tc.vip, 6, tcpSYN)), afpacket.RxMeta{})
			if _, dst := tuple(t, out.frame); (dst.Addr() == first) != c.wantFirst {
				t.Errorf("the pinned client's next connection went to %v; to the first real server: %v, want %v", dst, dst.Addr() == first, c.wantFirst)
			}
			out = r.one(t, 0, build(t, clientPkt(tc.clientAt(40000), tc.vip, 6, tcpACK)), afpacket.RxMeta{})
			if _, dst := tuple(t, out.frame); dst.Addr() != first {
				t.Errorf("the established connection's next segment went to %v, want %v", dst, first)
			}
		})
	}
}
