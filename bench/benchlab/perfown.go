package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// -perf-dir: on a machine where other work shares the balancer core, neither busy time nor
// the kernel-mode columns isolate a phase's cost. perf can: it samples the balancer core with
// a software clock during the UDP window, and each sample is the phase's own (the forwarder's
// threads, the core's NAPI and softirq threads, or interrupt and softirq work, which here is the
// network's: receive backlog, RPS IPIs), another process's, or idle. The own share of all
// samples over the delivered rate is the phase's CPU per packet, whatever else ran.

// perfOwn is one phase's perf split of both cores' samples.
type perfOwn struct {
	File     string    `json:"file"`
	Balancer perfCount `json:"balancer_cpu"`
	Load     perfCount `json:"load_cpu"`
	Error    string    `json:"error,omitempty"`
}

// perfCount splits one CPU's samples. UsPerPk is the own share of the core per delivered packet.
type perfCount struct {
	Samples int     `json:"samples"`
	Own     int     `json:"own"`
	Foreign int     `json:"foreign"`
	Idle    int     `json:"idle"`
	UsPerPk float64 `json:"own_us_per_packet,omitempty"`
}

func (c *perfCount) usPerPacket(pps float64) {
	if c.Samples > 0 {
		c.UsPerPk, _ = usPerPacket(100*float64(c.Own)/float64(c.Samples), pps)
	}
}

// perfRecord samples both CPUs with call chains into file for d, from a perf process on loadCPU.
func perfRecord(ctx context.Context, file string, cpu, loadCPU int, d time.Duration) error {
	cmd := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(loadCPU), "perf", "record", "-q", "-C", fmt.Sprintf("%d,%d", cpu, loadCPU),
		"-F", "999", "-g", "-o", file, "--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 2, 64))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("perf record: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// interruptFrames mark a sample as interrupt or softirq work; on the lab's balancer core under
// a flood that is the network's (the receive backlog and the RPS IPIs that start it).
var interruptFrames = map[string]bool{
	"handle_softirqs": true, "net_rx_action": true, "__irq_exit_rcu": true, "irq_exit_rcu": true,
	"sysvec_call_function_single": true, "asm_sysvec_call_function_single": true,
	"flush_smp_call_function_queue": true, "do_softirq": true, "__do_softirq": true,
}

var idleFrames = map[string]bool{
	"pv_native_safe_halt": true, "default_idle": true, "default_idle_call": true,
	"cpuidle_enter_state": true, "do_idle": true, "cpu_startup_entry": true,
}

// classifyPerf reads `perf script -F comm,tid,cpu,ip,sym` output and splits the samples of
// each CPU; own are samples of the tids in ours, of kernel threads named with one of
// ownPrefixes, or with an interrupt frame; idle those in the idle loop; foreign the rest.
func classifyPerf(r io.Reader, ours map[int]bool, ownPrefixes []string) (map[int]*perfCount, error) {
	out := map[int]*perfCount{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var comm string
	var tid, cpu int
	var inSample, irq, idle bool
	flush := func() {
		if !inSample {
			return
		}
		p := out[cpu]
		if p == nil {
			p = &perfCount{}
			out[cpu] = p
		}
		p.Samples++
		own := ours[tid] || irq
		for _, pre := range ownPrefixes {
			own = own || strings.HasPrefix(comm, pre)
		}
		switch {
		case own:
			p.Own++
		case idle || comm == "swapper":
			p.Idle++
		default:
			p.Foreign++
		}
		inSample, irq, idle = false, false, false
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] != '\t' {
			// A sample header: "comm tid [cpu]" (comm may hold spaces); its call chain
			// follows, one tab-indented "ip sym" line a frame, leaf first.
			flush()
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			cpu, _ = strconv.Atoi(strings.Trim(f[len(f)-1], "[]"))
			tid, _ = strconv.Atoi(f[len(f)-2])
			comm = strings.Join(f[:len(f)-2], " ")
			inSample = true
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		sym := f[1]
		if i := strings.IndexByte(sym, '+'); i > 0 {
			sym = sym[:i]
		}
		irq = irq || interruptFrames[sym]
		idle = idle || idleFrames[sym]
	}
	flush()
	return out, sc.Err()
}

// perfSplit runs perf script on file and classifies its samples per CPU (see classifyPerf).
func perfSplit(file string, ours map[int]bool, ownPrefixes []string) (map[int]*perfCount, error) {
	cmd := exec.Command("perf", "script", "-i", file, "-F", "comm,tid,cpu,ip,sym")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	p, cerr := classifyPerf(out, ours, ownPrefixes)
	werr := cmd.Wait()
	if cerr != nil {
		return p, cerr
	}
	if werr != nil {
		return p, fmt.Errorf("perf script: %w", werr)
	}
	return p, nil
}

// processTids returns the thread ids of process pid.
func processTids(pid int) map[int]bool {
	out := map[int]bool{pid: true}
	ents, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			out[tid] = true
		}
	}
	return out
}
