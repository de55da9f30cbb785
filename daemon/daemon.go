// Package daemon owns every part of a running govs: it starts the data plane on the tables package
// compile builds from the configuration, keeps real servers' next hops resolved, runs their health
// checks (health.go), claims the VIPs, serves the control socket, and applies reloads without
// disturbing established connections.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govs/govs/announce"
	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/connlog"
	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/neigh"
)

// Version is govs's version, set by the build.
var Version = "dev"

// Daemon is a running govs. New starts it; Run serves until its context ends; Close releases everything.
type Daemon struct {
	logf func(format string, args ...any)

	mu       sync.Mutex // guards cfg, compiler, gen, tables and everything below that reload touches
	cfg      *config.Config
	compiler *compile.Compiler // keeps IDs, connection counts and draining real servers across reloads
	targets  []netip.Addr      // what the resolver keeps resolved, see trackLocked
	gen      uint32
	engine   *dataplane.Engine
	resolver *neigh.Resolver
	announce []*announce.Announcer
	ha       *haNode // nil without [ha]
	ctl      *control.Server
	locks    *ifaceLocks // the interfaces claimed for this govs; see lock_linux.go
	ready    bool
	draining bool         // refuse new connections (Shutdown of a stand-alone node)
	health   *healthWatch // health checks; see health.go
	// lastReload is the outcome of the latest reload attempt (see RecordReload); never modified
	// once stored, so Status hands out a copy.
	lastReload *control.Reload
	// pendingRestart is what the latest applied reload left for the next start (see restartOnly),
	// until RecordReload takes it.
	pendingRestart []string

	obs observe  // metrics.go
	rt  ctlState // what `govs ctl` keeps besides the compiler's overrides (see ctl.go)

	connlog       *connlog.Writer  // the connection log's writer; nil without [log] connections (connlog.go)
	connlogCounts connlog.Counters // its counts, kept while it is turned off and on

	ifaceProblems []string // the data plane's interface problems at the last tick (ifaceWatch)
}

// New starts the data plane, the resolver, the announcers and the control socket for cfg.
//
// It claims the network namespace and the interfaces first, then the control socket: a second govs
// started in the same network namespace, with the same configuration or another control socket,
// then stops there with the error that names the running govs (its pid and control socket), and
// one in another namespace with the same control socket path with the error that the socket is in
// use, before it touches anything the running one owns (rings, the kernel guard's nftables table,
// VIP announcements). Until New is done the socket answers not ready.
func New(cfg *config.Config, logf func(format string, args ...any)) (*Daemon, error) {
	d := &Daemon{logf: logf, cfg: cfg, compiler: compile.New(), health: newHealthWatch(logf)}
	d.compiler.SetHealth(d.health)
	started := false
	defer func() {
		if !started {
			d.Close()
		}
	}()
	gate := &statusGate{cfg: cfg.File}
	var err error
	// The namespace first: one govs per network namespace (see namespaceLock), then each interface.
	// Before the control socket, so that a second govs in this namespace is told which govs to stop
	// rather than to pick another socket path, which would only lead it here.
	if d.locks, err = lockInterfaces(append([]string{namespaceLock}, cfg.Dataplane.Interfaces...), cfg.Control.Socket); err != nil {
		return nil, err
	}
	if d.ctl, err = control.NewServer(cfg.Control.Socket, gate); err != nil {
		return nil, err
	}
	if cfg.HA != nil {
		if d.ha, err = newHANode(d, cfg.HA); err != nil {
			return nil, err
		}
	}
	// The connection log's file before anything is logged: a file it cannot open is the one line.
	logFile, err := openConnLog(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if logFile != nil && d.connlog == nil {
			logFile.Close()
		}
	}()
	if err := d.startMetrics(cfg, gate); err != nil {
		return nil, err
	}
	d.resolver, err = neigh.New(cfg.Dataplane.Interfaces, slog.Default())
	if err != nil {
		return nil, fmt.Errorf("failed to start next-hop resolution: %w", err)
	}
	d.targets = realAddrs(cfg)
	d.resolver.SetTargets(d.targets)
	d.waitResolved(cfg, 2*time.Second)

	if err := d.startEngine(cfg); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.setConnLogLocked(cfg, logFile)
	d.mu.Unlock()
	d.startHealth(cfg)
	for _, name := range cfg.Dataplane.Interfaces {
		a, err := announce.New(name, logf)
		if err != nil {
			return nil, fmt.Errorf("failed to claim VIPs on %s: %w", name, err)
		}
		d.announce = append(d.announce, a)
	}
	d.setVIPs(cfg)
	if d.ha != nil {
		if err := d.ha.start(cfg.Dataplane.Interfaces); err != nil {
			return nil, err
		}
	}
	d.ready = true
	gate.d.Store(d)
	started = true
	slog.Info("govs ready", "version", Version, "virtual_servers", len(cfg.VirtualServers),
		"workers", d.engine.Workers(), "control_socket", cfg.Control.Socket, "metrics", cfg.Metrics.Listen)
	return d, nil
}

