package ha

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/govs/govs/conntrack"
)

// fakePlane is a data plane with a connection table of entries: a snapshot exports all of them,
// at once or, with pace, pace entries each time the sync goroutine asks whether it is done (once a
// step: a paced walk of a large table).
type fakePlane struct {
	table     []conntrack.SyncEntry
	export    []conntrack.SyncEntry
	installed []conntrack.SyncEntry
	gen       uint64
	unending  bool // its snapshots never end (a large table being walked)
	pace      int
	walk      []conntrack.SyncEntry // what the paced walk has still to export
	walked    uint64                // what snapshot gen exported so far
}

func (p *fakePlane) SyncExport(out []conntrack.SyncEntry) int {
	n := copy(out, p.export)
	p.export = p.export[n:]
	return n
}
func (p *fakePlane) SyncInstall(in []conntrack.SyncEntry) int {
	p.installed = append(p.installed, in...)
	return len(in)
}
func (p *fakePlane) SyncSnapshot() uint64 {
	p.gen++
	if p.pace > 0 {
		p.walk, p.walked = slices.Clone(p.table), 0
	} else {
		p.export, p.walked = append(p.export, p.table...), uint64(len(p.table))
	}
	return p.gen
}
func (p *fakePlane) SyncSnapshotDone(gen uint64) bool {
	k := min(p.pace, len(p.walk))
	p.export, p.walk = append(p.export, p.walk[:k]...), p.walk[k:]
	p.walked += uint64(k)
	return gen <= p.gen && !p.unending && len(p.walk) == 0
}
func (p *fakePlane) SyncSnapshotProgress(gen uint64) (entries, total uint64) {
	if gen != p.gen {
		return 0, 0
	}
	return p.walked, uint64(len(p.table))
}
func (p *fakePlane) SyncStats() conntrack.SyncStats { return conntrack.SyncStats{} }

func entry(i int) conntrack.SyncEntry {
	return conntrack.SyncEntry{
		Client: netip.MustParseAddr("198.18.1.10").As16(), VIP: netip.MustParseAddr("198.18.0.100").As16(),
		Real: netip.MustParseAddr("198.18.2.1").As16(), CPort: uint16(40000 + i), VPort: 80, RPort: 8080,
		Proto: 6, State: conntrack.StateEstablished, Op: conntrack.SyncSet, ClientMAC: [6]byte{2, 1, 2, 3, 4, 5},
	}
}

