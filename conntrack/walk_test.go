package conntrack

import (
	"testing"
	"time"
)

// TestLiveWalk: walking ids up to Span with Live finds every connection and template in use, and
// neither deleted entries nor a deleted template that waits for its last connection.
func TestLiveWalk(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: 16})
	var ids []uint32
	for n := range uint32(4) {
		ids = append(ids, insertNAT(t, tab, n))
	}
	tk := TemplateKey(clientBase, 3)
	nc := natConn(1)
	tid, err := tab.InsertTemplate(&tk, &nc, int64(time.Minute), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := nkey(9, false)
	nc = natConn(1)
	nc.Template = tid + 1
	withTemplate, err := tab.Insert(&k, &nc, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tab.Delete(ids[1])
	tab.Delete(tid) // kept (dead) until withTemplate ends

	want := map[uint32]bool{ids[0]: true, ids[2]: true, ids[3]: true, withTemplate: true}
	got := map[uint32]bool{}
	for id := uint32(0); id < uint32(tab.Span())+2; id++ {
		if c, ok := tab.Live(id); ok {
			got[id] = true
			if c.IsTemplate() {
				t.Errorf("Live(%d) is the deleted template", id)
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("Live found %v, want %v", got, want)
	}
	for id := range want {
		if !got[id] {
			t.Errorf("Live did not find entry %d", id)
		}
	}
}

// TestRemaining: an entry's remaining idle time counts down from its state's timeout as the
// table's clock moves, and starts again when a packet touches it.
func TestRemaining(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: 16, Timeouts: Timeouts{TCPSynRecv: int64(30 * time.Second)}})
	id := insertNAT(t, tab, 1)
	c := tab.Get(id)
	// Within a few ticks (about 1 ms each): timeouts round up to ticks, times down.
	near := func(got, want time.Duration) bool {
		return got < want+5*time.Millisecond && got > want-5*time.Millisecond
	}
	if got := time.Duration(tab.Remaining(c)); !near(got, 30*time.Second) {
		t.Errorf("a new SYN_RECV entry has %v left, want 30s", got)
	}
	tab.Expire(int64(10*time.Second), 1, nil) // moves the table's clock
	if got := time.Duration(tab.Remaining(c)); !near(got, 20*time.Second) {
		t.Errorf("after 10s idle: %v left, want 20s", got)
	}
	tab.Touch(id, DirOriginal, 0, int64(10*time.Second))
	if got := time.Duration(tab.Remaining(c)); !near(got, 30*time.Second) {
		t.Errorf("after a packet: %v left, want 30s again", got)
	}
	tab.Expire(int64(45*time.Second), 0, nil) // a budget of 0 removes nothing: the entry is overdue
	if got := tab.Remaining(c); got > 0 {
		t.Errorf("an overdue entry has %v left, want 0 or less", time.Duration(got))
	}
}
