package sched

import "github.com/govs/govs/flow"

// WeightedFailover is IPVS "fo": every new connection goes to the usable destination with the highest
// weight, the first listed among equals, so lowering a weight (or a health check taking the server
// down) fails over to the next (ip_vs_fo.c). The zero value is ready to use.
type WeightedFailover struct{}

// WeightedOverflow is IPVS "ovf": like fo, but a destination with more active connections than its
// weight is passed over for the next highest weight, so the weight is a connection limit that
// overflows to the next server (ip_vs_ovf.c). The zero value is ready to use.
type WeightedOverflow struct{}

var (
	_ Scheduler = (*WeightedFailover)(nil)
	_ Scheduler = (*WeightedOverflow)(nil)
)

// Name returns "fo".
func (*WeightedFailover) Name() string { return "fo" }

// Name returns "ovf".
func (*WeightedOverflow) Name() string { return "ovf" }

// Update does nothing: fo keeps no state.
func (*WeightedFailover) Update([]Dest) {}

// Update does nothing: ovf keeps no state.
func (*WeightedOverflow) Update([]Dest) {}

// Pick returns the first usable destination with the highest weight, or -1.
func (*WeightedFailover) Pick(dests []Dest, _ *flow.Tuple) int {
	best, bw := -1, int32(0)
	for i := range dests {
		d := &dests[i]
		if d.Weight > bw && usable(d) {
			best, bw = i, d.Weight
		}
	}
	return best
}

// Pick returns the first usable destination with the highest weight among those with no more active
// connections than their weight, or -1.
func (*WeightedOverflow) Pick(dests []Dest, _ *flow.Tuple) int {
	best, bw := -1, int32(0)
	for i := range dests {
		d := &dests[i]
		if d.Weight > bw && active(d) <= int64(d.Weight) && usable(d) {
			best, bw = i, d.Weight
		}
	}
	return best
}
