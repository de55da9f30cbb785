package daemon

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/health"
	"github.com/govs/govs/internal/ratelog"
)

// Health checks in the daemon.
//
// A health.Manager checks every real server that has a health_check; the daemon takes its changes
// of state in Run, recompiles and publishes the tables (the compiler asks healthWatch for each
// real server's state, see compile.SetHealth), and logs each change once. A real server that is
// checked takes new connections only once its check says it is up: one added by a reload is
// "unknown", and out of rotation, until its first result. At start New waits a moment for the
// first results (firstResultsWait) before it claims the VIPs, so that the servers that are up take
// the first connections; a server whose first result comes later joins then.
//
// A reload gives the Manager the whole new set of checks; a real server whose check the reload
// leaves as it was keeps its state, and one whose check changed keeps its state until the new
// check says otherwise, so a reload does not take healthy servers out of rotation.

// maxFirstResultsWait bounds how long New waits for the first results of the checks.
const maxFirstResultsWait = 5 * time.Second

// healthWatch is the daemon's view of the health checks. Everything but mgr is guarded by
// Daemon.mu.
type healthWatch struct {
	mgr    *health.Manager
	states map[health.Target]*healthEntry
	// ramp fires when the weight of a real server in slow_start grows next; Run then publishes.
	ramp *time.Timer
	// standIns are the virtual servers, by name, whose sorry server stands in or that are below
	// their quorum, as last published and logged.
	standIns map[string]standIn
	// started is set once New has the first results: until then stand-ins are not logged, as
	// every real server is unresolved or unknown at first.
	started bool
	now     func() time.Time
}

// healthEntry is what the daemon has taken from the Manager about one checked real server.
type healthEntry struct {
	state health.State
	back  time.Time // when it last came back up from down, for slow_start; zero if never
}

func newHealthWatch(logf func(string, ...any)) *healthWatch {
	h := &healthWatch{
		mgr:      health.NewManager(health.Options{Logf: logf, OwnerLogsChanges: true}),
		states:   map[health.Target]*healthEntry{},
		ramp:     time.NewTimer(time.Hour),
		standIns: map[string]standIn{},
		now:      time.Now,
	}
	h.ramp.Stop()
	return h
}

// RealHealth implements compile.Health. A real server the daemon does not know yet (one a reload
// being compiled adds) is Unknown.
func (h *healthWatch) RealHealth(service string, addr netip.AddrPort) (health.State, time.Duration) {
	e := h.states[health.Target{Service: service, Server: addr}]
	if e == nil {
		return health.Unknown, 0
	}
	if e.state != health.Up || e.back.IsZero() {
		return e.state, math.MaxInt64
	}
	return e.state, h.now().Sub(e.back)
}

// updateLocked has the Manager check what cfg asks for, and the daemon's view follow it: a new
// real server starts in the state the Manager has for it (Unknown), one no longer checked is
// forgotten.
func (h *healthWatch) updateLocked(cfg *config.Config, logf func(string, ...any)) {
	specs := cfg.HealthSpecs()
	if err := h.mgr.Update(specs); err != nil {
		logf("warning: %v; its real server stays out of rotation", err)
	}
	for t := range h.states {
		if _, ok := specs[t]; !ok {
			delete(h.states, t)
		}
	}
	for t := range specs {
		if h.states[t] == nil {
			st, _ := h.mgr.State(t)
			h.states[t] = &healthEntry{state: st}
		}
	}
}

// takeLocked applies the Manager's changes to the daemon's view and returns them.
func (h *healthWatch) takeLocked() []health.Event {
	evs := h.mgr.Drain()
	for _, ev := range evs {
		e := h.states[ev.Target]
		if e == nil {
			continue // no longer checked: a reload took it out while its change waited
		}
		e.state = ev.State
		switch {
		case ev.State == health.Up && ev.Prev == health.Down:
			e.back = ev.Time
		case ev.State != health.Up:
			e.back = time.Time{}
		}
	}
	return evs
}

