package sched

import (
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/govs/govs/flow"
)

// clock is a fake monotonic clock for the lblc schedulers.
type clock struct{ t int64 }

func (c *clock) now() int64 { return c.t }

func newLBLCAt(t *testing.T, d []Dest, c *clock) *LocalityBasedLeastConnection {
	s := mustNew(t, "lblc", d, Options{}).(*LocalityBasedLeastConnection)
	s.now = c.now
	return s
}

func newLBLCRAt(t *testing.T, d []Dest, c *clock) *LocalityBasedLeastConnectionReplication {
	s := mustNew(t, "lblcr", d, Options{}).(*LocalityBasedLeastConnectionReplication)
	s.now = c.now
	return s
}

func TestLBLCOverloadRules(t *testing.T) {
	f := &flow.Tuple{Dst: v4(198, 18, 100, 1)}
	c := func(a int64) [2]int64 { return [2]int64{a, 0} }
	tests := []struct {
		name  string
		conns [][2]int64 // after the first pick, which goes to server 0 (all idle)
		want  int
	}{
		{"sticks while under weight", [][2]int64{c(3), c(0), c(0)}, 0},
		{"sticks at weight", [][2]int64{c(4), c(0), c(0)}, 0},
		{"sticks over weight when nobody is under half", [][2]int64{c(5), c(2), c(2)}, 0},
		{"moves over weight when someone is under half", [][2]int64{c(5), c(1), c(2)}, 1},
		{"moves to the wlc choice, not the idle one", [][2]int64{c(5), c(1), c(0)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dests(4, 4, 4)
			s := newLBLCAt(t, d, &clock{})
			if got := s.Pick(d, f); got != 0 {
				t.Fatalf("first pick = %d, want 0", got)
			}
			withConns(d, tt.conns...)
			if got := s.Pick(d, f); got != tt.want {
				t.Errorf("Pick = %d, want %d", got, tt.want)
			}
			// The choice is remembered.
			withConns(d, c(0), c(0), c(0))
			if got := s.Pick(d, f); got != tt.want {
				t.Errorf("next Pick = %d, want the remembered %d", got, tt.want)
			}
		})
	}
	t.Run("down server is replaced", func(t *testing.T) {
		d := dests(1, 1)
		s := newLBLCAt(t, d, &clock{})
		s.Pick(d, f)
		down(d, 0)
		if got := s.Pick(d, f); got != 1 {
			t.Errorf("Pick = %d, want 1", got)
		}
		d[0].Available = true
		if got := s.Pick(d, f); got != 1 {
			t.Errorf("Pick = %d after server 0 came back, want the remembered 1", got)
		}
	})
}

func TestLBLCExpiryAndUpdate(t *testing.T) {
	f := &flow.Tuple{Dst: v4(198, 18, 100, 1)}
	d := dests(1, 1, 1)
	c := &clock{}
	s := newLBLCAt(t, d, c)
	withConns(d, [2]int64{0, 1}, [2]int64{0, 0}, [2]int64{0, 1})
	if got := s.Pick(d, f); got != 1 {
		t.Fatalf("Pick = %d, want 1", got)
	}
	withConns(d, [2]int64{0, 1}, [2]int64{0, 1}, [2]int64{0, 0})
	c.t += int64(LBLCExpiration)
	if got := s.Pick(d, f); got != 1 {
		t.Fatalf("Pick = %d after exactly the expiration, want the remembered 1", got)
	}
	c.t += int64(LBLCExpiration) + 1
	if got := s.Pick(d, f); got != 2 {
		t.Fatalf("Pick = %d after the entry expired, want the wlc choice 2", got)
	}
	// Reordering the servers keeps the memory, by address.
	e := []Dest{d[2], d[0], d[1]}
	withConns(e, [2]int64{0, 5}, [2]int64{0, 0}, [2]int64{0, 0})
	s.Update(e)
	if got := s.Pick(e, f); got != 0 {
		t.Fatalf("Pick = %d after reordering, want 0 (the same server)", got)
	}
	// Removing the remembered server forgets it.
	e = e[1:]
	s.Update(e)
	if got := s.Pick(e, f); got != 0 {
		t.Fatalf("Pick = %d after removing the remembered server, want the wlc choice 0", got)
	}
}

// TestLBLCBounded sends far more destination addresses than the table holds.
func TestLBLCBounded(t *testing.T) {
	d := dests(1, 2, 3)
	for _, name := range []string{"lblc", "lblcr"} {
		s := mustNew(t, name, d, Options{})
		f := flow.Tuple{}
		for i := range scaled(100000) {
			f.Dst = v4(198, 18, byte(i>>8), byte(i))
			f.Dst[11] = byte(i >> 16)
			if got := s.Pick(d, &f); got < 0 {
				t.Fatalf("%s: Pick = -1", name)
			}
		}
	}
}

// refLBLC is the obvious model of lblc (and, with replication, lblcr) with an unbounded map.
type refLBLC struct {
	repl    bool
	entries map[[16]byte]*refEntry
	now     int64
}

type refEntry struct {
	set              []int // newest first
	lastuse, lastmod int64
}

func ratio(d *Dest) *big.Rat {
	return big.NewRat(d.Counts.Active.Load()*256+d.Counts.Inactive.Load(), int64(d.Weight))
}

func refUsable(d *Dest) bool { return d.Available && d.Weight > 0 && !Overloaded(d) }

