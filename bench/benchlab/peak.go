package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/govs/govs/lab"
)

// peakResult is the loss-free peak search of a govs phase (issue 15's "no collapse under
// overload"): the highest offered rate at which govs lost no frame, and what it delivered at the
// generator's full rate (the phase's UDP measurement), as a share of that peak.
type peakResult struct {
	Error string `json:"error,omitempty"`
	// LossFreePPS is what was delivered at the highest paced rate that lost at most
	// lossTolerance of the frames offered; 0 when no trial was loss-free.
	LossFreePPS float64 `json:"loss_free_pps"`
	// FullRatePPS is what was delivered with the generator at its full rate (OfferedPPS).
	FullRatePPS float64 `json:"full_rate_pps"`
	OfferedPPS  float64 `json:"full_rate_offered_pps"`
	// FullOfPeak is FullRatePPS / LossFreePPS: the goal is 0.9 or more.
	FullOfPeak float64 `json:"full_rate_of_peak"`
	// GeneratorLimited says the search stopped at a loss-free trial the generator could not
	// offer more for: the peak is at least LossFreePPS.
	GeneratorLimited bool        `json:"generator_limited,omitempty"`
	Trials           []peakTrial `json:"trials"`
}

// peakTrial is one paced flood of the search.
type peakTrial struct {
	RatePPS         float64 `json:"rate_pps"` // asked of the generator
	OfferedPPS      float64 `json:"offered_pps"`
	DeliveredPPS    float64 `json:"delivered_pps"`
	LossPercent     float64 `json:"loss_percent"`
	BalancerCPUBusy float64 `json:"balancer_cpu_busy"`
	LossFree        bool    `json:"loss_free"`
	// Short is a trial whose generator offered less than asked (the load CPU was the limit): it
	// counts at the rate it offered.
	Short bool `json:"short,omitempty"`
}

// shortOf is the share of the asked rate below which a trial's offered rate counts as short.
const shortOf = 0.95

// lossTolerance is the share of offered frames a loss-free trial may miss: frames still in the
// balancer's ring (a block waits up to its 1 ms retire timer) when the window closes.
const lossTolerance = 0.001

// peakTrials bounds the search; peakResolution ends it once the bracket is that narrow.
const (
	peakTrials     = 7
	peakResolution = 0.03
)

// nextRate is the search's next rate: 30% lower while no trial was loss-free, then the middle of
// the bracket [lo, hi]; done when the bracket is within peakResolution of hi.
func nextRate(lo, hi, last float64) (rate float64, done bool) {
	if lo == 0 {
		return last * 0.7, false
	}
	if hi-lo <= peakResolution*hi {
		return 0, true
	}
	return (lo + hi) / 2, false
}

// findPeak searches the loss-free peak below full, the phase's full-rate measurement: paced
// trials of o.peakTrial, the first at what full delivered.
func findPeak(ctx context.Context, topo *lab.Topology, o options, full *udpResult, pid int) *peakResult {
	p := &peakResult{FullRatePPS: full.DeliveredPPS, OfferedPPS: full.OfferedPPS}
	if full.DeliveredPPS >= (1-lossTolerance)*full.OfferedPPS {
		// Nothing lost at the generator's full rate: the peak is at least that, and the generator
		// cannot offer more.
		p.LossFreePPS, p.FullOfPeak = full.DeliveredPPS, 1
		return p
	}
	mac, err := net.ParseMAC(full.VIPMAC)
	if err != nil {
		p.Error = fmt.Sprintf("no VIP MAC for the peak search: %v", err)
		return p
	}
	logf("  peak: searching the highest loss-free rate below %.0f pps (%v trials)", full.OfferedPPS, o.peakTrial)
	to := o
	to.warmup, to.duration = 300*time.Millisecond, o.peakTrial
	lo, hi, rate := 0.0, full.OfferedPPS, full.DeliveredPPS
	for range peakTrials {
		to.rate = rate
		u := &udpResult{VIPMAC: full.VIPMAC}
		udpFlood(ctx, topo, to, mac, u, false, pid, natSink)
		if ctx.Err() != nil {
			p.Error = ctx.Err().Error()
			return p
		}
		if u.Error != "" || u.OfferedPPS <= 0 {
			p.Error = fmt.Sprintf("trial at %.0f pps: %s", rate, u.Error)
			return p
		}
		t := peakTrial{RatePPS: rate, OfferedPPS: u.OfferedPPS, DeliveredPPS: u.DeliveredPPS,
			LossPercent: 100 * max(0, 1-u.DeliveredPPS/u.OfferedPPS), BalancerCPUBusy: u.BalancerCPUBusy}
		t.LossFree = u.DeliveredPPS >= (1-lossTolerance)*u.OfferedPPS
		t.Short = u.OfferedPPS < shortOf*rate
		p.Trials = append(p.Trials, t)
		logf("  peak: %.0f pps asked, %.0f offered, %.0f delivered (%.2f%% lost, cpu%d %.0f%% busy)",
			rate, t.OfferedPPS, t.DeliveredPPS, t.LossPercent, o.balancerCPU, t.BalancerCPUBusy)
		// A trial counts at the rate it was offered, which a short one fell below the asked rate.
		if t.LossFree {
			lo = max(lo, u.OfferedPPS)
			p.LossFreePPS = max(p.LossFreePPS, u.DeliveredPPS)
			if t.Short {
				p.GeneratorLimited = true // no higher rate to try
				break
			}
		} else {
			hi = min(hi, u.OfferedPPS)
		}
		if lo >= hi {
			break
		}
		var done bool
		if rate, done = nextRate(lo, hi, rate); done {
			break
		}
	}
	if p.LossFreePPS > 0 {
		p.FullOfPeak = p.FullRatePPS / p.LossFreePPS
	} else {
		p.Error = "no trial was loss-free"
	}
	return p
}
