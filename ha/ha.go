package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is HA's time source; tests drive a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SystemClock is the machine's clock.
var SystemClock Clock = systemClock{}

// maxDatagram is the largest datagram read; anything longer than a heartbeat is dropped as
// malformed.
const maxDatagram = 2048

// recvQueue is how many received datagrams may wait for the HA goroutine: a few advert
// intervals' worth from a handful of peers.
const recvQueue = 64

type datagram struct {
	from netip.AddrPort
	b    []byte
}

// HA runs a Node: RoutineRun owns it and drives it with the Clock, RoutineReceive feeds it the
// Transport's datagrams. Start starts both; Close stops them and waits. Its methods are safe for
// concurrent use.
type HA struct {
	node *Node
	tr   Transport
	clk  Clock
	log  *slog.Logger

	recv   chan datagram
	syncRx *Syncer // receives the sync messages; nil without connection sync
	cmds   chan func(now time.Time)
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	status     atomic.Pointer[Status] // published by RoutineRun after every step
	queueDrops atomic.Uint64

	resignOnce sync.Once
	resigned   chan struct{} // closed once a Resign handed over
	closeOnce  sync.Once
}

// Start creates a Node for cfg and runs it over tr, reporting its states to eng.
func Start(cfg Config, tr Transport, clk Clock, eng Engine) (*HA, error) {
	n, err := NewNode(cfg, tr, eng)
	if err != nil {
		return nil, err
	}
	h := &HA{
		node:     n,
		tr:       tr,
		clk:      clk,
		log:      n.log,
		recv:     make(chan datagram, recvQueue),
		cmds:     make(chan func(time.Time)),
		done:     make(chan struct{}),
		resigned: make(chan struct{}),
	}
	h.syncRx, _ = cfg.Sync.(*Syncer)
	h.publish(clk.Now())
	h.wg.Add(2)
	go h.RoutineReceive()
	go h.RoutineRun()
	return h, nil
}

// RoutineReceive reads datagrams from the transport and queues them for RoutineRun, dropping
// (and counting) what does not fit the queue. It ends when the transport is closed.
func (h *HA) RoutineReceive() {
	defer h.wg.Done()
	buf := make([]byte, maxDatagram)
	errs := 0
	for {
		n, from, err := h.tr.Receive(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || h.closed() {
				return
			}
			if errs++; errs == 1 || errs%1000 == 0 {
				h.log.Warn(fmt.Sprintf("ha: failed to receive heartbeats (%d errors): %v", errs, err), "errors", errs)
			}
			select {
			case <-h.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		errs = 0
		if n > 5 && buf[5] != msgHeartbeat && h.syncRx != nil {
			h.syncRx.deliver(from, append([]byte(nil), buf[:n]...))
			continue
		}
		d := datagram{from: from, b: append([]byte(nil), buf[:n]...)}
		select {
		case h.recv <- d:
		default:
			h.queueDrops.Add(1)
		}
	}
}

// RoutineRun is the node's goroutine: it starts the node, then hands it every datagram, command
// and deadline as they come.
func (h *HA) RoutineRun() {
	defer h.wg.Done()
	h.node.Start(h.clk.Now())
	h.step(h.clk.Now())
	for {
		now := h.clk.Now()
		timer := h.clk.After(max(h.node.Deadline(now).Sub(now), 0))
		select {
		case <-h.done:
			return
		case d := <-h.recv:
			h.node.Receive(h.clk.Now(), d.from, d.b)
		case cmd := <-h.cmds:
			cmd(h.clk.Now())
		case <-timer:
		}
		h.step(h.clk.Now())
	}
}

// step runs the node's timers and publishes its status.
func (h *HA) step(now time.Time) {
	h.node.Tick(now)
	h.publish(now)
	if h.node.Resigned() {
		h.resignOnce.Do(func() { close(h.resigned) })
	}
}

func (h *HA) publish(now time.Time) {
	st := h.node.Status(now)
	h.status.Store(&st)
}

// do runs cmd in RoutineRun; false if HA is closed.
func (h *HA) do(cmd func(now time.Time)) bool {
	select {
	case h.cmds <- cmd:
		return true
	case <-h.done:
		return false
	}
}

// SetFault puts the node in FAULT (see Node.SetFault).
func (h *HA) SetFault(reason string) { h.do(func(now time.Time) { h.node.SetFault(now, reason) }) }

// ClearFault ends FAULT (see Node.ClearFault).
func (h *HA) ClearFault() { h.do(func(now time.Time) { h.node.ClearFault(now) }) }

// Resign hands the VIPs over (see Node.Resign) and waits until a peer took them or ctx ends.
func (h *HA) Resign(ctx context.Context) error {
	if !h.do(func(now time.Time) { h.node.Resign(now) }) {
		return net.ErrClosed
	}
	select {
	case <-h.resigned:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State returns the node's state as last published.
func (h *HA) State() State { return h.status.Load().State }

// Status returns the node's status as last published (at least every advert interval).
func (h *HA) Status() Status {
	st := *h.status.Load()
	dropped := make(map[string]uint64, len(st.Dropped))
	for k, v := range st.Dropped {
		dropped[k] = v
	}
	dropped[DropQueueFull.String()] += h.queueDrops.Load()
	st.Dropped = dropped
	return st
}

func (h *HA) closed() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// Close stops the goroutines and closes the transport. It sends nothing: call Resign first to
// hand over.
func (h *HA) Close() error {
	var err error
	h.closeOnce.Do(func() {
		close(h.done)
		err = h.tr.Close()
		h.wg.Wait()
	})
	return err
}
