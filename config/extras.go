package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/govs/govs/sched"
)

// maxMHTableSize is the largest Maglev table sched accepts (sched's own bound, a prime; a test
// checks the two agree).
const maxMHTableSize = 1<<22 - 3 // 4194301

// Examples used in messages.
const (
	examplePersistence = "300s"
	exampleFlags       = `scheduler_flags = ["sh-fallback", "sh-port"]`
)

func (p *parser) conntrack(raw *rawConntrack, out *Conntrack) {
	if raw == nil {
		raw = &rawConntrack{}
	}
	out.MaxEntries = DefaultConntrackMaxEntries
	switch v := raw.MaxEntries.(type) {
	case nil:
	case int64:
		if v < 1 || v > MaxConntrackEntries {
			p.errf("conntrack.max_entries", "%d is out of range; write a number of connections from 1 to %d (default %d)", v, MaxConntrackEntries, DefaultConntrackMaxEntries)
		} else {
			out.MaxEntries = int(v)
		}
	default:
		p.errf("conntrack.max_entries", "is %s; write an integer from 1 to %d, e.g. max_entries = %d", typeName(v), MaxConntrackEntries, DefaultConntrackMaxEntries)
	}

	out.FullPolicy = DefaultFullPolicy
	switch v := raw.FullPolicy.(type) {
	case nil:
	case string:
		switch v {
		case FullPolicyDropNew, FullPolicyEvictOldestIdle:
			out.FullPolicy = v
		default:
			p.errf("conntrack.full_policy", "%q is not a policy; write %q (default: refuse new connections) or %q (evict the connection idle the longest)%s",
				v, FullPolicyDropNew, FullPolicyEvictOldestIdle, lowerHint(v, FullPolicyDropNew, FullPolicyEvictOldestIdle))
		}
	default:
		p.errf("conntrack.full_policy", "is %s; write %q or %q", typeName(v), FullPolicyDropNew, FullPolicyEvictOldestIdle)
	}

	switch v := raw.ExpireNodestConn.(type) {
	case nil:
	case bool:
		out.ExpireNodestConn = v
	default:
		p.errf("conntrack.expire_nodest_conn", "is %s; write expire_nodest_conn = true or false (unquoted)", typeName(v))
	}
}

// flagOwners returns the schedulers a single flag belongs to, the one it is named after first.
func flagOwners(f sched.Flags) []string {
	var owners []string
	for _, name := range ImplementedSchedulers {
		if sched.FlagsFor(name)&f == f {
			owners = append(owners, name)
		}
	}
	// The scheduler the flag is named after first (sh-port: sh, then dh).
	slices.SortStableFunc(owners, func(a, b string) int {
		pa, pb := strings.HasPrefix(f.String(), a+"-"), strings.HasPrefix(f.String(), b+"-")
		switch {
		case pa && !pb:
			return -1
		case pb && !pa:
			return 1
		}
		return 0
	})
	return owners
}

// flagBits splits f into its single flags, lowest first.
func flagBits(f sched.Flags) []sched.Flags {
	var out []sched.Flags
	for b := sched.Flags(1); b != 0; b <<= 1 {
		if f&b != 0 {
			out = append(out, b)
		}
	}
	return out
}

