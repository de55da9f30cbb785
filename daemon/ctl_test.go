package daemon

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
)

const ctlConfig = `
[dataplane]
interfaces = ["l0"]
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "nat"
real_server = [{ address = "198.19.0.11:80", weight = 2 }, { address = "198.19.0.12:80" }]
[[virtual_server]]
address = "[2001:2::100]:53"
protocol = "udp"
method = "nat"
real_server = [{ address = "[2001:2::11]:53" }]
`

func ctlCfg(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(ctlConfig), "t.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestFindReal: services and real servers are found as `govs list` writes them (the protocol in
// any case), and every mistake is one line saying what is known.
func TestFindReal(t *testing.T) {
	cfg := ctlCfg(t)
	for _, ok := range []struct{ svc, real, key, addr string }{
		{"tcp/198.18.0.100:80", "198.19.0.12:80", "tcp/198.18.0.100:80", "198.19.0.12:80"},
		{"TCP/198.18.0.100:80", " 198.19.0.11:80", "tcp/198.18.0.100:80", "198.19.0.11:80"},
		{"TCP  198.18.0.100:80", "198.19.0.11:80", "tcp/198.18.0.100:80", "198.19.0.11:80"}, // as govs list's text
		{"udp/[2001:2::100]:53", "[2001:2::11]:53", "udp/[2001:2::100]:53", "[2001:2::11]:53"},
		{"udp/[2001:0002::0100]:53", "[2001:2:0::11]:53", "udp/[2001:2::100]:53", "[2001:2::11]:53"},
	} {
		vs, rs, err := findReal(cfg, ok.svc, ok.real)
		if err != nil || vs.Key() != ok.key || rs.Address.String() != ok.addr {
			t.Errorf("findReal(%q, %q) = %v, %v, %v; want %s %s", ok.svc, ok.real, vs, rs, err, ok.key, ok.addr)
		}
	}
	for _, bad := range []struct{ svc, real, want string }{
		{"tcp/198.18.0.100:81", "198.19.0.11:80", "unknown virtual server tcp/198.18.0.100:81; known: tcp/198.18.0.100:80, udp/[2001:2::100]:53"},
		{"198.18.0.100:80", "198.19.0.11:80", `"198.18.0.100:80" is not a virtual server; write it as protocol/address:port, e.g. tcp/198.18.0.100:80 or udp/[2001:2::100]:53 (as the logs name it), or as ` + "`govs list`" + ` prints it, "TCP  198.18.0.100:80"`},
		{"sctp/198.18.0.100:80", "198.19.0.11:80", `"sctp/198.18.0.100:80" is not a virtual server`},
		{"tcp/198.18.0.100:80", "198.19.0.13:80", "virtual server tcp/198.18.0.100:80 has no real server 198.19.0.13:80; its real servers: 198.19.0.11:80, 198.19.0.12:80"},
		{"tcp/198.18.0.100:80", "198.19.0.11", `"198.19.0.11" is not a real server address`},
	} {
		_, _, err := findReal(cfg, bad.svc, bad.real)
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("findReal(%q, %q) = %v, want one line with %q", bad.svc, bad.real, err, bad.want)
		}
	}
}

// TestRates: the rate is the difference of the latest two samples over the time between them; a
// real server newer than the previous sample counts from zero, one whose ID was handed to another
// (counts lower than before) shows no negative rate.
func TestRates(t *testing.T) {
	var r rateSampler
	if got := r.rates(); len(got) != 0 {
		t.Errorf("rates before any sample: %v", got)
	}
	t0 := time.Unix(1000, 0)
	r.prev, r.cur = r.cur, rateSample{at: t0, reals: []dataplane.RealStats{{Conns: 10, PacketsIn: 100, BytesIn: 6000}}}
	if got := r.rates(); len(got) != 1 || got[0] != (control.TrafficRate{}) {
		t.Errorf("rates after one sample: %v, want zero", got)
	}
	r.prev, r.cur = r.cur, rateSample{at: t0.Add(2 * time.Second), reals: []dataplane.RealStats{
		{Conns: 30, PacketsIn: 300, PacketsOut: 50, BytesIn: 9000, BytesOut: 100000},
		{Conns: 4},
	}}
	got := r.rates()
	if want := (control.TrafficRate{CPS: 10, InPPS: 100, OutPPS: 25, InBPS: 1500, OutBPS: 50000}); got[0] != want {
		t.Errorf("rate %+v, want %+v", got[0], want)
	}
	if got[1].CPS != 2 {
		t.Errorf("a new real server's rate %+v, want 2 connections a second", got[1])
	}
	r.prev, r.cur = r.cur, rateSample{at: t0.Add(3 * time.Second), reals: []dataplane.RealStats{{Conns: 1}, {Conns: 4}}}
	if got := r.rates(); got[0] != (control.TrafficRate{}) || got[1] != (control.TrafficRate{}) {
		t.Errorf("rates %+v after counts went down or stayed, want zero", got)
	}
}

