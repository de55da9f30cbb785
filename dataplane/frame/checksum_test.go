package frame

import (
	"fmt"
	"math/rand"
	"testing"
)

func TestChecksumMatchesNaive(t *testing.T) {
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
		if got, want := Checksum(b, initial), naiveChecksum(b, initial); got != want {
			t.Fatalf("Checksum(%d bytes at %d, %#x) = %#x, want %#x", n, off, initial, got, want)
		}
	}
}

// TestHeaderSum20 checks the unrolled IPv4 header sum against the reference, including all-ones and
// all-zero headers.
func TestHeaderSum20(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	b := make([]byte, 20)
	for i := range 10000 {
		switch i {
		case 0:
			clear(b)
		case 1:
			for j := range b {
				b[j] = 0xff
			}
		default:
			rng.Read(b)
		}
		if got, want := headerSum20((*[20]byte)(b)), naiveChecksum(b, 0); got != want {
			t.Fatalf("headerSum20(%x) = %#x, want %#x", b, got, want)
		}
	}
}

func TestChecksumEdges(t *testing.T) {
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
			if got := Checksum(tc.b, tc.initial); got != tc.want {
				t.Errorf("Checksum() = %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestUpdateChecksumMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	b := make([]byte, 64)
	for i := 0; i < 10000; i++ {
		rng.Read(b)
		b[0], b[1] = 0, 0
		sum := ^Checksum(b, 0)
		b[0], b[1] = byte(sum>>8), byte(sum)
		at := 2 + 2*rng.Intn(15)
		n := 4 * (1 + rng.Intn(4))
		var nw [16]byte
		rng.Read(nw[:n])
		if rng.Intn(8) == 0 {
			copy(nw[:n], b[at:]) // no change at all
		}
		d := bytesDiff(b[at:at+n], nw[:n])
		copy(b[at:], nw[:n])
		got := updateChecksum(sum, d)
		b[0], b[1] = 0, 0
		if want := ^Checksum(b, 0); got != want {
			t.Fatalf("iteration %d: incremental %#x, recomputed %#x", i, got, want)
		}
		b[0], b[1] = byte(got>>8), byte(got)
	}
}

var sinkSum uint16

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{64, 1500, 65536} {
		buf := make([]byte, n)
		rand.New(rand.NewSource(42)).Read(buf)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sinkSum = Checksum(buf, 0)
			}
		})
		b.Run(fmt.Sprint("naive/", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sinkSum = naiveChecksum(buf, 0)
			}
		})
	}
}
