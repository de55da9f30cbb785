package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/sched"
)

// dp is a valid [dataplane] table: lines 1-2 of most cases below.
const dp = "[dataplane]\ninterfaces = [\"l0\"]\n"

// vsHead is a valid virtual server header and keys without real servers:
// lines 3-7 when it follows dp.
const vsHead = `[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
scheduler = "rr"
method = "nat"
`

// rs is a valid real server: two lines.
const rs = `[[virtual_server.real_server]]
address = "198.19.0.11:80"
`

// defaultTimeouts are the [timeouts] IPVS defaults Parse fills in.
var defaultTimeouts = Timeouts{
	TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second,
	TCPSynRecv: 60 * time.Second, TCPSynSent: 120 * time.Second, TCPTimeWait: 120 * time.Second,
	TCPClose: 10 * time.Second, TCPCloseWait: 60 * time.Second, TCPLastAck: 30 * time.Second,
}

// defaultConntrack is the [conntrack] table Parse fills in when it is omitted.
var defaultConntrack = Conntrack{MaxEntries: 1048576, FullPolicy: "drop_new", ExpireNodestConn: false}

func TestParseMinimal(t *testing.T) {
	c, err := Load("testdata/minimal.toml", LoadOptions{InterfaceExists: func(string) bool { return true }})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		File:          "testdata/minimal.toml",
		Dataplane:     Dataplane{Interfaces: []string{"l0", "l1"}, Workers: 0, RXMode: DefaultRXMode, IO: DefaultIO, XDPMode: DefaultXDPMode, XDPIRQDefer: XDPIRQDeferOff},
		Control:       Control{Socket: "/run/govs/govs.sock"},
		Timeouts:      defaultTimeouts,
		Conntrack:     defaultConntrack,
		ShutdownDrain: DefaultShutdownDrain,
		VirtualServers: []VirtualServer{{
			Address:   netip.MustParseAddrPort("198.18.0.100:80"),
			Protocol:  ProtocolTCP,
			Scheduler: "rr",
			Method:    MethodNAT,
			RealServers: []RealServer{
				{Address: netip.MustParseAddrPort("198.19.0.11:80"), Weight: 1, Line: 11},
			},
			Line: 5,
		}},
		Metrics: Metrics{Listen: DefaultMetricsListen},
		Log:     Log{Format: DefaultLogFormat, Level: DefaultLogLevel},
	}
	want.pos = c.pos // positions are Where's business (TestConfigWhere)
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Load(minimal):\n got %+v\nwant %+v", c, want)
	}
	if got, want := c.VirtualServers[0].Key(), "tcp/198.18.0.100:80"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	wantSummary := []string{"tcp/198.18.0.100:80 scheduler=rr method=nat real_servers=1 (198.19.0.11:80 w=1)"}
	if got := c.Summary(); !reflect.DeepEqual(got, wantSummary) {
		t.Errorf("Summary() = %q, want %q", got, wantSummary)
	}
}

func TestParseFull(t *testing.T) {
	c, err := Load("testdata/full.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		File:          "testdata/full.toml",
		ShutdownDrain: 10 * time.Second,
		Dataplane:     Dataplane{Interfaces: []string{"l0", "l1"}, Workers: 2, RXMode: RXModeLatency, IO: DefaultIO, XDPMode: DefaultXDPMode, XDPIRQDefer: XDPIRQDeferOff},
		Control:       Control{Socket: "/run/govs/test.sock"},
		Timeouts: Timeouts{
			TCP: 15 * time.Minute, TCPFin: time.Minute, UDP: 30 * time.Second,
			TCPSynRecv: 30 * time.Second, TCPSynSent: 45 * time.Second, TCPTimeWait: 90 * time.Second,
			TCPClose: 5 * time.Second, TCPCloseWait: 40 * time.Second, TCPLastAck: 20 * time.Second,
		},
		Conntrack: Conntrack{MaxEntries: 200000, FullPolicy: FullPolicyEvictOldestIdle, ExpireNodestConn: true},
		VirtualServers: []VirtualServer{
			{
				Address:   netip.MustParseAddrPort("198.18.0.100:80"),
				Protocol:  ProtocolTCP,
				Scheduler: "wrr",
				Method:    MethodDR,
				RealServers: []RealServer{
					{Address: netip.MustParseAddrPort("198.19.0.11:80"), Weight: 3, UpperThreshold: 1000, LowerThreshold: 750, Line: 35},
					{Address: netip.MustParseAddrPort("198.19.0.12:80"), Weight: 0, UpperThreshold: 400, LowerThreshold: 100, Line: 40},
				},
				Line: 29,
			},
			{
				Address:   netip.MustParseAddrPort("[2001:2::100]:53"),
				Protocol:  ProtocolUDP,
				Scheduler: "rr",
				Method:    MethodNAT,
				OnePacket: true,
				RealServers: []RealServer{
					{Address: netip.MustParseAddrPort("[2001:2::11]:5353"), Weight: 1, Line: 53},
					{Address: netip.MustParseAddrPort("[2001:2::12]:5353"), Weight: 7, Line: 54},
				},
				Line: 46,
			},
			{
				Address:            netip.MustParseAddrPort("198.18.0.101:0"),
				Protocol:           ProtocolTCP,
				Scheduler:          "sh",
				SchedulerFlags:     []string{"sh-fallback", "sh-port"},
				Method:             MethodDR,
				PersistenceTimeout: 300 * time.Second,
				PersistenceNetmask: 24,
				RealServers: []RealServer{
					{Address: netip.MustParseAddrPort("198.19.0.11:0"), Weight: 1, Line: 67},
				},
				Line: 58,
			},
			{
				Address:            netip.MustParseAddrPort("[2001:2::101]:443"),
				Protocol:           ProtocolTCP,
				Scheduler:          "mh",
				SchedulerFlags:     []string{"mh-port"},
				MHTableSize:        251,
				Method:             MethodNAT,
				PersistenceTimeout: time.Hour,
				PersistenceNetmask: 64,
				RealServers: []RealServer{
					{Address: netip.MustParseAddrPort("[2001:2::11]:8443"), Weight: 2, Line: 79},
				},
				Line: 70,
			},
			{
				Address:   netip.MustParseAddrPort("198.18.0.102:53"),
				Protocol:  ProtocolUDP,
				Scheduler: "wlc",
				Method:    MethodNAT,
				RealServers: []RealServer{
					{Address: netip.MustParseAddrPort("198.19.0.13:53"), Weight: 1, Line: 86},
				},
				Line: 81,
			},
			{
				Address:        netip.MustParseAddrPort("198.18.0.103:80"),
				Protocol:       ProtocolTCP,
				Scheduler:      "wlc",
				Method:         MethodFullNAT,
				LocalAddresses: []netip.Addr{netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3")},
				RealServers: []RealServer{
					{Address: netip.MustParseAddrPort("198.19.0.14:8080"), Weight: 1, Line: 94},
				},
				Line: 89,
			},
		},
		Metrics: Metrics{Listen: "[::1]:9100"},
		Log:     Log{Format: LogFormatJSON, Level: LogLevelDebug},
	}
	want.pos = c.pos
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Load(full):\n got %+v\nwant %+v", c, want)
	}
	wantSummary := []string{
		"tcp/198.18.0.100:80 scheduler=wrr method=dr real_servers=2 (198.19.0.11:80 w=3 upper=1000 lower=750, 198.19.0.12:80 w=0 upper=400 lower=100)",
		"udp/[2001:2::100]:53 scheduler=rr method=nat one_packet real_servers=2 ([2001:2::11]:5353 w=1, [2001:2::12]:5353 w=7)",
		"tcp/198.18.0.101:0 scheduler=sh flags=sh-fallback,sh-port method=dr persistence=5m0s netmask=/24 real_servers=1 (198.19.0.11:0 w=1)",
		"tcp/[2001:2::101]:443 scheduler=mh flags=mh-port mh_table_size=251 method=nat persistence=1h0m0s netmask=/64 real_servers=1 ([2001:2::11]:8443 w=2)",
		"udp/198.18.0.102:53 scheduler=wlc method=nat real_servers=1 (198.19.0.13:53 w=1)",
		"tcp/198.18.0.103:80 scheduler=wlc method=fullnat local_addresses=2 real_servers=1 (198.19.0.14:8080 w=1)",
	}
	if got := c.Summary(); !reflect.DeepEqual(got, wantSummary) {
		t.Errorf("Summary():\n got %q\nwant %q", got, wantSummary)
	}
	if got, want := c.VirtualServers[1].Key(), "udp/[2001:2::100]:53"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	if got, want := c.VirtualServers[2].SchedOptions(), (sched.Options{Flags: sched.FlagSHFallback | sched.FlagSHPort}); got != want {
		t.Errorf("SchedOptions() = %+v, want %+v", got, want)
	}
	if got, want := c.VirtualServers[3].SchedOptions(), (sched.Options{Flags: sched.FlagMHPort, MHTableSize: 251}); got != want {
		t.Errorf("SchedOptions() = %+v, want %+v", got, want)
	}
}

