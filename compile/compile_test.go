package compile

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/sched"
)

// fakeHops is a next-hop source by address; an address it does not hold is unresolved.
type fakeHops map[netip.Addr]Hop

func (h fakeHops) NextHop(_ uint16, a netip.Addr) (Hop, bool) {
	x, ok := h[a]
	return x, ok
}

func mac(b byte) [6]byte { return [6]byte{0x02, 0, 0, 0, 0, b} }

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(src), "t.toml", config.LoadOptions{})
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	return cfg
}

// compileCommit compiles cfg and commits the result, as the daemon does once it has published it.
func compileCommit(t *testing.T, c *Compiler, cfg *config.Config, hops NextHops) *dataplane.Tables {
	t.Helper()
	tb, err := c.Compile(cfg, hops)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	c.Commit(tb)
	return tb
}

const fullConfig = `
[dataplane]
interfaces = ["l0", "l1"]

[conntrack]
expire_nodest_conn = true

[[virtual_server]]
address   = "198.18.0.100:80"
protocol  = "tcp"
scheduler = "wrr"
method    = "dr"
real_server = [
  { address = "198.19.0.11:80", weight = 3, upper_threshold = 1000 },
  { address = "198.19.0.12:80", weight = 0, upper_threshold = 400, lower_threshold = 100 },
  { address = "198.19.0.99:80" },   # behind a gateway: direct routing cannot reach it
]

[[virtual_server]]
address    = "[2001:2::100]:53"
protocol   = "udp"
scheduler  = "rr"
method     = "nat"
one_packet = true
real_server = [{ address = "[2001:2::11]:5353" }, { address = "[2001:2::12]:5353", weight = 7 }]

[[virtual_server]]
address             = "198.18.0.101:0"
protocol            = "tcp"
scheduler           = "sh"
scheduler_flags     = ["sh-fallback", "sh-port"]
method              = "dr"
persistence_timeout = "300s"
persistence_netmask = "255.255.255.0"
real_server = [{ address = "198.19.0.11:0" }]

[[virtual_server]]
address             = "[2001:2::101]:443"
protocol            = "tcp"
scheduler           = "mh"
scheduler_flags     = ["mh-port"]
mh_table_size       = 251
method              = "nat"
persistence_timeout = "1h"
persistence_netmask = 64
real_server = [{ address = "[2001:2::11]:8443", weight = 2 }, { address = "[2001:2:0:9::99]:8443" }]
`

var fullHops = fakeHops{
	netip.MustParseAddr("198.19.0.11"):    {Port: 1, MAC: mac(0x11), OnLink: true},
	netip.MustParseAddr("198.19.0.12"):    {Port: 0, MAC: mac(0x12), OnLink: true},
	netip.MustParseAddr("198.19.0.99"):    {Port: 1, MAC: mac(0xfe)}, // via a gateway
	netip.MustParseAddr("2001:2::11"):     {Port: 1, MAC: mac(0x21), OnLink: true},
	netip.MustParseAddr("2001:2:0:9::99"): {Port: 1, MAC: mac(0xfe)}, // via a gateway
	// 2001:2::12 is not resolved (yet).
}

