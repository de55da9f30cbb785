package hugepage

import (
	"syscall"
	"unsafe"
)

const madvHugepage = 14 // MADV_HUGEPAGE

// Advise asks for transparent huge pages under the n bytes at p (best effort: with THP in
// "madvise" mode, the default on many distributions, random lookups over a table of 100 MB+ would
// otherwise miss the TLB on nearly every access).
func Advise(p unsafe.Pointer, n uintptr) {
	const huge = 2 << 20
	start := (uintptr(p) + huge - 1) &^ (huge - 1)
	end := (uintptr(p) + n) &^ (huge - 1)
	if end <= start {
		return
	}
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start), madvHugepage)
}