func TestParseIPv6(t *testing.T) {
	src := dp + `[[virtual_server]]
address = "[2001:2::100]:80"
protocol = "tcp"
scheduler = "wrr"
method = "dr"
[[virtual_server.real_server]]
address = "[2001:2::11]:80"
weight = 65535
`
	c, err := Parse([]byte(src), "v6.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	vs := c.VirtualServers[0]
	if vs.Address != netip.MustParseAddrPort("[2001:2::100]:80") || !vs.Address.Addr().Is6() {
		t.Errorf("VIP = %v, want [2001:2::100]:80", vs.Address)
	}
	if got, want := vs.RealServers[0], (RealServer{Address: netip.MustParseAddrPort("[2001:2::11]:80"), Weight: 65535, Line: 8}); got != want {
		t.Errorf("real server = %+v, want %+v", got, want)
	}
	if got, want := vs.Key(), "tcp/[2001:2::100]:80"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
}

func TestParseFullNAT(t *testing.T) {
	for _, tc := range []struct {
		vip, real string
		locals    []string
	}{
		{"198.18.0.100:80", "198.19.0.11:8080", []string{"198.19.0.2", "198.19.0.3"}},
		{"[2001:2::100]:80", "[2001:2::11]:80", []string{"2001:2:0:1::2"}},
	} {
		quoted := `"` + strings.Join(tc.locals, `", "`) + `"`
		src := dp + "[[virtual_server]]\naddress = \"" + tc.vip + "\"\nprotocol = \"tcp\"\nmethod = \"fullnat\"\n" +
			"local_addresses = [" + quoted + "]\n[[virtual_server.real_server]]\naddress = \"" + tc.real + "\"\n"
		c, err := Parse([]byte(src), "f.toml", LoadOptions{})
		if err != nil {
			t.Fatalf("%s: Parse: %v", tc.vip, err)
		}
		vs := c.VirtualServers[0]
		var got []string
		for _, a := range vs.LocalAddresses {
			got = append(got, a.String())
		}
		if vs.Method != MethodFullNAT || vs.Method.String() != "fullnat" || !slices.Equal(got, tc.locals) {
			t.Errorf("%s: method %v, local addresses %v; want fullnat, %v", tc.vip, vs.Method, got, tc.locals)
		}
	}
}

func TestWeightOmittedVersusZero(t *testing.T) {
	src := dp + vsHead + rs + `[[virtual_server.real_server]]
address = "198.19.0.12:80"
weight = 0
`
	c, err := Parse([]byte(src), "w.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := []int{c.VirtualServers[0].RealServers[0].Weight, c.VirtualServers[0].RealServers[1].Weight}
	if want := []int{1, 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("weights = %v, want %v (omitted = 1, explicit 0 stays 0)", got, want)
	}
}

func TestParseNoVirtualServers(t *testing.T) {
	c, err := Parse([]byte(dp), "empty.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(c.VirtualServers) != 0 || len(c.Summary()) != 0 {
		t.Errorf("got %d virtual servers, want 0", len(c.VirtualServers))
	}
	// Valid, but worth one line: govs would balance nothing.
	want := []string{"empty.toml: no [[virtual_server]]: govs runs but balances nothing; add a [[virtual_server]] with its [[virtual_server.real_server]] tables"}
	if got := c.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("Warnings() = %q, want %q", got, want)
	}
	c, err = Parse([]byte(dp+vsHead+rs), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.Warnings(); len(got) != 0 {
		t.Errorf("Warnings() of a file with a virtual server = %q, want none", got)
	}
}

// manyIfaces lists n interface names e0, e1, ... as TOML strings.
func manyIfaces(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%q", fmt.Sprintf("e%d", i))
	}
	return strings.Join(names, ", ")
}

func TestParseErrors(t *testing.T) {
	hasL0L1 := func(name string) bool { return name == "l0" || name == "l1" }
	tests := []struct {
		name string
		src  string
		opts LoadOptions
		want []string
	}{
		// Syntax.
		{
			name: "syntax error keeps line and column",
			src:  dp + "[[virtual_server]\n",
			want: []string{`t.toml:3: invalid TOML at column 17 in the table header [[virtual_server]: expected end of table array name delimiter ']', but got '\n' instead`},
		},
		{
			name: "duplicate key",
			src:  dp + "interfaces = [\"l1\"]\n",
			want: []string{"t.toml:3: dataplane.interfaces: invalid TOML at column 1: Key 'dataplane.interfaces' has already been defined."},
		},
		{
			name: "too many interfaces",
			src:  "[dataplane]\ninterfaces = [" + manyIfaces(33) + "]\n",
			want: []string{`t.toml:2: dataplane.interfaces: lists 33 interfaces; govs serves at most 32: use fewer (a VLAN trunk carries many networks on one)`},
		},
		// Unknown keys.
		{
			name: "keys govs declines say why",
			src:  dp + "[log]\nformat = \"text\"\n" + vsHead + "clamp_mss = true\nlocal_addresses = [\"198.19.0.2\"]\n" + rs,
			want: []string{
				`t.toml:10: virtual_server[1].clamp_mss: not supported: under tun (and dr) the client's MSS comes from the real server's SYN-ACK, which never passes govs; lower it on the real servers instead (ip route ... advmss, or a lower MTU on their tunnel device)`,
				`t.toml:11: virtual_server[1].local_addresses: is for method fullnat only (method nat keeps the client's address as the source); remove it or write method = "fullnat"`,
			},
		},
		{
			name: "unknown key in dataplane",
			src:  dp + "worker = 2\n",
			want: []string{`t.toml:3: dataplane.worker: unknown key; valid keys in [dataplane] are interfaces, workers, rx_mode, worker_priority, io, xdp_mode, xdp_irq_defer (did you mean workers?)`},
		},
		{
			name: "unknown table",
			src:  dp + "[contrl]\nsocket = \"/x\"\n",
			want: []string{`t.toml:3: contrl: unknown key; valid keys at the top level are shutdown_drain, dataplane, control, timeouts, conntrack, virtual_server, ha, metrics, log (did you mean control?)`},
		},
		{
			name: "unknown key in second real server",
			src:  dp + vsHead + rs + "[[virtual_server.real_server]]\naddress = \"198.19.0.12:80\"\nwieght = 2\n",
			want: []string{`t.toml:12: virtual_server[1].real_server[2].wieght: unknown key; valid keys in [[virtual_server.real_server]] are address, weight, upper_threshold, lower_threshold, health_check (did you mean weight?)`},
		},
		{
			name: "unknown key in inline real server",
			src:  dp + vsHead + "real_server = [\n  { address = \"198.19.0.11:80\" },\n  { address = \"198.19.0.12:80\", port = 80 },\n]\n",
			want: []string{`t.toml:10: virtual_server[1].real_server[2].port: unknown key; valid keys in [[virtual_server.real_server]] are address, weight, upper_threshold, lower_threshold, health_check (port is a key of [virtual_server.health_check] and [virtual_server.real_server.health_check])`},
		},
		{
			name: "key in the wrong table",
			src:  dp + "[control]\nworkers = 2\n" + vsHead + "weight = 3\n" + rs,
			want: []string{
				`t.toml:4: control.workers: unknown key; valid keys in [control] are socket (workers is a key of [dataplane])`,
				`t.toml:10: virtual_server[1].weight: unknown key; valid keys in [[virtual_server]] are address, protocol, scheduler, scheduler_flags, mh_table_size, method, tunnel, tunnel_port, local_addresses, persistence_timeout, persistence_netmask, one_packet, real_server, health_check, sorry_server, quorum (weight is a key of [[virtual_server.real_server]])`,
			},
		},
		{
			name: "misspelled array of tables, twice",
			src:  dp + "[[virtual_servers]]\naddress = \"198.18.0.100:80\"\n[[virtual_servers]]\n",
			want: []string{
				`t.toml:3: virtual_servers[1]: unknown key; valid keys at the top level are shutdown_drain, dataplane, control, timeouts, conntrack, virtual_server, ha, metrics, log (did you mean virtual_server?)`,
				`t.toml:5: virtual_servers[2]: unknown key; valid keys at the top level are shutdown_drain, dataplane, control, timeouts, conntrack, virtual_server, ha, metrics, log (did you mean virtual_server?)`,
			},
		},
		{
			name: "misspelled real_server header",
			src:  dp + vsHead + rs + "[[virtual_server.realserver]]\naddress = \"198.19.0.12:80\"\n",
			want: []string{`t.toml:10: virtual_server[1].realserver[1]: unknown key; valid keys in [[virtual_server]] are address, protocol, scheduler, scheduler_flags, mh_table_size, method, tunnel, tunnel_port, local_addresses, persistence_timeout, persistence_netmask, one_packet, real_server, health_check, sorry_server, quorum (did you mean real_server?)`},
		},
		{
			name: "key with wrong case",
			src:  dp + vsHead + "[[virtual_server.real_server]]\nAddress = \"198.19.0.11:80\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].Address: unknown key; valid keys in [[virtual_server.real_server]] are address, weight, upper_threshold, lower_threshold, health_check (did you mean address?)`},
		},
		{
			name: "unknown dotted key",
			src:  "timeouts.tcp.idle = \"1s\"\n" + dp,
			want: []string{`t.toml:1: timeouts.tcp: is a table; write a quoted Go duration, e.g. "15m0s"`},
		},
		{
			name: "unknown keys in two virtual servers",
			src:  dp + vsHead + rs + "persistent = 300\n" + vsHead + rs + "persistent = 300\n",
			want: []string{
				`t.toml:10: virtual_server[1].real_server[1].persistent: unknown key; valid keys in [[virtual_server.real_server]] are address, weight, upper_threshold, lower_threshold, health_check`,
				`t.toml:12: virtual_server[2].address: tcp 198.18.0.100:80 is already defined by virtual_server[1] at line 3; each protocol and address may appear once`,
				`t.toml:18: virtual_server[2].real_server[1].persistent: unknown key; valid keys in [[virtual_server.real_server]] are address, weight, upper_threshold, lower_threshold, health_check`,
			},
		},
		// Shapes.
		{
			name: "virtual_server as a single table",
			src:  dp + "[virtual_server]\naddress = \"198.18.0.100:80\"\n",
			want: []string{`t.toml:3: virtual_server: is a table but must be an array of tables; write [[virtual_server]] (double brackets) before each virtual server`},
		},
		{
			name: "real_server as a single table",
			src:  dp + vsHead + "[virtual_server.real_server]\naddress = \"198.19.0.11:80\"\n",
			want: []string{`t.toml:8: virtual_server[1].real_server: is a table but must be an array of tables; write [[virtual_server.real_server]] (double brackets) before each real server`},
		},
		{
			name: "real_server table before any virtual_server",
			src:  dp + "[virtual_server.real_server]\naddress = \"198.19.0.11:80\"\n",
			want: []string{`t.toml:3: virtual_server: is a table but must be an array of tables; write [[virtual_server]] (double brackets) before each virtual server`},
		},
		{
			name: "dataplane as a value",
			src:  "dataplane = \"l0\"\n",
			want: []string{`t.toml:1: dataplane: is a string but must be a table; write [dataplane] on a line of its own, followed by its keys`},
		},
		// Dataplane.
		{
			name: "dataplane missing",
			src:  "[control]\n",
			want: []string{`t.toml: dataplane.interfaces: is required; list the interfaces govs reads and writes, e.g. [dataplane] interfaces = ["eth0"]`},
		},
		{
			name: "interfaces missing",
			src:  "\n[dataplane]\nworkers = 1\n",
			want: []string{`t.toml:2: dataplane.interfaces: is required; list the interfaces govs reads and writes, e.g. [dataplane] interfaces = ["eth0"]`},
		},
		{
			name: "interfaces empty",
			src:  "[dataplane]\ninterfaces = []\n",
			want: []string{`t.toml:2: dataplane.interfaces: is empty; list at least one interface, e.g. interfaces = ["eth0"]`},
		},
		{
			name: "interfaces not a list",
			src:  "[dataplane]\ninterfaces = \"l0\"\n",
			want: []string{`t.toml:2: dataplane.interfaces: is a string; write a list of interface names, e.g. interfaces = ["eth0", "eth1"]`},
		},
		{
			name: "interface duplicate",
			src:  "[dataplane]\ninterfaces = [\n  \"l0\",\n  \"l0\",\n]\n",
			want: []string{`t.toml:4: dataplane.interfaces[2]: interface "l0" is already listed as dataplane.interfaces[1]; remove the duplicate`},
		},
		{
			name: "interface missing on host",
			src:  "[dataplane]\ninterfaces = [\"l0\", \"l9\"]\n",
			opts: LoadOptions{InterfaceExists: hasL0L1},
			want: []string{`t.toml:2: dataplane.interfaces[2]: interface "l9" does not exist on this host; check the name with "ip link"`},
		},
		{
			name: "interface missing on host, with the caller's hint",
			src:  "[dataplane]\ninterfaces = [\"l0\", \"l9\"]\n",
			opts: LoadOptions{InterfaceExists: hasL0L1, MissingInterfaceHint: "to check it for another host, use -offline"},
			want: []string{`t.toml:2: dataplane.interfaces[2]: interface "l9" does not exist on this host; check the name with "ip link"; to check it for another host, use -offline`},
		},
		{
			name: "interface names invalid",
			src:  "[dataplane]\ninterfaces = [\"\", \"eth0:1\", \"a-very-long-name-x\", 7]\n",
			want: []string{
				`t.toml:2: dataplane.interfaces[1]: interface name is empty; write a name such as "eth0"`,
				`t.toml:2: dataplane.interfaces[2]: interface name "eth0:1" contains '/', ':' or white space, which the kernel does not allow (aliases like eth0:1 are not interfaces)`,
				`t.toml:2: dataplane.interfaces[3]: interface name "a-very-long-name-x" is longer than 15 bytes, so no interface can have it`,
				`t.toml:2: dataplane.interfaces[4]: is an integer; interface names are strings, e.g. interfaces = ["eth0", "eth1"]`,
			},
		},
		{
			name: "workers negative",
			src:  dp + "workers = -1\n",
			want: []string{`t.toml:3: dataplane.workers: -1 is out of range; write a number of workers from 0 to 1024 (0 = one per CPU)`},
		},
		{
			name: "workers too many",
			src:  dp + "workers = 1025\n",
			want: []string{`t.toml:3: dataplane.workers: 1025 is out of range; write a number of workers from 0 to 1024 (0 = one per CPU)`},
		},
		{
			name: "workers as string",
			src:  dp + "workers = \"4\"\n",
			want: []string{`t.toml:3: dataplane.workers: is a string; write an integer from 0 to 1024 (0 = one per CPU)`},
		},
		// Control and timeouts.
		{
			name: "control socket relative",
			src:  dp + "[control]\nsocket = \"govs.sock\"\n",
			want: []string{`t.toml:4: control.socket: "govs.sock" is not an absolute path; write one starting with /, e.g. socket = "/run/govs/govs.sock"`},
		},
		{
			name: "timeouts unparsable, zero, negative, not a string",
			src:  dp + "[timeouts]\ntcp = \"15 minutes\"\ntcp_fin = \"0s\"\nudp = \"-1s\"\n",
			want: []string{
				`t.toml:4: timeouts.tcp: "15 minutes" is not a duration; write a Go duration such as "15m0s" or "15m"`,
				`t.toml:5: timeouts.tcp_fin: "0s" is not positive; write a duration greater than zero, e.g. "2m0s"`,
				`t.toml:6: timeouts.udp: "-1s" is not positive; write a duration greater than zero, e.g. "5m0s"`,
			},
		},
		{
			name: "timeout as integer",
			src:  dp + "[timeouts]\nudp = 300\n",
			want: []string{`t.toml:4: timeouts.udp: is an integer; write a quoted Go duration, e.g. "5m0s"`},
		},
		// Virtual server address.
		{
			name: "vip missing",
			src:  dp + "[[virtual_server]]\nprotocol = \"tcp\"\nscheduler = \"rr\"\nmethod = \"nat\"\n" + rs,
			want: []string{`t.toml:3: virtual_server[1].address: is required; write address = "198.18.0.100:80" (IPv6: "[2001:2::100]:80")`},
		},
		{
			name: "vip without port",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: "198.18.0.100" has no port; write "198.18.0.100:80"`},
		},
		{
			name: "vip IPv6 without brackets",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "2001:2::100", 1) + "[[virtual_server.real_server]]\naddress = \"[2001:2::11]:80\"\n",
			want: []string{`t.toml:4: virtual_server[1].address: "2001:2::100" has no port; write "[2001:2::100]:80"`},
		},
		{
			name: "vip garbage",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.300:80", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: "198.18.0.300:80" is not an address and port; write e.g. "198.18.0.100:80" or "[2001:2::100]:80"`},
		},
		{
			name: "vip port out of range",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100:70000", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: port 70000 in "198.18.0.100:70000" is out of range; write a port from 0 to 65535, e.g. "198.18.0.100:80"`},
		},
		{
			name: "vip port negative",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "[2001:2::100]:-1", 1) + "[[virtual_server.real_server]]\naddress = \"[2001:2::11]:80\"\n",
			want: []string{`t.toml:4: virtual_server[1].address: port -1 in "[2001:2::100]:-1" is out of range; write a port from 0 to 65535, e.g. "[2001:2::100]:80"`},
		},
		{
			name: "vip port a name",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100:http", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: port "http" in "198.18.0.100:http" is not a number and names are not looked up; write e.g. "198.18.0.100:80"`},
		},
		{
			name: "vip port empty",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100:", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: "198.18.0.100:" has no port; write "198.18.0.100:80"`},
		},
		{
			name: "vip host name",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "lb.example:80", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: "lb.example" is not an IP address and names are not looked up; write an IP address and port such as "198.18.0.100:80" or "[2001:2::100]:80"`},
		},
		{
			name: "vip port 0 with dr real server on another port",
			src:  dp + strings.Replace(strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100:0", 1), `"nat"`, `"dr"`, 1) + rs,
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: port 80 differs from the virtual server port 0; method dr forwards without rewriting ports, so write "198.19.0.11:0"`},
		},
		{
			name: "vip unspecified",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "0.0.0.0:80", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: 0.0.0.0 is the unspecified address and cannot be a virtual server address; use an address clients reach this host on`},
		},
		{
			name: "vip multicast",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "[ff02::1]:80", 1) + "[[virtual_server.real_server]]\naddress = \"[2001:2::11]:80\"\n",
			want: []string{`t.toml:4: virtual_server[1].address: ff02::1 is a multicast address and cannot be a virtual server address; use an address clients reach this host on`},
		},
		{
			name: "vip loopback",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "127.0.0.1:80", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: 127.0.0.1 is a loopback address and cannot be a virtual server address; use an address clients reach this host on`},
		},
		{
			name: "vip IPv4-mapped",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "[::ffff:198.18.0.100]:80", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: "[::ffff:198.18.0.100]:80" is an IPv4-mapped IPv6 address; write the IPv4 form "198.18.0.100:80"`},
		},
		{
			name: "vip not a string",
			src:  dp + strings.Replace(vsHead, `"198.18.0.100:80"`, "80", 1) + rs,
			want: []string{`t.toml:4: virtual_server[1].address: is an integer; write address = "198.18.0.100:80" (IPv6: "[2001:2::100]:80")`},
		},
		// Protocol, scheduler, method.
		{
			name: "protocol unknown",
			src:  dp + strings.Replace(vsHead, `"tcp"`, `"icmp"`, 1) + rs,
			want: []string{`t.toml:5: virtual_server[1].protocol: unknown protocol "icmp"; write "tcp" or "udp"`},
		},
		{
			name: "protocol upper case",
			src:  dp + strings.Replace(vsHead, `"tcp"`, `"TCP"`, 1) + rs,
			want: []string{`t.toml:5: virtual_server[1].protocol: unknown protocol "TCP"; write "tcp" or "udp" (names are lower case: "tcp")`},
		},
		{
			name: "protocol sctp",
			src:  dp + strings.Replace(vsHead, `"tcp"`, `"sctp"`, 1) + rs,
			want: []string{`t.toml:5: virtual_server[1].protocol: protocol "sctp" is not implemented yet; use tcp or udp`},
		},
		{
			name: "protocol missing",
			src:  dp + strings.Replace(vsHead, "protocol = \"tcp\"\n", "", 1) + rs,
			want: []string{`t.toml:3: virtual_server[1].protocol: is required; write protocol = "tcp" or protocol = "udp"`},
		},
		{
			name: "scheduler unknown",
			src:  dp + strings.Replace(vsHead, `"rr"`, `"random"`, 1) + rs,
			want: []string{`t.toml:6: virtual_server[1].scheduler: unknown scheduler "random"; use one of the IPVS schedulers dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr (omit it for wlc)`},
		},
		{
			name: "scheduler upper case",
			src:  dp + strings.Replace(vsHead, `"rr"`, `"WLC"`, 1) + rs,
			want: []string{`t.toml:6: virtual_server[1].scheduler: unknown scheduler "WLC" (names are lower case: "wlc"); use one of the IPVS schedulers dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr (omit it for wlc)`},
		},
		{
			name: "scheduler not a string",
			src:  dp + strings.Replace(vsHead, `"rr"`, `1`, 1) + rs,
			want: []string{`t.toml:6: virtual_server[1].scheduler: is an integer; write a quoted scheduler name, e.g. scheduler = "wlc" (one of dh, fo, lblc, lblcr, lc, mh, nq, ovf, rr, sed, sh, twos, wlc, wrr)`},
		},
		{
			name: "method fullnat without local addresses",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) + rs,
			want: []string{`t.toml:3: virtual_server[1].local_addresses: is required with method fullnat: the source addresses govs gives connections towards the real servers; write local_addresses = ["198.19.0.2", "198.19.0.3"]`},
		},
		{
			name: "fullnat local addresses wrong",
			src: dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) +
				"local_addresses = [\"198.19.0.2\", \"2001:2::2\", \"198.19.0.2\", \"198.18.0.100\", \"0.0.0.0\", \"x\", 7, \"198.19.0.11\"]\n" + rs,
			want: []string{
				`t.toml:8: virtual_server[1].local_addresses: 2001:2::2 is IPv6 but the virtual server 198.18.0.100:80 is IPv4; local addresses must have the virtual server's address family`,
				`t.toml:8: virtual_server[1].local_addresses: 198.19.0.2 is listed twice; list each local address once`,
				`t.toml:8: virtual_server[1].local_addresses: 198.18.0.100 is the virtual server's own address; a local address must be one only real servers send to`,
				`t.toml:8: virtual_server[1].local_addresses: 0.0.0.0 is the unspecified address and cannot be a local address; use an address the real servers reach this host on`,
				`t.toml:8: virtual_server[1].local_addresses: "x" is not an IP address; write e.g. local_addresses = ["198.19.0.2", "198.19.0.3"]`,
				`t.toml:8: virtual_server[1].local_addresses: element 7 is an integer; write quoted addresses, e.g. local_addresses = ["198.19.0.2", "198.19.0.3"]`,
			},
		},
		{
			name: "fullnat local address of a real server or another VIP",
			src: dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) +
				"local_addresses = [\"198.19.0.11\", \"198.18.0.101\"]\n" + rs +
				strings.Replace(vsHead, "198.18.0.100", "198.18.0.101", 1) + rs,
			want: []string{
				`t.toml:8: virtual_server[1].local_addresses: 198.19.0.11 is one of its real servers; use a spare address the real servers reach this host on, configured on no interface (govs answers ARP/ND for it)`,
				`t.toml:8: virtual_server[1].local_addresses: 198.18.0.101 is a virtual server's address; a local address must be one only real servers send to`,
			},
		},
		{
			name: "too many local addresses",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) + "local_addresses = [" + strings.Repeat(`"198.19.0.2", `, 257) + "]\n" + rs,
			want: []string{`t.toml:8: virtual_server[1].local_addresses: lists 257 addresses; at most 256 (each one allows 64512 connections to each real server): use fewer`},
		},
		{
			name: "local addresses not a list",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"fullnat"`, 1) + "local_addresses = \"198.19.0.2\"\n" + rs,
			want: []string{`t.toml:8: virtual_server[1].local_addresses: is a string; write a list of addresses, e.g. local_addresses = ["198.19.0.2", "198.19.0.3"]`},
		},
		{
			name: "method unknown",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"masq"`, 1) + rs,
			want: []string{`t.toml:7: virtual_server[1].method: unknown method "masq"; write "nat", "dr", "tun" or "fullnat"`},
		},
		{
			name: "method upper case",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"TUN"`, 1) + rs,
			want: []string{`t.toml:7: virtual_server[1].method: unknown method "TUN"; write "nat", "dr", "tun" or "fullnat" (names are lower case: "tun")`},
		},
		{
			name: "method missing",
			src:  dp + strings.Replace(vsHead, "method = \"nat\"\n", "", 1) + rs,
			want: []string{`t.toml:3: virtual_server[1].method: is required; write method = "nat", "dr", "tun" or "fullnat"`},
		},
		// Tunnels.
		{
			name: "tunnel without method tun",
			src:  dp + vsHead + "tunnel = \"gue\"\ntunnel_port = 6080\n" + rs,
			want: []string{
				`t.toml:8: virtual_server[1].tunnel: is for method tun only; remove it or write method = "tun"`,
				`t.toml:9: virtual_server[1].tunnel_port: is for method tun with tunnel = "gue" only; remove it`,
			},
		},
		{
			name: "tunnel unknown",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "tunnel = \"GRE\"\n" + rs,
			want: []string{`t.toml:8: virtual_server[1].tunnel: unknown tunnel "GRE"; write "ipip" (the default) or "gue"`},
		},
		{
			name: "tunnel not a string",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "tunnel = 4\n" + rs,
			want: []string{`t.toml:8: virtual_server[1].tunnel: is an integer; write tunnel = "ipip" or tunnel = "gue"`},
		},
		{
			name: "gue without port",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "tunnel = \"gue\"\n" + rs,
			want: []string{`t.toml:3: virtual_server[1].tunnel_port: is required with tunnel = "gue": the UDP port the real servers decapsulate GUE on, e.g. tunnel_port = 6080`},
		},
		{
			name: "gue port out of range",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "tunnel = \"gue\"\ntunnel_port = 65536\n" + rs,
			want: []string{`t.toml:9: virtual_server[1].tunnel_port: 65536 is out of range; write a UDP port from 1 to 65535, e.g. tunnel_port = 6080`},
		},
		{
			name: "tunnel port with ipip",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "tunnel_port = 6080\n" + rs,
			want: []string{`t.toml:8: virtual_server[1].tunnel_port: is for tunnel = "gue" only (ipip has no ports); remove it or write tunnel = "gue"`},
		},
		{
			name: "tun with another port",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "[[virtual_server.real_server]]\naddress = \"198.19.0.11:8080\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: port 8080 differs from the virtual server port 80; method tun forwards without rewriting ports, so write "198.19.0.11:80"`},
		},
		{
			name: "tun real server of the other family",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"tun"`, 1) + "[[virtual_server.real_server]]\naddress = \"[2001:2::11]:80\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: [2001:2::11]:80 is IPv6 but the virtual server 198.18.0.100:80 is IPv4; real servers must have the virtual server's address family`},
		},
		// Virtual server as a whole.
		{
			name: "duplicate virtual server",
			src:  dp + vsHead + rs + vsHead + rs,
			want: []string{`t.toml:11: virtual_server[2].address: tcp 198.18.0.100:80 is already defined by virtual_server[1] at line 3; each protocol and address may appear once`},
		},
		{
			name: "same address other protocol is fine, third duplicates first",
			src:  dp + vsHead + rs + strings.Replace(vsHead, `"tcp"`, `"udp"`, 1) + rs + vsHead + rs,
			want: []string{`t.toml:18: virtual_server[3].address: tcp 198.18.0.100:80 is already defined by virtual_server[1] at line 3; each protocol and address may appear once`},
		},
		{
			name: "no real servers",
			src:  dp + vsHead,
			want: []string{`t.toml:3: virtual_server[1].real_server: virtual server has no real servers; add at least one [[virtual_server.real_server]] with an address`},
		},
		{
			name: "empty inline real server list",
			src:  dp + vsHead + "real_server = []\n",
			want: []string{`t.toml:8: virtual_server[1].real_server: virtual server has no real servers; add at least one [[virtual_server.real_server]] with an address`},
		},
		// Real servers.
		{
			name: "real server of the other family",
			src:  dp + vsHead + "[[virtual_server.real_server]]\naddress = \"[2001:2::11]:80\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: [2001:2::11]:80 is IPv6 but the virtual server 198.18.0.100:80 is IPv4; real servers must have the virtual server's address family`},
		},
		{
			name: "dr with another port",
			src:  dp + strings.Replace(vsHead, `"nat"`, `"dr"`, 1) + "[[virtual_server.real_server]]\naddress = \"198.19.0.11:8080\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: port 8080 differs from the virtual server port 80; method dr forwards without rewriting ports, so write "198.19.0.11:80"`},
		},
		{
			name: "nat with another port is fine but duplicate is not",
			src:  dp + vsHead + "real_server = [{address = \"198.19.0.11:8080\"}, {address = \"198.19.0.11:8080\", weight = 2}]\n",
			want: []string{`t.toml:8: virtual_server[1].real_server[2].address: 198.19.0.11:8080 is already listed as real_server[1] of this virtual server; list each real server once`},
		},
		{
			name: "real server port 0 and no port",
			src:  dp + vsHead + "[[virtual_server.real_server]]\naddress = \"198.19.0.11:0\"\n[[virtual_server.real_server]]\naddress = \"198.19.0.12\"\n",
			want: []string{
				`t.toml:9: virtual_server[1].real_server[1].address: port 0 is not allowed; write the port the real server listens on, e.g. "198.19.0.11:80"`,
				`t.toml:11: virtual_server[1].real_server[2].address: "198.19.0.12" has no port; write "198.19.0.12:80"`,
			},
		},
		{
			name: "real server address missing",
			src:  dp + vsHead + "[[virtual_server.real_server]]\nweight = 1\n",
			want: []string{`t.toml:8: virtual_server[1].real_server[1].address: is required; write address = "198.19.0.11:80"`},
		},
		{
			name: "real server unparsable",
			src:  dp + vsHead + "[[virtual_server.real_server]]\naddress = \"198.19.0:80\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: "198.19.0:80" is not an address and port; write e.g. "198.18.0.100:80" or "[2001:2::100]:80"`},
		},
		{
			name: "real server port out of range",
			src:  dp + strings.Replace(vsHead, "198.18.0.100:80", "198.18.0.100:8080", 1) + "[[virtual_server.real_server]]\naddress = \"198.19.0.11:123456\"\n",
			want: []string{`t.toml:9: virtual_server[1].real_server[1].address: port 123456 in "198.19.0.11:123456" is out of range; write a port from 0 to 65535, e.g. "198.19.0.11:8080"`},
		},
		{
			name: "weight out of range",
			src:  dp + vsHead + rs + "weight = 65536\n" + rs + "weight = -1\n",
			want: []string{
				`t.toml:10: virtual_server[1].real_server[1].weight: 65536 is out of range; write a weight from 0 to 65535 (0 = no new connections)`,
				`t.toml:13: virtual_server[1].real_server[2].weight: -1 is out of range; write a weight from 0 to 65535 (0 = no new connections)`,
			},
		},
		{
			name: "weight not an integer",
			src:  dp + vsHead + rs + "weight = 1.5\n",
			want: []string{`t.toml:10: virtual_server[1].real_server[1].weight: is a float; write an integer from 0 to 65535, e.g. weight = 1 (0 = no new connections)`},
		},
		// Several problems at once come back sorted by line.
		{
			name: "many problems sorted by line",
			src:  "[timeouts]\ntcp = \"0s\"\n[dataplane]\ninterfaces = []\nbogus = 1\n",
			want: []string{
				`t.toml:2: timeouts.tcp: "0s" is not positive; write a duration greater than zero, e.g. "15m0s"`,
				`t.toml:4: dataplane.interfaces: is empty; list at least one interface, e.g. interfaces = ["eth0"]`,
				`t.toml:5: dataplane.bogus: unknown key; valid keys in [dataplane] are interfaces, workers, rx_mode, worker_priority, io, xdp_mode, xdp_irq_defer`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParseErrors(t, tt.src, tt.opts, tt.want)
		})
	}
}

