package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/govs/govs/sched"
)

// Protocol is the transport protocol of a virtual server. The zero value is
// invalid.
type Protocol uint8

// Protocols govs balances.
const (
	ProtocolTCP Protocol = 1
	ProtocolUDP Protocol = 2
)

// String returns "tcp" or "udp", the spelling used in the config file.
func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// Number returns the IP protocol number (6 for TCP, 17 for UDP), or 0 for an
// invalid Protocol.
func (p Protocol) Number() uint8 {
	switch p {
	case ProtocolTCP:
		return 6
	case ProtocolUDP:
		return 17
	}
	return 0
}

// Method is how packets are forwarded to a real server (IPVS calls this the
// forwarding method). The zero value is invalid.
type Method uint8

// Forwarding methods govs implements.
const (
	// MethodNAT rewrites the destination (and the source on the way back);
	// replies must return through govs.
	MethodNAT Method = 1
	// MethodDR (direct routing) rewrites only the destination MAC; the real
	// server holds the VIP itself and answers clients directly.
	MethodDR Method = 2
	// MethodTun (tunnelling) encapsulates the client's packet unchanged in an outer
	// header to the real server (IPIP or GUE); the real server decapsulates it, holds the
	// VIP itself and answers clients directly.
	MethodTun Method = 3
	// MethodFullNAT rewrites both ends: the source to one of the virtual server's local
	// addresses and a port govs allocates, the destination to the real server. Replies come
	// back to govs because they are addressed to it, so real servers need no route through it.
	MethodFullNAT Method = 4
)

// String returns "nat", "dr", "tun" or "fullnat", the spelling used in the config file.
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
	return "Method(" + strconv.Itoa(int(m)) + ")"
}

// DefaultControlSocket is the unix socket `govs stats` and friends talk to when
// [control] socket is not set.
var DefaultControlSocket = "/run/govs/govs.sock"

// Default idle timeouts, the same as IPVS (net/netfilter/ipvs/ip_vs_proto_tcp.c
// and ip_vs_proto_udp.c; `ipvsadm --set` shows them as 900 120 300).
const (
	DefaultTimeoutTCP          = 900 * time.Second // tcp: ESTABLISHED
	DefaultTimeoutTCPFin       = 120 * time.Second // tcp_fin: FIN_WAIT
	DefaultTimeoutUDP          = 300 * time.Second // udp
	DefaultTimeoutTCPSynRecv   = 60 * time.Second  // tcp_syn_recv: SYN_RECV
	DefaultTimeoutTCPSynSent   = 120 * time.Second // tcp_syn_sent: SYN_SENT
	DefaultTimeoutTCPTimeWait  = 120 * time.Second // tcp_time_wait: TIME_WAIT
	DefaultTimeoutTCPClose     = 10 * time.Second  // tcp_close: CLOSE
	DefaultTimeoutTCPCloseWait = 60 * time.Second  // tcp_close_wait: CLOSE_WAIT
	DefaultTimeoutTCPLastAck   = 30 * time.Second  // tcp_last_ack: LAST_ACK
)

// Connection table limits and policies for [conntrack].
const (
	// DefaultConntrackMaxEntries applies when max_entries is omitted.
	DefaultConntrackMaxEntries = 1 << 20
	// MaxConntrackEntries is the largest max_entries accepted (2^27).
	MaxConntrackEntries = 1 << 27
	// FullPolicyDropNew drops a new connection's first packet when the table is full (default).
	FullPolicyDropNew = "drop_new"
	// FullPolicyEvictOldestIdle makes room by evicting the connection idle the longest.
	FullPolicyEvictOldestIdle = "evict_oldest_idle"
	// DefaultFullPolicy applies when full_policy is omitted.
	DefaultFullPolicy = FullPolicyDropNew
)

// MaxInterfaces is the most [dataplane] interfaces: a worker tracks its transmit rings (two per
// interface) in one 64-bit mask (dataplane.MaxPorts).
const MaxInterfaces = 32

// MaxThreshold is the largest upper_threshold or lower_threshold (2^31-1).
const MaxThreshold = 1<<31 - 1

// Config is a validated govs configuration. Every field is set: defaults are
// filled in by Parse.
type Config struct {
	File           string // the file it was read from, for messages
	Dataplane      Dataplane
	Control        Control
	Timeouts       Timeouts
	Conntrack      Conntrack
	VirtualServers []VirtualServer
	// HA is the [ha] table; nil when govs runs stand-alone.
	HA *HA
	// ShutdownDrain is how long a stand-alone govs, told to stop, goes on forwarding its
	// established connections (refusing new ones) before it stops; 0 stops at once.
	// DefaultShutdownDrain when omitted; an HA node hands over instead.
	ShutdownDrain time.Duration
	Metrics       Metrics // observe.go
	Log           Log     // observe.go

	pos      *positions // where each key was written, for Where
	hostWarn []string   // Warnings found looking at the host (LoadOptions.InterfacePrefixes)
}

