package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/govs/govs/lab"
)

// The fwd-* phases measure the I/O paths alone (bench/README.md, lever 1): the balancer
// namespace runs `benchlab forward` (forward.go), a minimal NAT forwarder, on the balancer CPU
// with AF_PACKET or AF_XDP, or the kernel's DNAT, and the UDP flood runs through it. No HTTP.
// With -rounds they repeat, alternating in the order given, so the paths share the machine's
// state (load, warmth) as evenly as one run allows.
var fwdPhases = map[string]string{
	"fwd-kernel":         "kernel nftables DNAT, UDP flood only",
	"fwd-afpacket":       "minimal forwarder, AF_PACKET TPACKETv3 rings as govs sets them up, nft guard on l0",
	"fwd-afxdp":          "minimal forwarder, AF_XDP copy mode, XDP in driver mode, veth NAPI threaded and pinned to the balancer CPU",
	"fwd-afxdp-sender":   "minimal forwarder, AF_XDP copy mode, XDP in driver mode, veth NAPI in the sending CPU's softirq (the load CPU)",
	"fwd-afxdp-busypoll": "minimal forwarder, AF_XDP copy mode, XDP in driver mode, busy polling asked for (it needs a NAPI id, which veth lacks on some kernels: the forwarder says so) with l0's NAPI deferred (napi_defer_hard_irqs 2, gro_flush_timeout 200 us)",
	"fwd-afxdp-generic":  "minimal forwarder, AF_XDP copy mode, XDP in generic (skb) mode after RPS to the balancer CPU",
}

// runFwdPhase runs one fwd-* phase.
func runFwdPhase(ctx context.Context, topo *lab.Topology, o options, name string) *phaseResult {
	res := &phaseResult{Name: name}
	logf("%s phase: %s", name, fwdPhases[name])
	res.BackgroundBusy = waitQuiet(ctx, o)
	if name == "fwd-kernel" {
		if err := kernelSetup(ctx, topo); err != nil {
			res.Error = err.Error()
		} else {
			res.UDP = &udpResult{}
			if mac, err := probeUDP(ctx, topo, natSink.echo); err != nil {
				res.UDP.Error = err.Error()
			} else {
				res.UDP.VIPMAC = mac.String()
				prof := startPerf(ctx, o, name)
				udpFlood(ctx, topo, o, mac, res.UDP, false, 0, natSink)
				res.Perf = prof.finish(nil, o, res.UDP)
			}
		}
		if err := kernelTeardown(topo); err != nil {
			res.addError(err.Error())
		}
		return res
	}
	l0, err := topo.Balancer.HardwareAddr("l0")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var servers []string
	for i, ns := range topo.Servers {
		mac, err := ns.HardwareAddr(lab.ServerIface)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		servers = append(servers, fmt.Sprintf("%s=%s", topo.ServerAddrs4[i], mac))
	}
	args := []string{"-in", "l0", "-out", "l1", "-servers", strings.Join(servers, ","),
		"-max-run", (o.warmup + o.duration + time.Minute).String()}
	var undo []func() error
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](); err != nil {
				res.addError(err.Error())
			}
		}
	}()
	switch name {
	case "fwd-afpacket":
		args = append(args, "-io", "afpacket")
		// govs's guard: the frames for the VIP end at l0's ingress, after the packet taps,
		// instead of in the IP stack's route lookup.
		if err := runIn(ctx, topo.Balancer, fmt.Sprintf(guardRuleset, topo.VIP4, udpPort), "nft", "-f", "-"); err != nil {
			res.Error = err.Error()
			return res
		}
		undo = append(undo, func() error {
			return runIn(context.Background(), topo.Balancer, "", "nft", "delete", "table", "netdev", "benchlab_guard")
		})
	case "fwd-afxdp", "fwd-afxdp-sender":
		args = append(args, "-io", "afxdp", "-xdp-mode", "driver", "-tx-budget", strconv.Itoa(o.xdpTxBudget))
	case "fwd-afxdp-busypoll":
		args = append(args, "-io", "afxdp", "-xdp-mode", "driver", "-tx-budget", strconv.Itoa(o.xdpTxBudget), "-busy-poll", "50")
		set := "echo 2 > /sys/class/net/l0/napi_defer_hard_irqs && echo 200000 > /sys/class/net/l0/gro_flush_timeout"
		if err := runIn(ctx, topo.Balancer, "", "sh", "-c", set); err != nil {
			res.Error = err.Error()
			return res
		}
		undo = append(undo, func() error {
			return runIn(context.Background(), topo.Balancer, "", "sh", "-c", "echo 0 > /sys/class/net/l0/napi_defer_hard_irqs && echo 0 > /sys/class/net/l0/gro_flush_timeout")
		})
	case "fwd-afxdp-generic":
		args = append(args, "-io", "afxdp", "-xdp-mode", "generic", "-tx-budget", strconv.Itoa(o.xdpTxBudget))
	}
	before, _ := napiThreads("l0")
	f, err := startForwarder(topo, o, args)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	// The XDP program made l0 use its own NAPI, which runs where the frame was sent into the veth
	// (the load CPU) unless it is a thread, which can be pinned. Threaded is a property of the
	// device that can be set only while a NAPI instance exists and that later instances
	// inherit: on for fwd-afxdp and off again before its forwarder ends, off for the other
	// driver-mode phases.
	setThreaded := func(v string) error {
		return runIn(context.Background(), topo.Balancer, "", "sh", "-c", "echo "+v+" > /sys/class/net/l0/threaded")
	}
	switch name {
	case "fwd-afxdp":
		if err := setThreaded("1"); err != nil {
			res.Error = err.Error()
		} else if err := pinNewNAPIThread("l0", before, o.balancerCPU); err != nil {
			res.Error = err.Error()
		}
	case "fwd-afxdp-sender", "fwd-afxdp-busypoll":
		if err := setThreaded("0"); err != nil {
			res.Error = err.Error()
		}
	}
	if res.Error == "" {
		// Nothing answers ARP for the VIP in this phase: the client sends to l0's MAC.
		if err := runIn(ctx, topo.Client, "", "ip", "neigh", "replace", topo.VIP4.String(), "lladdr", l0.String(), "dev", lab.ClientIface, "nud", "permanent"); err != nil {
			res.Error = err.Error()
		} else {
			res.UDP = &udpResult{VIPMAC: l0.String()}
			prof := startPerf(ctx, o, name)
			udpFlood(ctx, topo, o, l0, res.UDP, false, f.cmd.Process.Pid, natSink)
			res.Perf = prof.finish(processTids(f.cmd.Process.Pid), o, res.UDP)
			_ = runIn(context.Background(), topo.Client, "", "ip", "neigh", "del", topo.VIP4.String(), "dev", lab.ClientIface)
		}
	}
	if name == "fwd-afxdp" {
		if err := setThreaded("0"); err != nil {
			res.addError(err.Error())
		}
	}
	counters, err := f.stop()
	res.Forward = counters
	if err != nil {
		res.addError(err.Error())
	}
	return res
}

