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
	Name       string      `json:"name"`
	Error      string      `json:"error,omitempty"` // setup failure; measurements carry their own
	UDP        *udpResult  `json:"udp,omitempty"`
	HTTP       *httpResult `json:"http,omitempty"`
	HTTPSingle *httpResult `json:"http_single,omitempty"`
	Govs       *govsStatus `json:"govs_stats,omitempty"` // govs's counters after the measurements
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

func newReport(o options) *report {
	return &report{
		Started:  time.Now().UTC(),
		Duration: o.duration.String(),
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
	}, false, true, "%.0f"},
	{"udp64_offered_pps", "udp%d offered pps", func(p *phaseResult) (float64, bool) {
		if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
			return 0, false
		}
		return p.UDP.OfferedPPS, true
	}, false, false, "%.0f"},
	{"udp64_generator_pps", "udp%d generator pps", func(p *phaseResult) (float64, bool) {
		if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
			return 0, false
		}
		return p.UDP.GeneratorPPS, true
	}, false, false, "%.0f"},
	{"udp64_balancer_cpu_busy", "udp%d balancer cpu busy %%", func(p *phaseResult) (float64, bool) {
		if p == nil || p.UDP == nil || p.UDP.Seconds == 0 {
			return 0, false
		}
		return p.UDP.BalancerCPUBusy, true
	}, false, false, "%.0f"},
	{"http_req_per_sec", "http req/s (t2 c50)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTP, p) {
			return 0, false
		}
		return p.HTTP.ReqPerSec, true
	}, false, true, "%.0f"},
	{"http_p50_ms", "http p50 ms (t2 c50)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTP, p) {
			return 0, false
		}
		return p.HTTP.P50Ms, true
	}, true, true, "%.3f"},
	{"http_p99_ms", "http p99 ms (t2 c50)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTP, p) {
			return 0, false
		}
		return p.HTTP.P99Ms, true
	}, true, true, "%.3f"},
	{"http1_req_per_sec", "http req/s (t1 c1)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTPSingle, p) {
			return 0, false
		}
		return p.HTTPSingle.ReqPerSec, true
	}, false, true, "%.0f"},
	{"http1_p50_ms", "http p50 ms (t1 c1)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTPSingle, p) {
			return 0, false
		}
		return p.HTTPSingle.P50Ms, true
	}, true, true, "%.3f"},
	{"http1_p99_ms", "http p99 ms (t1 c1)", func(p *phaseResult) (float64, bool) {
		if p == nil || !httpOK(p.HTTPSingle, p) {
			return 0, false
		}
		return p.HTTPSingle.P99Ms, true
	}, true, true, "%.3f"},
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
	fmt.Fprintln(tw, "metric\tkernel(nft dnat)\tgovs\tratio\t")
	for _, m := range metrics {
		label := m.label
		if strings.Contains(label, "%d") {
			label = fmt.Sprintf(label, r.frameLen())
		}
		cell := func(p *phaseResult) string {
			if p == nil {
				return "not run"
			}
			v, ok := m.get(p)
			if !ok {
				if strings.HasPrefix(m.key, "http1_") && p.HTTPSingle == nil && p.Error == "" {
					return "not run"
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
			fmt.Fprintf(w, "\ngenerator ceiling (flood dropped at the switch): %.0f pps offered, load CPU %.0f%% busy\n", g.OfferedPPS, g.LoadCPUBusy)
		}
	}
	fmt.Fprintf(w, "\nratio > 1 means govs did better. %s, %d CPUs: balancer on CPU %d, load on CPU %d; before the run CPU %d was %.0f%% and CPU %d %.0f%% busy with other work.\n",
		r.Env.Kernel, r.Env.CPUs, r.Env.BalancerCPU, r.Env.LoadCPU, r.Env.BalancerCPU, r.Env.IdleBusyBalancerCPU, r.Env.LoadCPU, r.Env.IdleBusyLoadCPU)
	for _, p := range []*phaseResult{r.Kernel, r.Govs} {
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
		if p.UDP != nil && p.UDP.LimitedBy == "load-cpu" {
			fmt.Fprintf(w, "%s udp: the load CPU (%.0f%% busy), not the balancer's (%.0f%%), limited the flood: delivered pps is a lower bound (try -sink switch)\n",
				p.Name, p.UDP.LoadCPUBusy, p.UDP.BalancerCPUBusy)
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
