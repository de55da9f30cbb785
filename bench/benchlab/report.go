package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the whole run; -json prints it as is.
type report struct {
	Started  time.Time   `json:"started"`
	Duration string      `json:"duration"`
	Env      environment `json:"env"`
	// Generator is the flood dropped as it enters the switch: the generator's ceiling.
	Generator *udpResult   `json:"generator,omitempty"`
	Kernel    *phaseResult `json:"kernel,omitempty"`
	Govs      *phaseResult `json:"govs,omitempty"`
	// GovsIO is the govs phases' [dataplane] io (and xdp_mode): "afpacket" unless -io said otherwise.
	GovsIO string `json:"govs_io"`
	// Forwarders are the fwd-* phases in the order they ran (bench/README.md, lever 1).
	Forwarders []*phaseResult `json:"forwarders,omitempty"`
	// Tun and GUE are govs with method tun (IPIP, GUE), UDP only, compared with Govs (NAT).
	Tun *phaseResult `json:"tun,omitempty"`
	GUE *phaseResult `json:"gue,omitempty"`
	// FullNAT is govs with method fullnat (source rewritten to a local address), UDP only, compared with Govs (NAT).
	FullNAT *phaseResult `json:"fullnat,omitempty"`
	// KernelDR and GovsDR are direct routing, UDP only: the kernel's nftables netdev fwd and govs's method dr.
	KernelDR *phaseResult `json:"kernel_dr,omitempty"`
	GovsDR   *phaseResult `json:"govs_dr,omitempty"`
	// Kernel2 and Govs2 are the UDP flood with the balancer on two cores (-balancer-cores 2).
	Kernel2 *phaseResult `json:"kernel_2cores,omitempty"`
	Govs2   *phaseResult `json:"govs_2cores,omitempty"`
	// Ratios are govs/kernel for throughput and kernel/govs for latency, so > 1 always means
	// govs did better. A ratio is missing when either side failed.
	Ratios map[string]float64 `json:"ratios"`
}

type environment struct {
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	BalancerCPU int    `json:"balancer_cpu"`
	LoadCPU     int    `json:"load_cpu"`
	// Busy percentages of the two CPUs in one second before the run: other work on the machine.
	IdleBusyBalancerCPU float64 `json:"idle_busy_balancer_cpu"`
	IdleBusyLoadCPU     float64 `json:"idle_busy_load_cpu"`
}

type phaseResult struct {
	Name       string       `json:"name"`
	Error      string       `json:"error,omitempty"` // setup failure; measurements carry their own
	UDP        *udpResult   `json:"udp,omitempty"`
	HTTP       *httpResult  `json:"http,omitempty"`
	HTTPSingle *httpResult  `json:"http_single,omitempty"`
	Govs       *govsStatus  `json:"govs_stats,omitempty"` // govs's counters after the measurements
	Peak       *peakResult  `json:"peak,omitempty"`       // the loss-free peak search (govs NAT)
	Forward    *fwdCounters `json:"forwarder,omitempty"`  // a fwd-* phase's forwarder counters
	// BackgroundBusy is a fwd-* phase's balancer core busy share in the second before it ran.
	BackgroundBusy float64 `json:"background_busy,omitempty"`
	// Perf is a fwd-* phase's perf split of the balancer core (-perf-dir).
	Perf *perfOwn `json:"perf,omitempty"`
}

func (p *phaseResult) addError(msg string) {
	if p.Error != "" {
		p.Error += "; "
	}
	p.Error += msg
}