// waitQuiet waits (at most 20 s) for a second in which neither CPU was more than
// quietBusy percent busy, since other work on the balancer core counts as the phase's, and
// returns the balancer core's busy share in the last second it sampled.
func waitQuiet(ctx context.Context, o options) float64 {
	deadline := time.Now().Add(20 * time.Second)
	for {
		before, err := readCPUTimes()
		start := time.Now()
		if err != nil || sleepCtx(ctx, time.Second) != nil {
			return -1
		}
		after, err := readCPUTimes()
		if err != nil {
			return -1
		}
		b := busyPercent(before, after, o.balancerCPU, time.Since(start))
		l := busyPercent(before, after, o.loadCPU, time.Since(start))
		if (b <= quietBusy && l <= quietBusy) || time.Now().After(deadline) {
			return b
		}
		logf("  waiting for quiet CPUs: balancer %.0f%%, load %.0f%% busy with other work", b, l)
	}
}

// quietBusy is the busy share of a CPU from which waitQuiet waits.
const quietBusy = 10

// perfRun is a perf record running over a phase's UDP window.
type perfRun struct {
	file string
	done chan error
}

// startPerf starts sampling the balancer core just after the flood's warmup, for the window
// less a margin at each end; nil without -perf-dir.
func startPerf(ctx context.Context, o options, phase string) *perfRun {
	if o.perfDir == "" {
		return nil
	}
	p := &perfRun{file: filepath.Join(o.perfDir, fmt.Sprintf("%s-%d.data", phase, time.Now().UnixNano())), done: make(chan error, 1)}
	go func() {
		if err := sleepCtx(ctx, o.warmup+200*time.Millisecond); err != nil {
			p.done <- err
			return
		}
		p.done <- perfRecord(ctx, p.file, o.balancerCPU, o.loadCPU, o.duration-400*time.Millisecond)
	}()
	return p
}

