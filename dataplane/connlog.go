package dataplane

import (
	"time"

	"github.com/govs/govs/conntrack"
)

// The connection log ([log] connections): each worker records a ConnEvent when it enters a
// connection in its table and when it removes one, into a ring of its own (an spscRing, as for
// connection sync), and a writer goroutine outside the data plane drains the rings
// (Engine.ConnLogDrain) and writes the lines. A worker never waits for the writer: a full ring
// drops the event and counts it (connlog_dropped). Per packet, a worker with the log on adds the
// packet to its connection's tally (connTally, beside the table: the table's 64-byte entries have
// no room for counters, and a log that is off costs the table nothing); with the log off it pays
// one branch on a nil pointer.

// ConnEventKind says what happened to a connection.
type ConnEventKind uint8

const (
	_ ConnEventKind = iota
	// ConnCreated: the connection was scheduled and entered in the table.
	ConnCreated
	// ConnExpired: the connection's entry was removed (ConnEvent.End says why).
	ConnExpired
)

func (k ConnEventKind) String() string {
	switch k {
	case ConnCreated:
		return "created"
	case ConnExpired:
		return "expired"
	}
	return "invalid"
}

// ConnEnd is why a connection's entry was removed.
type ConnEnd uint8

const (
	_ ConnEnd = iota
	// EndTimeout: idle past its state's timeout (a TCP connection closed by FIN or RST ends so,
	// after the short TIME_WAIT or CLOSE timeout; ConnEvent.State tells).
	EndTimeout
	// EndEvicted: evicted for a new connection (full_policy evict_oldest_idle).
	EndEvicted
	// EndReused: its tuple was scheduled afresh: a new SYN on the tuple of a closed connection
	// (or of one whose real server takes no new connections), or the next datagram of a
	// one-packet service.
	EndReused
	// EndRealGone: its real server, or its virtual server, was removed by a reload or went down
	// (expire_nodest_conn).
	EndRealGone
	// EndSynced: HA connection sync removed it (the peer that had it ended it).
	EndSynced
	// EndShutdown: still open when govs stopped (Engine.ConnLogRemaining).
	EndShutdown
)

func (e ConnEnd) String() string {
	switch e {
	case EndTimeout:
		return "timeout"
	case EndEvicted:
		return "evicted"
	case EndReused:
		return "reused"
	case EndRealGone:
		return "real_gone"
	case EndSynced:
		return "synced"
	case EndShutdown:
		return "shutdown"
	}
	return "none"
}

// ConnEvent is one line of the connection log, as a worker records it: fixed size, no pointers,
// copied into the worker's ring. Times are on the engine's clock: nanoseconds since
// Engine.Epoch.
type ConnEvent struct {
	Time int64 // when it happened
	// Created is when the connection was created, Last when its last packet passed (to the
	// table's tick, about a millisecond); both for ConnExpired only.
	Created, Last int64
	// Packets and Bytes (IP packet lengths) the connection carried, indexed by conntrack.Dir:
	// from the client (0) and back to it (1; NAT and FullNAT only, the other methods' replies bypass govs).
	// ConnExpired only. Later IP fragments of a datagram are not counted.
	Packets, Bytes [2]uint64
	// Addresses are IPv4-mapped for IPv4. Local is the source address and port govs gives the
	// connection towards the real server, for methods that have one (fullnat); zero otherwise.
	Client, VIP, Real, Local   [16]byte
	CPort, VPort, RPort, LPort uint16
	Worker                     uint16
	Kind                       ConnEventKind
	End                        ConnEnd // ConnExpired only
	Proto                      uint8
	Method                     Method
	State                      conntrack.State // the connection's state when the event was recorded
}

// connTally is what the connection log keeps of one connection beside the table, by entry id.
type connTally struct {
	born int64 // creation time plus 1; 0: not logged (entered before the log was on, or synced)
	dir  [2]struct{ packets, bytes uint64 }
}

// workerConnLog is a worker's side of the connection log: its ring and the tallies of its
// table's connections. The worker writes the tallies and pushes into the ring; the writer
// (Engine.ConnLogDrain) only pops.
type workerConnLog struct {
	ring   spscRing[ConnEvent]
	tally  []connTally // indexed by entry id, as long as the table's capacity
	ev     ConnEvent   // built here, copied into the ring
	worker uint16
}

func newWorkerConnLog(worker, entries int) *workerConnLog {
	return &workerConnLog{tally: make([]connTally, entries), worker: uint16(worker)}
}

// count adds a packet of n bytes travelling in dir to connection id's tally. Per packet.
func (l *workerConnLog) count(id uint32, dir conntrack.Dir, n uint32) {
	if int(id) < len(l.tally) {
		t := &l.tally[id].dir[dir&1]
		t.packets++
		t.bytes += uint64(n)
	}
}

// logCreated records connection id (c) entered at now.
func (w *Worker) logCreated(id uint32, c *conntrack.Conn) {
	l := w.log
	if int(id) >= len(l.tally) {
		return
	}
	l.tally[id] = connTally{born: w.now + 1}
	ev := w.connEvent(c)
	ev.Kind, ev.End = ConnCreated, 0
	ev.Created, ev.Last, ev.Packets, ev.Bytes = w.now, w.now, [2]uint64{}, [2]uint64{}
	if !l.ring.push(ev) {
		w.c[cConnLogDropped]++
	}
}

