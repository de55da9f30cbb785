package main

import (
	"strings"
	"testing"

	"github.com/govs/govs/control"
)

// TestStatsHeaderIO: govs stats's first line names the packet I/O, the XDP mode and, when set,
// xdp_irq_defer and whether the NAPI runs are deferred now.
func TestStatsHeaderIO(t *testing.T) {
	for _, tt := range []struct {
		st   control.Status
		want string
	}{
		{control.Status{IO: "afpacket"}, "  io=afpacket  "},
		{control.Status{IO: "afxdp", XDPMode: "driver", XDPIRQDefer: "off"}, "  io=afxdp(driver)  "},
		{control.Status{IO: "afxdp", XDPMode: "driver", XDPIRQDefer: "auto", XDPIRQDeferOn: true}, "  io=afxdp(driver, irq defer auto: on)  "},
		{control.Status{IO: "afxdp", XDPMode: "generic", XDPIRQDefer: "50us"}, "  io=afxdp(generic, irq defer 50us: off)  "},
	} {
		var b strings.Builder
		printStats(&b, &tt.st)
		if first, _, _ := strings.Cut(b.String(), "\n"); !strings.Contains(first, tt.want) {
			t.Errorf("header %q, want it to contain %q", first, tt.want)
		}
	}
}