type udpResult struct {
	Error        string   `json:"error,omitempty"`
	VIPMAC       string   `json:"vip_mac,omitempty"`
	Flows        int      `json:"flows"`
	FrameLen     int      `json:"frame_len"`
	Seconds      float64  `json:"seconds"`
	GeneratorPPS float64  `json:"generator_pps"` // frames sendmmsg accepted
	OfferedPPS   float64  `json:"offered_pps"`   // frames the client's veth passed on
	DeliveredPPS float64  `json:"delivered_pps"` // frames counted at CountedAt
	CountedAt    string   `json:"counted_at"`    // where delivered frames were counted (and dropped)
	PerServer    []uint64 `json:"delivered_per_server"`
	SendRefusals uint64   `json:"send_refusals"` // sendmmsg calls that got ENOBUFS/EAGAIN
	// LimitedBy is "load-cpu" when the load CPU was saturated and the balancer's was not (the
	// delivered rate is then only a lower bound of the balancer's capacity), "balancer-cpu" when
	// the balancer's CPU was saturated, "" when neither is clear.
	LimitedBy string `json:"limited_by,omitempty"`
	// CPU busy percentages over the window, and frames the per-CPU receive backlog dropped.
	BalancerCPUBusy         float64 `json:"balancer_cpu_busy"`
	LoadCPUBusy             float64 `json:"load_cpu_busy"`
	BacklogDropsBalancerCPU uint64  `json:"backlog_drops_balancer_cpu"`
	BacklogDropsLoadCPU     uint64  `json:"backlog_drops_load_cpu"`
	// BalancerUsPerPacket is the balancer core's busy time per delivered packet (0: unknown):
	// the figure that compares both sides even when they ran at different rates.
	BalancerUsPerPacket float64 `json:"balancer_us_per_packet"`
	// BalancerKernelBusy is the balancer core's kernel-mode share (kernelPercent), and
	// BalancerOwnUsPerPacket that plus the balancer process's user time, per delivered packet:
	// the estimate that holds when other work kept the core busy (bench/README.md).
	BalancerKernelBusy     float64 `json:"balancer_kernel_busy"`
	BalancerOwnUsPerPacket float64 `json:"balancer_own_us_per_packet"`
	// RPSIPIsBalancerCPU counts the interrupts that started the balancer core's receive backlog
	// (received_rps): the lab steers each veth's receive work there with RPS, and each interrupt
	// costs a VM exit.
	RPSIPIsBalancerCPU uint64 `json:"rps_ipis_balancer_cpu"`
	// RPSIPIsLoadCPU counts the same interrupts on the load CPU: mostly the balancer's transmit
	// starting the switch's backlog (lb0, lb1 are steered there), one per frame at worst.
	RPSIPIsLoadCPU uint64 `json:"rps_ipis_load_cpu"`
	// GovsCtxSwitches is the context switches of all of govs's threads in the window (0 in the
	// kernel phase): sleeps in poll or futex and preemptions.
	GovsCtxSwitches uint64 `json:"govs_context_switches,omitempty"`
}

// perThousand returns n per 1000 delivered packets over the window, false when unknown.
func (u *udpResult) perThousand(n uint64) (float64, bool) {
	if u.Seconds <= 0 || u.DeliveredPPS <= 0 {
		return 0, false
	}
	return float64(n) / (u.DeliveredPPS * u.Seconds) * 1000, true
}

