package sched

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestSequences(t *testing.T) {
	overloaded := func(d []Dest, i int) []Dest {
		d[i].UpperThreshold = 1
		d[i].Counts.Inactive.Store(1)
		return d
	}
	tests := []struct {
		name  string
		sched string
		dests []Dest
		want  string
	}{
		{"rr", "rr", dests(1, 1, 1), "abcabcabc"},
		{"rr ignores weights", "rr", dests(5, 1, 1), "abcabc"},
		{"rr skips weight 0", "rr", dests(1, 0, 1), "acacac"},
		{"rr skips unavailable", "rr", down(dests(1, 1, 1), 0), "bcbcbc"},
		{"rr skips overloaded", "rr", overloaded(dests(1, 1, 1), 1), "acacac"},
		{"rr none", "rr", dests(0, 0), "---"},
		{"rr empty", "rr", nil, "--"},
		{"wrr 3:2:1", "wrr", dests(3, 2, 1), "aababc" + "aababc"},
		{"wrr 4:3:2 (ipvsadm(8) example AABABCABC)", "wrr", dests(4, 3, 2), "aababcabc" + "aababcabc"},
		{"wrr equal", "wrr", dests(2, 2, 2), "abcabc"},
		{"wrr gcd 4:2", "wrr", dests(4, 2), "aab" + "aab"},
		{"wrr skips weight 0", "wrr", dests(2, 0, 1), "aacaac"},
		{"wrr skips unavailable", "wrr", down(dests(3, 2, 1), 0), "bbcbbc"},
		{"wrr skips overloaded", "wrr", overloaded(dests(3, 2, 1), 0), "bbcbbc"},
		{"wrr all zero", "wrr", dests(0, 0), "---"},
		{"wrr all unavailable", "wrr", down(dests(3, 1), 0, 1), "---"},
		{"wrr empty", "wrr", nil, "--"},
		{"fo highest weight", "fo", dests(1, 3, 2), "bbbb"},
		{"fo first of equals", "fo", dests(1, 3, 3), "bbbb"},
		{"fo fails over", "fo", down(dests(1, 3, 2), 1), "cccc"},
		{"fo skips overloaded", "fo", overloaded(dests(1, 3, 2), 1), "cccc"},
		{"fo none", "fo", dests(0, 0), "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, tt.sched, tt.dests, Options{})
			if got := pickN(s, tt.dests, len(tt.want)); got != tt.want {
				t.Errorf("sequence (-want +got):\n-%s\n+%s", tt.want, got)
			}
		})
		if !UsesPosition(tt.sched) {
			continue
		}
		// Three workers' instances sharing a Position, taking turns in no fixed order, give the
		// one sequence a single instance gives.
		t.Run(tt.name+"/shared", func(t *testing.T) {
			opts := Options{Position: new(Position)}
			var insts []Scheduler
			for range 3 {
				insts = append(insts, mustNew(t, tt.sched, tt.dests, opts))
			}
			r := rand.New(rand.NewPCG(7, uint64(len(tt.want))))
			var b strings.Builder
			for range len(tt.want) {
				b.WriteString(pickN(insts[r.IntN(len(insts))], tt.dests, 1))
			}
			if got := b.String(); got != tt.want {
				t.Errorf("sequence (-want +got):\n-%s\n+%s", tt.want, got)
			}
		})
	}
}

// TestSharedPositionConcurrent: instances sharing a Position, picking from goroutines at once (as
// workers do), together give each destination exactly its share: no pick is lost or doubled.
func TestSharedPositionConcurrent(t *testing.T) {
	for _, tt := range []struct {
		sched   string
		weights []int32
	}{{"rr", []int32{1, 1, 1}}, {"wrr", []int32{3, 2, 1}}} {
		t.Run(tt.sched, func(t *testing.T) {
			d := dests(tt.weights...)
			opts := Options{Position: new(Position)}
			const goroutines, rounds = 4, 300 // rounds of the whole cycle, split among the goroutines
			cycle := 0
			for _, w := range tt.weights {
				cycle += int(w)
			}
			per := rounds * cycle / goroutines
			counts := make([][]int, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				s := mustNew(t, tt.sched, d, opts)
				counts[g] = make([]int, len(d))
				wg.Go(func() {
					for range per {
						if i := s.Pick(d, nil); i >= 0 {
							counts[g][i]++
						}
					}
				})
			}
			wg.Wait()
			for i, w := range tt.weights {
				got := 0
				for g := range goroutines {
					got += counts[g][i]
				}
				if want := rounds * int(w); got != want {
					t.Errorf("destination %d (weight %d): %d picks, want %d", i, w, got, want)
				}
			}
		})
	}
}

// TestRRMatchesModel checks rr against the obvious model: the next usable index after the last pick.
func TestRRMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 1))
	for trial := range 500 {
		n := 1 + r.IntN(6)
		d := make([]Dest, n)
		for i := range d {
			d[i] = Dest{Weight: int32(r.IntN(3)), Available: r.IntN(4) != 0, Counts: new(Counts)}
		}
		s := mustNew(t, "rr", d, Options{})
		last := -1
		for step := range 100 {
			if r.IntN(10) == 0 {
				j := r.IntN(n)
				d[j].Available = !d[j].Available
			}
			want := -1
			for k := 1; k <= n; k++ {
				j := (last + k + n) % n
				if last < 0 {
					j = k - 1
				}
				if d[j].Available && d[j].Weight > 0 {
					want = j
					break
				}
			}
			if want >= 0 {
				last = want
			}
			if got := s.Pick(d, nil); got != want {
				t.Fatalf("trial %d step %d: Pick = %d, model = %d", trial, step, got, want)
			}
		}
	}
}

