package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/govs/govs/dataplane/bpfgen"
)

// fanoutPlan is the hash rule the fanout program applies to each service's frames (see
// Tables.hashGroups), and what the operator was told about rules that differ from the
// configured ones.
//
// A reload never moves an established connection to a worker that does not hold it. A service
// whose configured rule changes (persistence switched on or off, another persistence_netmask, a
// NAT real server now shared with a service of other persistence) gets its new rule at once if it
// has no established connections, or if none of them would move. Otherwise:
//   - when its rule in force already covers the new one (persistence switched off, a longer
//     netmask), the rule in force stays until the connections have ended: persistence holds, only
//     the spread over workers is coarser meanwhile;
//   - when the new rule is stickier (persistence switched on, a shorter netmask), the rule in force
//     stays until the connections have ended, and until then a client's new connections keep one
//     real server per worker, not across workers;
//   - only when a reload merges services with different rules in force into one group (a real
//     server newly shared under NAT) does one rule have to win; the services whose flows move are
//     logged with their connection counts.
//
// The engine re-plans when it publishes tables and, while a rule waits, every fanoutCheckEvery.
type fanoutPlan struct {
	rules map[serviceKey]bpfgen.HashRule
	notes map[serviceKey]fanoutNote
}

// fanoutNote is why a service's rule in force differs from its configured one.
type fanoutNote struct {
	kind       noteKind
	rule, want bpfgen.HashRule
	msg        string // for the log; counts in it may differ between plans of the same note
}

type noteKind uint8

const (
	noteCoarser noteKind = iota + 1 // the rule in force covers the configured one
	noteWaits                       // the configured rule is stickier and waits
	noteMoved                       // the service's flows moved (a merge); logged once
)

func keyOf(s *Service) serviceKey { return serviceKey{s.addr, s.VIP.Port(), s.Proto} }

// planFanout plans the rules for t after prev (nil at start) with workers workers.
func planFanout(t *Tables, prev *fanoutPlan, workers int) *fanoutPlan {
	p := &fanoutPlan{rules: map[serviceKey]bpfgen.HashRule{}, notes: map[serviceKey]fanoutNote{}}
	conns := map[uint16]int64{}
	for _, r := range t.Reals {
		if s := t.owner(r); s != nil && r.Counts != nil {
			conns[s.ID] += r.Counts.Active.Load() + r.Counts.Inactive.Load()
		}
	}
	groups := map[int][]*Service{}
	var order []int
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		if _, ok := groups[s.hashGroup]; !ok {
			order = append(order, s.hashGroup)
		}
		groups[s.hashGroup] = append(groups[s.hashGroup], s)
	}
	for _, g := range order {
		members := groups[g]
		want := members[0].hashRule
		install := func(r bpfgen.HashRule) {
			for _, s := range members {
				p.rules[keyOf(s)] = r
			}
		}
		// With one worker every frame reaches it, whatever the rule.
		if workers <= 1 || prev == nil {
			install(want)
			continue
		}
		var busy []*Service // members with established connections that want would move
		var inForce []bpfgen.HashRule
		joined := want
		for _, s := range members {
			r, ok := prev.rules[keyOf(s)]
			if !ok {
				continue // new: no connections yet
			}
			inForce = append(inForce, r)
			joined = joined.Join(r)
			if conns[s.ID] > 0 && r != want {
				busy = append(busy, s)
			}
		}
		if len(busy) == 0 {
			install(want)
			continue
		}
		var n int64
		var names []string
		for _, s := range busy {
			n += conns[s.ID]
			names = append(names, s.Name)
		}
		// until says whose connections a rule waits for, as seen from member s.
		until := func(s *Service) string {
			if len(busy) == 1 && busy[0] == s {
				return fmt.Sprintf("until its %d connections (open or closing) have ended", n)
			}
			return fmt.Sprintf("until the %d connections (open or closing) of %s (sharing real servers with it) have ended", n, strings.Join(names, ", "))
		}
		stays := !slices.ContainsFunc(busy, func(s *Service) bool { return prev.rules[keyOf(s)] != joined })
		same := !slices.ContainsFunc(inForce, func(r bpfgen.HashRule) bool { return r != inForce[0] })
		switch {
		case stays:
			install(joined)
			for _, s := range members {
				p.notes[keyOf(s)] = fanoutNote{noteCoarser, joined, want, fmt.Sprintf(
					"virtual server %s: workers keep taking its flows by %s (configured: by %s) %s, so that none reaches a worker that does not hold it",
					s.Name, joined, want, until(s))}
			}
		case same:
			install(inForce[0])
			for _, s := range members {
				p.notes[keyOf(s)] = fanoutNote{noteWaits, inForce[0], want, fmt.Sprintf(
					"virtual server %s: persistence across workers (flows by %s) waits %s, or for a restart, so that none reaches a worker that does not hold it; meanwhile its flows go to workers by %s and a client's new connections keep one real server per worker only",
					s.Name, want, until(s), inForce[0])}
			}
		default:
			install(joined)
			for _, s := range busy {
				p.notes[keyOf(s)] = fanoutNote{noteMoved, joined, want, fmt.Sprintf(
					"virtual server %s now shares real servers with a virtual server of other persistence, so workers take its flows by %s instead of %s: some of its %d established connections may reach a worker that does not hold them and stall",
					s.Name, joined, prev.rules[keyOf(s)], conns[s.ID])}
			}
		}
	}
	return p
}

