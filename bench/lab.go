package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// LabReport is the part of bench/benchlab's -json report (`make bench-lab`: govs against the
// kernel's nftables DNAT on one namespace topology, in one run) that `make bench` folds into
// its table. Field names follow benchlab's JSON.
type LabReport struct {
	Duration string `json:"duration"`
	Env      struct {
		Kernel              string  `json:"kernel"`
		CPUs                int     `json:"cpus"`
		BalancerCPU         int     `json:"balancer_cpu"`
		LoadCPU             int     `json:"load_cpu"`
		IdleBusyBalancerCPU float64 `json:"idle_busy_balancer_cpu"`
		IdleBusyLoadCPU     float64 `json:"idle_busy_load_cpu"`
	} `json:"env"`
	Generator *LabUDP   `json:"generator"`
	Kernel    *LabPhase `json:"kernel"`
	Govs      *LabPhase `json:"govs"`
}

// LabPhase is one balancer's measurements.
type LabPhase struct {
	Name       string   `json:"name"`
	Error      string   `json:"error"`
	UDP        *LabUDP  `json:"udp"`
	HTTP       *LabHTTP `json:"http"`
	HTTPSingle *LabHTTP `json:"http_single"`
}

// LabUDP is a UDP flood's figures.
type LabUDP struct {
	Error           string  `json:"error"`
	FrameLen        int     `json:"frame_len"`
	OfferedPPS      float64 `json:"offered_pps"`
	DeliveredPPS    float64 `json:"delivered_pps"`
	LimitedBy       string  `json:"limited_by"`
	BalancerCPUBusy float64 `json:"balancer_cpu_busy"`
	LoadCPUBusy     float64 `json:"load_cpu_busy"`
}

