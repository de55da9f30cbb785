package dataplane

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/frame"
)

// Config is what the engine needs to start; the daemon derives it from the configuration file.
type Config struct {
	// Interfaces the data plane reads and writes; a real server's Port indexes this list.
	Interfaces []string
	// Workers is the number of worker goroutines (each pinned to a CPU); 0 means one per CPU.
	Workers int
	// Conntrack sizes each worker's connection table (MaxEntries is per worker).
	Conntrack conntrack.Config
	// RXMode is RXModeAuto (also ""), RXModeThroughput or RXModeLatency; see rxmode.go.
	RXMode string
	// Priority, when not 0, runs each worker's thread SCHED_FIFO at this priority (1-99): the
	// receive softirq still runs first, but work the kernel defers to ksoftirqd waits while the
	// worker runs, so under overload the backlog fills and frames are dropped where they are
	// queued, before they cost the worker's CPU their receive path (bench/README.md).
	Priority int
	// IO is IOAFPacket (also "") or IOAFXDP: see engine_linux.go.
	IO string
	// XDPMode is XDPModeDriver (also "") or XDPModeGeneric, with IOAFXDP.
	XDPMode string
	// IRQDefer is how the interfaces' NAPI runs are deferred with IOAFXDP (irqdefer_linux.go):
	// "off" (also ""), "auto", or a duration.
	IRQDefer string
	// Standby starts the engine standing down (an HA backup): see Engine.SetStandby.
	Standby bool
	// Sync gives every worker the rings of HA connection sync (see SyncExport, SyncInstall).
	Sync bool
	// Log gets the engine's records: its start, rx_mode switches (with fields), problems. nil: none.
	Log *slog.Logger
}

// Interface is one of the engine's interfaces as found on the host.
type Interface struct {
	Name  string
	Index int
	MAC   [6]byte
}

// Engine owns the workers and their sockets. New starts them; Close stops them and waits.
type Engine struct {
	cfg     Config
	ifaces  []Interface
	workers []*Worker
	tables  atomic.Pointer[Tables]
	epoch   time.Time

	snapGen atomic.Uint64              // the last connection-sync snapshot asked for (SyncSnapshot)
	fan     atomic.Pointer[fanoutPlan] // the fanout plan in force, for the workers' fragments (nil: one worker)
	logNext int                        // the worker ConnLogDrain starts at; its caller's

	mu sync.Mutex // serialises Publish; guards filter state below
	os engineOS   // per-OS sockets and goroutines
}

// Interfaces returns the engine's interfaces in configuration order.
func (e *Engine) Interfaces() []Interface { return e.ifaces }

// Workers returns the number of running workers.
func (e *Engine) Workers() int { return len(e.workers) }

// Tables returns the tables published last.
func (e *Engine) Tables() *Tables { return e.tables.Load() }

// Publish makes t the tables every worker uses from its next batch on, and makes the sockets
// admit and spread t's traffic. The workers get t first, so that no frame of a service t adds
// reaches them before they know it; then the kernel's programs follow (see engineOS.program). If
// reprogramming fails, the previous tables and programs are put back and the error returned.
func (e *Engine) Publish(t *Tables) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.tables.Load()
	t.inheritPaths(prev)
	e.tables.Store(t)
	if err := e.os.program(e, t); err != nil {
		e.tables.Store(prev)
		if prev != nil {
			if rerr := e.os.program(e, prev); rerr != nil {
				err = fmt.Errorf("%w; putting the previous filters back failed too: %v", err, rerr)
			}
		}
		return err
	}
	return nil
}

