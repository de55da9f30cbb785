package dataplane

import (
	"net/netip"
	"sync/atomic"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/flow"
)

// syncRingSize is the capacity of a worker's export ring and of its inbox.
const syncRingSize = ringSize

// syncRing carries conntrack.SyncEntry records between a worker and the sync goroutine.
type syncRing = spscRing[conntrack.SyncEntry]

// workerSync is a worker's side of connection sync: the ring it exports its table's changes to
// and the inbox of synced entries it installs.
type workerSync struct {
	out, in syncRing
	entry   conntrack.SyncEntry // export's scratch: built here, copied into the ring
	// local is the last SyncLocal entry installSynced saw, for the SyncSet right after it
	// (hasLocal: not used yet).
	local    conntrack.SyncEntry
	hasLocal bool
	drain    [64]conntrack.SyncEntry
	// Counters, written by the worker only.
	installed, refused atomic.Uint64

	snapReq    atomic.Uint64 // the snapshot asked for (Engine.SyncSnapshot)
	snapDone   atomic.Uint64 // the last snapshot the worker finished exporting
	snapGen    uint64        // the worker's: the snapshot it walks
	snapCursor uint32
	snapping   bool
	snapConns  bool // the walk's second pass: connections (the first exports templates)
	// The walk's progress for `govs stats` (Engine.SyncSnapshotProgress), written by the worker
	// once per walkSnapshot call, never per packet: the snapshot it is at (published last), the
	// entries it exported so far, and its table's occupancy when the walk started.
	snapAt, snapSent, snapTotal atomic.Uint64
	// Snapshot pacing, the worker's (see walkSnapshot): one entry per snapEvery nanoseconds, with
	// up to snapshotBurst saved up; snapEvery 0 is unpaced.
	snapEvery, snapTokens, snapLast int64

	// Waking a sleeping worker when entries arrive for it (the engine sets wake; without it a
	// worker installs when it next wakes by itself).
	sleeping atomic.Bool // the worker is about to sleep in poll(2), or sleeps
	wake     func()      // interrupts that sleep; called by SyncInstall's caller, never the worker
}

// Snapshot pacing: a node's snapshot goes out at snapshotRate entries per second, shared by its
// workers. A backup's workers install what they are sent at once (SyncInstall wakes them), so
// this rate, not the backup, decides how fast a snapshot converges: 1M entries take about 5 s.
// It keeps the peer's inboxes (syncRingSize entries per worker) and its heartbeat socket's receive
// buffer (the sync goroutine sends every 5 ms: 1000 entries, 48 datagrams, 72 KB) far from full,
// and the walk's share of a worker's time small (see BenchmarkSyncSnapshot).
const (
	snapshotRate  = 200_000
	snapshotBurst = 256 // entries a worker may export at once after a pause
)

// sleepTimeout is what a worker about to sleep in poll(2) for timeout milliseconds does about
// sync: it announces the sleep (see Engine.wakeSync) and returns the timeout to use: 0 when synced
// entries wait, 1 while a paced snapshot walk goes on. The worker calls woke after the sleep.
func (s *workerSync) sleepTimeout(timeout int) int {
	s.sleeping.Store(true)
	switch {
	case s.inboxPending():
		return 0
	case s.snapshotting():
		return min(timeout, 1)
	}
	return timeout
}

func (s *workerSync) woke() { s.sleeping.Store(false) }

// inboxPending reports whether synced entries wait in the inbox.
func (s *workerSync) inboxPending() bool { return s.in.pending() != 0 }

// snapshotting reports whether a snapshot is asked for that the worker has not finished walking.
func (s *workerSync) snapshotting() bool { return s.snapReq.Load() > s.snapDone.Load() }

// exportConn reports a change of connection or template c to the sync goroutine: cheap enough for
// the paths that create, change or end connections (a copy into the ring, no lock, no allocation).
// A full ring drops the change and counts it; the sync goroutine then resyncs.
func (w *Worker) exportConn(op conntrack.SyncOp, c *conntrack.Conn) {
	s := w.sync
	if s == nil {
		return
	}
	e := &s.entry
	if c.IsTemplate() {
		// A template's key holds the service's index, which is this node's: the peer finds the
		// service by its endpoint (see conntrack.SyncEntry).
		svc := w.tables.serviceAt(c.VS)
		if svc == nil {
			return
		}
		e.VIP, e.VPort, e.Proto = svc.addr, svc.VIP.Port(), svc.Proto
		e.Client, _ = c.Client()
		e.CPort, e.InPort, e.ClientMAC = 0, 0, [6]byte{}
	} else {
		e.Proto = c.Proto()
		e.Client, e.CPort = c.Client()
		e.VIP, e.VPort = c.VIP()
		e.InPort, e.ClientMAC = c.InPort, c.ClientMAC()
	}
	e.Op, e.State = op, c.State()
	if la, lport, ok := w.ct.Local(c); ok && op == conntrack.SyncSet {
		// Its local endpoint first, in an entry of its own (see conntrack.SyncLocal); both or
		// neither, so that a peer never installs one without the other.
		if s.out.free() < 2 {
			s.out.dropped.Add(1)
			return
		}
		e.Op, e.Real, e.RPort = conntrack.SyncLocal, la, lport
		s.out.push(e)
		e.Op = op
	}
	e.Real, e.RPort = w.ct.Real(c)
	s.out.push(e)
}