// checkParseErrors parses src as t.toml and compares the messages with want, line by line.
func checkParseErrors(t *testing.T, src string, opts LoadOptions, want []string) {
	t.Helper()
	c, err := Parse([]byte(src), "t.toml", opts)
	if err == nil {
		t.Fatalf("Parse succeeded with %+v; want errors:\n%s", c, strings.Join(want, "\n"))
	}
	if c != nil {
		t.Errorf("Parse returned a Config along with an error")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error %T (%v), want Errors", err, err)
	}
	got := strings.Split(err.Error(), "\n")
	if diff := lineDiff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	for _, e := range errs {
		if e.File != "t.toml" {
			t.Errorf("Error.File = %q, want t.toml", e.File)
		}
	}
}

// lineDiff returns a -want +got listing when want and got differ.
func lineDiff(want, got []string) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	var b strings.Builder
	for _, w := range want {
		b.WriteString("-" + w + "\n")
	}
	for _, g := range got {
		b.WriteString("+" + g + "\n")
	}
	return b.String()
}

func TestErrorsAs(t *testing.T) {
	_, err := Parse([]byte(dp+"workers = -5\n"), "t.toml", LoadOptions{})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false", err)
	}
	want := &Error{File: "t.toml", Line: 3, Field: "dataplane.workers", Msg: "-5 is out of range; write a number of workers from 0 to 1024 (0 = one per CPU)"}
	if *e != *want {
		t.Errorf("got %+v, want %+v", e, want)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"full", &Error{File: "a.toml", Line: 3, Field: "x.y", Msg: "bad"}, "a.toml:3: x.y: bad"},
		{"no line", &Error{File: "a.toml", Field: "x.y", Msg: "bad"}, "a.toml: x.y: bad"},
		{"no field", &Error{File: "a.toml", Line: 1, Msg: "bad"}, "a.toml:1: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
	es := Errors{tests[0].err, tests[2].err}
	if got, want := es.Error(), "a.toml:3: x.y: bad\na.toml:1: bad"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), LoadOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "failed to read config: ") {
		t.Errorf("Load(missing) = %q, want it to start with \"failed to read config: \"", err)
	}
}