func refWLC(d []Dest) int {
	best := -1
	for i := range d {
		if refUsable(&d[i]) && (best < 0 || ratio(&d[i]).Cmp(ratio(&d[best])) < 0) {
			best = i
		}
	}
	return best
}

func refLBLCOverloaded(d []Dest, i int) bool {
	if d[i].Counts.Active.Load() <= int64(d[i].Weight) {
		return false
	}
	for k := range d {
		if refUsable(&d[k]) && 2*d[k].Counts.Active.Load() < int64(d[k].Weight) {
			return true
		}
	}
	return false
}

func (m *refLBLC) pick(d []Dest, dst [16]byte) int {
	exp := int64(LBLCExpiration)
	e := m.entries[dst]
	if e != nil && m.now-e.lastuse > exp {
		e = nil
	}
	if e == nil {
		i := refWLC(d)
		if i >= 0 {
			m.entries[dst] = &refEntry{set: []int{i}, lastuse: m.now, lastmod: m.now}
		}
		return i
	}
	e.lastuse = m.now
	least := -1
	for _, i := range e.set {
		if refUsable(&d[i]) && (least < 0 || ratio(&d[i]).Cmp(ratio(&d[least])) < 0) {
			least = i
		}
	}
	if m.repl && len(e.set) > 1 && m.now-e.lastmod > exp {
		most := -1
		for _, i := range e.set {
			if d[i].Weight > 0 && (most < 0 || ratio(&d[i]).Cmp(ratio(&d[most])) > 0) {
				most = i
			}
		}
		if most >= 0 {
			e.set = slices.DeleteFunc(e.set, func(x int) bool { return x == most })
		}
		e.lastmod = m.now
	}
	if least >= 0 && !refLBLCOverloaded(d, least) {
		return least
	}
	i := refWLC(d)
	if i < 0 {
		return -1
	}
	if !m.repl {
		e.set[0] = i
	} else if !slices.Contains(e.set, i) {
		e.set = append([]int{i}, e.set...)
		e.lastmod = m.now
	}
	return i
}

func TestLBLCMatchesModel(t *testing.T) {
	for _, repl := range []bool{false, true} {
		name := map[bool]string{false: "lblc", true: "lblcr"}[repl]
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(42, 14))
			for trial := range 200 {
				n := 1 + r.IntN(6) // at most 6 servers: lblcr sets never reach their cap of 8
				d := make([]Dest, n)
				for i := range d {
					d[i] = Dest{Addr: v4(198, 18, 0, byte(i)), Weight: int32(r.IntN(5)), Available: r.IntN(6) != 0, Counts: new(Counts)}
				}
				c := &clock{}
				var s Scheduler
				if repl {
					s = newLBLCRAt(t, d, c)
				} else {
					s = newLBLCAt(t, d, c)
				}
				m := &refLBLC{repl: repl, entries: map[[16]byte]*refEntry{}}
				for step := range 200 {
					for i := range d { // connections come and go
						d[i].Counts.Active.Store(int64(r.IntN(2 * int(d[i].Weight+1))))
						d[i].Counts.Inactive.Store(int64(r.IntN(50)))
					}
					if r.IntN(10) == 0 {
						j := r.IntN(n)
						d[j].Available = !d[j].Available
					}
					c.t += int64(r.IntN(4)) * int64(LBLCExpiration) / 3
					m.now = c.t
					dst := v4(198, 18, 1, byte(r.IntN(20))) // 20 addresses: no eviction
					if got, want := s.Pick(d, &flow.Tuple{Dst: dst}), m.pick(d, dst); got != want {
						t.Fatalf("trial %d step %d dst %v dests %+v: Pick = %d, model = %d", trial, step, dst[12:], d, got, want)
					}
				}
			}
		})
	}
}

func TestLBLCRReplication(t *testing.T) {
	f := &flow.Tuple{Dst: v4(198, 18, 100, 1)}
	d := dests(2, 2, 2)
	c := &clock{}
	s := newLBLCRAt(t, d, c)
	if got := s.Pick(d, f); got != 0 {
		t.Fatalf("Pick = %d, want 0", got)
	}
	// Server 0 overloaded (3 > 2 active) while server 2 idles: 2 joins the set.
	withConns(d, [2]int64{3, 0}, [2]int64{1, 0}, [2]int64{0, 0})
	if got := s.Pick(d, f); got != 2 {
		t.Fatalf("Pick = %d, want 2 added to the set", got)
	}
	e := &s.table[lblcSet(&f.Dst)]
	for e.addr != f.Dst {
		e = &s.table[lblcSet(&f.Dst)+1] // never more than one address in this test
	}
	if got := e.set[:e.n]; !slices.Equal(got, []int32{2, 0}) {
		t.Fatalf("set = %v, want [2 0]", got)
	}
	// Within the set, the least loaded member wins; server 1 is never used for this address.
	withConns(d, [2]int64{0, 0}, [2]int64{0, 0}, [2]int64{1, 0})
	if got := s.Pick(d, f); got != 0 {
		t.Fatalf("Pick = %d, want 0, the least loaded member", got)
	}
	// After the expiration without change, the busiest member leaves.
	c.t += int64(LBLCExpiration) - 1
	s.Pick(d, f) // keep the entry in use
	c.t += 2
	s.Pick(d, f)
	if got := e.set[:e.n]; !slices.Equal(got, []int32{0}) {
		t.Fatalf("set = %v after expiration, want [0] (busiest member 2 dropped)", got)
	}
}