// drainSync installs what the sync goroutine queued for this worker. The worker calls it between
// batches: only a worker writes its own table. It installs at most an inbox's worth per call, so
// that a steady stream of synced entries cannot hold the worker's frames back for long, while
// everything queued when it is called is installed (what a takeover needs before the first frames).
func (w *Worker) drainSync() {
	s := w.sync
	if s == nil || w.tables == nil {
		return
	}
	w.walkSnapshot()
	for done := 0; done < syncRingSize; done += len(s.drain) {
		n := s.in.pop(s.drain[:])
		if n == 0 {
			return
		}
		for i := range s.drain[:n] {
			if e := &s.drain[i]; e.Op == conntrack.SyncLocal {
				s.local, s.hasLocal = *e, true // part of the SyncSet that follows, counted with it
				continue
			}
			if w.installSynced(&s.drain[i]) {
				s.installed.Add(1)
			} else {
				s.refused.Add(1)
			}
		}
	}
}

// installSynced applies one synced change to the table. The real server is found by the
// service's key and the real server's address and port; an entry for a service or real server
// this node does not have is refused.
func (w *Worker) installSynced(e *conntrack.SyncEntry) bool {
	if e.State == conntrack.StateTemplate {
		return w.installTemplate(e)
	}
	local, hasLocal := &w.sync.local, w.sync.hasLocal
	w.sync.hasLocal = false
	orig := conntrackTuple(e)
	id, dir, found := w.ct.Lookup(&orig)
	var c *conntrack.Conn
	if found && dir == conntrack.DirOriginal {
		c = w.ct.Get(id)
	}
	if e.Op == conntrack.SyncRemove {
		if c != nil && c.Flags&conntrack.FlagSynced != 0 {
			w.removeConn(id, c, EndSynced)
		}
		return c != nil
	}
	svc, r := w.syncedReal(e)
	if r == nil {
		return false
	}
	if c != nil {
		if c.RS() != r.ID || c.VS != svc.ID {
			return false // this node scheduled the tuple elsewhere itself: its own entry stands
		}
		if !w.syncedLocalMoved(c, local, hasLocal, &orig) {
			old := c.State()
			w.ct.SetState(c, e.State)
			w.ct.Refresh(c, w.now)
			activeChanged(r, old, c.State())
			return true
		}
		// The active node forwards the connection from another local endpoint than this entry
		// holds (a new connection on the tuple whose predecessor's removal did not arrive, or
		// one this node scheduled while it was active): the real server knows the active node's,
		// so the entry goes and the synced one, with its reply tuple, takes its place below.
		w.removeConn(id, c, EndSynced)
	}
	nc := conntrack.NewConn{
		Real: e.Real, RealPort: e.RPort, Reply: svc.Method == MethodNAT,
		VS: svc.ID, RS: r.ID, State: e.State, Method: uint8(svc.Method),
		InPort: e.InPort, ClientMAC: e.ClientMAC,
	}
	if svc.OnePacket {
		return false // scheduled per datagram: nothing to keep
	}
	if int(e.InPort) >= len(w.ports) {
		nc.InPort = 0
	}
	// A FullNAT connection's local endpoint came just before it: it is installed as FullNAT
	// whatever its service's method is now (a reload may have changed it), as the data plane
	// forwards by what the entry holds. One for a FullNAT service without it lost its endpoint.
	if fullnat := hasLocal && conntrackTuple(local) == orig; fullnat || svc.Method == MethodFullNAT {
		// Replies to the local port reach the worker of the port's class (bpfgen.LocalMember),
		// which must be this one, the client's: it is when both nodes run as many workers.
		if !fullnat || (w.fn.members > 1 && uint32(local.RPort)%w.fn.members != uint32(w.id)) {
			return false
		}
		nc.Reply, nc.FullNAT, nc.Local, nc.LocalPort = true, true, local.Real, local.RPort
		// A synced connection that holds its reply tuple already is one the active node ended,
		// whose removal did not arrive (sync is best effort), and whose local port it gave to
		// this one: it goes, or the real server's replies to the port would reach its client.
		k := &w.fn.key
		k.Src, k.SrcPort, k.Dst, k.DstPort, k.Proto = e.Real, e.RPort, local.Real, local.RPort, e.Proto
		if id, dir, found := w.ct.Lookup(k); found {
			if c := w.ct.Get(id); dir == conntrack.DirReply && c.Flags&conntrack.FlagSynced != 0 {
				w.removeConn(id, c, EndSynced)
			}
		}
	}
	if svc.Persistence > 0 {
		// Attached to its template, as on the active node, the template lives as long as the
		// connection (the template arrives first: see walkSnapshot).
		nc.Flags |= conntrack.FlagPersistent
		w.tkey = conntrack.TemplateKey(conntrack.MaskAddr(e.Client, svc.PersistenceBits), svc.ID)
		if tid, _, ok := w.ct.Lookup(&w.tkey); ok && w.ct.Get(tid).RS() == r.ID {
			nc.Template = tid + 1
		}
	}
	id, err := w.ct.Import(&orig, &nc, w.now)
	if err != nil {
		return false
	}
	if conntrack.IsActive(w.ct.Get(id).State()) {
		r.Counts.Active.Add(1)
	} else {
		r.Counts.Inactive.Add(1)
	}
	return true
}

