package main

import (
	"strings"
	"testing"
)

// TestClassifyPerf: a forwarder sample and a softirq that interrupted a compiler are the
// phase's own, a compiler's own sample is foreign, the idle loop is idle, and a softirq taken
// in the idle loop is own.
func TestClassifyPerf(t *testing.T) {
	in := strings.Join([]string{
		"afxdp-benchlab2 4242 [000]",
		"\t  ffffffff81000001 xsk_generic_xmit+0x12",
		"\t  ffffffff81000002 __sys_sendto",
		"",
		"compile 777 [000]",
		"\t          379ff1 cmd/internal/obj/x86.span6",
		"",
		"compile 777 [000]",
		"\t  ffffffff81000003 enqueue_to_backlog",
		"\t  ffffffff81000004 net_rx_action",
		"\t  ffffffff81000005 handle_softirqs",
		"\t          379ff1 cmd/internal/obj/x86.span6",
		"",
		"         swapper     0 [000]",
		"\t  ffffffff81000006 pv_native_safe_halt",
		"\t  ffffffff81000007 do_idle",
		"",
		"         swapper     0 [000]",
		"\t  ffffffff81000008 handle_softirqs",
		"\t  ffffffff81000009 __irq_exit_rcu",
		"\t  ffffffff81000006 pv_native_safe_halt",
		"",
		" napi/l0-8195  123 [001]",
		"\t  ffffffff8100000a veth_poll",
		"",
	}, "\n")
	p, err := classifyPerf(strings.NewReader(in), map[int]bool{4242: true}, []string{"napi/l0-"})
	if err != nil {
		t.Fatal(err)
	}
	if c := p[0]; c == nil || c.Samples != 5 || c.Own != 3 || c.Foreign != 1 || c.Idle != 1 {
		t.Errorf("CPU 0: got %+v, want 5 samples: 3 own, 1 foreign, 1 idle", c)
	}
	if c := p[1]; c == nil || c.Samples != 1 || c.Own != 1 {
		t.Errorf("CPU 1: got %+v, want the NAPI thread's sample, own", c)
	}
}
