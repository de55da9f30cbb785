package dataplane

import (
	"sync/atomic"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/internal/cacheline"
)

// handoffRing hands frames from one worker to another: single producer, single consumer, a fixed
// number of slots of a fixed size. A full ring refuses a frame. Fragments take it to their flow's
// worker (frags.go); with io = "afxdp", frames whose socket is another worker's take it to the
// worker their connection belongs to (steer.go).
type handoffRing struct {
	head  atomic.Uint64 // written by the producer only
	_     [cacheline.Size - 8]byte
	tail  atomic.Uint64 // written by the consumer only
	_     [cacheline.Size - 8]byte
	slots []handoffSlot
}

type handoffSlot struct {
	n    int
	in   int
	meta afpacket.RxMeta
	data []byte
}

func newHandoffRing(slots, size int) *handoffRing {
	r := &handoffRing{slots: make([]handoffSlot, slots)}
	buf := make([]byte, slots*size)
	for i := range r.slots {
		r.slots[i].data = buf[i*size : (i+1)*size : (i+1)*size]
	}
	return r
}

// push copies b (received on port in) into the ring; false when it is full or b too large.
func (r *handoffRing) push(in int, b []byte, meta *afpacket.RxMeta) bool {
	h := r.head.Load()
	if h-r.tail.Load() >= uint64(len(r.slots)) {
		return false
	}
	s := &r.slots[h%uint64(len(r.slots))]
	if len(b) > len(s.data) {
		return false
	}
	s.n, s.in, s.meta = copy(s.data, b), in, *meta
	r.head.Store(h + 1)
	return true
}

// peek returns the oldest frame in the ring, or nil; pop releases it.
func (r *handoffRing) peek() *handoffSlot { return r.peekAt(0) }

// peekAt returns the frame i places behind the oldest one, or nil.
func (r *handoffRing) peekAt(i int) *handoffSlot {
	t := r.tail.Load() + uint64(i)
	if t >= r.head.Load() {
		return nil
	}
	return &r.slots[t%uint64(len(r.slots))]
}

func (r *handoffRing) pop() { r.popN(1) }

// popN releases the n oldest frames, which the consumer has peeked.
func (r *handoffRing) popN(n int) { r.tail.Store(r.tail.Load() + uint64(n)) }
