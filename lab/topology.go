package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options shape a Topology.
type Options struct {
	// Method is "nat", "dr", "tun" or "fullnat": where the real servers sit and how they route.
	// tun places them as dr does (on the client segment, VIP on lo, answering clients directly);
	// the test starts their tunnel ends (StartTunnelDecap), which the kernel here has no module
	// for. fullnat places them as nat does (on the server segment) but with their default route
	// via NoGateway4/6, which nothing answers: they reach only their own segment, where the
	// balancer's local addresses (LocalAddrs4/6) are.
	Method  string
	IPv6    bool   // also configure the IPv6 plan
	Servers int    // real servers; 0 means 3
	Prefix  string // namespace name prefix; "" means "govs-lab"
	// Balancers is how many balancer namespaces share the two segments (an HA pair, or a pair
	// and a third node); 0 means 1. With more than one and NAT, the real servers' gateway is
	// FloatingGateway4/6, which the active balancer must answer for.
	Balancers int
	// Queues, if more than 1, gives the balancers' veth pairs (l0, l1 and their switch ports)
	// that many transmit and receive queues: the switch side spreads flows over its transmit
	// queues, and each arrives on the balancer's receive queue of the same number, as a
	// multi-queue NIC's RSS spreads them.
	Queues int
}

// Topology is a set of namespaces wired as
//
//	client ──┐                 ┌── (NAT) rs1..rsN 198.19.0.11.. (default route via l1)
//	         br0 ── l0 [balancer] l1 ── br1
//	(DR) rs1..rsN 198.18.0.11.. on br0, VIP on lo
//
// with both bridges in the Switch namespace. With Options.Balancers > 1 every balancer has its l0
// on br0 and its l1 on br1 (balancer i at 198.18.0.1+i and 198.19.0.1+i). The VIPs are configured on no balancer interface: the
// process under test must answer ARP/NDP for them. Close removes every namespace.
type Topology struct {
	Client, Balancer, Switch *NS
	Servers                  []*NS
	// Balancers are every balancer namespace; Balancers[0] is Balancer.
	Balancers []*NS

	ClientAddr4, ClientAddr6, VIP4, VIP6 netip.Addr
	ServerAddrs4, ServerAddrs6           []netip.Addr
	// l0's and l1's own kernel addresses (the IPv6 ones are configured only with Options.IPv6).
	BalancerL0Addr4, BalancerL0Addr6, BalancerL1Addr4, BalancerL1Addr6 netip.Addr
	// Per balancer (index as Balancers): l0's and l1's IPv4 addresses, and with Options.IPv6
	// their IPv6 ones.
	BalancerL0Addrs4, BalancerL1Addrs4 []netip.Addr
	BalancerL0Addrs6, BalancerL1Addrs6 []netip.Addr
	// FloatingGateway4 and FloatingGateway6 are the NAT real servers' gateway with more than one
	// balancer: no balancer's kernel has it; the active one's HA announces it ([ha] floating).
	FloatingGateway4, FloatingGateway6 netip.Addr
	// LocalAddrs4 and LocalAddrs6 are addresses on the server segment no namespace has, for a
	// FullNAT virtual server's local_addresses (the process under test answers for them).
	LocalAddrs4, LocalAddrs6 []netip.Addr
	// NoGateway4 and NoGateway6 are the fullnat real servers' default gateway: an address on
	// their segment nobody has, so that nothing they send leaves it.
	NoGateway4, NoGateway6 netip.Addr
	// BalancerIfaces are interface names inside Balancer: "l0" (client side), "l1" (server side).
	BalancerIfaces []string

	Options Options
	all     []*NS // every namespace, creation order
}

// Interface names inside the namespaces.
const (
	ClientIface = "eth0" // the client's only interface, on br0
	ServerIface = "eth0" // a real server's only interface (br1 for NAT, br0 for DR)
)

