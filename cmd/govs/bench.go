package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/govs/govs/bench"
	"github.com/govs/govs/config"
)

const benchUsage = `Usage: govs bench <gen|replay|live|suite> [flags]

  gen     write a synthetic capture (TCP handshakes, data, FIN/RST; UDP; IPv4/IPv6)
  replay  replay a capture offline through the data plane's workers and report
  live    transmit a capture onto an interface through a TPACKETv3 TX ring
  suite   generate captures and replay them with 1 and 2 workers against a copy baseline
`

func cmdBench(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "gen":
		return benchGen(args[1:])
	case "replay":
		return benchReplay(args[1:])
	case "live":
		return benchLive(args[1:])
	case "suite":
		return benchSuite(args[1:])
	case "-h", "--help", "help":
		fmt.Print(benchUsage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "govs bench: unknown subcommand %q\n\n%s", args[0], benchUsage)
	return 2
}

func benchGen(args []string) int {
	fs := newFlags("bench gen", "bench gen -o FILE.pcap -flows N -packets-per-flow M [flags]", `  govs bench gen -o 1m.pcap -flows 1000000 -packets-per-flow 8
  govs bench gen -o v6.pcap -flows 10000 -packets-per-flow 10 -ipv6-share 1 -size fixed:64 -seed 7
`)
	out := fs.String("o", "", "capture file to write (pcap); required")
	flows := fs.Int("flows", 10000, "number of flows")
	ppf := fs.Int("packets-per-flow", 8, "packets per flow, both directions")
	tcp := fs.Float64("tcp-share", 0.8, "fraction of flows that are TCP (the rest UDP)")
	v6 := fs.Float64("ipv6-share", 0.2, "fraction of flows over IPv6")
	size := fs.String("size", "imix", "data frame sizes: imix, fixed:N or uniform:A-B")
	seed := fs.Uint64("seed", 1, "random seed; equal flags give equal files")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *out == "" {
		fmt.Fprintln(os.Stderr, "govs bench gen: -o FILE.pcap is required (try `govs bench gen -h`)")
		return 2
	}
	sd, err := bench.ParseSizeDist(*size)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench gen: %v\n", err)
		return 2
	}
	st, err := genFile(*out, bench.GenConfig{Flows: *flows, PacketsPerFlow: *ppf, TCPShare: *tcp, IPv6Share: *v6, Size: sd, Seed: *seed})
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench gen: %v\n", err)
		return 1
	}
	fmt.Printf("wrote %s: %d flows (%d tcp, %d udp, %d ipv6), %d packets (%d client, %d server), %d bytes\n",
		*out, st.Flows, st.TCPFlows, st.UDPFlows, st.IPv6Flows, st.Packets, st.ClientPackets, st.ServerPackets, st.Bytes)
	return 0
}

func genFile(path string, gc bench.GenConfig) (bench.GenStats, error) {
	f, err := os.Create(path)
	if err != nil {
		return bench.GenStats{}, fmt.Errorf("failed to create the capture: %w", err)
	}
	st, err := bench.Generate(f, gc)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("failed to write the capture: %w", cerr)
	}
	return st, err
}

