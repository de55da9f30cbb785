//go:build !linux

package hugepage

import "unsafe"

// Advise does nothing where there is no madvise(MADV_HUGEPAGE).
func Advise(p unsafe.Pointer, n uintptr) {}