// TestCompileFields: every setting of the configuration reaches the tables.
func TestCompileFields(t *testing.T) {
	cfg := parse(t, fullConfig)
	tb := compileCommit(t, New(), cfg, fullHops)

	if !tb.ExpireNodestConn {
		t.Errorf("ExpireNodestConn = false; the config sets expire_nodest_conn")
	}
	if tb.Gen != 0 {
		t.Errorf("Gen = %d; Compile leaves numbering to the publisher", tb.Gen)
	}
	type svcWant struct {
		name    string
		vip     string
		proto   uint8
		method  dataplane.Method
		sched   string
		opts    sched.Options
		persist time.Duration
		bits    int
		one     bool
		reals   []uint16
	}
	wantS := []svcWant{
		{"tcp/198.18.0.100:80", "198.18.0.100:80", 6, dataplane.MethodDR, "wrr", sched.Options{}, 0, 0, false, []uint16{0, 1, 2}},
		{"udp/[2001:2::100]:53", "[2001:2::100]:53", 17, dataplane.MethodNAT, "rr", sched.Options{}, 0, 0, true, []uint16{3, 4}},
		{"tcp/198.18.0.101:0", "198.18.0.101:0", 6, dataplane.MethodDR, "sh",
			sched.Options{Flags: sched.FlagSHFallback | sched.FlagSHPort}, 300 * time.Second, 24, false, []uint16{5}},
		{"tcp/[2001:2::101]:443", "[2001:2::101]:443", 6, dataplane.MethodNAT, "mh",
			sched.Options{Flags: sched.FlagMHPort, MHTableSize: 251}, time.Hour, 64, false, []uint16{6, 7}},
	}
	if len(tb.Services) != len(wantS) {
		t.Fatalf("%d services, want %d", len(tb.Services), len(wantS))
	}
	for i, w := range wantS {
		s := tb.Services[i]
		if s == nil {
			t.Fatalf("service %d is nil", i)
		}
		opts := s.SchedOptions
		if (opts.Position != nil) != sched.UsesPosition(s.Scheduler) {
			t.Errorf("service %s (%s): position %p: rr and wrr, and only they, get one", s.Name, s.Scheduler, opts.Position)
		}
		opts.Position = nil
		if s.ID != uint16(i) || s.Name != w.name || s.VIP != netip.MustParseAddrPort(w.vip) || s.Proto != w.proto ||
			s.Method != w.method || s.Scheduler != w.sched || opts != w.opts ||
			s.Persistence != int64(w.persist) || s.PersistenceBits != w.bits || s.OnePacket != w.one ||
			!slices.Equal(s.RealIDs, w.reals) {
			t.Errorf("service %d = {ID %d %s %s proto %d %s %s %+v persistence %v/%d one_packet %v reals %v}, want %+v",
				i, s.ID, s.Name, s.VIP, s.Proto, s.Method, s.Scheduler, s.SchedOptions,
				time.Duration(s.Persistence), s.PersistenceBits, s.OnePacket, s.RealIDs, w)
		}
		if len(s.Dests) != len(s.RealIDs) {
			t.Errorf("service %s: %d scheduler dests for %d real servers: Finish did not run", s.Name, len(s.Dests), len(s.RealIDs))
		}
	}

	type realWant struct {
		addr         string
		svc          uint16
		weight       int32
		upper, lower uint32
		resolved     bool
		port         int
		mac          [6]byte
	}
	wantR := []realWant{
		{"198.19.0.11:80", 0, 3, 1000, 750, true, 1, mac(0x11)}, // lower_threshold: 3/4 of upper, as IPVS
		{"198.19.0.12:80", 0, 0, 400, 100, true, 0, mac(0x12)},
		{"198.19.0.99:80", 0, 1, 0, 0, false, -1, [6]byte{}}, // DR through a gateway: unreachable
		{"[2001:2::11]:5353", 1, 1, 0, 0, true, 1, mac(0x21)},
		{"[2001:2::12]:5353", 1, 7, 0, 0, false, -1, [6]byte{}}, // not resolved
		{"198.19.0.11:0", 2, 1, 0, 0, true, 1, mac(0x11)},
		{"[2001:2::11]:8443", 3, 2, 0, 0, true, 1, mac(0x21)},
		{"[2001:2:0:9::99]:8443", 3, 1, 0, 0, true, 1, mac(0xfe)}, // NAT through a gateway is fine
	}
	if len(tb.Reals) != len(wantR) {
		t.Fatalf("%d real servers, want %d", len(tb.Reals), len(wantR))
	}
	for i, w := range wantR {
		r := tb.Reals[i]
		if r == nil {
			t.Fatalf("real server %d is nil", i)
		}
		if r.ID != uint16(i) || r.Addr != netip.MustParseAddrPort(w.addr) || r.Service != w.svc || r.Weight != w.weight ||
			r.UpperThreshold != w.upper || r.LowerThreshold != w.lower || r.Resolved != w.resolved ||
			r.Port != w.port || r.MAC != w.mac || r.Removed || r.Counts == nil {
			t.Errorf("real server %d = {ID %d %s svc %d weight %d thresholds %d/%d resolved %v port %d mac %x removed %v counts %p}, want %+v",
				i, r.ID, r.Addr, r.Service, r.Weight, r.UpperThreshold, r.LowerThreshold, r.Resolved, r.Port, r.MAC, r.Removed, r.Counts, w)
		}
	}
	// The scheduler sees the same servers: weights, thresholds, and availability from resolution.
	d := tb.Services[0].Dests
	if d[0].Weight != 3 || d[0].UpperThreshold != 1000 || !d[0].Available || d[2].Available || d[0].Counts != tb.Reals[0].Counts {
		t.Errorf("service 0 dests = %+v", d)
	}

	cfg.Conntrack.ExpireNodestConn = false
	if tb, _ := New().Compile(cfg, fullHops); tb.ExpireNodestConn {
		t.Errorf("ExpireNodestConn = true; the config leaves it off")
	}
}