// TestCompleteStatus: after `govs ctl zero` the status counts from the counters then (gauges
// stay as they are); each real server gets its traffic, rate and disabled flag, each service the
// totals of its real servers, removed ones that drain included; the overrides are listed with
// the file's weight.
func TestCompleteStatus(t *testing.T) {
	cfg := ctlCfg(t)
	c := compile.New()
	hops := allResolved{}
	t1, err := c.Compile(cfg, hops)
	if err != nil {
		t.Fatal(err)
	}
	c.Commit(t1)
	t1.Reals[1].Counts.Active.Add(1) // 198.19.0.12 has a connection when a reload removes it
	next := ctlCfg(t)
	next.VirtualServers[0].RealServers = next.VirtualServers[0].RealServers[:1]
	c.Overrides = compile.Overrides{{Service: "tcp/198.18.0.100:80", Real: netip.MustParseAddrPort("198.19.0.11:80")}: {Weight: 0, SetWeight: true, Disabled: true}}
	tb, err := c.Compile(next, hops)
	if err != nil {
		t.Fatal(err)
	}
	if !tb.Reals[1].Removed {
		t.Fatalf("198.19.0.12 is not draining: %+v", tb.Reals[1])
	}
	d := &Daemon{cfg: next, compiler: c}
	d.rt.zero = &zeroBase{
		counters: map[string]uint64{"rx_frames": 100, "rx_ring_latency": 1},
		drops:    map[string]uint64{"no_service": 3},
		reals:    []dataplane.RealStats{{Conns: 1, PacketsIn: 10}},
	}
	ds := &dataplane.Stats{
		Counters: map[string]uint64{"rx_frames": 150, "rx_ring_latency": 1},
		Drops:    map[string]uint64{"no_service": 5},
		Reals:    []dataplane.RealStats{{Conns: 3, PacketsIn: 30, PacketsOut: 20, BytesIn: 1000, BytesOut: 2000}, {Conns: 5}, {Conns: 7}},
	}
	st := control.Status{Counters: ds.Counters, Drops: ds.Drops, DropsTotal: 5}
	for _, s := range tb.Services {
		v := control.VirtualServer{Address: s.VIP.String()}
		for range s.RealIDs {
			v.RealServers = append(v.RealServers, control.RealServer{})
		}
		st.VirtualServers = append(st.VirtualServers, v)
	}
	d.completeStatus(&st, tb, ds, true)
	if st.Counters["rx_frames"] != 50 || st.Counters["rx_ring_latency"] != 1 || st.Drops["no_service"] != 2 || st.DropsTotal != 5 {
		t.Errorf("counters %v drops %v total %d after zero", st.Counters, st.Drops, st.DropsTotal)
	}
	rs := st.VirtualServers[0].RealServers[0]
	if want := (control.TrafficStats{Conns: 2, InPkts: 20, OutPkts: 20, InBytes: 1000, OutBytes: 2000}); rs.Stats != want || rs.Packets != 40 || !rs.Disabled {
		t.Errorf("198.19.0.11: %+v, want stats %+v, 40 packets, disabled", rs, want)
	}
	if got := st.VirtualServers[0].Stats.Conns; got != 2+5 {
		t.Errorf("the service's connections %d, want 7: its real server's and the draining one's", got)
	}
	if got := st.VirtualServers[1].Stats.Conns; got != 7 {
		t.Errorf("the IPv6 service's connections %d, want 7", got)
	}
	if len(st.Overrides) != 1 || st.Overrides[0].Real != "198.19.0.11:80" || *st.Overrides[0].Weight != 0 ||
		st.Overrides[0].ConfiguredWeight != 2 || !st.Overrides[0].Disabled {
		t.Errorf("overrides %+v", st.Overrides)
	}

	// The metrics' status: the data plane's own counts, `govs ctl zero` or not.
	raw := control.Status{Counters: map[string]uint64{"rx_frames": 150}, Drops: map[string]uint64{"no_service": 5}, DropsTotal: 5}
	for _, s := range tb.Services {
		v := control.VirtualServer{Address: s.VIP.String(), RealServers: make([]control.RealServer, len(s.RealIDs))}
		raw.VirtualServers = append(raw.VirtualServers, v)
	}
	d.completeStatus(&raw, tb, ds, false)
	if raw.Counters["rx_frames"] != 150 || raw.Drops["no_service"] != 5 || raw.VirtualServers[0].RealServers[0].Stats.Conns != 3 {
		t.Errorf("raw status: counters %v drops %v, real server %+v; want the data plane's own counts", raw.Counters, raw.Drops, raw.VirtualServers[0].RealServers[0].Stats)
	}
}

type allResolved struct{}

func (allResolved) NextHop(uint16, netip.Addr) (compile.Hop, bool) {
	return compile.Hop{Port: 0, MAC: [6]byte{2, 0, 0, 0, 0, 1}, OnLink: true}, true
}

// TestCommandBeforeReady: while govs starts, commands answer that it is starting, not a crash.
func TestCommandBeforeReady(t *testing.T) {
	_, err := (&statusGate{}).Command(context.Background(), control.CmdZero, nil)
	if err == nil || !strings.Contains(err.Error(), "govs is starting; try again") {
		t.Errorf("a command before the daemon is up: %v", err)
	}
}