// startEngine starts the data plane with tables compiled before it knew its interfaces, which
// therefore reach no real server, then publishes them again with the next hops.
func (d *Daemon) startEngine(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, err := d.compiler.Compile(cfg, d.hopsLocked())
	if err != nil {
		return err
	}
	t.Gen = 1
	workers := cfg.Dataplane.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
		if cfg.Dataplane.IO == config.IOAFXDP {
			workers = dataplane.XDPWorkers(cfg.Dataplane.Interfaces) // a queue of its own each
		}
	}
	d.engine, err = dataplane.New(dataplane.Config{
		Interfaces: cfg.Dataplane.Interfaces,
		Workers:    workers,
		Conntrack:  compile.Conntrack(cfg, workers),
		RXMode:     cfg.Dataplane.RXMode,
		Priority:   cfg.Dataplane.WorkerPriority,
		IO:         cfg.Dataplane.IO,
		XDPMode:    cfg.Dataplane.XDPMode,
		IRQDefer:   cfg.Dataplane.XDPIRQDefer,
		Standby:    d.ha != nil, // an HA node forwards only once elected
		Sync:       d.ha != nil, // and keeps its connection table in sync with its peers'
		Log:        slog.Default(),
	}, t)
	if err != nil {
		return err
	}
	d.gen = 1
	d.commitLocked(t)
	return d.applyLocked(cfg, false)
}

// statusGate answers the control socket while New is starting the daemon (not ready), then the
// daemon.
type statusGate struct {
	cfg string
	d   atomic.Pointer[Daemon]
}

func (g *statusGate) Status() control.Status {
	if d := g.d.Load(); d != nil {
		return d.Status()
	}
	return control.Status{Version: Version, Config: g.cfg}
}

// Run serves until ctx ends, recompiling the tables whenever a next hop changes.
func (d *Daemon) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var full fullWatch
	var locals localsWatch
	defer locals.wg.Wait()
	stranded := strandedWatch{logged: map[string]bool{}}
	var ifaces ifaceWatch
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.resolver.Changed():
			d.republish()
		case <-d.health.mgr.Changed():
			d.healthChanged()
		case <-d.health.ramp.C:
			d.republish() // a real server in slow_start takes its next step
		case now := <-tick.C:
			// Catch anything a missed notification left stale; cheap for a handful of servers.
			d.republish()
			full.check(d, now)
			d.sampleRates(now)
			stranded.check(d, d.engine.Tables())
			ifaces.check(d)
			locals.check(ctx, d, now)
			d.obs.limit.flush()
			if err := d.engine.RefreshKernelGuard(); err != nil {
				d.logLimited("kernel guard", slog.LevelWarn, "%v", err)
			}
		}
	}
}

// fullWatch tells the operator, at most every fullLogEvery, that the connection table refused
// new connections or evicted idle ones for them: the data plane only counts them, per packet,
// without logging.
type fullWatch struct {
	dropped, clashed, evicted uint64
	logged                    time.Time
	since                     time.Time // when the counts above were read
}