// TestCompileSchedulerError: a scheduler the data plane could not build fails the compile, naming
// the virtual server, and leaves the compiler as it was.
func TestCompileSchedulerError(t *testing.T) {
	cfg := parse(t, fullConfig)
	c := New()
	before := compileCommit(t, c, cfg, fullHops)
	bad := *cfg
	bad.VirtualServers = append([]config.VirtualServer(nil), cfg.VirtualServers...)
	bad.VirtualServers[1].Scheduler = "nope"
	bad.VirtualServers = append(bad.VirtualServers, config.VirtualServer{
		Address: netip.MustParseAddrPort("198.18.0.200:80"), Protocol: config.ProtocolTCP, Scheduler: "rr", Method: config.MethodNAT,
		RealServers: []config.RealServer{{Address: netip.MustParseAddrPort("198.19.0.50:80"), Weight: 1}},
	})
	if _, err := c.Compile(&bad, fullHops); err == nil || !strings.Contains(err.Error(), "udp/[2001:2::100]:53") {
		t.Fatalf("Compile with an unknown scheduler: err = %v, want one naming the virtual server", err)
	}
	after := compileCommit(t, c, cfg, fullHops)
	if !Same(before, after) {
		t.Errorf("a failed compile changed what the next one builds")
	}
}

func realIn(tb *dataplane.Tables, svc uint16, addr string) *dataplane.Real {
	a := netip.MustParseAddrPort(addr)
	for _, r := range tb.Reals {
		if r != nil && r.Service == svc && r.Addr == a {
			return r
		}
	}
	return nil
}

const twoServices = `
[dataplane]
interfaces = ["l0"]

[[virtual_server]]
address   = "198.18.0.100:80"
protocol  = "tcp"
method    = "nat"
real_server = [{ address = "198.19.0.11:80" }, { address = "198.19.0.12:80" }, { address = "198.19.0.13:80" }]

[[virtual_server]]
address   = "198.18.0.100:53"
protocol  = "udp"
method    = "nat"
real_server = [{ address = "198.19.0.11:53" }]
`

var twoHops = fakeHops{
	netip.MustParseAddr("198.19.0.11"): {Port: 0, MAC: mac(0x11), OnLink: true},
	netip.MustParseAddr("198.19.0.12"): {Port: 0, MAC: mac(0x12), OnLink: true},
	netip.MustParseAddr("198.19.0.13"): {Port: 0, MAC: mac(0x13), OnLink: true},
	netip.MustParseAddr("198.19.0.14"): {Port: 0, MAC: mac(0x14), OnLink: true},
}

// TestReloadKeepsIDsAndCounts: a reload that reorders, adds and changes servers leaves every
// unchanged service and real server its ID and its connection counts.
func TestReloadKeepsIDsAndCounts(t *testing.T) {
	c := New()
	a := compileCommit(t, c, parse(t, twoServices), twoHops)
	a.Reals[1].Counts.Active.Add(5)
	a.Reals[3].Counts.Inactive.Add(2)

	b := compileCommit(t, c, parse(t, `
[dataplane]
interfaces = ["l0"]

[[virtual_server]]
address   = "198.18.0.100:443"
protocol  = "tcp"
method    = "nat"
real_server = [{ address = "198.19.0.14:443" }]

[[virtual_server]]
address   = "198.18.0.100:53"
protocol  = "udp"
method    = "nat"
real_server = [{ address = "198.19.0.11:53", weight = 4 }]

[[virtual_server]]
address   = "198.18.0.100:80"
protocol  = "tcp"
method    = "nat"
scheduler = "rr"
real_server = [{ address = "198.19.0.13:80" }, { address = "198.19.0.12:80" }, { address = "198.19.0.11:80" }, { address = "198.19.0.14:80" }]
`), twoHops)

	for _, k := range []struct {
		svc  uint16
		addr string
	}{{0, "198.19.0.11:80"}, {0, "198.19.0.12:80"}, {0, "198.19.0.13:80"}, {1, "198.19.0.11:53"}} {
		ra, rb := realIn(a, k.svc, k.addr), realIn(b, k.svc, k.addr)
		if rb == nil {
			t.Fatalf("real server %s of service %d lost its ID %d", k.addr, k.svc, ra.ID)
		}
		if rb.ID != ra.ID || rb.Counts != ra.Counts {
			t.Errorf("real server %s: ID %d counts %p before, ID %d counts %p after", k.addr, ra.ID, ra.Counts, rb.ID, rb.Counts)
		}
	}
	if n := b.Reals[1].Counts.Active.Load(); n != 5 {
		t.Errorf("real server 1 has %d active connections after the reload, want the 5 it had", n)
	}
	if b.Services[0].Name != "tcp/198.18.0.100:80" || b.Services[1].Name != "udp/198.18.0.100:53" || b.Services[2].Name != "tcp/198.18.0.100:443" {
		t.Errorf("services after the reload: %s, %s, %s; the kept ones keep IDs 0 and 1", b.Services[0].Name, b.Services[1].Name, b.Services[2].Name)
	}
	if got := b.Services[0].RealIDs; !slices.Equal(got, []uint16{2, 1, 0, 5}) {
		t.Errorf("service 0 real IDs = %v, want [2 1 0 5] (config order, kept IDs, a new one)", got)
	}
	if b.Services[0].Scheduler != "rr" || b.Reals[3].Weight != 4 {
		t.Errorf("the reload's changes did not reach the tables: scheduler %q, weight %d", b.Services[0].Scheduler, b.Reals[3].Weight)
	}
	if b.Reals[4] == nil || b.Reals[4].Addr.String() != "198.19.0.14:443" || b.Reals[4].Counts == nil ||
		b.Reals[4].Counts.Active.Load() != 0 {
		t.Errorf("the new real server 198.19.0.14:443 = %+v, want ID 4 with fresh counts", b.Reals[4])
	}
}