// The address plan (RFC 2544 benchmark space and the 2001:2::/48 benchmarking prefix).
var (
	clientAddr4 = netip.MustParseAddr("198.18.0.10")
	clientAddr6 = netip.MustParseAddr("2001:2::10")
	vip4        = netip.MustParseAddr("198.18.0.100")
	vip6        = netip.MustParseAddr("2001:2::100")
	l0Addr4     = netip.MustParseAddr("198.18.0.1")
	l0Addr6     = netip.MustParseAddr("2001:2::1")
	l1Addr4     = netip.MustParseAddr("198.19.0.1")
	l1Addr6     = netip.MustParseAddr("2001:2:0:1::1")
	floatGW4    = netip.MustParseAddr("198.19.0.254")
	floatGW6    = netip.MustParseAddr("2001:2:0:1::fe")
	noGW4       = netip.MustParseAddr("198.19.0.253")
	noGW6       = netip.MustParseAddr("2001:2:0:1::fd")
	localAddrs4 = []netip.Addr{netip.MustParseAddr("198.19.0.50"), netip.MustParseAddr("198.19.0.51")}
	localAddrs6 = []netip.Addr{netip.MustParseAddr("2001:2:0:1::50"), netip.MustParseAddr("2001:2:0:1::51")}
)

// balancerAddrs returns balancer i's (0-based) l0 and l1 addresses, IPv4 and IPv6.
func balancerAddrs(i int) (l04, l06, l14, l16 netip.Addr) {
	l04 = netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)})
	l14 = netip.AddrFrom4([4]byte{198, 19, 0, byte(1 + i)})
	l06 = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(1 + i)})
	l16 = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, 1, 15: byte(1 + i)})
	return
}

// serverAddrs returns real server i's (0-based) addresses: .11, .12, ... on the server net for NAT
// or on the client net for DR.
func serverAddrs(method string, i int) (netip.Addr, netip.Addr) {
	if method == "dr" || method == "tun" {
		return netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + i)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 14: 0, 15: byte(0x11 + i)})
	}
	return netip.AddrFrom4([4]byte{198, 19, 0, byte(11 + i)}),
		netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, 1, 15: byte(0x11 + i)})
}

// New builds a topology. On error everything created so far is removed again.
func New(opts Options) (*Topology, error) {
	if opts.Method == "" {
		opts.Method = "nat"
	}
	if opts.Method != "nat" && opts.Method != "dr" && opts.Method != "tun" && opts.Method != "fullnat" {
		return nil, fmt.Errorf("failed to build topology: method %q is not \"nat\", \"dr\", \"tun\" or \"fullnat\"", opts.Method)
	}
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	if opts.Servers < 0 || opts.Servers > 50 {
		return nil, fmt.Errorf("failed to build topology: %d servers, want 1..50", opts.Servers)
	}
	if opts.Prefix == "" {
		opts.Prefix = "govs-lab"
	}
	if opts.Balancers == 0 {
		opts.Balancers = 1
	}
	if opts.Balancers < 0 || opts.Balancers > 3 {
		return nil, fmt.Errorf("failed to build topology: %d balancers, want 1..3", opts.Balancers)
	}
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("failed to pick a topology id: %w", err)
	}
	t := &Topology{
		ClientAddr4: clientAddr4, ClientAddr6: clientAddr6, VIP4: vip4, VIP6: vip6,
		BalancerL0Addr4: l0Addr4, BalancerL0Addr6: l0Addr6, BalancerL1Addr4: l1Addr4, BalancerL1Addr6: l1Addr6,
		BalancerIfaces: []string{"l0", "l1"},
		Options:        opts,
	}
	if opts.Method == "fullnat" {
		t.LocalAddrs4, t.NoGateway4 = localAddrs4, noGW4
		if opts.IPv6 {
			t.LocalAddrs6, t.NoGateway6 = localAddrs6, noGW6
		}
	}
	if err := t.build(fmt.Sprintf("%s-%d-%s", opts.Prefix, os.Getpid(), hex.EncodeToString(rnd[:]))); err != nil {
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("failed to tear down half-built topology: %w", cerr))
		}
		return nil, err
	}
	t.settle()
	return t, nil
}