// DefaultShutdownDrain is shutdown_drain when omitted: long enough for a request in flight to
// finish, short enough for a service manager's stop timeout.
const DefaultShutdownDrain = 3 * time.Second

// Conntrack is the [conntrack] table: the connection table shared by all workers.
type Conntrack struct {
	// MaxEntries bounds connections plus persistence templates over all workers;
	// 1..MaxConntrackEntries, default DefaultConntrackMaxEntries.
	MaxEntries int
	// FullPolicy is what happens to a new connection when the table is full:
	// FullPolicyDropNew (default) or FullPolicyEvictOldestIdle.
	FullPolicy string
	// ExpireNodestConn drops a removed real server's connections at once instead of letting
	// them time out (IPVS expire_nodest_conn); default false.
	ExpireNodestConn bool
}

// Dataplane is the [dataplane] table.
type Dataplane struct {
	Interfaces []string // interfaces govs reads and writes; at least one, no duplicates
	Workers    int      // 0 means one per CPU; at most 1024
	// RXMode is how the data plane receives: RXModeThroughput (TPACKETv3 blocks), RXModeLatency
	// (a frame at a time) or RXModeAuto (switches between them by measured rate).
	RXMode string
	// WorkerPriority is the SCHED_FIFO priority (1-99) of the worker threads; 0 (default) leaves
	// them under the normal scheduler.
	WorkerPriority int
	// IO is how frames move between the interfaces and the workers: IOAFPacket (AF_PACKET
	// rings, default) or IOAFXDP (AF_XDP sockets fed by an XDP program).
	IO string
	// XDPMode is where the XDP program runs with IOAFXDP: XDPModeDriver (native XDP, default)
	// or XDPModeGeneric (on the skb, any driver).
	XDPMode string
	// XDPIRQDefer is how the interfaces' receive interrupts (NAPI runs) are deferred with IOAFXDP:
	// XDPIRQDeferOff (the interfaces' own settings, default), XDPIRQDeferAuto (deferred by
	// DefaultXDPIRQDefer while frames arrive fast), or a duration (always deferred that long).
	XDPIRQDefer string
}

// Packet I/O for [dataplane] io.
const (
	IOAFPacket = "afpacket"
	IOAFXDP    = "afxdp"
	DefaultIO  = IOAFPacket
)

// [dataplane] xdp_irq_defer: off, auto, or a duration from MinXDPIRQDefer to MaxXDPIRQDefer.
const (
	XDPIRQDeferOff  = "off"
	XDPIRQDeferAuto = "auto"
	MinXDPIRQDefer  = time.Microsecond
	MaxXDPIRQDefer  = time.Millisecond
)

// XDP modes for [dataplane] xdp_mode.
const (
	XDPModeDriver  = "driver"
	XDPModeGeneric = "generic"
	DefaultXDPMode = XDPModeDriver
)

// Receive modes for [dataplane] rx_mode.
const (
	RXModeAuto       = "auto"
	RXModeThroughput = "throughput"
	RXModeLatency    = "latency"
	// DefaultRXMode applies when rx_mode is omitted.
	DefaultRXMode = RXModeAuto
)

// Control is the [control] table.
type Control struct {
	Socket string // absolute path of the unix control socket
}

// Timeouts is the [timeouts] table: connection idle timeouts by state, all > 0,
// defaulting to IPVS's (the DefaultTimeout* constants).
type Timeouts struct {
	TCP          time.Duration // tcp: established TCP
	TCPFin       time.Duration // tcp_fin: TCP after FIN (FIN_WAIT)
	UDP          time.Duration // udp
	TCPSynRecv   time.Duration // tcp_syn_recv
	TCPSynSent   time.Duration // tcp_syn_sent
	TCPTimeWait  time.Duration // tcp_time_wait
	TCPClose     time.Duration // tcp_close
	TCPCloseWait time.Duration // tcp_close_wait
	TCPLastAck   time.Duration // tcp_last_ack
}

