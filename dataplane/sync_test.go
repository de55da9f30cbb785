package dataplane

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
)

// syncRigs are an active and a backup worker over the same NAT service, the backup's real server
// IDs in another order (IDs are per node).
func syncRigs(t testing.TB) (active, backup *rig) {
	spec := func(ids [2]uint16) svcSpec {
		return svcSpec{id: 0, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, sched: "rr", reals: []realSpec{
			{id: ids[0], addr: "198.18.2.1:8080", weight: 1, mac: macRS[0]}, {id: ids[1], addr: "198.18.2.2:8080", weight: 1, mac: macRS[1]}}}
	}
	active = newRig(t, buildTables(1, spec([2]uint16{0, 1})), 1024)
	backup = newRig(t, buildTables(1, spec([2]uint16{1, 0})), 1024)
	active.w.EnableSync()
	backup.w.EnableSync()
	return active, backup
}

// relay moves what the active worker exported into the backup's inbox and lets it install.
func relay(t *testing.T, active, backup *rig) int {
	t.Helper()
	var buf [256]conntrack.SyncEntry
	n := active.w.sync.out.pop(buf[:])
	for i := range buf[:n] {
		if !backup.w.sync.in.push(&buf[i]) {
			t.Fatal("backup inbox full")
		}
	}
	backup.w.drainSync()
	return n
}

// TestSyncKeepsConnections: connections the active worker created and established reach the
// backup through export, inbox and install; there their later packets (a bare ACK, which a worker
// never schedules) go to the same real server, and the real server's replies back to the client;
// a connection the active worker ends ends on the backup too.
func TestSyncKeepsConnections(t *testing.T) {
	const vip = "198.18.0.100:80"
	client := func(port uint16) string { return natCases[0].clientAt(port) }
	active, backup := syncRigs(t)
	// Backup's rr would start at its first real (198.18.2.1 too): send one flow there first so
	// that its scheduler's next pick differs from the active's for the next flows.
	backup.one(t, 0, build(t, clientPkt(client(30000), vip, 6, tcpSYN)), afpacket.RxMeta{})
	relay(t, backup, &rig{w: &Worker{sync: &workerSync{}}}) // discard the backup's own export

	want := []string{"198.18.2.1:8080", "198.18.2.2:8080", "198.18.2.1:8080"}
	for i, rs := range want {
		cport := uint16(40000 + i)
		out := active.one(t, 0, build(t, clientPkt(client(cport), vip, 6, tcpSYN)), afpacket.RxMeta{})
		if _, dst := tuple(t, out.frame); dst.String() != rs {
			t.Fatalf("flow %d: active sent to %v, want %v", i, dst, rs)
		}
		active.one(t, 1, build(t, natCases[0].replyPkt(i%2, cport)), afpacket.RxMeta{})
		active.one(t, 0, build(t, clientPkt(client(cport), vip, 6, tcpACK)), afpacket.RxMeta{})
	}
	if n := relay(t, active, backup); n != 6 { // per flow: created (SYN_RECV), ESTABLISHED
		t.Fatalf("relayed %d changes, want 6", n)
	}
	if s := backup.w.sync; s.installed.Load() != 6 || s.refused.Load() != 0 {
		t.Fatalf("backup installed %d, refused %d; want 6, 0", s.installed.Load(), s.refused.Load())
	}
	for i, rs := range want {
		cport := uint16(40000 + i)
		out := backup.one(t, 0, build(t, clientPkt(client(cport), vip, 6, tcpACK)), afpacket.RxMeta{})
		if _, dst := tuple(t, out.frame); dst.String() != rs {
			t.Fatalf("flow %d: backup sent to %v, want %v", i, dst, rs)
		}
		rep := backup.one(t, 1, build(t, natCases[0].replyPkt(i%2, cport)), afpacket.RxMeta{})
		if src, dst := tuple(t, rep.frame); src.String() != vip || dst.String() != client(cport) {
			t.Fatalf("flow %d: backup replied %v→%v", i, src, dst)
		}
	}
	if a, _, _ := backup.w.ct.RealConns(1); a != 2 { // 198.18.2.1 is ID 1 on the backup
		t.Fatalf("backup counts %d established on 198.18.2.1, want 2", a)
	}

	// The active ends flow 0 (a client RST): the backup removes it.
	active.process(0, build(t, clientPkt(client(40000), vip, 6, tcpRST)), afpacket.RxMeta{})
	active.w.Expire(active.now + 3600e9)
	relay(t, active, backup)
	backup.none(t, 0, build(t, clientPkt(client(40000), vip, 6, tcpACK)), afpacket.RxMeta{}, DropNoConnection)
}

