package conntrack_test

import (
	"testing"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/flow"
)

func TestImportInstallsAndUpdates(t *testing.T) {
	tb, err := conntrack.New(conntrack.Config{MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	orig := flow.Tuple{Src: [16]byte{10: 0xff, 11: 0xff, 198, 18, 0, 1}, Dst: [16]byte{10: 0xff, 11: 0xff, 198, 18, 0, 100},
		SrcPort: 40000, DstPort: 80, Proto: 6}
	nc := conntrack.NewConn{Real: [16]byte{10: 0xff, 11: 0xff, 198, 18, 1, 1}, RealPort: 80, RS: 3, State: conntrack.StateEstablished}
	id, err := tb.Import(&orig, &nc, 1e9)
	if err != nil {
		t.Fatal(err)
	}
	c := tb.Get(id)
	if c == nil || c.State() != conntrack.StateEstablished || c.Flags&conntrack.FlagSynced == 0 || c.RS() != 3 {
		t.Fatalf("imported entry %+v", c)
	}
	if a, i, _ := tb.RealConns(3); a != 1 || i != 0 {
		t.Fatalf("RealConns = %d active %d inactive, want 1 0", a, i)
	}
	if got, _, ok := tb.Lookup(&orig); !ok || got != id {
		t.Fatalf("Lookup after Import = %d %v", got, ok)
	}
	nc.State = conntrack.StateFinWait
	if id2, err := tb.Import(&orig, &nc, 2e9); err != nil || id2 != id {
		t.Fatalf("second Import = %d, %v; want the same entry", id2, err)
	}
	if c.State() != conntrack.StateFinWait || tb.Len() != 1 {
		t.Fatalf("state %v len %d after update", c.State(), tb.Len())
	}
	if a, i, _ := tb.RealConns(3); a != 0 || i != 1 {
		t.Fatalf("RealConns = %d active %d inactive, want 0 1", a, i)
	}
}