const fullLogEvery = 10 * time.Second

func (f *fullWatch) check(d *Daemon, now time.Time) {
	if now.Sub(f.logged) < fullLogEvery {
		return
	}
	st := d.engine.Stats()
	full, clash, evicted := st.Drops["conntrack_full"], st.Drops["tuple_clash"], st.Counters["conntrack_evictions"]
	if f.since.IsZero() {
		f.since = d.obs.start
	}
	if full > f.dropped || evicted > f.evicted {
		d.mu.Lock()
		ct := d.cfg.Conntrack
		d.mu.Unlock()
		since := now.Sub(f.since).Round(time.Second)
		if full > f.dropped {
			slog.Warn("connection table full: new connections dropped; raise [conntrack] max_entries or use full_policy = \"evict_oldest_idle\"",
				"dropped", full-f.dropped, "since", since, "max_entries", ct.MaxEntries, "full_policy", ct.FullPolicy)
		}
		if evicted > f.evicted {
			slog.Warn("connection table full: idle connections evicted to make room for new ones; raise [conntrack] max_entries",
				"evicted", evicted-f.evicted, "since", since, "max_entries", ct.MaxEntries, "full_policy", ct.FullPolicy)
		}
		f.logged = now
	}
	if clash > f.clashed {
		slog.Warn("new connections refused: their tuple was taken (two virtual servers sending one client port to the same real server port under NAT)",
			"refused", clash-f.clashed, "since", now.Sub(f.since).Round(time.Second))
		f.logged = now
	}
	f.dropped, f.clashed, f.evicted, f.since = full, clash, evicted, now
}

// ifaceWatch tells the operator when the data plane finds an interface changed under it in a way
// that keeps traffic from govs (dataplane.Engine.InterfaceProblems), once per problem, and when
// the problem is gone; govs stats lists the problems in force.
type ifaceWatch struct {
	last []string
}

func (w *ifaceWatch) check(d *Daemon) {
	now := d.engine.InterfaceProblems()
	for _, p := range now {
		if !slices.Contains(w.last, p) {
			slog.Warn(p)
		}
	}
	for _, p := range w.last {
		if !slices.Contains(now, p) {
			slog.Info("interface problem gone", "was", p)
		}
	}
	w.last = now
	d.mu.Lock()
	d.ifaceProblems = now
	d.mu.Unlock()
}

// strandedWatch tells the operator when a virtual server has real servers but none with a resolved
// next hop: its new connections are dropped (counted as no_real_server) until one resolves. A
// virtual server is reported once it is so at two ticks in a row, so the moment a reload's new real
// servers take to resolve is not reported; its recovery is reported if its stranding was.
type strandedWatch struct {
	seen, logged map[string]bool // by service name: stranded at the last tick; reported
}

func (w *strandedWatch) check(d *Daemon, t *dataplane.Tables) {
	now := map[string]bool{}
	for _, s := range t.Services {
		if s == nil || len(s.RealIDs) == 0 {
			continue
		}
		// A resolved sorry server takes the new connections: the virtual server is not stranded.
		reals, resolved, sorry := 0, 0, false
		for _, id := range s.RealIDs {
			switch r := t.Reals[id]; {
			case r.Sorry:
				sorry = r.Resolved
			case r.Resolved:
				reals++
				resolved++
			default:
				reals++
			}
		}
		switch {
		case resolved == 0 && !sorry:
			now[s.Name] = true
			if w.seen[s.Name] && !w.logged[s.Name] {
				slog.Warn(fmt.Sprintf("virtual server %s: none of its %d real servers has a resolved next hop; its new connections are dropped (counted as no_real_server) until one resolves",
					s.Name, reals), "service", s.Name, "real_servers", reals, "resolved", 0)
				w.logged[s.Name] = true
			}
		case w.logged[s.Name]:
			slog.Info(fmt.Sprintf("virtual server %s: %d of its %d real servers resolved; it takes new connections again", s.Name, resolved, reals),
				"service", s.Name, "real_servers", reals, "resolved", resolved)
		}
	}
	for name := range w.logged {
		if !now[name] {
			delete(w.logged, name)
		}
	}
	w.seen = now
}