// syncedLocalMoved reports whether FullNAT connection c is synced with a local endpoint (local,
// which came just before its entry orig when hasLocal) other than the one c holds.
func (w *Worker) syncedLocalMoved(c *conntrack.Conn, local *conntrack.SyncEntry, hasLocal bool, orig *flow.Tuple) bool {
	la, lport, ok := w.ct.Local(c)
	return ok && hasLocal && conntrackTuple(local) == *orig && (la != local.Real || lport != local.RPort)
}

// syncedReal finds the service and the real server a synced entry names: the service by its
// endpoint, the real server by address and port (IDs are per node). r is nil when this node has
// no such real server in that service.
func (w *Worker) syncedReal(e *conntrack.SyncEntry) (svc *Service, r *Real) {
	if svc = w.tables.service(e.VIP, e.VPort, e.Proto); svc == nil {
		return nil, nil
	}
	for _, rid := range svc.RealIDs {
		if cand := w.tables.Reals[rid]; cand != nil && cand.addr == e.Real && realPort(cand, e.VPort) == e.RPort {
			return svc, cand
		}
	}
	return svc, nil
}

// installTemplate applies one synced persistence template change: it installs (or refreshes) the
// template under this node's key for the client network and service, or removes a synced one.
func (w *Worker) installTemplate(e *conntrack.SyncEntry) bool {
	svc, r := w.syncedReal(e)
	if svc == nil || svc.Persistence <= 0 {
		return false
	}
	w.tkey = conntrack.TemplateKey(conntrack.MaskAddr(e.Client, svc.PersistenceBits), svc.ID)
	if e.Op == conntrack.SyncRemove {
		tid, _, found := w.ct.Lookup(&w.tkey)
		if !found {
			return false
		}
		if c := w.ct.Get(tid); c.IsTemplate() && c.Flags&conntrack.FlagSynced != 0 {
			w.removeConn(tid, c, EndSynced)
		}
		return true
	}
	if r == nil {
		return false
	}
	nc := conntrack.NewConn{
		Real: e.Real, RealPort: e.RPort, VS: svc.ID, RS: r.ID, Method: uint8(svc.Method),
		Flags: conntrack.FlagPersistent,
	}
	_, err := w.ct.ImportTemplate(&w.tkey, &nc, svc.Persistence, w.now)
	return err == nil
}

func conntrackTuple(e *conntrack.SyncEntry) (t flow.Tuple) {
	t.Src, t.Dst, t.SrcPort, t.DstPort, t.Proto = e.Client, e.VIP, e.CPort, e.VPort, e.Proto
	return t
}

// EnableSync gives w the rings of HA connection sync; call it before w runs (the engine does
// with Config.Sync).
func (w *Worker) EnableSync() {
	if w.sync == nil {
		w.sync = &workerSync{}
	}
}

// SyncExport moves up to len(out) connection-table changes the workers exported into out and
// returns how many; the sync goroutine calls it (one caller at a time).
func (e *Engine) SyncExport(out []conntrack.SyncEntry) int {
	n := 0
	for _, w := range e.workers {
		if w.sync != nil && n < len(out) {
			n += w.sync.out.pop(out[n:])
		}
	}
	return n
}

// SyncStats sums the workers' sync counters.
func (e *Engine) SyncStats() (s conntrack.SyncStats) {
	for _, w := range e.workers {
		if ws := w.sync; ws != nil {
			s.ExportDropped += ws.out.dropped.Load()
			s.InboxDropped += ws.in.dropped.Load()
			s.Installed += ws.installed.Load()
			s.Refused += ws.refused.Load()
			s.Pending += ws.in.pending()
		}
	}
	return s
}