// settle waits, up to 3 s, until the balancer's kernel has sent nothing for half a second: the
// e2e tests compare its ICMP and RST counters before and after traffic, and a late MLD report or
// neighbour advertisement after the links came up would blur that (seen once in `make test`: one
// ICMPv6 message a moment after New returned).
func (t *Topology) settle() {
	keys := []string{"Tcp.OutRsts", "Icmp.OutMsgs", "Icmp6.OutMsgs", "Ip6.OutRequests"}
	last, err := t.Balancer.SNMP()
	if err != nil {
		return
	}
	for still, deadline := 0, time.Now().Add(3*time.Second); still < 5 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		cur, err := t.Balancer.SNMP()
		if err != nil {
			return
		}
		still++
		for _, k := range keys {
			if cur[k] != last[k] {
				still = 0
			}
		}
		last = cur
	}
}

// Namespaces returns every namespace of the topology.
func (t *Topology) Namespaces() []*NS { return append([]*NS(nil), t.all...) }

// Close deletes every namespace; calling it again does nothing.
func (t *Topology) Close() error {
	var errs []error
	for i := len(t.all) - 1; i >= 0; i-- {
		errs = append(errs, t.all[i].close())
	}
	return errors.Join(errs...)
}

func (t *Topology) add(name string) (*NS, error) {
	n, err := newNS(name)
	if err != nil {
		return nil, err
	}
	t.all = append(t.all, n)
	// Quiet, predictable hosts: no DAD (addresses usable at once), no router solicitations, no
	// reverse-path filter; "default" applies to the interfaces created below.
	//
	// The kernel repeats each MLD report (robustness 2, net.ipv6.mld_qrv, which exists only in the
	// host namespace) after a random delay up to the unsolicited report interval, 1 s by default; a
	// 1 ms interval makes the repeats fall inside New, so counters read afterwards stay still (the
	// e2e kernel-silence check compares the balancer's Icmp6.OutMsgs). Without Options.IPv6, IPv6 is
	// disabled outright.
	kv := []string{"net.ipv4.conf.all.rp_filter", "0", "net.ipv4.conf.default.rp_filter", "0"}
	for _, c := range []string{"all", "default"} {
		if !t.Options.IPv6 {
			kv = append(kv, "net.ipv6.conf."+c+".disable_ipv6", "1")
			continue
		}
		kv = append(kv,
			"net.ipv6.conf."+c+".accept_dad", "0",
			"net.ipv6.conf."+c+".router_solicitations", "0",
			"net.ipv6.conf."+c+".accept_ra", "0",
			"net.ipv6.conf."+c+".mldv1_unsolicited_report_interval", "1",
			"net.ipv6.conf."+c+".mldv2_unsolicited_report_interval", "1")
	}
	if err := n.SetSysctl(kv...); err != nil {
		return nil, err
	}
	return n, ipCmd("-n", name, "link", "set", "lo", "up")
}

