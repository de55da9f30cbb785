package sched

import "github.com/govs/govs/flow"

// The least-connection family reads the shared Counts. Overhead is IPVS's
// ip_vs_dest_conn_overhead, active*256 + inactive, except for sed and nq, which count active
// connections + 1 (the new one). Ties go to the destination listed first.

// LeastConnection is IPVS "lc": the usable destination with the lowest overhead, weights ignored
// except that weight 0 quiesces (ip_vs_lc.c). The zero value is ready to use.
type LeastConnection struct{}

// WeightedLeastConnection is IPVS "wlc", the default scheduler: the usable destination with the
// lowest overhead/weight (ip_vs_wlc.c). The zero value is ready to use.
type WeightedLeastConnection struct{}

// ShortestExpectedDelay is IPVS "sed": the usable destination with the lowest (active+1)/weight, the
// expected delay of the new connection if servers serve connections at a rate proportional to their
// weight (ip_vs_sed.c). The zero value is ready to use.
type ShortestExpectedDelay struct{}

// NeverQueue is IPVS "nq": the first usable idle destination (no active connections), else as sed
// (ip_vs_nq.c). The zero value is ready to use.
type NeverQueue struct{}

var (
	_ Scheduler = (*LeastConnection)(nil)
	_ Scheduler = (*WeightedLeastConnection)(nil)
	_ Scheduler = (*ShortestExpectedDelay)(nil)
	_ Scheduler = (*NeverQueue)(nil)
)

// Name returns "lc".
func (*LeastConnection) Name() string { return "lc" }

// Name returns "wlc".
func (*WeightedLeastConnection) Name() string { return "wlc" }

// Name returns "sed".
func (*ShortestExpectedDelay) Name() string { return "sed" }

// Name returns "nq".
func (*NeverQueue) Name() string { return "nq" }

// Update does nothing: these schedulers keep no state.
func (*LeastConnection) Update([]Dest) {}

// Update does nothing: these schedulers keep no state.
func (*WeightedLeastConnection) Update([]Dest) {}

// Update does nothing: these schedulers keep no state.
func (*ShortestExpectedDelay) Update([]Dest) {}

// Update does nothing: these schedulers keep no state.
func (*NeverQueue) Update([]Dest) {}

// Pick returns the usable destination with the fewest connections, or -1.
func (*LeastConnection) Pick(dests []Dest, _ *flow.Tuple) int {
	least, loh := -1, int64(0)
	for i := range dests {
		d := &dests[i]
		if !usable(d) {
			continue
		}
		if doh := overhead(d); least < 0 || doh < loh {
			least, loh = i, doh
		}
	}
	return least
}

// Pick returns the usable destination with the fewest connections per weight, or -1.
func (*WeightedLeastConnection) Pick(dests []Dest, _ *flow.Tuple) int {
	return weightedLeast(dests)
}

// weightedLeast is the wlc choice, shared with lblc and lblcr: loh/lw > doh/dw is compared as
// loh*dw > doh*lw, which is exact for positive weights.
func weightedLeast(dests []Dest) int {
	least, loh, lw := -1, int64(0), int64(0)
	for i := range dests {
		d := &dests[i]
		if !usable(d) {
			continue
		}
		doh, dw := overhead(d), int64(d.Weight)
		if least < 0 || loh*dw > doh*lw {
			least, loh, lw = i, doh, dw
		}
	}
	return least
}

// Pick returns the usable destination with the shortest expected delay, or -1.
func (*ShortestExpectedDelay) Pick(dests []Dest, _ *flow.Tuple) int {
	least, loh, lw := -1, int64(0), int64(0)
	for i := range dests {
		d := &dests[i]
		if !usable(d) {
			continue
		}
		doh, dw := active(d)+1, int64(d.Weight)
		if least < 0 || loh*dw > doh*lw {
			least, loh, lw = i, doh, dw
		}
	}
	return least
}

// Pick returns the first idle usable destination, else the one with the shortest expected delay, or
// -1.
func (*NeverQueue) Pick(dests []Dest, _ *flow.Tuple) int {
	least, loh, lw := -1, int64(0), int64(0)
	for i := range dests {
		d := &dests[i]
		if !usable(d) {
			continue
		}
		a := active(d)
		if a == 0 {
			return i
		}
		doh, dw := a+1, int64(d.Weight)
		if least < 0 || loh*dw > doh*lw {
			least, loh, lw = i, doh, dw
		}
	}
	return least
}
