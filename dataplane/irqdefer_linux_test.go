//go:build linux

package dataplane

import "testing"

// TestIRQDeferPolicy: auto defers after two checks in a row above the on rate, and stops after
// five in a row below the off rate; a check between the two rates, or one on the other side,
// starts the count again.
func TestIRQDeferPolicy(t *testing.T) {
	var p irqDeferPolicy
	steps := []struct {
		pps        float64
		change, on bool
	}{
		{200e3, false, false}, {20e3, false, false}, // one fast check is not enough
		{200e3, false, false}, {200e3, true, true}, // two in a row
		{100e3, false, true}, // between the rates: stays on
		{10e3, false, true}, {10e3, false, true}, {10e3, false, true}, {10e3, false, true},
		{200e3, false, true}, // a fast check restarts the count
		{10e3, false, true}, {10e3, false, true}, {10e3, false, true}, {10e3, false, true}, {10e3, true, false},
		{100e3, false, false},
	}
	for i, s := range steps {
		change, on := p.next(s.pps)
		if change != s.change || on != s.on {
			t.Fatalf("check %d (%.0f/s): change %v, on %v; want %v, %v", i, s.pps, change, on, s.change, s.on)
		}
	}
}
