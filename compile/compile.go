// Package compile turns a configuration into the data plane's tables. The daemon and the offline
// benchmark both build their tables here, so a replay forwards as `govs run` does.
//
// A Compiler remembers what earlier compiles handed out: a service or real server keeps its ID and
// its connection counts across reloads (connections name their real server by ID), and a real
// server a reload removes stays in the tables, marked Removed, until its connections end.
package compile

import (
	"fmt"
	"net/netip"

	"github.com/govs/govs/config"
	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/sched"
)

// Hop is how the data plane reaches a real server.
type Hop struct {
	// Port is the index, in the data plane's interface list, of the interface that reaches it.
	Port int
	// MAC is the next hop's hardware address.
	MAC [6]byte
	// OnLink says the next hop is the real server itself, not a gateway: direct routing needs it,
	// as it rewrites only the MAC addresses.
	OnLink bool
	// Src is this host's address towards the real server (the route's preferred source, an
	// address of the outgoing interface): the outer source of tunnelled frames. Method tun needs
	// it; the other methods ignore it.
	Src netip.Addr
	// MTU is the path MTU towards the real server (the route's, else the interface's); 0 unknown.
	// Method tun answers clients whose packets it cannot encapsulate within it.
	MTU int
}

// NextHops tells a Compiler where real servers are.
type NextHops interface {
	// NextHop returns the hop to real server id at addr, and false while it is unknown (the real
	// server then takes no new connections). The daemon answers by address; the offline replay
	// gives each ID a MAC of its own, to count where frames went.
	NextHop(id uint16, addr netip.Addr) (Hop, bool)
}

// A Compiler compiles configurations into tables, keeping IDs, connection counts and draining real
// servers from one compile to the next. Compile builds tables from the state of the last Commit;
// Commit adopts them once they are in use, so tables that were never published (a reload the data
// plane refused) leave no trace. A Compiler is not safe for concurrent use.
type Compiler struct {
	// Overrides are applied on top of every configuration compiled (see Overrides).
	Overrides Overrides
	// DrainingLocals become the tables' DrainingLocals: FullNAT local addresses the configuration
	// no longer lists whose connections have not ended (the daemon keeps track of them).
	DrainingLocals []netip.Addr

	cur state
	// pending is the state that tables (the last Compile's result) leave behind, until Commit.
	pending *state
	tables  *dataplane.Tables
	health  Health // see SetHealth; nil: every real server counts as up
}

// state is what a Compiler carries from one compile to the next.
type state struct {
	svcIDs  idRegistry                 // service IDs by service key
	realIDs idRegistry                 // real-server IDs by service key and address
	counts  map[uint16]*sched.Counts   // connection counts by real-server ID
	last    map[uint16]*dataplane.Real // the last compiled entry of each configured real-server ID
	pos     map[uint16]*sched.Position // rr and wrr positions by service ID (see sched.Position)
}

// New returns a Compiler that has handed out nothing yet.
func New() *Compiler {
	return &Compiler{cur: state{counts: map[uint16]*sched.Counts{}, last: map[uint16]*dataplane.Real{}, pos: map[uint16]*sched.Position{}}}
}

