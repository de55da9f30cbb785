package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/govs/govs/flow"
)

// dests returns available servers 198.18.0.1, .2, ... port 80 with the given weights.
func dests(weights ...int32) []Dest {
	d := make([]Dest, len(weights))
	for i, w := range weights {
		d[i] = Dest{Addr: v4(198, 18, byte(i>>8), byte(i+1)), Port: 80, Weight: w, Available: true, Counts: new(Counts)}
	}
	return d
}

func v4(a, b, c, d byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a, 13: b, 14: c, 15: d}
}

// withConns sets active/inactive counts: conns[i] = {active, inactive}.
func withConns(d []Dest, conns ...[2]int64) []Dest {
	for i, c := range conns {
		d[i].Counts.Active.Store(c[0])
		d[i].Counts.Inactive.Store(c[1])
	}
	return d
}

func down(d []Dest, i ...int) []Dest {
	for _, j := range i {
		d[j].Available = false
	}
	return d
}

func mustNew(t testing.TB, name string, d []Dest, opts Options) Scheduler {
	t.Helper()
	s, err := New(name, d, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	return s
}

// pickN returns n picks as letters ('a' = index 0, '-' = none).
func pickN(s Scheduler, d []Dest, n int) string {
	var b strings.Builder
	var f flow.Tuple
	for range n {
		if i := s.Pick(d, &f); i < 0 {
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
		sched   string
		dests   []Dest
		opts    Options
		want    string // Name()
		wantErr string
	}{
		{name: "default is wlc", sched: "", dests: dests(1), want: "wlc"},
		{name: "rr", sched: "rr", dests: dests(1), want: "rr"},
		{name: "no dests", sched: "mh", want: "mh"},
		{name: "unknown", sched: "xx", wantErr: `unknown scheduler "xx": use one of the IPVS schedulers dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr`},
		{name: "negative weight", sched: "wrr", dests: dests(1, -1), wantErr: "negative weight -1"},
		{name: "sh flags on sh", sched: "sh", dests: dests(1), opts: Options{Flags: FlagSHFallback | FlagSHPort}, want: "sh"},
		{name: "mh flags on mh", sched: "mh", dests: dests(1), opts: Options{Flags: FlagMHFallback | FlagMHPort, MHTableSize: 251}, want: "mh"},
		{name: "sh flag on mh", sched: "mh", opts: Options{Flags: FlagSHPort}, wantErr: `scheduler "mh" does not take flag sh-port: sh-port is for the sh or dh scheduler`},
		{name: "mh flag on rr", sched: "rr", opts: Options{Flags: FlagMHFallback | FlagMHPort}, wantErr: `does not take flag mh-fallback,mh-port: mh-fallback is for the mh scheduler, mh-port is for the mh scheduler`},
		{name: "sh flags on dh", sched: "dh", dests: dests(1), opts: Options{Flags: FlagSHFallback | FlagSHPort}, want: "dh"},
		{name: "mh flag on dh", sched: "dh", opts: Options{Flags: FlagMHPort}, wantErr: `scheduler "dh" does not take flag mh-port: mh-port is for the mh scheduler`},
		{name: "unknown flag bit", sched: "sh", opts: Options{Flags: 1 << 9}, wantErr: "does not take flag 0x200: no scheduler takes it"},
		{name: "table size on wlc", sched: "wlc", opts: Options{MHTableSize: 251}, wantErr: "set the table size only with the mh scheduler"},
		{name: "table size not prime", sched: "mh", opts: Options{MHTableSize: 65536}, wantErr: "invalid mh table size 65536: use a prime"},
		{name: "table size too big", sched: "mh", opts: Options{MHTableSize: 1<<22 + 15}, wantErr: "invalid mh table size"},
		{name: "lower above upper", sched: "wlc", dests: []Dest{{Weight: 1, Counts: new(Counts), UpperThreshold: 10, LowerThreshold: 11}}, wantErr: "lower threshold 11 above upper threshold 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.sched, tt.dests, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New(%q) error = %v, want it to contain %q", tt.sched, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.sched, err)
			}
			if s.Name() != tt.want {
				t.Errorf("Name() = %q, want %q", s.Name(), tt.want)
			}
		})
	}
}

