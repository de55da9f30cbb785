package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/dataplane/bpfgen"
)

// persistent sets service id's persistence in t (netmask bits; 0 bits = none) and refinishes t.
func persistent(t *Tables, bits map[uint16]int) *Tables {
	for id, b := range bits {
		s := t.Services[id]
		s.Persistence, s.PersistenceBits = 0, 0
		if b > 0 {
			s.Persistence, s.PersistenceBits = int64(time.Minute), b
		}
	}
	t.Finish()
	return t
}

func sticky(bits int) bpfgen.HashRule { return bpfgen.HashRule{Sticky: true, Bits: bits} }

// TestHashGroups: services share a fanout rule only when their NAT replies cannot be told apart (a
// real server address and protocol in common, with the same port or port 0, draining real servers
// included); the shared rule covers every member's persistence.
func TestHashGroups(t *testing.T) {
	nat := func(id uint16, vip string, reals ...realSpec) svcSpec {
		return svcSpec{id: id, vip: vip, proto: 6, method: MethodNAT, reals: reals}
	}
	rs := func(id uint16, addr string) realSpec { return realSpec{id: id, addr: addr, weight: 1, mac: macRS[0]} }
	tbl := buildTables(1,
		nat(0, "198.18.0.100:80", rs(0, "198.18.2.1:80")),
		nat(1, "198.18.0.100:8080", rs(1, "198.18.2.2:8080")),
		nat(2, "198.18.0.101:80", rs(2, "198.18.2.1:80")), // shares rs 198.18.2.1:80 with 0
		nat(3, "198.18.0.102:0", rs(3, "198.18.2.3:0")),
		nat(4, "198.18.0.103:22", rs(4, "198.18.2.3:22")), // port 22 of 3's all-ports real server
		svcSpec{id: 5, vip: "198.18.0.104:80", proto: 6, method: MethodDR, reals: []realSpec{rs(5, "198.18.0.11:80")}},
		nat(6, "198.18.0.105:80", rs(6, "198.18.2.1:81")),                                                               // same address, other port
		svcSpec{id: 7, vip: "198.18.0.106:80", proto: 17, method: MethodNAT, reals: []realSpec{rs(7, "198.18.2.1:80")}}, // UDP
		nat(8, "198.18.0.107:80", rs(8, "198.18.2.4:80")),
		nat(9, "198.18.0.108:80", rs(9, "198.18.2.5:80")),
	)
	// A reload replaced service 8's real server 198.18.2.4:80 (its connections drain) and gave
	// that address to 9.
	drain := *tbl.Reals[8]
	drain.ID, drain.Removed = 10, true
	setAtTest(&tbl.Reals, 10, &drain)
	tbl.Reals[8].Addr = netip.MustParseAddrPort("198.18.2.6:80")
	tbl.Reals[9].Addr = netip.MustParseAddrPort("198.18.2.4:80")
	// A removed service's draining real server shares nothing: its service is gone.
	gone := *tbl.Reals[8]
	gone.ID, gone.Service, gone.Removed = 11, 12, true
	gone.Addr = netip.MustParseAddrPort("198.18.2.1:80")
	setAtTest(&tbl.Reals, 11, &gone)
	persistent(tbl, map[uint16]int{1: 24, 2: 16, 3: 32, 5: 24, 8: 20})

	want := map[uint16]bpfgen.HashRule{
		0: sticky(16), 2: sticky(16), // grouped: 2's persistence covers 0
		1: sticky(24),
		3: sticky(32), 4: sticky(32), // grouped through the all-ports real server
		5: sticky(24),
		6: {}, 7: {}, // other port, other protocol: not grouped with 0 and 2
		8: sticky(20), 9: sticky(20), // grouped through the draining real server
	}
	for id, w := range want {
		s := tbl.Services[id]
		if s.hashRule != w {
			t.Errorf("service %d (%s): rule %v, want %v", id, s.Name, s.hashRule, w)
		}
		if r, ok := tbl.HashRule(s.addr, s.VIP.Port(), s.Proto); !ok || r != w {
			t.Errorf("HashRule(%s) = %v, %v; want %v", s.Name, r, ok, w)
		}
	}
	same := func(a, b uint16) bool { return tbl.Services[a].hashGroup == tbl.Services[b].hashGroup }
	for _, p := range [][2]uint16{{0, 2}, {3, 4}, {8, 9}} {
		if !same(p[0], p[1]) {
			t.Errorf("services %d and %d are not grouped", p[0], p[1])
		}
	}
	for _, p := range [][2]uint16{{0, 1}, {0, 6}, {0, 7}, {1, 5}, {0, 9}} {
		if same(p[0], p[1]) {
			t.Errorf("services %d and %d are grouped", p[0], p[1])
		}
	}
	// The fanout spec lists the draining real server (for its replies) and not the gone one.
	spec := planFanout(tbl, nil, 2).spec(tbl)
	var drains, gones int
	for _, r := range spec.ServerRules {
		if r.Addr == netip.MustParseAddr("198.18.2.4") {
			drains++
		}
		if r.Addr == netip.MustParseAddr("198.18.2.1") && r.Rule == sticky(16) {
			gones++
		}
	}
	if drains != 2 || gones != 2 {
		t.Errorf("server rules %v: want 198.18.2.4 twice (live and draining), 198.18.2.1 /16 twice (services 0 and 2)", spec.ServerRules)
	}
	if _, err := bpfgen.FanoutProgramSpec(spec, 2, 0); err != nil {
		t.Errorf("fanout program: %v", err)
	}
}