// TestRemovedRealDrains: a removed real server with connections stays, marked Removed, as long as
// they last, then goes and frees its ID; one without connections goes at once; one listed again
// while it drains gets its ID and counts back.
func TestRemovedRealDrains(t *testing.T) {
	c := New()
	cfg := parse(t, twoServices)
	a := compileCommit(t, c, cfg, twoHops)
	drainC := a.Reals[1].Counts // 198.19.0.12:80
	drainC.Active.Add(1)
	drainC.Inactive.Add(1)

	without := parse(t, strings.Replace(strings.Replace(twoServices, `{ address = "198.19.0.12:80" }, `, "", 1),
		`{ address = "198.19.0.13:80" }`, `{ address = "198.19.0.14:80" }`, 1))
	b := compileCommit(t, c, without, twoHops)
	r := b.Reals[1]
	if r == nil || !r.Removed || r.Addr != a.Reals[1].Addr || r.Service != 0 || r.Counts != drainC ||
		r.Port != a.Reals[1].Port || r.MAC != a.Reals[1].MAC || !r.Resolved {
		t.Fatalf("draining real server = %+v, want the old entry marked Removed", r)
	}
	if slices.Contains(b.Services[0].RealIDs, 1) {
		t.Errorf("service 0 still schedules over the removed real server: %v", b.Services[0].RealIDs)
	}
	if b.Reals[2] != nil {
		t.Errorf("198.19.0.13:80, removed without connections, still has ID 2: %+v", b.Reals[2])
	}
	if b.Reals[4] == nil || b.Reals[4].Addr.String() != "198.19.0.14:80" {
		t.Fatalf("new real server 198.19.0.14:80 = %+v, want the next new ID, 4 (a freed ID waits)", b.Reals[4])
	}

	// Still connections: still there.
	drainC.Active.Add(-1)
	if b = compileCommit(t, c, without, twoHops); b.Reals[1] == nil || !b.Reals[1].Removed {
		t.Fatalf("real server with an inactive connection left: %+v", b.Reals[1])
	}
	if !Same(b, compileCommit(t, c, without, twoHops)) {
		t.Errorf("recompiling an unchanged config while a real server drains changes the tables")
	}

	// Listed again while it drains: its ID and counts come back, and it takes connections again.
	back := compileCommit(t, c, cfg, twoHops)
	if r := realIn(back, 0, "198.19.0.12:80"); r == nil || r.ID != 1 || r.Removed || r.Counts != drainC {
		t.Fatalf("re-added real server = %+v, want ID 1, not Removed, its counts", r)
	}
	if r := realIn(back, 0, "198.19.0.13:80"); r == nil || r.ID == 2 {
		t.Errorf("198.19.0.13:80 added again = %+v; its freed ID 2 must wait until the ID space is used up", r)
	}

	// Removed again, and its last connection ends: it goes, and its ID is free.
	compileCommit(t, c, without, twoHops)
	drainC.Inactive.Add(-1)
	b = compileCommit(t, c, without, twoHops)
	if b.Reals[1] != nil {
		t.Fatalf("real server whose connections ended is still there: %+v", b.Reals[1])
	}
	if !slices.Contains(c.cur.realIDs.free, 1) {
		t.Errorf("ID 1 is not free once its real server's connections ended: free = %v", c.cur.realIDs.free)
	}
}