// Reload applies a new configuration. On error the running configuration stays in force.
// Established connections keep their real server (real servers keep their IDs). A removed real
// server takes no new connections; its established ones are forwarded to it until they end, or
// dropped at their next packet under [conntrack] expire_nodest_conn.
//
// Settings a running govs cannot change (see restartOnly) keep their running values; each one the
// file changes is logged with its file:line, and the rest of the file is applied.
func (d *Daemon) Reload(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := *cfg
	pending := append(restartOnly(d.cfg, &next), restartOnlyHA(d.cfg, &next)...)
	// The connection log's file first: one that cannot be opened rejects the reload before
	// anything changed. Opened on every reload, so that a SIGHUP after logrotate reopens it.
	logFile, err := openConnLog(&next)
	if err != nil {
		return err
	}
	restore := d.dropOverridesLocked() // the file is what the operator wants from now on
	draining := d.compiler.DrainingLocals
	d.compiler.DrainingLocals = drainingLocals(d.cfg, &next, draining)
	// The new real servers are unresolved, and so take no connections, until the resolver (told
	// of them by trackLocked) knows their next hop and Run republishes.
	if err := d.applyLocked(&next, false); err != nil {
		d.compiler.DrainingLocals = draining
		restore()
		if logFile != nil {
			logFile.Close()
		}
		return err
	}
	d.setConnLogLocked(&next, logFile)
	for _, a := range d.compiler.DrainingLocals {
		if !slices.Contains(draining, a) {
			slog.Info("removed local address kept while its connections drain", "local_address", a)
		}
	}
	d.cfg = &next
	d.health.updateLocked(&next, d.logf)
	d.setVIPs(&next)
	for _, p := range pending {
		d.logf("%s", p)
	}
	d.pendingRestart = pending
	slog.Info("reloaded", "file", next.File, "virtual_servers", len(next.VirtualServers), "generation", d.gen)
	return nil
}