func (p *parser) schedulerFlags(field string, v any, vs *VirtualServer) {
	if v == nil {
		return
	}
	list, ok := v.([]any)
	if !ok {
		p.errf(field, "is %s; write a list of flags, e.g. %s", typeName(v), exampleFlags)
		return
	}
	var seen sched.Flags
	for i, e := range list {
		elem := fmt.Sprintf("%s[%d]", field, i+1)
		s, ok := e.(string)
		if !ok {
			p.errf(elem, "is %s; flags are strings, e.g. %s", typeName(e), exampleFlags)
			continue
		}
		f, err := sched.ParseFlag(s)
		if err != nil {
			p.errf(elem, "%v", err)
			continue
		}
		for _, b := range flagBits(f) {
			name := b.String()
			switch {
			case seen&b != 0:
				p.errf(elem, "flag %q is already listed; remove the duplicate", name)
				continue
			case vs.Scheduler == "":
				// The scheduler itself is wrong and reported; ownership cannot be judged.
			case sched.FlagsFor(vs.Scheduler)&b == 0:
				owners := flagOwners(b)
				if len(owners) == 0 {
					p.errf(elem, "flag %q belongs to no scheduler; remove it", name)
				} else {
					p.errf(elem, "flag %q does not apply to scheduler %q: %s is for the %s scheduler; remove it or write scheduler = %q",
						name, vs.Scheduler, name, strings.Join(owners, " or "), owners[0])
				}
				continue
			}
			seen |= b
			vs.SchedulerFlags = append(vs.SchedulerFlags, name)
		}
	}
}

func (p *parser) mhTableSize(field string, v any, vs *VirtualServer) {
	if vs.Scheduler == "mh" {
		vs.MHTableSize = sched.DefaultMHTableSize
	}
	if v == nil {
		return
	}
	n, ok := v.(int64)
	if !ok {
		p.errf(field, "is %s; write a prime from 2 to %d, e.g. mh_table_size = %d", typeName(v), maxMHTableSize, sched.DefaultMHTableSize)
		return
	}
	if vs.Scheduler != "mh" {
		if vs.Scheduler != "" {
			p.errf(field, "is only for the mh scheduler (Maglev's lookup table), not %q; remove it or write scheduler = \"mh\"", vs.Scheduler)
		}
		return
	}
	switch {
	case n == 0:
		return // the default
	case n < 2 || n > maxMHTableSize:
		p.errf(field, "%d is out of range; write a prime from 2 to %d, well above 100 × the number of real servers (default %d)", n, maxMHTableSize, sched.DefaultMHTableSize)
	case !isPrime(n):
		p.errf(field, "%d is not a prime; Maglev needs a prime table size, e.g. %d (the next prime), well above 100 × the number of real servers", n, nextPrime(n))
	default:
		vs.MHTableSize = int(n)
	}
}

// isPrime is trial division; n is at most maxMHTableSize, so at most ~2000 steps.
func isPrime(n int64) bool {
	if n < 2 {
		return false
	}
	for d := int64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the smallest prime above n that sched accepts, or the largest one it accepts.
// Prime gaps below 2^22 are under 200, so the loop is short.
func nextPrime(n int64) int64 {
	for m := n + 1; m < maxMHTableSize; m++ {
		if isPrime(m) {
			return m
		}
	}
	return maxMHTableSize
}

// persistence validates persistence_timeout and persistence_netmask together.
func (p *parser) persistence(field string, raw *rawVirtualServer, vs *VirtualServer, addrOK bool) {
	tField, mField := field+".persistence_timeout", field+".persistence_netmask"
	timeoutOK := true
	switch v := raw.PersistenceTimeout.(type) {
	case nil:
	case string:
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			p.errf(tField, "%q is not a duration; write a Go duration such as %q or \"15m\" (0 or omitted = no persistence)", v, examplePersistence)
			timeoutOK = false
		case d < 0:
			p.errf(tField, "%q is negative; write a duration such as %q (0 or omitted = no persistence)", v, examplePersistence)
			timeoutOK = false
		default:
			vs.PersistenceTimeout = d
		}
	default:
		p.errf(tField, "is %s; write a quoted Go duration, e.g. persistence_timeout = %q", typeName(v), examplePersistence)
		timeoutOK = false
	}

	maxBits := 128
	if addrOK && vs.Address.Addr().Is4() {
		maxBits = 32
	}
	if raw.PersistenceNetmask == nil {
		if vs.PersistenceTimeout > 0 && addrOK {
			vs.PersistenceNetmask = maxBits
		}
		return
	}
	bits, ok := p.netmask(mField, raw.PersistenceNetmask, vs, addrOK, maxBits)
	if !ok {
		return
	}
	if vs.PersistenceTimeout == 0 {
		if timeoutOK { // otherwise the timeout's own message says what to fix
			p.errf(mField, "has no effect without persistence: add persistence_timeout = %q to this virtual server, or remove persistence_netmask", examplePersistence)
		}
		return
	}
	vs.PersistenceNetmask = bits
}

