package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/metrics"
)

// observe is what the daemon keeps for its operators' monitoring: the metrics endpoint, the counts
// only metrics show, and the rate limits of its repeating log messages.
type observe struct {
	start    time.Time
	server   *metrics.Server // nil with [metrics] listen = ""
	applied  atomic.Uint64   // reloads, see RecordReload
	rejected atomic.Uint64
	limit    limits // events.go
}

// startMetrics claims [metrics] listen, right after the control socket and before anything else, so
// that a port in use stops govs before it touches the rings or the VIPs. Until gate has the daemon
// (New is done), a scrape reports govs_ready 0 and nothing else of the daemon.
func (d *Daemon) startMetrics(cfg *config.Config, gate *statusGate) error {
	d.obs.start = time.Now()
	addr := cfg.Metrics.Listen
	if addr == "" {
		return nil
	}
	reg := metrics.NewRegistry(metrics.NewCollector(func() metrics.Snapshot {
		if dd := gate.d.Load(); dd != nil {
			return dd.metricsSnapshot()
		}
		return metrics.Snapshot{Version: Version}
	}))
	s, err := metrics.Listen(addr, reg, d.logf)
	if err != nil {
		var sys *os.SyscallError
		if errors.As(err, &sys) {
			err = sys.Err // "address already in use": the rest repeats the address
		}
		def := ""
		if addr == config.DefaultMetricsListen && cfg.Where("metrics.listen") == cfg.File {
			def = " (the default)"
		}
		return fmt.Errorf("%s: metrics.listen: cannot listen on %s%s: %v; free the port or set [metrics] listen to another address (\"\" serves no metrics)",
			cfg.Where("metrics.listen"), addr, def, err)
	}
	d.obs.server = s
	d.logf("metrics at http://%s%s", s.Addr(), metrics.Path)
	return nil
}

// stopMetrics closes the metrics endpoint, if any.
func (d *Daemon) stopMetrics() error {
	if d.obs.server == nil {
		return nil
	}
	if err := d.obs.server.Close(); err != nil {
		return fmt.Errorf("failed to stop serving metrics: %w", err)
	}
	return nil
}

// countReload counts a reload attempt for govs_config_reloads_total.
func (d *Daemon) countReload(err error) {
	if err == nil {
		d.obs.applied.Add(1)
	} else {
		d.obs.rejected.Add(1)
	}
}

// metricsSnapshot is what a scrape reports: the status `govs stats` shows, and the resolver's and
// reloads' counts.
func (d *Daemon) metricsSnapshot() metrics.Snapshot {
	st := d.rawStatus()
	s := metrics.Snapshot{
		Version:    st.Version,
		Ready:      st.Ready,
		Workers:    st.Workers,
		Generation: st.Generation,
		Counters:   st.Counters,
		Drops:      st.Drops,
		Rings:      metrics.Rings{Packets: st.Rings.Packets, Drops: st.Rings.Drops, Freezes: st.Rings.Freezes},
		Reloads: metrics.Reloads{
			Applied:     d.obs.applied.Load(),
			Rejected:    d.obs.rejected.Load(),
			LastApplied: true,
			LastTime:    d.obs.start,
		},
		HA:                haOf(&st),
		InterfaceProblems: len(st.InterfaceProblems),
	}
	if r := st.LastReload; r != nil {
		s.Reloads.LastApplied, s.Reloads.LastTime = r.Applied, r.Time
	}
	if d.resolver != nil {
		ns := d.resolver.Stats()
		s.Neighbor = metrics.Neighbor{Unresolved: ns.Unresolved, Failures: ns.Lost}
	}
	for _, vs := range st.VirtualServers {
		mv := metrics.VirtualServer{Name: vs.Protocol + "/" + vs.Address}
		for _, rs := range vs.RealServers {
			x := rs.Stats
			mv.RealServers = append(mv.RealServers, metrics.RealServer{
				Address:     rs.Address,
				Weight:      rs.Weight,
				Active:      rs.ActiveConnections,
				Inactive:    rs.InactiveConnections,
				Packets:     rs.Packets,
				Resolved:    rs.Resolved,
				Overloaded:  rs.Overloaded,
				Health:      rs.Health,
				Connections: &x.Conns,
				InPackets:   &x.InPkts,
				InBytes:     &x.InBytes,
				OutPackets:  &x.OutPkts,
				OutBytes:    &x.OutBytes,
			})
		}
		s.VirtualServers = append(s.VirtualServers, mv)
	}
	return s
}

// haOf reads the "ha" object of a status (`govs stats -json`) by its JSON fields, the contract
// operators' scripts read too, rather than by the Go type that carries them; nil for a
// stand-alone govs (no "ha" object, or state "standalone").
func haOf(st *control.Status) *metrics.HA {
	b, err := json.Marshal(st)
	if err != nil {
		return nil
	}
	return haOfJSON(b)
}

// haOfJSON is haOf on a status in JSON.
func haOfJSON(b []byte) *metrics.HA {
	var v struct {
		HA *struct {
			State       string `json:"state"`
			Forwarding  bool   `json:"forwarding"`
			Transitions uint64 `json:"transitions"`
			Sync        *struct {
				Snapshot *control.HASnapshot `json:"snapshot"`
			} `json:"sync"`
		} `json:"ha"`
	}
	if json.Unmarshal(b, &v) != nil || v.HA == nil || v.HA.State == "" || v.HA.State == "standalone" {
		return nil
	}
	ha := &metrics.HA{State: v.HA.State, Forwarding: v.HA.Forwarding, Transitions: v.HA.Transitions}
	if y := v.HA.Sync; y != nil && y.Snapshot != nil {
		sp := y.Snapshot
		ha.Snapshot = &metrics.SyncSnapshot{Sending: sp.Sending, Receiving: sp.Receiving, Entries: sp.Entries, Total: sp.Total}
		if sp.Since != nil {
			ha.Snapshot.Since = *sp.Since
		}
	}
	return ha
}