// isTerminal reports whether f is a character device (a terminal, for the progress bar).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func benchReplay(args []string) int {
	fs := newFlags("bench replay", "bench replay -config FILE -pcap FILE [flags]", `  govs bench replay -config govs.toml -pcap 1m.pcap -workers 2
  govs bench replay -config govs.toml -pcap prod.pcapng -rewrite-dst 198.18.0.100,2001:2::100 -json
  govs bench replay -config govs.toml -pcap x.pcap -out sent.pcap   # what govs would transmit
  govs bench replay -config govs.toml -pcap 1m.pcap -chart 1m.svg   # throughput and shares, drawn
`)
	cfgPath := fs.String("config", "", "configuration file (TOML); its interfaces are not looked up; required")
	pcap := fs.String("pcap", "", "capture to replay (pcap or pcapng, Ethernet); required")
	workers := fs.Int("workers", 1, "worker goroutines; flows are split by the fanout's hash of the client side")
	loops := fs.Int("loops", 1, "times to replay the capture")
	rewrite := fs.String("rewrite-dst", "", "VIPs (comma-separated, one per family) to map each flow's server address to")
	replies := fs.String("replies", "simulate", "server→client packets: simulate (from the chosen real server) or drop")
	out := fs.String("out", "", "write what govs transmits to this pcap file")
	conns := fs.Int("conns", 0, "connection-table capacity per worker (0: sized to the flows)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	chart := fs.String("chart", "", "also draw throughput over time and the per-server shares to this SVG file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the replay itself (not the loading) to this file, for go tool pprof")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *cfgPath == "" || *pcap == "" {
		fmt.Fprintln(os.Stderr, "govs bench replay: -config FILE and -pcap FILE are required (try `govs bench replay -h`)")
		return 2
	}
	rc := bench.ReplayConfig{Workers: *workers, Loops: *loops, Conns: *conns}
	var err error
	if rc.Replies, err = bench.ParseReplyMode(*replies); err != nil {
		fmt.Fprintf(os.Stderr, "govs bench replay: %v\n", err)
		return 2
	}
	if *rewrite != "" {
		for _, s := range strings.Split(*rewrite, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				fmt.Fprintf(os.Stderr, "govs bench replay: -rewrite-dst %q is not an IP address; write e.g. 198.18.0.100,2001:2::100\n", s)
				return 2
			}
			if a.Is4() {
				rc.RewriteDst4 = a
			} else {
				rc.RewriteDst6 = a
			}
		}
	}
	rc.Config, err = config.Load(*cfgPath, config.LoadOptions{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench replay: invalid configuration:\n%v\n", err)
		return 1
	}
	c, err := bench.ReadCaptureFile(*pcap)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench replay: %v\n", err)
		return 1
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "govs bench replay: failed to create -out file: %v\n", err)
			return 1
		}
		defer f.Close()
		rc.Out = f
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "govs bench replay: failed to create -cpuprofile file: %v\n", err)
			return 1
		}
		defer f.Close()
		rc.CPUProfile = f
	}
	if isTerminal(os.Stderr) {
		rc.Progress = bench.ProgressBar(os.Stderr)
	}
	rep, err := bench.Replay(c, rc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench replay: %v\n", err)
		return 1
	}
	if code := writeReport(*asJSON, rep); code != 0 {
		return code
	}
	if *chart != "" {
		if err := writeChart(*chart, rep); err != nil {
			fmt.Fprintf(os.Stderr, "govs bench replay: %v\n", err)
			return 1
		}
	}
	if rep.StickyViolations != 0 {
		fmt.Fprintf(os.Stderr, "govs bench replay: %d sticky violations: packets of a live connection went to another real server than its own\n", rep.StickyViolations)
		return 1
	}
	return 0
}

func benchLive(args []string) int {
	fs := newFlags("bench live", "bench live -pcap FILE -interface IF [-pps N | -topspeed] [flags]", `  govs bench live -pcap 10k.pcap -interface veth0 -pps 100000 -loops 10
  govs bench live -pcap 10k.pcap -interface veth0 -topspeed -duration 10s
`)
	pcap := fs.String("pcap", "", "capture to transmit (pcap or pcapng, Ethernet); required")
	ifname := fs.String("interface", "", "interface to transmit on; required")
	pps := fs.Float64("pps", 0, "frames per second (0: top speed)")
	top := fs.Bool("topspeed", false, "transmit as fast as the ring drains")
	loops := fs.Int("loops", 0, "passes over the capture (0: 1, or until -duration)")
	dur := fs.Duration("duration", 0, "stop after this long")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *pcap == "" || *ifname == "" {
		fmt.Fprintln(os.Stderr, "govs bench live: -pcap FILE and -interface IF are required (try `govs bench live -h`)")
		return 2
	}
	if *top && *pps > 0 {
		fmt.Fprintln(os.Stderr, "govs bench live: give -pps N or -topspeed, not both")
		return 2
	}
	c, err := bench.ReadCaptureFile(*pcap)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench live: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := bench.Live(ctx, c, bench.LiveConfig{Interface: *ifname, PPS: *pps, TopSpeed: *top, Loops: *loops, Duration: *dur})
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench live: %v\n", err)
		return 1
	}
	return writeReport(*asJSON, rep)
}

// writeChart draws rep's SVG chart into path.
func writeChart(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("failed to create the -chart file: %w", err)
	}
	err = rep.WriteSVG(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("failed to write the -chart file: %w", cerr)
	}
	return err
}