func TestSummaryTruncates(t *testing.T) {
	vs := VirtualServer{Address: netip.MustParseAddrPort("198.18.0.1:53"), Protocol: ProtocolUDP, Scheduler: "rr", Method: MethodNAT}
	for i := range 10 {
		vs.RealServers = append(vs.RealServers, RealServer{Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}), 53), Weight: 1})
	}
	got := (&Config{VirtualServers: []VirtualServer{vs}}).Summary()[0]
	want := "udp/198.18.0.1:53 scheduler=rr method=nat real_servers=10 (198.19.0.1:53 w=1, 198.19.0.2:53 w=1, 198.19.0.3:53 w=1, 198.19.0.4:53 w=1, " +
		"198.19.0.5:53 w=1, 198.19.0.6:53 w=1, 198.19.0.7:53 w=1, 198.19.0.8:53 w=1, ... 2 more)"
	if got != want {
		t.Errorf("Summary():\n got %q\nwant %q", got, want)
	}
}

func TestEnums(t *testing.T) {
	tests := []struct {
		name       string
		got, want  string
		num, wantN uint8
	}{
		{"tcp", ProtocolTCP.String(), "tcp", ProtocolTCP.Number(), 6},
		{"udp", ProtocolUDP.String(), "udp", ProtocolUDP.Number(), 17},
		{"zero protocol", Protocol(0).String(), "Protocol(0)", Protocol(0).Number(), 0},
		{"nat", MethodNAT.String(), "nat", 0, 0},
		{"dr", MethodDR.String(), "dr", 0, 0},
		{"zero method", Method(0).String(), "Method(0)", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want || tt.num != tt.wantN {
				t.Errorf("got %q/%d, want %q/%d", tt.got, tt.num, tt.want, tt.wantN)
			}
		})
	}
}

