package dataplane

import (
	"net/netip"

	"github.com/govs/govs/dataplane/bpfgen"
	"github.com/govs/govs/dataplane/frame"
	"github.com/govs/govs/sched"
)

// Method is how a frame reaches the real server.
type Method uint8

const (
	_ Method = iota // the zero Method is none: every Service names one
	// MethodNAT rewrites the destination (and, on replies, the source) address and port.
	MethodNAT
	// MethodDR changes only the MAC addresses; the real server owns the VIP and answers the client directly.
	MethodDR
	// MethodTun encapsulates the frame's IP packet unchanged in an outer header to the real server
	// (Service.Tunnel); the real server decapsulates it, owns the VIP and answers the client directly.
	MethodTun
	// MethodFullNAT rewrites both ends: the client's source to one of Service.Locals and a port the
	// worker allocates (fullnat.go), the destination to the real server; replies come back because
	// they are addressed to the local address, and go out with both ends rewritten back.
	MethodFullNAT
)

func (m Method) String() string {
	switch m {
	case MethodNAT:
		return "nat"
	case MethodDR:
		return "dr"
	case MethodTun:
		return "tun"
	case MethodFullNAT:
		return "fullnat"
	}
	return "invalid"
}

// Tunnel is the encapsulation of a MethodTun service.
type Tunnel uint8

const (
	// TunnelIPIP is IPv4 in IPv4 (IP protocol 4) or IPv6 in IPv6 (next header 41).
	TunnelIPIP Tunnel = iota
	// TunnelGUE is Generic UDP Encapsulation (draft-ietf-intarea-gue, variant 0) to Service.TunnelPort.
	TunnelGUE
)

func (t Tunnel) String() string {
	if t == TunnelGUE {
		return "gue"
	}
	return "ipip"
}

// Tables is the compiled, immutable forwarding state that workers read. The daemon builds a new
// Tables on every change (reload, neighbour change) and publishes it with Engine.Publish; a worker
// picks the new one up between batches. Nothing in a published Tables is ever modified.
type Tables struct {
	// Gen increases with every publication.
	Gen uint32
	// Services is indexed by service ID; a nil entry is a removed service.
	Services []*Service
	// Reals is indexed by real-server ID (stable across reloads for the same service and address),
	// so connections keep their real server through a reload. A nil entry is a removed real server.
	Reals []*Real
	// ExpireNodestConn drops a removed real server's connections at their next packet instead of
	// forwarding them until they end (IPVS expire_nodest_conn).
	ExpireNodestConn bool
	// Draining refuses new connections (counted as "draining") while established ones are still
	// forwarded: a stand-alone node that is stopping (shutdown_drain).
	Draining bool
	// DrainingLocals are FullNAT local addresses that no service lists any more (a reload removed
	// them, or changed their services' method) while connections still use them: frames to them
	// are taken as to a service's local addresses (the socket filter, the fanout by local port,
	// the kernel guard), and the daemon keeps answering ARP/ND for them, until those end.
	DrainingLocals []netip.Addr

	byVIP   map[serviceKey]uint16
	byReal  map[serviceKey]uint16    // a NAT real server's endpoint -> a service it serves (realOwner)
	paths   map[[16]byte]*tunnelPath // a tun real server's address -> its path (pathmtu.go)
	byLocal map[[16]byte]bool        // the FullNAT services' local addresses
}

// Service is one virtual server.
type Service struct {
	ID        uint16
	Name      string // "tcp/198.18.0.100:80", for listings
	VIP       netip.AddrPort
	Proto     uint8 // 6 or 17
	Method    Method
	Scheduler string
	// SchedOptions are the scheduler's flags and Maglev table size.
	SchedOptions sched.Options
	// Persistence is the persistence timeout in nanoseconds; 0 means none. A client, its address
	// masked to PersistenceBits, keeps its real server across connections while its template lives.
	Persistence     int64
	PersistenceBits int
	// OnePacket schedules each UDP datagram on its own (IPVS one-packet scheduling).
	OnePacket bool
	// Tunnel and TunnelPort are MethodTun's encapsulation and, for GUE, the real servers' UDP port.
	Tunnel     Tunnel
	TunnelPort uint16
	// Locals are MethodFullNAT's local addresses, the sources of its connections towards the real
	// servers; LocalPortMin and LocalPortMax bound the local ports (DefaultLocalPorts when both
	// are 0).
	Locals                     []netip.Addr
	LocalPortMin, LocalPortMax uint16
	// NoQuorum: fewer of its real servers are up than its quorum asks, and it has no sorry server
	// to stand in: it takes no new connections (DropNoQuorum); established ones carry on.
	NoQuorum bool
	// RealIDs lists the service's real servers, in config order; the scheduler's dests use the same order.
	RealIDs []uint16
	// Dests is the scheduler's view of RealIDs (weight, availability, counts), built by Finish.
	Dests []sched.Dest

	addr   [16]byte
	locals [][16]byte // Locals, as the worker writes them
	// hashGroup and hashRule, set by Finish: services whose NAT replies the fanout cannot tell
	// apart share a group, and the group's rule covers every member's persistence.
	hashGroup int
	hashRule  bpfgen.HashRule
}