func TestNamesAndFlags(t *testing.T) {
	want := []string{"dh", "fo", "lblc", "lblcr", "lc", "mh", "nq", "ovf", "rr", "sed", "sh", "twos", "wlc", "wrr"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	for _, n := range want {
		s := mustNew(t, n, dests(1, 2), Options{})
		if s.Name() != n {
			t.Errorf("New(%q).Name() = %q", n, s.Name())
		}
		if f, want := FlagsFor(n), map[string]Flags{"sh": FlagSHFallback | FlagSHPort, "dh": FlagSHFallback | FlagSHPort, "mh": FlagMHFallback | FlagMHPort}[n]; f != want {
			t.Errorf("FlagsFor(%q) = %v, want %v", n, f, want)
		}
	}
	for _, tt := range []struct {
		in      string
		want    Flags
		wantErr string
	}{
		{in: "sh-fallback", want: FlagSHFallback},
		{in: "sh-port", want: FlagSHPort},
		{in: "mh-fallback", want: FlagMHFallback},
		{in: "mh-port", want: FlagMHPort},
		{in: "mh-fallback,mh-port", want: FlagMHFallback | FlagMHPort},
		{in: "sh-port, sh-fallback", want: FlagSHFallback | FlagSHPort},
		{in: "", wantErr: `unknown scheduler flag "" at offset 0`},
		{in: "sh-port,flag-3", wantErr: `unknown scheduler flag "flag-3" at offset 8 in "sh-port,flag-3"`},
		{in: "SH-PORT", wantErr: "unknown scheduler flag"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFlag(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFlag(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseFlag(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			// Round trip through String.
			if back, err := ParseFlag(got.String()); err != nil || back != got {
				t.Errorf("ParseFlag(%q.String() = %q) = %v, %v", tt.in, got.String(), back, err)
			}
		})
	}
	if s := Flags(0).String(); s != "none" {
		t.Errorf("Flags(0).String() = %q", s)
	}
}

func TestOverloaded(t *testing.T) {
	type step struct {
		total int64 // active (inactive = 0)
		want  bool
	}
	tests := []struct {
		name         string
		upper, lower uint32
		steps        []step
	}{
		{"no thresholds", 0, 0, []step{{0, false}, {1000, false}}},
		{"upper only, lower 3/4", 8, 0, []step{{7, false}, {8, true}, {9, true}, {7, true}, {6, true}, {5, false}, {7, false}, {8, true}}},
		{"explicit lower", 10, 4, []step{{9, false}, {10, true}, {5, true}, {4, true}, {3, false}, {9, false}}},
		{"lower equals upper", 4, 4, []step{{4, true}, {3, false}, {4, true}}},
		{"upper 1", 1, 0, []step{{0, false}, {1, true}, {0, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Dest{Weight: 1, Available: true, Counts: new(Counts), UpperThreshold: tt.upper, LowerThreshold: tt.lower}
			for i, s := range tt.steps {
				d.Counts.Active.Store(s.total)
				if got := Overloaded(&d); got != s.want {
					t.Errorf("step %d: %d connections: Overloaded = %v, want %v", i, s.total, got, s.want)
				}
			}
		})
	}
	t.Run("inactive counts too", func(t *testing.T) {
		d := Dest{Counts: new(Counts), UpperThreshold: 4}
		d.Counts.Active.Store(1)
		d.Counts.Inactive.Store(3)
		if !Overloaded(&d) {
			t.Error("1 active + 3 inactive with upper 4: not overloaded")
		}
	})
	t.Run("removing thresholds clears", func(t *testing.T) {
		d := Dest{Counts: new(Counts), UpperThreshold: 1}
		d.Counts.Active.Store(5)
		Overloaded(&d)
		d.UpperThreshold = 0
		if Overloaded(&d) || d.Counts.overloaded.Load() {
			t.Error("still overloaded after the thresholds were removed")
		}
	})
}

// TestThresholdsEverywhere checks that every scheduler stops sending to an overloaded server and
// resumes below the lower threshold.
// TestUnbound: a connection's end clears the overload flag by ip_vs_unbind_dest's rule, so a dip
// below the lower threshold counts even when no Pick saw it: connections that come back without a
// pick (persistence) up to below the upper threshold leave the server usable, as in IPVS.
func TestUnbound(t *testing.T) {
	for _, tt := range []struct {
		name                   string
		upper, lower           uint32
		peak, dip, back        int64
		clearedAtDip, wantBack bool // flag after Unbound at the dip; Overloaded when the load is back
	}{
		{name: "explicit lower", upper: 10, lower: 4, peak: 10, dip: 3, back: 6, clearedAtDip: true},
		{name: "not below explicit lower", upper: 10, lower: 4, peak: 10, dip: 4, back: 6, clearedAtDip: false, wantBack: true},
		{name: "3/4 of upper", upper: 8, peak: 8, dip: 5, back: 7, clearedAtDip: true},
		{name: "at 3/4 of upper", upper: 8, peak: 8, dip: 6, back: 7, clearedAtDip: false, wantBack: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Dest{Weight: 1, Available: true, Counts: new(Counts), UpperThreshold: tt.upper, LowerThreshold: tt.lower}
			d.Counts.Inactive.Store(tt.peak)
			if !Overloaded(&d) {
				t.Fatalf("%d connections with upper %d: not overloaded", tt.peak, tt.upper)
			}
			d.Counts.Inactive.Store(tt.dip)
			d.Counts.Unbound(tt.upper, tt.lower)
			if got := !d.Counts.IsOverloaded(); got != tt.clearedAtDip {
				t.Fatalf("after a connection ended at %d: flag cleared %v, want %v", tt.dip, got, tt.clearedAtDip)
			}
			d.Counts.Inactive.Store(tt.back)
			if got := Overloaded(&d); got != tt.wantBack {
				t.Fatalf("load back at %d: Overloaded %v, want %v", tt.back, got, tt.wantBack)
			}
		})
	}
	t.Run("no thresholds any more", func(t *testing.T) {
		var c Counts
		c.overloaded.Store(true)
		c.Inactive.Store(100)
		c.Unbound(0, 0)
		if c.IsOverloaded() {
			t.Fatal("a server without thresholds stays overloaded after a connection ended")
		}
	})
}

func TestThresholdsEverywhere(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			d := dests(1)
			d[0].UpperThreshold = 4
			s := mustNew(t, name, d, Options{})
			f := &flow.Tuple{Src: v4(198, 19, 0, 1), Dst: v4(198, 18, 9, 9)}
			d[0].Counts.Inactive.Store(3)
			if got := s.Pick(d, f); got != 0 {
				t.Fatalf("3 of 4 connections: Pick = %d, want 0", got)
			}
			d[0].Counts.Inactive.Store(4)
			if got := s.Pick(d, f); got != -1 {
				t.Fatalf("4 of 4 connections: Pick = %d, want -1", got)
			}
			d[0].Counts.Inactive.Store(3)
			if got := s.Pick(d, f); got != -1 {
				t.Fatalf("back to 3, not below 3/4 of 4: Pick = %d, want -1", got)
			}
			d[0].Counts.Inactive.Store(2)
			if got := s.Pick(d, f); got != 0 {
				t.Fatalf("2 connections, below the lower threshold: Pick = %d, want 0", got)
			}
		})
	}
}