// restartOnly finds the settings of next that differ from the running configuration but can only
// change at a restart: [dataplane] (the rings, workers and receive mode are built at start),
// [control] socket, [timeouts] and [conntrack] max_entries and full_policy (each worker's
// connection table is sized and set up at start), [metrics] listen and [log] format (the endpoint
// and the logger are set up at start). It puts the running values back into next and returns, for
// each, "file:line: field: ... takes effect at the next start".
func restartOnly(running, next *config.Config) []string {
	var out []string
	keep := func(field string, differs bool, file, cur any, restore func()) {
		if !differs {
			return
		}
		out = append(out, fmt.Sprintf("%s: %s: %v in the file, %v running; takes effect at the next start",
			next.Where(field), field, file, cur))
		restore()
	}
	rd, nd := &running.Dataplane, &next.Dataplane
	keep("dataplane.interfaces", !slices.Equal(rd.Interfaces, nd.Interfaces), nd.Interfaces, rd.Interfaces,
		func() { nd.Interfaces = rd.Interfaces })
	keep("dataplane.workers", rd.Workers != nd.Workers, workersString(nd.Workers), workersString(rd.Workers),
		func() { nd.Workers = rd.Workers })
	keep("dataplane.rx_mode", rd.RXMode != nd.RXMode, quoted(nd.RXMode), quoted(rd.RXMode),
		func() { nd.RXMode = rd.RXMode })
	keep("dataplane.io", rd.IO != nd.IO, quoted(nd.IO), quoted(rd.IO), func() { nd.IO = rd.IO })
	keep("dataplane.xdp_mode", rd.XDPMode != nd.XDPMode, quoted(nd.XDPMode), quoted(rd.XDPMode),
		func() { nd.XDPMode = rd.XDPMode })
	keep("dataplane.xdp_irq_defer", rd.XDPIRQDefer != nd.XDPIRQDefer, quoted(nd.XDPIRQDefer), quoted(rd.XDPIRQDefer),
		func() { nd.XDPIRQDefer = rd.XDPIRQDefer })
	keep("dataplane.worker_priority", rd.WorkerPriority != nd.WorkerPriority, nd.WorkerPriority, rd.WorkerPriority,
		func() { nd.WorkerPriority = rd.WorkerPriority })
	keep("control.socket", running.Control.Socket != next.Control.Socket, quoted(next.Control.Socket),
		quoted(running.Control.Socket), func() { next.Control = running.Control })
	keep("metrics.listen", running.Metrics.Listen != next.Metrics.Listen, quoted(next.Metrics.Listen),
		quoted(running.Metrics.Listen), func() { next.Metrics.Listen = running.Metrics.Listen })
	keep("log.format", running.Log.Format != next.Log.Format, quoted(next.Log.Format),
		quoted(running.Log.Format), func() { next.Log.Format = running.Log.Format })
	rt, nt := &running.Timeouts, &next.Timeouts
	for _, to := range []struct {
		name     string
		cur, new *time.Duration
	}{
		{"tcp", &rt.TCP, &nt.TCP}, {"tcp_fin", &rt.TCPFin, &nt.TCPFin}, {"udp", &rt.UDP, &nt.UDP},
		{"tcp_syn_recv", &rt.TCPSynRecv, &nt.TCPSynRecv}, {"tcp_syn_sent", &rt.TCPSynSent, &nt.TCPSynSent},
		{"tcp_time_wait", &rt.TCPTimeWait, &nt.TCPTimeWait}, {"tcp_close", &rt.TCPClose, &nt.TCPClose},
		{"tcp_close_wait", &rt.TCPCloseWait, &nt.TCPCloseWait}, {"tcp_last_ack", &rt.TCPLastAck, &nt.TCPLastAck},
	} {
		keep("timeouts."+to.name, *to.cur != *to.new, *to.new, *to.cur, func() { *to.new = *to.cur })
	}
	rc, nc := &running.Conntrack, &next.Conntrack
	keep("conntrack.max_entries", rc.MaxEntries != nc.MaxEntries, nc.MaxEntries, rc.MaxEntries,
		func() { nc.MaxEntries = rc.MaxEntries })
	keep("conntrack.full_policy", rc.FullPolicy != nc.FullPolicy, quoted(nc.FullPolicy), quoted(rc.FullPolicy),
		func() { nc.FullPolicy = rc.FullPolicy })
	return out
}

func workersString(n int) string {
	if n <= 0 {
		return fmt.Sprintf("%d (one per CPU; one with io = \"afxdp\")", n)
	}
	return fmt.Sprint(n)
}

func quoted(s string) string { return fmt.Sprintf("%q", s) }

// Close releases the VIPs, stops the data plane and everything else, and returns what failed.
//
// An active HA node hands over first (see Shutdown).
func (d *Daemon) Close() error {
	var errs []error
	if d.ha != nil {
		d.ha.close()
	}
	if d.health != nil {
		d.health.mgr.Close()
		d.health.ramp.Stop()
	}
	if err := d.stopMetrics(); err != nil {
		errs = append(errs, err)
	}
	if d.ctl != nil {
		if err := d.ctl.Close(); err != nil {
			errs = append(errs, fmt.Errorf("failed to close the control socket: %w", err))
		}
	}
	for _, a := range d.announce {
		if err := a.Close(); err != nil {
			errs = append(errs, fmt.Errorf("failed to release the VIPs: %w", err))
		}
	}
	if d.engine != nil {
		if err := d.engine.Close(); err != nil {
			errs = append(errs, fmt.Errorf("failed to stop the data plane: %w", err))
		}
	}
	if d.connlog != nil { // after the data plane: the events it recorded last are written
		// Then a line for each connection still open, so that every connection has both.
		d.connlog.Stop()
		d.engine.ConnLogRemaining(d.connlog.Write)
		if err := d.connlog.Close(); err != nil {
			errs = append(errs, fmt.Errorf("failed to close the connection log: %w", err))
		}
	}
	if d.resolver != nil {
		if err := d.resolver.Close(); err != nil {
			errs = append(errs, fmt.Errorf("failed to stop next-hop resolution: %w", err))
		}
	}
	// Last: a govs waiting for these interfaces starts only once this one has let go of them.
	d.locks.close()
	return errors.Join(errs...)
}

