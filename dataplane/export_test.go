package dataplane

import "github.com/govs/govs/dataplane/afpacket"

// Process handles one received frame from port in the general way, without ProcessBatch's express
// lane: the reference ProcessBatch is held to (TestProcessBatchSameAsProcess), and the tests' way
// to put one frame through a worker. now is monotonic nanoseconds. The frame may be modified in
// place. It never allocates.
func (w *Worker) Process(in int, b []byte, meta *afpacket.RxMeta, now int64) {
	w.now = now
	p := &w.batch[0] // ProcessBatch's parse slots are free between its calls
	w.c[cRxFrames]++
	switch w.classify(b, meta, p) {
	case actForward:
		w.forward(in, b, meta, p, w.ct.Hash(&p.Tuple), 0)
	case actICMPError:
		w.icmpError(in, b, meta, p)
	case actFragment:
		w.fragment(in, b, meta, p)
	}
}
