package ha

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govs/govs/conntrack"
)

// SyncPlane is the data plane as connection sync sees it (dataplane.Engine implements it).
type SyncPlane interface {
	SyncExport(out []conntrack.SyncEntry) int
	SyncInstall(in []conntrack.SyncEntry) int
	SyncSnapshot() uint64
	SyncSnapshotDone(gen uint64) bool
	SyncSnapshotProgress(gen uint64) (entries, total uint64)
	SyncStats() conntrack.SyncStats
}

// Timing of connection sync.
const (
	// syncEvery is how often the sync goroutine drains the workers' export rings and sends.
	syncEvery = 5 * time.Millisecond
	// syncRequestEvery is how often a backup without a snapshot asks for one while nothing
	// arrives.
	syncRequestEvery = time.Second
	// syncSnapshotWait is how long a backup that is being sent entries waits for the end of the
	// snapshot it asked for before it asks again: the data plane paces a snapshot (200k entries a
	// second), and every request starts it over.
	syncSnapshotWait = 2 * time.Minute
	// syncRefreshEvery is how often the active node sends a full snapshot unasked: it refreshes
	// the backups' entries (which see no packets and would otherwise idle out) and repairs what
	// lost datagrams missed.
	syncRefreshEvery = 30 * time.Second
	// syncQueue is how many received sync datagrams may wait for the sync goroutine.
	syncQueue = 1024
)

// Syncer is connection synchronisation over the heartbeat socket (see sync.go for the design and
// syncwire.go for the messages). The active node streams its workers' connection changes to its
// peers and sends a snapshot when one asks (or its export rings dropped changes); a backup
// installs what it receives and asks for a snapshot until it has one. Give it to Config.Sync and
// call Run once HA has started.
type Syncer struct {
	plane SyncPlane
	tr    Transport
	self  netip.AddrPort
	peers []netip.AddrPort
	codec *syncCodec
	skew  int64
	logf  func(format string, args ...any)

	in   chan datagram
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	converged atomic.Bool

	// The latest snapshot this node sent or received, for Status: written by the sync goroutine
	// when one starts or ends, read by Status.
	progMu sync.Mutex
	prog   snapProgress

	// The sync goroutine's own.
	seq       uint64
	last      map[netip.AddrPort]uint64 // per peer: the last sequence number accepted
	snapGen   uint64                    // active: the snapshot being exported; 0: none
	nextRefr  time.Time
	drops     uint64    // active: the export drops seen so far
	requested time.Time // backup: when a snapshot was last asked for; zero: not waiting
	dirty     bool      // backup: a change was lost since the request
	out       [syncMaxSize]byte
	buf       [4 * syncMaxEntries]conntrack.SyncEntry
	recvd     [syncMaxEntries]conntrack.SyncEntry
	wasActive bool

	sent, sentEntries, received, receivedEntries, queued, queueDrops, gaps atomic.Uint64
	snapshotsSent, snapshotsReceived, sendErrors                           atomic.Uint64
	dropped                                                                [numDropReasons]atomic.Uint64
	lastReceived                                                           atomic.Int64 // Unix ns of the last batch accepted
	// receivedConns is receivedEntries without FullNAT local endpoints (conntrack.SyncLocal), which
	// travel as entries of their own but are part of their connection's: what a snapshot's
	// progress counts, as the active node counts its table's entries.
	receivedConns atomic.Uint64
}

var _ Sync = (*Syncer)(nil)

// NewSyncer returns a Syncer for the node at self with peers, signing with key, over tr (the
// heartbeat transport) and plane.
func NewSyncer(plane SyncPlane, tr Transport, self netip.AddrPort, peers []netip.AddrPort, key []byte, logf func(string, ...any)) *Syncer {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s := &Syncer{
		plane: plane, tr: tr, self: unmapAddrPort(self), codec: newSyncCodec(key), skew: int64(DefaultMaxSkew), logf: logf,
		in: make(chan datagram, syncQueue), done: make(chan struct{}), last: map[netip.AddrPort]uint64{},
	}
	for _, p := range peers {
		s.peers = append(s.peers, unmapAddrPort(p))
	}
	return s
}

// snapProgress is the latest snapshot a node sent (active) or received (backup).
type snapProgress struct {
	sending, receiving bool
	since              time.Time // when it began; zero: none yet
	gen                uint64    // sending: the data plane's snapshot
	base               uint64    // receiving: receivedConns when it began
	entries, total     uint64    // its final counts, once it ended
}

// Converged implements Sync: this node holds the active node's table (a full snapshot and
// every change since, as far as sequence numbers tell), and its workers have applied it.
func (s *Syncer) Converged() bool { return s.converged.Load() && s.plane.SyncStats().Pending == 0 }

// deliver queues a received sync datagram (b is the caller's to keep).
func (s *Syncer) deliver(from netip.AddrPort, b []byte) {
	select {
	case s.in <- datagram{from: unmapAddrPort(from), b: b}:
	default:
		s.queueDrops.Add(1)
	}
}

// Run starts the sync goroutine; role reports the node's HA state.
func (s *Syncer) Run(role func() State) {
	s.wg.Add(1)
	go s.routine(role)
}