// SyncInstall queues synced entries, each for the worker the fanout program sends its frames to
// (the same hash, in Go, under the rule in force for its service). It returns how many it queued;
// the rest found their worker's inbox full. One caller at a time.
func (e *Engine) SyncInstall(entries []conntrack.SyncEntry) int {
	n := len(e.workers)
	rules := e.fanoutRules()
	queued := 0
	for i := range entries {
		en := &entries[i]
		wi := 0
		if n > 1 {
			rule, ok := rules[serviceKey{en.VIP, en.VPort, en.Proto}]
			if !ok {
				rule = rules[serviceKey{en.VIP, 0, en.Proto}]
			}
			wi = bpfgen.FanoutMember(netip.AddrFrom16(en.Client), en.CPort, en.Proto, rule, n)
		}
		w := e.workers[wi]
		if w.sync != nil && w.sync.in.push(en) {
			queued++
		}
	}
	e.wakeSync()
	return queued
}

// wakeSync wakes the workers that sleep with sync work waiting (see routineWorker): a backup's
// workers see no frames, and without it synced entries would wait in their inboxes for the
// poll timeout. A worker announces its sleep (sleeping) before it looks at its inbox a last
// time, and the caller here has queued before it looks at sleeping: one of the two sees the
// other, so no entry waits unseen. A busy worker is never woken: it drains between batches.
func (e *Engine) wakeSync() {
	for _, w := range e.workers {
		if s := w.sync; s != nil && s.wake != nil && s.sleeping.Load() && (s.inboxPending() || s.snapshotting()) {
			s.wake()
		}
	}
}

// snapshotBudget is how many entry ids a worker's snapshot walk looks at per loop iteration.
const snapshotBudget = 4096

// walkSnapshot continues the snapshot the sync goroutine asked for (Engine.SyncSnapshot): it
// exports every template and then every connection of the table, a slice per call, through the
// export ring. Templates go first so that the peer can attach each connection to its template, as
// here. A full ring pauses the walk (nothing is dropped) until the sync goroutine has drained it.
func (w *Worker) walkSnapshot() {
	s := w.sync
	if req := s.snapReq.Load(); req != s.snapGen {
		s.snapGen, s.snapCursor, s.snapping, s.snapConns = req, 0, true, false
		s.snapSent.Store(0)
		s.snapTotal.Store(uint64(w.ct.Len()))
		s.snapAt.Store(req)
	}
	if !s.snapping {
		return
	}
	if s.snapEvery > 0 {
		if got := (w.now - s.snapLast) / s.snapEvery; got > 0 {
			s.snapTokens += got
			s.snapLast += got * s.snapEvery
			if s.snapTokens >= snapshotBurst {
				s.snapTokens, s.snapLast = snapshotBurst, w.now
			}
		}
	}
	sent := s.snapSent.Load()
	for range snapshotBudget {
		if int(s.snapCursor) >= w.ct.Span() {
			if !s.snapConns {
				s.snapConns, s.snapCursor = true, 0
				continue
			}
			s.snapping = false
			s.snapSent.Store(sent)
			s.snapDone.Store(s.snapGen)
			return
		}
		if c := w.ct.Get(s.snapCursor); c != nil && c.IsTemplate() != s.snapConns {
			if s.out.free() < 2 || (s.snapEvery > 0 && s.snapTokens <= 0) {
				break
			}
			w.exportConn(conntrack.SyncSet, c)
			s.snapTokens--
			sent++
		}
		s.snapCursor++
	}
	s.snapSent.Store(sent)
}

// SyncSnapshot asks every worker to export its whole table (see walkSnapshot) and returns the
// snapshot's number for SyncSnapshotDone.
func (e *Engine) SyncSnapshot() uint64 {
	gen := e.snapGen.Add(1)
	for _, w := range e.workers {
		if w.sync != nil {
			w.sync.snapReq.Store(gen)
		}
	}
	e.wakeSync()
	return gen
}

// SyncSnapshotProgress reports how far the workers' walks of snapshot gen have got: entries they
// exported so far, and total, their tables' occupancy when each started walking (a worker that
// has not started counts nothing yet). Connections that come and go during the walk make the
// final count differ from total.
func (e *Engine) SyncSnapshotProgress(gen uint64) (entries, total uint64) {
	for _, w := range e.workers {
		if s := w.sync; s != nil && s.snapAt.Load() == gen {
			entries += s.snapSent.Load()
			total += s.snapTotal.Load()
		}
	}
	return entries, total
}

// SyncSnapshotDone reports whether every worker has exported snapshot gen (or a later one)
// into its export ring.
func (e *Engine) SyncSnapshotDone(gen uint64) bool {
	for _, w := range e.workers {
		if w.sync != nil && w.sync.snapDone.Load() < gen {
			return false
		}
	}
	return true
}
