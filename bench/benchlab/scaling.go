package main

import (
	"context"
	"fmt"

	"github.com/govs/govs/lab"
)

// runScaling measures the UDP flood with the balancer on two cores (-balancer-cores 2), the
// kernel's DNAT and govs alike: RPS spreads the balancer's frames over both CPUs by flow hash,
// govs runs two workers, one per CPU. The machine has two CPUs, so the second balancer core is the
// load CPU: the generator, the switch and the sink share it. Speed-ups are against the same
// side's one-core phase of this run.
func runScaling(ctx context.Context, topo *lab.Topology, o options, rep *report) (err error) {
	if err := setRPS(topo, o, 2); err != nil {
		return err
	}
	defer func() {
		if rerr := setRPS(topo, o, 1); rerr != nil && err == nil {
			err = fmt.Errorf("failed to steer the balancer back to one core: %w", rerr)
		}
	}()
	o.http = false
	if o.runs("kernel") {
		logf("scaling: the kernel's DNAT with RPS over CPUs %s", cpuList(o.balancerCPUs(2)))
		rep.Kernel2 = runKernelPhase(ctx, topo, o, "kernel(nft dnat) 2 cores")
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if o.runs("govs") {
		v := govsNAT
		v.name, v.workers, v.peak, v.udpOnly = "govs 2 workers", 2, false, true
		rep.Govs2 = runGovsPhase(ctx, topo, o, v)
	}
	return ctx.Err()
}

// speedUp returns two's delivered rate over one's, false when either is missing.
func speedUp(one, two *phaseResult) (float64, bool) {
	u1, ok1 := udpOK(one)
	u2, ok2 := udpOK(two)
	if !ok1 || !ok2 || u1.DeliveredPPS <= 0 {
		return 0, false
	}
	return u2.DeliveredPPS / u1.DeliveredPPS, true
}
