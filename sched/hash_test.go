package sched

import (
	"math/rand/v2"
	"testing"

	"github.com/govs/govs/flow"
)

// refSHTable is the obvious model of ip_vs_sh_reassign: walk the list, giving each server Weight
// buckets (at least one) in turn, until 256 buckets are dealt.
func refSHTable(d []Dest) []int {
	var t []int
	for len(t) < 256 && len(d) > 0 {
		for i := range d {
			for k := 0; k < max(1, int(d[i].Weight)) && len(t) < 256; k++ {
				t = append(t, i)
			}
		}
	}
	return t
}

// refHash32 is include/linux/hash.h hash_32, written out.
func refHash32(v uint32, bits uint) uint32 { return v * 0x61C88647 >> (32 - bits) }

func TestSHMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 11))
	for trial := range 300 {
		n := 1 + r.IntN(8)
		d := make([]Dest, n)
		for i := range d {
			d[i] = Dest{Weight: int32(r.IntN(5)), Available: r.IntN(5) != 0, Counts: new(Counts)}
		}
		flags := Flags(r.IntN(4)) // sh-fallback, sh-port
		s := mustNew(t, "sh", d, Options{Flags: flags})
		table := refSHTable(d)
		ok := func(i int) bool { return d[i].Available && d[i].Weight > 0 }
		for range 50 {
			f := randFlow(r)
			f.Proto = []uint8{6, 17, 1}[r.IntN(3)]
			var port uint32
			if flags&FlagSHPort != 0 && f.Proto != 1 {
				port = uint32(f.SrcPort)
			}
			a := foldAddr(&f.Src)
			h := refHash32(port+a, 8)
			want := table[h]
			if !ok(want) {
				fallback := flags&FlagSHFallback != 0 || !d[want].Available // unavailable: as if deleted
				want = -1
				if fallback {
					for off := range uint32(256) {
						if j := table[((off+h)%256+refHash32(port+a, 8))%256]; ok(j) {
							want = j
							break
						}
					}
				}
			}
			if got := s.Pick(d, &f); got != want {
				t.Fatalf("trial %d flags %v weights %+v flow %+v: Pick = %d, model = %d", trial, flags, d, f, got, want)
			}
		}
	}
}

func TestSHWeightsAndStickiness(t *testing.T) {
	d := dests(1, 3, 4)
	s := mustNew(t, "sh", d, Options{})
	counts := make([]int, 3)
	for _, b := range s.(*SourceHashing).buckets {
		counts[b]++
	}
	// 256 buckets in rounds of 8: 32 rounds of 1, 3, 4.
	if counts[0] != 32 || counts[1] != 96 || counts[2] != 128 {
		t.Errorf("bucket shares %v, want [32 96 128]", counts)
	}
	f := flow.Tuple{Src: v4(198, 19, 1, 2), SrcPort: 1000, Proto: 6}
	first := s.Pick(d, &f)
	for p := range uint16(100) {
		f.SrcPort = p
		if got := s.Pick(d, &f); got != first {
			t.Fatalf("without sh-port, source port %d moved the flow from %d to %d", p, first, got)
		}
	}
	sp := mustNew(t, "sh", d, Options{Flags: FlagSHPort})
	seen := map[int]bool{}
	for p := range uint16(100) {
		f.SrcPort = p
		seen[sp.Pick(d, &f)] = true
	}
	if len(seen) != 3 {
		t.Errorf("with sh-port, 100 source ports reached servers %v, want all 3", seen)
	}
}

// TestDHMatchesModel: without flags dh is the kernel's (bucket = Knuth hash of the folded address,
// refused when its server is unusable); with sh-port the destination port joins the hash, with
// sh-fallback the following buckets are tried.
func TestDHMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 12))
	for trial := range 300 {
		n := 1 + r.IntN(8)
		d := make([]Dest, n)
		for i := range d {
			d[i] = Dest{Weight: int32(r.IntN(4)), Available: r.IntN(5) != 0, Counts: new(Counts)}
		}
		flags := Flags(r.IntN(4)) // sh-fallback, sh-port: govs's extension of dh
		s := mustNew(t, "dh", d, Options{Flags: flags})
		ok := func(i int) bool { return d[i].Available && d[i].Weight > 0 }
		for range 50 {
			f := randFlow(r)
			f.Proto = []uint8{6, 17, 1}[r.IntN(3)]
			var port uint64
			if flags&FlagSHPort != 0 && f.Proto != 1 {
				port = uint64(f.DstPort)
			}
			b := (uint64(foldAddr(&f.Dst)) + port) * 2654435761 % 256
			want := int(b) % n // bucket b belongs to server b mod n
			if !ok(want) {
				fallback := flags&FlagSHFallback != 0 || !d[want].Available // unavailable: as if deleted
				want = -1
				if fallback { // the next buckets in turn
					for off := range uint64(256) {
						if j := int((b+off)%256) % n; ok(j) {
							want = j
							break
						}
					}
				}
			}
			if got := s.Pick(d, &f); got != want {
				t.Fatalf("trial %d flags %v flow %+v: Pick = %d, model = %d", trial, flags, f, got, want)
			}
		}
	}
}

func TestFoldAddr(t *testing.T) {
	tests := []struct {
		name string
		a    [16]byte
		want uint32
	}{
		{"ipv4", v4(198, 18, 0, 1), 0xc6120001},
		{"ipv6", [16]byte{0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 0x20010002 ^ 1},
		{"ipv6 ::ffff:0:0 lookalike", [16]byte{1, 10: 0xff, 11: 0xff, 15: 1}, 0x01000000 ^ 0xffff ^ 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := foldAddr(&tt.a); got != tt.want {
				t.Errorf("foldAddr = %#x, want %#x", got, tt.want)
			}
		})
	}
}