type httpResult struct {
	Error           string  `json:"error,omitempty"`
	Threads         int     `json:"threads"`
	Conns           int     `json:"connections"`
	Requests        uint64  `json:"requests"`
	ReqPerSec       float64 `json:"req_per_sec"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	SocketErrors    uint64  `json:"socket_errors"`
	Non2xx          uint64  `json:"non_2xx"`
	BalancerCPUBusy float64 `json:"balancer_cpu_busy"`
	LoadCPUBusy     float64 `json:"load_cpu_busy"`
}

// govsIO names the govs phases' packet I/O as the report shows it.
func govsIO(o options) string {
	defer_ := ""
	if o.xdpIRQDefer != "" && o.xdpIRQDefer != "off" {
		defer_ = ", irq defer " + o.xdpIRQDefer
	}
	switch {
	case o.io == "afxdp" && o.xdpMode == "generic":
		return "afxdp generic" + defer_
	case o.io == "afxdp" && o.xdpNAPI == "sender":
		return "afxdp driver, napi sender" + defer_
	case o.io == "afxdp":
		return "afxdp driver, napi thread" + defer_
	}
	return "afpacket"
}

func newReport(o options) *report {
	return &report{
		Started:  time.Now().UTC(),
		Duration: o.duration.String(),
		GovsIO:   govsIO(o),
		Env: environment{
			Kernel: kernelRelease(), CPUs: runtime.NumCPU(), BalancerCPU: o.balancerCPU, LoadCPU: o.loadCPU,
			IdleBusyBalancerCPU: -1, IdleBusyLoadCPU: -1,
		},
	}
}

// metric is one row of the table: how to read it from a phase, and which way is better.
type metric struct {
	key, label    string
	get           func(*phaseResult) (float64, bool) // false: not measured or failed
	lowerIsBetter bool
	ratio         bool // rows without a ratio are context (offered load, CPU)
	format        string
	govsOnly      bool // the kernel phase has no such figure: its cell says "-"
}

// udpMeasured returns the phase's UDP result when its window ran, even if nothing came out.
func udpMeasured(p *phaseResult) (*udpResult, bool) {
	if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
		return nil, false
	}
	return p.UDP, true
}

func udpOK(p *phaseResult) (*udpResult, bool) {
	if p == nil || p.Error != "" || p.UDP == nil || p.UDP.Error != "" {
		return nil, false
	}
	return p.UDP, true
}

func httpOK(h *httpResult, p *phaseResult) bool {
	return p != nil && p.Error == "" && h != nil && h.Error == ""
}

var metrics = []metric{
	{"udp64_delivered_pps", "udp%d delivered pps", func(p *phaseResult) (float64, bool) {
		u, ok := udpOK(p)
		if !ok {
			return 0, false
		}
		return u.DeliveredPPS, true
	}, false, true, "%.0f", false},
	{"udp64_offered_pps", "udp%d offered pps", func(p *phaseResult) (float64, bool) {
		if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
			return 0, false
		}
		return p.UDP.OfferedPPS, true
	}, false, false, "%.0f", false},
	{"udp64_generator_pps", "udp%d generator pps", func(p *phaseResult) (float64, bool) {
		if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
			return 0, false
		}
		return p.UDP.GeneratorPPS, true
	}, false, false, "%.0f", false},
	{"udp64_balancer_cpu_busy", "udp%d balancer cpu busy %%", func(p *phaseResult) (float64, bool) {
		if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
			return 0, false
		}
		return p.UDP.BalancerCPUBusy, true
	}, false, false, "%.0f", false},
	{"udp64_balancer_us_per_packet", "udp%d balancer cpu us/packet", func(p *phaseResult) (float64, bool) {
		u, ok := udpOK(p)
		if !ok {
			return 0, false
		}
		return usPerPacket(u.BalancerCPUBusy, u.DeliveredPPS)
	}, true, true, "%.2f", false},
	{"udp64_load_cpu_busy", "udp%d load cpu busy %%", func(p *phaseResult) (float64, bool) {
		u, ok := udpMeasured(p)
		if !ok {
			return 0, false
		}
		return u.LoadCPUBusy, true
	}, false, false, "%.0f", false},
	{"udp64_rps_ipis_per_1k", "udp%d rps IPIs/1k pkts (balancer cpu)", func(p *phaseResult) (float64, bool) {
		u, ok := udpOK(p)
		if !ok {
			return 0, false
		}
		return u.perThousand(u.RPSIPIsBalancerCPU)
	}, true, false, "%.1f", false},
	{"udp64_rps_ipis_load_per_1k", "udp%d rps IPIs/1k pkts (load cpu)", func(p *phaseResult) (float64, bool) {
		u, ok := udpOK(p)
		if !ok {
			return 0, false
		}
		return u.perThousand(u.RPSIPIsLoadCPU)
	}, true, false, "%.1f", false},
	{"udp64_govs_ctx_switches_per_1k", "udp%d govs ctx switches/1k pkts", func(p *phaseResult) (float64, bool) {
		u, ok := udpOK(p)
		if !ok || u.GovsCtxSwitches == 0 {
			return 0, false
		}
		return u.perThousand(u.GovsCtxSwitches)
	}, true, false, "%.1f", true},
	{"http_req_per_sec", "http req/s (t2 c50)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTP, p) {
			return 0, false
		}
		return p.HTTP.ReqPerSec, true
	}, false, true, "%.0f", false},
	{"http_p50_ms", "http p50 ms (t2 c50)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTP, p) {
			return 0, false
		}
		return p.HTTP.P50Ms, true
	}, true, true, "%.3f", false},
	{"http_p99_ms", "http p99 ms (t2 c50)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTP, p) {
			return 0, false
		}
		return p.HTTP.P99Ms, true
	}, true, true, "%.3f", false},
	{"http1_req_per_sec", "http req/s (t1 c1)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTPSingle, p) {
			return 0, false
		}
		return p.HTTPSingle.ReqPerSec, true
	}, false, true, "%.0f", false},
	{"http1_p50_ms", "http p50 ms (t1 c1)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTPSingle, p) {
			return 0, false
		}
		return p.HTTPSingle.P50Ms, true
	}, true, true, "%.3f", false},
	{"http1_p99_ms", "http p99 ms (t1 c1)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTPSingle, p) {
			return 0, false
		}
		return p.HTTPSingle.P99Ms, true
	}, true, true, "%.3f", false},
}

// ratio returns govs against kernel so that > 1 means govs did better.
func ratio(kernel, govs float64, lowerIsBetter bool) (float64, bool) {
	num, den := govs, kernel
	if lowerIsBetter {
		num, den = kernel, govs
	}
	if den <= 0 || math.IsNaN(num) || math.IsNaN(den) {
		return 0, false
	}
	return num / den, true
}

// computeRatios fills r.Ratios from the phases.
func (r *report) computeRatios() {
	r.Ratios = map[string]float64{}
	for _, m := range metrics {
		if !m.ratio {
			continue
		}
		k, ok1 := m.get(r.Kernel)
		g, ok2 := m.get(r.Govs)
		if !ok1 || !ok2 {
			continue
		}
		if v, ok := ratio(k, g, m.lowerIsBetter); ok {
			r.Ratios[m.key] = v
		}
	}
	if p := r.govsPeak(); p != nil {
		r.Ratios["govs_full_rate_of_loss_free_peak"] = p.FullOfPeak
	}
	for key, tun := range map[string]*phaseResult{"tun_ipip": r.Tun, "tun_gue": r.GUE, "fullnat": r.FullNAT} {
		if v, ok := speedUp(r.Govs, tun); ok {
			r.Ratios[key+"_of_nat_delivered_pps"] = v
		}
	}
	if v, ok := speedUp(r.KernelDR, r.GovsDR); ok {
		r.Ratios["dr_udp64_delivered_pps"] = v
	}
	if k, ok := udpOK(r.KernelDR); ok {
		if g, ok := udpOK(r.GovsDR); ok && k.BalancerUsPerPacket > 0 && g.BalancerUsPerPacket > 0 {
			r.Ratios["dr_udp64_balancer_us_per_packet"] = k.BalancerUsPerPacket / g.BalancerUsPerPacket
		}
	}
	if v, ok := speedUp(r.Kernel, r.Kernel2); ok {
		r.Ratios["kernel_2cores_speedup"] = v
	}
	if v, ok := speedUp(r.Govs, r.Govs2); ok {
		r.Ratios["govs_2cores_speedup"] = v
	}
}

// govsPeak returns the govs phase's finished loss-free peak search, nil without one.
func (r *report) govsPeak() *peakResult {
	if r.Govs == nil || r.Govs.Peak == nil || r.Govs.Peak.Error != "" || r.Govs.Peak.LossFreePPS <= 0 {
		return nil
	}
	return r.Govs.Peak
}

// peakGoal is issue 15's "no collapse under overload": at the generator's full rate govs delivers
// at least this share of its own loss-free peak.
const peakGoal = 0.9

// tunGoal is how far below govs's NAT rate its tun (issue 15) and fullnat (issue 16) rates may be
// in the same run.
const tunGoal = 0.9

// writeExtras prints the loss-free peak, the tun and fullnat phases against NAT and the two-core speed-ups.
func writeExtras(w io.Writer, r *report) {
	if r.Govs != nil && r.Govs.Peak != nil {
		p := r.Govs.Peak
		fmt.Fprintln(w)
		if pk := r.govsPeak(); pk != nil {
			verdict := "meets"
			if pk.FullOfPeak < peakGoal {
				verdict = "misses"
			}
			atLeast := ""
			if pk.GeneratorLimited {
				atLeast = " or more (the generator could offer no more)"
			}
			fmt.Fprintf(w, "govs under overload: loss-free peak %.0f pps%s; at the generator's full rate (%.0f pps offered) it delivered %.0f pps = %.2f of the peak (%s the goal >= %.2f)\n",
				pk.LossFreePPS, atLeast, pk.OfferedPPS, pk.FullRatePPS, pk.FullOfPeak, verdict, peakGoal)
		} else {
			fmt.Fprintf(w, "govs loss-free peak: failed: %s\n", p.Error)
		}
		for _, t := range p.Trials {
			fmt.Fprintf(w, "  trial %.0f pps asked: %.0f offered, %.0f delivered, %.2f%% lost, balancer core %.0f%% busy\n",
				t.RatePPS, t.OfferedPPS, t.DeliveredPPS, t.LossPercent, t.BalancerCPUBusy)
		}
	}
	for _, tun := range []*phaseResult{r.Tun, r.GUE, r.FullNAT} {
		if tun == nil {
			continue
		}
		u, ok := udpOK(tun)
		if !ok {
			fmt.Fprintf(w, "\n%s: failed: %s%s\n", tun.Name, tun.Error, errOf(tun.UDP))
			continue
		}
		fmt.Fprintf(w, "\n%s: udp%d delivered %.0f pps (%.0f offered, paced at the NAT phase's offered rate), balancer core %.0f%% busy, %.2f us/packet", tun.Name, u.FrameLen, u.DeliveredPPS, u.OfferedPPS, u.BalancerCPUBusy, u.BalancerUsPerPacket)
		if v, ok := speedUp(r.Govs, tun); ok {
			verdict := "within"
			if v < tunGoal {
				verdict = "not within"
			}
			fmt.Fprintf(w, ": %.2f of govs NAT's delivered pps (%s 10%%)", v, verdict)
			if g, ok := udpOK(r.Govs); ok && g.BalancerUsPerPacket > 0 && u.BalancerUsPerPacket > 0 {
				fmt.Fprintf(w, ", CPU per packet %.2f of NAT's", u.BalancerUsPerPacket/g.BalancerUsPerPacket)
			}
		}
		fmt.Fprintln(w)
	}
	for _, p := range []*phaseResult{r.KernelDR, r.GovsDR} {
		if p == nil {
			continue
		}
		u, ok := udpOK(p)
		if !ok {
			fmt.Fprintf(w, "\n%s: failed: %s%s\n", p.Name, p.Error, errOf(p.UDP))
			continue
		}
		fmt.Fprintf(w, "\n%s: udp%d delivered %.0f pps (%.0f offered), balancer core %.0f%% busy, %.2f us/packet\n", p.Name, u.FrameLen, u.DeliveredPPS, u.OfferedPPS, u.BalancerCPUBusy, u.BalancerUsPerPacket)
	}
	if v, ok := r.Ratios["dr_udp64_delivered_pps"]; ok {
		fmt.Fprintf(w, "dr: govs delivered %.2fx the kernel's pps", v)
		if c, ok := r.Ratios["dr_udp64_balancer_us_per_packet"]; ok {
			fmt.Fprintf(w, ", CPU per packet %.2f (kernel/govs, lower is better)", c)
		}
		fmt.Fprintln(w)
	}
	for _, sc := range []struct {
		one, two *phaseResult
	}{{r.Kernel, r.Kernel2}, {r.Govs, r.Govs2}} {
		if sc.two == nil {
			continue
		}
		u, ok := udpOK(sc.two)
		if !ok {
			fmt.Fprintf(w, "\n%s: failed: %s%s\n", sc.two.Name, sc.two.Error, errOf(sc.two.UDP))
			continue
		}
		fmt.Fprintf(w, "\n%s: udp%d delivered %.0f pps (%.0f offered), CPU %d %.0f%% and CPU %d %.0f%% busy", sc.two.Name, u.FrameLen, u.DeliveredPPS, u.OfferedPPS,
			r.Env.BalancerCPU, u.BalancerCPUBusy, r.Env.LoadCPU, u.LoadCPUBusy)
		if v, ok := speedUp(sc.one, sc.two); ok {
			fmt.Fprintf(w, ": %.2fx its one-core rate", v)
		}
		fmt.Fprintln(w)
	}
	if r.Kernel2 != nil || r.Govs2 != nil {
		fmt.Fprintf(w, "two balancer cores: CPUs %d and %d; the generator (pinned to CPU %d), the switch and the sink share CPU %d with the balancer, so these speed-ups understate what a second core of its own would give\n",
			r.Env.BalancerCPU, r.Env.LoadCPU, r.Env.LoadCPU, r.Env.LoadCPU)
	}
}

func (r *report) frameLen() int {
	for _, p := range []*phaseResult{r.Kernel, r.Govs} {
		if p != nil && p.UDP != nil && p.UDP.FrameLen != 0 {
			return p.UDP.FrameLen
		}
	}
	return 64
}

// writeTable prints the human report: one row per metric, then every error in full.
func writeTable(w io.Writer, r *report) {
	r.computeRatios()
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "metric\tkernel(nft dnat)\tgovs (io %s)\tratio\t\n", r.GovsIO)
	for _, m := range metrics {
		label := m.label
		if strings.Contains(label, "%d") {
			label = fmt.Sprintf(label, r.frameLen())
		}
		cell := func(p *phaseResult) string {
			if p == nil {
				return "not run"
			}
			if m.govsOnly && p == r.Kernel {
				return "-"
			}
			v, ok := m.get(p)
			if !ok {
				if p.Error == "" && (strings.HasPrefix(m.key, "http1_") && p.HTTPSingle == nil ||
					strings.HasPrefix(m.key, "http_") && p.HTTP == nil) {
					return "not run" // -http=false
				}
				return "failed"
			}
			return fmt.Sprintf(m.format, v)
		}
		note := ""
		if rv, ok := r.Ratios[m.key]; ok {
			note = strconv.FormatFloat(rv, 'f', 2, 64)
			if m.lowerIsBetter {
				note += " (kernel/govs, lower is better)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", label, cell(r.Kernel), cell(r.Govs), note)
	}
	tw.Flush()
	if g := r.Generator; g != nil {
		if g.Error != "" {
			fmt.Fprintf(w, "\ngenerator ceiling: failed: %s\n", g.Error)
		} else {
			fmt.Fprintf(w, "\ngenerator ceiling (flood dropped at the switch): %.0f pps offered, load CPU %.0f%% busy; balancer CPU %.0f%% busy with no traffic through it\n",
				g.OfferedPPS, g.LoadCPUBusy, g.BalancerCPUBusy)
			if g.BalancerCPUBusy >= backgroundBusy {
				fmt.Fprintf(w, "caution: something else kept the balancer CPU %.0f%% busy while the generator ran (netns teardown of an earlier run, a build?): CPU per packet may be inflated by as much; rerun\n", g.BalancerCPUBusy)
			}
		}
	}
	writeExtras(w, r)
	writeFwdTable(w, r)
	if v := boundVerdicts(r); len(v) > 0 {
		fmt.Fprintln(w)
		for _, line := range v {
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintf(w, "\nratio > 1 means govs did better. %s, %d CPUs: balancer on CPU %d, load on CPU %d; before the run CPU %d was %.0f%% and CPU %d %.0f%% busy with other work.\n",
		r.Env.Kernel, r.Env.CPUs, r.Env.BalancerCPU, r.Env.LoadCPU, r.Env.BalancerCPU, r.Env.IdleBusyBalancerCPU, r.Env.LoadCPU, r.Env.IdleBusyLoadCPU)
	for _, p := range []*phaseResult{r.Kernel, r.Govs, r.Tun, r.GUE, r.FullNAT, r.Kernel2, r.Govs2} {
		if p == nil {
			continue
		}
		for _, e := range []struct{ what, msg string }{
			{"setup", p.Error},
			{"udp", errOf(p.UDP)},
			{"http t2 c50", httpErr(p.HTTP)},
			{"http t1 c1", httpErr(p.HTTPSingle)},
		} {
			if e.msg != "" {
				fmt.Fprintf(w, "%s %s: %s\n", p.Name, e.what, e.msg)
			}
		}
		if p.Govs != nil {
			fmt.Fprintf(w, "%s counters: ring packets %d, ring drops %d, drops total %d", p.Name, p.Govs.Rings.Packets, p.Govs.Rings.Drops, p.Govs.DropsTotal)
			reasons := make([]string, 0, len(p.Govs.Drops))
			for k, v := range p.Govs.Drops {
				if v != 0 {
					reasons = append(reasons, fmt.Sprintf("%s=%d", k, v))
				}
			}
			sort.Strings(reasons)
			fmt.Fprintf(w, " %s\n", strings.Join(reasons, " "))
		}
	}
}

// backgroundBusy is the balancer CPU's busy percentage during the generator's calibration (no
// traffic through the balancer) from which the report warns that other work shared the core.
const backgroundBusy = 10

// saturatedBusy is the balancer core's busy percentage from which a phase counts as limited by
// the balancer rather than by the generator.
const saturatedBusy = 90

// boundVerdicts says, per phase, what limited the UDP flood, so a pps ratio between a phase the
// generator limited and one the balancer limited is not read as a capacity ratio, and what it
// would take to saturate the kernel's balancer core.
func boundVerdicts(r *report) []string {
	var out []string
	for _, ph := range []struct {
		name, flatters string
		p              *phaseResult
	}{
		{"kernel", "flatters govs", r.Kernel},
		{"govs", "understates govs", r.Govs},
	} {
		u, ok := udpOK(ph.p)
		if !ok {
			continue
		}
		us, okUs := usPerPacket(u.BalancerCPUBusy, u.DeliveredPPS)
		switch {
		case u.BalancerCPUBusy >= saturatedBusy:
			out = append(out, fmt.Sprintf("%s phase: balancer-bound (balancer core %.0f%% busy, %.2f us/packet): %.0f pps is its capacity in this lab",
				ph.name, u.BalancerCPUBusy, us, u.DeliveredPPS))
			continue
		case u.LoadCPUBusy >= 95:
			bound := ""
			if u.BalancerCPUBusy > 0 {
				// The balancer core had 100-busy percent left: at most that much more throughput.
				bound = fmt.Sprintf(" (by up to %.0f%%: the balancer core had that much time left)", 100*(100/u.BalancerCPUBusy-1))
			}
			out = append(out, fmt.Sprintf("%s phase: generator-bound (balancer core %.0f%% busy, load core %.0f%%); its pps ratio %s%s",
				ph.name, u.BalancerCPUBusy, u.LoadCPUBusy, ph.flatters, bound))
		default:
			out = append(out, fmt.Sprintf("%s phase: neither core saturated (balancer core %.0f%% busy, load core %.0f%%): frames were lost on the way (see the drop counters); its pps ratio %s",
				ph.name, u.BalancerCPUBusy, u.LoadCPUBusy, ph.flatters))
		}
		if okUs {
			out = append(out, fmt.Sprintf("  at %.2f us/packet the %s's balancer core would saturate near %.0f pps or more (linear; the cost per packet falls as batches grow)",
				us, ph.name, 1e6/us))
			if ph.p == r.Kernel {
				out = append(out, saturationNeed(r, us))
			}
		}
	}
	return out
}

// saturationNeed says what offered rate would saturate the kernel's balancer core at us per
// packet, and whether the generator can offer it.
func saturationNeed(r *report, us float64) string {
	need := 1e6 / us
	gen := "the generator's ceiling was not measured (phase gen)"
	if g := r.Generator; g != nil && g.Error == "" && g.OfferedPPS > 0 {
		gen = fmt.Sprintf("the generator's ceiling on one load core is %.0f pps with nothing else to do (flood dropped at the switch)", g.OfferedPPS)
	}
	return fmt.Sprintf("  saturating the kernel takes about %.0f pps offered; %s: it would take a generator that does not share the load core with the switch and the servers (-sink switch, the default, spares it the servers), a second load core, or an in-kernel generator (pktgen). Compare the us/packet row, not the pps ratio.", need, gen)
}

func errOf(u *udpResult) string {
	if u == nil {
		return ""
	}
	return u.Error
}

func httpErr(h *httpResult) string {
	if h == nil {
		return ""
	}
	return h.Error
}

// writeJSON prints the report for machines.
func writeJSON(w io.Writer, r *report) error {
	r.computeRatios()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("failed to write the JSON report: %w", err)
	}
	return nil
}
