//go:build linux

package dataplane

import (
	"fmt"
	"math"
	"time"

	"github.com/govs/govs/dataplane/bpfgen"
)

// initRX sets the receive state up for mode with workers workers and returns the ring set that
// receives first: the latency ring wherever there is one (auto mode starts there, as at a low
// rate), else the throughput ring.
func (eo *engineOS) initRX(mode string, workers int) rxRing {
	eo.rxMode = mode
	ring := ringBlocks
	if mode != RXModeThroughput {
		ring = ringFrames
	}
	eo.rx.cur.Store(uint64(ring))
	eo.rx.acks = make([]paddedU64, workers)
	eo.rx.packets = make([]paddedU64, workers)
	return ring
}

// routineRXControl is auto mode's controller: every rxSampleTick it measures the receive rate
// (and the latency ring's drops) and, when the policy says so and every worker has finished the
// previous switch, moves traffic to the other ring set.
func (e *Engine) routineRXControl(p *rxPolicy) {
	defer e.os.wg.Done()
	tick := time.NewTicker(rxSampleTick)
	defer tick.Stop()
	start := time.Now()
	last, lastAt := e.rxPackets(), start
	lastDrops := e.frameDrops()
	for {
		select {
		case <-e.os.stopping:
			return
		case <-tick.C:
		}
		now := time.Now()
		pk, drops := e.rxPackets(), e.frameDrops()
		pps := float64(pk-last) / now.Sub(lastAt).Seconds()
		dropped := drops > lastDrops
		last, lastAt, lastDrops = pk, now, drops
		want := p.sample(pps, dropped, now.Sub(start))
		ring, gen := e.os.rx.load()
		if want == ring || !e.os.rx.allAcked(gen) {
			continue
		}
		if err := e.switchRing(want); err != nil {
			e.cfg.warnf("rx_mode auto: could not switch to the %s ring: %v", want, err)
			continue
		}
		why := "rate fell"
		if want == ringBlocks {
			why = "rate rose"
			if dropped {
				why = "the latency ring dropped frames"
			}
		}
		n := e.os.rx.switches.Load()
		e.cfg.log().Info(fmt.Sprintf("rx_mode auto: switched to the %s ring (%s: %.0f frames/s; switch %d)", want, why, pps, n),
			"ring", want.String(), "reason", why, "frames_per_second", math.Round(pps), "switches", n)
	}
}

// switchRing points every interface's fanout program at ring's socket set, then tells the workers.
// The kernel's PACKET_FANOUT_DATA waits for a grace period before it returns, so once it has, no
// frame can still land in the old set.
func (e *Engine) switchRing(ring rxRing) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.os.closed {
		return errorf("engine closed")
	}
	n := len(e.workers)
	prog, err := bpfgen.FanoutProgramSpec(e.os.fanSpec, n, int(ring)*n)
	if err != nil {
		return errorf("fanout program: %w", err)
	}
	if err := e.os.setFanout(prog); err != nil {
		return err
	}
	_, gen := e.os.rx.load()
	e.os.rx.cur.Store((gen+1)<<1 | uint64(ring))
	e.os.rx.switches.Add(1)
	return nil
}

func (e *Engine) rxPackets() uint64 { return e.os.rx.total() }

// frameDrops is the latency ring's drop count (frames the kernel found no free slot for).
func (e *Engine) frameDrops() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var sum uint64
	for _, socks := range e.os.frames {
		for _, s := range socks {
			if st, err := s.Stats(); err == nil {
				sum += st.Drops
			}
		}
	}
	return sum
}

// rxModeStats reports the receive mode for Stats.
func (e *Engine) rxModeStats() (latency bool, switches uint64) {
	ring, _ := e.os.rx.load()
	return ring == ringFrames, e.os.rx.switches.Load()
}
