package bench

import "time"

// LiveConfig is one live transmission of a capture.
type LiveConfig struct {
	Interface string        // where to send, in the calling thread's network namespace
	PPS       float64       // frames per second; 0 with TopSpeed false means TopSpeed
	TopSpeed  bool          // as fast as the TX ring drains
	Loops     int           // passes over the capture; 0 means 1, or unbounded with Duration
	Duration  time.Duration // stop after this long (0: when the loops are done)
}

// LiveReport is what a live transmission sent.
type LiveReport struct {
	Interface    string  `json:"interface"`
	Frames       uint64  `json:"frames"` // handed to the device
	Bytes        uint64  `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	PPS          float64 `json:"pps"`
	Mbps         float64 `json:"mbps"`
	RequestedPPS float64 `json:"requested_pps,omitempty"`
	TooLarge     uint64  `json:"too_large"` // frames larger than a TX slot, not sent
	Unsent       uint64  `json:"unsent"`    // committed but still not taken by the kernel at the end
	Errors       uint64  `json:"errors"`    // failed kicks
}