// netmask parses a prefix length or, for IPv4, a dotted mask.
func (p *parser) netmask(field string, v any, vs *VirtualServer, addrOK bool, maxBits int) (int, bool) {
	switch v := v.(type) {
	case int64:
		if v < 0 || v > int64(maxBits) {
			if addrOK {
				p.errf(field, "%d is out of range for %s virtual server %s; write a prefix length from 0 to %d", v, family(vs.Address.Addr()), vs.Address, maxBits)
			} else {
				p.errf(field, "%d is out of range; write a prefix length from 0 to 32 (IPv4) or 128 (IPv6)", v)
			}
			return 0, false
		}
		return int(v), true
	case string:
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			p.errf(field, "%q is not a netmask; write a prefix length such as 24, or for IPv4 a dotted mask such as \"255.255.255.0\"", v)
			return 0, false
		}
		if addrOK && !vs.Address.Addr().Is4() {
			p.errf(field, "dotted mask %q is for IPv4 but the virtual server %s is IPv6; write a prefix length from 0 to 128", v, vs.Address)
			return 0, false
		}
		bits, ok := maskBits(a.As4())
		if !ok {
			p.errf(field, "%q is not a contiguous mask (ones then zeros); write a prefix length such as 24 or a mask such as \"255.255.255.0\"", v)
			return 0, false
		}
		return bits, true
	default:
		p.errf(field, "is %s; write a prefix length such as persistence_netmask = 24, or for IPv4 a dotted mask such as \"255.255.255.0\"", typeName(v))
		return 0, false
	}
}

// maskBits returns the prefix length of a contiguous IPv4 mask.
func maskBits(m [4]byte) (int, bool) {
	u := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	ones := 0
	for ones < 32 && u&(1<<(31-ones)) != 0 {
		ones++
	}
	if ones < 32 && u<<ones != 0 {
		return 0, false
	}
	return ones, true
}

func (p *parser) onePacket(field string, v any, vs *VirtualServer) {
	switch v := v.(type) {
	case nil:
	case bool:
		if v && vs.Protocol == ProtocolTCP {
			p.errf(field, "is for UDP only: a TCP connection spans many packets and must stay on one real server; remove one_packet or use protocol = \"udp\"")
			return
		}
		vs.OnePacket = v
	default:
		p.errf(field, "is %s; write one_packet = true or false (unquoted)", typeName(v))
	}
}

// thresholds validates upper_threshold and lower_threshold of one real server.
func (p *parser) thresholds(field string, raw *rawRealServer, rs *RealServer) {
	uField, lField := field+".upper_threshold", field+".lower_threshold"
	upper, upperOK := p.threshold(uField, raw.UpperThreshold)
	lower, lowerOK := p.threshold(lField, raw.LowerThreshold)
	if !upperOK || !lowerOK {
		return
	}
	rs.UpperThreshold = int(upper)
	switch {
	case raw.LowerThreshold != nil && upper == 0:
		if raw.UpperThreshold == nil {
			p.errf(lField, "needs upper_threshold: new connections resume below lower_threshold only after they stopped at upper_threshold; add upper_threshold, or remove lower_threshold")
		} else {
			p.errf(lField, "has no effect with upper_threshold = 0 (no limit); set upper_threshold above it, or remove lower_threshold")
		}
	case lower > upper:
		p.errf(lField, "%d is above upper_threshold %d; write a value from 0 to %d (omitted or 0 = %d, three quarters of it as in IPVS)", lower, upper, upper, upper*3/4)
	case lower == 0:
		rs.LowerThreshold = int(upper * 3 / 4) // IPVS: ip_vs_dest_totalconns < 3/4 upper
	default:
		rs.LowerThreshold = int(lower)
	}
}

