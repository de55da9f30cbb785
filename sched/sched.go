package sched

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/govs/govs/flow"
)

// Counts are a real server's connection counts, shared by all data-plane workers. They are atomics,
// updated when a connection is created, moves between active and inactive, or ends — not per packet.
//
// Active and Inactive have IPVS's meaning: a TCP connection is active while ESTABLISHED, inactive
// in the other states; UDP connections are inactive (ip_vs_conn.c). The zero value is ready to use.
type Counts struct {
	Active, Inactive atomic.Int64
	overloaded       atomic.Bool // IP_VS_DEST_F_OVERLOAD: set at UpperThreshold, cleared below the lower one
}

// Dest is what a scheduler knows about one real server (IPVS: a destination).
type Dest struct {
	// Addr is the real server's address, IPv4-mapped for IPv4. Maglev uses it (with Port) to name the
	// server, so the lookup table depends on who the servers are, not on their order in the list.
	Addr [16]byte
	Port uint16
	// Weight is the IPVS weight; 0 means quiescent: no new connections, existing ones continue.
	Weight int32
	// Available is false when the server must never be picked (unresolved next hop, health check
	// down).
	Available bool
	// Counts must not be nil in dests handed to Pick.
	Counts *Counts
	// UpperThreshold and LowerThreshold are ipvsadm -x and -y: no new connections once the server
	// has UpperThreshold connections (active + inactive), again once it is below LowerThreshold.
	// 0 = none; a LowerThreshold of 0 with UpperThreshold set means 3/4 of UpperThreshold.
	UpperThreshold, LowerThreshold uint32
}

// Options tune a scheduler beyond its name (ipvsadm --sched-flags and the Maglev table size).
type Options struct {
	// Flags must be a subset of FlagsFor(name).
	Flags Flags
	// MHTableSize is the Maglev lookup table size M, a prime; 0 = DefaultMHTableSize. Only mh uses it.
	MHTableSize int
	// Position, for rr and wrr, is where the instances of one virtual server's scheduler (one per
	// worker) keep their common place in the list; nil: each instance keeps its own. The others
	// ignore it.
	Position *Position
}

// Scheduler picks a real server for each new connection.
//
// A Scheduler is not safe for concurrent use: each data-plane worker owns its own instance and is its
// only caller, so Pick takes no lock and allocates nothing. The Counts it reads are shared, and so
// is the Position rr and wrr are given (see Position).
type Scheduler interface {
	// Pick returns the index into dests of the real server for the new connection f, or -1 if none
	// can take it. dests must be the list given to New or to the last Update (Available and Counts
	// may change between calls). f may be nil for schedulers that do not hash (they ignore it).
	Pick(dests []Dest, f *flow.Tuple) int
	// Update tells the scheduler that the destination list changed (weights, membership, addresses)
	// and rebuilds its state, e.g. the Maglev table (IPVS add_dest/del_dest/upd_dest). It allocates.
	Update(dests []Dest)
	// Name is the scheduler's IPVS name, e.g. "wrr".
	Name() string
}

// DefaultScheduler is the scheduler used when none is configured, as in IPVS.
const DefaultScheduler = "wlc"

// factories is the scheduler family, by IPVS name.
var factories = map[string]func(opts Options) Scheduler{
	"rr":    func(o Options) Scheduler { return &RoundRobin{pos: o.Position} },
	"wrr":   func(o Options) Scheduler { return &WeightedRoundRobin{pos: o.Position} },
	"lc":    func(Options) Scheduler { return &LeastConnection{} },
	"wlc":   func(Options) Scheduler { return &WeightedLeastConnection{} },
	"sed":   func(Options) Scheduler { return &ShortestExpectedDelay{} },
	"nq":    func(Options) Scheduler { return &NeverQueue{} },
	"lblc":  func(Options) Scheduler { return newLBLC() },
	"lblcr": func(Options) Scheduler { return newLBLCR() },
	"dh":    func(o Options) Scheduler { return &DestinationHashing{flags: o.Flags} },
	"sh":    func(o Options) Scheduler { return &SourceHashing{flags: o.Flags} },
	"mh":    func(o Options) Scheduler { return newMaglev(o) },
	"fo":    func(Options) Scheduler { return &WeightedFailover{} },
	"ovf":   func(Options) Scheduler { return &WeightedOverflow{} },
	"twos":  func(Options) Scheduler { return newTwos() },
}