// waiting reports whether a rule in force waits for connections to end.
func (p *fanoutPlan) waiting() bool {
	for _, n := range p.notes {
		if n.kind != noteMoved {
			return true
		}
	}
	return false
}

// sameRules reports whether p and o install the same rules.
func (p *fanoutPlan) sameRules(o *fanoutPlan) bool {
	if o == nil || len(p.rules) != len(o.rules) {
		return false
	}
	for k, r := range p.rules {
		if or, ok := o.rules[k]; !ok || or != r {
			return false
		}
	}
	return true
}

// report logs what changed since prev: new or changed notes, and rules that now apply as configured.
func (p *fanoutPlan) report(t *Tables, prev *fanoutPlan, logf func(string, ...any)) {
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		k := keyOf(s)
		n, ok := p.notes[k]
		var was fanoutNote
		if prev != nil {
			was = prev.notes[k]
		}
		switch {
		case ok && (n.kind != was.kind || n.rule != was.rule || n.want != was.want):
			logf("%s", n.msg)
		case !ok && was.kind != 0 && was.kind != noteMoved && p.rules[k] == s.hashRule:
			logf("virtual server %s: workers now take its flows by %s, as configured", s.Name, s.hashRule)
		}
	}
}

// spec is the fanout program's view of t under p's rules: every service's VIP endpoint, and the
// endpoints its frames show when the client is not the source: the NAT real servers it forwards
// to (those draining included) and, for ICMP errors quoting forwarded packets, its VIP under DR and
// tun; and the FullNAT local addresses (draining ones included), whose frames go to workers by
// local port.
func (p *fanoutPlan) spec(t *Tables) bpfgen.FanoutSpec {
	var spec bpfgen.FanoutSpec
	seen := map[netip.Addr]bool{}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		rule := p.rules[keyOf(s)]
		a := s.VIP.Addr()
		if !seen[a] {
			seen[a] = true
			spec.VIPs = append(spec.VIPs, a)
		}
		ep := bpfgen.Endpoint{Addr: a, Proto: s.Proto, Port: s.VIP.Port()}
		spec.VIPRules = append(spec.VIPRules, bpfgen.EndpointRule{Endpoint: ep, Rule: rule})
		if s.Method == MethodDR || s.Method == MethodTun {
			spec.ServerRules = append(spec.ServerRules, bpfgen.EndpointRule{Endpoint: ep, Rule: rule})
		}
		for _, l := range s.Locals {
			if !seen[l] {
				seen[l] = true
				spec.Locals = append(spec.Locals, l)
			}
		}
	}
	for _, l := range t.DrainingLocals {
		if !seen[l] {
			seen[l] = true
			spec.Locals = append(spec.Locals, l)
		}
	}
	for _, r := range t.Reals {
		if s := t.owner(r); s != nil && s.Method == MethodNAT {
			ep := bpfgen.Endpoint{Addr: r.Addr.Addr(), Proto: s.Proto, Port: r.Addr.Port()}
			spec.ServerRules = append(spec.ServerRules, bpfgen.EndpointRule{Endpoint: ep, Rule: p.rules[keyOf(s)]})
		}
	}
	return spec
}
