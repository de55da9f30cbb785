package sched

import "sync/atomic"

// Position is the place in the list that the rr and wrr schedulers of one virtual server share
// across the data-plane workers (Options.Position).
//
// Why: each worker owns its scheduler instances, so with a position per instance two workers each
// start at the head of the list and an operator who opens six connections to three real servers
// under rr sees a, a, b, c, b, c instead of IPVS's a, b, c, a, b, c. A shared position makes the
// order one order whichever worker takes a connection. It costs one compare-and-swap on a line of
// its own per new connection (IPVS takes a spinlock there), never anything per packet; the other
// schedulers need no position (they hash, or read the shared Counts).
type Position struct {
	_ [64]byte
	// v is rr's last pick + 1 (0: none yet); for wrr the last pick + 1 in the low 32 bits and the
	// current weight cw in the high 32 (0: start from the largest weight).
	v atomic.Uint64
	_ [56]byte
}

// UsesPosition reports whether scheduler name (an IPVS name; "" = DefaultScheduler, which does not)
// keeps its place in Options.Position, so that a caller hands one only to those.
func UsesPosition(name string) bool { return name == "rr" || name == "wrr" }