// Names returns the supported scheduler names, sorted.
func Names() []string {
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// New returns the scheduler called name (an IPVS scheduler name such as "wrr"; "" means
// DefaultScheduler), set up for dests. It rejects flags that do not belong to the scheduler, a Maglev
// table size that is not a prime in range, and thresholds that contradict each other.
func New(name string, dests []Dest, opts Options) (Scheduler, error) {
	if name == "" {
		name = DefaultScheduler
	}
	f, ok := factories[name]
	if !ok {
		return nil, fmt.Errorf("unknown scheduler %q: use one of the IPVS schedulers %s", name, strings.Join(Names(), ", "))
	}
	if extra := opts.Flags &^ FlagsFor(name); extra != 0 {
		return nil, fmt.Errorf("scheduler %q does not take flag %s: %s", name, extra, flagHint(extra))
	}
	if opts.MHTableSize != 0 {
		if name != "mh" {
			return nil, fmt.Errorf("scheduler %q has no lookup table: set the table size only with the mh scheduler", name)
		}
		if err := checkMHTableSize(opts.MHTableSize); err != nil {
			return nil, err
		}
	}
	for i := range dests {
		d := &dests[i]
		if d.Weight < 0 {
			return nil, fmt.Errorf("failed to set up scheduler %q: destination %d has negative weight %d: use 0 to quiesce it", name, i, d.Weight)
		}
		if d.UpperThreshold != 0 && d.LowerThreshold > d.UpperThreshold {
			return nil, fmt.Errorf("failed to set up scheduler %q: destination %d has lower threshold %d above upper threshold %d: lower it or raise the upper one", name, i, d.LowerThreshold, d.UpperThreshold)
		}
	}
	s := f(opts)
	s.Update(dests)
	return s, nil
}

// Overloaded reports whether d has reached its connection thresholds (ipvsadm -x/-y), with IPVS's
// hysteresis: the server becomes overloaded when its active + inactive connections reach
// UpperThreshold and stays so until they drop below LowerThreshold (3/4 of UpperThreshold when
// LowerThreshold is 0). The state lives in d.Counts, so all workers agree.
//
// IPVS updates the flag when a connection is bound or unbound; here it is set when a scheduler
// looks at the server, and cleared then or when a connection ends (Counts.Unbound).
func Overloaded(d *Dest) bool {
	c := d.Counts
	if c == nil {
		return false
	}
	upper := int64(d.UpperThreshold)
	if upper == 0 {
		if c.overloaded.Load() { // thresholds were removed by a reload
			c.overloaded.Store(false)
		}
		return false
	}
	total := c.Active.Load() + c.Inactive.Load()
	if c.overloaded.Load() {
		if belowLower(total, d.UpperThreshold, d.LowerThreshold) {
			c.overloaded.Store(false)
			return false
		}
		return true
	}
	if total >= upper {
		c.overloaded.Store(true)
		return true
	}
	return false
}

// belowLower is ip_vs_unbind_dest's test for clearing the overload flag: total below the lower
// threshold, or below 3/4 of the upper one when there is no lower one.
func belowLower(total int64, upper, lower uint32) bool {
	if lower == 0 {
		return total*4 < int64(upper)*3
	}
	return total < int64(min(lower, upper))
}

// Unbound is IPVS's ip_vs_unbind_dest rule for a real server one of whose connections just ended
// (and was already taken off c): once its connections are below the lower threshold (3/4 of the
// upper one when lower is 0), or it has no thresholds, it takes new connections again. Pick clears
// the flag by the same rule when it looks at the server; clearing it here too means a dip below
// the lower threshold is not missed when connections come back without a pick (persistence).
func (c *Counts) Unbound(upper, lower uint32) {
	if !c.overloaded.Load() {
		return
	}
	if upper == 0 || belowLower(c.Active.Load()+c.Inactive.Load(), upper, lower) {
		c.overloaded.Store(false)
	}
}

// IsOverloaded reports the overload flag as the schedulers last left it (IP_VS_DEST_F_OVERLOAD),
// without updating it.
func (c *Counts) IsOverloaded() bool { return c.overloaded.Load() }

// usable reports whether d may take a new connection: available, not quiesced, not overloaded
// (IPVS: weight > 0 and no IP_VS_DEST_F_OVERLOAD).
func usable(d *Dest) bool {
	// Written so the compiler inlines it into the schedulers' loops: without thresholds there is no
	// call at all. (A flag left set when a reload removed the thresholds is ignored here, and
	// cleared by Overloaded if thresholds return.)
	return d.Available && d.Weight > 0 && (d.UpperThreshold == 0 || !Overloaded(d))
}

// overhead is ip_vs_dest_conn_overhead: active connections weigh 256 inactive ones.
func overhead(d *Dest) int64 {
	if d.Counts == nil {
		return 0
	}
	return d.Counts.Active.Load()<<8 + d.Counts.Inactive.Load()
}

// active is the number of active connections of d.
func active(d *Dest) int64 {
	if d.Counts == nil {
		return 0
	}
	return d.Counts.Active.Load()
}

// destKey names a real server independently of its position in the list.
type destKey struct {
	addr [16]byte
	port uint16
}

func keyOf(d *Dest) destKey { return destKey{d.Addr, d.Port} }

// zeroFlow stands in for a nil *flow.Tuple; it is never written.
var zeroFlow flow.Tuple