func (d *Daemon) republish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.applyLocked(d.cfg, true); err != nil {
		d.logLimited("publish", slog.LevelError, "failed to publish new tables: %v", err)
	}
}

// applyLocked compiles cfg with the resolver's next hops and publishes the result; with
// unlessSame, tables that forward as the published ones do are not published again. On error
// the published tables, and the compiler's state, stay as they were.
func (d *Daemon) applyLocked(cfg *config.Config, unlessSame bool) error {
	t, err := d.compiler.Compile(cfg, d.hopsLocked())
	if err != nil {
		return err
	}
	t.Draining = d.draining
	if !unlessSame || !compile.Same(d.engine.Tables(), t) {
		t.Gen = d.gen + 1
		if err := d.engine.Publish(t); err != nil {
			return err
		}
		d.gen++
	}
	d.commitLocked(t)
	d.obs.limit.init()
	d.health.publishedLocked(cfg, t, slog.Default(), d.obs.limit.flaps)
	return nil
}

// commitLocked makes t, compiled last and now in use (published, or the same as the published
// tables), the compiler's base for the next compile, and has the resolver follow its real servers.
func (d *Daemon) commitLocked(t *dataplane.Tables) {
	d.compiler.Commit(t)
	d.trackLocked(t)
}

// hopsLocked is the daemon's next-hop source: the resolver's entries, on the engine's interfaces.
func (d *Daemon) hopsLocked() compile.NextHops {
	h := resolverHops{portOf: map[int]int{}}
	if d.resolver != nil {
		h.lookup = d.resolver.Lookup
	}
	if d.engine != nil {
		for i, ifc := range d.engine.Interfaces() {
			h.portOf[ifc.Index] = i
		}
	}
	return h
}

// resolverHops answers a real server's next hop from the resolver's entry for its address,
// on the engine's port for the entry's interface.
type resolverHops struct {
	lookup func(netip.Addr) (neigh.Entry, bool) // nil: nothing is resolved
	portOf map[int]int                          // interface index -> engine port
}

func (h resolverHops) NextHop(_ uint16, addr netip.Addr) (compile.Hop, bool) {
	if h.lookup == nil {
		return compile.Hop{}, false
	}
	e, ok := h.lookup(addr)
	if !ok || !e.Resolved {
		return compile.Hop{}, false
	}
	p, ok := h.portOf[e.IfIndex]
	if !ok {
		return compile.Hop{}, false
	}
	return compile.Hop{Port: p, MAC: e.MAC, OnLink: e.NextHop == addr, Src: e.Src, MTU: e.MTU}, true
}

