package sched

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/govs/govs/flow"
)

// refMaglev is the paper's Populate (NSDI 2016, pseudocode 1) written naively, with the full
// permutation matrix, servers in address order, and weights as turns: at each turn a server earns
// its weight and places one slot per maxWeight earned.
func refMaglev(d []Dest, m int) []int {
	type srv struct {
		idx  int
		perm []int
	}
	var srvs []srv
	maxW := int32(0)
	for i := range d {
		if d[i].Weight <= 0 {
			continue
		}
		off := int(hashAddrPort(&d[i].Addr, d[i].Port, mhSeedOffset) % uint64(m))
		skip := int(hashAddrPort(&d[i].Addr, d[i].Port, mhSeedSkip)%uint64(m-1) + 1)
		perm := make([]int, m)
		for j := range perm {
			perm[j] = (off + j*skip) % m
		}
		srvs = append(srvs, srv{i, perm})
		maxW = max(maxW, d[i].Weight)
	}
	slices.SortFunc(srvs, func(a, b srv) int {
		if c := slices.Compare(d[a.idx].Addr[:], d[b.idx].Addr[:]); c != 0 {
			return c
		}
		return cmp.Compare(d[a.idx].Port, d[b.idx].Port)
	})
	entry := make([]int, m)
	for i := range entry {
		entry[i] = -1
	}
	if len(srvs) == 0 {
		return entry
	}
	next := make([]int, len(srvs))
	credit := make([]int32, len(srvs))
	n := 0
	for {
		for i, s := range srvs {
			credit[i] += d[s.idx].Weight
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			c := s.perm[next[i]]
			for entry[c] >= 0 {
				next[i]++
				c = s.perm[next[i]]
			}
			entry[c] = s.idx
			next[i]++
			if n++; n == m {
				return entry
			}
		}
	}
}

// scaled returns n, or a tenth of it under the race detector.
func scaled(n int) int {
	if raceEnabled {
		return n / 10
	}
	return n
}

func mhTable(t testing.TB, d []Dest, m int) []int32 {
	t.Helper()
	return mustNew(t, "mh", d, Options{MHTableSize: m}).(*Maglev).table
}

func TestMaglevMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 13))
	for trial := range 60 {
		n := r.IntN(12)
		d := make([]Dest, n)
		for i := range d {
			d[i] = Dest{Addr: v4(198, 18, byte(r.IntN(4)), byte(r.Uint32())), Port: uint16(r.IntN(3)), Weight: int32(r.IntN(6)), Available: true, Counts: new(Counts)}
			if trial%2 == 0 {
				d[i].Weight = min(d[i].Weight, 1) // the paper's unweighted case
			}
		}
		// The model does not drop duplicates; keep servers distinct.
		slices.SortFunc(d, func(a, b Dest) int { return cmp.Or(slices.Compare(a.Addr[:], b.Addr[:]), cmp.Compare(a.Port, b.Port)) })
		d = slices.CompactFunc(d, func(a, b Dest) bool { return a.Addr == b.Addr && a.Port == b.Port })
		r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
		m := []int{251, 1021, 4099}[trial%3]
		got, want := mhTable(t, d, m), refMaglev(d, m)
		for k := range got {
			if int(got[k]) != want[k] {
				t.Fatalf("trial %d (M=%d, %d servers): slot %d = %d, model = %d", trial, m, len(d), k, got[k], want[k])
			}
		}
	}
}

// flowsOn returns, for nFlows random flows, the address of the server each is sent to.
func flowsOn(t testing.TB, d []Dest, opts Options, nFlows int) [][16]byte {
	t.Helper()
	s := mustNew(t, "mh", d, opts)
	r := rand.New(rand.NewPCG(7, 7))
	out := make([][16]byte, nFlows)
	for k := range out {
		f := randFlow(r)
		if i := s.Pick(d, &f); i >= 0 {
			out[k] = d[i].Addr
		}
	}
	return out
}