// Close stops the sync goroutine.
func (s *Syncer) Close() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

func (s *Syncer) routine(role func() State) {
	defer s.wg.Done()
	s.seq = uint64(time.Now().UnixNano())
	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case d := <-s.in:
			s.receive(time.Now(), role(), d.from, d.b)
		case <-tick.C:
			s.step(time.Now(), role())
		}
	}
}

// step drains the export rings (sending what they held when active) and runs the snapshot
// protocol of the node's role.
func (s *Syncer) step(now time.Time, st State) {
	active := st == StateActive
	if active != s.wasActive {
		s.wasActive = active
		if active {
			// A node that takes over keeps what it installed and is the reference from now on.
			s.nextRefr = now.Add(syncRefreshEvery)
			s.drops = s.plane.SyncStats().ExportDropped
		} else {
			s.converged.Store(false)
			s.requested = time.Time{}
		}
		// A node that takes over no longer receives what it asked for; one that stands down no
		// longer sends. (A node that becomes active may have started a snapshot already, at a
		// request that arrived before this step: that one goes on.)
		s.endProgress(!active)
	}
	if !active {
		s.flush(now, false)
		if !s.converged.Load() && s.shouldRequest(now) {
			s.requested, s.dirty = now, false
			s.send(now, msgSyncRequest, nil)
		}
		return
	}
	s.converged.Store(true)
	// Lost changes start a snapshot over; the periodic refresh waits for one under way to end (a
	// paced snapshot of a large table may take longer than syncRefreshEvery).
	if d := s.plane.SyncStats().ExportDropped; d != s.drops || (s.snapGen == 0 && !now.Before(s.nextRefr)) {
		s.drops = d
		s.startSnapshot(now)
	}
	done := s.snapGen != 0 && s.plane.SyncSnapshotDone(s.snapGen)
	s.flush(now, true)
	if done {
		s.endProgress(true)
		s.snapGen = 0
		s.nextRefr = now.Add(syncRefreshEvery)
		s.send(now, msgSyncEnd, nil)
		s.snapshotsSent.Add(1)
	}
}

// shouldRequest reports whether a backup without a converged table asks for a snapshot now: when
// it has not asked yet (or the snapshot it got missed changes); again syncRequestEvery after
// asking if nothing arrived since (the request or the answer was lost); and otherwise only after
// syncSnapshotWait, so that a large snapshot under way is not started over every second.
func (s *Syncer) shouldRequest(now time.Time) bool {
	since := now.Sub(s.requested)
	return s.requested.IsZero() || since >= syncSnapshotWait ||
		(since >= syncRequestEvery && s.lastReceived.Load() < s.requested.UnixNano())
}

func (s *Syncer) startSnapshot(now time.Time) {
	s.snapGen = s.plane.SyncSnapshot()
	s.nextRefr = now.Add(syncRefreshEvery)
	s.progMu.Lock()
	s.prog = snapProgress{sending: true, since: now, gen: s.snapGen}
	s.progMu.Unlock()
}

// endProgress records the end of the snapshot under way in one direction (sending, or else
// receiving), if any, with its final counts.
func (s *Syncer) endProgress(sending bool) {
	s.progMu.Lock()
	defer s.progMu.Unlock()
	p := &s.prog
	switch {
	case sending && p.sending:
		p.entries, p.total = s.plane.SyncSnapshotProgress(p.gen)
		p.sending = false
	case !sending && p.receiving:
		p.entries = s.receivedConns.Load() - p.base
		p.receiving = false
	}
}

// flush drains the export rings, sending their entries in batches when send.
func (s *Syncer) flush(now time.Time, send bool) {
	for range 256 { // bounded: received datagrams wait meanwhile
		n := s.plane.SyncExport(s.buf[:])
		if n == 0 {
			return
		}
		if !send {
			continue
		}
		for b := s.buf[:n]; len(b) > 0; {
			k := min(len(b), syncMaxEntries)
			s.send(now, msgSyncBatch, b[:k])
			s.sentEntries.Add(uint64(k))
			b = b[k:]
		}
	}
}

func (s *Syncer) send(now time.Time, typ uint8, entries []conntrack.SyncEntry) {
	s.seq++
	b := s.codec.marshal(s.out[:], typ, s.self, s.seq, now.UnixNano(), entries)
	for _, p := range s.peers {
		if err := s.tr.Send(b, p); err != nil {
			s.sendErrors.Add(1)
			continue
		}
		s.sent.Add(1)
	}
}

