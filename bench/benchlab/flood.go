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
	Rate     int           // frames per second at most; 0: as fast as the generator can
}

// floodStats are the generator's own counts.
type floodStats struct {
	Sent    uint64 // frames the kernel accepted
	NoBufs  uint64 // sendmmsg calls refused with ENOBUFS/EAGAIN (device or backlog full)
	Seconds float64
}
