// Command benchlab measures govs against the kernel's own nftables DNAT on the same namespace
// topology in one run, so both figures see the same machine, kernel and neighbours' load, and
// prints both and their ratio.
//
// Usage (as root; `make bench-lab` builds govs and calls it through bench/lab.sh):
//
//	go run ./bench/benchlab -govs bin/govs
//	go run ./bench/benchlab -govs bin/govs -duration 2s -json
//
// One core for the balancer: the balancer namespace's receive work (RPS on l0 and l1) and govs
// run on -balancer-cpu; this process (the real servers), the generator, wrk and the switch's
// bridging run on -load-cpu. Each phase sends a 64-byte UDP flood over ~64k flows and runs wrk.
//
// A delivered rate is a capacity only when the balancer core was the limit, and one load core
// cannot saturate the kernel's DNAT here; so the report gives, per side, the balancer core's
// CPU time per delivered packet (the figure that compares across rates) and says which core
// limited each phase. bench/README.md explains the figures and where govs's time goes.
//
// The fwd-* phases measure the I/O paths alone: `benchlab forward` (forward.go), a minimal NAT
// forwarder over AF_PACKET or AF_XDP, or the kernel's DNAT, under the UDP flood only, repeated
// and alternating with -rounds, at a paced rate with -rate, and with perf's split of both cores
// into the phase's own work and other processes' with -perf-dir (perfown.go):
//
//	go run ./bench/benchlab -phases fwd-kernel,fwd-afpacket,fwd-afxdp -rounds 2 -rate 150000 -perf-dir /tmp/perf
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/govs/govs/lab"
)

// options are the command line.
type options struct {
	govs        string
	duration    time.Duration
	warmup      time.Duration
	jsonOut     bool
	flows       int
	frameLen    int
	batch       int
	balancerCPU int
	loadCPU     int
	single      bool
	phases      string
	sink        string
	rxMode      string
	rounds      int
	xdpTxBudget int
	perfDir     string
	http        bool
	rate        float64 // offered frames per second of the flood; 0: as fast as the generator goes
	peak        bool
	peakTrial   time.Duration
	cores       int    // balancer cores of the scaling measurement (1: none)
	priority    int    // govs's [dataplane] worker_priority
	io          string // govs's [dataplane] io ("" = govs's default)
	xdpMode     string // govs's [dataplane] xdp_mode, with io afxdp
	xdpNAPI     string // with io afxdp in driver mode: where l0's NAPI runs, "thread" or "sender"
	xdpIRQDefer string // govs's [dataplane] xdp_irq_defer, with io afxdp
}

// queues is how many receive queues the balancer's links get: with -io afxdp and
// -balancer-cores 2, one per govs worker (each AF_XDP worker reads queues of its own); one
// worker then reads both. Otherwise one.
func (o *options) queues() int {
	if o.io == "afxdp" && o.cores == 2 {
		return 2
	}
	return 1
}

// balancerCPUs lists the CPUs a balancer with n cores runs on: the balancer CPU, then the load
// CPU (the machine has two), which it then shares with the generator, the switch and the servers.
func (o *options) balancerCPUs(n int) []int {
	if n <= 1 {
		return []int{o.balancerCPU}
	}
	return []int{o.balancerCPU, o.loadCPU}
}

