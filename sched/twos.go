package sched

import (
	"math/rand/v2"

	"github.com/govs/govs/flow"
)

// WeightedRandomTwos is IPVS "twos", weighted random twos choice (ip_vs_twos.c, the "power of two
// choices"): draw two usable servers at random, each with probability proportional to its weight,
// and take the one with fewer connections per weight (overhead active*256 + inactive), the first
// draw on a tie. Create it with New; each instance has its own random stream.
type WeightedRandomTwos struct {
	rng uint64 // splitmix64 state
}

var _ Scheduler = (*WeightedRandomTwos)(nil)

func newTwos() *WeightedRandomTwos { return &WeightedRandomTwos{rng: rand.Uint64()} }

// Name returns "twos".
func (*WeightedRandomTwos) Name() string { return "twos" }

// Update does nothing: twos keeps no state but its random stream.
func (*WeightedRandomTwos) Update([]Dest) {}

// rand returns the next number of the instance's splitmix64 stream.
func (s *WeightedRandomTwos) rand() uint64 {
	s.rng += 0x9e3779b97f4a7c15
	return mix64(s.rng)
}

// Pick returns the better of two weighted random draws among the usable servers, or -1.
func (s *WeightedRandomTwos) Pick(dests []Dest, _ *flow.Tuple) int {
	var total uint64
	last := -1
	for i := range dests {
		if d := &dests[i]; usable(d) {
			total += uint64(d.Weight)
			last = i
		}
	}
	if total == 0 {
		return -1
	}
	r1, r2 := s.rand()%total, s.rand()%total
	c1, c2 := -1, -1
	var cum uint64
	for i := range dests {
		d := &dests[i]
		if !usable(d) {
			continue
		}
		cum += uint64(d.Weight)
		if c1 < 0 && r1 < cum {
			c1 = i
		}
		if c2 < 0 && r2 < cum {
			c2 = i
		}
		if c1 >= 0 && c2 >= 0 {
			break
		}
	}
	// Another worker may have made a server overloaded between the two passes.
	if c1 < 0 {
		c1 = last
	}
	if c2 < 0 {
		c2 = c1
	}
	d1, d2 := &dests[c1], &dests[c2]
	if overhead(d1)*int64(d2.Weight) > overhead(d2)*int64(d1.Weight) {
		return c2
	}
	return c1
}