func TestInterfaceExistsOnHost(t *testing.T) {
	if !InterfaceExistsOnHost("lo") {
		t.Errorf(`InterfaceExistsOnHost("lo") = false, want true`)
	}
	if InterfaceExistsOnHost("govs-nope0") {
		t.Errorf(`InterfaceExistsOnHost("govs-nope0") = true, want false`)
	}
}

// TestParsePortZero: a port-0 virtual server takes every port (like an IPVS port-0 service); its
// real servers may keep the client's port (port 0) or map every port to one (NAT).
func TestParsePortZero(t *testing.T) {
	tests := []struct {
		name, vip, method, real string
	}{
		{"nat keep port", "198.18.0.100:0", "nat", "198.19.0.11:0"},
		{"nat to one port", "198.18.0.100:0", "nat", "198.19.0.11:8080"},
		{"dr", "198.18.0.100:0", "dr", "198.19.0.11:0"},
		{"ipv6 nat", "[2001:2::100]:0", "nat", "[2001:2::11]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := dp + strings.NewReplacer("198.18.0.100:80", tt.vip, `"nat"`, `"`+tt.method+`"`).Replace(vsHead) +
				"[[virtual_server.real_server]]\naddress = \"" + tt.real + "\"\n"
			c, err := Parse([]byte(src), "t.toml", LoadOptions{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			vs := c.VirtualServers[0]
			if got, want := vs.Address, netip.MustParseAddrPort(tt.vip); got != want {
				t.Errorf("Address = %v, want %v", got, want)
			}
			if got, want := vs.RealServers[0].Address, netip.MustParseAddrPort(tt.real); got != want {
				t.Errorf("real server Address = %v, want %v", got, want)
			}
		})
	}
}

// TestParseWorkerPriority: worker_priority takes 0 (default) to 99 and says what to write when wrong.
func TestParseWorkerPriority(t *testing.T) {
	tests := []struct {
		name, line string
		want       int
		wantErr    string
	}{
		{"default", "", 0, ""},
		{"fifo", "worker_priority = 10", 10, ""},
		{"too high", "worker_priority = 100", 0, "t.toml:3: dataplane.worker_priority: 100 is out of range; write a SCHED_FIFO priority from 1 to 99, or 0 for the normal scheduler (default)"},
		{"negative", "worker_priority = -1", 0, "-1 is out of range"},
		{"not a number", `worker_priority = "high"`, 0, "write an integer from 0 to 99 (0 = the normal scheduler)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := parseDataplaneLine(t, tt.line, tt.wantErr); c != nil && c.Dataplane.WorkerPriority != tt.want {
				t.Errorf("WorkerPriority = %d, want %d", c.Dataplane.WorkerPriority, tt.want)
			}
		})
	}
}

