package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
)

// ctlState is what the control socket's commands keep in the daemon besides the compiler's
// overrides (compile.Compiler.Overrides, the changes themselves).
type ctlState struct {
	// Guarded by Daemon.mu:
	since   map[compile.RealRef]time.Time // when each override in force was last changed
	dropped []control.Override            // what the latest applied reload ended, for RecordReload
	zero    *zeroBase                     // the counters at the latest `govs ctl zero`; nil: none yet

	// reload is what `govs ctl reload` runs: what SIGHUP runs (SetReloadFunc); nil: ReloadFile of
	// the running configuration's file.
	reload func() error

	rates rateSampler
}

// SetReloadFunc makes `govs ctl reload` run f, the reload a SIGHUP runs, so that both do the
// same (govs run's also applies [log] level).
func (d *Daemon) SetReloadFunc(f func() error) {
	d.mu.Lock()
	d.rt.reload = f
	d.mu.Unlock()
}

// Command implements control.Commander: `govs ctl` and `govs list -conns`.
func (d *Daemon) Command(ctx context.Context, name string, args json.RawMessage) (any, error) {
	switch name {
	case control.CmdWeight, control.CmdDrain, control.CmdEnable, control.CmdDisable:
		var a control.RealArgs
		if err := decodeArgs(name, args, &a); err != nil {
			return nil, err
		}
		return d.changeReal(name, a)
	case control.CmdZero:
		return d.zeroCounters(), nil
	case control.CmdReload:
		return d.reloadFromFile()
	case control.CmdConns:
		var a control.ConnsArgs
		if err := decodeArgs(name, args, &a); err != nil {
			return nil, err
		}
		return d.conns(ctx, a)
	}
	return nil, fmt.Errorf("unknown command %q; known: stats, list, %s, %s, %s, %s, %s, %s, %s (is the running govs older than this client?)",
		name, control.CmdWeight, control.CmdDrain, control.CmdEnable, control.CmdDisable, control.CmdZero, control.CmdReload, control.CmdConns)
}

func decodeArgs(name string, args json.RawMessage, v any) error {
	if len(args) == 0 {
		return nil
	}
	if err := json.Unmarshal(args, v); err != nil {
		return fmt.Errorf("the arguments of %q are not what govs expects (%v); use the govs client of the same version", name, err)
	}
	return nil
}

// Command on the gate: commands wait until the daemon is up.
func (g *statusGate) Command(ctx context.Context, name string, args json.RawMessage) (any, error) {
	if d := g.d.Load(); d != nil {
		return d.Command(ctx, name, args)
	}
	return nil, fmt.Errorf("govs is starting; try again in a moment")
}

// changeReal applies weight, drain (weight 0), enable or disable to one real server: an override
// that the compiler applies on top of the configuration until the next reload of the file.
func (d *Daemon) changeReal(op string, a control.RealArgs) (*control.CtlResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	vs, rs, err := findReal(d.cfg, a.Service, a.Real)
	if err != nil {
		return nil, err
	}
	ref := compile.RealRef{Service: vs.Key(), Real: rs.Address}
	prev := d.compiler.Overrides
	next := make(compile.Overrides, len(prev)+1)
	for k, v := range prev {
		next[k] = v
	}
	o := next[ref]
	var what string
	switch op {
	case control.CmdWeight:
		if a.Weight == nil || *a.Weight < 0 || *a.Weight > config.MaxWeight {
			return nil, fmt.Errorf("weight must be an integer from 0 to %d (0: no new connections)", config.MaxWeight)
		}
		o.Weight, o.SetWeight = *a.Weight, true
		what = fmt.Sprintf("weight %d (the file says %d)", o.Weight, rs.Weight)
	case control.CmdDrain:
		o.Weight, o.SetWeight = 0, true
		what = fmt.Sprintf("weight 0, draining (the file says %d)", rs.Weight)
	case control.CmdDisable:
		o.Disabled = true
		what = "disabled: no new connections, established ones go on"
	case control.CmdEnable:
		o.Disabled = false
		what = "enabled"
	}
	if o == (compile.Override{}) {
		delete(next, ref)
	} else {
		next[ref] = o
	}
	d.compiler.Overrides = next
	if err := d.applyLocked(d.cfg, false); err != nil {
		d.compiler.Overrides = prev
		return nil, fmt.Errorf("failed to apply the change, nothing changed: %v", err)
	}
	if d.rt.since == nil {
		d.rt.since = map[compile.RealRef]time.Time{}
	}
	if _, ok := next[ref]; ok {
		d.rt.since[ref] = time.Now()
	} else {
		delete(d.rt.since, ref)
	}
	res := &control.CtlResult{Generation: d.gen}
	if _, ok := next[ref]; ok {
		ov := d.overrideLocked(ref, next[ref])
		res.Override = &ov
		what += "; until the next reload of the file"
	}
	res.Message = fmt.Sprintf("%s %s: %s", ref.Service, rs.Address, what)
	if r := realOf(d.engine.Tables(), vs.Key(), rs.Address); r != nil {
		res.Connections = r.Counts.Active.Load() + r.Counts.Inactive.Load()
	}
	args := []any{"op", op, "service", ref.Service, "real_server", rs.Address.String(), "generation", d.gen}
	if o, ok := next[ref]; ok {
		if o.SetWeight {
			args = append(args, "weight", o.Weight)
		}
		args = append(args, "disabled", o.Disabled)
	}
	slog.Info("govs ctl "+op+": "+res.Message, args...)
	return res, nil
}

