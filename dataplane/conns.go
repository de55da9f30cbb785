package dataplane

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/govs/govs/conntrack"
)

// ConnFilter selects the entries Engine.Conns lists.
type ConnFilter struct {
	// Service, when HasService, keeps the entries of the service with this ID only.
	Service    uint16
	HasService bool
	// Real keeps the entries whose real server has this address (any when not valid) and port
	// (any when 0).
	Real netip.AddrPort
	// Client keeps the entries of clients with this address (any when not valid) and port (any
	// when 0).
	Client netip.AddrPort
	// Local keeps the FullNAT connections with this local address (any entry when not valid).
	Local netip.Addr
	// Max bounds how many entries are returned; Engine.Conns still counts every match.
	Max int
}

// ConnInfo is one entry of a worker's connection table: a connection, or a persistence template
// (Template; its client is the masked client address with port 0, Proto 0).
type ConnInfo struct {
	Worker   int
	Template bool
	Proto    uint8
	State    conntrack.State
	Service  uint16 // service ID
	RealID   uint16
	Client   netip.AddrPort
	VIP      netip.AddrPort // of a template: invalid (its service has it)
	Real     netip.AddrPort
	Local    netip.AddrPort // a FullNAT connection's local address and port; invalid for others
	// Expires is how much longer the entry may stay idle; 0 for one overdue.
	Expires time.Duration
}

// connRequest is a snapshot request handed to one worker (published.conns), which serves it
// between batches, a slice of its table at a time, and closes done when it has walked the whole
// table. The requester reads out and matched only after done is closed; one that gives up first
// withdraws the request and never reads them.
type connRequest struct {
	match   connMatch
	out     []ConnInfo // capacity: the most to return; the worker never grows it
	matched int
	cursor  uint32
	done    chan struct{}
}

// connMatch is a ConnFilter in the table's terms.
type connMatch struct {
	service               uint16
	hasService            bool
	real, client          [16]byte
	hasReal, hasClient    bool
	realPort, clientPort  uint16
	hasRealPort, hasCPort bool
	local                 [16]byte
	hasLocal              bool
}

func matchOf(f ConnFilter) connMatch {
	m := connMatch{service: f.Service, hasService: f.HasService}
	if f.Real.Addr().IsValid() {
		m.real, m.hasReal = f.Real.Addr().As16(), true
	}
	if f.Real.Port() != 0 {
		m.realPort, m.hasRealPort = f.Real.Port(), true
	}
	if f.Client.Addr().IsValid() {
		m.client, m.hasClient = f.Client.Addr().As16(), true
	}
	if f.Client.Port() != 0 {
		m.clientPort, m.hasCPort = f.Client.Port(), true
	}
	if f.Local.IsValid() {
		m.local, m.hasLocal = f.Local.As16(), true
	}
	return m
}

// connWalkSlice is how many table entries a worker looks at between two batches for a snapshot:
// a few hundred microseconds of sequential reads, so forwarding waits no longer than that, and a
// table of millions is listed within seconds. (A variable for tests.)
var connWalkSlice = 1 << 16

// serveConns walks the next slice of the table for req and, at the end of the table, hands req
// back. Called by the worker's own goroutine between batches (from Publish: at least every
// publishEvery while busy, every poll timeout while idle).
func (w *Worker) serveConns(req *connRequest) {
	end := min(uint64(req.cursor)+uint64(connWalkSlice), uint64(w.ct.Span()))
	m := &req.match
	for id := req.cursor; uint64(id) < end; id++ {
		c, ok := w.ct.Live(id)
		if !ok || (m.hasService && c.VS != m.service) {
			continue
		}
		raddr, rport := w.ct.Real(c)
		caddr, cport := c.Client()
		if (m.hasReal && raddr != m.real) || (m.hasRealPort && rport != m.realPort) ||
			(m.hasClient && caddr != m.client) || (m.hasCPort && cport != m.clientPort) {
			continue
		}
		if laddr, _, ok := w.ct.Local(c); m.hasLocal && (!ok || laddr != m.local) {
			continue
		}
		req.matched++
		if len(req.out) == cap(req.out) {
			continue
		}
		ci := ConnInfo{
			Worker:   w.id,
			Template: c.IsTemplate(),
			Proto:    c.Proto(),
			State:    c.State(),
			Service:  c.VS,
			RealID:   c.RS(),
			Client:   netip.AddrPortFrom(netip.AddrFrom16(caddr).Unmap(), cport),
			Real:     netip.AddrPortFrom(netip.AddrFrom16(raddr).Unmap(), rport),
			Expires:  time.Duration(max(w.ct.Remaining(c), 0)),
		}
		if !ci.Template {
			vaddr, vport := c.VIP()
			ci.VIP = netip.AddrPortFrom(netip.AddrFrom16(vaddr).Unmap(), vport)
		}
		if laddr, lport, ok := w.ct.Local(c); ok {
			ci.Local = netip.AddrPortFrom(netip.AddrFrom16(laddr).Unmap(), lport)
		}
		req.out = append(req.out, ci)
	}
	req.cursor = uint32(end)
	if end >= uint64(w.ct.Span()) {
		w.pub.conns.CompareAndSwap(req, nil)
		close(req.done)
	}
}

// connsMu serialises Engine.Conns: one snapshot at a time walks the tables.
var connsMu sync.Mutex

// MaxConns is the most entries Engine.Conns returns.
const MaxConns = 100000

// Conns lists the entries of every worker's connection table that f selects, at most f.Max of
// them (capped at MaxConns), and counts all that match. Each worker walks its own table between
// batches, a slice at a time (see serveConns), so listing takes no lock the workers take and
// stalls no worker for long; the entries are each worker's as it walked them, not one instant's.
// It fails only when ctx ends first.
func (e *Engine) Conns(ctx context.Context, f ConnFilter) (out []ConnInfo, matched int, err error) {
	connsMu.Lock()
	defer connsMu.Unlock()
	limit := min(max(f.Max, 0), MaxConns)
	reqs := make([]*connRequest, len(e.workers))
	for i, w := range e.workers {
		reqs[i] = &connRequest{match: matchOf(f), out: make([]ConnInfo, 0, limit), done: make(chan struct{})}
		w.pub.conns.Store(reqs[i])
	}
	for i, r := range reqs {
		select {
		case <-r.done:
		case <-ctx.Done():
			for j := i; j < len(reqs); j++ {
				e.workers[j].pub.conns.CompareAndSwap(reqs[j], nil)
			}
			return nil, 0, ctx.Err()
		}
	}
	for _, r := range reqs {
		matched += r.matched
		for _, c := range r.out {
			if len(out) < limit {
				out = append(out, c)
			}
		}
	}
	return out, matched, nil
}