func TestMaglevBalance(t *testing.T) {
	for _, n := range []int{3, 10, 50} {
		d := dests(make([]int32, n)...)
		for i := range d {
			d[i].Weight = 1
		}
		table := mhTable(t, d, DefaultMHTableSize)
		slots := make([]int, n)
		for _, i := range table {
			slots[i]++
		}
		lo, hi := slices.Min(slots), slices.Max(slots)
		want := float64(DefaultMHTableSize) / float64(n)
		t.Logf("%d servers: slots per server %d..%d (ideal %.0f, spread %.2f%%)", n, lo, hi, want, 100*float64(hi-lo)/want)
		if float64(lo) < want*0.99 || float64(hi) > want*1.01 {
			t.Errorf("%d servers: slots per server %d..%d, want %.0f ± 1%%", n, lo, hi, want)
		}
		// Flows spread like slots, up to sampling noise (5 standard deviations).
		nFlows := scaled(200000)
		per := map[[16]byte]int{}
		for _, a := range flowsOn(t, d, Options{}, nFlows) {
			per[a]++
		}
		for a, c := range per {
			w := float64(nFlows) / float64(n)
			if tol := max(0.02*w, 5*math.Sqrt(w)); math.Abs(float64(c)-w) > tol {
				t.Errorf("%d servers: server %v got %d of %d flows, want %.0f ± %.0f", n, a[12:], c, nFlows, w, tol)
			}
		}
	}
}

func TestMaglevWeights(t *testing.T) {
	d := dests(1, 2, 3, 0)
	table := mhTable(t, d, DefaultMHTableSize)
	slots := make([]int, len(d))
	for _, i := range table {
		slots[i]++
	}
	for i, w := range []float64{1, 2, 3, 0} {
		want := float64(DefaultMHTableSize) * w / 6
		if got := float64(slots[i]); got < want*0.99-1 || got > want*1.01+1 {
			t.Errorf("server %d (weight %v): %v slots, want %.0f ± 1%%", i, w, got, want)
		}
	}
}

// TestMaglevDisruption removes 1 of N servers and measures the flows that move: those of the removed
// server (1/N) must, the others should mostly stay.
func TestMaglevDisruption(t *testing.T) {
	for _, n := range []int{5, 10, 20} {
		d := dests(make([]int32, n)...)
		for i := range d {
			d[i].Weight = 1
		}
		nFlows := scaled(100000)
		before := flowsOn(t, d, Options{}, nFlows)
		removed := d[n/2].Addr
		after := flowsOn(t, slices.Delete(slices.Clone(d), n/2, n/2+1), Options{}, nFlows)
		moved, movedOthers := 0, 0
		for k := range before {
			if before[k] != after[k] {
				moved++
				if before[k] != removed {
					movedOthers++
				}
			}
		}
		frac, ideal := float64(moved)/float64(nFlows), 1/float64(n)
		t.Logf("remove 1 of %d: %.2f%% of %d flows moved (ideal %.2f%%), %.2f%% not from the removed server",
			n, 100*frac, nFlows, 100*ideal, 100*float64(movedOthers)/float64(nFlows))
		if frac > ideal*1.25 {
			t.Errorf("remove 1 of %d: %.2f%% of flows moved, want at most 1.25 × %.2f%%", n, 100*frac, 100*ideal)
		}
		// The same, exactly, over the hash space: the share of slots whose server changed.
		t1 := mhTable(t, d, DefaultMHTableSize)
		e := slices.Delete(slices.Clone(d), n/2, n/2+1)
		t2 := mhTable(t, e, DefaultMHTableSize)
		slotsMoved := 0
		for k := range t1 {
			if d[t1[k]].Addr != e[t2[k]].Addr {
				slotsMoved++
			}
		}
		sfrac := float64(slotsMoved) / float64(len(t1))
		t.Logf("remove 1 of %d: %.2f%% of the table's slots changed server", n, 100*sfrac)
		if sfrac > ideal*1.15 {
			t.Errorf("remove 1 of %d: %.2f%% of slots changed server, want at most 1.15 × %.2f%%", n, 100*sfrac, 100*ideal)
		}
	}
}