// VirtualServer is one [[virtual_server]]: a VIP:port and protocol that govs
// balances over its real servers.
type VirtualServer struct {
	// Address is the VIP and port; port 0 is an all-ports service (like an IPVS port-0
	// service), used for a packet to the VIP when no service with its exact port exists.
	Address  netip.AddrPort
	Protocol Protocol
	// Scheduler is one of ImplementedSchedulers (sched.Names()); sched.DefaultScheduler
	// ("wlc") when omitted.
	Scheduler string
	// SchedulerFlags are the scheduler flags (ipvsadm --sched-flags), one canonical name each,
	// e.g. "sh-fallback", all belonging to Scheduler, no duplicates; nil when none.
	SchedulerFlags []string
	// MHTableSize is the Maglev lookup table size, a prime: sched.DefaultMHTableSize when
	// omitted with scheduler "mh", 0 for every other scheduler.
	MHTableSize int
	Method      Method
	// Tunnel is the encapsulation of method tun: TunnelIPIP (the default) or TunnelGUE;
	// empty for every other method.
	Tunnel string
	// TunnelPort is the real servers' GUE UDP port (tunnel "gue" only, required there); 0
	// otherwise.
	TunnelPort uint16
	// LocalAddresses are method fullnat's source addresses towards the real servers (at least
	// one, the virtual server's family, distinct, no VIP's); nil for every other method.
	LocalAddresses []netip.Addr
	// PersistenceTimeout is how long a client sticks to its real server after its last
	// connection (ipvsadm -p); 0 = no persistence.
	PersistenceTimeout time.Duration
	// PersistenceNetmask is the prefix length clients are grouped by for persistence
	// (ipvsadm -M): 0..32 for IPv4, 0..128 for IPv6; 32/128 when omitted, 0 when
	// PersistenceTimeout is 0.
	PersistenceNetmask int
	// OnePacket schedules every UDP datagram on its own (ipvsadm -o); UDP only.
	OnePacket   bool
	RealServers []RealServer // at least one, same address family as Address
	Line        int          // line of its [[virtual_server]] header, for messages
	// HealthCheck is its [virtual_server.health_check], the defaults its real servers' own
	// HealthChecks start from (those are what runs); nil when its kind is none.
	HealthCheck *HealthCheck
	// SorryServer takes new connections while no real server is up; the zero AddrPort when none.
	SorryServer netip.AddrPort
	// Quorum is how many real servers must be up for the virtual server to take new
	// connections; 0 = no quorum.
	Quorum int
}

// SchedOptions returns the options to hand sched.New along with vs.Scheduler.
func (vs *VirtualServer) SchedOptions() sched.Options {
	var f sched.Flags
	for _, name := range vs.SchedulerFlags {
		if g, err := sched.ParseFlag(name); err == nil {
			f |= g
		}
	}
	return sched.Options{Flags: f, MHTableSize: vs.MHTableSize}
}

// Key identifies a virtual server, e.g. "tcp/198.18.0.100:80" or
// "udp/[2001:2::100]:53". No two virtual servers in a Config share a Key.
func (vs *VirtualServer) Key() string {
	return vs.Protocol.String() + "/" + vs.Address.String()
}

// RealServer is one [[virtual_server.real_server]].
type RealServer struct {
	// Address is the real server's address and port. Port 0, allowed only under a port-0
	// virtual server, means "the port the client asked for" (the port is not rewritten).
	Address netip.AddrPort
	Weight  int // 0..65535; 0 means no new connections
	// UpperThreshold is ipvsadm -x: no new connections once the server has this many
	// (active + inactive); 0..MaxThreshold, 0 = none.
	UpperThreshold int
	// LowerThreshold is ipvsadm -y: new connections again below this many; at most
	// UpperThreshold, UpperThreshold*3/4 when omitted or 0 (IPVS), 0 when UpperThreshold is 0.
	LowerThreshold int
	Line           int // line of its header (or inline table), for messages
	// HealthCheck is how it is checked: its virtual server's health_check with its own keys over
	// it; nil when its kind is none (not checked, so always in rotation).
	HealthCheck *HealthCheck
}

// summaryMaxRealServers bounds how many real servers one Summary line lists.
const summaryMaxRealServers = 8