// Real is one real server of one service.
type Real struct {
	ID      uint16
	Service uint16
	Addr    netip.AddrPort
	Weight  int32
	// Port is the index (in the engine's interface list) of the interface that reaches the real server.
	Port int
	// MAC is the next hop's hardware address; valid when Resolved.
	MAC      [6]byte
	Resolved bool
	// Removed marks a real server a reload took out of its service: it gets no new connections;
	// its established ones are forwarded to it until they end, unless Tables.ExpireNodestConn.
	Removed bool
	// Down marks a real server its health check found down (on_failure "remove"): it gets no new
	// connections. Its TCP connections end at their next packet under Tables.ExpireNodestConn
	// (else they are forwarded until they end); its UDP ones end at once, the flow's next datagram
	// being scheduled afresh to a real server that is up.
	Down bool
	// Quiesced marks a real server its health check does not find up under on_failure
	// "quiesce": its Weight is 0 for that reason, not the operator's.
	Quiesced bool
	// Standby marks a real server that takes no new connections for now but keeps its established
	// ones: a sorry server while real servers of its service are up, and the real servers while
	// the sorry server stands in for them (their service below its quorum).
	Standby bool
	// Sorry marks the service's sorry server, which is not one of its configured real servers.
	Sorry bool
	// Disabled marks a real server the operator took out of rotation (`govs ctl disable`): it
	// gets no new connections, not even a persistent client's; its established ones go on.
	Disabled bool
	// Counts are the real server's connection counts over all workers (shared; written when a
	// connection starts, changes between active and inactive, or ends).
	Counts *sched.Counts
	// UpperThreshold and LowerThreshold bound the real server's connections (ipvsadm -x / -y);
	// 0 means none.
	UpperThreshold, LowerThreshold uint32
	// TunnelSrc is the outer source address of frames tunnelled to the real server (MethodTun): this
	// host's address on the interface that reaches it. Set with Resolved.
	TunnelSrc netip.Addr
	// MTU is the path MTU towards the real server (MethodTun; 0: unknown, not checked) as the
	// route says: a packet that does not fit it encapsulated and may not be fragmented gets the
	// client an ICMP fragmentation needed / packet too big. A lower path MTU learned from the
	// network (pathmtu.go) takes its place while it lasts.
	MTU int

	addr [16]byte
	src  [16]byte // TunnelSrc, as the worker writes it
	// pmtu is the path MTU learned for the real server's address (MethodTun, resolved; else nil),
	// shared by every Real with that address and kept across publications (pathmtu.go).
	pmtu *pathMTU
	// Set by Finish, so that a packet tests one field where it would test several:
	avail  bool // takes new connections: resolved, and neither removed, down, on standby nor disabled
	gone   bool // removed or down: the express lane leaves its frames to forward
	expire bool // its connections end at their next packet (see Removed and Down)
}

type serviceKey struct {
	addr  [16]byte
	port  uint16
	proto uint8
}

// Finish builds the lookup indexes and every service's scheduler view (Dests) from Services and
// Reals. Callers fill Gen, Services and Reals (a Real without Counts gets fresh ones), then call
// Finish once before publishing.
func (t *Tables) Finish() {
	t.byVIP = make(map[serviceKey]uint16, len(t.Services))
	t.byReal = make(map[serviceKey]uint16, len(t.Reals))
	t.paths = nil
	t.byLocal = map[[16]byte]bool{}
	for _, r := range t.Reals {
		if r == nil {
			continue
		}
		r.addr = r.Addr.Addr().As16()
		r.pmtu = nil
		if r.TunnelSrc.IsValid() {
			r.src = r.TunnelSrc.As16()
		}
		if r.Counts == nil {
			r.Counts = new(sched.Counts)
		}
		r.avail = r.Resolved && !r.Removed && !r.Down && !r.Standby && !r.Disabled
		r.gone = r.Removed || r.Down
		r.expire = (r.Removed || r.Down) && t.ExpireNodestConn
		s := t.owner(r)
		if s != nil && r.Down && s.Proto == frame.ProtoUDP {
			r.expire = true
		}
		if s != nil && s.Method == MethodNAT {
			t.byReal[serviceKey{r.addr, r.Addr.Port(), s.Proto}] = s.ID
		}
		if s != nil && s.Method == MethodTun && r.TunnelSrc.IsValid() {
			t.addPath(r, s)
		}
	}
	for _, a := range t.DrainingLocals {
		t.byLocal[a.As16()] = true
	}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		s.addr = s.VIP.Addr().As16()
		t.byVIP[serviceKey{s.addr, s.VIP.Port(), s.Proto}] = s.ID
		s.locals = s.locals[:0]
		for _, a := range s.Locals {
			s.locals = append(s.locals, a.As16())
			t.byLocal[a.As16()] = true
		}
		if s.LocalPortMin == 0 && s.LocalPortMax == 0 {
			s.LocalPortMin, s.LocalPortMax = DefaultLocalPorts[0], DefaultLocalPorts[1]
		}
		s.Dests = s.Dests[:0]
		for _, id := range s.RealIDs {
			r := t.Reals[id]
			s.Dests = append(s.Dests, sched.Dest{
				Addr:           r.addr,
				Port:           r.Addr.Port(),
				Weight:         r.Weight,
				Available:      r.avail,
				Counts:         r.Counts,
				UpperThreshold: r.UpperThreshold,
				LowerThreshold: r.LowerThreshold,
			})
		}
	}
	t.hashGroups()
}