// TestRemovedService: a removed service loses its entry at once (its connections end at their
// next packet); its real servers with connections drain like any removed real server, and its ID
// stays taken while they do: their connections name it.
func TestRemovedService(t *testing.T) {
	c := New()
	full := parse(t, twoServices)
	a := compileCommit(t, c, full, twoHops)
	a.Reals[3].Counts.Active.Add(1)
	tcpOnly := parse(t, strings.Split(twoServices, "[[virtual_server]]\naddress   = \"198.18.0.100:53\"")[0])
	b := compileCommit(t, c, tcpOnly, twoHops)
	if len(b.Services) > 1 && b.Services[1] != nil {
		t.Errorf("removed service still has an entry: %+v", b.Services[1])
	}
	if r := b.Reals[3]; r == nil || !r.Removed || r.Service != 1 {
		t.Errorf("real server of the removed service, with a connection = %+v, want it draining", r)
	}
	if slices.Contains(c.cur.svcIDs.free, 1) {
		t.Errorf("the removed service's ID is free while its real server drains")
	}
	// Listed again meanwhile: the same ID.
	if back := compileCommit(t, c, full, twoHops); back.Services[1] == nil || back.Services[1].Name != "udp/198.18.0.100:53" ||
		back.Reals[3] == nil || back.Reals[3].Removed || back.Reals[3].Service != 1 {
		t.Errorf("service listed again while its real server drains: services %v, real %+v", names(back), back.Reals[3])
	}
	compileCommit(t, c, tcpOnly, twoHops)
	// Its last connection ends: both IDs go.
	a.Reals[3].Counts.Active.Add(-1)
	b = compileCommit(t, c, tcpOnly, twoHops)
	if len(b.Reals) > 3 && b.Reals[3] != nil || !slices.Contains(c.cur.svcIDs.free, 1) || !slices.Contains(c.cur.realIDs.free, 3) {
		t.Errorf("after the last connection: real %v, free service IDs %v, free real IDs %v", b.Reals, c.cur.svcIDs.free, c.cur.realIDs.free)
	}
}

// TestUncommittedCompileLeavesNoTrace: tables that are compiled but never committed (the data
// plane refused them) change nothing: a service they leave out keeps its ID, so its connections
// survive the failed reload.
func TestUncommittedCompileLeavesNoTrace(t *testing.T) {
	c := New()
	cfg := parse(t, twoServices)
	a := compileCommit(t, c, cfg, twoHops)
	a.Reals[0].Counts.Active.Add(1)
	// A reload to a config with only the UDP service, refused.
	if _, err := c.Compile(parse(t, "[dataplane]\ninterfaces = [\"l0\"]\n[[virtual_server]]\naddress   = \"198.18.0.100:53\""+
		strings.Split(twoServices, "address   = \"198.18.0.100:53\"")[1]), twoHops); err != nil {
		t.Fatal(err)
	}
	b, err := c.Compile(cfg, twoHops)
	if err != nil {
		t.Fatal(err)
	}
	c.Commit(a) // stale tables: ignored
	c.Commit(b)
	if !Same(a, b) {
		t.Errorf("after a compile that was not committed the same config compiles differently:\nservices %v -> %v",
			names(a), names(b))
	}
}

func names(tb *dataplane.Tables) []string {
	var out []string
	for _, s := range tb.Services {
		if s == nil {
			out = append(out, "-")
			continue
		}
		out = append(out, fmt.Sprintf("%d:%s", s.ID, s.Name))
	}
	return out
}

// TestIDRegistry: IDs are handed out in order; a released one is handed out again only once every
// ID has been, oldest first; when none is left, get says so instead of wrapping around.
func TestIDRegistry(t *testing.T) {
	var r idRegistry
	live := map[string]bool{}
	for i := range idSpace {
		k := fmt.Sprint(i)
		id, ok := r.get(k)
		if !ok || int(id) != i {
			t.Fatalf("get(%q) = %d, %v; want %d", k, id, ok, i)
		}
		live[k] = true
		if i == 10 {
			// Released early: still not handed out before the space is used up.
			delete(live, "3")
			delete(live, "7")
			r.forget(live, nil)
		}
	}
	if id, ok := r.get("3"); !ok || id != 3 {
		t.Fatalf("get(\"3\") after the space is used = %d, %v; want the oldest free ID, 3", id, ok)
	}
	if id, ok := r.get("x"); !ok || id != 7 {
		t.Fatalf("get(\"x\") = %d, %v; want the next free ID, 7", id, ok)
	}
	if id, ok := r.get("y"); ok {
		t.Fatalf("get(\"y\") with every ID taken = %d; want none", id)
	}
	if id, ok := r.get("65535"); !ok || id != 65535 {
		t.Fatalf("get(\"65535\") = %d, %v; a held key keeps its ID", id, ok)
	}
	// A vetoed release keeps the key's ID.
	delete(live, "100")
	r.forget(live, func(id uint16) bool { return id != 100 })
	if id, ok := r.get("100"); !ok || id != 100 {
		t.Fatalf("get(\"100\") after a vetoed release = %d, %v; want 100", id, ok)
	}
}