// TestParseRXMode: rx_mode takes the three receive modes, defaults to auto and names the choices
// when wrong.
func TestParseRXMode(t *testing.T) {
	tests := []struct {
		name, line, want, wantErr string
	}{
		{"default", "", DefaultRXMode, ""},
		{"auto", `rx_mode = "auto"`, RXModeAuto, ""},
		{"throughput", `rx_mode = "throughput"`, RXModeThroughput, ""},
		{"latency", `rx_mode = "latency"`, RXModeLatency, ""},
		{"unknown", `rx_mode = "fast"`, "", `"fast" is not a receive mode; write "auto" (default), "throughput" or "latency"`},
		{"not a string", `rx_mode = 1`, "", `write "auto", "throughput" or "latency"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := parseDataplaneLine(t, tt.line, tt.wantErr); c != nil && c.Dataplane.RXMode != tt.want {
				t.Errorf("RXMode = %q, want %q", c.Dataplane.RXMode, tt.want)
			}
		})
	}
}

// TestParseIO: io takes afpacket (default) and afxdp, xdp_mode driver (default) and generic with
// afxdp only; with afxdp, rx_mode (AF_PACKET's rings) and more than one worker are refused.
func TestParseIO(t *testing.T) {
	tests := []struct {
		name, lines, io, mode, wantErr string
	}{
		{"default", "", IOAFPacket, XDPModeDriver, ""},
		{"afpacket", `io = "afpacket"`, IOAFPacket, XDPModeDriver, ""},
		{"afxdp", `io = "afxdp"`, IOAFXDP, XDPModeDriver, ""},
		{"afxdp generic", "io = \"afxdp\"\nxdp_mode = \"generic\"", IOAFXDP, XDPModeGeneric, ""},
		{"afxdp one worker", "io = \"afxdp\"\nworkers = 1", IOAFXDP, XDPModeDriver, ""},
		{"unknown io", `io = "dpdk"`, "", "", `t.toml:3: dataplane.io: "dpdk" is not a packet I/O; write "afpacket" (default) or "afxdp"`},
		{"io not a string", `io = 1`, "", "", `dataplane.io: is an integer; write "afpacket" (default) or "afxdp"`},
		{"unknown mode", "io = \"afxdp\"\nxdp_mode = \"native\"", "", "", `dataplane.xdp_mode: "native" is not an XDP mode; write "driver" (default, native XDP) or "generic"`},
		{"mode without afxdp", `xdp_mode = "generic"`, "", "", `dataplane.xdp_mode: applies to io = "afxdp" only`},
		{"rx_mode with afxdp", "io = \"afxdp\"\nrx_mode = \"auto\"", "", "", `dataplane.rx_mode: chooses between AF_PACKET's rings and has no meaning with io = "afxdp"`},
		{"afxdp two workers", "io = \"afxdp\"\nworkers = 2", IOAFXDP, XDPModeDriver, ""},
		{"afxdp too many workers", "io = \"afxdp\"\nworkers = 65", "", "", `dataplane.workers: is 65; io = "afxdp" runs at most 64 workers`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := parseDataplaneLine(t, tt.lines, tt.wantErr); c != nil && (c.Dataplane.IO != tt.io || c.Dataplane.XDPMode != tt.mode) {
				t.Errorf("IO, XDPMode = %q, %q, want %q, %q", c.Dataplane.IO, c.Dataplane.XDPMode, tt.io, tt.mode)
			}
		})
	}
}