// trackLocked has the resolver keep every real server of t resolved: the configured ones and the
// removed ones whose connections drain. Those keep following their next hop, and a reload that
// puts one back finds it resolved: if it started over unresolved, its retained ID's connections
// (a client's new SYN on such a tuple included) would lose frames until the lookup completed.
func (d *Daemon) trackLocked(t *dataplane.Tables) {
	var addrs []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, r := range t.Reals {
		if r == nil {
			continue
		}
		if a := r.Addr.Addr(); !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if slices.Equal(addrs, d.targets) {
		return
	}
	d.targets = addrs
	d.resolver.SetTargets(addrs)
}

// setVIPs hands every announcer the VIPs of the current configuration, and the FullNAT local
// addresses, which the real servers' replies are sent to, draining ones included (locals.go):
// govs answers for them as for VIPs. Call it with d.mu held (or before Run).
func (d *Daemon) setVIPs(cfg *config.Config) {
	var vips []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, vs := range cfg.VirtualServers {
		for _, a := range append([]netip.Addr{vs.Address.Addr()}, vs.LocalAddresses...) {
			if !seen[a] {
				seen[a] = true
				vips = append(vips, a)
			}
		}
	}
	for _, a := range d.compiler.DrainingLocals {
		if !seen[a] {
			seen[a] = true
			vips = append(vips, a)
		}
	}
	d.holdAddrs(cfg, vips)
}

// waitResolved gives the resolver a moment to find the real servers before the first packet.
func (d *Daemon) waitResolved(cfg *config.Config, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		all := true
		for _, a := range realAddrs(cfg) {
			if e, ok := d.resolver.Lookup(a); !ok || !e.Resolved {
				all = false
				break
			}
		}
		if all {
			return
		}
		select {
		case <-d.resolver.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// status is Status; zeroed: with the counts since `govs ctl zero` (see completeStatus).
func (d *Daemon) status(zeroed bool) control.Status {
	d.mu.Lock()
	cfg := d.cfg
	last := d.lastReload
	problems := append([]string{}, d.ifaceProblems...)
	d.mu.Unlock()
	st := control.Status{
		InterfaceProblems: problems,
		Ready:             d.ready,
		Version:           Version,
		Config:            cfg.File,
	}
	if last != nil {
		r := *last
		st.LastReload = &r
	}
	st.HA = d.haStatus()
	if d.engine == nil {
		return st
	}
	t := d.engine.Tables()
	hs := d.healthSnapshotOf(cfg)
	ds := d.engine.Stats()
	rs := d.engine.SocketStats()
	st.Generation = t.Gen
	st.Workers = d.engine.Workers()
	st.Interfaces = cfg.Dataplane.Interfaces
	st.IO = cfg.Dataplane.IO
	if st.IO == config.IOAFXDP {
		st.XDPMode = cfg.Dataplane.XDPMode
		st.XDPIRQDefer, st.XDPIRQDeferOn = cfg.Dataplane.XDPIRQDefer, d.engine.IRQDeferring()
	}
	st.Counters = ds.Counters
	d.connLogCounters(&st)
	st.Drops = ds.Drops
	st.DropsTotal = ds.DropsTotal
	st.Rings = control.RingStats{Packets: rs.Packets, Drops: rs.Drops, Freezes: rs.Freezes}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		v := control.VirtualServer{
			Address:   s.VIP.String(),
			Protocol:  protoName(s.Proto),
			Scheduler: s.Scheduler,
			Method:    s.Method.String(),
		}
		if s.Persistence > 0 {
			v.PersistenceTimeout = int64(time.Duration(s.Persistence) / time.Second)
			v.PersistenceNetmask = s.PersistenceBits
		}
		for _, a := range s.Locals {
			v.LocalAddresses = append(v.LocalAddresses, a.String())
		}
		if s.Method == dataplane.MethodTun {
			v.Tunnel = s.Tunnel.String()
			if s.Tunnel == dataplane.TunnelGUE {
				v.TunnelPort = int(s.TunnelPort)
			}
		}
		for _, id := range s.RealIDs {
			r := t.Reals[id]
			x := control.RealServer{
				Address:             r.Addr.String(),
				Weight:              int(r.Weight),
				Resolved:            r.Resolved,
				ActiveConnections:   r.Counts.Active.Load(),
				InactiveConnections: r.Counts.Inactive.Load(),
				Overloaded:          r.UpperThreshold != 0 && r.Counts.IsOverloaded(),
				PathMTU:             d.engine.PathMTU(r),
			}
			x.Connections = x.ActiveConnections + x.InactiveConnections
			if int(id) < len(ds.RealPackets) {
				x.Packets = ds.RealPackets[id]
			}
			hs.real(&x, s, r)
			v.RealServers = append(v.RealServers, x)
		}
		hs.virtual(&v, s, t)
		st.VirtualServers = append(st.VirtualServers, v)
	}
	d.completeStatus(&st, t, &ds, zeroed)
	return st
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprint(p)
}

func realAddrs(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, vs := range cfg.VirtualServers {
		for _, rs := range vs.RealServers {
			if a := rs.Address.Addr(); !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
		if a := vs.SorryServer.Addr(); vs.SorryServer.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}