// TestIDSpaceExhausted: a configuration needing more real-server IDs than there are fails to
// compile (the compiler never hands out an ID that a draining real server holds), and the
// compiler stays usable.
func TestIDSpaceExhausted(t *testing.T) {
	c := New()
	c.cur.realIDs.size = 4
	cfg := parse(t, twoServices)
	a := compileCommit(t, c, cfg, twoHops) // IDs 0..3 taken
	a.Reals[0].Counts.Active.Add(1)
	more := parse(t, strings.Replace(twoServices, `{ address = "198.19.0.11:80" }, `, `{ address = "198.19.0.14:80" }, `, 1))
	_, err := c.Compile(more, twoHops)
	if err == nil || !strings.Contains(err.Error(), "198.19.0.14:80") || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Compile needing a fifth ID of four, the removed one draining: err = %v", err)
	}
	if b := compileCommit(t, c, cfg, twoHops); !Same(a, b) {
		t.Errorf("a failed compile changed the compiler's state")
	}
	// Once the draining one's connection ends, its ID is free for the new one.
	a.Reals[0].Counts.Active.Add(-1)
	b := compileCommit(t, c, more, twoHops)
	if r := realIn(b, 0, "198.19.0.14:80"); r == nil || r.ID != 0 {
		t.Errorf("new real server = %+v, want the freed ID 0", r)
	}
}

// TestNoLiveIDHandedOver drives a compiler with a small ID space through random reloads while
// connections open on and close from its real servers, and checks after every reload that each
// open connection's real-server ID still names the server it was opened to.
func TestNoLiveIDHandedOver(t *testing.T) {
	const (
		space = 8
		steps = 3000
	)
	rng := rand.New(rand.NewPCG(1, 2))
	type conn struct {
		id, sid uint16
		vip     string
		addr    netip.AddrPort
		c       *sched.Counts
	}
	var open []conn
	services := []string{"198.18.0.100:80", "198.18.0.101:80"}
	pool := []string{"198.19.0.11:80", "198.19.0.12:80", "198.19.0.13:80", "198.19.0.14:80", "198.19.0.15:80", "198.19.0.16:80"}
	hops := fakeHops{}
	for _, a := range pool {
		hops[netip.MustParseAddrPort(a).Addr()] = Hop{OnLink: true}
	}
	c := New()
	c.cur.realIDs.size = space
	c.cur.svcIDs.size = 4
	reused, failed := 0, 0
	seen := map[uint16]netip.AddrPort{}
	svcReused := 0
	seenSvc := map[uint16]string{}
	for step := range steps {
		var b strings.Builder
		b.WriteString("[dataplane]\ninterfaces = [\"l0\"]\n")
		for _, vip := range services {
			var reals []string
			for _, a := range pool {
				if rng.IntN(3) == 0 {
					reals = append(reals, fmt.Sprintf("{ address = %q }", a))
				}
			}
			if len(reals) == 0 {
				continue
			}
			fmt.Fprintf(&b, "[[virtual_server]]\naddress = %q\nprotocol = \"tcp\"\nmethod = \"nat\"\nreal_server = [%s]\n", vip, strings.Join(reals, ", "))
		}
		cfg := parse(t, b.String())
		tb, err := c.Compile(cfg, hops)
		if err != nil {
			failed++
			continue // the reload is refused; the running tables stay
		}
		c.Commit(tb)
		for _, o := range open {
			var r *dataplane.Real
			if int(o.id) < len(tb.Reals) {
				r = tb.Reals[o.id]
			}
			var svc *dataplane.Service
			if int(o.sid) < len(tb.Services) {
				svc = tb.Services[o.sid]
			}
			if r == nil || r.Addr != o.addr || r.Service != o.sid || r.Counts != o.c || svc != nil && svc.VIP.String() != o.vip {
				t.Fatalf("step %d: a connection to %s of %s holds real-server ID %d and service ID %d, which now name %+v and %+v",
					step, o.addr, o.vip, o.id, o.sid, r, svc)
			}
		}
		for _, r := range tb.Reals {
			if r == nil {
				continue
			}
			if prev, ok := seen[r.ID]; ok && prev != r.Addr {
				reused++
			}
			seen[r.ID] = r.Addr
		}
		for _, s := range tb.Services {
			if s == nil {
				continue
			}
			if prev, ok := seenSvc[s.ID]; ok && prev != s.Name {
				svcReused++
			}
			seenSvc[s.ID] = s.Name
		}
		// Connections end at random and open on the servers the tables offer.
		for i := 0; i < len(open); {
			if rng.IntN(4) == 0 {
				open[i].c.Active.Add(-1)
				open[i] = open[len(open)-1]
				open = open[:len(open)-1]
				continue
			}
			i++
		}
		for _, s := range tb.Services {
			if s == nil {
				continue
			}
			for _, id := range s.RealIDs {
				if r := tb.Reals[id]; rng.IntN(3) == 0 && !r.Removed {
					r.Counts.Active.Add(1)
					open = append(open, conn{id, s.ID, s.VIP.String(), r.Addr, r.Counts})
				}
			}
		}
	}
	if reused == 0 || svcReused == 0 || failed == 0 {
		t.Errorf("the run reused %d real-server and %d service IDs and ran out of them %d times; it must do all to test anything",
			reused, svcReused, failed)
	}
	t.Logf("%d reloads: %d refused for want of an ID, %d real-server and %d service IDs reused", steps, failed, reused, svcReused)
}

