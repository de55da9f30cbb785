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

// TestImportTemplate: a synced template is installed, refreshed while it names the same real
// server, replaced when it names another (the active node's choice wins), and never evicts.
func TestImportTemplate(t *testing.T) {
	tb, err := conntrack.New(conntrack.Config{MaxEntries: 2, FullPolicy: conntrack.EvictOldestIdle})
	if err != nil {
		t.Fatal(err)
	}
	k := conntrack.TemplateKey([16]byte{10: 0xff, 11: 0xff, 198, 18, 0, 0}, 3)
	rs1 := conntrack.NewConn{Real: [16]byte{10: 0xff, 11: 0xff, 198, 18, 1, 1}, RealPort: 80, RS: 1}
	rs2 := conntrack.NewConn{Real: [16]byte{10: 0xff, 11: 0xff, 198, 18, 1, 2}, RealPort: 80, RS: 2}
	id, err := tb.ImportTemplate(&k, &rs1, 60e9, 1e9)
	if err != nil {
		t.Fatal(err)
	}
	c := tb.Get(id)
	if !c.IsTemplate() || c.RS() != 1 || c.Flags&conntrack.FlagSynced == 0 || tb.Timeout(c) < 60e9 {
		t.Fatalf("imported template %+v", c)
	}
	if id2, err := tb.ImportTemplate(&k, &rs1, 60e9, 50e9); err != nil || id2 != id || c.LastSeenTick() != uint32(int64(50e9)>>conntrack.TickShift) {
		t.Fatalf("refresh: id %d (want %d), %v, last seen tick %d", id2, id, err, c.LastSeenTick())
	}
	// Past the first import's timeout, not the refresh's: the refresh holds it.
	if tb.Expire(100e9, 10, nil); tb.Len() != 1 {
		t.Fatal("the refreshed template expired from the first import's time")
	}
	id3, err := tb.ImportTemplate(&k, &rs2, 60e9, 101e9)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, ok := tb.Lookup(&k); !ok || got != id3 || tb.Get(id3).RS() != 2 || tb.Len() != 1 {
		t.Fatalf("replaced template: lookup %d %v, RS %d, len %d", got, ok, tb.Get(id3).RS(), tb.Len())
	}
	if _, _, tpl := tb.RealConns(1); tpl != 0 {
		t.Fatalf("the replaced template is still counted for its real server")
	}
	// A full table: a synced template does not evict a live entry.
	orig := flow.Tuple{Src: [16]byte{10: 0xff, 11: 0xff, 198, 18, 0, 9}, Dst: [16]byte{10: 0xff, 11: 0xff, 198, 18, 0, 100},
		SrcPort: 1, DstPort: 80, Proto: 6}
	if _, err := tb.InsertTemplate(&orig, &rs1, 60e9, 101e9, nil); err != nil {
		t.Fatal(err)
	}
	k2 := conntrack.TemplateKey([16]byte{10: 0xff, 11: 0xff, 198, 18, 7, 0}, 3)
	if _, err := tb.ImportTemplate(&k2, &rs1, 60e9, 102e9); err != conntrack.ErrFull || tb.Stats().Evicted != 0 {
		t.Fatalf("import into a full table: %v, evicted %d; want ErrFull, none", err, tb.Stats().Evicted)
	}
}