// Compile builds the tables (Gen unset) for cfg, with next hops from hops. A service or real
// server that earlier committed tables held keeps its ID and counts; one that cfg no longer lists
// loses its ID, except a real server with connections: it stays, marked Removed (no new
// connections), until they end, and gets its ID back if it is listed again meanwhile. Its
// service, if cfg no longer lists that either, keeps its ID as long, without an entry.
//
// It fails when cfg needs more than 65536 service or real-server IDs (draining real servers
// included) or when a service's scheduler cannot be built; the compiler's state is then unchanged.
func (c *Compiler) Compile(cfg *config.Config, hops NextHops) (*dataplane.Tables, error) {
	s := c.cur.clone()
	t := &dataplane.Tables{ExpireNodestConn: cfg.Conntrack.ExpireNodestConn, DrainingLocals: c.DrainingLocals}
	liveS, liveR := map[string]bool{}, map[string]bool{}
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		liveS[vs.Key()] = true
		for j := range vs.RealServers {
			liveR[realKey(vs, &vs.RealServers[j])] = true
		}
		if vs.SorryServer.IsValid() {
			liveR[sorryKey(vs)] = true
		}
	}
	// Release first, so that the IDs released now count as free below.
	//
	// A removed real server keeps its ID, and its entry (marked Removed, so it gets no new
	// connections) while connections to it remain; then both go.
	draining := map[uint16]bool{} // services of draining real servers
	s.realIDs.forget(liveR, func(id uint16) bool {
		n, last := s.counts[id], s.last[id]
		if n == nil || last == nil || n.Active.Load()+n.Inactive.Load() == 0 {
			delete(s.counts, id)
			delete(s.last, id)
			return true
		}
		r := *last
		r.Removed = true
		setAt(&t.Reals, int(id), &r)
		draining[r.Service] = true
		return false
	})
	// A removed service has no entry (its connections end at their next packet), but keeps its ID
	// while its real servers drain: their connections name it, and must not come to name another.
	s.svcIDs.forget(liveS, func(id uint16) bool {
		if draining[id] {
			return false
		}
		delete(s.pos, id)
		return true
	})

	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		key := vs.Key()
		sid, ok := s.svcIDs.get(key)
		if !ok {
			return nil, fmt.Errorf("virtual server %s: more than %d virtual servers, counting removed ones whose real servers' connections have not ended; use fewer", key, idSpace)
		}
		svc := service(vs, sid)
		if sched.UsesPosition(svc.Scheduler) {
			svc.SchedOptions.Position = s.positionOf(sid)
		}
		for j := range vs.RealServers {
			rs := &vs.RealServers[j]
			rid, ok := s.realIDs.get(realKey(vs, rs))
			if !ok {
				return nil, fmt.Errorf("virtual server %s: real server %s: more than %d real servers, counting removed ones whose connections have not ended; use fewer",
					key, rs.Address, idSpace)
			}
			r := realServer(rs, rid, sid)
			c.Overrides.apply(key, rs.Address, r)
			r.Counts = s.countsOf(rid)
			resolve(r, vs.Method, hops)
			c.applyHealth(r, vs, rs)
			svc.RealIDs = append(svc.RealIDs, rid)
			setAt(&t.Reals, int(rid), r)
		}
		if err := s.standIn(t, vs, svc, hops); err != nil {
			return nil, err
		}
		setAt(&t.Services, int(sid), svc)
	}
	for _, r := range t.Reals {
		if r != nil && !r.Removed {
			s.last[r.ID] = r
		}
	}
	t.Finish()
	if err := checkSchedulers(t); err != nil {
		return nil, err
	}
	c.pending, c.tables = s, t
	return t, nil
}

// Commit adopts t, the result of the latest Compile, as the state the next Compile starts from:
// call it once t is published (or found the same as the published tables). Any other t, or a
// second Commit, changes nothing.
func (c *Compiler) Commit(t *dataplane.Tables) {
	if t == nil || t != c.tables || c.pending == nil {
		return
	}
	c.cur, c.pending, c.tables = *c.pending, nil, nil
}

func (s *state) clone() *state {
	n := &state{
		svcIDs:  s.svcIDs.clone(),
		realIDs: s.realIDs.clone(),
		counts:  make(map[uint16]*sched.Counts, len(s.counts)),
		last:    make(map[uint16]*dataplane.Real, len(s.last)),
		pos:     make(map[uint16]*sched.Position, len(s.pos)),
	}
	for k, v := range s.pos {
		n.pos[k] = v
	}
	for k, v := range s.counts {
		n.counts[k] = v
	}
	for k, v := range s.last {
		n.last[k] = v
	}
	return n
}

// realKey names real server rs of virtual server vs in the ID registry.
func realKey(vs *config.VirtualServer, rs *config.RealServer) string {
	return vs.Key() + "|" + rs.Address.String()
}

// positionOf returns service id's rr/wrr position, shared by the workers' schedulers and kept
// across reloads (a reload that changes nothing must not restart the order).
func (s *state) positionOf(id uint16) *sched.Position { return getOrNew(s.pos, id) }

// countsOf returns real server id's shared connection counts.
func (s *state) countsOf(id uint16) *sched.Counts { return getOrNew(s.counts, id) }

// getOrNew returns m[k], which it creates on first use.
func getOrNew[T any](m map[uint16]*T, k uint16) *T {
	v := m[k]
	if v == nil {
		v = new(T)
		m[k] = v
	}
	return v
}

