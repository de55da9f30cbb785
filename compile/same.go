package compile

import (
	"slices"

	"github.com/govs/govs/dataplane"
)

// Same reports whether two tables forward identically (ignoring the generation), so that a
// recompile that changes nothing need not be published.
func Same(a, b *dataplane.Tables) bool {
	if a == nil || b == nil || len(a.Services) != len(b.Services) || len(a.Reals) != len(b.Reals) ||
		a.ExpireNodestConn != b.ExpireNodestConn || a.Draining != b.Draining || !slices.Equal(a.DrainingLocals, b.DrainingLocals) {
		return false
	}
	for i := range a.Reals {
		x, y := a.Reals[i], b.Reals[i]
		if (x == nil) != (y == nil) {
			return false
		}
		if x != nil && (x.ID != y.ID || x.Addr != y.Addr || x.Weight != y.Weight || x.Port != y.Port || x.MAC != y.MAC ||
			x.Resolved != y.Resolved || x.Service != y.Service || x.Removed != y.Removed || x.Counts != y.Counts ||
			x.UpperThreshold != y.UpperThreshold || x.LowerThreshold != y.LowerThreshold ||
			x.Down != y.Down || x.Quiesced != y.Quiesced || x.Standby != y.Standby || x.Sorry != y.Sorry || x.Disabled != y.Disabled ||
			x.TunnelSrc != y.TunnelSrc || x.MTU != y.MTU) {
			return false
		}
	}
	for i := range a.Services {
		x, y := a.Services[i], b.Services[i]
		if (x == nil) != (y == nil) {
			return false
		}
		if x != nil && (x.ID != y.ID || x.Name != y.Name || x.VIP != y.VIP || x.Proto != y.Proto ||
			x.Method != y.Method || x.Scheduler != y.Scheduler ||
			x.SchedOptions != y.SchedOptions || x.Persistence != y.Persistence ||
			x.PersistenceBits != y.PersistenceBits || x.OnePacket != y.OnePacket || x.NoQuorum != y.NoQuorum ||
			x.Tunnel != y.Tunnel || x.TunnelPort != y.TunnelPort || !slices.Equal(x.Locals, y.Locals) ||
			x.LocalPortMin != y.LocalPortMin || x.LocalPortMax != y.LocalPortMax ||
			!slices.Equal(x.RealIDs, y.RealIDs)) {
			return false
		}
	}
	return true
}
