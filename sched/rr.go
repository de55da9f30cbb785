package sched

import "github.com/govs/govs/flow"

// RoundRobin is IPVS "rr": destinations in list order, skipping unavailable, quiesced (weight 0) and
// overloaded ones (ip_vs_rr.c semantics). The zero value is ready to use.
type RoundRobin struct {
	last int // index picked last; -1 (or any out-of-range value) = start from the head of the list
}

var _ Scheduler = (*RoundRobin)(nil)

// Name returns "rr".
func (*RoundRobin) Name() string { return "rr" }

// Update restarts from the head of the list.
func (s *RoundRobin) Update([]Dest) { s.last = -1 }

// Pick returns the next usable destination after the last one picked, or -1.
func (s *RoundRobin) Pick(dests []Dest, _ *flow.Tuple) int {
	n := len(dests)
	i := s.last
	if i < 0 || i >= n {
		i = -1
	}
	for range n {
		i++
		if i == n {
			i = 0
		}
		if usable(&dests[i]) {
			s.last = i
			return i
		}
	}
	return -1
}
