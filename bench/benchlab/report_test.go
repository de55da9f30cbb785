package main

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/lab"
)

func TestProcStat(t *testing.T) {
	in := []byte("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 1 4 40 2 1 1 7 3 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1 2\n")
	got, err := parseProcStat(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuTimes{Busy: 12, Idle: 42, Steal: 7, Kernel: 6, User: 6}); got[0] != want {
		t.Errorf("cpu0 = %+v, want %+v (guest excluded, iowait idle, steal apart; system+irq+softirq kernel, user+nice user)", got[0], want)
	}
	sec := time.Second // 100 jiffies
	after := map[int]cpuTimes{0: {Busy: 62, Idle: 92, Steal: 7, Kernel: 31}}
	if k := kernelPercent(got, after, 0, sec); k != 25 {
		t.Errorf("kernelPercent = %v, want 25", k)
	}
	if b := busyPercent(got, after, 0, sec); b != 50 {
		t.Errorf("busyPercent = %v, want 50", b)
	}
	// 40 idle and 20 stolen jiffies of 100: busy 40% of the time, not half.
	stolen := map[int]cpuTimes{0: {Busy: 52, Idle: 82, Steal: 27}}
	if b := busyPercent(got, stolen, 0, sec); b != 40 {
		t.Errorf("busyPercent with steal = %v, want 40", b)
	}
	// Softirq work run from idle (the kernel's DNAT) is in no column: 10 busy and 40 idle
	// jiffies accounted in one second. The CPU was busy 60% of it, not 20%.
	lost := map[int]cpuTimes{0: {Busy: 22, Idle: 82, Steal: 7}}
	if b := busyPercent(got, lost, 0, sec); b != 60 {
		t.Errorf("busyPercent with unaccounted softirq time = %v, want 60", b)
	}
	if b := busyPercent(got, after, 0, 0); b != -1 {
		t.Errorf("busyPercent over no time = %v, want -1", b)
	}
	if b := busyPercent(got, after, 7, sec); b != -1 {
		t.Errorf("busyPercent of a missing CPU = %v, want -1", b)
	}
	for _, bad := range []string{"", "cpux 1 2 3 4\n", "cpu0 1 2 x 4\n"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestSoftnet(t *testing.T) {
	in := []byte("0019c136 0000000a 00 00 00 00 00 00 00 0000002a 00 00 00000000 00 00\n002c5938 00000001 00 00 00 00 00 00 00 00000000 00 00 00000001 00 00\n")
	got, err := parseSoftnet(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]softnetStat{0: {Dropped: 10, ReceivedRPS: 42}, 1: {Dropped: 1}}
	if got[0] != want[0] || got[1] != want[1] || len(got) != 2 {
		t.Errorf("softnet = %+v, want %+v", got, want)
	}
	// A kernel without the received_rps column: drops only, line number as CPU.
	old, err := parseSoftnet([]byte("00000005 00000003 00\n"))
	if err != nil || old[0] != (softnetStat{Dropped: 3}) {
		t.Errorf("short line = %+v, %v; want dropped 3", old, err)
	}
	for _, bad := range []string{"zz\n", "01 02 03 04 05 06 07 08 09 xx\n"} {
		if _, err := parseSoftnet([]byte(bad)); err == nil {
			t.Errorf("parseSoftnet(%q) succeeded", bad)
		}
	}
}

func TestUsPerPacket(t *testing.T) {
	for _, tt := range []struct {
		busy, pps, want float64
		ok              bool
	}{
		{50, 500000, 1, true},     // half a core for 500k pps: 1 us each
		{100, 250000, 4, true},    // a full core for 250k pps: 4 us each
		{38, 368172, 1.032, true}, // the kernel phase of bench/README.md
		{-1, 1000, 0, false},      // busy unknown
		{50, 0, 0, false},         // nothing delivered
	} {
		got, ok := usPerPacket(tt.busy, tt.pps)
		if ok != tt.ok || math.Abs(got-tt.want) > 1e-3 {
			t.Errorf("usPerPacket(%v, %v) = %v, %v; want %v, %v", tt.busy, tt.pps, got, ok, tt.want, tt.ok)
		}
	}
	u := &udpResult{Seconds: 2, DeliveredPPS: 1000}
	if v, ok := u.perThousand(500); !ok || v != 250 {
		t.Errorf("perThousand(500) over 2000 packets = %v, %v; want 250", v, ok)
	}
	if _, ok := (&udpResult{Seconds: 2}).perThousand(5); ok {
		t.Error("perThousand with nothing delivered succeeded")
	}
}

func TestCtxSwitches(t *testing.T) {
	in := []byte("Name:\tgovs\nState:\tR (running)\nvoluntary_ctxt_switches:\t33136\nnonvoluntary_ctxt_switches:\t6699\n")
	if n, err := parseCtxSwitches(in); err != nil || n != 39835 {
		t.Errorf("parseCtxSwitches = %v, %v; want 39835", n, err)
	}
	for _, bad := range []string{"Name:\tgovs\n", "voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n"} {
		if _, err := parseCtxSwitches([]byte(bad)); err == nil {
			t.Errorf("parseCtxSwitches(%q) succeeded", bad)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, tt := range []struct {
		name         string
		kernel, govs float64
		lower        bool
		want         float64
		ok           bool
	}{
		{"throughput", 800000, 400000, false, 0.5, true},
		{"latency", 2, 1, true, 2, true},
		{"kernel zero", 0, 5, false, 0, false},
		{"govs zero latency", 1, 0, true, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ratio(tt.kernel, tt.govs, tt.lower)
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("ratio = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestReport checks a govs phase that failed: the kernel figures print, govs says failed, no
// ratio is invented, and the JSON carries the error.
func TestReport(t *testing.T) {
	r := newReport(options{duration: 2e9, balancerCPU: 0, loadCPU: 1})
	r.Kernel = &phaseResult{Name: "kernel(nft dnat)",
		UDP:  &udpResult{FrameLen: 64, Seconds: 2, DeliveredPPS: 800000, OfferedPPS: 900000},
		HTTP: &httpResult{Threads: 2, Conns: 50, ReqPerSec: 40000, P50Ms: 1, P99Ms: 4, Requests: 80000},
	}
	r.Govs = &phaseResult{Name: "govs", Error: "govs exited before becoming ready"}
	var tbl bytes.Buffer
	writeTable(&tbl, r)
	out := tbl.String()
	for _, want := range []string{"udp64 delivered pps", "800000", "failed", "not run", "govs setup: govs exited before becoming ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if len(r.Ratios) != 0 {
		t.Errorf("ratios %v with govs failed, want none", r.Ratios)
	}

	r.Govs = &phaseResult{Name: "govs",
		UDP:  &udpResult{FrameLen: 64, Seconds: 2, DeliveredPPS: 400000},
		HTTP: &httpResult{ReqPerSec: 20000, P50Ms: 2, P99Ms: 2, Requests: 40000},
	}
	var js bytes.Buffer
	if err := writeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Ratios map[string]float64 `json:"ratios"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"udp64_delivered_pps": 0.5, "http_req_per_sec": 0.5, "http_p50_ms": 0.5, "http_p99_ms": 2}
	for k, v := range want {
		if back.Ratios[k] != v {
			t.Errorf("ratio %s = %v, want %v (all: %v)", k, back.Ratios[k], v, back.Ratios)
		}
	}
	if len(back.Ratios) != len(want) {
		t.Errorf("ratios %v, want exactly %v", back.Ratios, want)
	}
}

// TestBoundVerdicts checks the lines that say which core limited each phase: a kernel phase
// the generator limited is called out as flattering govs, with the rate it would take to
// saturate it; a saturated govs phase is balancer-bound; CPU per packet gets a ratio.
func TestBoundVerdicts(t *testing.T) {
	r := newReport(options{duration: 5e9, balancerCPU: 0, loadCPU: 1})
	r.Generator = &udpResult{Seconds: 5, OfferedPPS: 598664, LoadCPUBusy: 100, BalancerCPUBusy: 34}
	r.Kernel = &phaseResult{Name: "kernel(nft dnat)", UDP: &udpResult{FrameLen: 64, Seconds: 5,
		DeliveredPPS: 400000, BalancerCPUBusy: 40, LoadCPUBusy: 100, RPSIPIsBalancerCPU: 20000}}
	r.Govs = &phaseResult{Name: "govs", UDP: &udpResult{FrameLen: 64, Seconds: 5,
		DeliveredPPS: 200000, BalancerCPUBusy: 96, LoadCPUBusy: 100, RPSIPIsBalancerCPU: 150000, GovsCtxSwitches: 10000}}
	var tbl bytes.Buffer
	writeTable(&tbl, r)
	out := strings.Join(strings.Fields(tbl.String()), " ") // columns padded by tabwriter
	for _, want := range []string{
		"kernel phase: generator-bound (balancer core 40% busy, load core 100%); its pps ratio flatters govs (by up to 150%: the balancer core had that much time left)",
		"at 1.00 us/packet the kernel's balancer core would saturate near 1000000 pps",
		"saturating the kernel takes about 1000000 pps offered; the generator's ceiling on one load core is 598664 pps",
		"balancer CPU 34% busy with no traffic through it caution: something else kept the balancer CPU 34% busy",
		"govs phase: balancer-bound (balancer core 96% busy, 4.80 us/packet): 200000 pps is its capacity in this lab",
		"udp64 balancer cpu us/packet 1.00 4.80 0.21 (kernel/govs, lower is better)",
		// Per 1000 delivered packets: kernel 20000/2M, govs 150000/1M and 10000/1M; the kernel
		// has no govs threads.
		"udp64 rps IPIs/1k pkts (balancer cpu) 10.0 150.0",
		"udp64 govs ctx switches/1k pkts - 10.0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if got := r.Ratios["udp64_balancer_us_per_packet"]; math.Abs(got-1.0/4.8) > 1e-9 {
		t.Errorf("us/packet ratio = %v, want kernel/govs = %v", got, 1.0/4.8)
	}
	// Neither core saturated: no claim of a bound, and govs's figure understates it.
	r.Govs.UDP.BalancerCPUBusy, r.Govs.UDP.LoadCPUBusy = 60, 70
	v := strings.Join(boundVerdicts(r), "\n")
	if !strings.Contains(v, "govs phase: neither core saturated (balancer core 60% busy, load core 70%)") || !strings.Contains(v, "understates govs") {
		t.Errorf("verdicts:\n%s", v)
	}
}

func TestOptionsCheck(t *testing.T) {
	good := options{duration: 2e9, flows: 100, frameLen: 64, batch: 64, balancerCPU: 0, loadCPU: 1, phases: "gen,kernel,govs,tun,gue,fullnat,fwd-afxdp,fwd-afpacket", sink: "servers", rounds: 1, peakTrial: 2e9, cores: 1}
	if err := good.check(); err != nil {
		t.Fatalf("good options rejected: %v", err)
	}
	for _, tt := range []struct {
		name string
		mod  func(*options)
	}{
		{"same cpu", func(o *options) { o.loadCPU = 0 }},
		{"short duration", func(o *options) { o.duration = 1e6 }},
		{"unknown phase", func(o *options) { o.phases = "kernel,ipvs" }},
		{"too many flows", func(o *options) { o.flows = 70000 }},
		{"no rounds", func(o *options) { o.rounds = 0 }},
		{"unknown fwd phase", func(o *options) { o.phases = "fwd-dpdk" }},
		{"negative tx budget", func(o *options) { o.xdpTxBudget = -1 }},
		{"three cores", func(o *options) { o.cores = 3 }},
		{"negative rate", func(o *options) { o.rate = -1 }},
		{"short peak trial", func(o *options) { o.peakTrial = 1e6 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			if err := o.check(); err == nil {
				t.Error("check accepted bad options")
			}
		})
	}
}

func TestParseUtime(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift the fields.
	line := []byte("4242 (benchlab (fwd) x) S 1 4242 4242 0 -1 4194560 120 0 0 0 37 11 0 0 20 0 5 0 100 0 0\n")
	if u, err := parseUtime(line); err != nil || u != 37 {
		t.Errorf("parseUtime = %d, %v; want 37", u, err)
	}
	if _, err := parseUtime([]byte("4242 (short) S 1")); err == nil {
		t.Error("parseUtime accepted a truncated line")
	}
}

func TestPace(t *testing.T) {
	if b := paceBatch(0, 256); b != 256 {
		t.Errorf("paceBatch(full) = %d, want the whole batch", b)
	}
	if b := paceBatch(200000, 256); b != 50 {
		t.Errorf("paceBatch(200k) = %d, want 50 (a quarter millisecond)", b)
	}
	if b := paceBatch(1000, 256); b != 1 {
		t.Errorf("paceBatch(1k) = %d, want 1", b)
	}
	// 1000 frames at 100k/s are due at 10 ms: 4 ms early waits 6 ms, late waits nothing.
	if w := paceWait(100000, 1000, 4*time.Millisecond); w != 6*time.Millisecond {
		t.Errorf("paceWait early = %v, want 6ms", w)
	}
	if w := paceWait(100000, 1000, 12*time.Millisecond); w != 0 {
		t.Errorf("paceWait late = %v, want 0", w)
	}
	if w := paceWait(0, 1000, 0); w != 0 {
		t.Errorf("paceWait unpaced = %v, want 0", w)
	}
}

func TestNextRate(t *testing.T) {
	// No loss-free trial yet: 30% lower each time.
	if r, done := nextRate(0, 100, 100); done || math.Abs(r-70) > 1e-9 {
		t.Errorf("nextRate without a loss-free trial = %v, %v; want 70", r, done)
	}
	if r, done := nextRate(50, 100, 50); done || r != 75 {
		t.Errorf("nextRate(50, 100) = %v, %v; want the middle, 75", r, done)
	}
	if _, done := nextRate(98, 100, 98); !done {
		t.Error("nextRate within 3% of the bracket's top is not done")
	}
}

func TestParseNftCounter(t *testing.T) {
	listing := "table netdev benchlab {\n\tchain in {\n\t\ttype filter hook ingress device \"lb1\" priority -500; policy accept;\n\t\tip protocol ipip counter packets 1234 bytes 98720 drop\n\t}\n}\n"
	if n, err := parseNftCounter(listing); err != nil || n != 1234 {
		t.Errorf("parseNftCounter = %d, %v; want 1234", n, err)
	}
	if _, err := parseNftCounter("table netdev benchlab {}"); err == nil {
		t.Error("parseNftCounter without a counter succeeded")
	}
}

func TestExtras(t *testing.T) {
	udp := func(pps, offered, busy float64) *udpResult {
		return &udpResult{DeliveredPPS: pps, OfferedPPS: offered, Seconds: 10, FrameLen: 64, BalancerCPUBusy: busy, BalancerUsPerPacket: busy / 100 / pps * 1e6}
	}
	r := &report{
		Govs: &phaseResult{Name: "govs", UDP: udp(200000, 500000, 100),
			Peak: &peakResult{LossFreePPS: 250000, FullRatePPS: 200000, OfferedPPS: 500000, FullOfPeak: 0.8}},
		Tun:     &phaseResult{Name: "govs tun ipip", UDP: udp(190000, 500000, 100)},
		GUE:     &phaseResult{Name: "govs tun gue", UDP: udp(150000, 500000, 100)},
		FullNAT: &phaseResult{Name: "govs fullnat", UDP: udp(184000, 500000, 100)},
		Kernel:  &phaseResult{Name: "kernel(nft dnat)", UDP: udp(400000, 500000, 90)},
		Govs2:   &phaseResult{Name: "govs 2 workers", UDP: udp(300000, 500000, 100)},
	}
	var b bytes.Buffer
	writeTable(&b, r)
	out := b.String()
	for _, want := range []string{
		"loss-free peak 250000 pps", "= 0.80 of the peak (misses the goal >= 0.90)",
		"govs tun ipip: udp64 delivered 190000 pps", "0.95 of govs NAT's delivered pps (within 10%)",
		"0.75 of govs NAT's delivered pps (not within 10%)",
		"govs fullnat: udp64 delivered 184000 pps", "0.92 of govs NAT's delivered pps (within 10%)",
		"govs 2 workers: udp64 delivered 300000 pps", "1.50x its one-core rate", "share CPU",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if r.Ratios["govs_full_rate_of_loss_free_peak"] != 0.8 || r.Ratios["govs_2cores_speedup"] != 1.5 || r.Ratios["tun_ipip_of_nat_delivered_pps"] != 0.95 || r.Ratios["fullnat_of_nat_delivered_pps"] != 0.92 {
		t.Errorf("ratios = %v", r.Ratios)
	}
}

// TestGovsConfigVariants checks that the config each govs phase writes is one govs accepts, and
// that the fullnat phase's sink counts only datagrams from its local addresses.
func TestGovsConfigVariants(t *testing.T) {
	topo := &lab.Topology{VIP4: netip.MustParseAddr("198.18.0.100"), BalancerL1Addr4: netip.MustParseAddr("198.19.0.1"),
		ServerAddrs4: []netip.Addr{netip.MustParseAddr("198.19.0.11"), netip.MustParseAddr("198.19.0.12")}}
	for _, v := range []govsVariant{govsNAT, govsTun, govsGUE, govsFullNAT} {
		src := govsConfig(topo, "/run/govs-test.sock", options{}, v)
		if _, err := config.Parse([]byte(src), v.name+".toml", config.LoadOptions{}); err != nil {
			t.Errorf("%s: govs rejects its config: %v\n%s", v.name, err, src)
		}
	}
	if src := govsConfig(topo, "/run/govs-test.sock", options{}, govsFullNAT); !strings.Contains(src, `local_addresses = ["198.19.0.50", "198.19.0.51"]`) {
		t.Errorf("fullnat config lacks its local addresses:\n%s", src)
	}
	if s := sinkFor(topo, govsFullNAT); s.rule != "ip saddr { 198.19.0.50, 198.19.0.51 } udp dport 9000" || !s.echo {
		t.Errorf("fullnat sink = %+v", s)
	}
}
