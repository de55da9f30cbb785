package bpfgen

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// TestSteerMatchesFanout runs the fanout programs of assorted specifications (the corpus and
// specifications of TestVerdictsUnchanged, plus FullNAT local addresses) over every frame of the
// verdict corpus, as the kernel runs a fanout program, and the steering program of the same
// specification over the whole frame: both must choose the same member.
func TestSteerMatchesFanout(t *testing.T) {
	corpus := verdictCorpus(t)
	vips := []netip.Addr{
		netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.7.9"),
		netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::1:1"), netip.MustParseAddr("2001:2:0:9::1"),
	}
	sticky := func(addr string, proto uint8, port uint16, bits int) EndpointRule {
		return EndpointRule{Endpoint{netip.MustParseAddr(addr), proto, port}, HashRule{Sticky: true, Bits: bits}}
	}
	rules := FanoutSpec{
		VIPs:        vips,
		VIPRules:    []EndpointRule{sticky("198.19.0.1", 6, 80, 24), sticky("198.19.0.2", 17, 0, 16), sticky("2001:2::1", 6, 80, 56)},
		ServerRules: []EndpointRule{sticky("198.18.255.10", 6, 8080, 24), sticky("2001:2:0:ffff::10", 6, 8080, 56)},
		Locals:      []netip.Addr{netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("2001:2:0:ffff::12")},
	}
	for _, c := range []struct {
		name    string
		spec    FanoutSpec
		members int
	}{
		{"plain", FanoutSpec{VIPs: vips}, 2}, {"plain", FanoutSpec{VIPs: vips}, 3}, {"plain", FanoutSpec{VIPs: vips}, 4},
		{"none", FanoutSpec{}, 3}, {"rules", rules, 2}, {"rules", rules, 5},
	} {
		t.Run(fmt.Sprintf("%s/members=%d", c.name, c.members), func(t *testing.T) {
			fanout := disassemble(t, func() ([]bpf.RawInstruction, error) { return FanoutProgramSpec(c.spec, c.members, 0) })
			steer := disassemble(t, func() ([]bpf.RawInstruction, error) { return SteerProgramSpec(c.spec, c.members) })
			vm, err := bpf.NewVM(steer)
			if err != nil {
				t.Fatalf("VM rejects the steering program: %v", err)
			}
			spread := make([]int, c.members)
			for i, fr := range corpus {
				if len(fr) < 14 {
					continue // no device delivers less than an Ethernet header
				}
				want, ok := runFanoutVM(fanout, fr)
				if !ok {
					t.Fatalf("frame %d: the fanout program fails in the VM", i)
				}
				got, err := vm.Run(fr)
				if err != nil {
					t.Fatalf("frame %d: VM: %v", i, err)
				}
				if got != want {
					t.Errorf("frame %d (% x...): steering chooses member %d, the fanout program %d", i, fr[:min(len(fr), 48)], got, want)
				}
				spread[got]++
			}
			for m, n := range spread {
				if n == 0 {
					t.Errorf("member %d got no frame: %v", m, spread)
				}
			}
		})
	}
}

func disassemble(t *testing.T, gen func() ([]bpf.RawInstruction, error)) []bpf.Instruction {
	t.Helper()
	raw, err := gen()
	if err != nil {
		t.Fatal(err)
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program does not disassemble")
	}
	return insns
}
