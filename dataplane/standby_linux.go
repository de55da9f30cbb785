//go:build linux

package dataplane

import (
	"golang.org/x/net/bpf"

	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/bpfgen"
)

// standbyFilter is the receive sockets' filter while the engine stands down: the kernel hands
// the rings nothing, so a standing-down engine costs nothing per frame and forwards nothing, not
// even frames that still reach it because a client has the VIPs' old MAC.
var standbyFilter = rejectAll

// SetStandby makes the engine stand down (on) or forward again (off). An HA backup stands down:
// its workers keep running (and keep their connection tables) but receive nothing, because
// every receive socket's filter rejects every frame; taking over puts back the filter for the
// published tables. Frames already in the rings are still forwarded. The kernel guard's rules
// stay either way: the host's own IP stack must not handle VIP frames in any role.
func (e *Engine) SetStandby(on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.os.closed || e.os.standby == on {
		return nil
	}
	if e.os.xdp != nil {
		if err := e.setXDPFilter(e.tables.Load(), on, localAddrs()); err != nil {
			return err
		}
		e.os.standby = on
		return nil
	}
	filter := standbyFilter
	if !on {
		var err error
		if filter, err = bpfgen.SocketFilter(filterSpec(e.tables.Load())); err != nil {
			return errorf("socket filter: %w", err)
		}
	}
	if err := e.os.setFilter(filter); err != nil {
		return err
	}
	e.os.standby = on
	return nil
}

// Standby reports whether the engine stands down (see SetStandby).
func (e *Engine) Standby() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.os.standby
}

// setFilter installs filter on every receive socket: both ring sets of every worker on every
// interface, since the fanout program may send a frame to either.
func (eo *engineOS) setFilter(filter []bpf.RawInstruction) error {
	for _, set := range [][][]*afpacket.Socket{eo.socks, eo.frames} {
		for _, socks := range set {
			for _, s := range socks {
				if err := s.SetFilter(filter); err != nil {
					return errorf("set socket filter: %w", err)
				}
			}
		}
	}
	return nil
}