// TestSyncRefusesUnknown: a synced connection to a real server or service the backup does not
// have is refused, not installed with a wrong real server.
func TestSyncRefusesUnknown(t *testing.T) {
	_, backup := syncRigs(t)
	e := conntrack.SyncEntry{Op: conntrack.SyncSet, Proto: 6, State: conntrack.StateEstablished, CPort: 40000, VPort: 80, RPort: 8080,
		Client: [16]byte{10: 0xff, 11: 0xff, 198, 18, 1, 10}, VIP: [16]byte{10: 0xff, 11: 0xff, 198, 18, 0, 100},
		Real: [16]byte{10: 0xff, 11: 0xff, 198, 18, 2, 99}}
	backup.w.sync.in.push(&e)
	e.Real[15], e.VPort = 1, 81
	backup.w.sync.in.push(&e)
	backup.w.drainSync()
	if s := backup.w.sync; s.installed.Load() != 0 || s.refused.Load() != 2 || backup.w.ct.Len() != 0 {
		t.Fatalf("installed %d refused %d, table %d", s.installed.Load(), s.refused.Load(), backup.w.ct.Len())
	}
}

// TestSyncRingFull: a full export ring drops and counts, and never blocks the worker.
func TestSyncRingFull(t *testing.T) {
	var r syncRing
	var e conntrack.SyncEntry
	for range syncRingSize {
		if !r.push(&e) {
			t.Fatal("push refused before the ring was full")
		}
	}
	if r.push(&e) || r.dropped.Load() != 1 {
		t.Fatalf("push into a full ring: dropped %d, want 1", r.dropped.Load())
	}
	var out [10]conntrack.SyncEntry
	if n := r.pop(out[:]); n != 10 || !r.push(&e) {
		t.Fatalf("pop %d, want 10, then a push must fit", n)
	}
}

// TestSyncSnapshot: a snapshot walk exports every connection of the table, so a backup that
// missed the changes gets them all.
func TestSyncSnapshot(t *testing.T) {
	const vip = "198.18.0.100:80"
	active, backup := syncRigs(t)
	for i := range 3 {
		cport := uint16(40000 + i)
		active.one(t, 0, build(t, clientPkt(natCases[0].clientAt(cport), vip, 6, tcpSYN)), afpacket.RxMeta{})
		active.one(t, 0, build(t, clientPkt(natCases[0].clientAt(cport), vip, 6, tcpACK)), afpacket.RxMeta{})
	}
	var discard [64]conntrack.SyncEntry
	active.w.sync.out.pop(discard[:]) // the backup missed every change
	active.w.sync.snapReq.Store(1)
	active.w.drainSync()
	if got := active.w.sync.snapDone.Load(); got != 1 {
		t.Fatalf("snapshot done = %d, want 1", got)
	}
	if n := relay(t, active, backup); n != 3 {
		t.Fatalf("snapshot exported %d entries, want 3", n)
	}
	for i := range 3 {
		backup.one(t, 0, build(t, clientPkt(natCases[0].clientAt(uint16(40000+i)), vip, 6, tcpACK)), afpacket.RxMeta{})
	}
}

// TestSyncRingConcurrent: one producer and one consumer goroutine; the consumer sees every entry
// the producer queued, in order, whole (run with -race).
func TestSyncRingConcurrent(t *testing.T) {
	r := new(syncRing)
	const n = 200000
	done := make(chan int)
	go func() {
		var e conntrack.SyncEntry
		queued := 0
		for i := range n {
			e.CPort, e.VPort = uint16(i), uint16(i>>16)
			e.Client[0] = byte(i)
			if r.push(&e) {
				queued++
			}
		}
		done <- queued
	}()
	var out [64]conntrack.SyncEntry
	got, last, queued := 0, -1, -1
	for queued < 0 || got < queued {
		select {
		case queued = <-done:
		default:
		}
		k := r.pop(out[:])
		for _, e := range out[:k] {
			i := int(e.CPort) | int(e.VPort)<<16
			if i <= last || e.Client[0] != byte(i) {
				t.Fatalf("entry %d after %d (client byte %d)", i, last, e.Client[0])
			}
			last = i
		}
		got += k
	}
	if uint64(n-got) != r.dropped.Load() {
		t.Fatalf("received %d of %d, dropped %d", got, n, r.dropped.Load())
	}
}

