package sched

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestLeastConnectionTable(t *testing.T) {
	c := func(a, i int64) [2]int64 { return [2]int64{a, i} }
	tests := []struct {
		name  string
		sched string
		dests []Dest
		want  int
	}{
		{"lc fewest", "lc", withConns(dests(1, 1, 1), c(2, 0), c(1, 0), c(3, 0)), 1},
		{"lc active weighs 256 inactive", "lc", withConns(dests(1, 1), c(1, 0), c(0, 255)), 1},
		{"lc 256 inactive = 1 active, first wins", "lc", withConns(dests(1, 1), c(1, 0), c(0, 256)), 0},
		{"lc ignores weight", "lc", withConns(dests(1, 100), c(1, 0), c(2, 0)), 0},
		{"lc skips weight 0", "lc", withConns(dests(0, 1), c(0, 0), c(5, 0)), 1},
		{"lc skips down", "lc", withConns(down(dests(1, 1), 0), c(0, 0), c(5, 0)), 1},
		{"lc none", "lc", dests(0), -1},
		{"wlc per weight", "wlc", withConns(dests(1, 3), c(1, 0), c(2, 0)), 1},
		{"wlc tie goes first", "wlc", withConns(dests(1, 3), c(1, 0), c(3, 0)), 0},
		{"wlc idle", "wlc", withConns(dests(1, 3, 2), c(1, 0), c(1, 0), c(0, 0)), 2},
		{"wlc inactive", "wlc", withConns(dests(2, 2), c(1, 10), c(1, 5)), 1},
		{"sed (a+1)/w", "sed", withConns(dests(1, 2), c(0, 0), c(1, 0)), 0}, // 1/1 vs 2/2: tie, first
		{"sed prefers weight", "sed", withConns(dests(1, 3), c(0, 0), c(1, 0)), 1},
		{"sed ignores inactive", "sed", withConns(dests(1, 1), c(1, 0), c(1, 500)), 0},
		{"nq idle first", "nq", withConns(dests(10, 1, 1), c(1, 0), c(0, 0), c(0, 0)), 1},
		{"nq else sed", "nq", withConns(dests(10, 1), c(5, 0), c(1, 0)), 0},
		{"nq idle but down", "nq", withConns(down(dests(10, 1), 1), c(5, 0), c(0, 0)), 0},
		{"ovf highest weight", "ovf", withConns(dests(2, 5, 3), c(0, 0), c(5, 0), c(0, 0)), 1},
		{"ovf overflows past weight", "ovf", withConns(dests(2, 5, 3), c(0, 0), c(6, 0), c(0, 0)), 2},
		{"ovf overflows twice", "ovf", withConns(dests(2, 5, 3), c(0, 0), c(6, 0), c(4, 0)), 0},
		{"ovf ignores inactive", "ovf", withConns(dests(2, 5), c(0, 0), c(0, 100)), 1},
		{"ovf all full", "ovf", withConns(dests(1, 1), c(2, 0), c(2, 0)), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, tt.sched, tt.dests, Options{})
			if got := s.Pick(tt.dests, nil); got != tt.want {
				t.Errorf("Pick = %d, want %d", got, tt.want)
			}
		})
	}
}

// refLeast is the obvious model of the least-connection family: the usable destination with the
// smallest cost, as an exact fraction, the first on a tie; nq first looks for an idle one.
func refLeast(sched string, d []Dest) int {
	best := -1
	var bestCost *big.Rat
	for i := range d {
		x := &d[i]
		if !x.Available || x.Weight <= 0 || Overloaded(x) {
			continue
		}
		a, in, w := x.Counts.Active.Load(), x.Counts.Inactive.Load(), int64(x.Weight)
		var cost *big.Rat
		switch sched {
		case "lc":
			cost = big.NewRat(256*a+in, 1)
		case "wlc":
			cost = big.NewRat(256*a+in, w)
		case "sed":
			cost = big.NewRat(a+1, w)
		case "nq":
			if a == 0 {
				return i
			}
			cost = big.NewRat(a+1, w)
		}
		if best < 0 || cost.Cmp(bestCost) < 0 {
			best, bestCost = i, cost
		}
	}
	return best
}