// Summary returns one line per virtual server, for `govs check-config`, each starting with its
// Key as logs and `govs ctl` write it, e.g.
//
//	tcp/198.18.0.100:80 scheduler=rr method=nat real_servers=2 (198.19.0.11:80 w=1, 198.19.0.12:80 w=1)
//
// Settings away from their defaults are added: scheduler flags, a Maglev table size, persistence
// and its netmask, one_packet, and real-server thresholds, e.g.
//
//	tcp/198.18.0.100:0 scheduler=sh flags=sh-fallback method=dr persistence=5m0s netmask=/24 real_servers=1 (198.19.0.11:0 w=1 upper=100 lower=75)
//
// Long real-server lists are cut after a few entries with "... N more".
func (c *Config) Summary() []string {
	out := make([]string, 0, len(c.VirtualServers))
	for i := range c.VirtualServers {
		vs := &c.VirtualServers[i]
		var b strings.Builder
		fmt.Fprintf(&b, "%s scheduler=%s", vs.Key(), vs.Scheduler)
		if len(vs.SchedulerFlags) > 0 {
			fmt.Fprintf(&b, " flags=%s", strings.Join(vs.SchedulerFlags, ","))
		}
		if vs.MHTableSize != 0 && vs.MHTableSize != sched.DefaultMHTableSize {
			fmt.Fprintf(&b, " mh_table_size=%d", vs.MHTableSize)
		}
		fmt.Fprintf(&b, " method=%s", vs.Method)
		if vs.Tunnel != "" {
			fmt.Fprintf(&b, " tunnel=%s", vs.Tunnel)
			if vs.TunnelPort != 0 {
				fmt.Fprintf(&b, ":%d", vs.TunnelPort)
			}
		}
		if len(vs.LocalAddresses) > 0 {
			fmt.Fprintf(&b, " local_addresses=%d", len(vs.LocalAddresses))
		}
		if vs.PersistenceTimeout > 0 {
			fmt.Fprintf(&b, " persistence=%s netmask=/%d", vs.PersistenceTimeout, vs.PersistenceNetmask)
		}
		if vs.OnePacket {
			b.WriteString(" one_packet")
		}
		fmt.Fprintf(&b, " real_servers=%d (", len(vs.RealServers))
		for j, rs := range vs.RealServers {
			if j == summaryMaxRealServers {
				fmt.Fprintf(&b, ", ... %d more", len(vs.RealServers)-j)
				break
			}
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s w=%d", rs.Address, rs.Weight)
			if rs.UpperThreshold > 0 {
				fmt.Fprintf(&b, " upper=%d lower=%d", rs.UpperThreshold, rs.LowerThreshold)
			}
		}
		b.WriteString(")")
		out = append(out, b.String())
	}
	return out
}

// Warnings returns what is valid but probably not what the operator meant, one line each (without
// a "warning:" prefix): a file without any [[virtual_server]], which govs runs but with which it
// balances nothing, and, when the host was looked at (LoadOptions.InterfacePrefixes), FullNAT
// local addresses in no subnet of the data-plane interfaces.
func (c *Config) Warnings() []string {
	var out []string
	if len(c.VirtualServers) == 0 {
		out = append(out, c.File+": no [[virtual_server]]: govs runs but balances nothing; add a [[virtual_server]] with its [[virtual_server.real_server]] tables")
	}
	return append(out, c.hostWarn...)
}

// LoadOptions controls the checks Load and Parse make against the host.
type LoadOptions struct {
	// InterfaceExists reports whether a network interface exists on this host; nil skips the check
	// (offline replay must not look interfaces up).
	InterfaceExists func(name string) bool
	// AddressInterface names the interface of this host that holds address a, "" if none; nil skips
	// the check. A VIP and a FullNAT local address must be on no interface: govs answers ARP/ND
	// for them and its kernel guard drops the kernel's copy of every frame to them, which would cut
	// this host's own services on that address and its connections from it (health checks).
	AddressInterface func(a netip.Addr) string
	// InterfacePrefixes returns the subnets of this host's interface name (its addresses with
	// their prefix lengths); nil skips the check it serves: a FullNAT local address in none of
	// the data-plane interfaces' subnets is a warning (Config.Warnings).
	InterfacePrefixes func(name string) []netip.Prefix
	// InterfaceMTU returns the MTU of this host's interface name, 0 if unknown; nil skips the
	// check it serves: with io = "afxdp" a frame must fit an AF_XDP frame (MaxXDPMTU).
	InterfaceMTU func(name string) int
	// InterfaceQueues returns how many receive queues this host's interface name has, 0 if
	// unknown; nil skips the check it serves: with io = "afxdp" every worker needs a queue of its
	// own on every interface.
	InterfaceQueues func(name string) int
	// MissingInterfaceHint, when not empty, ends the message about an interface InterfaceExists
	// does not find: what the caller offers instead, e.g. how to check the file without the host.
	MissingInterfaceHint string
	// SkipFileChecks leaves out the checks of files the configuration names ([ha] key_file), for
	// a file written for another host.
	SkipFileChecks bool
}

