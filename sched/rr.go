package sched

import "github.com/govs/govs/flow"

// RoundRobin is IPVS "rr": destinations in list order, skipping unavailable, quiesced (weight 0) and
// overloaded ones (ip_vs_rr.c semantics). The zero value is ready to use.
type RoundRobin struct {
	last int       // index picked last; -1 (or any out-of-range value) = start from the head of the list
	pos  *Position // shared with the other workers' instances; nil: last is the position
}

var _ Scheduler = (*RoundRobin)(nil)

// Name returns "rr".
func (*RoundRobin) Name() string { return "rr" }

// Update restarts from the head of the list. A shared position stays where it is: the workers
// update their instances one after the other, and compiling a list that did not change must not
// restart the order.
func (s *RoundRobin) Update([]Dest) { s.last = -1 }

// Pick returns the next usable destination after the last one picked, or -1.
func (s *RoundRobin) Pick(dests []Dest, _ *flow.Tuple) int {
	if s.pos == nil {
		i := nextUsable(dests, s.last)
		if i >= 0 {
			s.last = i
		}
		return i
	}
	for {
		old := s.pos.v.Load()
		i := nextUsable(dests, int(int32(uint32(old)))-1)
		if i < 0 {
			return -1
		}
		if s.pos.v.CompareAndSwap(old, uint64(i+1)) {
			return i
		}
	}
}

// nextUsable returns the first usable destination after index last, wrapping around, or -1.
func nextUsable(dests []Dest, last int) int {
	n := len(dests)
	i := last
	if i < 0 || i >= n {
		i = -1
	}
	for range n {
		i++
		if i == n {
			i = 0
		}
		if usable(&dests[i]) {
			return i
		}
	}
	return -1
}
