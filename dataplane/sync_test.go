package dataplane

import (
	"testing"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
)

// syncRigs are an active and a backup worker over the same NAT service, the backup's real server
// IDs in another order (IDs are per node).
func syncRigs(t *testing.T) (active, backup *rig) {
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
