package dataplane

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Receive modes ([dataplane] rx_mode). A TPACKETv3 block reaches user space when it is full or
// when its retire timer (1 ms at least) fires, so at low rates every hop waits up to 1 ms; a
// TPACKET_V2 ring hands over each frame at once but costs more per frame and holds fewer frames.
// RXModeAuto keeps both rings on every interface and moves traffic between them by measured rate.
const (
	RXModeAuto       = "auto"       // latency ring at low rates, throughput ring under load
	RXModeThroughput = "throughput" // TPACKETv3 blocks only
	RXModeLatency    = "latency"    // TPACKET_V2 frames only (TX still goes through a v3 ring)
)

// rxRing is the ring set the fanout program sends traffic to; its value is the set's position
// in each interface's fanout group (member index = set*workers + worker).
type rxRing int32

const (
	ringBlocks rxRing = 0 // TPACKETv3 (throughput)
	ringFrames rxRing = 1 // TPACKET_V2 (latency)
)

func (r rxRing) String() string {
	if r == ringFrames {
		return RXModeLatency
	}
	return RXModeThroughput
}

// Auto mode thresholds, in frames per second received by all workers together. Above
// rxHighPPS (or when the frame ring drops) the blocks' batching is worth their latency; below
// rxLowPPS for rxLowFor the frames' low latency wins again. Measured here: a TPACKET_V2 ring
// costs ~20% more CPU per frame under a flood and, with 64 KiB slots for GSO frames, drops
// bursts that a block ring absorbs; a single busy connection stays far below rxLowPPS.
const (
	rxHighPPS    = 200_000
	rxLowPPS     = 80_000
	rxLowFor     = time.Second
	rxSampleTick = 100 * time.Millisecond
	// rxDrainMax bounds how long a worker waits for the old ring to hand over its last frames
	// (a partly filled block retires within its 1 ms timer) before it reads the new ring.
	rxDrainMax = 50 * time.Millisecond
)

// rxPolicy decides the ring for auto mode from periodic samples. Not safe for concurrent use.
type rxPolicy struct {
	high, low float64 // frames per second
	lowFor    time.Duration
	cur       rxRing
	lowSince  time.Duration // when the rate went below low, or -1
}

func newRXPolicy(high, low float64) *rxPolicy {
	return &rxPolicy{high: high, low: low, lowFor: rxLowFor, cur: ringFrames, lowSince: -1}
}

// sample takes the rate over the last interval, whether the frame ring dropped frames in it, and
// the time since start; it returns the ring to use.
func (p *rxPolicy) sample(pps float64, dropped bool, now time.Duration) rxRing {
	switch p.cur {
	case ringFrames:
		if pps > p.high || dropped {
			p.cur, p.lowSince = ringBlocks, -1
		}
	case ringBlocks:
		if pps >= p.low {
			p.lowSince = -1
		} else if p.lowSince < 0 {
			p.lowSince = now
		} else if now-p.lowSince >= p.lowFor {
			p.cur, p.lowSince = ringFrames, -1
		}
	}
	return p.cur
}

// rxSettings is the receive mode and, for auto mode, its thresholds.
type rxSettings struct {
	mode      string  // RXModeAuto, RXModeThroughput or RXModeLatency
	high, low float64 // auto mode's thresholds (rxThresholds)
}

// rxSettingsOf checks the configured receive mode ("" is auto) and reads the thresholds.
func rxSettingsOf(mode string) (rxSettings, error) {
	s := rxSettings{mode: mode}
	switch mode {
	case "":
		s.mode = RXModeAuto
	case RXModeAuto, RXModeThroughput, RXModeLatency:
	default:
		return s, errorf("receive mode %q: use %q, %q or %q", mode, RXModeAuto, RXModeThroughput, RXModeLatency)
	}
	var err error
	if s.high, s.low, err = rxThresholds(); err != nil {
		return s, errorf("%w", err)
	}
	return s, nil
}

// rxThresholds returns the auto thresholds; GOVS_RX_AUTO_PPS="HIGH:LOW" overrides them (for
// tests and tuning on other hardware).
func rxThresholds() (high, low float64, err error) {
	v := os.Getenv("GOVS_RX_AUTO_PPS")
	if v == "" {
		return rxHighPPS, rxLowPPS, nil
	}
	hs, ls, ok := strings.Cut(v, ":")
	h, err1 := strconv.ParseFloat(hs, 64)
	l, err2 := strconv.ParseFloat(ls, 64)
	if !ok || err1 != nil || err2 != nil || l <= 0 || h < l {
		return 0, 0, fmt.Errorf("GOVS_RX_AUTO_PPS=%q: write HIGH:LOW frames per second with HIGH >= LOW > 0", v)
	}
	return h, l, nil
}

// rxState is the ring choice shared by the controller and the workers. A switch bumps gen after
// the fanout programs moved traffic; each worker acknowledges a generation once it has read
// everything the old ring got, and the controller switches again only when all acknowledged.
type rxState struct {
	cur      atomic.Uint64 // gen<<1 | ring
	acks     []paddedU64   // per worker: last generation acknowledged
	packets  []paddedU64   // per worker: frames received, for the rate
	switches atomic.Uint64
}

type paddedU64 struct {
	atomic.Uint64
	_ [56]byte
}

// total is the frames all workers received.
func (s *rxState) total() uint64 {
	var sum uint64
	for i := range s.packets {
		sum += s.packets[i].Load()
	}
	return sum
}

func (s *rxState) load() (ring rxRing, gen uint64) {
	v := s.cur.Load()
	return rxRing(v & 1), v >> 1
}

func (s *rxState) allAcked(gen uint64) bool {
	for i := range s.acks {
		if s.acks[i].Load() != gen {
			return false
		}
	}
	return true
}