// persistentSyncRigs are syncRigs with the service persistent per client address (/32).
func persistentSyncRigs(t *testing.T) (active, backup *rig) {
	active, backup = syncRigs(t)
	for _, r := range []*rig{active, backup} {
		r.tables.Services[0].Persistence, r.tables.Services[0].PersistenceBits = int64(time.Minute), 32
		r.tables.Finish()
	}
	return active, backup
}

// templateOf returns the template of client (an address) in r's table for service 0, or nil.
func templateOf(r *rig, client string) *conntrack.Conn {
	k := conntrack.TemplateKey(conntrack.MaskAddr(netip.MustParseAddr(client).As16(), 32), 0)
	if id, _, ok := r.w.ct.Lookup(&k); ok {
		return r.w.ct.Get(id)
	}
	return nil
}

// TestSyncKeepsPersistence: the active worker's persistence templates reach the backup (created,
// refreshed, removed); there a persistent client's new connections go to the real server the
// active node pinned it to, though the backup's own scheduler would pick the other one, and its
// synced connections are attached to their templates as on the active node.
func TestSyncKeepsPersistence(t *testing.T) {
	const vip = "198.18.0.100:80"
	client := func(i int) string { return fmt.Sprintf("198.18.1.%d", 10+i) }
	at := func(i int, port uint16) string {
		return netip.AddrPortFrom(netip.MustParseAddr(client(i)), port).String()
	}
	active, backup := persistentSyncRigs(t)
	// The backup's rr starts where the active's does: one flow of another client moves it on, so
	// that every pick below differs from the active's.
	backup.one(t, 0, build(t, clientPkt("198.18.1.99:30000", vip, 6, tcpSYN)), afpacket.RxMeta{})
	relay(t, backup, &rig{w: &Worker{sync: &workerSync{}}})

	const clients = 4
	want := make([]string, clients)
	for i := range clients {
		out := active.one(t, 0, build(t, clientPkt(at(i, 40000), vip, 6, tcpSYN)), afpacket.RxMeta{})
		_, dst := tuple(t, out.frame)
		want[i] = dst.String()
		active.one(t, 0, build(t, clientPkt(at(i, 40000), vip, 6, tcpACK)), afpacket.RxMeta{})
		// A second connection refreshes (and exports again) the client's template.
		if out := active.one(t, 0, build(t, clientPkt(at(i, 40001), vip, 6, tcpSYN)), afpacket.RxMeta{}); func() string {
			_, d := tuple(t, out.frame)
			return d.String()
		}() != want[i] {
			t.Fatalf("client %d: the active node's second connection left its real server", i)
		}
	}
	// Per client: template created, connection created and established, template refreshed,
	// second connection created.
	if n := relay(t, active, backup); n != 5*clients {
		t.Fatalf("relayed %d changes, want %d", n, 5*clients)
	}
	if s := backup.w.sync; s.refused.Load() != 0 {
		t.Fatalf("backup refused %d synced changes", s.refused.Load())
	}
	for i := range clients {
		tp := templateOf(backup, client(i))
		if tp == nil || tp.Refs() != 2 {
			t.Fatalf("client %d: backup template %+v, want one with both synced connections attached", i, tp)
		}
		out := backup.one(t, 0, build(t, clientPkt(at(i, 40002), vip, 6, tcpSYN)), afpacket.RxMeta{})
		if _, dst := tuple(t, out.frame); dst.String() != want[i] {
			t.Errorf("client %d: the backup sent a new connection to %v, the active node pinned it to %v", i, dst, want[i])
		}
	}

	// The active node's connections end and, idle past the persistence timeout, its templates
	// expire: the backup removes its synced copies.
	for i := range clients {
		for _, p := range []uint16{40000, 40001} {
			active.process(0, build(t, clientPkt(at(i, p), vip, 6, tcpRST)), afpacket.RxMeta{})
		}
	}
	active.w.Expire(active.now + 3600e9)
	active.w.Expire(active.now + 7200e9)
	if active.w.ct.Len() != 0 {
		t.Fatalf("active table holds %d entries after expiry", active.w.ct.Len())
	}
	relay(t, active, backup)
	for i := range clients {
		// The template the backup made for its own new connection (40002) stays, dead ones go.
		if tp := templateOf(backup, client(i)); tp != nil && tp.Flags&conntrack.FlagSynced != 0 {
			t.Errorf("client %d: synced template still in the backup's table after the active's expired", i)
		}
	}
}