// filterSpec lists what the sockets must let through for t: every service's VIP endpoint, the
// replies of its NAT real servers, those a reload removed included while their connections drain,
// ICMP to the outer sources of its tunnels (path MTU signals, pathmtu.go), and what comes to a
// FullNAT service's local addresses and to draining ones.
func filterSpec(t *Tables) bpfgen.FilterSpec {
	var spec bpfgen.FilterSpec
	seen := map[[16]byte]bool{}
	for _, p := range t.paths {
		if !seen[p.src] {
			seen[p.src] = true
			spec.ICMPTo = append(spec.ICMPTo, netip.AddrFrom16(p.src).Unmap())
		}
	}
	slices.SortFunc(spec.ICMPTo, netip.Addr.Compare) // the same tables, the same program
	for _, s := range t.Services {
		if s != nil {
			spec.VIPs = append(spec.VIPs, bpfgen.Endpoint{Addr: s.VIP.Addr(), Proto: s.Proto, Port: s.VIP.Port()})
			for _, l := range s.Locals { // FullNAT replies and ICMP errors about its connections
				spec.VIPs = append(spec.VIPs, bpfgen.Endpoint{Addr: l, Proto: s.Proto})
			}
		}
	}
	for _, l := range t.DrainingLocals { // their connections' replies, of any protocol
		spec.VIPs = append(spec.VIPs, bpfgen.Endpoint{Addr: l})
	}
	for _, r := range t.Reals {
		if s := t.owner(r); s != nil && s.Method == MethodNAT {
			spec.RealServers = append(spec.RealServers, bpfgen.Endpoint{Addr: r.Addr.Addr(), Proto: s.Proto, Port: r.Addr.Port()})
		}
	}
	return spec
}

// Stats sums the workers' last published counters.
func (e *Engine) Stats() Stats {
	var sum counters
	var reals []RealStats
	var ctEntries, ctCapacity, ctEvictions uint64
	for _, w := range e.workers {
		for i := range sum {
			sum[i] += w.pub.slots[i].Load()
		}
		ctEntries += w.pub.ctEntries.Load()
		ctCapacity += w.pub.ctCapacity.Load()
		ctEvictions += w.pub.ctEvictions.Load()
		rc := w.pub.reals.Load()
		if rc == nil {
			continue
		}
		if len(rc.reals) > len(reals) {
			reals = append(reals, make([]RealStats, len(rc.reals)-len(reals))...)
		}
		for i := range rc.reals {
			p, r := &rc.reals[i], &reals[i]
			r.Conns += p.conns.Load()
			r.PacketsIn += p.packets[0].Load()
			r.PacketsOut += p.packets[1].Load()
			r.BytesIn += p.bytes[0].Load()
			r.BytesOut += p.bytes[1].Load()
		}
	}
	var packets []uint64
	if reals != nil {
		packets = make([]uint64, len(reals))
		for i, r := range reals {
			packets[i] = r.PacketsIn + r.PacketsOut
		}
	}
	st := Stats{
		Counters:    make(map[string]uint64, cDropBase),
		Drops:       make(map[string]uint64, numSlots-cDropBase),
		RealPackets: packets,
		Reals:       reals,
	}
	for i := 0; i < cDropBase; i++ {
		st.Counters[counterNames[i]] = sum[i]
	}
	// rx_ring_latency is 1 while frames arrive on the TPACKET_V2 (latency) ring, 0 on the
	// TPACKETv3 (throughput) ring; rx_mode_switches counts auto mode's moves between them. AF_XDP
	// has neither ring: they are left out.
	if e.cfg.IO != IOAFXDP {
		lat, switches := e.rxModeStats()
		st.Counters["rx_mode_switches"] = switches
		st.Counters["rx_ring_latency"] = 0
		if lat {
			st.Counters["rx_ring_latency"] = 1
		}
	}
	// The connection tables' occupancy (a level) and the entries full_policy evict_oldest_idle
	// evicted.
	st.Counters["conntrack_entries"] = ctEntries
	st.Counters["conntrack_capacity"] = ctCapacity
	st.Counters["conntrack_evictions"] = ctEvictions
	for d := Drop(1); d < numDrops; d++ {
		v := sum[cDropBase+int(d)]
		st.Drops[d.String()] = v
		st.DropsTotal += v
	}
	for e := frame.Error(1); int(e) < frame.NumErrors; e++ {
		v := sum[cParseBase+int(e)]
		st.Drops[e.String()] = v
		st.DropsTotal += v
	}
	return st
}

func (c Config) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// logf logs the message of format and args at info, for the engine's messages without fields.
func (c Config) logf(format string, args ...any) {
	c.log().Info(fmt.Sprintf(format, args...))
}

// warnf is logf at warning level.
func (c Config) warnf(format string, args ...any) {
	c.log().Warn(fmt.Sprintf(format, args...))
}

// errorf is fmt.Errorf with "dataplane: " in front. Causes are printed with %w, so errors.Is and
// errors.As reach the syscall or library error underneath.
func errorf(format string, args ...any) error {
	return fmt.Errorf("dataplane: "+format, args...)
}