// TestSameSeesEveryField: changing any field of a service or real server that the data plane reads
// makes the tables differ; a new field fails this test until Same compares it.
func TestSameSeesEveryField(t *testing.T) {
	cfg := parse(t, fullConfig)
	base := compileCommit(t, New(), cfg, fullHops)
	if !Same(base, base) {
		t.Fatal("tables differ from themselves")
	}
	again, _ := New().Compile(cfg, fullHops)
	if Same(base, again) {
		t.Error("tables with other connection counts are the same")
	}
	fresh := func() *dataplane.Tables {
		tb := *base
		tb.Services = slices.Clone(base.Services)
		tb.Reals = slices.Clone(base.Reals)
		return &tb
	}
	ignore := map[string]bool{"Dests": true} // built by Finish from the rest
	check := func(what string, v reflect.Value, set func(tb *dataplane.Tables, v reflect.Value)) {
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() || ignore[f.Name] {
				continue
			}
			tb := fresh()
			cp := reflect.New(v.Type()).Elem()
			cp.Set(v)
			if !change(cp.Field(i)) {
				t.Errorf("%s.%s: teach this test to change a %s", what, f.Name, f.Type)
				continue
			}
			set(tb, cp)
			if Same(base, tb) {
				t.Errorf("tables that differ in %s.%s are the same", what, f.Name)
			}
		}
	}
	check("Service", reflect.ValueOf(*base.Services[3]), func(tb *dataplane.Tables, v reflect.Value) {
		s := v.Interface().(dataplane.Service)
		tb.Services[3] = &s
	})
	check("Real", reflect.ValueOf(*base.Reals[6]), func(tb *dataplane.Tables, v reflect.Value) {
		r := v.Interface().(dataplane.Real)
		tb.Reals[6] = &r
	})
	tb := fresh()
	tb.ExpireNodestConn = !tb.ExpireNodestConn
	if Same(base, tb) {
		t.Error("tables that differ in ExpireNodestConn are the same")
	}
	tb = fresh()
	tb.Gen++
	if !Same(base, tb) {
		t.Error("tables that differ only in Gen differ")
	}
}

