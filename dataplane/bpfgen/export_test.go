package bpfgen

import (
	"net/netip"

	"golang.org/x/net/bpf"
)

// FanoutProgram is FanoutProgramSpec without hash rules, for a group of members members.
func FanoutProgram(vips []netip.Addr, members int) ([]bpf.RawInstruction, error) {
	return FanoutProgramBase(vips, members, 0)
}

// FanoutProgramBase is FanoutProgramSpec without hash rules.
func FanoutProgramBase(vips []netip.Addr, members, base int) ([]bpf.RawInstruction, error) {
	return FanoutProgramSpec(FanoutSpec{VIPs: vips}, members, base)
}