// TestPlanFanout walks one service's persistence through reloads while it holds connections: its
// rule in force never moves them, a waiting rule applies once they have ended, another service
// keeps its rule throughout, and each step is logged once, with the service's name.
func TestPlanFanout(t *testing.T) {
	specs := []svcSpec{
		{id: 0, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, reals: []realSpec{{id: 0, addr: "198.18.2.1:80", weight: 1, mac: macRS[0]}}},
		{id: 1, vip: "198.18.0.100:8080", proto: 6, method: MethodNAT, reals: []realSpec{{id: 1, addr: "198.18.2.2:8080", weight: 1, mac: macRS[1]}}},
	}
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	var plan *fanoutPlan
	var counts = buildTables(1, specs...) // holds the shared connection counts
	step := func(bits int, conns int64) *Tables {
		t.Helper()
		tbl := buildTables(1, specs...)
		for i, r := range tbl.Reals {
			r.Counts = counts.Reals[i].Counts
		}
		counts.Reals[1].Counts.Inactive.Store(conns)
		counts.Reals[0].Counts.Inactive.Store(5) // service 0 is always busy
		persistent(tbl, map[uint16]int{1: bits})
		logs = nil
		next := planFanout(tbl, plan, 2)
		next.report(tbl, plan, logf)
		plan = next
		return tbl
	}
	rule := func(tbl *Tables, id uint16) bpfgen.HashRule { return plan.rules[keyOf(tbl.Services[id])] }
	check := func(what string, tbl *Tables, want bpfgen.HashRule, log string) {
		t.Helper()
		if got := rule(tbl, 1); got != want {
			t.Errorf("%s: service 1's rule %v, want %v", what, got, want)
		}
		if got := rule(tbl, 0); got != (bpfgen.HashRule{}) {
			t.Errorf("%s: service 0 (no persistence) moved to %v", what, got)
		}
		switch {
		case log == "" && len(logs) > 0:
			t.Errorf("%s: logged %q, want nothing", what, logs)
		case log != "" && (len(logs) != 1 || !strings.Contains(logs[0], "198.18.0.100:8080") || !strings.Contains(logs[0], log)):
			t.Errorf("%s: logged %q, want one line about 198.18.0.100:8080 with %q", what, logs, log)
		}
	}
	tbl := step(0, 3)
	check("start", tbl, bpfgen.HashRule{}, "")
	tbl = step(24, 3)
	check("persistence on, busy", tbl, bpfgen.HashRule{}, "waits until its 3 connections (open or closing)")
	if !plan.waiting() {
		t.Error("a waiting rule does not make the plan wait")
	}
	tbl = step(24, 2)
	check("still busy", tbl, bpfgen.HashRule{}, "")
	tbl = step(24, 0)
	check("connections ended", tbl, sticky(24), "now take its flows by client network /24, as configured")
	if plan.waiting() {
		t.Error("the plan still waits")
	}
	tbl = step(16, 4)
	check("shorter netmask, busy", tbl, sticky(24), "waits")
	tbl = step(16, 0)
	check("connections ended", tbl, sticky(16), "as configured")
	tbl = step(24, 4)
	check("longer netmask, busy", tbl, sticky(16), "keep taking its flows by client network /16")
	tbl = step(0, 4)
	check("persistence off, busy", tbl, sticky(16), "keep taking its flows by client network /16 (configured: by client address and port)")
	tbl = step(0, 0)
	check("connections ended", tbl, bpfgen.HashRule{}, "client address and port, as configured")
	tbl = step(8, 0)
	check("persistence on, idle", tbl, sticky(8), "")

	// One worker: every frame reaches it, the configured rule applies at once.
	one := planFanout(tbl, &fanoutPlan{rules: map[serviceKey]bpfgen.HashRule{keyOf(tbl.Services[1]): {}}}, 1)
	if r := one.rules[keyOf(tbl.Services[1])]; r != sticky(8) || len(one.notes) != 0 {
		t.Errorf("one worker: rule %v, notes %v", r, one.notes)
	}
}

// TestPlanFanoutMerge: a reload that makes two busy services of different rules share a NAT real
// server has to move one's flows; that one is logged with its connection count.
func TestPlanFanoutMerge(t *testing.T) {
	a := svcSpec{id: 0, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, reals: []realSpec{{id: 0, addr: "198.18.2.1:80", weight: 1, mac: macRS[0]}}}
	b := svcSpec{id: 1, vip: "198.18.0.101:80", proto: 6, method: MethodNAT, reals: []realSpec{{id: 1, addr: "198.18.2.2:80", weight: 1, mac: macRS[1]}}}
	before := persistent(buildTables(1, a, b), map[uint16]int{1: 24})
	before.Reals[0].Counts.Inactive.Store(7)
	before.Reals[1].Counts.Inactive.Store(2)
	plan := planFanout(before, nil, 2)
	b.reals = append(b.reals, realSpec{id: 2, addr: "198.18.2.1:80", weight: 1, mac: macRS[0]})
	after := persistent(buildTables(2, a, b), map[uint16]int{1: 24})
	for i := range 2 {
		after.Reals[i].Counts = before.Reals[i].Counts
	}
	var logs []string
	next := planFanout(after, plan, 2)
	next.report(after, plan, func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
	for id := range 2 {
		if r := next.rules[keyOf(after.Services[id])]; r != sticky(24) {
			t.Errorf("service %d: rule %v, want /24 for the group", id, r)
		}
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "198.18.0.100:80") || !strings.Contains(logs[0], "7 established connections") {
		t.Errorf("logged %q, want one line about 198.18.0.100:80 and its 7 connections", logs)
	}
}
