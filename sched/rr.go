package sched

// RoundRobin is IPVS "rr": destinations in list order, skipping those with weight 0 or unavailable
// (ip_vs_rr.c semantics). The zero value is ready to use.
type RoundRobin struct {
	last int // index picked last; -1 (or any out-of-range value) = start from the head of the list
}

var _ Scheduler = (*RoundRobin)(nil)

// Name returns "rr".
func (*RoundRobin) Name() string { return "rr" }

// Update restarts from the head of the list, as IPVS does when destinations change.
func (s *RoundRobin) Update([]Dest) { s.last = -1 }

// Pick returns the next available destination with a positive weight after the last one picked, or -1.
func (s *RoundRobin) Pick(dests []Dest) int {
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
		if d := &dests[i]; d.Available && d.Weight > 0 {
			s.last = i
			return i
		}
	}
	return -1
}