// cpuList formats cpus for taskset -c.
func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "forward" {
		os.Exit(runForward(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("benchlab", flag.ContinueOnError)
	fs.StringVar(&o.govs, "govs", "bin/govs", "govs binary to measure (`make build` makes bin/govs)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measurement (UDP flood, each wrk run)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "flood time before the UDP measurement window opens (fills conntrack)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON instead of a table")
	fs.IntVar(&o.flows, "flows", 64512, "UDP flows: source ports 1024.. from the client")
	fs.IntVar(&o.frameLen, "frame-len", 64, "UDP flood frame length in bytes, Ethernet header included, no FCS")
	fs.IntVar(&o.batch, "batch", 256, "frames per sendmmsg(2) call in the generator")
	fs.IntVar(&o.balancerCPU, "balancer-cpu", 0, "CPU for the balancer: its RPS and govs")
	fs.IntVar(&o.loadCPU, "load-cpu", 1, "CPU for everything else: generator, wrk, real servers, switch")
	fs.BoolVar(&o.http, "http", true, "measure HTTP with wrk (off: UDP only, for quicker A/B runs)")
	fs.Float64Var(&o.rate, "rate", 0, "offer the flood at this many frames per second (paced); 0: as fast as the generator goes")
	fs.BoolVar(&o.peak, "peak", true, "govs phases: also search the highest offered rate govs forwards without loss (its loss-free peak), to compare with what it delivers at the generator's full rate")
	fs.DurationVar(&o.peakTrial, "peak-trial", 2*time.Second, "length of each trial of the loss-free peak search")
	fs.BoolVar(&o.single, "single", true, "also measure one connection's latency (wrk -t1 -c1)")
	fs.StringVar(&o.phases, "phases", "gen,kernel,govs,kernel-dr,dr,tun,gue,fullnat", "phases to run, comma separated: gen (the generator's own ceiling), kernel, govs (NAT), kernel-dr (the kernel's direct routing: nftables netdev fwd, UDP only), dr (govs, method dr, UDP only), tun (govs, method tun with IPIP, UDP only), gue (govs, tun with GUE, UDP only), fullnat (govs, method fullnat, UDP only); and the I/O paths alone (UDP only, bench/README.md): fwd-kernel, fwd-afpacket, fwd-afxdp, fwd-afxdp-sender, fwd-afxdp-busypoll, fwd-afxdp-generic")
	fs.IntVar(&o.rounds, "rounds", 1, "run the fwd-* phases this many times, alternating in the order given")
	fs.StringVar(&o.perfDir, "perf-dir", "", "fwd-* phases: sample the balancer core with perf during each UDP window, keep perf.data files here, and report the phase's own share of the samples (robust to other work on the core)")
	fs.IntVar(&o.xdpTxBudget, "xdp-tx-budget", 256, "fwd-afxdp*: frames one AF_XDP kick sends (XDP_MAX_TX_SKB_BUDGET; 0 keeps the kernel's 32)")
	fs.IntVar(&o.priority, "worker-priority", 0, "govs's [dataplane] worker_priority for the govs phases: 1-99 runs its workers SCHED_FIFO (bench/README.md: receive livelock); 0 = govs's default")
	fs.IntVar(&o.cores, "balancer-cores", 1, "2: also measure the UDP flood with the balancer on two cores (kernel: RPS over both; govs: two workers) and report the speed-up over one. The machine's two CPUs then serve the balancer and the load alike")
	fs.StringVar(&o.io, "io", "", "govs's [dataplane] io for the govs phases: afpacket or afxdp (not with -rx-mode; with -balancer-cores 2 the balancer's links get a receive queue per worker, and every govs phase reads both); empty = govs's default")
	fs.StringVar(&o.xdpMode, "xdp-mode", "", "govs's [dataplane] xdp_mode with -io afxdp: driver or generic; empty = govs's default (driver)")
	fs.StringVar(&o.xdpIRQDefer, "xdp-irq-defer", "", "govs's [dataplane] xdp_irq_defer with -io afxdp: off, auto or a duration; empty = govs's default (off)")
	fs.StringVar(&o.xdpNAPI, "xdp-napi", "thread", "with -io afxdp in driver mode, where l0's NAPI (the XDP program, the copy into the AF_XDP socket) runs: thread (a NAPI thread pinned to the balancer CPU, as RPS puts the kernel phase's receive there) or sender (the softirq of the CPU that sent into the veth: the load CPU)")
	fs.StringVar(&o.rxMode, "rx-mode", "", "govs's [dataplane] rx_mode for the govs phase (auto, throughput, latency); empty = govs's default")
	// The switch by default: with the servers as the sink the load CPU also bridges every frame
	// to them and receives it there, and then cannot offer the kernel's DNAT enough to saturate
	// the balancer core (bench/README.md).
	fs.StringVar(&o.sink, "sink", "switch", "where the flood is counted and dropped: switch (the switch port facing the balancer's l1: spares the load CPU the bridge and server work, so the balancer core can be the limit) or servers (each real server's eth0)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "benchlab:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench(ctx, o)
	if rep != nil {
		if o.jsonOut {
			if werr := writeJSON(os.Stdout, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "benchlab:", werr)
			}
		} else {
			writeTable(os.Stdout, rep)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlab:", err)
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}

func (o *options) check() error {
	switch {
	case o.duration < 500*time.Millisecond || o.duration > 10*time.Minute:
		return fmt.Errorf("-duration %v: want 500ms..10m", o.duration)
	case o.warmup < 0 || o.warmup > time.Minute:
		return fmt.Errorf("-warmup %v: want 0..1m", o.warmup)
	case o.flows < 1 || o.flows > 64512:
		return fmt.Errorf("-flows %d: want 1..64512", o.flows)
	case o.frameLen < minFrameLen || o.frameLen > 1514:
		return fmt.Errorf("-frame-len %d: want %d..1514", o.frameLen, minFrameLen)
	case o.rate < 0 || o.rate > 100e6:
		return fmt.Errorf("-rate %v: want 0 (full) or up to 100e6 frames per second", o.rate)
	case o.peakTrial < 200*time.Millisecond || o.peakTrial > time.Minute:
		return fmt.Errorf("-peak-trial %v: want 200ms..1m", o.peakTrial)
	case o.priority < 0 || o.priority > 99:
		return fmt.Errorf("-worker-priority %d: want 0..99", o.priority)
	case o.batch < 1 || o.batch > 4096:
		return fmt.Errorf("-batch %d: want 1..4096", o.batch)
	case o.balancerCPU == o.loadCPU || o.balancerCPU < 0 || o.loadCPU < 0 || o.balancerCPU > 63 || o.loadCPU > 63:
		return fmt.Errorf("-balancer-cpu %d and -load-cpu %d must be two different CPUs 0..63", o.balancerCPU, o.loadCPU)
	}
	if o.rounds < 1 || o.rounds > 100 {
		return fmt.Errorf("-rounds %d: want 1..100", o.rounds)
	}
	if o.xdpTxBudget < 0 || o.xdpTxBudget > 4096 {
		return fmt.Errorf("-xdp-tx-budget %d: want 0..4096", o.xdpTxBudget)
	}
	if o.sink != "servers" && o.sink != "switch" {
		return fmt.Errorf("-sink %q: want servers or switch", o.sink)
	}
	for _, p := range strings.Split(o.phases, ",") {
		if _, fwd := fwdPhases[p]; !fwd && p != "gen" && p != "kernel" && p != "govs" && p != "tun" && p != "gue" && p != "fullnat" && p != "kernel-dr" && p != "dr" {
			return fmt.Errorf("-phases %q: unknown phase %q (want gen, kernel, govs, tun, gue, fullnat, kernel-dr, dr, fwd-kernel, fwd-afpacket, fwd-afxdp, fwd-afxdp-sender, fwd-afxdp-busypoll, fwd-afxdp-generic)", o.phases, p)
		}
	}
	if o.sink == "servers" && (o.runs("kernel-dr") || o.runs("dr")) {
		return fmt.Errorf("-sink servers with the DR phases: the lab's real servers do not hold the VIP, so DR frames are counted at the switch only; drop kernel-dr and dr from -phases, or use -sink switch")
	}
	if o.cores != 1 && o.cores != 2 {
		return fmt.Errorf("-balancer-cores %d: want 1 or 2", o.cores)
	}
	switch {
	case o.io != "" && o.io != "afpacket" && o.io != "afxdp":
		return fmt.Errorf("-io %q: want afpacket or afxdp", o.io)
	case o.xdpNAPI != "" && o.xdpNAPI != "thread" && o.xdpNAPI != "sender":
		return fmt.Errorf("-xdp-napi %q: want thread or sender", o.xdpNAPI)
	case o.xdpMode != "" && o.io != "afxdp":
		return fmt.Errorf("-xdp-mode needs -io afxdp")
	case o.xdpIRQDefer != "" && o.io != "afxdp":
		return fmt.Errorf("-xdp-irq-defer needs -io afxdp")
	case o.io == "afxdp" && o.rxMode != "":
		return fmt.Errorf("-io afxdp runs govs without rx_mode: drop -rx-mode")
	}
	return nil
}

func (o *options) runs(phase string) bool {
	for _, p := range strings.Split(o.phases, ",") {
		if p == phase {
			return true
		}
	}
	return false
}

// bench builds the topology, runs the phases and always tears everything down. The report is
// returned whenever the topology came up, also with an error, so partial figures are shown.
func bench(ctx context.Context, o options) (rep *report, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root for network namespaces: run it as root (sudo)")
	}
	for _, tool := range []string{"ip", "nft", "wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("failed to find %s: install it (apt-get install -y iproute2 nftables wrk util-linux) or run bench/lab.sh", tool)
		}
	}
	if err := pinProcess(o.loadCPU); err != nil {
		return nil, err
	}
	removeStaleNamespaces(os.Stderr)

	rep = newReport(o)
	start := time.Now()
	if before, err := readCPUTimes(); err == nil {
		time.Sleep(time.Second) // background load, so a busy machine is visible in the report
		elapsed := time.Since(start)
		if after, err := readCPUTimes(); err == nil {
			rep.Env.IdleBusyBalancerCPU = busyPercent(before, after, o.balancerCPU, elapsed)
			rep.Env.IdleBusyLoadCPU = busyPercent(before, after, o.loadCPU, elapsed)
		}
	}

	topo, err := lab.New(lab.Options{Method: "nat", Prefix: namespacePrefix, Queues: o.queues()})
	if err != nil {
		return nil, fmt.Errorf("failed to build the lab topology: %w", err)
	}
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("failed to tear down %s: %w", topo, cerr))
		}
	}()
	srvs, err := lab.StartServers(topo)
	if err != nil {
		return rep, fmt.Errorf("failed to start the real servers: %w", err)
	}
	defer srvs.Close()
	if err := setRPS(topo, o, 1); err != nil {
		return rep, err
	}
	logf("topology up: %s", topo)

	if o.runs("gen") {
		rep.Generator = runGeneratorCalibration(ctx, topo, o)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	if o.runs("kernel") {
		rep.Kernel = runKernelPhase(ctx, topo, o, "kernel(nft dnat)")
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	if o.runs("kernel-dr") {
		rep.KernelDR = runKernelDRPhase(ctx, topo, o)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	for _, ph := range []struct {
		name string
		v    govsVariant
		to   **phaseResult
	}{{"govs", govsNAT, &rep.Govs}, {"tun", govsTun, &rep.Tun}, {"gue", govsGUE, &rep.GUE}, {"fullnat", govsFullNAT, &rep.FullNAT}, {"dr", govsDR, &rep.GovsDR}} {
		if o.runs(ph.name) {
			po := o
			if u, ok := udpOK(rep.Govs); ok && ph.v.method != "nat" && ph.v.method != "dr" && o.rate == 0 {
				// The same offered load as the NAT phase: past its peak govs delivers less the more it
				// is offered (receive livelock), and the generator's full rate varies with what the
				// balancer's transmit costs the load core.
				po.rate = u.OfferedPPS
			}
			*ph.to = runGovsPhase(ctx, topo, po, ph.v)
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	if o.cores == 2 {
		if err := runScaling(ctx, topo, o, rep); err != nil {
			return rep, err
		}
	}
	for round := 0; round < o.rounds; round++ {
		for _, p := range strings.Split(o.phases, ",") {
			if _, fwd := fwdPhases[p]; !fwd {
				continue
			}
			rep.Forwarders = append(rep.Forwarders, runFwdPhase(ctx, topo, o, p))
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	if rep.Kernel != nil && rep.Kernel.Error != "" {
		return rep, fmt.Errorf("kernel phase failed: %s", rep.Kernel.Error)
	}
	return rep, nil
}

// namespacePrefix names this program's namespaces; lab appends "-<pid>-<random>-<role>".
const namespacePrefix = "govs-benchlab"

// removeStaleNamespaces deletes namespaces a killed earlier run left behind: ours by prefix,
// whose process is gone.
func removeStaleNamespaces(log *os.File) {
	removed, err := lab.RemoveStale(namespacePrefix)
	for _, n := range removed {
		fmt.Fprintf(log, "benchlab: removed stale namespace %s (its process is gone)\n", n)
	}
	if err != nil {
		fmt.Fprintf(log, "benchlab: could not remove every stale namespace: %v\n", err)
	}
}

// setRPS steers receive processing: frames entering the balancer (l0, l1) to the balancer's
// CPU, frames leaving it (arriving at the switch's lb0, lb1) to the load CPU. With veth the
// receive softirq otherwise runs on the sending CPU, so without this the balancer's work would
// run wherever the generator or the servers happen to be, and the servers' and bridges' work
// would be billed to the balancer's CPU.
//
// With cores 2 the balancer's frames are spread over both CPUs by RPS's flow hash.
func setRPS(topo *lab.Topology, o options, cores int) error {
	var balancerMask uint64
	for _, c := range o.balancerCPUs(cores) {
		balancerMask |= 1 << c
	}
	for _, s := range []struct {
		ns     *lab.NS
		ifaces []string
		mask   uint64
	}{
		{topo.Balancer, []string{"l0", "l1"}, balancerMask},
		{topo.Switch, []string{"lb0", "lb1"}, 1 << o.loadCPU},
	} {
		for _, ifname := range s.ifaces {
			script := fmt.Sprintf("for f in /sys/class/net/%s/queues/rx-*/rps_cpus; do echo %x > $f || exit 1; done", ifname, s.mask)
			if out, err := s.ns.Command("sh", "-c", script).CombinedOutput(); err != nil {
				return fmt.Errorf("failed to set RPS on %s in %s (kernel without CONFIG_RPS?): %w: %s", ifname, s.ns.Name, err, strings.TrimSpace(string(out)))
			}
		}
	}
	return nil
}

// nsCommand runs name in ns like NS.Command, but ends it with ctx.
func nsCommand(ctx context.Context, ns *lab.NS, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runIn runs a short command in ns and returns an error carrying its output.
func runIn(ctx context.Context, ns *lab.NS, stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := nsCommand(ctx, ns, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to run `%s %s` in %s: %w: %s", name, strings.Join(args, " "), ns.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// logf reports progress on stderr, so stdout stays the report.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchlab: "+format+"\n", args...)
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