// findReal finds, in cfg, the virtual server named service ("tcp/198.18.0.100:80", as `govs list`
// prints it) and its real server at real ("198.19.0.11:80", "[2001:2::11]:80").
func findReal(cfg *config.Config, service, real string) (*config.VirtualServer, *config.RealServer, error) {
	vs, err := findService(cfg, service)
	if err != nil {
		return nil, nil, err
	}
	addr, err := netip.ParseAddrPort(strings.TrimSpace(real))
	if err != nil {
		return nil, nil, fmt.Errorf("%q is not a real server address; write it as `govs list` shows it, e.g. 198.19.0.11:80 or [2001:2::11]:80", real)
	}
	var known []string
	for i := range vs.RealServers {
		rs := &vs.RealServers[i]
		if rs.Address == addr {
			return vs, rs, nil
		}
		known = append(known, rs.Address.String())
	}
	if len(known) == 0 {
		return nil, nil, fmt.Errorf("virtual server %s has no real servers", vs.Key())
	}
	return nil, nil, fmt.Errorf("virtual server %s has no real server %s; its real servers: %s", vs.Key(), addr, strings.Join(known, ", "))
}

// findService finds the virtual server named s in cfg: protocol/address:port, the protocol in
// any case.
func findService(cfg *config.Config, s string) (*config.VirtualServer, error) {
	key, err := serviceKey(s)
	if err != nil {
		return nil, err
	}
	var known []string
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		if vs.Key() == key {
			return vs, nil
		}
		known = append(known, vs.Key())
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("unknown virtual server %s: govs has none configured", key)
	}
	return nil, fmt.Errorf("unknown virtual server %s; known: %s", key, strings.Join(known, ", "))
}

// serviceKey normalises a virtual server's name as written by an operator to its key: as the
// status and the logs name it ("tcp/198.18.0.100:80"), or as the text of `govs list` shows it
// ("TCP  198.18.0.100:80").
func serviceKey(s string) (string, error) {
	proto, addr, ok := strings.Cut(strings.TrimSpace(s), "/")
	if f := strings.Fields(s); !ok && len(f) == 2 {
		proto, addr, ok = f[0], f[1], true
	}
	ap, err := netip.ParseAddrPort(addr)
	proto = strings.ToLower(proto)
	if !ok || err != nil || (proto != "tcp" && proto != "udp") {
		return "", fmt.Errorf("%q is not a virtual server; write it as protocol/address:port, e.g. tcp/198.18.0.100:80 or udp/[2001:2::100]:53 (as the logs name it), or as `govs list` prints it, \"TCP  198.18.0.100:80\"", s)
	}
	return proto + "/" + ap.String(), nil
}

// realOf returns the entry of real server addr of the service named service in t, or nil.
func realOf(t *dataplane.Tables, service string, addr netip.AddrPort) *dataplane.Real {
	for _, s := range t.Services {
		if s == nil || s.Name != service {
			continue
		}
		for _, id := range s.RealIDs {
			if r := t.Reals[id]; r.Addr == addr {
				return r
			}
		}
	}
	return nil
}

// overrideLocked describes override o of ref for the status.
func (d *Daemon) overrideLocked(ref compile.RealRef, o compile.Override) control.Override {
	out := control.Override{Service: ref.Service, Real: ref.Real.String(), Disabled: o.Disabled, Since: d.rt.since[ref]}
	if o.SetWeight {
		w := o.Weight
		out.Weight = &w
	}
	if _, rs, err := findReal(d.cfg, ref.Service, ref.Real.String()); err == nil {
		out.ConfiguredWeight = rs.Weight
	}
	return out
}