// InterfaceExistsOnHost reports whether this host has a network interface
// called name. It is the usual LoadOptions.InterfaceExists for the daemon.
func InterfaceExistsOnHost(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// AddressInterfaceOnHost names the interface of this host (its network namespace) that holds
// address a, "" if none or if the interfaces cannot be read. It is the usual
// LoadOptions.AddressInterface for the daemon.
func AddressInterfaceOnHost(a netip.Addr) string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a.Unmap() {
					return ifc.Name
				}
			}
		}
	}
	return ""
}

// InterfacePrefixesOnHost returns the subnets of this host's interface name, none if it cannot
// be read. It is the usual LoadOptions.InterfacePrefixes for the daemon.
func InterfacePrefixesOnHost(name string) []netip.Prefix {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, ad := range addrs {
		if n, ok := ad.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				ones, _ := n.Mask.Size()
				if a = a.Unmap(); a.Is4() && ones > 32 {
					ones -= 96
				}
				out = append(out, netip.PrefixFrom(a, ones).Masked())
			}
		}
	}
	return out
}

// InterfaceMTUOnHost returns the MTU of this host's interface name, 0 if it cannot be read. It
// is the usual LoadOptions.InterfaceMTU for the daemon.
func InterfaceMTUOnHost(name string) int {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	return ifc.MTU
}

// InterfaceQueuesOnHost returns how many receive queues this host's interface name has (from
// sysfs), 0 if it cannot tell. It is the usual LoadOptions.InterfaceQueues for the daemon.
func InterfaceQueuesOnHost(name string) int {
	if ifNameProblem(name) != "" {
		return 0
	}
	m, err := filepath.Glob("/sys/class/net/" + name + "/queues/rx-*")
	if err != nil {
		return 0
	}
	return len(m)
}

// XDPQueuesHint tells an operator how to give interface name n receive queues for io = "afxdp"
// with n workers, or how to do with the q it has.
func XDPQueuesHint(name string, q, n int) string {
	return fmt.Sprintf("with io = \"afxdp\" each worker needs a receive queue of its own on every interface: give %s %d queues (ethtool -L %s combined %d, or rx %d tx %d where the driver counts them apart, as veth does: there both ends need them, and a veth has at most the numrxqueues it was created with), or set workers = %d", name, n, name, n, n, n, q)
}

// MaxXDPWorkers is the most workers io = "afxdp" runs (a worker's hand-off wake mask has 64 bits).
const MaxXDPWorkers = 64

// MaxXDPMTU is the largest interface MTU io = "afxdp" takes: a frame with two VLAN tags and the
// 4-byte word the XDP program puts in front of it for several workers must fit a 4 KiB AF_XDP
// frame less the 256 bytes the kernel keeps in front of it.
const MaxXDPMTU = 4096 - 256 - 14 - 8 - 4

// OnHost is the LoadOptions of a file for this host: its interfaces and addresses looked up.
func OnHost() LoadOptions {
	return LoadOptions{InterfaceExists: InterfaceExistsOnHost, AddressInterface: AddressInterfaceOnHost,
		InterfacePrefixes: InterfacePrefixesOnHost, InterfaceMTU: InterfaceMTUOnHost, InterfaceQueues: InterfaceQueuesOnHost}
}

// Load reads and validates the config file at path. A file that cannot be read
// gives a wrapped *os.PathError; a file with problems gives Errors.
func Load(path string, opts LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config: %w", err)
	}
	return Parse(data, path, opts)
}

// Parse validates data, the contents of filename (used only in messages). When
// anything is wrong it returns Errors listing every problem found, sorted by
// line.
func Parse(data []byte, filename string, opts LoadOptions) (*Config, error) {
	p := &parser{file: filename, src: data, opts: opts}
	c := p.parse()
	if len(p.errs) > 0 {
		p.errs.sort()
		return nil, p.errs
	}
	return c, nil
}

// Error is one problem in a config file.
type Error struct {
	File  string
	Line  int    // 1-based; 0 when the problem is about the file as a whole (a missing table)
	Field string // TOML path as written, e.g. "virtual_server[2].real_server[1].weight"; may be empty for syntax errors
	Msg   string // what is wrong and what to write instead
}

// Error formats e as "file:line: field: msg", leaving out the line when it is
// 0 and the field when it is empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, sorted by line. Load and Parse
// return it (never an empty one) when validation fails; use errors.As to get
// at the individual problems.
type Errors []*Error

// Error joins the problems with newlines.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

var _ error = Errors(nil)
var _ error = (*Error)(nil)