// finish waits for perf and splits its samples: the phase's own are the forwarder's threads
// (ours) and this process's (the generator, the real servers), each core's ksoftirqd, l0's NAPI
// thread, and interrupt and softirq work.
func (p *perfRun) finish(ours map[int]bool, o options, u *udpResult) *perfOwn {
	if p == nil {
		return nil
	}
	res := &perfOwn{File: p.file}
	if err := <-p.done; err != nil {
		res.Error = err.Error()
		return res
	}
	if ours == nil {
		ours = map[int]bool{}
	}
	for tid := range processTids(os.Getpid()) {
		ours[tid] = true
	}
	split, err := perfSplit(p.file, ours, []string{fmt.Sprintf("ksoftirqd/%d", o.balancerCPU), fmt.Sprintf("ksoftirqd/%d", o.loadCPU), "napi/l0-"})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if c := split[o.balancerCPU]; c != nil {
		res.Balancer = *c
	}
	if c := split[o.loadCPU]; c != nil {
		res.Load = *c
	}
	res.Balancer.usPerPacket(u.DeliveredPPS)
	res.Load.usPerPacket(u.DeliveredPPS)
	return res
}

// guardRuleset drops the flood at l0's ingress as govs's guard does.
const guardRuleset = `table netdev benchlab_guard {
	chain in {
		type filter hook ingress device "l0" priority 0; policy accept;
		ip daddr %s udp dport %d drop
	}
}
`

// napiThreads returns the pids of the kernel's NAPI threads of interfaces named ifname (in any
// namespace: the names are not unique, so callers diff two readings).
func napiThreads(ifname string) (map[int]bool, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "napi/"+ifname+"-") {
			out[pid] = true
		}
	}
	return out, nil
}

// pinNewNAPIThread pins the NAPI thread of ifname that appeared since before to cpu.
func pinNewNAPIThread(ifname string, before map[int]bool, cpu int) error {
	return pinNewNAPIThreads(ifname, before, 1, []int{cpu})
}

// pinNewNAPIThreads waits for want NAPI threads of ifname that were not there before (one per
// receive queue) and pins the thread of queue i to cpus[i mod len(cpus)]. A veth adds its queues'
// NAPIs in queue order, and NAPI ids grow, so the threads (named napi/<ifname>-<id>) sorted by id
// are in queue order.
func pinNewNAPIThreads(ifname string, before map[int]bool, want int, cpus []int) error {
	var found []int
	for try := 0; try < 20 && len(found) < want; try++ {
		now, err := napiThreads(ifname)
		if err != nil {
			return err
		}
		found = found[:0]
		for pid := range now {
			if !before[pid] {
				found = append(found, pid)
			}
		}
		if len(found) < want {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(found) != want {
		return fmt.Errorf("want %d new napi/%s-* kernel thread(s) after turning threaded NAPI on, found %d", want, ifname, len(found))
	}
	napiID := func(pid int) int {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		id, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(string(b)), "napi/"+ifname+"-"))
		return id
	}
	sort.Slice(found, func(i, j int) bool { return napiID(found[i]) < napiID(found[j]) })
	for q, pid := range found {
		cpu := cpus[q%len(cpus)]
		if out, err := exec.Command("taskset", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("failed to pin napi thread %d to CPU %d: %w: %s", pid, cpu, err, strings.TrimSpace(string(out)))
		}
		logf("  napi/%s thread %d (queue %d) pinned to CPU %d", ifname, pid, q, cpu)
	}
	return nil
}

// forwarder is a running `benchlab forward`.
type forwarder struct {
	cmd    *exec.Cmd
	stdout *os.File // the read end of its standard output
	lines  *bufio.Reader
	stderr strings.Builder
	done   chan struct{}
	err    error
}