// overridesLocked lists the overrides in force, by service and real server.
func (d *Daemon) overridesLocked() []control.Override {
	out := []control.Override{}
	if d.compiler == nil {
		return out
	}
	for ref, o := range d.compiler.Overrides {
		out = append(out, d.overrideLocked(ref, o))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Real < out[j].Real
	})
	return out
}

// dropOverridesLocked ends every runtime override ahead of a reload of the file: the file is
// what the operator wants from then on. It returns what puts them back, for a reload that fails.
func (d *Daemon) dropOverridesLocked() (restore func()) {
	prev, since := d.compiler.Overrides, d.rt.since
	d.rt.dropped = d.overridesLocked()
	d.compiler.Overrides, d.rt.since = nil, nil
	return func() { d.compiler.Overrides, d.rt.since, d.rt.dropped = prev, since, nil }
}

// takeDroppedLocked returns, once, the overrides the latest applied reload ended.
func (d *Daemon) takeDroppedLocked() []control.Override {
	out := d.rt.dropped
	d.rt.dropped = nil
	if len(out) == 0 {
		return nil
	}
	var b strings.Builder
	for i, o := range out {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", o.Service, o.Real)
	}
	slog.Info(fmt.Sprintf("the reload ended %d runtime override(s) (govs ctl); the file's settings apply: %s", len(out), b.String()),
		"overrides_dropped", len(out))
	return out
}

