//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/govs/govs/conntrack"
)

// idleWorker runs a worker the way the engine runs an idle one (routineWorker without rings: sync
// work, then a sleep of pollTimeout cut short by Engine.wakeSync) and records the time it spends
// in drainSync: the snapshot walk on an active node, the installs on a backup.
type idleWorker struct {
	w             *Worker
	wake          chan struct{}
	busy, longest time.Duration
	calls         int
}

func (iw *idleWorker) run(epoch time.Time, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		iw.w.now = int64(time.Since(epoch))
		t := time.Now()
		iw.w.drainSync()
		d := time.Since(t)
		iw.busy += d
		iw.longest = max(iw.longest, d)
		iw.calls++
		timeout := iw.w.sync.sleepTimeout(pollTimeout)
		timer := time.NewTimer(time.Duration(timeout) * time.Millisecond)
		select {
		case <-stop:
			timer.Stop()
			return
		case <-iw.wake:
		case <-timer.C:
		}
		timer.Stop()
		iw.w.sync.woke()
	}
}

// syncEngine is an engine of n idle workers with connection sync (and paced snapshots, as the
// engine sets them), each table holding up to capacity entries.
func syncEngine(tb testing.TB, tables *Tables, n, capacity int) (*Engine, []*idleWorker) {
	e := &Engine{}
	var iws []*idleWorker
	for i := range n {
		r := newRig(tb, tables, capacity)
		r.w.id = i
		r.w.EnableSync()
		r.w.sync.snapEvery = int64(n) * 1e9 / snapshotRate
		iw := &idleWorker{w: r.w, wake: make(chan struct{}, 1)}
		r.w.sync.wake = func() {
			select {
			case iw.wake <- struct{}{}:
			default:
			}
		}
		e.workers = append(e.workers, r.w)
		iws = append(iws, iw)
	}
	e.tables.Store(tables)
	return e, iws
}

// BenchmarkSyncSnapshot measures a paced snapshot of a large table between two nodes of two idle
// workers each, through the data plane's own walk, export rings, fanout choice, inboxes and
// installs; the transport is a stand-in for ha.Syncer that drains the export rings every 5 ms
// and hands the entries over in datagram-sized batches (21), at once. It reports the time from
// the request to the backup's last install (converge-s), entries lost to full inboxes
// (inbox-drops, must be 0), the workers' time per entry walking (walk-ns/entry) and installing
// (install-ns/entry), and the longest single sync step an active and a backup worker took
// (longest-walk-µs, longest-install-µs): what a frame arriving meanwhile would have waited. The
// times are wall-clock time in drainSync, preemption on a loaded machine included.
//
//	go test -run '^$' -bench BenchmarkSyncSnapshot -benchtime 1x ./dataplane
func BenchmarkSyncSnapshot(b *testing.B) {
	for _, entries := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(entries), func(b *testing.B) { benchSyncSnapshot(b, entries) })
	}
}