func (t *Topology) build(id string) error {
	var err error
	if t.Switch, err = t.add(id + "-sw"); err != nil {
		return err
	}
	if t.Client, err = t.add(id + "-cl"); err != nil {
		return err
	}
	for i := 0; i < t.Options.Balancers; i++ {
		name := id + "-lb"
		if i > 0 {
			name = fmt.Sprintf("%s-lb%d", id, i+1)
		}
		n, err := t.add(name)
		if err != nil {
			return err
		}
		t.Balancers = append(t.Balancers, n)
	}
	t.Balancer = t.Balancers[0]
	for i := 0; i < t.Options.Servers; i++ {
		n, err := t.add(fmt.Sprintf("%s-rs%d", id, i+1))
		if err != nil {
			return err
		}
		t.Servers = append(t.Servers, n)
	}

	sw := t.Switch.Name
	// The switch only bridges: no IPv6 on its ports, no STP delay, no multicast snooping (govs does
	// not send MLD reports for the VIP's solicited-node group, so snooping could hide NS from it).
	if err := t.Switch.SetSysctl("net.ipv6.conf.all.disable_ipv6", "1", "net.ipv6.conf.default.disable_ipv6", "1"); err != nil {
		return err
	}
	// Nor does it filter: with br_netfilter present (it is built in here) a bridge validates IPv4
	// and IPv6 headers and silently drops malformed frames, which would hide them from govs's
	// drop counters. A real switch forwards them.
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
		if _, err := t.Switch.Sysctl(k); err == nil {
			if err := t.Switch.SetSysctl(k, "0"); err != nil {
				return err
			}
		}
	}
	for _, br := range []string{"br0", "br1"} {
		if err := ipCmd("-n", sw, "link", "add", br, "type", "bridge", "stp_state", "0", "mcast_snooping", "0",
			"nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"); err != nil {
			return err
		}
		if err := ipCmd("-n", sw, "link", "set", br, "up"); err != nil {
			return err
		}
	}
	// link joins a new veth pair: swName on bridge br in the switch, peerName in ns, each end with
	// queues transmit and receive queues (0: the kernel's default, one).
	linkQ := func(swName, br string, ns *NS, peerName string, queues int) error {
		var q []string
		if queues > 1 {
			n := strconv.Itoa(queues)
			q = []string{"numtxqueues", n, "numrxqueues", n}
		}
		args := append(append([]string{"-n", sw, "link", "add", swName}, q...), "type", "veth", "peer", "name", peerName)
		args = append(append(args, q...), "netns", ns.Name)
		if err := ipCmd(args...); err != nil {
			return err
		}
		if err := ipCmd("-n", sw, "link", "set", swName, "master", br, "up"); err != nil {
			return err
		}
		return ipCmd("-n", ns.Name, "link", "set", peerName, "up")
	}
	link := func(swName, br string, ns *NS, peerName string) error { return linkQ(swName, br, ns, peerName, 0) }
	addr := func(ns *NS, dev string, a netip.Addr, bits int) error {
		args := []string{"-n", ns.Name, "addr", "add", netip.PrefixFrom(a, bits).String(), "dev", dev}
		if a.Is6() {
			args = append(args, "nodad")
		}
		return ipCmd(args...)
	}
	v6 := t.Options.IPv6

	// Client.
	if err := link("cl", "br0", t.Client, ClientIface); err != nil {
		return err
	}
	if err := addr(t.Client, ClientIface, clientAddr4, 24); err != nil {
		return err
	}
	if v6 {
		if err := addr(t.Client, ClientIface, clientAddr6, 64); err != nil {
			return err
		}
	}

	// Balancers: forwarding must stay off, so their kernels neither forward nor answer (ICMP) for
	// traffic that only the process under test should handle.
	for i, b := range t.Balancers {
		if err := b.SetSysctl("net.ipv4.ip_forward", "0", "net.ipv6.conf.all.forwarding", "0"); err != nil {
			return err
		}
		for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
			v, err := b.Sysctl(k)
			if err != nil {
				return err
			}
			if v != "0" {
				return fmt.Errorf("failed to build topology: %s is %s in %s, want 0", k, v, b.Name)
			}
		}
		port0, port1 := "lb0", "lb1"
		if i > 0 {
			port0, port1 = fmt.Sprintf("lb%d-0", i+1), fmt.Sprintf("lb%d-1", i+1)
		}
		if err := linkQ(port0, "br0", b, "l0", t.Options.Queues); err != nil {
			return err
		}
		if err := linkQ(port1, "br1", b, "l1", t.Options.Queues); err != nil {
			return err
		}
		l04, l06, l14, l16 := balancerAddrs(i)
		t.BalancerL0Addrs4 = append(t.BalancerL0Addrs4, l04)
		t.BalancerL1Addrs4 = append(t.BalancerL1Addrs4, l14)
		if err := addr(b, "l0", l04, 24); err != nil {
			return err
		}
		if err := addr(b, "l1", l14, 24); err != nil {
			return err
		}
		if v6 {
			t.BalancerL0Addrs6 = append(t.BalancerL0Addrs6, l06)
			t.BalancerL1Addrs6 = append(t.BalancerL1Addrs6, l16)
			if err := addr(b, "l0", l06, 64); err != nil {
				return err
			}
			if err := addr(b, "l1", l16, 64); err != nil {
				return err
			}
		}
	}
	if len(t.Balancers) > 1 {
		t.FloatingGateway4, t.FloatingGateway6 = floatGW4, floatGW6
	}

	// Real servers.
	for i, ns := range t.Servers {
		a4, a6 := serverAddrs(t.Options.Method, i)
		t.ServerAddrs4 = append(t.ServerAddrs4, a4)
		if v6 {
			t.ServerAddrs6 = append(t.ServerAddrs6, a6)
		}
		br := "br1"
		if t.Options.Method == "dr" || t.Options.Method == "tun" {
			br = "br0"
		}
		if err := link(fmt.Sprintf("rs%d", i+1), br, ns, ServerIface); err != nil {
			return err
		}
		if err := addr(ns, ServerIface, a4, 24); err != nil {
			return err
		}
		if v6 {
			if err := addr(ns, ServerIface, a6, 64); err != nil {
				return err
			}
		}
		if t.Options.Method == "nat" && len(t.Balancers) > 1 {
			// The gateway moves with the active balancer: no permanent entry, the servers resolve it.
			if err := ipCmd("-n", ns.Name, "route", "add", "default", "via", floatGW4.String()); err != nil {
				return err
			}
			if v6 {
				if err := ipCmd("-n", ns.Name, "-6", "route", "add", "default", "via", floatGW6.String()); err != nil {
					return err
				}
			}
			continue
		}
		if t.Options.Method == "nat" || t.Options.Method == "fullnat" {
			// Permanent neighbour entries for l1's address: otherwise the servers' NS for it makes the
			// balancer's kernel send NAs (Icmp6.OutMsgs), which would blur the e2e check that the
			// balancer's own stack emits nothing while govs works. Under nat l1 is their gateway;
			// under fullnat they learn it from the balancer kernel's NS when govs resolves them and
			// probe it later. A fullnat server's gateway is one nobody has.
			gw4, gw6 := l1Addr4, l1Addr6
			if t.Options.Method == "fullnat" {
				gw4, gw6 = noGW4, noGW6
			}
			if len(t.Balancers) == 1 {
				l1mac, err := t.Balancer.HardwareAddr("l1")
				if err != nil {
					return err
				}
				if err := ipCmd("-n", ns.Name, "neigh", "replace", l1Addr4.String(), "lladdr", l1mac.String(), "dev", ServerIface, "nud", "permanent"); err != nil {
					return err
				}
				if v6 {
					if err := ipCmd("-n", ns.Name, "neigh", "replace", l1Addr6.String(), "lladdr", l1mac.String(), "dev", ServerIface, "nud", "permanent"); err != nil {
						return err
					}
				}
			}
			if err := ipCmd("-n", ns.Name, "route", "add", "default", "via", gw4.String()); err != nil {
				return err
			}
			if v6 {
				if err := ipCmd("-n", ns.Name, "-6", "route", "add", "default", "via", gw6.String()); err != nil {
					return err
				}
			}
			continue
		}
		// DR and tun: the VIP is local to the server (on lo) so it accepts the forwarded frames and replies
		// from the VIP straight to the client, but must never claim it on the wire. For IPv4 that is
		// arp_ignore=1 (answer only for addresses of the receiving interface) and arp_announce=2 (never
		// use the VIP as ARP sender address). IPv6 needs nothing: NDP answers only for addresses of
		// the receiving interface, and an address on lo belongs to no other link.
		if err := ns.SetSysctl(
			"net.ipv4.conf.all.arp_ignore", "1", "net.ipv4.conf.all.arp_announce", "2",
			"net.ipv4.conf."+ServerIface+".arp_ignore", "1", "net.ipv4.conf."+ServerIface+".arp_announce", "2",
		); err != nil {
			return err
		}
		if err := addr(ns, "lo", vip4, 32); err != nil {
			return err
		}
		if v6 {
			if err := addr(ns, "lo", vip6, 128); err != nil {
				return err
			}
		}
	}
	return nil
}

// String lists the namespaces, for logs.
func (t *Topology) String() string {
	names := make([]string, len(t.all))
	for i, n := range t.all {
		names[i] = n.Name
	}
	return fmt.Sprintf("%s topology (ipv6=%v): %s", t.Options.Method, t.Options.IPv6, strings.Join(names, " "))
}
