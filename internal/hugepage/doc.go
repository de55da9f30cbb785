// Package hugepage asks the kernel to back large, long-lived arrays (connection tables, benchmark
// floors) with transparent huge pages, so random access over hundreds of megabytes does not miss
// the TLB on nearly every load.
package hugepage