// TestSyncSnapshotTemplates: a snapshot exports templates before connections, so the backup
// attaches every synced connection to its template.
func TestSyncSnapshotTemplates(t *testing.T) {
	const vip = "198.18.0.100:80"
	active, backup := persistentSyncRigs(t)
	for i := range 3 {
		src := fmt.Sprintf("198.18.1.%d:40000", 10+i)
		active.one(t, 0, build(t, clientPkt(src, vip, 6, tcpSYN)), afpacket.RxMeta{})
		active.one(t, 0, build(t, clientPkt(src, vip, 6, tcpACK)), afpacket.RxMeta{})
	}
	var discard [64]conntrack.SyncEntry
	active.w.sync.out.pop(discard[:]) // the backup missed every change
	active.w.sync.snapReq.Store(1)
	active.w.drainSync()
	var got [64]conntrack.SyncEntry
	n := active.w.sync.out.pop(got[:])
	if n != 6 {
		t.Fatalf("snapshot exported %d entries, want 6", n)
	}
	for i, e := range got[:n] {
		if (e.State == conntrack.StateTemplate) != (i < 3) {
			t.Fatalf("snapshot entry %d is %v: templates must come first", i, e.State)
		}
	}
	for i := range got[:n] {
		backup.w.sync.in.push(&got[i])
	}
	backup.w.drainSync()
	for i := range 3 {
		if tp := templateOf(backup, fmt.Sprintf("198.18.1.%d", 10+i)); tp == nil || tp.Refs() != 1 {
			t.Errorf("client %d: backup template %+v, want its synced connection attached", i, tp)
		}
	}
}

// TestSyncWakesSleepingWorker: SyncInstall and SyncSnapshot wake a worker that announced its sleep
// and has sync work, never a busy one; a worker about to sleep with entries waiting does not sleep,
// and one walking a paced snapshot sleeps a millisecond at most.
func TestSyncWakesSleepingWorker(t *testing.T) {
	_, backup := syncRigs(t)
	w := backup.w
	wakes := 0
	w.sync.wake = func() { wakes++ }
	e := &Engine{workers: []*Worker{w}}
	en := conntrack.SyncEntry{Op: conntrack.SyncSet, Proto: 6, State: conntrack.StateEstablished, CPort: 40000, VPort: 80, RPort: 8080,
		Client: netip.MustParseAddr("198.18.1.10").As16(), VIP: netip.MustParseAddr("198.18.0.100").As16(),
		Real: netip.MustParseAddr("198.18.2.1").As16()}

	e.SyncInstall([]conntrack.SyncEntry{en}) // busy: drains between batches
	if wakes != 0 {
		t.Fatalf("a busy worker was woken %d times", wakes)
	}
	if got := w.sync.sleepTimeout(100); got != 0 {
		t.Fatalf("about to sleep with an entry waiting: timeout %d ms, want 0", got)
	}
	w.sync.woke()
	w.drainSync()
	if got := w.sync.sleepTimeout(100); got != 100 {
		t.Fatalf("about to sleep with nothing to do: timeout %d ms, want 100", got)
	}
	en.CPort++
	e.SyncInstall([]conntrack.SyncEntry{en})
	if wakes != 1 {
		t.Fatalf("a sleeping worker with an entry queued was woken %d times, want 1", wakes)
	}
	w.sync.woke()
	w.drainSync()
	if w.sync.installed.Load() != 2 {
		t.Fatalf("installed %d, want 2", w.sync.installed.Load())
	}
	w.sync.sleepTimeout(100)
	e.SyncSnapshot()
	if wakes != 2 {
		t.Fatalf("a sleeping worker asked for a snapshot was woken %d times in all, want 2", wakes)
	}
	if got := w.sync.sleepTimeout(100); got != 1 {
		t.Fatalf("about to sleep during a snapshot walk: timeout %d ms, want 1", got)
	}
}
