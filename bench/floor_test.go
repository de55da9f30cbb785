package bench

import (
	"math"
	"testing"
)

// TestMemoryFloor: the floor is a positive, finite time per packet and does not depend on the
// packet count being a multiple of its batch.
func TestMemoryFloor(t *testing.T) {
	for _, packets := range []int{1, 31, 1000} {
		f := MemoryFloor(1000, packets)
		if !(f > 0) || math.IsInf(f, 0) || f > 1e6 {
			t.Fatalf("MemoryFloor(1000, %d) = %v ns per packet", packets, f)
		}
	}
}