func TestSyncCodec(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	c := newSyncCodec(key)
	node := netip.MustParseAddrPort("198.18.0.1:7000")
	var es []conntrack.SyncEntry
	for i := range syncMaxEntries + 3 {
		es = append(es, entry(i))
	}
	var buf [syncMaxSize]byte
	b := c.marshal(buf[:], msgSyncBatch, node, 42, 1e18, es)
	if len(b) > 1472 {
		t.Fatalf("batch of %d bytes does not fit a 1500-byte frame", len(b))
	}
	var m syncMsg
	if r := c.unmarshal(b, &m); r != 0 {
		t.Fatalf("unmarshal: %v", r)
	}
	if m.typ != msgSyncBatch || m.node != node || m.seq != 42 || m.time != 1e18 || m.count != syncMaxEntries {
		t.Fatalf("decoded %+v", m)
	}
	for i := range m.count {
		var e conntrack.SyncEntry
		if !syncEntryAt(b, i, &e) || e != es[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, e, es[i])
		}
	}
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x10
		if r := c.unmarshal(bad, &m); r == 0 {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	for n := range len(b) {
		if r := c.unmarshal(b[:n], &m); r == 0 {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	other := newSyncCodec([]byte("another key, at least 16 bytes.."))
	if r := other.unmarshal(b, &m); r != DropBadMAC {
		t.Fatalf("other key: %v, want bad_mac", r)
	}
}

// deliverAll hands every queued datagram to the syncer it is addressed to.
func deliverAll(net *fakeNet, now time.Time, nodes map[netip.AddrPort]*Syncer, roles map[netip.AddrPort]State) {
	for len(net.queue) > 0 {
		m := net.queue[0]
		net.queue = net.queue[1:]
		if s := nodes[m.to]; s != nil {
			s.receive(now, roles[m.to], m.from, m.b)
		}
	}
}

// syncPair is the syncers of an active node a and a backup b over net, with their planes, and
// the maps deliverAll takes.
func syncPair(net *fakeNet, a, b netip.AddrPort, key []byte, pa, pb *fakePlane) (sa, sb *Syncer, nodes map[netip.AddrPort]*Syncer, roles map[netip.AddrPort]State) {
	sa = NewSyncer(pa, &fakeTransport{net, a}, a, []netip.AddrPort{b}, key, nil)
	sb = NewSyncer(pb, &fakeTransport{net, b}, b, []netip.AddrPort{a}, key, nil)
	sa.seq, sb.seq = 1000, 5000
	return sa, sb, map[netip.AddrPort]*Syncer{a: sa, b: sb}, map[netip.AddrPort]State{a: StateActive, b: StateBackup}
}

// TestSyncerStreamsAndConverges: a backup asks for a snapshot, gets the active's table and then
// its changes, and is converged only once the snapshot is complete; a lost datagram (a sequence
// gap) makes it ask again; replays and another key's messages are dropped.
func TestSyncerStreamsAndConverges(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a, b := netip.MustParseAddrPort("198.18.0.1:7000"), netip.MustParseAddrPort("198.18.0.2:7000")
	net := &fakeNet{}
	pa, pb := &fakePlane{}, &fakePlane{}
	for i := range 50 {
		pa.table = append(pa.table, entry(i))
	}
	sa, sb, nodes, roles := syncPair(net, a, b, key, pa, pb)
	now := time.Now()

	sa.step(now, StateActive) // the active drains nothing yet; sets its refresh timer
	sb.step(now, StateBackup) // asks for a snapshot
	if sb.Converged() {
		t.Fatal("backup converged before any snapshot")
	}
	deliverAll(net, now, nodes, roles)
	sa.step(now, StateActive) // sends the snapshot and its end
	deliverAll(net, now, nodes, roles)
	if len(pb.installed) != 50 || !sb.Converged() {
		t.Fatalf("backup installed %d of 50, converged %v", len(pb.installed), sb.Converged())
	}

	// Changes stream; a lost datagram un-converges the backup until the next snapshot.
	pa.export = append(pa.export, entry(100))
	sa.step(now, StateActive)
	deliverAll(net, now, nodes, roles)
	if len(pb.installed) != 51 {
		t.Fatalf("change not installed: %d", len(pb.installed))
	}
	pa.export = append(pa.export, entry(101))
	sa.step(now, StateActive)
	net.queue = nil // lost
	pa.export = append(pa.export, entry(102))
	sa.step(now, StateActive)
	deliverAll(net, now, nodes, roles)
	if sb.Converged() || sb.Status().Gaps != 1 {
		t.Fatalf("after a lost datagram: converged %v, gaps %d", sb.Converged(), sb.Status().Gaps)
	}
	sb.step(now, StateBackup)
	deliverAll(net, now, nodes, roles)
	sa.step(now, StateActive)
	deliverAll(net, now, nodes, roles)
	if !sb.Converged() {
		t.Fatal("backup did not converge again after the new snapshot")
	}

	// A replayed datagram is dropped; so is one signed with another key.
	pa.export = append(pa.export, entry(103))
	sa.step(now, StateActive)
	m := net.queue[0]
	deliverAll(net, now, nodes, roles)
	before := len(pb.installed)
	sb.receive(now, StateBackup, m.from, m.b)
	evil := NewSyncer(pa, &fakeTransport{net, a}, a, []netip.AddrPort{b}, []byte("another key, at least 16 bytes.."), nil)
	evil.seq = 1 << 62
	pa.export = append(pa.export, entry(104))
	evil.step(now, StateActive)
	deliverAll(net, now, nodes, roles)
	if len(pb.installed) != before || sb.Status().Dropped["old_seq"] != 1 || sb.Status().Dropped["bad_mac"] == 0 {
		t.Fatalf("installed %d (want %d), drops %v", len(pb.installed), before, sb.Status().Dropped)
	}
}

// TestSyncTemplateEntries: a persistence template travels as an entry in state TEMPLATE and
// reaches the data plane; an entry of a state or operation this node does not know is skipped
// alone, and the rest of its message applied.
func TestSyncTemplateEntries(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a, b := netip.MustParseAddrPort("198.18.0.1:7000"), netip.MustParseAddrPort("198.18.0.2:7000")
	net := &fakeNet{}
	pa, pb := &fakePlane{}, &fakePlane{}
	tmpl := entry(0)
	tmpl.Client, tmpl.CPort, tmpl.State, tmpl.ClientMAC = netip.MustParseAddr("198.18.1.0").As16(), 0, conntrack.StateTemplate, [6]byte{}
	unknownState, unknownOp := entry(1), entry(2)
	unknownState.State = conntrack.StateTemplate + 1
	unknownOp.Op = conntrack.SyncLocal + 1
	pa.export = []conntrack.SyncEntry{tmpl, unknownState, entry(3), unknownOp}
	sa := NewSyncer(pa, &fakeTransport{net, a}, a, []netip.AddrPort{b}, key, nil)
	sb := NewSyncer(pb, &fakeTransport{net, b}, b, []netip.AddrPort{a}, key, nil)
	sa.step(time.Now(), StateActive)
	deliverAll(net, time.Now(), map[netip.AddrPort]*Syncer{a: sa, b: sb}, map[netip.AddrPort]State{a: StateActive, b: StateBackup})
	if want := []conntrack.SyncEntry{tmpl, entry(3)}; !slices.Equal(pb.installed, want) {
		t.Fatalf("installed %+v, want the template and the known connection %+v", pb.installed, want)
	}
	if st := sb.Status(); st.ReceivedEntries != 4 || st.Gaps != 0 {
		t.Fatalf("received %d entries, gaps %d; want 4, 0", st.ReceivedEntries, st.Gaps)
	}
}

// TestSyncerWaitsForLargeSnapshot: a backup that is being sent entries does not ask again every
// second (each request starts the active node's snapshot over, and a paced snapshot of a large
// table takes seconds); one that hears nothing asks again after syncRequestEvery, and one whose
// snapshot missed changes asks again as soon as it ends.
func TestSyncerWaitsForLargeSnapshot(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a, b := netip.MustParseAddrPort("198.18.0.1:7000"), netip.MustParseAddrPort("198.18.0.2:7000")
	net := &fakeNet{}
	pa, pb := &fakePlane{unending: true}, &fakePlane{}
	sa, sb, nodes, roles := syncPair(net, a, b, key, pa, pb)
	requests := func() uint64 { return sa.Status().Received }
	t0 := time.Now()

	sb.step(t0, StateBackup)
	deliverAll(net, t0, nodes, roles)
	if requests() != 1 {
		t.Fatalf("backup sent %d requests, want 1", requests())
	}
	// Nothing comes back: it asks again after syncRequestEvery.
	sb.step(t0.Add(syncRequestEvery/2), StateBackup)
	sb.step(t0.Add(syncRequestEvery), StateBackup)
	deliverAll(net, t0, nodes, roles)
	if requests() != 2 {
		t.Fatalf("backup that heard nothing sent %d requests, want 2", requests())
	}
	// A snapshot is being sent (no end yet): no new request for a long while.
	t1 := t0.Add(syncRequestEvery)
	for i := range 30 {
		now := t1.Add(time.Duration(i) * syncRequestEvery / 2)
		pa.export = append(pa.export, entry(i))
		sa.step(now, StateActive)
		deliverAll(net, now, nodes, roles)
		sb.step(now, StateBackup)
		deliverAll(net, now, nodes, roles)
	}
	if got := requests(); got != 2 {
		t.Fatalf("backup receiving a snapshot sent %d requests in 15 s, want none more than the 2", got)
	}
	if now := t1.Add(syncSnapshotWait); true {
		sb.step(now, StateBackup)
		deliverAll(net, now, nodes, roles)
	}
	if requests() != 3 {
		t.Fatalf("backup still without the snapshot's end after %v sent %d requests, want 3", syncSnapshotWait, requests())
	}
	// A lost datagram during the snapshot: at its end the backup asks again at once.
	t2 := t1.Add(syncSnapshotWait + time.Second)
	pa.export = append(pa.export, entry(100))
	sa.step(t2, StateActive)
	net.queue = nil // lost
	pa.export = append(pa.export, entry(101))
	sa.step(t2, StateActive)
	sa.send(t2, msgSyncEnd, nil)
	deliverAll(net, t2, nodes, roles)
	sb.step(t2, StateBackup)
	deliverAll(net, t2, nodes, roles)
	if sb.Converged() || requests() != 4 {
		t.Fatalf("after a snapshot with a gap: converged %v, requests %d; want false, 4", sb.Converged(), requests())
	}
}

// BenchmarkSyncCodec is a full batch signed and then checked and decoded: the sync goroutines'
// cost per datagram of syncMaxEntries entries (reported per entry too), on either side.
func BenchmarkSyncCodec(b *testing.B) {
	c := newSyncCodec([]byte("0123456789abcdef0123456789abcdef"))
	node := netip.MustParseAddrPort("198.18.0.1:7000")
	var es [syncMaxEntries]conntrack.SyncEntry
	for i := range es {
		es[i] = entry(i)
	}
	var buf [syncMaxSize]byte
	var m syncMsg
	var e conntrack.SyncEntry
	b.ReportAllocs()
	for i := range b.N {
		p := c.marshal(buf[:], msgSyncBatch, node, uint64(i+1), 1e18, es[:])
		if c.unmarshal(p, &m) != 0 {
			b.Fatal("unmarshal failed")
		}
		for j := range m.count {
			syncEntryAt(p, j, &e)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*syncMaxEntries), "ns/entry")
}

// TestSyncerRefreshWaitsForSnapshot: the active node's periodic refresh does not start over a
// snapshot still under way; the next refresh comes syncRefreshEvery after it ended.
func TestSyncerRefreshWaitsForSnapshot(t *testing.T) {
	a, b := netip.MustParseAddrPort("198.18.0.1:7000"), netip.MustParseAddrPort("198.18.0.2:7000")
	pa := &fakePlane{unending: true}
	sa := NewSyncer(pa, &fakeTransport{&fakeNet{}, a}, a, []netip.AddrPort{b}, []byte("0123456789abcdef0123456789abcdef"), nil)
	t0 := time.Now()
	sa.step(t0, StateActive)
	sa.step(t0.Add(syncRefreshEvery), StateActive)
	if pa.gen != 1 {
		t.Fatalf("first refresh: %d snapshots asked for, want 1", pa.gen)
	}
	sa.step(t0.Add(3*syncRefreshEvery), StateActive)
	if pa.gen != 1 {
		t.Fatalf("a refresh started the snapshot under way over (%d snapshots asked for)", pa.gen)
	}
	pa.unending = false
	end := t0.Add(3*syncRefreshEvery + time.Second)
	sa.step(end, StateActive)
	sa.step(end.Add(syncRefreshEvery-time.Millisecond), StateActive)
	if pa.gen != 1 || sa.Status().SnapshotsSent != 1 {
		t.Fatalf("after the snapshot ended: %d asked for, %d sent; want 1, 1", pa.gen, sa.Status().SnapshotsSent)
	}
	sa.step(end.Add(syncRefreshEvery), StateActive)
	if pa.gen != 2 {
		t.Fatalf("no refresh %v after the last snapshot ended", syncRefreshEvery)
	}
}

// TestSyncerSnapshotProgress: while a large snapshot is under way, the active node's status shows
// it sending, since when, and how far its walk has got out of the table's size, and the backup's
// shows it receiving, since its first batch, and what it received; at the end both flags clear and
// the counts stay: everything the active node sent, everything the backup received.
func TestSyncerSnapshotProgress(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a, b := netip.MustParseAddrPort("198.18.0.1:7000"), netip.MustParseAddrPort("198.18.0.2:7000")
	net := &fakeNet{}
	const size, pace = 10000, 500
	pa, pb := &fakePlane{pace: pace}, &fakePlane{}
	for i := range size {
		pa.table = append(pa.table, entry(i))
	}
	sa, sb, nodes, roles := syncPair(net, a, b, key, pa, pb)
	if p := sa.Status().Snapshot; p != (SnapshotProgress{}) {
		t.Fatalf("active before any snapshot: %+v", p)
	}
	// The request reaches a node that has just become active, before its sync goroutine's first
	// step as active: the snapshot it starts goes on through that step.
	t0 := time.Now()
	sb.step(t0, StateBackup) // asks
	asked := t0.Add(time.Millisecond)
	deliverAll(net, asked, nodes, roles) // the active starts its walk
	if p := sa.Status().Snapshot; !p.Sending || p.Receiving || !p.Since.Equal(asked) || p.Entries != 0 || p.Total != size {
		t.Fatalf("active at the start of the walk: %+v, want sending since %v, 0 of %d", p, asked, size)
	}
	if p := sb.Status().Snapshot; p.Receiving || p.Sending {
		t.Fatalf("backup before any batch: %+v, want nothing under way", p)
	}
	var first time.Time
	for i := 1; ; i++ {
		now := asked.Add(time.Duration(i) * syncEvery)
		sa.step(now, StateActive)
		deliverAll(net, now, nodes, roles)
		if first.IsZero() {
			first = now
		}
		ps, pr := sa.Status().Snapshot, sb.Status().Snapshot
		if !ps.Sending {
			break
		}
		if want := uint64(min(i*pace, size)); ps.Entries != want || ps.Total != size || !ps.Since.Equal(asked) {
			t.Fatalf("step %d: active %+v, want sending %d of %d since %v", i, ps, want, size, asked)
		}
		if !pr.Receiving || pr.Sending || !pr.Since.Equal(first) || pr.Entries != ps.Entries || pr.Total != 0 {
			t.Fatalf("step %d: backup %+v, want receiving %d entries since %v", i, pr, ps.Entries, first)
		}
		if sb.Converged() {
			t.Fatalf("step %d: backup converged in the middle of the snapshot", i)
		}
		if i > 2*size/pace {
			t.Fatal("the snapshot does not end")
		}
	}
	ps, pr := sa.Status().Snapshot, sb.Status().Snapshot
	if ps.Sending || ps.Receiving || ps.Entries != size || ps.Total != size || !ps.Since.Equal(asked) {
		t.Fatalf("active after the snapshot: %+v, want done, %d of %d since %v", ps, size, size, asked)
	}
	if pr.Sending || pr.Receiving || pr.Entries != size || !pr.Since.Equal(first) || !sb.Converged() || len(pb.installed) != size {
		t.Fatalf("backup after the snapshot: %+v, converged %v, installed %d; want done, %d received", pr, sb.Converged(), len(pb.installed), size)
	}
	// Changes after the end leave the finished snapshot's counts alone.
	pa.export = append(pa.export, entry(size))
	later := first.Add(time.Second)
	sa.step(later, StateActive)
	deliverAll(net, later, nodes, roles)
	if p := sb.Status().Snapshot; p != pr {
		t.Fatalf("backup's last snapshot changed with a delta: %+v, was %+v", p, pr)
	}
	// A node that stands down in the middle of a snapshot no longer sends it.
	sa.startSnapshot(later)
	pa.SyncSnapshotDone(pa.gen) // the walk's first slice
	sa.step(later, StateBackup)
	if p := sa.Status().Snapshot; p.Sending || p.Entries != pace || p.Total != size || !p.Since.Equal(later) {
		t.Fatalf("after standing down mid-snapshot: %+v, want not sending, %d of %d since %v", p, pace, size, later)
	}
}
