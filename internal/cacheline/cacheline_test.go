package cacheline

import (
	"testing"
	"unsafe"
)

// TestUint64sPadded checks that a full line before and after the counters belongs to the same
// allocation (zeroed, untouched by writes to the counters), and that appending cannot grow into it.
func TestUint64sPadded(t *testing.T) {
	for _, n := range []int{1, 7, 9, 100} {
		s := Uint64s(n)
		for i := range s {
			s[i] = ^uint64(0) // writes to the counters must stay inside them
		}
		if len(s) != n || cap(s) != n {
			t.Fatalf("Uint64s(%d): len %d cap %d", n, len(s), cap(s))
		}
		full := unsafe.Slice((*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(s)), -Size)), n+2*Size/8)
		for i, v := range full {
			if i >= Size/8 && i < Size/8+n {
				continue
			}
			if v != 0 {
				t.Fatalf("Uint64s(%d): word %d of the padded allocation is %d", n, i, v)
			}
		}
	}
}
