package compile

import (
	"net/netip"

	"github.com/govs/govs/dataplane"
)

// RealRef names one real server of one virtual server: the virtual server's key (config's
// VirtualServer.Key, "tcp/198.18.0.100:80") and the real server's address.
type RealRef struct {
	Service string
	Real    netip.AddrPort
}

// Override is a runtime change to one real server, made through the control socket (`govs ctl`).
type Override struct {
	// Weight replaces the configured weight when SetWeight.
	Weight    int
	SetWeight bool
	// Disabled takes the real server out of rotation (dataplane.Real.Disabled).
	Disabled bool
}

// Overrides are the runtime changes in force, by real server. Compile applies them on top of the
// configuration (Compiler.Overrides), so that every compile, a neighbour change's included, keeps
// them; the daemon drops them when it reloads the file. One naming a real server the
// configuration does not list changes nothing.
type Overrides map[RealRef]Override

// apply changes r, real server addr of virtual server service, as an override says.
func (o Overrides) apply(service string, addr netip.AddrPort, r *dataplane.Real) {
	v, ok := o[RealRef{service, addr}]
	if !ok {
		return
	}
	if v.SetWeight {
		r.Weight = int32(v.Weight)
	}
	r.Disabled = v.Disabled
}
