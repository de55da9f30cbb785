package sched

import (
	"fmt"
	"sort"
	"strings"
)

// Dest is what a scheduler knows about one real server (IPVS: a destination).
type Dest struct {
	// Weight is the IPVS weight; 0 means "take no new connections" (quiesced).
	Weight int32
	// Available is false when the server must never be picked (health check down, overloaded).
	Available bool
}

// Scheduler picks a real server for each new connection.
//
// A Scheduler is not safe for concurrent use: each data-plane worker owns its own instance and is its
// only caller, so Pick takes no lock and allocates nothing.
type Scheduler interface {
	// Pick returns the index into dests of the real server for a new connection, or -1 if none can
	// take it. dests must have the weights given to New (or to the last Update); Available may
	// change between calls.
	Pick(dests []Dest) int
	// Update tells the scheduler that the destination list or weights changed (IPVS upd_dest).
	Update(dests []Dest)
	// Name is the scheduler's IPVS name, e.g. "wrr".
	Name() string
}

// factories is the scheduler family, by IPVS name.
var factories = map[string]func(dests []Dest) Scheduler{
	"rr":  func(d []Dest) Scheduler { s := &RoundRobin{}; s.Update(d); return s },
	"wrr": func(d []Dest) Scheduler { s := &WeightedRoundRobin{}; s.Update(d); return s },
}

// Names returns the supported scheduler names, sorted.
func Names() []string {
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New returns the scheduler called name (an IPVS scheduler name such as "rr" or "wrr"), set up for dests.
func New(name string, dests []Dest) (Scheduler, error) {
	f, ok := factories[name]
	if !ok {
		return nil, fmt.Errorf("unknown scheduler %q: use one of the IPVS schedulers %s", name, strings.Join(Names(), ", "))
	}
	for i, d := range dests {
		if d.Weight < 0 {
			return nil, fmt.Errorf("failed to set up scheduler %q: destination %d has negative weight %d: use 0 to quiesce it", name, i, d.Weight)
		}
	}
	return f(dests), nil
}