// startForwarder starts this program's forward subcommand in the balancer namespace, pinned to
// the balancer CPU, and waits until it forwards.
func startForwarder(topo *lab.Topology, o options, args []string) (*forwarder, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f := &forwarder{done: make(chan struct{})}
	f.cmd = exec.Command("taskset", append([]string{"-c", strconv.Itoa(o.balancerCPU), "ip", "netns", "exec", topo.Balancer.Name, self, "forward"}, args...)...)
	f.cmd.Stderr = &f.stderr
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	f.stdout, f.lines, f.cmd.Stdout = r, bufio.NewReader(r), w
	err = startTied(f.cmd, f.done, &f.err)
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("failed to start the forwarder: %w", err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := f.lines.ReadString('\n')
		if err == nil && strings.TrimSpace(line) != fwdReady {
			err = fmt.Errorf("unexpected first line %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(15 * time.Second):
		err = fmt.Errorf("not ready after 15s")
	}
	if err != nil {
		_, _ = f.stop()
		return nil, fmt.Errorf("forwarder %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(f.stderr.String()))
	}
	logf("  forwarder pid %d on CPU %d: forward %s", f.cmd.Process.Pid, o.balancerCPU, strings.Join(args, " "))
	return f, nil
}

// stop ends the forwarder with SIGTERM (SIGKILL after 10 s) and returns the counters it printed.
func (f *forwarder) stop() (*fwdCounters, error) {
	defer f.stdout.Close()
	_ = f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
	_ = f.stdout.SetReadDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(f.lines)
	var c fwdCounters
	if jerr := json.Unmarshal(b, &c); jerr != nil {
		return nil, fmt.Errorf("forwarder: %v, no counters (%v): %s", f.err, jerr, strings.TrimSpace(f.stderr.String()))
	}
	if f.err != nil {
		return &c, fmt.Errorf("forwarder: %w: %s", f.err, strings.TrimSpace(f.stderr.String()))
	}
	return &c, nil
}

// writeFwdTable prints the fwd-* phases side by side: per phase both cores' busy share and CPU
// time per packet, so a path that moves work onto the load core shows it.
func writeFwdTable(w io.Writer, r *report) {
	if len(r.Forwarders) == 0 {
		return
	}
	fmt.Fprintln(w, "\nI/O paths alone (fwd-* phases; bg busy: the balancer core's busy share in the second before, from other work; kernel+own: the balancer core's kernel-mode time plus the forwarder's user time per delivered packet; perf own: the share of perf's samples of the balancer core that were the phase's own work (with -perf-dir), per delivered packet, perf load own the same for the load core (the generator included), perf foreign the share of other processes' samples on each core; load us/pkt: the load core's busy time per offered packet):")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "phase\tbg busy\tdelivered pps\toffered pps\tbalancer busy\tload busy\tbalancer us/pkt\tkernel+own us/pkt\tperf own us/pkt\tperf load own us/pkt\tperf foreign\tload us/pkt\tkicks/1k\tpolls/1k\tctxsw/1k\t")
	for _, p := range r.Forwarders {
		u := p.UDP
		if u == nil || u.Seconds == 0 {
			fmt.Fprintf(tw, "%s\t%.0f%%\tfailed (below)\t\t\t\t\t\t\t\t\t\n", p.Name, p.BackgroundBusy)
			continue
		}
		loadUs, _ := usPerPacket(u.LoadCPUBusy, u.OfferedPPS)
		kicks, polls := "-", "-"
		if c := p.Forward; c != nil && c.Sent > 0 {
			kicks = fmt.Sprintf("%.1f", float64(c.Kicks)/float64(c.Sent)*1000)
			polls = fmt.Sprintf("%.1f", float64(c.Polls)/float64(c.Sent)*1000)
		}
		perfOwnCell, perfLoadCell, perfForeignCell := "-", "-", "-"
		if pf := p.Perf; pf != nil && pf.Balancer.Samples > 0 && pf.Load.Samples > 0 {
			perfOwnCell = fmt.Sprintf("%.2f", pf.Balancer.UsPerPk)
			perfLoadCell = fmt.Sprintf("%.2f", pf.Load.UsPerPk)
			perfForeignCell = fmt.Sprintf("%.0f%%/%.0f%%", 100*float64(pf.Balancer.Foreign)/float64(pf.Balancer.Samples), 100*float64(pf.Load.Foreign)/float64(pf.Load.Samples))
		}
		ctxsw := "-"
		if v, ok := u.perThousand(u.GovsCtxSwitches); ok && u.GovsCtxSwitches > 0 {
			ctxsw = fmt.Sprintf("%.1f", v)
		}
		fmt.Fprintf(tw, "%s\t%.0f%%\t%.0f\t%.0f\t%.0f%%\t%.0f%%\t%.2f\t%.2f\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t\n", p.Name, p.BackgroundBusy, u.DeliveredPPS, u.OfferedPPS,
			u.BalancerCPUBusy, u.LoadCPUBusy, u.BalancerUsPerPacket, u.BalancerOwnUsPerPacket, perfOwnCell, perfLoadCell, perfForeignCell, loadUs, kicks, polls, ctxsw)
	}
	tw.Flush()
	for _, p := range r.Forwarders {
		if p.Perf != nil && p.Perf.Error != "" {
			fmt.Fprintf(w, "%s: perf: %s\n", p.Name, p.Perf.Error)
		}
		if p.Error != "" || errOf(p.UDP) != "" {
			fmt.Fprintf(w, "%s: %s %s\n", p.Name, p.Error, errOf(p.UDP))
		}
		if c := p.Forward; c != nil && (c.TxFull != 0 || c.Malformed != 0 || c.XSK != nil && (c.XSK.RxRingFull != 0 || c.XSK.RxDropped != 0)) {
			fmt.Fprintf(w, "%s: forwarder received %d sent %d malformed %d tx-full %d", p.Name, c.Received, c.Sent, c.Malformed, c.TxFull)
			if c.XSK != nil {
				fmt.Fprintf(w, "; xsk rx-ring-full %d rx-dropped %d fill-empty %d", c.XSK.RxRingFull, c.XSK.RxDropped, c.XSK.RxFillRingEmpty)
			}
			fmt.Fprintln(w)
		}
	}
}