// TestMaglevDeterministic checks that the table depends only on the servers, not their order or the
// instance, and pins it so a change of hash or seed (which would reshuffle flows between govs
// instances of different versions) fails here.
func TestMaglevDeterministic(t *testing.T) {
	d := dests(1, 1, 2, 1, 3)
	d[3].Addr = [16]byte{0x20, 0x01, 0, 2, 15: 7}
	ref := mhTable(t, d, DefaultMHTableSize)
	for trial := range scaled(30) / 3 {
		e := slices.Clone(d)
		rand.Shuffle(len(e), func(i, j int) { e[i], e[j] = e[j], e[i] })
		got := mhTable(t, e, DefaultMHTableSize)
		for k := range got {
			if e[got[k]].Addr != d[ref[k]].Addr {
				t.Fatalf("trial %d: slot %d holds a different server after reordering the list", trial, k)
			}
		}
	}
	h := fnv.New64a()
	for _, i := range ref {
		h.Write(d[i].Addr[12:])
	}
	const golden = 0xc821da66f33fd88a
	if got := h.Sum64(); got != golden {
		t.Errorf("table digest = %#x, want %#x: the Maglev hashes changed; flows would move between versions", got, uint64(golden))
	}
}

// TestMaglevFallbackAndPort: the flows of a server that is down (not Available: keepalived would
// have deleted it) go to others, with mh-fallback or without; a quiesced server's (weight 0, kept
// in the table as the kernel keeps it) only with mh-fallback. The other servers' flows stay put.
func TestMaglevFallbackAndPort(t *testing.T) {
	nFlows := scaled(20000)
	for _, tt := range []struct {
		name    string
		flags   Flags
		quiesce bool
		refused bool
	}{
		{"down, no fallback", 0, false, false},
		{"down, mh-fallback", FlagMHFallback, false, false},
		{"quiesced, no fallback", 0, true, true},
		{"quiesced, mh-fallback", FlagMHFallback, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := dests(1, 1, 1, 1)
			before := flowsOn(t, d, Options{}, nFlows)
			if tt.quiesce {
				d[1].Weight = 0
			} else {
				down(d, 1)
			}
			// A quiesced server keeps its slots only in a table built while it had weight (Update
			// gives a weight-0 server none): pick from such a table.
			s := mustNew(t, "mh", dests(1, 1, 1, 1), Options{Flags: tt.flags})
			after := make([][16]byte, nFlows)
			r := rand.New(rand.NewPCG(7, 7))
			for k := range after {
				f := randFlow(r)
				if i := s.Pick(d, &f); i >= 0 {
					after[k] = d[i].Addr
				}
			}
			for k := range before {
				switch {
				case before[k] != d[1].Addr && after[k] != before[k]:
					t.Fatalf("flow %d moved from %v to %v though its server is up", k, before[k][12:], after[k][12:])
				case before[k] == d[1].Addr && tt.refused && after[k] != [16]byte{}:
					t.Fatalf("flow %d of the quiesced server went to %v without mh-fallback", k, after[k][12:])
				case before[k] == d[1].Addr && !tt.refused && (after[k] == [16]byte{} || after[k] == d[1].Addr):
					t.Fatalf("flow %d of the unusable server went to %v", k, after[k][12:])
				}
			}
		})
	}
	t.Run("all down", func(t *testing.T) {
		e := down(dests(1, 1), 0, 1)
		s := mustNew(t, "mh", e, Options{Flags: FlagMHFallback})
		if got := s.Pick(e, &flow.Tuple{}); got != -1 {
			t.Errorf("Pick = %d, want -1", got)
		}
	})
	t.Run("mh-port", func(t *testing.T) {
		e := dests(1, 1, 1)
		for _, tt := range []struct {
			flags Flags
			proto uint8
			want  int // distinct servers over 64 source ports
		}{{0, 6, 1}, {FlagMHPort, 6, 3}, {FlagMHPort, 17, 3}, {FlagMHPort, 1, 1}} {
			s := mustNew(t, "mh", e, Options{Flags: tt.flags})
			seen := map[int]bool{}
			for p := range uint16(64) {
				seen[s.Pick(e, &flow.Tuple{Src: v4(198, 19, 0, 1), SrcPort: p, Proto: tt.proto})] = true
			}
			if len(seen) != tt.want {
				t.Errorf("flags %v proto %d: 64 source ports reached %d servers, want %d", tt.flags, tt.proto, len(seen), tt.want)
			}
		}
	})
}

func BenchmarkMaglevUpdate(b *testing.B) {
	for _, n := range []int{10, 100} {
		d := dests(make([]int32, n)...)
		for i := range d {
			d[i].Weight = int32(1 + i%3)
		}
		b.Run(fmt.Sprintf("dests=%d", n), func(b *testing.B) {
			s := mustNew(b, "mh", d, Options{})
			for b.Loop() {
				s.Update(d)
			}
		})
	}
}
