//go:build linux

package main

import (
	"golang.org/x/sys/unix"
)

// Capabilities govs run needs (contrib/govs.service says which part needs which).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// missingCapabilities names the capabilities the data plane needs and this process lacks in its
// effective set, so that govs run stops with one line before it starts anything, rather than
// part-way with an error from whichever socket came first. afxdp adds what loading the XDP
// program takes. nil when it cannot tell (the kernel then has the last word).
func missingCapabilities(afxdp bool) []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	var missing []string
	for _, c := range []struct {
		n    uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capNetRaw, "CAP_NET_RAW"}} {
		if !has(c.n) {
			missing = append(missing, c.name)
		}
	}
	if afxdp && !has(capSysAdmin) {
		if !has(capBPF) {
			missing = append(missing, "CAP_BPF")
		}
		if !has(capPerfmon) {
			missing = append(missing, "CAP_PERFMON")
		}
	}
	return missing
}