// hashGroups sets every service's fanout hash group and rule. Each worker keeps its own
// connections and persistence templates, so the fanout must send every frame of a connection, and
// under persistence every connection of a client network, to one worker. It hashes each frame by
// the rule of its service, found from the service's endpoint in the frame: the VIP endpoint of a
// frame to a VIP, the real server's endpoint of a NAT reply. Replies from a real server that
// serves several services under NAT (same address and protocol, same port or port 0) cannot be
// told apart, so those services form one group with one rule: the finest that covers all their
// persistence (by client network with the shortest netmask, or by client address and port when
// none is persistent). Every other service is a group of its own, so a change to its persistence
// moves no other service's flows. Real servers that a reload removed but whose connections drain
// count too.
func (t *Tables) hashGroups() {
	parent := make([]int, len(t.Services))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	type realKey struct {
		addr  [16]byte
		proto uint8
	}
	type realAt struct {
		port uint16
		svc  int
	}
	seen := map[realKey][]realAt{}
	for _, r := range t.Reals {
		s := t.owner(r)
		if s == nil || s.Method != MethodNAT {
			continue
		}
		k, port := realKey{r.addr, s.Proto}, r.Addr.Port()
		for _, o := range seen[k] {
			if o.port == port || o.port == 0 || port == 0 {
				parent[find(int(s.ID))] = find(o.svc)
			}
		}
		seen[k] = append(seen[k], realAt{port, int(s.ID)})
	}
	rules := map[int]bpfgen.HashRule{}
	for _, s := range t.Services {
		if s == nil {
			continue
		}
		s.hashGroup = find(int(s.ID))
		rules[s.hashGroup] = rules[s.hashGroup].Join(s.persistenceRule())
	}
	for _, s := range t.Services {
		if s != nil {
			s.hashRule = rules[s.hashGroup]
		}
	}
}

// persistenceRule is the fanout rule s's persistence alone needs.
func (s *Service) persistenceRule() bpfgen.HashRule {
	if s.Persistence <= 0 {
		return bpfgen.HashRule{}
	}
	return bpfgen.HashRule{Sticky: true, Bits: s.PersistenceBits}
}

// owner returns r's service, or nil when r is nil or its service is gone.
func (t *Tables) owner(r *Real) *Service {
	if r == nil {
		return nil
	}
	if s := t.serviceAt(r.Service); s != nil && s.ID == r.Service {
		return s
	}
	return nil
}

// HashRule returns the fanout hash rule, as a fresh start of govs applies it, of the service that a
// client's packet to addr:port with protocol proto reaches, and false for no service. The offline
// replay deals flows to workers by it.
func (t *Tables) HashRule(addr [16]byte, port uint16, proto uint8) (bpfgen.HashRule, bool) {
	s := t.service(addr, port, proto)
	if s == nil {
		return bpfgen.HashRule{}, false
	}
	return s.hashRule, true
}

// service returns the service for a destination, or nil. A service for the exact port wins; else
// the address's port-0 (all ports) service takes it, as IPVS does for a port-0 service.
func (t *Tables) service(addr [16]byte, port uint16, proto uint8) *Service {
	id, ok := t.byVIP[serviceKey{addr, port, proto}]
	if !ok {
		if id, ok = t.byVIP[serviceKey{addr, 0, proto}]; !ok {
			return nil
		}
	}
	return t.Services[id]
}

// realOwner returns a service that NAT real server addr:port (protocol proto) serves, or nil; a
// real server without a port serves every port. Services sharing a real server share a fanout
// rule (hashGroups), so any of them tells how the fanout hashes its replies.
func (t *Tables) realOwner(addr [16]byte, port uint16, proto uint8) *Service {
	id, ok := t.byReal[serviceKey{addr, port, proto}]
	if !ok {
		if id, ok = t.byReal[serviceKey{addr, 0, proto}]; !ok {
			return nil
		}
	}
	return t.serviceAt(id)
}

// isLocal reports whether addr is a FullNAT service's local address, or a draining one.
func (t *Tables) isLocal(addr [16]byte) bool { return t.byLocal[addr] }

// serviceAt returns the service with ID id, or nil if there is none (a reload removed it).
func (t *Tables) serviceAt(id uint16) *Service {
	if int(id) >= len(t.Services) {
		return nil
	}
	return t.Services[id]
}

func (t *Tables) real(id uint16) *Real {
	if int(id) >= len(t.Reals) {
		return nil
	}
	return t.Reals[id]
}
