package dataplane

import (
	"sync/atomic"

	"github.com/govs/govs/internal/cacheline"
)

// ringSize is the capacity of an spscRing (a power of two).
const ringSize = 1 << 12

// spscRing is a single-producer, single-consumer ring of fixed-size records: the producer writes a
// record and then publishes head; the consumer reads records below head and then publishes tail. A
// full ring refuses the record (the producer counts the drop) instead of waiting. T must hold no
// pointers: the ring is embedded in long-lived structs the GC would otherwise scan. A worker's
// connection-sync rings (sync.go) and its connection-log ring (connlog.go) are spscRings.
type spscRing[T any] struct {
	head    atomic.Uint64 // written by the producer only
	_       [cacheline.Size - 8]byte
	tail    atomic.Uint64 // written by the consumer only
	_       [cacheline.Size - 8]byte
	dropped atomic.Uint64 // records the producer could not queue
	buf     [ringSize]T
}

// push queues e; false when the ring is full (the drop is counted).
func (r *spscRing[T]) push(e *T) bool {
	h := r.head.Load()
	if h-r.tail.Load() >= ringSize {
		r.dropped.Add(1)
		return false
	}
	r.buf[h&(ringSize-1)] = *e
	r.head.Store(h + 1)
	return true
}

// pop moves up to len(out) records into out and returns how many.
func (r *spscRing[T]) pop(out []T) int {
	t, h := r.tail.Load(), r.head.Load()
	n := int(min(h-t, uint64(len(out))))
	for i := range n {
		out[i] = r.buf[(t+uint64(i))&(ringSize-1)]
	}
	r.tail.Store(t + uint64(n))
	return n
}

// free returns how many records a push would take now (producer side).
func (r *spscRing[T]) free() int { return ringSize - int(r.head.Load()-r.tail.Load()) }

// pending reports how many records wait in the ring.
func (r *spscRing[T]) pending() uint64 { return r.head.Load() - r.tail.Load() }
