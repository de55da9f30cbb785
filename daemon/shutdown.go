package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/govs/govs/sched"
)

// Shutdown gets the daemon ready to stop; Close follows. An HA node hands its role over (it stops
// answering for the VIPs, advertises priority 0 and forwards until a peer is active). A
// stand-alone node drains: it refuses new connections and goes on forwarding the established ones
// until none is left, shutdown_drain has passed, or ctx ends (a second signal).
func (d *Daemon) Shutdown(ctx context.Context) {
	if d.ha != nil {
		d.ha.close()
		return
	}
	d.mu.Lock()
	drain := d.cfg.ShutdownDrain
	if drain <= 0 || d.engine == nil || !d.ready {
		d.mu.Unlock()
		return
	}
	d.draining = true
	err := d.applyLocked(d.cfg, false)
	d.mu.Unlock()
	if err != nil {
		d.logf("failed to refuse new connections while draining: %v", err)
		return
	}
	n := d.established()
	if n == 0 {
		return
	}
	slog.Info(fmt.Sprintf("draining: refusing new connections and forwarding %s for up to %v (shutdown_drain; signal again to stop at once)", plural(n, "established connection"), drain),
		"state", "draining", "established", n, "shutdown_drain", drain)
	deadline := time.NewTimer(drain)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			n := d.established()
			slog.Info(fmt.Sprintf("draining cut short: %s still established", plural(n, "connection")), "state", "stopping", "established", n)
			return
		case <-deadline.C:
			n := d.established()
			slog.Info(fmt.Sprintf("drained for %v: %s still established", drain, plural(n, "connection")), "state", "stopping", "established", n)
			return
		case <-tick.C:
			if d.established() == 0 {
				slog.Info("drained: no established connections left", "state", "stopping", "established", 0)
				return
			}
		}
	}
}

// established counts the connections in ESTABLISHED state (IPVS's ActiveConn) over every real
// server. The other states do not hold a drain up: closing and closed TCP connections linger in
// the table for minutes, and UDP flows have no end to wait for.
func (d *Daemon) established() int64 {
	var n int64
	seen := map[*sched.Counts]bool{}
	for _, r := range d.engine.Tables().Reals {
		if r != nil && r.Counts != nil && !seen[r.Counts] {
			seen[r.Counts] = true
			n += r.Counts.Active.Load()
		}
	}
	return n
}

// plural is "1 thing" or "n things".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
