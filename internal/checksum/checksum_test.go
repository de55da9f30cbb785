package checksum

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"
)

// naive is the textbook RFC 1071 loop, the reference for Sum.
func naive(b []byte, initial uint32) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = (s & 0xffff) + (s >> 16)
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

func TestSumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	buf := make([]byte, 70000)
	rng.Read(buf)
	sizes := []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1499, 1500, 65535, 70000}
	for i := 0; i < 300; i++ {
		sizes = append(sizes, rng.Intn(2000))
	}
	for _, n := range sizes {
		off := rng.Intn(8)
		if off+n > len(buf) {
			off = 0
		}
		b := buf[off : off+n]
		initial := rng.Uint32() >> rng.Intn(32)
		if got, want := Sum(b, initial), naive(b, initial); got != want {
			t.Fatalf("Sum(%d bytes at %d, %#x) = %#x, want %#x", n, off, initial, got, want)
		}
	}
}

func TestSumEdges(t *testing.T) {
	ones := make([]byte, 4096)
	for i := range ones {
		ones[i] = 0xff
	}
	for _, tc := range []struct {
		name    string
		b       []byte
		initial uint32
		want    uint16
	}{
		{"empty", nil, 0, 0},
		{"empty with initial", nil, 0x1ffff, 1},
		{"all ones", ones, 0, 0xffff},
		{"all ones with max initial", ones, 0xffffffff, 0xffff},
		{"odd byte is high", []byte{0xab}, 0, 0xab00},
		{"rfc1071 example", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0, 0xddf2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sum(tc.b, tc.initial); got != tc.want {
				t.Errorf("Sum() = %#x, want %#x", got, tc.want)
			}
		})
	}
}

var sinkSum uint16

func BenchmarkSum(b *testing.B) {
	for _, n := range []int{64, 1500, 65536} {
		buf := make([]byte, n)
		rand.New(rand.NewSource(42)).Read(buf)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sinkSum = Sum(buf, 0)
			}
		})
		b.Run(fmt.Sprint("naive/", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sinkSum = naive(buf, 0)
			}
		})
	}
}

// TestTransport checks a UDP checksum against one computed by hand from the pseudo-header and the
// segment laid out in one buffer, and that a segment carrying its checksum sums to all ones.
func TestTransport(t *testing.T) {
	src, dst := []byte{198, 18, 0, 1}, []byte{198, 18, 0, 100}
	seg := []byte{0x9c, 0x40, 0x00, 0x35, 0x00, 0x0b, 0x00, 0x00, 'a', 'b', 'c'}
	var all []byte
	all = append(all, src...)
	all = append(all, dst...)
	all = append(all, 0, 17, 0, byte(len(seg)))
	all = append(all, seg...)
	want := ^naive(all, 0)
	if got := Transport(src, dst, 17, seg); got != want {
		t.Fatalf("Transport = %#x, want %#x", got, want)
	}
	binary.BigEndian.PutUint16(seg[6:], want)
	if s := Sum(seg, Pseudo(src, dst, 17, uint32(len(seg)))); s != 0xffff {
		t.Fatalf("segment with its checksum sums to %#x, want 0xffff", s)
	}
}

func TestSumNoAllocs(t *testing.T) {
	buf := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() { sinkSum = Sum(buf, 0) }); n != 0 {
		t.Fatalf("Sum allocates %v times a call, want 0", n)
	}
}
