package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteText writes r for people: the figures first, then drops and the per-server shares.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	p("packets", "%d (%d loops, %d workers)", r.Packets, r.Loops, r.Workers)
	p("seconds", "%.3f", r.Seconds)
	p("pps", "%.0f (%.2f Mpps)", r.PPS, r.PPS/1e6)
	p("ns_per_packet", "%.1f wall, %.1f summed over workers, %.1f of it in the data plane (baseline copy %.1f)", r.NsPerPacket, r.NsPerPacketCore, r.NsPerPacketDataplane, r.BaselineNsPerPacket)
	p("allocs_per_packet", "%.6f", r.AllocsPerPacket)
	p("frames_per_batch", "%.1f", r.FramesPerBatch)
	if r.Workers > 1 {
		p("parallel_speedup", "%.2fx", r.ParallelSpeedup)
	}
	p("forwarded", "%d", r.Forwarded)
	p("replied", "%d", r.Replied)
	if r.ICMPErrors > 0 {
		p("icmp_errors_forwarded", "%d", r.ICMPErrors)
	}
	p("skipped_replies", "%d", r.Skipped)
	p("dropped", "%d", r.DroppedTotal)
	keys := make([]string, 0, len(r.Dropped))
	for k := range r.Dropped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p("  "+k, "%d", r.Dropped[k])
	}
	p("flows", "%d in the capture", r.Flows)
	p("rescheduled", "%d (a tuple that started a new connection within a loop: reused after FIN or RST, idle past its timeout, one_packet)", r.Rescheduled)
	p("sticky_violations", "%d", r.StickyViolations)
	p("conntrack", "peak %d of %d, %.1f MiB", r.ConntrackPeak, r.ConntrackCapacity, float64(r.ConntrackBytes)/(1<<20))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nreal servers:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "service\treal server\tweight\tflows\tpackets\t")
	for _, rr := range r.Reals {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t\n", rr.Service, rr.Address, rr.Weight, rr.Flows, rr.Packets)
	}
	return tw.Flush()
}

// WriteText writes r for people.
func (r *LiveReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "interface\t%s\n", r.Interface)
	fmt.Fprintf(tw, "frames\t%d\n", r.Frames)
	fmt.Fprintf(tw, "bytes\t%d\n", r.Bytes)
	fmt.Fprintf(tw, "seconds\t%.3f\n", r.Seconds)
	if r.RequestedPPS > 0 {
		fmt.Fprintf(tw, "pps\t%.0f (requested %.0f)\n", r.PPS, r.RequestedPPS)
	} else {
		fmt.Fprintf(tw, "pps\t%.0f (top speed)\n", r.PPS)
	}
	fmt.Fprintf(tw, "mbps\t%.1f\n", r.Mbps)
	fmt.Fprintf(tw, "too_large\t%d\n", r.TooLarge)
	fmt.Fprintf(tw, "unsent\t%d\n", r.Unsent)
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	return tw.Flush()
}

// ProgressBar returns a Progress function that draws a one-line bar on w (a terminal).
func ProgressBar(w io.Writer) func(done, total uint64) {
	return func(done, total uint64) {
		if total == 0 {
			return
		}
		const width = 40
		n := int(done * width / total)
		fmt.Fprintf(w, "\r[%s%s] %3d%% %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), done*100/total, done, total)
		if done >= total {
			fmt.Fprint(w, "\r\033[K")
		}
	}
}