func (p *parser) threshold(field string, v any) (int64, bool) {
	switch v := v.(type) {
	case nil:
		return 0, true
	case int64:
		if v < 0 || v > MaxThreshold {
			p.errf(field, "%d is out of range; write a number of connections from 0 to %d (0 = no limit)", v, MaxThreshold)
			return 0, false
		}
		return v, true
	default:
		p.errf(field, "is %s; write an integer number of connections from 0 to %d (0 = no limit)", typeName(v), MaxThreshold)
		return 0, false
	}
}

// Tunnel encapsulations of method tun (VirtualServer.Tunnel).
const (
	// TunnelIPIP is IPv4 in IPv4 or IPv6 in IPv6 (IP protocol 4 or 41), as LVS's tun.
	TunnelIPIP = "ipip"
	// TunnelGUE is Generic UDP Encapsulation (draft-ietf-intarea-gue, variant 0) to tunnel_port.
	TunnelGUE = "gue"
)

// tunnel validates tunnel and tunnel_port: method tun only, tunnel_port with gue only and
// required there.
func (p *parser) tunnel(field string, raw *rawVirtualServer, vs *VirtualServer) {
	tField, pField := field+".tunnel", field+".tunnel_port"
	if vs.Method != MethodTun {
		if vs.Method == 0 {
			return // the method's own error says what is wrong
		}
		if raw.Tunnel != nil {
			p.errf(tField, "is for method tun only; remove it or write method = \"tun\"")
		}
		if raw.TunnelPort != nil {
			p.errf(pField, "is for method tun with tunnel = \"gue\" only; remove it")
		}
		return
	}
	switch v := raw.Tunnel.(type) {
	case nil:
		vs.Tunnel = TunnelIPIP
	case string:
		switch v {
		case TunnelIPIP, TunnelGUE:
			vs.Tunnel = v
		default:
			p.errf(tField, `unknown tunnel %q; write "ipip" (the default) or "gue"%s`, v, lowerHint(v, TunnelIPIP, TunnelGUE))
			return
		}
	default:
		p.errf(tField, `is %s; write tunnel = "ipip" or tunnel = "gue"`, typeName(v))
		return
	}
	switch v := raw.TunnelPort.(type) {
	case nil:
		if vs.Tunnel == TunnelGUE {
			p.errf(pField, "is required with tunnel = \"gue\": the UDP port the real servers decapsulate GUE on, e.g. tunnel_port = 6080")
		}
	case int64:
		switch {
		case vs.Tunnel != TunnelGUE:
			p.errf(pField, "is for tunnel = \"gue\" only (ipip has no ports); remove it or write tunnel = \"gue\"")
		case v < 1 || v > 65535:
			p.errf(pField, "%d is out of range; write a UDP port from 1 to 65535, e.g. tunnel_port = 6080", v)
		default:
			vs.TunnelPort = uint16(v)
		}
	default:
		p.errf(pField, "is %s; write a UDP port number, e.g. tunnel_port = 6080", typeName(v))
	}
}

// MaxLocalAddresses bounds a fullnat virtual server's local_addresses: the connection table keeps
// one handle per (real server, local address) pair, at most MaxRealHandles (see realHandles).
const MaxLocalAddresses = 256

// MaxRealHandles is how many real server handles a worker's connection table holds (see
// conntrack.ErrNoHandle): one per real server address, and under fullnat one per real server
// address and port and local address.
const MaxRealHandles = 1 << 16

