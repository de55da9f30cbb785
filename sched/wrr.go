package sched

import "github.com/govs/govs/flow"

// WeightedRoundRobin is IPVS "wrr" (ip_vs_wrr.c semantics): a current weight cw starts at the largest
// weight and drops by the gcd of the weights each time the list is walked to its end; a destination
// is picked when its weight is at least cw. For weights a=3, b=2, c=1 the sequence is
//
//	cw=3: a   cw=2: a b   cw=1: a b c   (then again from cw=3)
//
// so connections are interleaved instead of sent in bursts. Unavailable and overloaded destinations are
// skipped but their weights still count for the largest weight and the gcd, as in IPVS.
//
// Create it with New or call Update before the first Pick.
type WeightedRoundRobin struct {
	cl  int       // index of the destination picked last; -1 = the head of the list
	cw  int32     // current weight
	mw  int32     // largest weight minus (di-1), so cw steps land on multiples of di
	di  int32     // gcd of the positive weights (1 if none)
	n   int       // len(dests) at the last Update
	pos *Position // cl and cw shared with the other workers' instances; nil: cl and cw are the position
}

var _ Scheduler = (*WeightedRoundRobin)(nil)

// Name returns "wrr".
func (*WeightedRoundRobin) Name() string { return "wrr" }

// Update recomputes the largest weight and the gcd and restarts from the head of the list, keeping the
// current weight where IPVS keeps it (ip_vs_wrr_dest_changed). A shared position is left alone (see
// RoundRobin.Update); Pick fits it to the list when it reads it.
func (s *WeightedRoundRobin) Update(dests []Dest) {
	var g, maxW int32
	for _, d := range dests {
		w := d.Weight
		if w > maxW {
			maxW = w
		}
		if w > 0 {
			if g == 0 {
				g = w
			} else {
				g = gcd(g, w)
			}
		}
	}
	if g == 0 {
		g = 1
	}
	s.cl = -1
	s.di = g
	s.mw = maxW - (g - 1)
	s.n = len(dests)
	s.cw = s.fit(s.cw)
}

// fit returns current weight cw moved onto this list's steps, as IPVS does when the list changes.
func (s *WeightedRoundRobin) fit(cw int32) int32 {
	switch {
	case cw > s.mw || cw <= 0:
		return s.mw
	case s.di > 1:
		return (cw/s.di)*s.di + 1
	}
	return cw
}

// Pick returns the next destination in weighted round-robin order, or -1 if no available destination
// has a positive weight.
func (s *WeightedRoundRobin) Pick(dests []Dest, _ *flow.Tuple) int {
	if len(dests) != s.n {
		s.Update(dests) // the caller forgot Update; do not index out of range
	}
	if s.pos == nil {
		i, cl, cw := s.next(dests, s.cl, s.cw)
		s.cl, s.cw = cl, cw
		return i
	}
	for {
		old := s.pos.v.Load()
		cl := int(int32(uint32(old))) - 1
		if cl >= len(dests) {
			cl = -1
		}
		i, cl, cw := s.next(dests, cl, s.fit(int32(old>>32)))
		v := uint64(uint32(int32(cl+1))) | uint64(uint32(cw))<<32
		if v == old || s.pos.v.CompareAndSwap(old, v) {
			return i
		}
	}
}

// next is Pick from position (cl, cw): the destination picked (or -1) and the position after it.
func (s *WeightedRoundRobin) next(dests []Dest, cl int, cw int32) (int, int, int32) {
	n := len(dests)
	if s.mw <= 0 {
		return -1, cl, cw
	}
	// Walk the list from the last pick, lowering cw by di at each end of the list. To give up we need
	// every destination checked at the lowest level (cw <= di), where any positive weight qualifies:
	// that happened if we passed the lowest level twice (lastPass), or started from the head, or once
	// cw restarted we reach, at the lowest level, the destination we started from (stop). This is
	// where IPVS gives up too, so cw after a miss matches the kernel's.
	start, stop := cl, -2
	lastPass, restarted := false, false
	i := cl
	for {
		for i++; i < n; i++ {
			if d := &dests[i]; d.Weight >= cw && d.Available && !Overloaded(d) {
				return i, i, cw
			}
			if i == stop {
				return -1, cl, cw
			}
		}
		i = -1
		cw -= s.di
		if cw <= 0 {
			cw = s.mw
			if lastPass || start < 0 || start >= n {
				return -1, cl, cw
			}
			restarted = true
		}
		lastPass = cw <= s.di
		if lastPass && restarted {
			stop = start
		}
	}
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