// logEnded records the removal of connection id (c), for reason why, and forgets its tally. A
// connection the log did not see created is not logged.
func (w *Worker) logEnded(id uint32, c *conntrack.Conn, why ConnEnd) {
	if ev := w.endEvent(id, c, why); ev != nil && !w.log.ring.push(ev) {
		w.c[cConnLogDropped]++
	}
}

// endEvent builds the expired event of connection id (c) for reason why in the log's scratch
// event, and forgets the connection's tally; nil for a connection the log did not see created.
func (w *Worker) endEvent(id uint32, c *conntrack.Conn, why ConnEnd) *ConnEvent {
	l := w.log
	if c.IsTemplate() || int(id) >= len(l.tally) {
		return nil
	}
	t := &l.tally[id]
	if t.born == 0 {
		return nil
	}
	ev := w.connEvent(c)
	ev.Kind, ev.End = ConnExpired, why
	ev.Created = t.born - 1
	// The last packet: the table keeps its tick; now's tick minus the idle ticks.
	idle := int64(uint32(w.now>>conntrack.TickShift)-c.LastSeenTick()) << conntrack.TickShift
	ev.Last = max(w.now-idle, ev.Created)
	for d := range t.dir {
		ev.Packets[d], ev.Bytes[d] = t.dir[d].packets, t.dir[d].bytes
	}
	*t = connTally{}
	return ev
}

// connEvent fills the log's scratch event with what connection c's entry says: endpoints,
// protocol, method, state. A method with a local address (fullnat) fills Local and LPort here.
func (w *Worker) connEvent(c *conntrack.Conn) *ConnEvent {
	ev := &w.log.ev
	ev.Time, ev.Worker = w.now, w.log.worker
	ev.Proto, ev.Method, ev.State = c.Proto(), Method(c.Method), c.State()
	ev.Client, ev.CPort = c.Client()
	ev.VIP, ev.VPort = c.VIP()
	ev.Real, ev.RPort = w.ct.Real(c)
	ev.Local, ev.LPort, _ = w.ct.Local(c) // zero but for FullNAT
	return ev
}

// EnableConnLog turns worker w's connection log on; call it before w runs (the engine turns the
// log on and off with SetConnLog while workers run).
func (w *Worker) EnableConnLog() {
	l := newWorkerConnLog(w.id, w.ct.Cap())
	w.pub.connLog.Store(l)
	w.log = l
}

// adoptConnLog takes up the connection log SetConnLog published (or its absence). The worker
// calls it between batches.
func (w *Worker) adoptConnLog() {
	if l := w.pub.connLog.Load(); l != w.log {
		w.log = l
	}
}

// SetConnLog turns the connection log on or off. Turned on, each worker gets a ring and a tally
// per entry of its table (40 bytes each, allocated here, not by the worker) and takes them up
// between two batches; connections already in its table are not logged. Turned off, the
// workers drop them between two batches, and ConnLogDrain goes on handing out the events they
// queued until none is left: the writer's last drain (connlog.Writer.Close) writes them.
func (e *Engine) SetConnLog(on bool) {
	for _, w := range e.workers {
		switch cur := w.pub.connLog.Load(); {
		case on && cur == nil:
			w.pub.connLog.Store(newWorkerConnLog(w.id, w.ct.Cap())) // Cap is fixed at New: safe to read
		case !on && cur != nil:
			w.pub.connLogOff.Store(cur)
			w.pub.connLog.Store(nil)
		}
	}
}

// ConnLogDrain moves up to len(out) connection-log events the workers recorded into out and
// returns how many; the log's writer calls it (one caller at a time). Each call starts at the
// next worker, so that a busy one does not keep the others' events waiting.
func (e *Engine) ConnLogDrain(out []ConnEvent) int {
	n, nw := 0, len(e.workers)
	e.logNext++
	for i := range nw {
		pub := e.workers[(e.logNext+i)%nw].pub
		if l := pub.connLogOff.Load(); l != nil && n < len(out) {
			// Turned off: what the worker queued before it dropped the log, then nothing. (An
			// event it queues in the batch it drops the log in, after this pop found the ring
			// empty, is lost.)
			got := l.ring.pop(out[n:])
			if n += got; got == 0 {
				pub.connLogOff.CompareAndSwap(l, nil)
			}
		}
		if l := pub.connLog.Load(); l != nil && n < len(out) {
			n += l.ring.pop(out[n:])
		}
	}
	return n
}

// ConnLogRemaining hands visit an expired event (EndShutdown) for every connection still in the
// workers' tables that the log saw created, so that the log has both lines of each. Call it once
// the workers have stopped (after Close), after the rings were drained; the event is valid only
// during the call.
func (e *Engine) ConnLogRemaining(visit func(*ConnEvent)) {
	now := int64(time.Since(e.epoch))
	for _, w := range e.workers {
		if w.log = w.pub.connLog.Load(); w.log == nil {
			continue
		}
		w.now = max(w.now, now)
		for id := range uint32(w.ct.Span()) {
			if c, ok := w.ct.Live(id); ok {
				if ev := w.endEvent(id, c, EndShutdown); ev != nil {
					visit(ev)
				}
			}
		}
	}
}

// Epoch is the time the engine's clock counts from: an event's Time t happened at
// Epoch().Add(time.Duration(t)).
func (e *Engine) Epoch() time.Time { return e.epoch }
