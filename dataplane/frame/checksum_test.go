package frame

import (
	"math/rand"
	"testing"

	"github.com/govs/govs/internal/checksum"
)

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

func TestUpdateChecksumMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	b := make([]byte, 64)
	for i := 0; i < 10000; i++ {
		rng.Read(b)
		b[0], b[1] = 0, 0
		sum := ^checksum.Sum(b, 0)
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
		if want := ^checksum.Sum(b, 0); got != want {
			t.Fatalf("iteration %d: incremental %#x, recomputed %#x", i, got, want)
		}
		b[0], b[1] = byte(got>>8), byte(got)
	}
}