// TestQuiescent checks that weight 0 and Available false take no new connections anywhere.
func TestQuiescent(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			d := dests(0, 3, 0)
			down(d, 1)
			s := mustNew(t, name, d, Options{Flags: FlagsFor(name)})
			r := rand.New(rand.NewPCG(1, 2))
			for range 500 {
				f := randFlow(r)
				if got := s.Pick(d, &f); got != -1 {
					t.Fatalf("Pick = %d among a quiesced and a down server, want -1", got)
				}
			}
			d[1].Available = true
			for range 500 {
				f := randFlow(r)
				got := s.Pick(d, &f)
				if name == "dh" && got == -1 {
					continue // dh has no fallback: flows hashed to the quiesced servers are refused
				}
				if got != 1 {
					t.Fatalf("Pick = %d, want the only usable server 1", got)
				}
			}
		})
	}
}

func randFlow(r *rand.Rand) flow.Tuple {
	f := flow.Tuple{Proto: 6, SrcPort: uint16(r.Uint32()), DstPort: 80}
	if r.IntN(2) == 0 {
		f.Src = v4(198, 19, byte(r.Uint32()), byte(r.Uint32()))
		f.Dst = v4(198, 18, byte(r.Uint32()), byte(r.Uint32()))
	} else {
		f.Src = [16]byte{0x20, 0x01, 0x00, 0x02, 0, 1}
		f.Dst = f.Src
		for i := 8; i < 16; i++ {
			f.Src[i], f.Dst[i] = byte(r.Uint32()), byte(r.Uint32())
		}
	}
	return f
}

var sink int

// benchDests returns n servers with mixed weights, a few down, and some connections.
func benchDests(n int) []Dest {
	d := make([]Dest, n)
	for i := range d {
		d[i] = Dest{Addr: v4(198, 18, byte(i>>8), byte(i)), Port: 80, Weight: int32(1 + i%5), Available: i%7 != 3, Counts: new(Counts)}
		d[i].Counts.Active.Store(int64(i % 3))
		d[i].Counts.Inactive.Store(int64(i % 4))
	}
	return d
}

func TestPickNoAllocs(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			d := benchDests(16)
			s := mustNew(t, name, d, Options{Flags: FlagsFor(name)})
			r := rand.New(rand.NewPCG(3, 4))
			flows := make([]flow.Tuple, 64)
			for i := range flows {
				flows[i] = randFlow(r)
			}
			k := 0
			if n := testing.AllocsPerRun(1000, func() {
				sink = s.Pick(d, &flows[k%len(flows)])
				k++
			}); n != 0 {
				t.Errorf("Pick allocates %v times, want 0", n)
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, name := range Names() {
		for _, n := range []int{4, 64} {
			d := benchDests(n)
			r := rand.New(rand.NewPCG(5, 6))
			flows := make([]flow.Tuple, 1024)
			for i := range flows {
				flows[i] = randFlow(r)
			}
			opts := []Options{{Flags: FlagsFor(name)}}
			if UsesPosition(name) {
				opts = append(opts, Options{Flags: FlagsFor(name), Position: new(Position)})
			}
			for _, o := range opts {
				label := fmt.Sprintf("%s/dests=%d", name, n)
				if o.Position != nil {
					label = fmt.Sprintf("%s-shared/dests=%d", name, n)
				}
				b.Run(label, func(b *testing.B) {
					s := mustNew(b, name, d, o)
					b.ReportAllocs()
					k := 0
					for b.Loop() {
						sink = s.Pick(d, &flows[k&1023])
						k++
					}
				})
			}
		}
	}
}