// realHandles refuses virtual servers that together could need more real server handles than a
// worker's connection table holds: a new connection that needs one more would be dropped
// (real_handles_full) with the table far from full. A fullnat virtual server needs one per real
// server (sorry server included) and local address; any other, and a persistent fullnat one's
// templates, one per real server address. Virtual servers that share them share handles. A real
// server of a virtual server of port 0 counts once, though each destination port takes its own.
func (p *parser) realHandles(c *Config) {
	type handle struct {
		real  netip.Addr
		port  uint16
		local netip.Addr
	}
	held := map[handle]bool{}
	for i := range c.VirtualServers {
		vs := &c.VirtualServers[i]
		reals := make([]netip.AddrPort, 0, len(vs.RealServers)+1)
		for _, rs := range vs.RealServers {
			reals = append(reals, rs.Address)
		}
		if vs.SorryServer.IsValid() {
			reals = append(reals, vs.SorryServer)
		}
		for _, r := range reals {
			if vs.Method != MethodFullNAT || vs.PersistenceTimeout > 0 {
				held[handle{real: r.Addr()}] = true
			}
			for _, l := range vs.LocalAddresses {
				held[handle{r.Addr(), r.Port(), l}] = true
			}
		}
		if len(held) > MaxRealHandles && vs.Method == MethodFullNAT {
			p.errf(fmt.Sprintf("virtual_server[%d].local_addresses", i+1),
				"%d local addresses × %d real servers make %d real server handles with the virtual servers before it, more than the %d a worker's connection table holds (its new connections would be dropped as real_handles_full): use fewer local addresses or real servers",
				len(vs.LocalAddresses), len(reals), len(held), MaxRealHandles)
			return
		}
	}
}

// localAddresses validates local_addresses: required by method fullnat and refused by the others.
// Each is an address of the virtual server's family that neither it nor its real servers use
// (virtualServers checks the other virtual servers' addresses).
func (p *parser) localAddresses(field string, raw *rawVirtualServer, vs *VirtualServer, vipOK bool) {
	lField := field + ".local_addresses"
	example := `local_addresses = ["198.19.0.2", "198.19.0.3"]`
	if vipOK && vs.Address.Addr().Is6() {
		example = `local_addresses = ["2001:2:0:1::2", "2001:2:0:1::3"]`
	}
	if vs.Method != MethodFullNAT {
		if vs.Method != 0 && raw.LocalAddresses != nil {
			p.errf(lField, "is for method fullnat only (method %s keeps the client's address as the source); remove it or write method = \"fullnat\"", vs.Method)
		}
		return
	}
	list, isList := raw.LocalAddresses.([]any)
	switch {
	case raw.LocalAddresses == nil:
		p.errf(lField, "is required with method fullnat: the source addresses govs gives connections towards the real servers; write %s", example)
		return
	case !isList:
		p.errf(lField, "is %s; write a list of addresses, e.g. %s", typeName(raw.LocalAddresses), example)
		return
	case len(list) == 0:
		p.errf(lField, "is empty; write at least one address, e.g. %s", example)
		return
	case len(list) > MaxLocalAddresses:
		p.errf(lField, "lists %d addresses; at most %d (each one allows %d connections to each real server): use fewer", len(list), MaxLocalAddresses, 65536-1024)
		return
	}
	seen := map[netip.Addr]bool{}
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			p.errf(lField, "element %d is %s; write quoted addresses, e.g. %s", i+1, typeName(v), example)
			continue
		}
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			p.errf(lField, "%q is not an IP address; write e.g. %s", s, example)
		case a.Zone() != "":
			p.errf(lField, "%q has a zone; zones are not supported, use an address without %%zone", s)
		case a.Is4In6():
			p.errf(lField, "%q is an IPv4-mapped IPv6 address; write the IPv4 form %q", s, a.Unmap().String())
		case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback():
			p.errf(lField, "%s is %s and cannot be a local address; use an address the real servers reach this host on", a, addrKind(a))
		case vipOK && a.Is4() != vs.Address.Addr().Is4():
			p.errf(lField, "%s is %s but the virtual server %s is %s; local addresses must have the virtual server's address family",
				a, family(a), vs.Address, family(vs.Address.Addr()))
		case vipOK && a == vs.Address.Addr():
			p.errf(lField, "%s is the virtual server's own address; a local address must be one only real servers send to", a)
		case seen[a]:
			p.errf(lField, "%s is listed twice; list each local address once", a)
		default:
			seen[a] = true
			vs.LocalAddresses = append(vs.LocalAddresses, a)
		}
	}
}