// parseDataplaneLine parses a configuration with line added to [dataplane]. With wantErr it
// checks the error contains it and returns nil; else it fails on any error.
func parseDataplaneLine(t *testing.T, line, wantErr string) *Config {
	t.Helper()
	c, err := Parse([]byte(dp+line+"\n"+vsHead+rs), "t.toml", LoadOptions{})
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want one containing %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// TestParseXDPIRQDefer: xdp_irq_defer is "off" unless set; "auto" and a duration within its
// range are taken (a duration written as Go prints it), with io = "afxdp" only.
func TestParseXDPIRQDefer(t *testing.T) {
	for _, tt := range []struct{ lines, want, wantErr string }{
		{"io = \"afxdp\"", "off", ""},
		{"io = \"afxdp\"\nxdp_irq_defer = \"auto\"", "auto", ""},
		{"io = \"afxdp\"\nxdp_irq_defer = \"50us\"", "50us", ""},
		{"io = \"afxdp\"\nxdp_irq_defer = \"0.05ms\"", "50us", ""},
		{"xdp_irq_defer = \"off\"", "off", ""},
		{"io = \"af_xdp\"\nxdp_irq_defer = \"auto\"", "", `dataplane.io: "af_xdp" is not a packet I/O`},
		{"io = \"afxdp\"\nxdp_irq_defer = \"off\"", "off", ""},
		{"xdp_irq_defer = \"auto\"", "", `dataplane.xdp_irq_defer: applies to io = "afxdp" only`},
		{"io = \"afxdp\"\nxdp_irq_defer = \"5ms\"", "", `dataplane.xdp_irq_defer: "5ms": write "off" (default), "auto"`},
		{"io = \"afxdp\"\nxdp_irq_defer = \"soon\"", "", `dataplane.xdp_irq_defer: "soon": write`},
		{"io = \"afxdp\"\nxdp_irq_defer = 50", "", `dataplane.xdp_irq_defer: is an integer`},
	} {
		if c := parseDataplaneLine(t, tt.lines, tt.wantErr); c != nil && c.Dataplane.XDPIRQDefer != tt.want {
			t.Errorf("%q: XDPIRQDefer = %q, want %q", tt.lines, c.Dataplane.XDPIRQDefer, tt.want)
		}
	}
}

// TestParseIOQueues: with io = "afxdp" and the host's queues looked up, more workers than an
// interface has receive queues is refused at the workers line, saying how to add queues; with
// AF_PACKET, or workers = 0, it is not.
func TestParseIOQueues(t *testing.T) {
	opts := LoadOptions{InterfaceQueues: func(name string) int { return map[string]int{"l0": 2}[name] }}
	_, err := Parse([]byte(dp+"workers = 4\nio = \"afxdp\"\n"+vsHead+rs), "t.toml", opts)
	want := `t.toml:3: dataplane.workers: is 4, but interface l0 has 2 receive queue(s); with io = "afxdp" each worker needs a receive queue of its own on every interface: give l0 4 queues (ethtool -L l0 combined 4, or rx 4 tx 4 where`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "or set workers = 2") {
		t.Errorf("err = %v, want one containing %q and the way out", err, want)
	}
	for _, ok := range []string{dp + "workers = 2\nio = \"afxdp\"\n", dp + "workers = 4\n", dp + "io = \"afxdp\"\n"} {
		if _, err := Parse([]byte(ok+vsHead+rs), "t.toml", opts); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestParseIOMTU: with io = "afxdp" and the host's MTUs looked up, an interface whose MTU does
// not fit an AF_XDP frame is refused at its place in the file; with AF_PACKET it is not.
func TestParseIOMTU(t *testing.T) {
	opts := LoadOptions{InterfaceMTU: func(name string) int { return map[string]int{"l0": 9000}[name] }}
	_, err := Parse([]byte(dp+"io = \"afxdp\"\n"+vsHead+rs), "t.toml", opts)
	want := `t.toml:2: dataplane.interfaces[1]: interface l0 has MTU 9000; with io = "afxdp" govs takes frames up to an MTU of 3814`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", err, want)
	}
	if _, err := Parse([]byte(dp+vsHead+rs), "t.toml", opts); err != nil {
		t.Errorf("io = \"afpacket\" with MTU 9000: %v", err)
	}
}

// TestControlSocketNotAFile: a control socket path that names a file or directory, which govs
// would refuse to replace, is an error at its line (not with SkipFileChecks, for another host's
// file); a free path or a stale socket's is not.
func TestControlSocketNotAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "govs.toml")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := func(path string) string { return dp + fmt.Sprintf("[control]\nsocket = %q\n", path) + vsHead + rs }
	checkParseErrors(t, src(file), LoadOptions{}, []string{
		fmt.Sprintf(`t.toml:4: control.socket: %q is a file, not a socket, and govs would refuse to start on it; name a path where govs may create its socket, e.g. socket = "/run/govs/govs.sock"`, file),
	})
	checkParseErrors(t, src(dir), LoadOptions{}, []string{
		fmt.Sprintf(`t.toml:4: control.socket: %q is a directory, not a socket, and govs would refuse to start on it; name a path where govs may create its socket, e.g. socket = "/run/govs/govs.sock"`, dir),
	})
	for _, tt := range []struct {
		path string
		opts LoadOptions
	}{{file, LoadOptions{SkipFileChecks: true}}, {filepath.Join(dir, "govs.sock"), LoadOptions{}}} {
		if _, err := Parse([]byte(src(tt.path)), "t.toml", tt.opts); err != nil {
			t.Errorf("socket %s (%+v): %v", tt.path, tt.opts, err)
		}
	}
}
