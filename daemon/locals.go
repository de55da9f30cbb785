package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/dataplane"
)

// A FullNAT connection's real server answers its local address. A reload that removes a local
// address from every virtual server (or changes their method) leaves it draining, as a removed real
// server drains: govs goes on answering ARP/ND for it and taking frames to it
// (Tables.DrainingLocals) while connections use it, and lets it go once none does. Without it
// those connections' replies would no longer reach govs, and the connections would hang until
// their idle timeout.

// drainingLocals returns the local addresses of running, and those draining already, that next
// lists for no virtual server, sorted. An address next gives a virtual or real server does not
// drain: the data plane could not tell its frames apart (its connections end as before).
func drainingLocals(running, next *config.Config, draining []netip.Addr) []netip.Addr {
	listed := map[netip.Addr]bool{}
	for _, vs := range next.VirtualServers {
		listed[vs.Address.Addr()] = true
		for _, a := range vs.LocalAddresses {
			listed[a] = true
		}
		for _, rs := range vs.RealServers {
			listed[rs.Address.Addr()] = true
		}
		if vs.SorryServer.IsValid() {
			listed[vs.SorryServer.Addr()] = true
		}
	}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if !listed[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, vs := range running.VirtualServers {
		for _, a := range vs.LocalAddresses {
			add(a)
		}
	}
	for _, a := range draining {
		add(a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// localsEvery is how often Run looks for draining local addresses whose connections all ended: a
// look walks every worker's table (see Engine.Conns), so not every tick.
const localsEvery = 5 * time.Second

// localsWatch lets draining local addresses go once no connection uses them. Its look runs in
// a goroutine of its own, one at a time: walking the tables can take a while on a big table, and
// Run must meanwhile go on reacting to health and next-hop changes.
type localsWatch struct {
	last time.Time
	busy atomic.Bool
	wg   sync.WaitGroup // Run waits for a look still running before it returns
}

func (w *localsWatch) check(ctx context.Context, d *Daemon, now time.Time) {
	if now.Sub(w.last) < localsEvery || w.busy.Load() {
		return
	}
	w.last = now
	d.mu.Lock()
	draining := slices.Clone(d.compiler.DrainingLocals)
	d.mu.Unlock()
	if len(draining) == 0 {
		return
	}
	w.busy.Store(true)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.busy.Store(false)
		releaseLocals(ctx, d, draining)
	}()
}

// releaseLocals publishes tables without those of draining that no connection uses any more.
func releaseLocals(ctx context.Context, d *Daemon, draining []netip.Addr) {
	var ended []netip.Addr
	for _, a := range draining {
		// Bounded: a look that takes longer keeps the address until the next one.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, n, err := d.engine.Conns(wctx, dataplane.ConnFilter{Local: a})
		cancel()
		if err == nil && n == 0 {
			ended = append(ended, a)
		}
	}
	if len(ended) == 0 || ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	prev := d.compiler.DrainingLocals
	d.compiler.DrainingLocals = slices.DeleteFunc(slices.Clone(prev), func(a netip.Addr) bool { return slices.Contains(ended, a) })
	if err := d.applyLocked(d.cfg, true); err != nil {
		d.compiler.DrainingLocals = prev
		d.logLimited("publish", slog.LevelError, "failed to publish new tables: %v", err)
		return
	}
	d.setVIPs(d.cfg)
	for _, a := range ended {
		if slices.Contains(prev, a) {
			slog.Info("removed local address released: no connection uses it any more", "local_address", a)
		}
	}
}