// writeReport prints a report as indented JSON or as its text form; it returns the exit code.
func writeReport(asJSON bool, rep interface{ WriteText(io.Writer) error }) int {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		return 0
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		return 1
	}
	return 0
}

// benchSuite is `make bench`'s replay part: generated captures of several sizes, replayed with
// each worker count, in a table with ratios against the copy baseline measured in the same run.
func benchSuite(args []string) int {
	fs := newFlags("bench suite", "bench suite -config FILE [flags]", `  govs bench suite -config bench/testdata/bench.toml -flows 10000,1000000 -workers 1,2
  sudo govs bench suite -live 5s   # then the live lab: kernel nftables DNAT vs govs, same table style
`)
	cfgPath := fs.String("config", "bench/testdata/bench.toml", "configuration to replay against")
	flowList := fs.String("flows", "10000,1000000", "comma-separated flow counts")
	workerList := fs.String("workers", "1,2", "comma-separated worker counts")
	ppf := fs.Int("packets-per-flow", 8, "packets per flow")
	size := fs.String("size", "fixed:64", "data frame sizes")
	loops := fs.Int("loops", 0, "loops per replay (0: enough for at least 4M packets, so small captures are timed long enough)")
	live := fs.Duration("live", 0, "then run the live lab (kernel nftables DNAT vs govs; root) with this long a measurement each, e.g. 5s; 0: offline only")
	labScript := fs.String("lab-script", "bench/lab.sh", "the live lab's script, relative to the repository root")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *live != 0 && (*live < 500*time.Millisecond || *live > time.Minute) {
		fmt.Fprintf(os.Stderr, "govs bench suite: -live %v: want 500ms..1m (or 0 for none)\n", *live)
		return 2
	}
	cfg, err := config.Load(*cfgPath, config.LoadOptions{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench suite: invalid configuration:\n%v\n", err)
		return 1
	}
	sd, err := bench.ParseSizeDist(*size)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench suite: %v\n", err)
		return 2
	}
	nums := func(s string) ([]int, error) {
		var out []int
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%q is not a positive number", f)
			}
			out = append(out, n)
		}
		return out, nil
	}
	flows, err := nums(*flowList)
	if err == nil {
		var ws []int
		ws, err = nums(*workerList)
		if err == nil {
			dir, derr := os.MkdirTemp("", "govs-bench-")
			if derr != nil {
				err = derr
			} else {
				defer os.RemoveAll(dir)
				err = runSuite(cfg, flows, ws, *ppf, sd, *loops, dir)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs bench suite: %v\n", err)
		return 1
	}
	if *live > 0 {
		fmt.Println()
		if err := runLab(*labScript, *live); err != nil {
			fmt.Fprintf(os.Stderr, "govs bench suite: %v\n", err)
			return 1
		}
	}
	return 0
}

// labTimeout bounds the live lab: three phases of a flood and two wrk runs each, govs's loss-free
// peak search (up to 8 trials of 2 s), the two tun phases' floods, plus setup.
func labTimeout(d time.Duration) time.Duration {
	return 3*(4*d+15*time.Second) + 8*5*time.Second + 2*(d+15*time.Second) + 2*time.Minute
}

// runLab runs the live lab (bench/lab.sh -json) with this govs binary and prints its figures in
// the suite's table style. Without root or the tools it prints one line saying why not.
func runLab(script string, d time.Duration) error {
	if os.Geteuid() != 0 {
		fmt.Println("live lab: skipped: it needs root for network namespaces and AF_PACKET (run `sudo make bench`, or `sudo make bench-lab` alone)")
		return nil
	}
	var missing []string
	for _, tool := range []string{"ip", "nft", "wrk", "taskset", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	if _, err := exec.LookPath(goTool); err != nil {
		missing = append(missing, goTool+" (builds bench/benchlab)")
	}
	if _, err := os.Stat(script); err != nil {
		fmt.Printf("live lab: skipped: %s not found (run from the repository root, or give -lab-script)\n", script)
		return nil
	}
	if len(missing) > 0 {
		fmt.Printf("live lab: skipped: %s not installed (`make bench-lab` installs them)\n", strings.Join(missing, ", "))
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("failed to find this govs binary for the live lab: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), labTimeout(d))
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	cmd := exec.CommandContext(ctx, "bash", script, "-json", "-duration", d.String())
	cmd.Env = append(os.Environ(), "GOVS_BIN="+self)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	fmt.Fprintf(os.Stderr, "live lab: kernel nftables DNAT vs govs, %v per measurement (about %v)...\n", d, (12*d + 20*time.Second).Round(time.Second))
	runErr := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		runErr = fmt.Errorf("timed out after %v", labTimeout(d))
	}
	rep, perr := bench.ParseLabReport(stdout.Bytes())
	if perr != nil {
		tail := strings.TrimSpace(stderr.String())
		if i := len(tail) - 2000; i > 0 {
			tail = "..." + tail[i:]
		}
		if runErr != nil {
			return fmt.Errorf("the live lab failed (%v):\n%s", runErr, tail)
		}
		return fmt.Errorf("%w\n%s", perr, tail)
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	if runErr != nil || rep.Failed() {
		return fmt.Errorf("the live lab did not complete (%v); its log:\n%s", runErr, lastLines(stderr.String(), 15))
	}
	return nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func runSuite(cfg *config.Config, flows, workers []int, ppf int, sd bench.SizeDist, loops int, dir string) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flows\tworkers\tpackets\tMpps\tns/pkt\tns/pkt cpu\tdata plane ns\tbaseline ns\tx baseline\tfloor ns\tx floor\tspeed-up\tdp speed-up\tallocs/pkt\tsticky\tdropped\tconntrack MiB\t")
	for _, n := range flows {
		path := filepath.Join(dir, fmt.Sprintf("gen-%d.pcap", n))
		if _, err := genFile(path, bench.GenConfig{Flows: n, PacketsPerFlow: ppf, TCPShare: 0.8, IPv6Share: 0.2, Size: sd, Seed: 1}); err != nil {
			return err
		}
		c, err := bench.ReadCaptureFile(path)
		if err != nil {
			return err
		}
		os.Remove(path)
		floor := bench.MemoryFloor(n, 4_000_000)
		var one, oneDP float64
		l := loops
		if l <= 0 {
			l = max(1, (4_000_000+c.Len()-1)/max(c.Len(), 1))
		}
		for _, w := range workers {
			rep, err := bench.Replay(c, bench.ReplayConfig{Config: cfg, Workers: w, Loops: l})
			if err != nil {
				return err
			}
			if w == workers[0] {
				one = rep.PPS / float64(w)
				oneDP = float64(w) / rep.NsPerPacketDataplane // packets per ns if only the data plane ran
			}
			speedup, dpSpeedup := "-", "-"
			if one > 0 && w != workers[0] {
				speedup = fmt.Sprintf("%.2fx", rep.PPS/one/float64(workers[0]))
			}
			if oneDP > 0 && rep.NsPerPacketDataplane > 0 && w != workers[0] {
				dpSpeedup = fmt.Sprintf("%.2fx", float64(w)/rep.NsPerPacketDataplane/oneDP)
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1fx\t%.1f\t%.1fx\t%s\t%s\t%.4f\t%d\t%d\t%.0f\t\n",
				n, w, rep.Packets, rep.PPS/1e6, rep.NsPerPacket, rep.NsPerPacketCore, rep.NsPerPacketDataplane, rep.BaselineNsPerPacket,
				rep.NsPerPacket/rep.BaselineNsPerPacket, floor, rep.NsPerPacketDataplane/floor, speedup, dpSpeedup, rep.AllocsPerPacket, rep.StickyViolations,
				rep.DroppedTotal, float64(rep.ConntrackBytes)/(1<<20))
		}
	}
	fmt.Fprintln(tw, "\nspeed-up: pps against the first worker count; dp speed-up: the same for the data plane alone (workers over data")
	fmt.Fprintln(tw, "plane ns, against the first worker count), without the harness's own work per packet;")
	fmt.Fprintln(tw, "x baseline: ns/pkt over a loop that only copies each frame once;")
	fmt.Fprintln(tw, "data plane ns: the part of ns/pkt cpu inside the worker (the rest is the harness copying frames and faking replies);")
	fmt.Fprintln(tw, "floor ns: one core doing nothing per packet but the two random cache-line loads a lookup among that many")
	fmt.Fprintln(tw, "connections needs (index slot, 64-byte entry), 32 packets' loads overlapped; x floor: data plane ns over it.")
	fmt.Fprintln(tw, "The machine may be shared: rerun before trusting a single figure.")
	return tw.Flush()
}