// reloadFromFile is `govs ctl reload`: what SIGHUP does.
func (d *Daemon) reloadFromFile() (*control.CtlResult, error) {
	d.mu.Lock()
	path, reload := d.cfg.File, d.rt.reload
	d.mu.Unlock()
	if reload == nil {
		reload = func() error { return ReloadFile(d, path, slog.Default()) }
	}
	if err := reload(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	msg := fmt.Sprintf("reloaded %s: %d virtual servers (generation %d)", path, len(d.cfg.VirtualServers), d.gen)
	if r := d.lastReload; r != nil && len(r.OverridesDropped) > 0 {
		msg += fmt.Sprintf("; %d runtime override(s) ended", len(r.OverridesDropped))
	}
	if r := d.lastReload; r != nil && len(r.PendingRestart) > 0 {
		msg += fmt.Sprintf("; the running values stay for %d setting(s) a running govs cannot change:\n  %s",
			len(r.PendingRestart), strings.Join(r.PendingRestart, "\n  "))
	}
	return &control.CtlResult{Message: msg, Generation: d.gen}, nil
}

// Reloader is what ReloadFile reloads: a Daemon.
type Reloader interface {
	Reload(cfg *config.Config) error
	RecordReload(t time.Time, err error)
}

// reloadMu makes reloads (SIGHUP, `govs ctl reload`) one at a time, each recorded before the next.
var reloadMu sync.Mutex

// ReloadFile reloads d from the file at path, logs the outcome and records it for `govs stats`,
// also when the file fails to parse or validate and so never reaches d.Reload; it returns why
// the reload was rejected, nil when it was applied.
func ReloadFile(d Reloader, path string, log *slog.Logger) error {
	reloadMu.Lock()
	defer reloadMu.Unlock()
	at := time.Now()
	next, err := config.Load(path, config.OnHost())
	if err != nil {
		logRejected(log, path, err)
	} else {
		for _, w := range next.Warnings() {
			log.Warn(w)
		}
		if err = d.Reload(next); err != nil {
			logRejected(log, path, err)
		}
	}
	d.RecordReload(at, err)
	return err
}

// logRejected logs a rejected reload as one record, one line: the file's errors joined (govs stats
// lists them one per line). It is an info record, as the reload line has always been: the running
// configuration stays, and scripts match "govs: TIME reload rejected".
func logRejected(log *slog.Logger, path string, err error) {
	msg := strings.ReplaceAll(strings.TrimRight(err.Error(), "\n"), "\n", "; ")
	log.Info("reload rejected, the running configuration stays: "+msg, "file", path, "error", msg)
}

// zeroBase is the counters at `govs ctl zero`, which the status subtracts. The data plane's own
// counters only grow (the Prometheus metrics read them: a counter there must never go down).
type zeroBase struct {
	counters, drops map[string]uint64
	dropsTotal      uint64
	rings           control.RingStats
	reals           []dataplane.RealStats
}

// gauges are the data plane's counters that are levels, not counts: zeroing leaves them.
var gauges = map[string]bool{"rx_ring_latency": true, "conntrack_entries": true, "conntrack_capacity": true}

func (d *Daemon) zeroCounters() *control.CtlResult {
	ds := d.engine.Stats()
	rs := d.engine.SocketStats()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rt.zero = &zeroBase{counters: ds.Counters, drops: ds.Drops, dropsTotal: ds.DropsTotal,
		rings: control.RingStats{Packets: rs.Packets, Drops: rs.Drops, Freezes: rs.Freezes}, reals: ds.Reals}
	slog.Info("govs ctl zero: counters zeroed", "op", "zero")
	return &control.CtlResult{Message: "counters zeroed (govs stats, govs list -stats; the Prometheus metrics keep counting)", Generation: d.gen}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// Status implements control.Handler: what `govs stats` and `govs list` show, counted since
// `govs ctl zero`.
func (d *Daemon) Status() control.Status { return d.status(true) }

// rawStatus is Status with the data plane's own counts, which `govs ctl zero` does not touch:
// what the metrics report (a Prometheus counter never goes down).
func (d *Daemon) rawStatus() control.Status { return d.status(false) }

// completeStatus adds to st, whose virtual servers status listed from t in order, what the
// control commands keep: each real server's traffic and rate and whether it is disabled, each
// service's totals, and the overrides in force; zeroed: the counts since `govs ctl zero`.
func (d *Daemon) completeStatus(st *control.Status, t *dataplane.Tables, ds *dataplane.Stats, zeroed bool) {
	d.mu.Lock()
	z := d.rt.zero
	st.Overrides = d.overridesLocked()
	d.mu.Unlock()
	if !zeroed {
		z = nil
	}
	if z != nil {
		for k, v := range st.Counters {
			if !gauges[k] {
				st.Counters[k] = sub(v, z.counters[k])
			}
		}
		for k, v := range st.Drops {
			st.Drops[k] = sub(v, z.drops[k])
		}
		st.DropsTotal = sub(st.DropsTotal, z.dropsTotal)
		st.Rings = control.RingStats{Packets: sub(st.Rings.Packets, z.rings.Packets), Drops: sub(st.Rings.Drops, z.rings.Drops),
			Freezes: sub(st.Rings.Freezes, z.rings.Freezes)}
	}
	rates := d.rt.rates.rates()
	i := 0
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		if i >= len(st.VirtualServers) {
			break
		}
		v := &st.VirtualServers[i]
		i++
		for j, id := range s.RealIDs {
			x := &v.RealServers[j]
			x.Stats = realStats(ds, z, id)
			x.Packets = x.Stats.InPkts + x.Stats.OutPkts
			x.Rate = rateOf(rates, id)
			x.Disabled = t.Reals[id].Disabled
		}
		// The service's totals include its real servers that a reload removed, while they drain.
		for _, r := range t.Reals {
			if r == nil || r.Service != s.ID {
				continue
			}
			v.Stats = addStats(v.Stats, realStats(ds, z, r.ID))
			v.Rate = addRate(v.Rate, rateOf(rates, r.ID))
		}
	}
}

func realStats(ds *dataplane.Stats, z *zeroBase, id uint16) control.TrafficStats {
	var r dataplane.RealStats
	if int(id) < len(ds.Reals) {
		r = ds.Reals[id]
	}
	if z != nil && int(id) < len(z.reals) {
		r = r.Sub(z.reals[id])
	}
	return control.TrafficStats{Conns: r.Conns, InPkts: r.PacketsIn, OutPkts: r.PacketsOut, InBytes: r.BytesIn, OutBytes: r.BytesOut}
}

// rateOf returns real server id's rate; 0 for an ID newer than the latest sample.
func rateOf(rates []control.TrafficRate, id uint16) control.TrafficRate {
	if int(id) < len(rates) {
		return rates[id]
	}
	return control.TrafficRate{}
}

func addStats(a, b control.TrafficStats) control.TrafficStats {
	return control.TrafficStats{Conns: a.Conns + b.Conns, InPkts: a.InPkts + b.InPkts, OutPkts: a.OutPkts + b.OutPkts,
		InBytes: a.InBytes + b.InBytes, OutBytes: a.OutBytes + b.OutBytes}
}

func addRate(a, b control.TrafficRate) control.TrafficRate {
	return control.TrafficRate{CPS: a.CPS + b.CPS, InPPS: a.InPPS + b.InPPS, OutPPS: a.OutPPS + b.OutPPS,
		InBPS: a.InBPS + b.InBPS, OutBPS: a.OutBPS + b.OutBPS}
}

// rateSampler keeps the latest two samples of the real servers' traffic, taken by Run about
// every second, for the rates (`govs list -rate`).
type rateSampler struct {
	mu        sync.Mutex
	prev, cur rateSample
}

type rateSample struct {
	at    time.Time
	reals []dataplane.RealStats
}

// sampleRates takes a sample of the real servers' traffic for the rates.
func (d *Daemon) sampleRates(now time.Time) {
	if d.engine == nil {
		return
	}
	reals := d.engine.Stats().Reals
	r := &d.rt.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prev, r.cur = r.cur, rateSample{at: now, reals: reals}
}

// rates returns each real server's rate, by ID, over the interval between the latest two
// samples; nil until there are two.
func (r *rateSampler) rates() []control.TrafficRate {
	r.mu.Lock()
	defer r.mu.Unlock()
	dt := r.cur.at.Sub(r.prev.at).Seconds()
	if r.prev.at.IsZero() || dt <= 0 {
		return make([]control.TrafficRate, len(r.cur.reals))
	}
	out := make([]control.TrafficRate, len(r.cur.reals))
	per := func(a, b uint64) float64 { return math.Round(float64(sub(a, b))/dt*10) / 10 }
	for id, c := range r.cur.reals {
		var p dataplane.RealStats
		if id < len(r.prev.reals) {
			p = r.prev.reals[id]
		}
		out[id] = control.TrafficRate{CPS: per(c.Conns, p.Conns), InPPS: per(c.PacketsIn, p.PacketsIn),
			OutPPS: per(c.PacketsOut, p.PacketsOut), InBPS: per(c.BytesIn, p.BytesIn), OutBPS: per(c.BytesOut, p.BytesOut)}
	}
	return out
}

// conns answers `govs list -conns`.
func (d *Daemon) conns(ctx context.Context, a control.ConnsArgs) (*control.ConnList, error) {
	t := d.engine.Tables()
	f := dataplane.ConnFilter{Max: a.Max}
	switch {
	case a.Max == 0:
		f.Max = control.DefaultConnsMax
	case a.Max < 0 || a.Max > dataplane.MaxConns:
		return nil, fmt.Errorf("-max %d is out of range; list from 1 to %d connections (0: the default, %d), and filter with -service, -real or -client", a.Max, dataplane.MaxConns, control.DefaultConnsMax)
	}
	if a.Service != "" {
		key, err := serviceKey(a.Service)
		if err != nil {
			return nil, err
		}
		var known []string
		for _, s := range t.Services {
			if s == nil {
				continue
			}
			if s.Name == key {
				f.Service, f.HasService = s.ID, true
			}
			known = append(known, s.Name)
		}
		if !f.HasService {
			slices.Sort(known)
			return nil, fmt.Errorf("unknown virtual server %s; known: %s", key, strings.Join(known, ", "))
		}
	}
	var err error
	if f.Real, err = endpoint(a.Real, "-real", "198.19.0.11:80"); err != nil {
		return nil, err
	}
	if f.Client, err = endpoint(a.Client, "-client", "198.18.0.10"); err != nil {
		return nil, err
	}
	cs, matched, err := d.engine.Conns(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("the workers did not list their connections within %v (%v); filter with -service, -real or -client", control.CommandTimeout, err)
	}
	out := &control.ConnList{Matched: matched, Conns: make([]control.Conn, 0, len(cs))}
	for _, c := range cs {
		x := control.Conn{
			Protocol:      protoName(c.Proto),
			State:         c.State.String(),
			ExpireSeconds: math.Round(c.Expires.Seconds()*1000) / 1000,
			Client:        c.Client.String(),
			Real:          c.Real.String(),
			Template:      c.Template,
			Worker:        c.Worker,
		}
		if c.VIP.IsValid() {
			x.Virtual = c.VIP.String()
		}
		if c.Local.IsValid() {
			x.Local = c.Local.String()
		}
		if int(c.Service) < len(t.Services) {
			if s := t.Services[c.Service]; s != nil && s.ID == c.Service {
				x.Service = s.Name
				if c.Template {
					x.Protocol, x.Virtual = protoName(s.Proto), s.VIP.String()
				}
			}
		}
		out.Conns = append(out.Conns, x)
	}
	sort.SliceStable(out.Conns, func(i, j int) bool {
		a, b := &out.Conns[i], &out.Conns[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Template != b.Template {
			return b.Template
		}
		return a.Client < b.Client
	})
	return out, nil
}

// endpoint parses a filter's address, with or without a port; "" is any.
func endpoint(s, flag, example string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, 0), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s %q is not an address; write e.g. %s, with or without :port ([2001:2::10]:41000 for IPv6)", flag, s, example)
}
