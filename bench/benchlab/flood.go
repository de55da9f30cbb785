package main

import (
	"time"

	"github.com/govs/govs/lab"
)

// floodConfig is one run of the UDP generator.
type floodConfig struct {
	NS       *lab.NS
	Iface    string // interface inside NS to send on
	CPU      int    // CPU the sending thread is pinned to
	Frames   [][]byte
	Batch    int           // frames per sendmmsg(2)
	Duration time.Duration // how long to send
	// Rate paces the flood at this many frames per second; 0 sends as fast as the kernel takes
	// them. Paced batches are small (paceBatch), so the offered load is smooth to within a
	// fraction of a millisecond.
	Rate float64
}

// paceBatch returns the frames per sendmmsg call for a flood paced at rate frames per second:
// about a quarter of a millisecond's worth, at most batch.
func paceBatch(rate float64, batch int) int {
	if rate <= 0 {
		return batch
	}
	return min(batch, max(1, int(rate/4000)))
}

// paceWait returns how long a paced flood that has sent sent frames since it started elapsed
// ago waits before its next batch; 0 when it is on time or late (it then catches up, so the
// average rate holds).
func paceWait(rate float64, sent uint64, elapsed time.Duration) time.Duration {
	if rate <= 0 {
		return 0
	}
	due := time.Duration(float64(sent) / rate * float64(time.Second))
	return max(0, due-elapsed)
}

// floodStats are the generator's own counts.
type floodStats struct {
	Sent    uint64 // frames the kernel accepted
	NoBufs  uint64 // sendmmsg calls refused with ENOBUFS/EAGAIN (device or backlog full)
	Seconds float64
}