// startHealth starts checking the real servers of cfg, waits up to the interval (plus timeout) of
// the slowest check, at most maxFirstResultsWait, for their first results, and publishes them.
func (d *Daemon) startHealth(cfg *config.Config) {
	d.mu.Lock()
	d.health.updateLocked(cfg, d.logf)
	d.mu.Unlock()
	var wait time.Duration
	for _, s := range cfg.HealthSpecs() {
		wait = max(wait, s.Interval+s.Timeout)
	}
	deadline := time.Now().Add(min(wait, maxFirstResultsWait))
	for time.Now().Before(deadline) && d.health.unknown(cfg) {
		select {
		case <-d.health.mgr.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
	d.mu.Lock()
	d.health.started = true
	d.mu.Unlock()
	d.healthChanged()
}

// unknown reports whether a real server of cfg is still waiting for its first result.
func (h *healthWatch) unknown(cfg *config.Config) bool {
	for t := range cfg.HealthSpecs() {
		if st, ok := h.mgr.State(t); ok && st == health.Unknown {
			return true
		}
	}
	return false
}

// healthChanged publishes the Manager's changes of state, and logs them once in force.
func (d *Daemon) healthChanged() {
	d.mu.Lock()
	defer d.mu.Unlock()
	evs := d.health.takeLocked()
	if err := d.applyLocked(d.cfg, true); err != nil {
		d.logf("failed to publish new tables: %v", err)
	}
	for _, ev := range evs {
		if d.health.states[ev.Target] == nil {
			continue
		}
		svc, real := ev.Target.Service, ev.Target.Server.String()
		key := "health " + svc + " " + real
		if ev.State == health.Down {
			d.logChange(key, slog.LevelWarn, fmt.Sprintf("virtual server %s: real server %s down: %s", svc, real, ev.Reason),
				"service", svc, "real_server", real, "state", ev.State.String(), "prev", ev.Prev.String(), "reason", ev.Reason)
		} else {
			d.logChange(key, slog.LevelInfo, fmt.Sprintf("virtual server %s: real server %s %s", svc, real, ev.State),
				"service", svc, "real_server", real, "state", ev.State.String(), "prev", ev.Prev.String())
		}
	}
}

// publishedLocked follows tables t, compiled from cfg and now in force: it arms the slow-start
// timer for the next step of a real server's weight, and logs a virtual server that goes below
// its quorum, or whose sorry server starts or stops standing in, and back.
func (h *healthWatch) publishedLocked(cfg *config.Config, t *dataplane.Tables, log *slog.Logger, lim *ratelog.Limiter) {
	h.ramp.Stop()
	var next time.Duration
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		for _, rs := range vs.RealServers {
			if rs.HealthCheck == nil || rs.HealthCheck.SlowStart <= 0 {
				continue
			}
			st, upFor := h.RealHealth(vs.Key(), rs.Address)
			if st != health.Up {
				continue
			}
			if wait, ok := compile.SlowStartNext(upFor, rs.HealthCheck.SlowStart); ok && (next == 0 || wait < next) {
				next = wait
			}
		}
	}
	if next > 0 {
		h.ramp.Reset(next)
	}
	if !h.started {
		return
	}

	now := map[string]standIn{}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		switch {
		case s.NoQuorum:
			now[s.Name] = standIn{msg: "below its quorum: new connections are dropped (counted as no_quorum) until enough real servers are up",
				args: []any{"service", s.Name, "state", "below_quorum"}}
		default:
			for _, id := range s.RealIDs {
				if r := t.Reals[id]; r.Sorry && !r.Standby {
					now[s.Name] = standIn{msg: fmt.Sprintf("sorry server %s takes the new connections: not enough real servers are up", r.Addr),
						args: []any{"service", s.Name, "state", "sorry_server", "sorry_server", r.Addr.String()}}
				}
			}
		}
	}
	for name, si := range now {
		if h.standIns[name].msg != si.msg {
			lim.Log(log, "stand-in "+name, slog.LevelWarn, fmt.Sprintf("virtual server %s: %s", name, si.msg), si.args...)
		}
	}
	for name := range h.standIns {
		if _, ok := now[name]; !ok {
			lim.Log(log, "stand-in "+name, slog.LevelInfo, fmt.Sprintf("virtual server %s: enough real servers are up; they take the new connections again", name),
				"service", name, "state", "normal")
		}
	}
	h.standIns = now
}

// standIn is a virtual server's record while it is below its quorum or its sorry server takes
// its new connections.
type standIn struct {
	msg  string
	args []any
}

// healthSnapshot is what Status lists of the health checks, taken once per Status.
type healthSnapshot struct {
	states map[health.Target]health.State
	errs   map[health.Target]string
	quorum map[string]int // by virtual server name
}

// healthSnapshotOf takes the daemon's health view for Status; cfg is the configuration in force.
func (d *Daemon) healthSnapshotOf(cfg *config.Config) *healthSnapshot {
	hs := &healthSnapshot{states: map[health.Target]health.State{}, errs: map[health.Target]string{}, quorum: map[string]int{}}
	if d.health == nil {
		return hs
	}
	for _, s := range d.health.mgr.Status() {
		hs.errs[s.Target] = s.LastError
	}
	d.mu.Lock()
	for tg, e := range d.health.states {
		hs.states[tg] = e.state
	}
	d.mu.Unlock()
	for i := range cfg.VirtualServers {
		hs.quorum[cfg.VirtualServers[i].Key()] = cfg.VirtualServers[i].Quorum
	}
	return hs
}

// real fills in the health of x, the listing of real server r of service s.
func (hs *healthSnapshot) real(x *control.RealServer, s *dataplane.Service, r *dataplane.Real) {
	x.Sorry, x.Standby = r.Sorry, r.Standby
	x.Health = "unchecked"
	tg := health.Target{Service: s.Name, Server: r.Addr}
	if st, ok := hs.states[tg]; ok && !r.Sorry {
		x.Health, x.HealthError = st.String(), hs.errs[tg]
	}
}

// virtual fills in the quorum of v, the listing of service s of tables t.
func (hs *healthSnapshot) virtual(v *control.VirtualServer, s *dataplane.Service, t *dataplane.Tables) {
	v.Quorum = hs.quorum[s.Name]
	up := 0
	for _, id := range s.RealIDs {
		if r := t.Reals[id]; !r.Sorry && r.Resolved && !r.Down && !r.Disabled && r.Weight > 0 {
			up++
		}
	}
	v.BelowQuorum = v.Quorum > 0 && up < v.Quorum
}
