package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func dests(weights ...int32) []Dest {
	d := make([]Dest, len(weights))
	for i, w := range weights {
		d[i] = Dest{Weight: w, Available: true}
	}
	return d
}

// pickN returns n picks as letters ('a' = index 0, '-' = none).
func pickN(s Scheduler, d []Dest, n int) string {
	var b strings.Builder
	for range n {
		if i := s.Pick(d); i < 0 {
			b.WriteByte('-')
		} else {
			b.WriteByte(byte('a' + i))
		}
	}
	return b.String()
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		dests   []Dest
		wantErr string
	}{
		{name: "rr", dests: dests(1)},
		{name: "wrr", dests: dests(1, 2)},
		{name: "lc", wantErr: `unknown scheduler "lc": use one of the IPVS schedulers rr, wrr`},
		{name: "wrr", dests: dests(1, -1), wantErr: "negative weight -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.name, tt.dests)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New(%q) error = %v, want it to contain %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.name, err)
			}
			if s.Name() != tt.name {
				t.Errorf("Name() = %q, want %q", s.Name(), tt.name)
			}
		})
	}
}

func TestSequences(t *testing.T) {
	down := func(d []Dest, i ...int) []Dest {
		for _, j := range i {
			d[j].Available = false
		}
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
		{"rr none", "rr", dests(0, 0), "---"},
		{"rr empty", "rr", nil, "--"},
		{"wrr 3:2:1", "wrr", dests(3, 2, 1), "aababc" + "aababc"},
		{"wrr 4:3:2", "wrr", dests(4, 3, 2), "aababcabc" + "aababcabc"},
		{"wrr equal", "wrr", dests(2, 2, 2), "abcabc"},
		{"wrr gcd 4:2", "wrr", dests(4, 2), "aab" + "aab"},
		{"wrr skips weight 0", "wrr", dests(2, 0, 1), "aacaac"},
		{"wrr skips unavailable", "wrr", down(dests(3, 2, 1), 0), "bbcbbc"},
		{"wrr all zero", "wrr", dests(0, 0), "---"},
		{"wrr all unavailable", "wrr", down(dests(3, 1), 0, 1), "---"},
		{"wrr empty", "wrr", nil, "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.sched, tt.dests)
			if err != nil {
				t.Fatal(err)
			}
			if got := pickN(s, tt.dests, len(tt.want)); got != tt.want {
				t.Errorf("sequence (-want +got):\n-%s\n+%s", tt.want, got)
			}
		})
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
			d[i] = Dest{Weight: int32(r.IntN(7)), Available: r.IntN(5) != 0}
		}
		s, err := New("wrr", d)
		if err != nil {
			t.Fatal(err)
		}
		m := newIPVSWRR(d)
		for step := range 200 {
			if r.IntN(20) == 0 { // health flaps; weights stay
				j := r.IntN(n)
				d[j].Available = !d[j].Available
			}
			got, want := s.Pick(d), m.schedule(d)
			if got != want {
				t.Fatalf("trial %d step %d dests %+v: Pick = %d, IPVS model = %d", trial, step, d, got, want)
			}
		}
	}
}

func TestWRRExactRatioOverCycle(t *testing.T) {
	for _, weights := range [][]int32{{3, 2, 1}, {5, 1}, {100, 50, 25, 1}, {7, 7, 7}, {6, 4, 0, 2}} {
		d := dests(weights...)
		s, _ := New("wrr", d)
		var sum int32
		for _, w := range weights {
			sum += w
		}
		var g int32
		for _, w := range weights {
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
			counts[s.Pick(d)]++
		}
		for i, w := range weights {
			if want := 3 * w / g; counts[i] != want {
				t.Errorf("weights %v: dest %d picked %d times in 3 cycles, want %d", weights, i, counts[i], want)
			}
		}
	}
}

func TestWRRUpdate(t *testing.T) {
	d := dests(3, 2, 1)
	s, _ := New("wrr", d)
	pickN(s, d, 2) // a a
	d[0].Weight = 0
	s.Update(d)
	if got, want := pickN(s, d, 6), "bbcbbc"; got != want {
		t.Errorf("after weight change: got %s, want %s", got, want)
	}
	// Growing the list without Update must not index out of range.
	d = append(d, Dest{Weight: 2, Available: true})
	if got := pickN(s, d, 5); slices.Contains([]byte(got), '-') {
		t.Errorf("after append without Update: got %s, want no misses", got)
	}
}

var sink int

func TestPickNoAllocs(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			d := dests(3, 2, 1, 0, 5)
			s, _ := New(name, d)
			if n := testing.AllocsPerRun(1000, func() { sink = s.Pick(d) }); n != 0 {
				t.Errorf("Pick allocates %v times, want 0", n)
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{4, 64} {
			d := make([]Dest, n)
			for i := range d {
				d[i] = Dest{Weight: int32(1 + i%5), Available: i%7 != 3}
			}
			b.Run(fmt.Sprintf("%s/dests=%d", name, n), func(b *testing.B) {
				s, _ := New(name, d)
				b.ReportAllocs()
				for b.Loop() {
					sink = s.Pick(d)
				}
			})
		}
	}
}