// receive handles one sync datagram.
func (s *Syncer) receive(now time.Time, st State, from netip.AddrPort, b []byte) {
	if !slices.Contains(s.peers, from) {
		s.dropped[DropUnlisted].Add(1)
		return
	}
	var m syncMsg
	if r := s.codec.unmarshal(b, &m); r != 0 {
		s.dropped[r].Add(1)
		return
	}
	switch {
	case m.node != from:
		s.dropped[DropWrongSender].Add(1)
		return
	case m.seq <= s.last[from]:
		s.dropped[DropOldSeq].Add(1)
		return
	case m.time-now.UnixNano() > s.skew || now.UnixNano()-m.time > s.skew:
		s.dropped[DropSkew].Add(1)
		return
	}
	if prev := s.last[from]; prev != 0 && m.seq != prev+1 {
		s.gaps.Add(1)
		s.lost()
	}
	s.last[from] = m.seq
	s.received.Add(1)
	active := st == StateActive
	switch m.typ {
	case msgSyncRequest:
		if active {
			s.startSnapshot(now)
		}
	case msgSyncEnd:
		s.snapshotsReceived.Add(1)
		switch {
		case active:
		case !s.requested.IsZero() && !s.dirty:
			s.converged.Store(true)
			s.requested = time.Time{}
			s.endProgress(false)
		case s.dirty:
			s.requested = time.Time{} // changes were lost meanwhile: ask again at once
			s.endProgress(false)
		}
	case msgSyncBatch:
		if active {
			return // two active nodes: each keeps its own table
		}
		n, locals := 0, 0
		for i := range m.count {
			if syncEntryAt(b, i, &s.recvd[n]) {
				if s.recvd[n].Op == conntrack.SyncLocal {
					locals++
				}
				n++
			}
		}
		if !s.requested.IsZero() {
			// The first batch after a request begins the snapshot asked for (as far as a backup
			// can tell: deltas share the stream, and count with it).
			s.progMu.Lock()
			if !s.prog.receiving {
				s.prog = snapProgress{receiving: true, since: now, base: s.receivedConns.Load()}
			}
			s.progMu.Unlock()
		}
		s.receivedEntries.Add(uint64(m.count))
		s.receivedConns.Add(uint64(m.count - locals))
		s.lastReceived.Store(now.UnixNano())
		q := s.plane.SyncInstall(s.recvd[:n])
		s.queued.Add(uint64(q))
		if q < n {
			s.lost()
		}
	}
}

// lost notes that a change did not arrive or could not be queued: the node has to ask for a
// snapshot again.
func (s *Syncer) lost() {
	s.dirty = true
	if s.converged.Load() && !s.wasActive {
		s.converged.Store(false)
		s.requested = time.Time{}
	}
}

// SyncStatus is connection sync's part of HA's status.
type SyncStatus struct {
	Converged                     bool
	Sent, SentEntries, SendErrors uint64 // datagrams (per peer) and entries sent
	Received, ReceivedEntries     uint64 // authentic sync datagrams and their entries
	Queued, Installed, Refused    uint64 // entries handed to workers; applied; refused by them
	ExportDropped, InboxDropped   uint64 // changes lost to full rings
	QueueDrops, Gaps              uint64 // datagrams not looked at; sequence gaps seen
	SnapshotsSent, SnapshotsRecvd uint64
	Snapshot                      SnapshotProgress  // the snapshot under way, or the last one
	Dropped                       map[string]uint64 // sync datagrams dropped, by reason
	LastReceived                  time.Time         // zero: never
}

// SnapshotProgress is the snapshot a node is sending or receiving, or else the last one it sent or
// received (both flags false).
type SnapshotProgress struct {
	// Sending: the active node's data plane walks its table for a peer; Receiving: a backup gets
	// the snapshot it asked for (from its first batch after the request to the end).
	Sending, Receiving bool
	Since              time.Time // when it began; zero: no snapshot yet
	// Entries the walk exported so far (sending) or entries received since it began, changes that
	// share the stream included (receiving); Total is the table's occupancy when the walk began
	// (sending only: a backup does not know it).
	Entries, Total uint64
}

// Status returns the sync counters.
func (s *Syncer) Status() SyncStatus {
	ds := s.plane.SyncStats()
	st := SyncStatus{
		Converged: s.Converged(),
		Sent:      s.sent.Load(), SentEntries: s.sentEntries.Load(), SendErrors: s.sendErrors.Load(),
		Received: s.received.Load(), ReceivedEntries: s.receivedEntries.Load(),
		Queued: s.queued.Load(), Installed: ds.Installed, Refused: ds.Refused,
		ExportDropped: ds.ExportDropped, InboxDropped: ds.InboxDropped,
		QueueDrops: s.queueDrops.Load(), Gaps: s.gaps.Load(),
		SnapshotsSent: s.snapshotsSent.Load(), SnapshotsRecvd: s.snapshotsReceived.Load(),
		Dropped: map[string]uint64{},
	}
	for r := DropReason(1); r < numDropReasons; r++ {
		if v := s.dropped[r].Load(); v != 0 {
			st.Dropped[r.String()] = v
		}
	}
	if t := s.lastReceived.Load(); t != 0 {
		st.LastReceived = time.Unix(0, t)
	}
	s.progMu.Lock()
	p := s.prog
	s.progMu.Unlock()
	st.Snapshot = SnapshotProgress{Sending: p.sending, Receiving: p.receiving, Since: p.since, Entries: p.entries, Total: p.total}
	switch {
	case p.sending:
		st.Snapshot.Entries, st.Snapshot.Total = s.plane.SyncSnapshotProgress(p.gen)
	case p.receiving:
		st.Snapshot.Entries = s.receivedConns.Load() - p.base
	}
	return st
}