// change sets v to another value of its type and reports whether it knew how.
func change(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Array:
		return change(v.Index(0))
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Struct:
		switch x := v.Addr().Interface().(type) {
		case *netip.AddrPort:
			*x = netip.AddrPortFrom(x.Addr(), x.Port()+1)
		case *netip.Addr:
			*x = netip.MustParseAddr("198.18.255.1")
		case *sched.Options:
			x.MHTableSize++
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// TestConntrack: each worker's table holds its share of max_entries (rounded up), with the
// configured full policy and timeouts.
func TestConntrack(t *testing.T) {
	cfg := parse(t, `
[dataplane]
interfaces = ["l0"]
[timeouts]
tcp = "15m"
tcp_fin = "1m"
udp = "30s"
tcp_syn_recv = "31s"
tcp_syn_sent = "45s"
tcp_time_wait = "1m30s"
tcp_close = "5s"
tcp_close_wait = "40s"
tcp_last_ack = "20s"
[conntrack]
max_entries = 1001
full_policy = "evict_oldest_idle"
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "nat"
real_server = [{ address = "198.19.0.11:80" }]
`)
	got := Conntrack(cfg, 4)
	want := conntrack.Config{
		MaxEntries: 251,
		FullPolicy: conntrack.EvictOldestIdle,
		Timeouts: conntrack.Timeouts{
			TCP: int64(15 * time.Minute), TCPFin: int64(time.Minute), UDP: int64(30 * time.Second),
			TCPSynRecv: int64(31 * time.Second), TCPSynSent: int64(45 * time.Second), TCPTimeWait: int64(90 * time.Second),
			TCPClose: int64(5 * time.Second), TCPCloseWait: int64(40 * time.Second), TCPLastAck: int64(20 * time.Second),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Conntrack(cfg, 4) = %+v\nwant %+v", got, want)
	}
	cfg.Conntrack.FullPolicy = config.FullPolicyDropNew
	if got := Conntrack(cfg, 1); got.MaxEntries != 1001 || got.FullPolicy != conntrack.DropNew {
		t.Errorf("Conntrack(cfg, 1) = %d entries, policy %v; want 1001, drop new", got.MaxEntries, got.FullPolicy)
	}
}

// TestPositionKeptAcrossReloads: an rr service keeps its shared position across reloads (a reload
// that changes nothing must neither restart the order nor count as a change), and a service that
// is removed and comes back starts afresh.
func TestPositionKeptAcrossReloads(t *testing.T) {
	const rr = `
[dataplane]
interfaces = ["l0"]

[[virtual_server]]
address   = "198.18.0.100:80"
protocol  = "tcp"
method    = "nat"
scheduler = "rr"
real_server = [{ address = "198.19.0.11:80" }, { address = "198.19.0.12:80" }]
`
	c := New()
	a := compileCommit(t, c, parse(t, rr), twoHops)
	b := compileCommit(t, c, parse(t, rr), twoHops)
	if a.Services[0].SchedOptions.Position == nil || a.Services[0].SchedOptions.Position != b.Services[0].SchedOptions.Position {
		t.Errorf("position %p before the reload, %p after", a.Services[0].SchedOptions.Position, b.Services[0].SchedOptions.Position)
	}
	if !Same(a, b) {
		t.Error("recompiling the same file gave tables that differ")
	}
	compileCommit(t, c, parse(t, "[dataplane]\ninterfaces = [\"l0\"]\n"), twoHops)
	d := compileCommit(t, c, parse(t, rr), twoHops)
	var again *dataplane.Service
	for _, s := range d.Services {
		if s != nil {
			again = s
		}
	}
	if again == nil || again.SchedOptions.Position == nil || again.SchedOptions.Position == a.Services[0].SchedOptions.Position {
		t.Error("a service removed and added again kept its old position")
	}
}

// TestCompileTunnel: method tun reaches the tables with its encapsulation, and a real server is
// resolved with the hop's source address as its tunnel source; without a source of its family
// (nothing to put in the outer header) it stays unresolved, even via a gateway it is resolved.
func TestCompileTunnel(t *testing.T) {
	cfg := parse(t, `
[dataplane]
interfaces = ["l0"]
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "tun"
tunnel = "gue"
tunnel_port = 6080
real_server = [{address = "198.19.0.11:80"}, {address = "198.19.0.12:80"}, {address = "198.19.0.99:80"}]
[[virtual_server]]
address = "[2001:2::100]:80"
protocol = "tcp"
method = "tun"
real_server = [{address = "[2001:2::11]:80"}]
`)
	src4, src6 := netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("2001:2::1")
	hops := fakeHops{
		netip.MustParseAddr("198.19.0.11"): {Port: 1, MAC: mac(0x11), OnLink: true, Src: src4, MTU: 1400},
		netip.MustParseAddr("198.19.0.12"): {Port: 1, MAC: mac(0x12), OnLink: true, Src: src6}, // wrong family
		netip.MustParseAddr("198.19.0.99"): {Port: 1, MAC: mac(0xfe), Src: src4},               // via a gateway
		netip.MustParseAddr("2001:2::11"):  {Port: 1, MAC: mac(0x21), OnLink: true, Src: src6},
	}
	tb := compileCommit(t, New(), cfg, hops)
	s4, s6 := tb.Services[0], tb.Services[1]
	if s4.Method != dataplane.MethodTun || s4.Tunnel != dataplane.TunnelGUE || s4.TunnelPort != 6080 {
		t.Errorf("IPv4 service: method %v tunnel %v port %d, want tun gue 6080", s4.Method, s4.Tunnel, s4.TunnelPort)
	}
	if s6.Method != dataplane.MethodTun || s6.Tunnel != dataplane.TunnelIPIP || s6.TunnelPort != 0 {
		t.Errorf("IPv6 service: method %v tunnel %v port %d, want tun ipip 0", s6.Method, s6.Tunnel, s6.TunnelPort)
	}
	for _, c := range []struct {
		id       uint16
		resolved bool
		src      netip.Addr
		mtu      int
	}{{s4.RealIDs[0], true, src4, 1400}, {s4.RealIDs[1], false, netip.Addr{}, 0}, {s4.RealIDs[2], true, src4, 0}, {s6.RealIDs[0], true, src6, 0}} {
		r := tb.Reals[c.id]
		if r.Resolved != c.resolved || r.TunnelSrc != c.src || r.MTU != c.mtu {
			t.Errorf("real server %v: resolved %v tunnel source %v MTU %d, want %v %v %d", r.Addr, r.Resolved, r.TunnelSrc, r.MTU, c.resolved, c.src, c.mtu)
		}
	}
}
