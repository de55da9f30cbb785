package dataplane

import (
	"testing"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
)

// TestConntrackStats: Stats reports the connection tables' entries and capacity summed over the
// workers, and the entries evict_oldest_idle evicted; a table that refuses is counted as a drop.
func TestConntrackStats(t *testing.T) {
	tabs := buildTables(1, standardSpecs()...)
	tc := natCases[0]
	refuse := newRig(t, tabs, 2)
	evict := newRig(t, tabs, 2)
	w, err := NewWorker(1, []Transmitter{evict.ports[0], evict.ports[1]}, [][6]byte{macPort0, macPort1},
		conntrack.Config{MaxEntries: 2, FullPolicy: conntrack.EvictOldestIdle})
	if err != nil {
		t.Fatal(err)
	}
	w.SetTables(tabs)
	evict.w = w
	for _, r := range []*rig{refuse, evict} {
		for port := uint16(40000); port < 40003; port++ {
			r.process(0, build(t, clientPkt(tc.clientAt(port), tc.vip, 6, tcpSYN)), afpacket.RxMeta{})
		}
		r.w.Publish()
	}
	st := (&Engine{workers: []*Worker{refuse.w, evict.w}}).Stats()
	for name, want := range map[string]uint64{
		"conntrack_entries":   4,
		"conntrack_capacity":  uint64(refuse.w.ct.Cap() + evict.w.ct.Cap()),
		"conntrack_evictions": 1,
		"conns_created":       5,
	} {
		if got, ok := st.Counters[name]; !ok || got != want {
			t.Errorf("%s = %d (reported: %v), want %d", name, got, ok, want)
		}
	}
	if got := st.Drops["conntrack_full"]; got != 1 {
		t.Errorf("conntrack_full drops = %d, want 1", got)
	}
}
