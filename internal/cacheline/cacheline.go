// Package cacheline allocates counters that no other allocation shares a cache line with.
//
// Why: two workers that each count into their own small slice still slow each other down when
// the allocator put both slices in one 64-byte line (false sharing): every increment takes the
// line away from the other core. Per-packet counters of different workers must not meet.
package cacheline

// Size is the cache line size assumed (x86-64 and most arm64 cores; 128-byte-line CPUs get half the
// benefit).
const Size = 64

// Uint64s returns a zeroed slice of n counters with a cache line of padding on either side, so that
// writes to it never touch a line another allocation uses.
func Uint64s(n int) []uint64 {
	const pad = Size / 8
	if n == 0 {
		return nil
	}
	return make([]uint64, n+2*pad)[pad : pad+n : pad+n]
}
