package compile

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/health"
)

// Health tells a Compiler what the health checks found; see SetHealth.
type Health interface {
	// RealHealth returns the state of real server addr of the virtual server whose Key is
	// service: health.Unknown for one not checked yet (or not monitored at all); for one that is
	// up, also how long it has been up since it came back from down, which slow_start counts from
	// (a duration longer than any slow_start when it never was down).
	RealHealth(service string, addr netip.AddrPort) (state health.State, upFor time.Duration)
}

// SetHealth makes the compiles that follow take real servers' health from h. Without it (the
// offline replay, which runs no checks) every real server counts as up.
//
// A real server is available for new connections when its next hop is resolved, it is not
// removed, and it is up or not checked at all (no health_check). One that is checked and not up,
// down or not checked yet, is marked Down (on_failure "remove") or gets weight 0 (on_failure
// "quiesce"). One that came back from down within its slow_start gets a part of its weight that
// grows in SlowStartSteps steps; the daemon compiles again at each step (SlowStartNext).
//
// A virtual server with a sorry server gets it as one more real server entry (Sorry), which is on
// standby while the virtual server has a real server up (resolved, not down, not disabled by `govs
// ctl`, weight above 0), and at least its quorum of them; else it is the only one taking new
// connections, the real servers being on standby (their established connections carry on). Without a sorry server, a virtual
// server below its quorum takes no new connections (Service.NoQuorum).
func (c *Compiler) SetHealth(h Health) { c.health = h }

// SlowStartSteps is how many steps a real server's weight climbs in over its slow_start: in step
// k (from 0) it is weight*(k+1)/(SlowStartSteps+1), at least 1; after slow_start the full weight.
const SlowStartSteps = 10

// SlowStartWeight returns the weight of a real server of weight w that has been up for upFor since
// it came back, under slow_start slow.
func SlowStartWeight(w int32, upFor, slow time.Duration) int32 {
	if slow <= 0 || upFor >= slow || w <= 0 {
		return w
	}
	k := int64(max(upFor, 0)) * SlowStartSteps / int64(slow)
	return max(1, int32(int64(w)*(k+1)/(SlowStartSteps+1)))
}

// SlowStartNext returns how long after upFor the weight SlowStartWeight gives next changes, and
// false when it does not change any more (slow_start is over, or there is none).
func SlowStartNext(upFor, slow time.Duration) (time.Duration, bool) {
	if slow <= 0 || upFor >= slow {
		return 0, false
	}
	upFor = max(upFor, 0)
	k := int64(upFor) * SlowStartSteps / int64(slow)
	// The next step starts at the first t with t*SlowStartSteps/slow >= k+1.
	next := ((k+1)*int64(slow) + SlowStartSteps - 1) / SlowStartSteps
	return time.Duration(next) - upFor, true
}

// applyHealth marks r, real server rs of vs, as its health check has it.
func (c *Compiler) applyHealth(r *dataplane.Real, vs *config.VirtualServer, rs *config.RealServer) {
	hc := rs.HealthCheck
	if hc == nil || c.health == nil {
		return
	}
	st, upFor := c.health.RealHealth(vs.Key(), rs.Address)
	if st != health.Up {
		if hc.OnFailure == config.OnFailureQuiesce {
			r.Weight, r.Quiesced = 0, true
		} else {
			r.Down = true
		}
		return
	}
	r.Weight = SlowStartWeight(r.Weight, upFor, hc.SlowStart)
}

// sorryKey names the sorry server of vs in the ID registry; it never equals a realKey.
func sorryKey(vs *config.VirtualServer) string {
	return vs.Key() + "|sorry|" + vs.SorryServer.String()
}

// standIn applies vs's quorum and sorry server to svc, whose real servers t holds already: see
// SetHealth.
func (s *state) standIn(t *dataplane.Tables, vs *config.VirtualServer, svc *dataplane.Service, hops NextHops) error {
	up := 0
	for _, id := range svc.RealIDs {
		if r := t.Reals[id]; r.Resolved && !r.Down && !r.Disabled && r.Weight > 0 {
			up++
		}
	}
	short := up == 0 || up < vs.Quorum
	if !vs.SorryServer.IsValid() {
		svc.NoQuorum = vs.Quorum > 0 && up < vs.Quorum
		return nil
	}
	rid, ok := s.realIDs.get(sorryKey(vs))
	if !ok {
		return fmt.Errorf("virtual server %s: sorry server %s: more than %d real servers, counting removed ones whose connections have not ended; use fewer",
			vs.Key(), vs.SorryServer, idSpace)
	}
	r := &dataplane.Real{ID: rid, Service: svc.ID, Addr: vs.SorryServer, Weight: 1, Port: -1, Sorry: true, Standby: !short}
	r.Counts = s.countsOf(rid)
	resolve(r, vs.Method, hops)
	if short {
		for _, id := range svc.RealIDs {
			t.Reals[id].Standby = true
		}
	}
	svc.RealIDs = append(svc.RealIDs, rid)
	setAt(&t.Reals, int(rid), r)
	return nil
}