// service is the data plane's view of virtual server vs under service ID id, without its real
// servers.
func service(vs *config.VirtualServer, id uint16) *dataplane.Service {
	return &dataplane.Service{
		ID:              id,
		Name:            vs.Key(),
		VIP:             vs.Address,
		Proto:           vs.Protocol.Number(),
		Method:          method(vs.Method),
		Scheduler:       vs.Scheduler,
		SchedOptions:    vs.SchedOptions(),
		Persistence:     int64(vs.PersistenceTimeout),
		PersistenceBits: vs.PersistenceNetmask,
		OnePacket:       vs.OnePacket,
		Tunnel:          tunnel(vs.Tunnel),
		TunnelPort:      vs.TunnelPort,
		Locals:          vs.LocalAddresses,
	}
}

// realServer is the data plane's view of real server rs under ID id of service sid, not yet resolved
// (Port -1).
func realServer(rs *config.RealServer, id, sid uint16) *dataplane.Real {
	return &dataplane.Real{
		ID: id, Service: sid, Addr: rs.Address, Weight: int32(rs.Weight), Port: -1,
		UpperThreshold: uint32(rs.UpperThreshold),
		LowerThreshold: uint32(rs.LowerThreshold),
	}
}

// resolve sets r's port, MAC and Resolved (and, for tun, its tunnel source) from its next hop; r
// stays unresolved while hops does not know it. dr requires the real server to be on a govs link:
// direct routing only rewrites MACs. tun requires a source address of the real server's family
// towards it: the outer header's source.
func resolve(r *dataplane.Real, m config.Method, hops NextHops) {
	h, ok := hops.NextHop(r.ID, r.Addr.Addr())
	switch {
	case !ok:
		return
	case m == config.MethodDR && !h.OnLink:
		return
	case m == config.MethodTun:
		if !h.Src.IsValid() || h.Src.Is4() != r.Addr.Addr().Is4() {
			return
		}
		r.TunnelSrc, r.MTU = h.Src, h.MTU
	}
	r.Port, r.MAC, r.Resolved = h.Port, h.MAC, true
}

func method(m config.Method) dataplane.Method {
	switch m {
	case config.MethodDR:
		return dataplane.MethodDR
	case config.MethodTun:
		return dataplane.MethodTun
	case config.MethodFullNAT:
		return dataplane.MethodFullNAT
	}
	return dataplane.MethodNAT
}

func tunnel(name string) dataplane.Tunnel {
	if name == config.TunnelGUE {
		return dataplane.TunnelGUE
	}
	return dataplane.TunnelIPIP
}

// checkSchedulers builds every service's scheduler once, so that a scheduler the data plane could
// not build is an error here and never a failure inside a worker.
func checkSchedulers(t *dataplane.Tables) error {
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		if _, err := sched.New(s.Scheduler, s.Dests, s.SchedOptions); err != nil {
			return fmt.Errorf("virtual server %s: %w", s.Name, err)
		}
	}
	return nil
}

func setAt[T any](s *[]*T, i int, v *T) {
	for len(*s) <= i {
		*s = append(*s, nil)
	}
	(*s)[i] = v
}

// Conntrack sizes each of workers connection tables from cfg.
func Conntrack(cfg *config.Config, workers int) conntrack.Config {
	return conntrack.Config{
		// Each worker owns a table; together they hold max_entries.
		MaxEntries: (cfg.Conntrack.MaxEntries + workers - 1) / workers,
		FullPolicy: fullPolicy(cfg.Conntrack.FullPolicy),
		Timeouts:   timeouts(&cfg.Timeouts),
	}
}

func fullPolicy(name string) conntrack.FullPolicy {
	if name == config.FullPolicyEvictOldestIdle {
		return conntrack.EvictOldestIdle
	}
	return conntrack.DropNew
}

func timeouts(to *config.Timeouts) conntrack.Timeouts {
	return conntrack.Timeouts{
		TCP:          int64(to.TCP),
		TCPFin:       int64(to.TCPFin),
		UDP:          int64(to.UDP),
		TCPSynRecv:   int64(to.TCPSynRecv),
		TCPSynSent:   int64(to.TCPSynSent),
		TCPTimeWait:  int64(to.TCPTimeWait),
		TCPClose:     int64(to.TCPClose),
		TCPCloseWait: int64(to.TCPCloseWait),
		TCPLastAck:   int64(to.TCPLastAck),
	}
}