// localAddressClashes reports local addresses that are also a virtual server's or a real server's
// address: the fanout and the data plane tell a frame's direction by them; and virtual server and
// local addresses that an interface of this host holds (see LoadOptions.AddressInterface).
func (p *parser) localAddressClashes(c *Config) {
	vips := map[netip.Addr]bool{}
	for i := range c.VirtualServers {
		vips[c.VirtualServers[i].Address.Addr()] = true
	}
	for i := range c.VirtualServers {
		vs := &c.VirtualServers[i]
		if ifname := p.hostInterface(vs.Address.Addr()); ifname != "" {
			p.errf(fmt.Sprintf("virtual_server[%d].address", i+1), "%s is an address of interface %s of this host; a virtual server address must be on no interface (govs answers ARP/ND for it and drops the kernel's copy of every frame to it, which would cut this host's own services on that address, ssh included): use a spare address clients reach this host on, or remove it from %s", vs.Address.Addr(), ifname, ifname)
		}
		reals := map[netip.Addr]bool{}
		for _, rs := range vs.RealServers {
			reals[rs.Address.Addr()] = true
		}
		for _, a := range vs.LocalAddresses {
			field := fmt.Sprintf("virtual_server[%d].local_addresses", i+1)
			switch {
			case vips[a]:
				p.errf(field, "%s is a virtual server's address; a local address must be one only real servers send to", a)
			case reals[a]:
				p.errf(field, "%s is one of its real servers; use a spare address the real servers reach this host on, configured on no interface (govs answers ARP/ND for it)", a)
			case p.hostInterface(a) != "":
				p.errf(field, "%s is an address of interface %s of this host; a local address must be on no interface (govs answers ARP/ND for it and drops the kernel's copy of its frames, which would cut this host's own connections from it, health checks included): use a spare address the real servers reach this host on", a, p.hostInterface(a))
			}
		}
	}
}

// localReach warns (Config.Warnings) about a FullNAT local address in none of the subnets of the
// data-plane interfaces: the real servers answer it, and govs answers ARP/ND for it only on those
// interfaces, so without a route to this host on the real servers their replies never come back.
// govs cannot see their routes, so it is a warning, not an error.
func (p *parser) localReach(c *Config) {
	if p.opts.InterfacePrefixes == nil {
		return
	}
	var nets []netip.Prefix
	var names []string
	for _, ifname := range c.Dataplane.Interfaces {
		for _, n := range p.opts.InterfacePrefixes(ifname) {
			nets = append(nets, n)
			names = append(names, ifname+" "+n.String())
		}
	}
	subnets := strings.Join(names, ", ")
	if subnets == "" {
		subnets = "none: the interfaces have no address"
	}
	for i := range c.VirtualServers {
		for _, a := range c.VirtualServers[i].LocalAddresses {
			if slices.ContainsFunc(nets, func(n netip.Prefix) bool { return n.Contains(a) }) {
				continue
			}
			field := fmt.Sprintf("virtual_server[%d].local_addresses", i+1)
			c.hostWarn = append(c.hostWarn, fmt.Sprintf("%s: %s: local address %s is in no subnet of the [dataplane] interfaces (%s): the real servers reach it only by a route to this host; add one on them (via this host's address on their segment), or use a spare address of the real servers' subnet",
				c.Where(field), field, a, subnets))
		}
	}
}

// hostInterface names the interface of this host that holds a, "" if none or when the host is
// not looked at (LoadOptions.AddressInterface).
func (p *parser) hostInterface(a netip.Addr) string {
	if p.opts.AddressInterface == nil {
		return ""
	}
	return p.opts.AddressInterface(a)
}