func benchSyncSnapshot(b *testing.B, entries int) {
	const workers = 2
	active, backup := syncRigs(b)
	capacity := entries/workers + entries/10
	ea, aws := syncEngine(b, active.tables, workers, capacity)
	eb, bws := syncEngine(b, backup.tables, workers, capacity)
	// The active node's table: established connections, spread over its workers.
	nc := conntrack.NewConn{Real: netip.MustParseAddr("198.18.2.1").As16(), RealPort: 8080, Reply: true, RS: 0,
		State: conntrack.StateEstablished, Method: uint8(MethodNAT)}
	vip := netip.MustParseAddr("198.18.0.100").As16()
	for i := range entries {
		orig := conntrackTuple(&conntrack.SyncEntry{
			Client: netip.AddrFrom4([4]byte{198, 18, byte(4 + i>>24), byte(i >> 16)}).As16(), CPort: uint16(i),
			VIP: vip, VPort: 80, Proto: 6})
		if _, err := ea.workers[i%workers].ct.Import(&orig, &nc, 0); err != nil {
			b.Fatalf("filling the active table: entry %d: %v", i, err)
		}
	}
	epoch := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, iw := range append(aws, bws...) {
		wg.Add(1)
		go iw.run(epoch, stop, &wg)
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	var buf [4 * 21]conntrack.SyncEntry
	var took time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		installed0 := eb.SyncStats().Installed
		gen := ea.SyncSnapshot()
		tick := time.NewTicker(5 * time.Millisecond)
		for ended := false; !ended; {
			<-tick.C
			ended = ea.SyncSnapshotDone(gen) // as ha.Syncer: what the walk exported before is sent first
			for range 256 {
				n := ea.SyncExport(buf[:])
				if n == 0 {
					break
				}
				for c := buf[:n]; len(c) > 0; c = c[min(21, len(c)):] {
					eb.SyncInstall(c[:min(21, len(c))])
				}
			}
		}
		tick.Stop()
		for eb.SyncStats().Pending > 0 {
			time.Sleep(time.Millisecond)
		}
		took += time.Since(start)
		if got := eb.SyncStats().Installed - installed0; got != uint64(entries) {
			b.Fatalf("backup installed %d of %d entries (%+v)", got, entries, eb.SyncStats())
		}
	}
	b.StopTimer()
	var walk, install, longestWalk, longestInstall time.Duration
	for _, iw := range aws {
		walk += iw.busy
		longestWalk = max(longestWalk, iw.longest)
	}
	for _, iw := range bws {
		install += iw.busy
		longestInstall = max(longestInstall, iw.longest)
	}
	st := eb.SyncStats()
	b.ReportMetric(took.Seconds()/float64(b.N), "converge-s")
	b.ReportMetric(float64(st.InboxDropped), "inbox-drops")
	b.ReportMetric(float64(ea.SyncStats().ExportDropped), "export-drops")
	b.ReportMetric(float64(walk.Nanoseconds())/float64(b.N*entries), "walk-ns/entry")
	b.ReportMetric(float64(install.Nanoseconds())/float64(b.N*entries), "install-ns/entry")
	b.ReportMetric(float64(longestWalk.Microseconds()), "longest-walk-µs")
	b.ReportMetric(float64(longestInstall.Microseconds()), "longest-install-µs")
	if st.InboxDropped != 0 {
		b.Errorf("the backup's inboxes dropped %d entries", st.InboxDropped)
	}
}

// BenchmarkSyncInstallLag is how long a synced entry waits on an idle backup (its workers asleep
// in poll(2) for up to pollTimeout) between SyncInstall and the worker's install: Engine.wakeSync
// wakes the worker at once instead of leaving the entry for its next timeout.
func BenchmarkSyncInstallLag(b *testing.B) {
	_, backup := syncRigs(b)
	e, iws := syncEngine(b, backup.tables, 2, 1<<16)
	epoch := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, iw := range iws {
		wg.Add(1)
		go iw.run(epoch, stop, &wg)
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	time.Sleep(10 * time.Millisecond) // the workers fall asleep
	en := conntrack.SyncEntry{Op: conntrack.SyncSet, Proto: 6, State: conntrack.StateEstablished, VPort: 80, RPort: 8080,
		Client: netip.MustParseAddr("198.18.4.1").As16(), VIP: netip.MustParseAddr("198.18.0.100").As16(),
		Real: netip.MustParseAddr("198.18.2.1").As16()}
	var worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		en.CPort = uint16(i)
		before := e.SyncStats().Installed
		start := time.Now()
		e.SyncInstall([]conntrack.SyncEntry{en})
		for e.SyncStats().Installed == before {
			time.Sleep(20 * time.Microsecond)
		}
		worst = max(worst, time.Since(start))
		b.StopTimer()
		time.Sleep(2 * time.Millisecond) // asleep again
		b.StartTimer()
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
}
