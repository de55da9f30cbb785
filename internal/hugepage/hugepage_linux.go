package hugepage

import (
	"syscall"
	"unsafe"
)

const (
	madvHugepage = 14 // MADV_HUGEPAGE
	madvCollapse = 25 // MADV_COLLAPSE (Linux 6.1)
)

// Advise asks for transparent huge pages under the n bytes at p (best effort: with THP in
// "madvise" mode, the default on many distributions, random lookups over a table of 100 MB+ would
// otherwise miss the TLB on nearly every access).
//
// MADV_HUGEPAGE alone only shapes later page faults. When Go hands out memory it used before, it
// has already zeroed it, so the range is mapped with small pages and only khugepaged, slowly and
// maybe never, would merge them: a replay after another replay in one process ran on no huge pages
// at all (AnonHugePages 0 kB). MADV_COLLAPSE then merges the range at once, on kernels that have it
// (a copy of what is mapped: a fraction of a second for a GiB). On fresh memory nothing is mapped yet
// and it does nothing: the faults to come take huge pages (New of a 10M-entry table: 1.5 ms).
func Advise(p unsafe.Pointer, n uintptr) {
	const huge = 2 << 20
	start := (uintptr(p) + huge - 1) &^ (huge - 1)
	end := (uintptr(p) + n) &^ (huge - 1)
	if end <= start {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start)
	if syscall.Madvise(b, madvHugepage) == nil {
		_ = syscall.Madvise(b, madvCollapse)
	}
}