// LabHTTP is one wrk run's figures.
type LabHTTP struct {
	Error     string  `json:"error"`
	Threads   int     `json:"threads"`
	Conns     int     `json:"connections"`
	ReqPerSec float64 `json:"req_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// ParseLabReport decodes benchlab's -json output.
func ParseLabReport(b []byte) (*LabReport, error) {
	var r LabReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("failed to read the live lab's JSON report (is bench/benchlab's output format changed?): %w", err)
	}
	if r.Kernel == nil && r.Govs == nil {
		return nil, fmt.Errorf("the live lab's report has neither a kernel nor a govs phase")
	}
	return &r, nil
}

// labRow is one line of the live table: how to read a figure from a phase.
type labRow struct {
	label         string
	get           func(*LabPhase) (float64, string) // value, or "" and why there is none
	format        string
	ratio         bool // context rows (offered load, CPU) have no ratio
	lowerIsBetter bool
}

func labUDP(p *LabPhase) (*LabUDP, string) {
	switch {
	case p == nil:
		return nil, "not run"
	case p.Error != "":
		return nil, "failed"
	case p.UDP == nil:
		return nil, "not run"
	case p.UDP.Error != "":
		return nil, "failed"
	}
	return p.UDP, ""
}

func labHTTP(p *LabPhase, single bool) (*LabHTTP, string) {
	if p == nil {
		return nil, "not run"
	}
	if p.Error != "" {
		return nil, "failed"
	}
	h := p.HTTP
	if single {
		h = p.HTTPSingle
	}
	if h == nil {
		return nil, "not run"
	}
	if h.Error != "" {
		return nil, "failed"
	}
	return h, ""
}

func udpRow(label, format string, ratio bool, f func(*LabUDP) float64) labRow {
	return labRow{label: label, format: format, ratio: ratio, get: func(p *LabPhase) (float64, string) {
		u, why := labUDP(p)
		if u == nil {
			return 0, why
		}
		return f(u), ""
	}}
}

func httpRow(label, format string, single, lower bool, f func(*LabHTTP) float64) labRow {
	return labRow{label: label, format: format, ratio: true, lowerIsBetter: lower, get: func(p *LabPhase) (float64, string) {
		h, why := labHTTP(p, single)
		if h == nil {
			return 0, why
		}
		return f(h), ""
	}}
}

var labRows = []labRow{
	udpRow("udp delivered Mpps", "%.3f", true, func(u *LabUDP) float64 { return u.DeliveredPPS / 1e6 }),
	udpRow("udp offered Mpps", "%.3f", false, func(u *LabUDP) float64 { return u.OfferedPPS / 1e6 }),
	udpRow("udp balancer CPU busy %", "%.0f", false, func(u *LabUDP) float64 { return u.BalancerCPUBusy }),
	{label: "udp balancer CPU us/packet", format: "%.2f", ratio: true, lowerIsBetter: true, get: func(p *LabPhase) (float64, string) {
		u, why := labUDP(p)
		if u == nil {
			return 0, why
		}
		if u.BalancerCPUBusy < 0 || u.DeliveredPPS <= 0 {
			return 0, "unknown"
		}
		return u.BalancerCPUBusy / 100 / u.DeliveredPPS * 1e6, ""
	}},
	httpRow("http req/s (t2 c50)", "%.0f", false, false, func(h *LabHTTP) float64 { return h.ReqPerSec }),
	httpRow("http p50 ms (t2 c50)", "%.3f", false, true, func(h *LabHTTP) float64 { return h.P50Ms }),
	httpRow("http p99 ms (t2 c50)", "%.3f", false, true, func(h *LabHTTP) float64 { return h.P99Ms }),
	httpRow("http req/s (t1 c1)", "%.0f", true, false, func(h *LabHTTP) float64 { return h.ReqPerSec }),
	httpRow("http p50 ms (t1 c1)", "%.3f", true, true, func(h *LabHTTP) float64 { return h.P50Ms }),
	httpRow("http p99 ms (t1 c1)", "%.3f", true, true, func(h *LabHTTP) float64 { return h.P99Ms }),
}

// labSaturatedBusy is the balancer CPU's busy percentage from which a phase's delivered rate is
// the balancer's capacity rather than what the generator could offer (as in bench/benchlab).
const labSaturatedBusy = 90

// LabRatio returns govs against the kernel so that above 1 means govs did better (kernel/govs
// for latencies); false when either side has no usable figure.
func LabRatio(kernel, govs float64, lowerIsBetter bool) (float64, bool) {
	num, den := govs, kernel
	if lowerIsBetter {
		num, den = kernel, govs
	}
	if !(den > 0) || !(num >= 0) || math.IsInf(num, 0) {
		return 0, false
	}
	return num / den, true
}

// WriteTable writes r in `govs bench suite`'s table style: one row per figure, the kernel's
// and govs's values from the same run, and their ratio; then the conditions and every error.
func (r *LabReport) WriteTable(w io.Writer) error {
	frame := 64
	for _, p := range []*LabPhase{r.Kernel, r.Govs} {
		if p != nil && p.UDP != nil && p.UDP.FrameLen != 0 {
			frame = p.UDP.FrameLen
		}
	}
	fmt.Fprintf(w, "live lab (%s per measurement, %d-byte UDP flood; kernel = nftables DNAT on the same topology):\n", r.Duration, frame)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tkernel\tgovs\tgovs vs kernel\t")
	for _, row := range labRows {
		k, kwhy := row.get(r.Kernel)
		g, gwhy := row.get(r.Govs)
		cell := func(v float64, why string) string {
			if why != "" {
				return why
			}
			return fmt.Sprintf(row.format, v)
		}
		ratio := "-"
		if row.ratio && kwhy == "" && gwhy == "" {
			if v, ok := LabRatio(k, g, row.lowerIsBetter); ok {
				ratio = fmt.Sprintf("%.2fx", v)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", row.label, cell(k, kwhy), cell(g, gwhy), ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ngovs vs kernel: above 1x means govs did better (for latencies, kernel ms over govs ms).")
	if g := r.Generator; g != nil && g.Error == "" {
		fmt.Fprintf(w, "generator ceiling (flood dropped at the switch): %.3f Mpps offered.\n", g.OfferedPPS/1e6)
	}
	fmt.Fprintf(w, "%s, %d CPUs: balancer on CPU %d, load on CPU %d; before the run they were %.0f%% and %.0f%% busy with other work.\n",
		r.Env.Kernel, r.Env.CPUs, r.Env.BalancerCPU, r.Env.LoadCPU, r.Env.IdleBusyBalancerCPU, r.Env.IdleBusyLoadCPU)
	if math.Max(r.Env.IdleBusyBalancerCPU, r.Env.IdleBusyLoadCPU) >= 50 {
		fmt.Fprintln(w, "caution: other work kept a CPU half busy or more before the run: the phases competed with it unevenly; rerun on a quiet machine before trusting a ratio.")
	}
	for _, p := range []*LabPhase{r.Kernel, r.Govs} {
		if p == nil {
			continue
		}
		if p.Error != "" {
			fmt.Fprintf(w, "%s: failed: %s\n", p.Name, p.Error)
		}
		if p.UDP != nil && p.UDP.Error != "" {
			fmt.Fprintf(w, "%s udp: failed: %s\n", p.Name, p.UDP.Error)
		}
		for _, h := range []*LabHTTP{p.HTTP, p.HTTPSingle} {
			if h != nil && h.Error != "" {
				fmt.Fprintf(w, "%s http t%d c%d: failed: %s\n", p.Name, h.Threads, h.Conns, h.Error)
			}
		}
		if p.UDP != nil && p.UDP.Error == "" && p.UDP.BalancerCPUBusy < labSaturatedBusy {
			flatters := "understates govs"
			if p == r.Kernel {
				flatters = "flatters govs"
			}
			fmt.Fprintf(w, "%s udp: not balancer-bound (balancer CPU %.0f%% busy, load CPU %.0f%%): delivered Mpps is a lower bound and its ratio %s; compare CPU us/packet.\n",
				p.Name, p.UDP.BalancerCPUBusy, p.UDP.LoadCPUBusy, flatters)
		}
	}
	return nil
}

// Failed reports whether a phase of r did not produce its figures.
func (r *LabReport) Failed() bool {
	for _, p := range []*LabPhase{r.Kernel, r.Govs} {
		if p == nil {
			continue
		}
		if _, why := labUDP(p); why == "failed" {
			return true
		}
		for _, single := range []bool{false, true} {
			if _, why := labHTTP(p, single); why == "failed" {
				return true
			}
		}
	}
	return false
}