// ipvsWRR is a reference model of ip_vs_wrr.c: a circular list with a head node, the mark (cl, cw,
// mw, di) and the schedule loop with its last_pass/stop termination, transcribed node by node.
type ipvsWRR struct {
	cl, cw, mw, di int // cl: node index, n (= len) is the head
}

func newIPVSWRR(d []Dest) *ipvsWRR {
	m := &ipvsWRR{cl: len(d)}
	g, mx := 0, 0
	for _, x := range d {
		w := int(x.Weight)
		mx = max(mx, w)
		if w > 0 {
			if g == 0 {
				g = w
			} else {
				for b := w; b != 0; {
					g, b = b, g%b
				}
			}
		}
	}
	if g == 0 {
		g = 1
	}
	m.di, m.mw = g, mx-(g-1)
	m.cw = m.mw
	return m
}

func (m *ipvsWRR) schedule(d []Dest) int {
	n := len(d)
	head := n
	next := func(i int) int { return (i + 1) % (n + 1) }
	if m.mw == 0 {
		return -1
	}
	dest, last, stop := m.cl, m.cl, -2
	lastPass, restarted := false, false
	for {
		// list_for_each_entry_continue: from dest's successor up to (not including) the head.
		for dest = next(dest); dest != head; dest = next(dest) {
			if d[dest].Available && int(d[dest].Weight) >= m.cw {
				m.cl = dest
				return dest
			}
			if dest == stop {
				return -1
			}
		}
		m.cw -= m.di
		if m.cw <= 0 {
			m.cw = m.mw
			if lastPass || last == head {
				return -1
			}
			restarted = true
		}
		lastPass = m.cw <= m.di
		if lastPass && restarted && last != head {
			stop = last
		}
	}
}

func TestWRRMatchesIPVSModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 42))
	for trial := range 2000 {
		n := 1 + r.IntN(6)
		d := make([]Dest, n)
		for i := range d {
			d[i] = Dest{Weight: int32(r.IntN(7)), Available: r.IntN(5) != 0, Counts: new(Counts)}
		}
		s := mustNew(t, "wrr", d, Options{})
		m := newIPVSWRR(d)
		for step := range 200 {
			if r.IntN(20) == 0 { // health flaps; weights stay
				j := r.IntN(n)
				d[j].Available = !d[j].Available
			}
			got, want := s.Pick(d, nil), m.schedule(d)
			if got != want {
				t.Fatalf("trial %d step %d dests %+v: Pick = %d, IPVS model = %d", trial, step, d, got, want)
			}
		}
	}
}

func TestWRRExactRatioOverCycle(t *testing.T) {
	for _, weights := range [][]int32{{3, 2, 1}, {5, 1}, {100, 50, 25, 1}, {7, 7, 7}, {6, 4, 0, 2}} {
		d := dests(weights...)
		s := mustNew(t, "wrr", d, Options{})
		var sum, g int32
		for _, w := range weights {
			sum += w
			if w > 0 {
				if g == 0 {
					g = w
				} else {
					g = gcd(g, w)
				}
			}
		}
		cycle := int(sum / g)
		counts := make([]int32, len(d))
		for range 3 * cycle {
			counts[s.Pick(d, nil)]++
		}
		for i, w := range weights {
			if want := 3 * w / g; counts[i] != want {
				t.Errorf("weights %v: dest %d picked %d times in 3 cycles, want %d", weights, i, counts[i], want)
			}
		}
	}
}

// TestWRRInterleaves checks that wrr never sends the heaviest server more than its share in a row,
// unlike a burst scheduler that would send 100 connections to it before anyone else.
func TestWRRInterleaves(t *testing.T) {
	d := dests(100, 100, 1)
	s := mustNew(t, "wrr", d, Options{})
	run, prev := 0, -1
	for range 1000 {
		i := s.Pick(d, nil)
		if i == prev {
			run++
		} else {
			run = 1
		}
		prev = i
		if run > 1 {
			t.Fatalf("server %d picked %d times in a row with weights 100:100:1", i, run)
		}
	}
}

func TestWRRUpdate(t *testing.T) {
	d := dests(3, 2, 1)
	s := mustNew(t, "wrr", d, Options{})
	pickN(s, d, 2) // a a
	d[0].Weight = 0
	s.Update(d)
	if got, want := pickN(s, d, 6), "bbcbbc"; got != want {
		t.Errorf("after weight change: got %s, want %s", got, want)
	}
	// Growing the list without Update must not index out of range.
	d = append(d, Dest{Weight: 2, Available: true, Counts: new(Counts)})
	if got := pickN(s, d, 5); slices.Contains([]byte(got), '-') {
		t.Errorf("after append without Update: got %s, want no misses", got)
	}
}