// refOverflow is the obvious model of fo and ovf: the highest weight, first on a tie, among usable
// servers (ovf: with no more active connections than their weight).
func refOverflow(sched string, d []Dest) int {
	best := -1
	for i := range d {
		x := &d[i]
		if !x.Available || x.Weight <= 0 || Overloaded(x) {
			continue
		}
		if sched == "ovf" && x.Counts.Active.Load() > int64(x.Weight) {
			continue
		}
		if best < 0 || x.Weight > d[best].Weight {
			best = i
		}
	}
	return best
}

func TestLeastConnectionMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	for _, name := range []string{"lc", "wlc", "sed", "nq", "fo", "ovf"} {
		t.Run(name, func(t *testing.T) {
			for trial := range 3000 {
				n := 1 + r.IntN(8)
				d := make([]Dest, n)
				for i := range d {
					d[i] = Dest{Weight: int32(r.IntN(5)), Available: r.IntN(6) != 0, Counts: new(Counts)}
					d[i].Counts.Active.Store(int64(r.IntN(6)))
					d[i].Counts.Inactive.Store(int64(r.IntN(600)))
					if r.IntN(4) == 0 {
						d[i].UpperThreshold = uint32(1 + r.IntN(600))
					}
				}
				s := mustNew(t, name, d, Options{})
				want := 0
				if name == "fo" || name == "ovf" {
					want = refOverflow(name, d)
				} else {
					want = refLeast(name, d)
				}
				if got := s.Pick(d, nil); got != want {
					t.Fatalf("trial %d dests %+v: Pick = %d, model = %d", trial, d, got, want)
				}
			}
		})
	}
}

// refTwos is the obvious model of twos, drawing from the same random stream.
type refTwos struct{ s WeightedRandomTwos }

func (m *refTwos) pick(d []Dest) int {
	var usable []int
	var total uint64
	for i := range d {
		if d[i].Available && d[i].Weight > 0 && !Overloaded(&d[i]) {
			usable = append(usable, i)
			total += uint64(d[i].Weight)
		}
	}
	if len(usable) == 0 {
		return -1
	}
	draw := func(r uint64) int {
		for _, i := range usable {
			if r < uint64(d[i].Weight) {
				return i
			}
			r -= uint64(d[i].Weight)
		}
		panic("unreachable")
	}
	c1 := draw(m.s.rand() % total)
	c2 := draw(m.s.rand() % total)
	load := func(i int) *big.Rat {
		return big.NewRat(d[i].Counts.Active.Load()*256+d[i].Counts.Inactive.Load(), int64(d[i].Weight))
	}
	if load(c2).Cmp(load(c1)) < 0 {
		return c2
	}
	return c1
}

func TestTwosMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 9))
	for trial := range 2000 {
		n := 1 + r.IntN(8)
		d := make([]Dest, n)
		for i := range d {
			d[i] = Dest{Weight: int32(r.IntN(5)), Available: r.IntN(6) != 0, Counts: new(Counts)}
			d[i].Counts.Active.Store(int64(r.IntN(4)))
			d[i].Counts.Inactive.Store(int64(r.IntN(300)))
		}
		s := mustNew(t, "twos", d, Options{}).(*WeightedRandomTwos)
		m := &refTwos{s: *s}
		for step := range 20 {
			if got, want := s.Pick(d, nil), m.pick(d); got != want {
				t.Fatalf("trial %d step %d dests %+v: Pick = %d, model = %d", trial, step, d, got, want)
			}
		}
	}
}

// TestTwosSpread checks the weighting of the draws: with no connections anywhere the first draw
// always wins, so the shares are the weights'; a busy server wins only when both draws land on it.
func TestTwosSpread(t *testing.T) {
	d := dests(1, 2, 5)
	s := mustNew(t, "twos", d, Options{})
	counts := make([]int, len(d))
	const n = 80000
	for range n {
		counts[s.Pick(d, nil)]++
	}
	for i, w := range []float64{1, 2, 5} {
		want := n * w / 8
		if got := float64(counts[i]); got < want*0.95 || got > want*1.05 {
			t.Errorf("server %d (weight %v): %v picks of %d, want %.0f ± 5%%", i, w, got, n, want)
		}
	}
	// Load balances: a busy server loses most duels.
	withConns(d, [2]int64{0, 0}, [2]int64{0, 0}, [2]int64{100, 0})
	clear(counts)
	for range n {
		counts[s.Pick(d, nil)]++
	}
	if share := float64(counts[2]) / n; share > (5.0/8)*(5.0/8)+0.02 {
		t.Errorf("busy heavy server took %.2f of picks, want about (5/8)² = 0.39 (both draws on it)", share)
	}
}
